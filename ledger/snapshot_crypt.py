"""Encryption at rest of snapshot files (docs/ops.md, "Backup, restore and fast join").

A snapshot holds every organisation's records; a site that keeps it off the node encrypts it.

Rules this module keeps:
1. Layout (version 1), integers unsigned big-endian:
       MAGIC (b"GMCHAIN-SNAPSHOT-SM4\\n") || version (u8) || iterations (u32) || salt (16)
       chunks: u32 len(sealed) || sealed, sealed = SM4-GCM(key, nonce_i, plaintext chunk, aad_i)
   key = PBKDF2-HMAC-SM3(passphrase, salt, iterations, 16 bytes) (crypto_sm, the key files' KDF),
   a fresh random salt per file, so a key is never reused across files; nonce_i = 4 zero bytes ||
   u64 i; aad_i = the header || u64 i || final flag (1 on the last chunk, 0 before). Chunks
   hold at most CHUNK bytes of the plain snapshot.
2. Decryption checks every chunk's tag, the order (the index is in the nonce and the AAD) and the
   end (the last chunk says so): a changed, reordered, dropped or appended chunk, or a wrong
   passphrase, raises `SnapshotError` and the partial output is removed.
3. Pure file transforms: the plain snapshot format is ledger/snapshot.py's, unchanged.

Sources: GB/T 32907 (SM4), NIST SP 800-38D (GCM; a nonce never repeats under one key),
RFC 8018 (PBKDF2).
"""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path
from typing import BinaryIO

from gmchain.crypto_sm import CryptoError, sm4_gcm_decrypt, sm4_gcm_encrypt
from gmchain.crypto_sm.keyfile import derive_passphrase_key
from gmchain.ledger.snapshot import SnapshotError

__all__ = ["CHUNK", "MAGIC", "decrypt_snapshot", "encrypt_snapshot", "is_encrypted"]

MAGIC = b"GMCHAIN-SNAPSHOT-SM4\n"
VERSION = 1
ITERATIONS = 600_000
CHUNK = 1 << 20
_HEAD = struct.Struct(">BI16s")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _nonce(i: int) -> bytes:
    return b"\x00" * 4 + _U64.pack(i)


def encrypt_snapshot(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], passphrase: bytes
) -> None:
    """Rule 1: encrypt the snapshot file `src` into `dst` (mode 0600, written then renamed)."""
    salt = secrets.token_bytes(16)
    header = MAGIC + _HEAD.pack(VERSION, ITERATIONS, salt)
    key = derive_passphrase_key(passphrase, salt, ITERATIONS)
    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            fout.write(header)
            chunk, i = fin.read(CHUNK), 0
            while True:
                nxt = fin.read(CHUNK)
                final = not nxt
                aad = header + _U64.pack(i) + bytes((final,))
                sealed = sm4_gcm_encrypt(key, _nonce(i), chunk, aad)
                fout.write(_U32.pack(len(sealed)) + sealed)
                if final:
                    break
                chunk, i = nxt, i + 1
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def decrypt_snapshot(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], passphrase: bytes
) -> None:
    """Rule 2: decrypt `src` into the plain snapshot `dst` (mode 0600); SnapshotError if the
    passphrase is wrong or the file was changed, truncated or extended."""
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            _decrypt(fin, fout, passphrase)
    except OSError as e:
        Path(dst).unlink(missing_ok=True)
        raise SnapshotError(f"cannot decrypt snapshot {src}: {e}") from e
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise


def _decrypt(fin: BinaryIO, fout: BinaryIO, passphrase: bytes) -> None:
    header = fin.read(len(MAGIC) + _HEAD.size)
    if len(header) != len(MAGIC) + _HEAD.size or not header.startswith(MAGIC):
        raise SnapshotError("not an encrypted gmchain snapshot")
    version, iterations, salt = _HEAD.unpack(header[len(MAGIC) :])
    if version != VERSION or not 10_000 <= iterations <= 20_000_000:
        raise SnapshotError(f"encrypted snapshot version {version} / {iterations} iterations")
    try:
        key = derive_passphrase_key(passphrase, salt, iterations)
    except CryptoError as e:
        raise SnapshotError(str(e)) from e
    i = 0
    while True:
        raw = fin.read(_U32.size)
        if len(raw) != _U32.size:
            raise SnapshotError("encrypted snapshot is truncated (no final chunk)")
        n = _U32.unpack(raw)[0]
        if n > CHUNK + 16:
            raise SnapshotError("encrypted snapshot chunk is too long: damaged")
        sealed = fin.read(n)
        plain, final = None, False
        for final in (False, True):
            try:
                aad = header + _U64.pack(i) + bytes((final,))
                plain = sm4_gcm_decrypt(key, _nonce(i), sealed, aad)
                break
            except CryptoError:
                continue
        if plain is None:
            raise SnapshotError(
                f"encrypted snapshot chunk {i} does not authenticate: wrong passphrase, "
                "or the file was changed"
            )
        fout.write(plain)
        if final:
            if fin.read(1):
                raise SnapshotError("encrypted snapshot has bytes after its final chunk")
            return
        i += 1
