"""The default SM2 backend: OpenSSL's libcrypto (≥ 1.1.1) through ctypes.

Rules kept here:
- Every call goes through `ctypes.CDLL` (never `PyDLL`), so the GIL is released for the whole
  foreign call; `EVP_DigestVerify` is where the time goes, hence threads scale.
- Signing and verification use EVP_DigestSign/Verify with SM3 and the distinguishing ID set on
  the EVP_PKEY_CTX (GB/T 32918.2-2016 §6.1 and §7.1: e = SM3(Z_A || M); ID from GB/T 35276-2017
  §10). Without the ID OpenSSL 3 computes no Z_A and signatures do not interoperate. OpenSSL 3
  has the function `EVP_PKEY_CTX_set1_id`; in 1.1.1 it is a macro over `EVP_PKEY_CTX_ctrl`
  with EVP_PKEY_CTRL_SET1_ID = EVP_PKEY_ALG_CTRL + 11 (0x100B, ec.h of 1.1.1; 3.x renumbered it
  15 in evp.h, and 15 on 1.1.1 is refused "command not supported"), and keys need
  `EVP_PKEY_set_alias_type(pkey, EVP_PKEY_SM2)`.
- The nonce k of every signature and of every encryption is drawn by libcrypto from its CSPRNG
  (RAND_priv_bytes / RAND_bytes via BN_priv_rand_range); callers cannot supply it.
- Whatever is allocated is freed on every path: contexts in `finally`, EVP_PKEYs by reference
  count (the per-public-key LRU holds one reference, each user takes and drops its own).
- The library is located robustly (GMCHAIN_LIBCRYPTO, ctypes.util.find_library, well-known
  sonames of 3.x and 1.1.1) and must pass a known-answer self-test at load (the GM/T 0003.5 /
  GB/T 32918.5 signature example), so a libcrypto without SM2 or with a wrong ID setup is
  refused at start, not discovered in production.
- libcrypto errors are cleared from the thread's error queue after every failed call.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import threading
from collections import OrderedDict
from typing import Any, Final

from gmchain.crypto_sm import _der
from gmchain.crypto_sm.errors import CryptoError, InvalidKey
from gmchain.crypto_sm.params import DEFAULT_SM2_ID, PUBLIC_KEY_SIZE

__all__ = ["OpenSSLBackend", "load_libcrypto"]

_VP = ctypes.c_void_p
_SIZE = ctypes.c_size_t
_BUF = ctypes.c_char_p

_NID_SM2: Final = 1172  # EVP_PKEY_SM2 == NID_sm2 (obj_mac.h)
_EVP_PKEY_EC: Final = 408  # NID_X9_62_id_ecPublicKey
_EVP_PKEY_CTRL_SET1_ID: Final = 0x1000 + 11  # EVP_PKEY_ALG_CTRL + 11: ec.h of OpenSSL 1.1.1
_MIN_VERSION: Final = 0x1010100F  # 1.1.1 release
_MAX_SIG_DER: Final = 72
_CACHE_SIZE: Final = 4096

_INSTALL_HINT = (
    "install OpenSSL's libcrypto >= 1.1.1 with SM2 (Debian/Ubuntu: `apt install libssl3`, "
    "Kylin/openEuler/CentOS: `yum install openssl-libs`), or set GMCHAIN_LIBCRYPTO to its path, "
    "or select the slow reference backend with GMCHAIN_CRYPTO_BACKEND=gmssl"
)

# (name, restype, argtypes); `None` restype means void.
_PROTOTYPES: tuple[tuple[str, Any, list[Any]], ...] = (
    ("OpenSSL_version_num", ctypes.c_ulong, []),
    ("OpenSSL_version", ctypes.c_char_p, [ctypes.c_int]),
    ("ERR_clear_error", None, []),
    ("ERR_get_error", ctypes.c_ulong, []),
    ("ERR_error_string_n", None, [ctypes.c_ulong, ctypes.c_char_p, _SIZE]),
    ("d2i_PUBKEY", _VP, [_VP, ctypes.POINTER(_BUF), ctypes.c_long]),
    ("d2i_PrivateKey", _VP, [ctypes.c_int, _VP, ctypes.POINTER(_BUF), ctypes.c_long]),
    ("i2d_PUBKEY", ctypes.c_int, [_VP, ctypes.POINTER(_VP)]),
    ("EVP_PKEY_free", None, [_VP]),
    ("EVP_PKEY_up_ref", ctypes.c_int, [_VP]),
    ("EVP_PKEY_CTX_new", _VP, [_VP, _VP]),
    ("EVP_PKEY_CTX_free", None, [_VP]),
    (
        "EVP_PKEY_CTX_ctrl",
        ctypes.c_int,
        [_VP, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, _VP],
    ),
    ("EVP_MD_CTX_new", _VP, []),
    ("EVP_MD_CTX_free", None, [_VP]),
    ("EVP_MD_CTX_set_pkey_ctx", None, [_VP, _VP]),
    ("EVP_sm3", _VP, []),
    ("EVP_DigestSignInit", ctypes.c_int, [_VP, _VP, _VP, _VP, _VP]),
    ("EVP_DigestSign", ctypes.c_int, [_VP, _BUF, ctypes.POINTER(_SIZE), _BUF, _SIZE]),
    ("EVP_DigestVerifyInit", ctypes.c_int, [_VP, _VP, _VP, _VP, _VP]),
    ("EVP_DigestVerify", ctypes.c_int, [_VP, _BUF, _SIZE, _BUF, _SIZE]),
    ("EVP_PKEY_encrypt_init", ctypes.c_int, [_VP]),
    ("EVP_PKEY_encrypt", ctypes.c_int, [_VP, _BUF, ctypes.POINTER(_SIZE), _BUF, _SIZE]),
    ("EVP_PKEY_decrypt_init", ctypes.c_int, [_VP]),
    ("EVP_PKEY_decrypt", ctypes.c_int, [_VP, _BUF, ctypes.POINTER(_SIZE), _BUF, _SIZE]),
)
_OPTIONAL: tuple[tuple[str, Any, list[Any]], ...] = (
    ("EVP_PKEY_CTX_set1_id", ctypes.c_int, [_VP, _BUF, ctypes.c_int]),  # 3.x only
    ("EVP_PKEY_set_alias_type", ctypes.c_int, [_VP, ctypes.c_int]),  # 1.1.1 (deprecated in 3)
)


def _candidates() -> list[str]:
    names: list[str] = []
    override = os.environ.get("GMCHAIN_LIBCRYPTO")
    if override:
        names.append(override)
    found = ctypes.util.find_library("crypto")
    if found:
        names.append(found)
    names += ["libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so", "libcrypto.3.dylib"]
    for libdir in (
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib64",
        "/usr/local/lib",
        "/usr/local/ssl/lib",
    ):
        for soname in ("libcrypto.so.3", "libcrypto.so.1.1"):
            names.append(os.path.join(libdir, soname))
    return list(dict.fromkeys(names))


def load_libcrypto() -> ctypes.CDLL:
    """Load a libcrypto ≥ 1.1.1 and declare the prototypes used here; raise `CryptoError`."""
    problems: list[str] = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            for fname, restype, argtypes in _PROTOTYPES:
                fn = getattr(lib, fname)
                fn.restype, fn.argtypes = restype, argtypes
        except AttributeError as exc:
            problems.append(f"{name}: missing {exc}")
            continue
        version = int(lib.OpenSSL_version_num())
        if version < _MIN_VERSION:
            problems.append(f"{name}: version {version:#x} < 1.1.1")
            continue
        for fname, restype, argtypes in _OPTIONAL:
            fn = getattr(lib, fname, None)
            if fn is not None:
                fn.restype, fn.argtypes = restype, argtypes
        return lib
    detail = "; ".join(problems) or "no libcrypto found"
    raise CryptoError(f"OpenSSL backend unavailable ({detail}): {_INSTALL_HINT}")


class _Lib:
    """The loaded library plus the version-dependent pieces."""

    def __init__(self) -> None:
        self.c = load_libcrypto()
        self.version = int(self.c.OpenSSL_version_num())
        raw = self.c.OpenSSL_version(0)
        self.version_text = raw.decode() if isinstance(raw, bytes) else hex(self.version)
        self.is_v3 = self.version >= 0x30000000
        self.sm3 = self.c.EVP_sm3()
        if not self.sm3:
            raise CryptoError(f"libcrypto {self.version_text} has no SM3: {_INSTALL_HINT}")
        self.has_set1_id_fn = hasattr(self.c, "EVP_PKEY_CTX_set1_id") and self.is_v3
        if not self.is_v3 and not hasattr(self.c, "EVP_PKEY_set_alias_type"):
            raise CryptoError(f"libcrypto {self.version_text} lacks SM2 support: {_INSTALL_HINT}")

    def error(self, what: str) -> CryptoError:
        """Drain the thread's error queue into one message."""
        codes = []
        while code := int(self.c.ERR_get_error()):
            buf = ctypes.create_string_buffer(256)
            self.c.ERR_error_string_n(code, buf, 256)
            codes.append(buf.value.decode(errors="replace"))
        return CryptoError(f"{what} failed" + (f": {'; '.join(codes)}" if codes else ""))

    def make_sm2(self, pkey: int) -> int:
        """On 1.1.1, mark an EC key on the SM2 curve as an SM2 key; no-op on 3.x."""
        if not self.is_v3 and self.c.EVP_PKEY_set_alias_type(pkey, _NID_SM2) != 1:
            self.c.EVP_PKEY_free(pkey)
            raise self.error("EVP_PKEY_set_alias_type(SM2)")
        return pkey

    def pkey_ctx(self, pkey: int) -> int:
        """A fresh EVP_PKEY_CTX for `pkey` with the default SM2 ID set."""
        pctx: int = self.c.EVP_PKEY_CTX_new(pkey, None)
        if not pctx:
            raise self.error("EVP_PKEY_CTX_new")
        if self.has_set1_id_fn:
            ok = self.c.EVP_PKEY_CTX_set1_id(pctx, DEFAULT_SM2_ID, len(DEFAULT_SM2_ID))
        else:
            ok = self.c.EVP_PKEY_CTX_ctrl(
                pctx, -1, -1, _EVP_PKEY_CTRL_SET1_ID, len(DEFAULT_SM2_ID), DEFAULT_SM2_ID
            )
        if ok <= 0:
            self.c.EVP_PKEY_CTX_free(pctx)
            raise self.error("EVP_PKEY_CTX_set1_id")
        return pctx

    def digest_ctx(self, pkey: int, init: Any, name: str) -> tuple[int, int]:
        """(pctx, mctx): an EVP_MD_CTX prepared by `init` (EVP_DigestSignInit or
        EVP_DigestVerifyInit, named `name`) for SM3 over `pkey` with the default SM2 ID. The
        caller frees both with `free_digest_ctx`; on an error nothing is left allocated."""
        pctx = self.pkey_ctx(pkey)
        mctx = self.c.EVP_MD_CTX_new()
        try:
            if not mctx:
                raise self.error("EVP_MD_CTX_new")
            self.c.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
            if init(mctx, None, self.sm3, None, pkey) != 1:
                raise self.error(name)
        except BaseException:
            self.free_digest_ctx(pctx, mctx)
            raise
        return pctx, mctx

    def free_digest_ctx(self, pctx: int, mctx: int) -> None:
        """The MD context does not own the pkey context (EVP_MD_CTX_set_pkey_ctx): free both."""
        self.c.EVP_MD_CTX_free(mctx)
        self.c.EVP_PKEY_CTX_free(pctx)


