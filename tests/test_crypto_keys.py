"""Private keys at rest (crypto_sm.keyfile), key generation, and the crypto-bench entry point."""

from __future__ import annotations

import hmac
import json
import os
import stat
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from gmssl import sm3 as gm_sm3

from gmchain.crypto_sm import (
    CryptoError,
    InsecureKeyFile,
    PrivateKey,
    bench,
    keyfile,
    load_private_key,
    save_private_key,
)
from gmchain.crypto_sm.params import N

FAST = keyfile.MIN_ITERATIONS
PASS = b"correct horse battery staple"


def test_generate_gives_distinct_valid_keys() -> None:
    keys = {PrivateKey.generate().to_bytes() for _ in range(20)}
    assert len(keys) == 20
    assert all(1 <= int.from_bytes(k, "big") <= N - 2 for k in keys)
    k = PrivateKey.generate()
    assert PrivateKey.from_bytes(k.to_bytes()) == k


def test_save_load_round_trip_and_mode(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = tmp_path / "node.key"
    old = os.umask(0)
    try:
        save_private_key(path, key, PASS, iterations=FAST)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == keyfile.KEY_FILE_SIZE
    loaded = load_private_key(path, PASS)
    assert loaded == key and loaded.public_key == key.public_key
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]  # no temp file left


def test_refuses_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k"
    first, second = PrivateKey.generate(), PrivateKey.generate()
    save_private_key(path, first, PASS, iterations=FAST)
    with pytest.raises(CryptoError, match="overwrite"):
        save_private_key(path, second, PASS, iterations=FAST)
    assert load_private_key(path, PASS) == first
    save_private_key(path, second, PASS, iterations=FAST, overwrite=True)
    assert load_private_key(path, PASS) == second


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606])
def test_refuses_group_or_world_accessible_key(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    save_private_key(path, PrivateKey.generate(), PASS, iterations=FAST)
    path.chmod(mode)
    with pytest.raises(InsecureKeyFile, match="chmod 600"):
        load_private_key(path, PASS)
    path.chmod(0o400)
    load_private_key(path, PASS)


def test_wrong_passphrase_and_empty_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "k"
    save_private_key(path, PrivateKey.generate(), PASS, iterations=FAST)
    with pytest.raises(CryptoError, match="wrong passphrase"):
        load_private_key(path, PASS + b"!")
    with pytest.raises(CryptoError):
        save_private_key(tmp_path / "k2", PrivateKey.generate(), b"", iterations=FAST)


@pytest.mark.parametrize("offset", [0, 8, 9, 13, 20, 35, 60, 110, 150])
def test_any_altered_byte_is_refused(offset: int) -> None:
    data = bytearray(keyfile.encode_key_file(PrivateKey.generate(), PASS, iterations=FAST))
    data[offset] ^= 0x01
    with pytest.raises(CryptoError):
        keyfile.decode_key_file(bytes(data), PASS)


def test_iteration_bounds() -> None:
    with pytest.raises(CryptoError):
        keyfile.encode_key_file(PrivateKey.generate(), PASS, iterations=FAST - 1)
    data = bytearray(keyfile.encode_key_file(PrivateKey.generate(), PASS, iterations=FAST))
    data[10:14] = (keyfile.MAX_ITERATIONS + 1).to_bytes(4, "big")
    with pytest.raises(CryptoError, match="iteration"):
        keyfile.decode_key_file(bytes(data), PASS)


def test_decrypt_from_the_documented_layout_alone(tmp_path: Path) -> None:
    """Follow docs/crypto.md with `cryptography` directly, not through crypto_sm."""
    key = PrivateKey.generate()
    path = tmp_path / "k"
    save_private_key(path, key, PASS, iterations=FAST)
    data = path.read_bytes()
    magic, version, kdf, iterations, salt, nonce, pub = struct.unpack(">8sBBI16s12s65s", data[:107])
    assert (magic, version, kdf, iterations) == (b"GMSM2KEY", 1, 1, FAST)
    assert pub == key.public_key.to_bytes()
    kek = PBKDF2HMAC(hashes.SM3(), 16, salt, iterations).derive(PASS)
    dec = Cipher(algorithms.SM4(kek), modes.GCM(nonce, data[139:155])).decryptor()
    dec.authenticate_additional_data(data[:107])
    assert dec.update(data[107:139]) + dec.finalize() == key.to_bytes()


def _pbkdf2_hmac_sm3_reference(password: bytes, salt: bytes, rounds: int, size: int) -> bytes:
    """RFC 8018 §5.2 over an HMAC built from gmssl's SM3 (independent of OpenSSL)."""

    class Sm3:
        digest_size, block_size = 32, 64

        def __init__(self, data: bytes = b"") -> None:
            self.buf = bytearray(data)

        def update(self, data: bytes) -> None:
            self.buf += data

        def copy(self) -> Sm3:
            return Sm3(bytes(self.buf))

        def digest(self) -> bytes:
            return bytes.fromhex(gm_sm3.sm3_hash(list(self.buf)))

    out = b""
    block = 1
    while len(out) < size:
        u = hmac.new(password, salt + block.to_bytes(4, "big"), Sm3).digest()
        t = bytearray(u)
        for _ in range(rounds - 1):
            u = hmac.new(password, u, Sm3).digest()
            t = bytearray(a ^ b for a, b in zip(t, u, strict=True))
        out += bytes(t)
        block += 1
    return out[:size]


def test_kdf_is_pbkdf2_hmac_sm3() -> None:
    salt = os.urandom(16)
    ours = PBKDF2HMAC(hashes.SM3(), 16, salt, 3).derive(PASS)
    assert ours == _pbkdf2_hmac_sm3_reference(PASS, salt, 3, 16)
    assert keyfile._kek(PASS, salt, 3) == ours


def test_run_bench_reports_required_fields() -> None:
    result = bench.run_bench(seconds=0.05)
    for name in (
        "backend",
        "sm2_sign_per_s",
        "sm2_verify_per_s_1thread",
        "sm2_verify_per_s_threads",
        "sm3_mb_per_s",
        "sm4_gcm_mb_per_s",
        "cpu_count",
    ):
        assert name in result
    assert result["backend"] == "openssl"
    assert result["sm2_verify_per_s_1thread"] > 0 and result["sm3_mb_per_s"] > 0


def test_bench_main_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--json", "--seconds", "0.02"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert json.loads(out[0])["cpu_count"] == os.cpu_count()
