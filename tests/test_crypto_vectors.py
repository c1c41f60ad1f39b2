"""Official test vectors for SM3, HMAC-SM3, SM4, SM4-GCM and SM2, on both SM2 backends.

Sources: GB/T 32905-2016 Appendix A (SM3), GB/T 32907-2016 Appendix A (SM4, incl. the
1,000,000-round example), RFC 8998 Appendix A.1 (SM4-GCM), GB/T 32918.5-2017 Annex A /
GM/T 0003.5-2012 (SM2 on the recommended curve: Z_A, signature, encryption).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmssl import func as gm_func
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3
from gmssl import sm4 as gm_sm4

from gmchain import crypto_sm
from gmchain.crypto_sm import (
    CryptoError,
    PrivateKey,
    PublicKey,
    sm2_decrypt,
    sm3_hash,
    sm3_hmac,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from gmchain.crypto_sm.params import GX, GY, A, B

# ---- SM2 example of GB/T 32918.5-2017 Annex A (recommended curve, ID 1234567812345678) ----
D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
PUB = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
Z_A = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
K = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
SIG = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)
# Encryption of "encryption standard" with the same key and k, C1 || C3 || C2.
CIPHERTEXT = bytes.fromhex(
    "04"
    "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
    "E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
    "59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
    "21886CA989CA9C7D58087307CA93092D651EFA"
)


@pytest.fixture(params=["openssl", "gmssl"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    crypto_sm.set_backend(request.param)
    try:
        yield request.param
    finally:
        crypto_sm.set_backend("openssl")


# ---- SM3 ----------------------------------------------------------------------------------


def test_sm3_abc() -> None:
    expected = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3_hash(b"abc").hex() == expected


def test_sm3_64_bytes() -> None:
    expected = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    assert sm3_hash(b"abcd" * 16).hex() == expected


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 127, 128, 1000])
def test_sm3_matches_gmssl(size: int) -> None:
    data = os.urandom(size)
    assert sm3_hash(data).hex() == gm_sm3.sm3_hash(list(data))


class _GmsslSm3:
    """hashlib-style wrapper over gmssl's SM3, so `hmac` can build an independent HMAC-SM3."""

    digest_size = 32
    block_size = 64

    def __init__(self, data: bytes = b"") -> None:
        self._buf = bytearray(data)

    def update(self, data: bytes) -> None:
        self._buf += data

    def copy(self) -> _GmsslSm3:
        return _GmsslSm3(bytes(self._buf))

    def digest(self) -> bytes:
        return bytes.fromhex(gm_sm3.sm3_hash(list(self._buf)))


@pytest.mark.parametrize("key_size", [0, 16, 32, 64, 65, 100])
def test_hmac_sm3_matches_independent_construction(key_size: int) -> None:
    key, data = os.urandom(key_size), os.urandom(77)
    assert sm3_hmac(key, data) == hmac.new(key, data, _GmsslSm3).digest()


# ---- SM4 ----------------------------------------------------------------------------------

SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def _sm4_block(key: bytes, block: bytes) -> bytes:
    # The same OpenSSL SM4 that sm4_gcm_* is built on (cryptography's algorithms.SM4).
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def test_sm4_block_example_1() -> None:
    expected = "681edf34d206965e86b3e94f536e4246"
    assert _sm4_block(SM4_KEY, SM4_KEY).hex() == expected
    gm = gm_sm4.CryptSM4(padding_mode=gm_sm4.ZERO)
    gm.set_key(SM4_KEY, gm_sm4.SM4_ENCRYPT)
    assert bytes(gm.crypt_ecb(SM4_KEY))[:16].hex() == expected