class _PublicCache:
    """LRU of parsed public keys: point bytes -> EVP_PKEY*, one reference held by the cache.

    `acquire` returns a pointer with a reference owned by the caller, who must `release` it,
    so eviction by another thread never frees a key still in use.
    """

    def __init__(self, lib: _Lib, capacity: int) -> None:
        self._lib = lib
        self._capacity = capacity
        self._lock = threading.Lock()
        self._keys: OrderedDict[bytes, int] = OrderedDict()

    def _parse(self, point: bytes) -> int:
        der = _der.spki(point)
        ptr = _BUF(der)
        pkey = self._lib.c.d2i_PUBKEY(None, ctypes.byref(ptr), len(der))
        if not pkey:
            self._lib.c.ERR_clear_error()
            raise InvalidKey("public key is not a point on the SM2 curve")
        return self._lib.make_sm2(pkey)

    def acquire(self, point: bytes) -> int:
        c = self._lib.c
        with self._lock:
            pkey = self._keys.get(point)
            if pkey is not None:
                self._keys.move_to_end(point)
                c.EVP_PKEY_up_ref(pkey)
                return pkey
        fresh = self._parse(point)  # outside the lock: decoding is the slow part
        evicted: list[int] = []
        with self._lock:
            pkey = self._keys.get(point)
            if pkey is None:
                pkey = fresh
                self._keys[point] = pkey
                while len(self._keys) > self._capacity:
                    evicted.append(self._keys.popitem(last=False)[1])
            else:
                evicted.append(fresh)  # another thread won the race
            c.EVP_PKEY_up_ref(pkey)
        for old in evicted:
            c.EVP_PKEY_free(old)
        return pkey

    def release(self, pkey: int) -> None:
        self._lib.c.EVP_PKEY_free(pkey)

    def clear(self) -> None:
        with self._lock:
            keys = list(self._keys.values())
            self._keys.clear()
        for pkey in keys:
            self._lib.c.EVP_PKEY_free(pkey)

    def __len__(self) -> int:
        return len(self._keys)


