"""SM2 keys, signatures and public-key encryption (GB/T 32918.1-.5-2016/2017).

Rules kept here:
- Signatures are GB/T 32918.2-2016 §6: e = SM3(Z_A || M) with Z_A computed from
  DEFAULT_SM2_ID (GB/T 35276-2017 §10), encoded on the API as fixed 64 bytes r || s (each
  32-byte big-endian), never DER. `verify` returns False for anything that is not a valid
  signature (wrong length, r or s outside [1, n-1] — §7.1 B1/B2 —, tampering) and never
  raises on a bad signature.
- The nonce k of each signature comes from a CSPRNG inside the backend; no API accepts it.
- A public key is the uncompressed point 0x04 || X || Y (GB/T 32918.1 §4.2.9), checked to be on
  the curve on construction (the cofactor is 1, so that is the full validity check of
  GB/T 32918.1 §6.2.1). Private scalars must lie in [1, n-2] (GB/T 32918.1 §6.1).
- Encryption is GB/T 32918.4-2016 §6 with the C1 || C3 || C2 order of GB/T 35276-2017 §7.2,
  C1 uncompressed (65 bytes), C3 = 32 bytes; decryption checks C1 on the curve and C3, and any
  failure is one `CryptoError`.
- `verify_many` spreads work over a thread pool only when the backend releases the GIL.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from gmchain.crypto_sm.backend import Backend, active_backend
from gmchain.crypto_sm.errors import CryptoError, InvalidKey
from gmchain.crypto_sm.params import DEFAULT_SM2_ID, PUBLIC_KEY_SIZE, SCALAR_SIZE, SIGNATURE_SIZE, N
from gmchain.crypto_sm.sm3 import sm3_hash

__all__ = [
    "ADDRESS_SIZE",
    "DEFAULT_SM2_ID",
    "PrivateKey",
    "PublicKey",
    "sm2_decrypt",
    "sm2_encrypt",
    "verify_many",
]

ADDRESS_SIZE: Final = 20
_C3_SIZE: Final = 32
_MIN_PARALLEL: Final = 8  # below this, handing work to threads costs more than it saves


class PublicKey:
    """An SM2 public key; hashable and equal by its 65-byte encoding."""

    __slots__ = ("_address", "_point")

    def __init__(self, point: bytes) -> None:
        point = bytes(point)
        if len(point) != PUBLIC_KEY_SIZE or point[0] != 0x04:
            raise InvalidKey("SM2 public key must be 65 bytes: 0x04 || X || Y")
        active_backend().check_public(point)
        self._point = point
        self._address: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Parse 0x04 || X || Y; raise `InvalidKey` unless it is a point on the curve."""
        return cls(data)

    def to_bytes(self) -> bytes:
        return self._point

    @property
    def address(self) -> bytes:
        """The first 20 bytes of SM3(0x04 || X || Y)."""
        if self._address is None:
            self._address = sm3_hash(self._point)[:ADDRESS_SIZE]
        return self._address

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True iff `sig` (r || s) is a valid signature of `msg` under this key."""
        if len(sig) != SIGNATURE_SIZE:
            return False
        r = int.from_bytes(sig[:32], "big")
        s = int.from_bytes(sig[32:], "big")
        if not (0 < r < N and 0 < s < N):
            return False
        try:
            return active_backend().verify(self._point, bytes(msg), bytes(sig))
        except CryptoError:
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._point == self._point

    def __hash__(self) -> int:
        return hash(self._point)

    def __repr__(self) -> str:
        return f"PublicKey({self._point.hex()})"


class PrivateKey:
    """An SM2 private key. `repr` never shows the scalar."""

    __slots__ = ("_handles", "_public", "_scalar")

    def __init__(self, scalar: bytes) -> None:
        scalar = bytes(scalar)
        if len(scalar) != SCALAR_SIZE:
            raise InvalidKey(f"SM2 private key must be {SCALAR_SIZE} bytes")
        if not 1 <= int.from_bytes(scalar, "big") <= N - 2:
            raise InvalidKey("SM2 private key must lie in [1, n-2]")
        self._scalar = scalar
        self._handles: dict[str, object] = {}
        self._public: PublicKey | None = None

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new key with d drawn uniformly from [1, n-2] by the OS CSPRNG (`secrets`)."""
        d = secrets.randbelow(N - 2) + 1
        return cls(d.to_bytes(SCALAR_SIZE, "big"))

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        return cls(data)

    def to_bytes(self) -> bytes:
        return self._scalar

    def _handle(self) -> tuple[Backend, object]:
        """The active backend and its (cached) native form of this key."""
        backend = active_backend()
        handle = self._handles.get(backend.name)
        if handle is None:
            handle = backend.load_private(self._scalar)
            self._handles[backend.name] = handle
        return backend, handle

    @property
    def public_key(self) -> PublicKey:
        if self._public is None:
            backend, handle = self._handle()
            self._public = PublicKey(backend.public_of(handle))
        return self._public

    def sign(self, msg: bytes) -> bytes:
        """Sign `msg` (GB/T 32918.2 with DEFAULT_SM2_ID); return r || s, 64 bytes."""
        backend, handle = self._handle()
        return backend.sign(handle, bytes(msg))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and hmac.compare_digest(self._scalar, other._scalar)

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"PrivateKey(address={self.public_key.address.hex()})"


