"""SM4-GCM authenticated encryption (GB/T 32907-2016 block cipher; GCM per NIST SP 800-38D,
as used with SM4 by RFC 8998 §3.1), via `cryptography` (OpenSSL's C code).

Rules kept here:
- Key 16 bytes, nonce 12 bytes, tag 16 bytes appended to the ciphertext: the output of
  `sm4_gcm_encrypt` is ciphertext || tag, exactly len(plaintext) + 16 bytes.
- A nonce must never repeat under one key; choosing it is the caller's job (a counter, or
  `secrets.token_bytes(12)` for keys used for fewer than 2**32 messages).
- Any failure to authenticate (tag, AAD, nonce or key mismatch, truncated data) is one
  `CryptoError`, with no partial plaintext released.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gmchain.crypto_sm.errors import CryptoError

__all__ = ["KEY_SIZE", "NONCE_SIZE", "TAG_SIZE", "sm4_gcm_decrypt", "sm4_gcm_encrypt"]

KEY_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise CryptoError(f"SM4 key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(nonce) != NONCE_SIZE:
        raise CryptoError(f"SM4-GCM nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt and authenticate; return ciphertext || 16-byte tag."""
    _check(key, nonce)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    body = enc.update(plaintext) + enc.finalize()
    return body + enc.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """Check the tag and decrypt `ciphertext || tag`; raise `CryptoError` if it does not match."""
    _check(key, nonce)
    if len(data) < TAG_SIZE:
        raise CryptoError("SM4-GCM data shorter than its tag")
    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    if aad:
        dec.authenticate_additional_data(aad)
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag:
        raise CryptoError("SM4-GCM authentication failed") from None
