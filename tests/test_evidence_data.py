"""Tests for contracts/evidence_data.py: sealing raw evidence data for the owner and regulator."""

from __future__ import annotations

import pytest

from gmchain.contracts.evidence_data import (
    KEY_SIZE,
    NONCE_SIZE,
    SealedData,
    data_digest,
    open_sealed,
    seal,
)
from gmchain.crypto_sm import CryptoError, PrivateKey, sm2_decrypt, sm3_hash, sm4_gcm_decrypt
from gmchain.ledger.codec import DecodeError, decode, encode

OWNER, REGULATOR, STRANGER = (PrivateKey.generate() for _ in range(3))
RAW = "风险揭示书 — risk disclosure signed by investor inv-001".encode() * 10


def test_digest_is_sm3() -> None:
    assert data_digest(RAW) == sm3_hash(RAW)


def test_owner_and_regulator_can_open_others_cannot() -> None:
    sealed = seal(RAW, OWNER.public_key, REGULATOR.public_key)
    assert sealed.data_digest == sm3_hash(RAW)
    assert RAW not in sealed.ciphertext
    assert open_sealed(sealed, OWNER) == RAW
    assert open_sealed(sealed, REGULATOR) == RAW
    with pytest.raises(CryptoError, match="opens neither"):
        open_sealed(sealed, STRANGER)


def test_without_regulator() -> None:
    sealed = seal(RAW, OWNER.public_key)
    assert sealed.regulator_wrap is None
    assert open_sealed(sealed, OWNER) == RAW
    with pytest.raises(CryptoError):
        open_sealed(sealed, REGULATOR)


def test_fresh_key_and_nonce_each_time() -> None:
    a, b = seal(RAW, OWNER.public_key), seal(RAW, OWNER.public_key)
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext
    key_a, key_b = sm2_decrypt(OWNER, a.owner_wrap), sm2_decrypt(OWNER, b.owner_wrap)
    assert len(key_a) == KEY_SIZE and key_a != key_b and len(a.nonce) == NONCE_SIZE


def test_construction_is_sm4_gcm_with_digest_as_aad() -> None:
    sealed = seal(RAW, OWNER.public_key)
    key = sm2_decrypt(OWNER, sealed.owner_wrap)
    assert sm4_gcm_decrypt(key, sealed.nonce, sealed.ciphertext, sm3_hash(RAW)) == RAW
    with pytest.raises(CryptoError):
        sm4_gcm_decrypt(key, sealed.nonce, sealed.ciphertext, b"")


def test_tampering_is_detected() -> None:
    sealed = seal(RAW, OWNER.public_key, REGULATOR.public_key)
    ct = bytearray(sealed.ciphertext)
    ct[0] ^= 1
    with pytest.raises(CryptoError):
        open_sealed(SealedData(**{**_fields(sealed), "ciphertext": bytes(ct)}), OWNER)
    other = seal(b"other data", OWNER.public_key)
    with pytest.raises(CryptoError):  # blob presented under another record's digest
        open_sealed(SealedData(**{**_fields(sealed), "data_digest": other.data_digest}), OWNER)


def _fields(s: SealedData) -> dict[str, object]:
    return {
        "data_digest": s.data_digest,
        "nonce": s.nonce,
        "ciphertext": s.ciphertext,
        "owner_wrap": s.owner_wrap,
        "regulator_wrap": s.regulator_wrap,
    }


def test_encoding_round_trip() -> None:
    for sealed in (seal(RAW, OWNER.public_key, REGULATOR.public_key), seal(b"", OWNER.public_key)):
        data = sealed.encode()
        back = SealedData.decode(data)
        assert back == sealed and back.encode() == data
        assert open_sealed(back, OWNER) == (RAW if sealed.regulator_wrap else b"")


def test_decode_rejects_bad_input() -> None:
    good = decode(seal(RAW, OWNER.public_key).encode())
    bad_cases = [
        good[:-1],
        [0x46, *good[1:]],
        [good[0], 2, *good[2:]],
        [*good[:2], good[2][:31], *good[3:]],
        [*good[:3], good[3] + b"\x00", *good[4:]],
        [*good[:5], good[5][:-1], good[6]],
    ]
    for case in bad_cases:
        with pytest.raises(DecodeError):
            SealedData.decode(encode(case))
    with pytest.raises(DecodeError):
        SealedData.decode(encode(good) + b"\x00")
