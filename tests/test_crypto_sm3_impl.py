"""Both SM3 paths (hashlib's OpenSSL SM3 and cryptography's) agree with GB/T 32905's vectors."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from gmchain.crypto_sm import sm3 as sm3_mod

ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
M64 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


@pytest.mark.parametrize(("msg", "digest"), [(b"abc", ABC), (b"abcd" * 16, M64)])
def test_both_paths_match_the_standard(msg: bytes, digest: str) -> None:
    assert sm3_mod._sm3_cryptography(msg).hex() == digest
    assert sm3_mod.sm3_hash(msg).hex() == digest
    try:
        assert hashlib.new("sm3", msg).hexdigest() == digest
    except ValueError:
        pytest.skip("this OpenSSL build has no SM3 in hashlib")


def test_hmac_matches_cryptography() -> None:
    key, data = b"k" * 40, b"some data" * 9
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    assert sm3_mod.sm3_hmac(key, data) == h.finalize()
