"""Sealing off-chain raw evidence data (SDK side; never imported by contract execution).

Rules this module keeps (DESIGN.md, "Evidence model"):
1. Raw data never goes on chain; only `data_digest(raw) = SM3(raw)` does (GB/T 32905).
2. `seal` encrypts the raw data with SM4-GCM (GB/T 32907; NIST SP 800-38D mode) under a fresh
   16-byte data key and a fresh 12-byte nonce, both from `secrets` (a CSPRNG). The additional
   authenticated data is the data digest, so a sealed blob cannot be presented as another
   record's data.
3. The data key is wrapped with SM2 public-key encryption (GB/T 32918.4, C1||C3||C2) for the owner
   and, if given, for the regulator; nobody else can open the data.
4. `open_sealed` checks the decrypted data against the digest, so a wrong key, a swapped blob or a
   tampered ciphertext is an error, never wrong data.
5. `SealedData` has one canonical encoding (`ledger.codec`; its tag is registered in ledger.wire):
   [SEALED_TAG, version, data_digest, nonce, ciphertext_with_tag, owner_wrap, regulator_wrap|nil].
This module uses `secrets`, so it is excluded from the determinism scan of `contracts/`.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from gmchain.crypto_sm import (
    CryptoError,
    PrivateKey,
    PublicKey,
    sm2_decrypt,
    sm2_encrypt,
    sm3_hash,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from gmchain.ledger.codec import DecodeError, Limits, decode, encode
from gmchain.ledger.wire import Tag, register_struct

__all__ = ["KEY_SIZE", "NONCE_SIZE", "SealedData", "data_digest", "open_sealed", "seal"]

KEY_SIZE = 16
NONCE_SIZE = 12
_TAG_SIZE = 16
_WRAP_SIZE = 65 + 32 + KEY_SIZE  # SM2 ciphertext of a 16-byte key: C1(65) || C3(32) || C2(16)
_VERSION = 1
_MAX_DATA = 4 * 1024 * 1024 - 1024  # must fit one codec bin (Limits.max_bin) with the tag


def data_digest(raw: bytes) -> bytes:
    """The SM3 digest that goes on chain as a record's data_digest."""
    return sm3_hash(raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedData:
    """Encrypted raw data plus the data key wrapped for the owner (and the regulator)."""

    TAG: ClassVar[Tag] = Tag.SEALED_DATA  # 0x45, 'E'
    data_digest: bytes
    nonce: bytes
    ciphertext: bytes  # SM4-GCM ciphertext || 16-byte tag
    owner_wrap: bytes
    regulator_wrap: bytes | None = None

    def __post_init__(self) -> None:
        _need(_is_bytes(self.data_digest, 32), "data_digest: expected 32 bytes")
        _need(_is_bytes(self.nonce, NONCE_SIZE), f"nonce: expected {NONCE_SIZE} bytes")
        _need(
            isinstance(self.ciphertext, bytes)
            and _TAG_SIZE <= len(self.ciphertext) <= _MAX_DATA + _TAG_SIZE,
            "ciphertext: bad length",
        )
        _need(_is_bytes(self.owner_wrap, _WRAP_SIZE), f"owner_wrap: expected {_WRAP_SIZE} bytes")
        _need(
            self.regulator_wrap is None or _is_bytes(self.regulator_wrap, _WRAP_SIZE),
            f"regulator_wrap: expected {_WRAP_SIZE} bytes or None",
        )

    def to_fields(self) -> list[Any]:
        return [
            self.TAG,
            _VERSION,
            self.data_digest,
            self.nonce,
            self.ciphertext,
            self.owner_wrap,
            self.regulator_wrap,
        ]

    def encode(self) -> bytes:
        return encode(self.to_fields())

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode canonical bytes or raise DecodeError saying what is wrong."""
        f = decode(data, Limits(max_size=_MAX_DATA + 4096))
        if not isinstance(f, list) or len(f) != 7:
            raise DecodeError("SealedData: expected an array of 7 items")
        if f[0] != cls.TAG or isinstance(f[0], bool):
            raise DecodeError(f"SealedData: wrong type tag {f[0]!r}")
        if f[1] != _VERSION or isinstance(f[1], bool):
            raise DecodeError(f"SealedData: unsupported version {f[1]!r}")
        try:
            return cls(
                data_digest=f[2],
                nonce=f[3],
                ciphertext=f[4],
                owner_wrap=f[5],
                regulator_wrap=f[6],
            )
        except ValueError as exc:
            raise DecodeError(f"SealedData: {exc}") from exc


# Its codec stays hand-written: the encoding carries a version number that is no field.
register_struct(SealedData)


def _is_bytes(v: object, size: int) -> bool:
    return isinstance(v, bytes) and len(v) == size


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def seal(raw: bytes, owner: PublicKey, regulator: PublicKey | None = None) -> SealedData:
    """Encrypt `raw` under a fresh data key wrapped for `owner` and `regulator` (rules 2, 3)."""
    if len(raw) > _MAX_DATA:
        raise ValueError(f"raw data of {len(raw)} bytes exceeds the limit of {_MAX_DATA}")
    digest = data_digest(raw)
    key = secrets.token_bytes(KEY_SIZE)
    nonce = secrets.token_bytes(NONCE_SIZE)
    return SealedData(
        data_digest=digest,
        nonce=nonce,
        ciphertext=sm4_gcm_encrypt(key, nonce, raw, digest),
        owner_wrap=sm2_encrypt(owner, key),
        regulator_wrap=None if regulator is None else sm2_encrypt(regulator, key),
    )


def open_sealed(sealed: SealedData, priv: PrivateKey) -> bytes:
    """Decrypt with the owner's or the regulator's key; CryptoError if neither wrap opens."""
    key = None
    for wrap in (sealed.owner_wrap, sealed.regulator_wrap):
        if wrap is None:
            continue
        try:
            key = sm2_decrypt(priv, wrap)
        except CryptoError:
            continue
        if len(key) == KEY_SIZE:
            break
        key = None
    if key is None:
        raise CryptoError("this private key opens neither the owner's nor the regulator's wrap")
    raw = sm4_gcm_decrypt(key, sealed.nonce, sealed.ciphertext, sealed.data_digest)
    if not hmac.compare_digest(data_digest(raw), sealed.data_digest):
        raise CryptoError("decrypted data does not match the sealed data digest")
    return bytes(raw)
