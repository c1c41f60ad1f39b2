"""SM3 hashing (GB/T 32905-2016) and HMAC-SM3 (RFC 2104 construction), via OpenSSL."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

__all__ = ["DIGEST_SIZE", "sm3_hash", "sm3_hmac"]

DIGEST_SIZE = 32


def sm3_hash(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of `data`."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def sm3_hmac(key: bytes, data: bytes) -> bytes:
    """Return HMAC-SM3(key, data), 32 bytes."""
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()