def sm2_encrypt(pub: PublicKey, plaintext: bytes) -> bytes:
    """Encrypt to `pub`; return C1 || C3 || C2 (65 + 32 + len(plaintext) bytes)."""
    if not plaintext:
        raise CryptoError("SM2 encryption needs a non-empty plaintext")
    return active_backend().encrypt(pub.to_bytes(), bytes(plaintext))


def sm2_decrypt(priv: PrivateKey, ciphertext: bytes) -> bytes:
    """Decrypt C1 || C3 || C2; raise `CryptoError` if it is malformed or does not check."""
    ciphertext = bytes(ciphertext)
    if len(ciphertext) <= PUBLIC_KEY_SIZE + _C3_SIZE or ciphertext[0] != 0x04:
        raise CryptoError("SM2 ciphertext must be C1 (65 bytes, 0x04...) || C3 (32) || C2")
    backend, handle = priv._handle()
    try:
        backend.check_public(ciphertext[:PUBLIC_KEY_SIZE])
    except InvalidKey:
        raise CryptoError("SM2 decryption failed: C1 is not on the curve") from None
    try:
        return backend.decrypt(handle, ciphertext)
    except CryptoError:
        raise
    except Exception as exc:  # malformed input must never escape as anything else
        raise CryptoError("SM2 decryption failed") from exc


_pool_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pool_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sm2-verify")
            _pools[workers] = pool
        return pool


def _verify_chunk(items: Sequence[tuple[PublicKey, bytes, bytes]]) -> list[bool]:
    return [pub.verify(msg, sig) for pub, msg, sig in items]


def verify_many(
    items: Sequence[tuple[PublicKey, bytes, bytes]], *, threads: int | None = None
) -> list[bool]:
    """Verify (key, message, signature) triples; result i is `items[i][0].verify(...)`.

    Uses all cores (or `threads`) when the backend releases the GIL; the calling thread does
    one share of the work itself.
    """
    items = list(items)
    workers = threads if threads is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(items) < _MIN_PARALLEL or not active_backend().threads_scale:
        return _verify_chunk(items)
    workers = min(workers, len(items))
    step = -(-len(items) // workers)
    chunks = [items[i : i + step] for i in range(0, len(items), step)]
    pool = _pool(workers - 1)
    futures = [pool.submit(_verify_chunk, chunk) for chunk in chunks[1:]]
    results = _verify_chunk(chunks[0])
    for future in futures:
        results.extend(future.result())
    return results
