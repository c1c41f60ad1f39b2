"""Exceptions raised by `crypto_sm`.

Rules kept here:
- `CryptoError` is the base class; callers that only care "did the crypto succeed" catch it.
- `InvalidKey` means the caller handed us key material that is not a valid SM2 key (a public
  point off the curve, a private scalar outside [1, n-2], wrong length). It is the caller's fault.
- `InvalidSignature` exists for callers that prefer raising to `PublicKey.verify`'s boolean;
  `verify` itself never raises on a bad signature.
- `InsecureKeyFile` is raised when a private key file is readable or writable by group/others.
"""

from __future__ import annotations

__all__ = ["CryptoError", "InsecureKeyFile", "InvalidKey", "InvalidSignature"]


class CryptoError(Exception):
    """A cryptographic operation failed (bad tag, bad ciphertext, backend unavailable, ...)."""


class InvalidKey(CryptoError, ValueError):
    """Key material is malformed or not a valid SM2 key."""


class InvalidSignature(CryptoError):
    """A signature did not verify (for callers that want an exception instead of a bool)."""


class InsecureKeyFile(CryptoError):
    """A private key file's permissions let users other than its owner read or write it."""