class _PrivateHandle:
    """Owns one EVP_PKEY* holding a private key; freed when the handle is collected."""

    __slots__ = ("_free", "pkey")

    def __init__(self, lib: _Lib, pkey: int) -> None:
        self.pkey = pkey
        self._free = lib.c.EVP_PKEY_free

    def __del__(self) -> None:
        if self.pkey:
            self._free(self.pkey)
            self.pkey = 0


# GB/T 32918.5-2017 Annex A (= GM/T 0003.5-2012): key, message "message digest", signature.
_SELFTEST_POINT = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
_SELFTEST_SIG = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)


class OpenSSLBackend:
    """SM2 through libcrypto; see the module docstring for the rules."""

    name = "openssl"
    threads_scale = True

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        self._lib = _Lib()
        self._cache = _PublicCache(self._lib, cache_size)
        atexit.register(self._cache.clear)
        if not self.verify(_SELFTEST_POINT, b"message digest", _SELFTEST_SIG):
            raise CryptoError(
                f"libcrypto {self._lib.version_text} failed the SM2 known-answer self-test "
                f"(GB/T 32918.5 Annex A): {_INSTALL_HINT}"
            )

    @property
    def version_text(self) -> str:
        return self._lib.version_text

    @property
    def cached_public_keys(self) -> int:
        return len(self._cache)

    # -- keys ---------------------------------------------------------------------------

    def check_public(self, point: bytes) -> None:
        self._cache.release(self._cache.acquire(point))

    def load_private(self, scalar: bytes) -> object:
        der = _der.ec_private_key(scalar)
        ptr = _BUF(der)
        pkey = self._lib.c.d2i_PrivateKey(_EVP_PKEY_EC, None, ctypes.byref(ptr), len(der))
        if not pkey:
            self._lib.c.ERR_clear_error()
            raise InvalidKey("private key rejected by libcrypto")
        return _PrivateHandle(self._lib, self._lib.make_sm2(pkey))

    def public_of(self, handle: object) -> bytes:
        pkey = _pkey(handle)
        c = self._lib.c
        size = c.i2d_PUBKEY(pkey, None)
        if size != len(_der.SPKI_PREFIX) + PUBLIC_KEY_SIZE:
            raise self._lib.error("i2d_PUBKEY")
        buf = ctypes.create_string_buffer(size)
        out = _VP(ctypes.addressof(buf))
        if c.i2d_PUBKEY(pkey, ctypes.byref(out)) != size:
            raise self._lib.error("i2d_PUBKEY")
        der = buf.raw
        if not der.startswith(_der.SPKI_PREFIX):
            raise CryptoError("libcrypto encoded an unexpected SM2 public key")
        return der[len(_der.SPKI_PREFIX) :]

    # -- signatures -----------------------------------------------------------------------

    def sign(self, handle: object, msg: bytes) -> bytes:
        lib, c = self._lib, self._lib.c
        pctx, mctx = lib.digest_ctx(_pkey(handle), c.EVP_DigestSignInit, "EVP_DigestSignInit")
        try:
            buf = ctypes.create_string_buffer(_MAX_SIG_DER)
            size = _SIZE(_MAX_SIG_DER)
            if c.EVP_DigestSign(mctx, buf, ctypes.byref(size), msg, len(msg)) != 1:
                raise lib.error("EVP_DigestSign")
            r, s = _der.decode_sig(buf.raw[: size.value])
        finally:
            lib.free_digest_ctx(pctx, mctx)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, point: bytes, msg: bytes, sig: bytes) -> bool:
        lib, c = self._lib, self._lib.c
        der = _der.encode_sig(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        pkey = self._cache.acquire(point)
        try:
            init = c.EVP_DigestVerifyInit
            pctx, mctx = lib.digest_ctx(pkey, init, "EVP_DigestVerifyInit")
            try:
                ok: bool = c.EVP_DigestVerify(mctx, der, len(der), msg, len(msg)) == 1
                if not ok:
                    c.ERR_clear_error()
                return ok
            finally:
                lib.free_digest_ctx(pctx, mctx)
        finally:
            self._cache.release(pkey)

    # -- encryption -----------------------------------------------------------------------

    def encrypt(self, point: bytes, plaintext: bytes) -> bytes:
        pkey = self._cache.acquire(point)
        try:
            der = self._crypt(pkey, plaintext, encrypt=True)
        finally:
            self._cache.release(pkey)
        x, y, c3, c2 = _der.decode_sm2_cipher(der)
        return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big") + c3 + c2

    def decrypt(self, handle: object, ciphertext: bytes) -> bytes:
        x = int.from_bytes(ciphertext[1:33], "big")
        y = int.from_bytes(ciphertext[33:65], "big")
        der = _der.encode_sm2_cipher(x, y, ciphertext[65:97], ciphertext[97:])
        return self._crypt(_pkey(handle), der, encrypt=False)

    def _crypt(self, pkey: int, data: bytes, *, encrypt: bool) -> bytes:
        lib, c = self._lib, self._lib.c
        init = c.EVP_PKEY_encrypt_init if encrypt else c.EVP_PKEY_decrypt_init
        run = c.EVP_PKEY_encrypt if encrypt else c.EVP_PKEY_decrypt
        what = "SM2 encryption" if encrypt else "SM2 decryption"
        pctx = c.EVP_PKEY_CTX_new(pkey, None)
        if not pctx:
            raise lib.error("EVP_PKEY_CTX_new")
        try:
            if init(pctx) != 1:
                raise lib.error(what)
            size = _SIZE(0)
            if run(pctx, None, ctypes.byref(size), data, len(data)) != 1:
                raise lib.error(what)
            buf = ctypes.create_string_buffer(size.value)
            if run(pctx, buf, ctypes.byref(size), data, len(data)) != 1:
                raise lib.error(what)
            return buf.raw[: size.value]
        finally:
            c.EVP_PKEY_CTX_free(pctx)


def _pkey(handle: object) -> int:
    if not isinstance(handle, _PrivateHandle) or not handle.pkey:
        raise CryptoError("private key handle does not belong to the OpenSSL backend")
    return handle.pkey
