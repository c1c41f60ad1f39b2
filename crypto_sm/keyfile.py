"""Private keys at rest: a passphrase-encrypted file of mode 0600 (layout in docs/crypto.md).

Rules kept here:
- Layout (big-endian integers, 155 bytes, version 1):
    0   8  magic  b"GMSM2KEY"
    8   1  version = 1
    9   1  kdf = 1: PBKDF2 (RFC 8018 §5.2) with HMAC-SM3 (RFC 2104 over GB/T 32905)
   10   4  iterations
   14  16  salt (CSPRNG)
   30  12  SM4-GCM nonce (CSPRNG)
   42  65  public key 0x04 || X || Y, in clear so the address is readable without the passphrase
  107  32  SM4-GCM ciphertext of the private scalar d
  139  16  SM4-GCM tag
  KEK = PBKDF2-HMAC-SM3(passphrase, salt, iterations, 16 bytes); AAD = bytes 0..106 (the whole
  header, public key included), so no header byte can be altered without failing the tag.
- After decryption d must be a valid scalar whose public key equals the stored one.
- Files are created with O_CREAT|O_EXCL and mode 0600 (fchmod'ed, whatever the umask), written,
  fsynced, then renamed into place; an existing key is never overwritten unless asked.
- Loading refuses a file any group/other permission bit is set on (like ssh does), with a
  message saying how to fix it, before reading a byte of it.
- The iteration count is bounded on load, so a crafted file cannot pin the CPU for hours.
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from gmchain.crypto_sm.errors import CryptoError, InsecureKeyFile, InvalidKey
from gmchain.crypto_sm.sm2 import PrivateKey, PublicKey
from gmchain.crypto_sm.sm4 import sm4_gcm_decrypt, sm4_gcm_encrypt

__all__ = [
    "DEFAULT_ITERATIONS",
    "KEY_FILE_SIZE",
    "MAGIC",
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "decode_key_file",
    "derive_passphrase_key",
    "encode_key_file",
    "load_private_key",
    "save_private_key",
]

MAGIC: Final = b"GMSM2KEY"
VERSION: Final = 1
KDF_PBKDF2_HMAC_SM3: Final = 1
DEFAULT_ITERATIONS: Final = 1_000_000  # ≈ 0.4 s on the 2-core reference machine
MIN_ITERATIONS: Final = 10_000
MAX_ITERATIONS: Final = 20_000_000
_HEADER = struct.Struct(">8sBBI16s12s65s")  # magic, version, kdf, iterations, salt, nonce, pub
_SECRET_SIZE: Final = 32 + 16
KEY_FILE_SIZE: Final = _HEADER.size + _SECRET_SIZE


def _kek(passphrase: bytes, salt: bytes, iterations: int) -> bytes:
    if not passphrase:
        raise CryptoError("a non-empty passphrase is required for a private key file")
    kdf = PBKDF2HMAC(algorithm=hashes.SM3(), length=16, salt=salt, iterations=iterations)
    return kdf.derive(passphrase)


def derive_passphrase_key(passphrase: bytes, salt: bytes, iterations: int) -> bytes:
    """The 16-byte SM4 key PBKDF2-HMAC-SM3 derives from a passphrase (the key files' KDF; also
    ledger/snapshot_crypt.py's). Raises CryptoError for an empty passphrase."""
    return _kek(passphrase, salt, iterations)


def encode_key_file(
    key: PrivateKey, passphrase: bytes, *, iterations: int = DEFAULT_ITERATIONS
) -> bytes:
    """The encrypted key file's bytes (fresh salt and nonce each call)."""
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise CryptoError(f"iterations must lie in [{MIN_ITERATIONS}, {MAX_ITERATIONS}]")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = _HEADER.pack(
        MAGIC, VERSION, KDF_PBKDF2_HMAC_SM3, iterations, salt, nonce, key.public_key.to_bytes()
    )
    kek = _kek(passphrase, salt, iterations)
    return header + sm4_gcm_encrypt(kek, nonce, key.to_bytes(), header)


def decode_key_file(data: bytes, passphrase: bytes) -> PrivateKey:
    """Parse and decrypt a key file's bytes; raise `CryptoError` with the reason."""
    if len(data) != KEY_FILE_SIZE or not data.startswith(MAGIC):
        raise CryptoError("not a gmchain SM2 key file (bad magic or size)")
    _magic, version, kdf, iterations, salt, nonce, pub = _HEADER.unpack_from(data)
    if version != VERSION or kdf != KDF_PBKDF2_HMAC_SM3:
        raise CryptoError(f"unsupported key file version {version} / KDF {kdf}")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise CryptoError(f"key file iteration count {iterations} out of bounds")
    header = data[: _HEADER.size]
    kek = _kek(passphrase, salt, iterations)
    try:
        scalar = sm4_gcm_decrypt(kek, nonce, data[_HEADER.size :], header)
    except CryptoError:
        raise CryptoError("wrong passphrase or corrupted key file") from None
    try:
        key = PrivateKey.from_bytes(scalar)
        stored = PublicKey.from_bytes(pub)
    except InvalidKey as exc:
        raise CryptoError(f"key file holds an invalid key: {exc}") from None
    if key.public_key != stored:
        raise CryptoError("key file's public key does not match its private key")
    return key


def save_private_key(
    path: str | os.PathLike[str],
    key: PrivateKey,
    passphrase: bytes,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    overwrite: bool = False,
) -> None:
    """Write `key` encrypted under `passphrase` to `path` with mode 0600, atomically."""
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise CryptoError(f"refusing to overwrite existing key file {path}")
    data = encode_key_file(key, passphrase, iterations=iterations)
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if `path` appeared meanwhile: never clobber a key
            os.unlink(tmp)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_private_key(path: str | os.PathLike[str], passphrase: bytes) -> PrivateKey:
    """Read and decrypt a key file; refuse it if group or others may access it."""
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CryptoError(f"private key path {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise InsecureKeyFile(
                f"refusing to load private key {path}: its mode {mode:04o} lets group/others "
                f"access it; it must be readable by its owner only (run: chmod 600 {path})"
            )
        data = os.read(fd, KEY_FILE_SIZE + 1)
    finally:
        os.close(fd)
    return decode_key_file(data, passphrase)
