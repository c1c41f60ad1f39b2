"""The SM2 backend interface and the process-wide choice of backend.

Rules kept here:
- A backend does SM2 only; SM3 and SM4 always go through `cryptography` (OpenSSL's C code).
- Two backends exist: "openssl" (default; libcrypto through ctypes, releases the GIL during each
  call so verification scales on threads) and "gmssl" (the pure-Python `gmssl` package, the
  independent reference; slow, holds the GIL, never for the hot path).
- The choice is global for the process: `set_backend(name)` or the environment variable
  `GMCHAIN_CRYPTO_BACKEND` read on first use. There is no silent fallback from "openssl" to
  "gmssl": a missing libcrypto is a clear `CryptoError` naming the package to install.
- Backends receive inputs already checked by `crypto_sm.sm2` (lengths, scalar and signature
  ranges) and return raw byte strings: signatures r||s (64), ciphertexts C1||C3||C2 with
  C1 = 0x04||X||Y (GB/T 32918.4-2016 §6.1 with the C1C3C2 order of GB/T 35276-2017 §7.2).
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from gmchain.crypto_sm.errors import CryptoError

__all__ = ["BACKEND_NAMES", "Backend", "active_backend", "get_backend", "set_backend"]

BACKEND_NAMES = ("openssl", "gmssl")


class Backend(Protocol):
    """What `crypto_sm.sm2` needs from an SM2 implementation."""

    @property
    def name(self) -> str: ...

    @property
    def threads_scale(self) -> bool:
        """True if `verify` releases the GIL, so a thread pool speeds up `verify_many`."""
        ...

    def check_public(self, point: bytes) -> None:
        """Raise `InvalidKey` unless `point` (65 bytes, 0x04||X||Y) is on the curve."""
        ...

    def load_private(self, scalar: bytes) -> object:
        """Return an opaque handle for the private scalar (already range-checked)."""
        ...

    def public_of(self, handle: object) -> bytes:
        """Return the 65-byte public point d·G of a private handle."""
        ...

    def sign(self, handle: object, msg: bytes) -> bytes:
        """Sign SM3(Z_A || msg) with a fresh CSPRNG nonce; return r||s (64 bytes)."""
        ...

    def verify(self, point: bytes, msg: bytes, sig: bytes) -> bool:
        """Verify r||s (components already in [1, n-1]) over SM3(Z_A || msg)."""
        ...

    def encrypt(self, point: bytes, plaintext: bytes) -> bytes:
        """SM2 encryption to `point`; return C1||C3||C2."""
        ...

    def decrypt(self, handle: object, ciphertext: bytes) -> bytes:
        """SM2 decryption of C1||C3||C2; raise `CryptoError` on any failure."""
        ...


_lock = threading.Lock()
_instances: dict[str, Backend] = {}
_current: str | None = None


def _create(name: str) -> Backend:
    if name == "openssl":
        from gmchain.crypto_sm._openssl import OpenSSLBackend

        return OpenSSLBackend()
    if name == "gmssl":
        from gmchain.crypto_sm._gmssl import GmsslBackend

        return GmsslBackend()
    raise CryptoError(f"unknown crypto backend {name!r}; choose one of {BACKEND_NAMES}")


def _instance(name: str) -> Backend:
    with _lock:
        backend = _instances.get(name)
        if backend is None:
            backend = _create(name)
            _instances[name] = backend
        return backend


def set_backend(name: str) -> None:
    """Select the SM2 backend for the whole process ("openssl" or "gmssl")."""
    global _current
    _instance(name)  # fail now, not at first use, if it cannot be loaded
    _current = name


def get_backend() -> str:
    """Return the name of the SM2 backend in use."""
    return active_backend().name


def active_backend() -> Backend:
    """Return the backend object in use (loading the default on first call)."""
    global _current
    if _current is None:
        name = os.environ.get("GMCHAIN_CRYPTO_BACKEND", "openssl")
        _instance(name)
        _current = name
    return _instance(_current)