@pytest.mark.slow
def test_sm4_million_rounds() -> None:
    enc = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()
    block = SM4_KEY
    for _ in range(1_000_000):
        block = enc.update(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


GCM_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
GCM_NONCE = bytes.fromhex("00001234567800000000ABCD")
GCM_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
GCM_PT = bytes.fromhex(
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
)
GCM_OUT = bytes.fromhex(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    "83DE3541E4C2B58177E065A9BF7B62EC"
)


def test_sm4_gcm_rfc8998_vector() -> None:
    assert sm4_gcm_encrypt(GCM_KEY, GCM_NONCE, GCM_PT, GCM_AAD) == GCM_OUT
    assert sm4_gcm_decrypt(GCM_KEY, GCM_NONCE, GCM_OUT, GCM_AAD) == GCM_PT


@pytest.mark.parametrize("index", [0, 31, 63, 64, 79])
def test_sm4_gcm_rejects_tampering(index: int) -> None:
    damaged = bytearray(GCM_OUT)
    damaged[index] ^= 0x01
    with pytest.raises(CryptoError):
        sm4_gcm_decrypt(GCM_KEY, GCM_NONCE, bytes(damaged), GCM_AAD)


def test_sm4_gcm_rejects_wrong_aad_key_nonce_and_short_input() -> None:
    with pytest.raises(CryptoError):
        sm4_gcm_decrypt(GCM_KEY, GCM_NONCE, GCM_OUT, GCM_AAD + b"x")
    with pytest.raises(CryptoError):
        sm4_gcm_decrypt(bytes(16), GCM_NONCE, GCM_OUT, GCM_AAD)
    with pytest.raises(CryptoError):
        sm4_gcm_decrypt(GCM_KEY, bytes(12), GCM_OUT, GCM_AAD)
    with pytest.raises(CryptoError):
        sm4_gcm_decrypt(GCM_KEY, GCM_NONCE, GCM_OUT[:15])
    with pytest.raises(CryptoError):
        sm4_gcm_encrypt(bytes(15), GCM_NONCE, b"x")
    with pytest.raises(CryptoError):
        sm4_gcm_encrypt(GCM_KEY, bytes(16), b"x")


def test_sm4_gcm_round_trip_sizes() -> None:
    key, nonce = os.urandom(16), os.urandom(12)
    for size in (0, 1, 15, 16, 17, 1000):
        pt = os.urandom(size)
        out = sm4_gcm_encrypt(key, nonce, pt)
        assert len(out) == size + 16
        assert sm4_gcm_decrypt(key, nonce, out) == pt


# ---- SM2 ----------------------------------------------------------------------------------


def test_sm2_z_and_e_from_default_id() -> None:
    # Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA), GB/T 32918.2 §5.5.
    entl_id = (8 * len(crypto_sm.DEFAULT_SM2_ID)).to_bytes(2, "big") + crypto_sm.DEFAULT_SM2_ID
    curve = b"".join(v.to_bytes(32, "big") for v in (A, B, GX, GY))
    z = sm3_hash(entl_id + curve + PUB[1:])
    assert z == Z_A
    assert sm3_hash(z + b"message digest") == E


def test_sm2_public_key_from_private(backend: str) -> None:
    assert PrivateKey.from_bytes(D).public_key.to_bytes() == PUB


def test_sm2_signature_example_verifies(backend: str) -> None:
    pub = PublicKey.from_bytes(PUB)
    assert pub.verify(b"message digest", SIG)
    assert not pub.verify(b"message digesT", SIG)


def test_sm2_signature_example_reproduced_by_gmssl_with_fixed_k() -> None:
    # Independent of our code: gmssl with the standard's k yields the standard's (r, s).
    crypt = gm_sm2.CryptSM2(private_key=D.hex(), public_key=PUB.hex(), mode=1)
    crypt.public_key = PUB[1:].hex()
    assert crypt.sign_with_sm3(b"message digest", K).upper() == SIG.hex().upper()


def test_sm2_decrypts_standard_ciphertext(backend: str) -> None:
    assert sm2_decrypt(PrivateKey.from_bytes(D), CIPHERTEXT) == b"encryption standard"


def test_sm2_standard_ciphertext_reproduced_by_gmssl_with_fixed_k(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gm_func, "random_hex", lambda n: K.lower())
    crypt = gm_sm2.CryptSM2(private_key=None, public_key=PUB.hex(), mode=1)
    crypt.public_key = PUB[1:].hex()
    assert b"\x04" + crypt.encrypt(b"encryption standard") == CIPHERTEXT
