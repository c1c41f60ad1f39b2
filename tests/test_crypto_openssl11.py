"""The OpenSSL 1.1.1 code path of crypto_sm run for real (Kylin V10 ships OpenSSL 1.1.1).

The parent test obtains Debian bullseye's libcrypto.so.1.1 (pinned .deb, cached outside git by
deploy/arm64/fetch_libcrypto11.sh, or GMCHAIN_LIBCRYPTO11 = a path) and runs, in a child pytest
with GMCHAIN_LIBCRYPTO pointing at it, the SM2/SM3/SM4 known-answer vectors
(tests/test_crypto_vectors.py), the cross-backend tests (tests/test_crypto_cross.py) and the
child-only tests of this module, which check that the backend in use reports 1.1.1 and run the
SM3/SM4 vectors through that libcrypto's own EVP (crypto_sm's SM3/SM4 go through `cryptography`,
whose OpenSSL is 3.x). It skips, with the fetch script's reason, only when the library cannot be
obtained. The first time the 1.1.1 path ran here it failed its load self-test
(EVP_PKEY_CTRL_SET1_ID was 3.x's value 15, not 1.1.1's EVP_PKEY_ALG_CTRL + 11): this test is the
regression test of that fix.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gmchain.crypto_sm import sm3_hash

ROOT = Path(__file__).resolve().parent.parent
FETCH = ROOT / "deploy" / "arm64" / "fetch_libcrypto11.sh"
CHILD = os.environ.get("GMCHAIN_OPENSSL11_CHILD") == "1"
child_only = pytest.mark.skipif(not CHILD, reason="runs only in the child with libcrypto 1.1.1")
parent_only = pytest.mark.skipif(CHILD, reason="the child does not recurse")

# GB/T 32905-2016 Appendix A (SM3) and GB/T 32907-2016 Appendix A.1 (SM4, one block).
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SM4_CT = "681edf34d206965e86b3e94f536e4246"


def _library() -> str:
    given = os.environ.get("GMCHAIN_LIBCRYPTO11")
    if given:
        return given
    proc = subprocess.run(
        ["bash", str(FETCH)], capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"libcrypto 1.1.1 unavailable: {proc.stderr.strip()}")
    return proc.stdout.strip().splitlines()[-1]


@parent_only
def test_vectors_and_cross_backend_on_openssl_111(tmp_path: Path) -> None:
    lib = _library()
    report = tmp_path / "child.xml"
    env = dict(os.environ, GMCHAIN_LIBCRYPTO=lib, GMCHAIN_OPENSSL11_CHILD="1")
    env.pop("GMCHAIN_CRYPTO_BACKEND", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-o",
            "addopts=",
            f"--junitxml={report}",
            "tests/test_crypto_openssl11.py",
            "tests/test_crypto_vectors.py",
            "tests/test_crypto_cross.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    outcome: dict[str, str] = {}
    for case in cases:
        kinds = {child.tag for child in case}
        failed = bool(kinds & {"failure", "error"})
        state = "skipped" if "skipped" in kinds else "failed" if failed else "passed"
        outcome[f"{case.get('classname')}::{case.get('name')}"] = state
    passed = [name for name, state in outcome.items() if state == "passed"]
    # Every child-only test of this module ran and passed (not skipped: the library loaded).
    mine = [n for n in outcome if "test_crypto_openssl11" in n and "::test_child_" in n]
    assert len(mine) == 3 and all(outcome[n] == "passed" for n in mine), outcome
    # The SM2 vectors and the cross tests ran on the openssl backend, i.e. on 1.1.1 (3 + 16
    # parametrised cases today; fewer means tests went missing, not that 1.1.1 passed).
    assert sum("test_crypto_vectors" in n and "[openssl" in n for n in passed) >= 3, passed
    assert sum("test_crypto_cross" in n and "openssl" in n for n in passed) >= 16, passed
    assert not [n for n, state in outcome.items() if state == "failed"]


def _c() -> ctypes.CDLL:
    from gmchain.crypto_sm.backend import _instance

    backend = _instance("openssl")
    lib: ctypes.CDLL = backend._lib.c  # type: ignore[attr-defined]
    return lib


@child_only
def test_child_backend_reports_111() -> None:
    from gmchain.crypto_sm.backend import _instance, active_backend

    assert active_backend().name == "openssl"
    backend = _instance("openssl")
    version = backend._lib.version  # type: ignore[attr-defined]
    assert 0x10101000 <= version < 0x10200000, hex(version)
    assert backend.version_text.startswith("OpenSSL 1.1.1"), backend.version_text  # type: ignore[attr-defined]
    assert backend._lib.is_v3 is False  # type: ignore[attr-defined]
    assert _c()._name == os.environ["GMCHAIN_LIBCRYPTO"]


@child_only
def test_child_sm3_vectors_through_libcrypto_111() -> None:
    c = _c()
    c.EVP_Digest.restype = ctypes.c_int
    c.EVP_Digest.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]

    def digest(data: bytes) -> bytes:
        out = ctypes.create_string_buffer(32)
        size = ctypes.c_uint(0)
        assert c.EVP_Digest(data, len(data), out, ctypes.byref(size), c.EVP_sm3(), None) == 1
        return out.raw[: size.value]

    assert digest(b"abc").hex() == SM3_ABC
    assert digest(b"abcd" * 16).hex() == SM3_ABCD16
    for data in (b"", os.urandom(63), os.urandom(64), os.urandom(1000)):
        assert digest(data) == sm3_hash(data)  # 1.1.1's SM3 == cryptography's (OpenSSL 3)


@child_only
def test_child_sm4_vector_through_libcrypto_111() -> None:
    c = _c()
    vp = ctypes.c_void_p
    c.EVP_sm4_ecb.restype = vp
    c.EVP_CIPHER_CTX_new.restype = vp
    c.EVP_CIPHER_CTX_free.argtypes = [vp]
    c.EVP_CipherInit_ex.argtypes = [vp, vp, vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    c.EVP_CIPHER_CTX_set_padding.argtypes = [vp, ctypes.c_int]
    c.EVP_CipherUpdate.argtypes = [
        vp,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_char_p,
        ctypes.c_int,
    ]

    def sm4_ecb(block: bytes, encrypt: bool) -> bytes:
        ctx = c.EVP_CIPHER_CTX_new()
        try:
            assert c.EVP_CipherInit_ex(ctx, c.EVP_sm4_ecb(), None, SM4_KEY, None, int(encrypt))
            c.EVP_CIPHER_CTX_set_padding(ctx, 0)
            out = ctypes.create_string_buffer(32)
            size = ctypes.c_int(0)
            assert c.EVP_CipherUpdate(ctx, out, ctypes.byref(size), block, len(block)) == 1
            return out.raw[: size.value]
        finally:
            c.EVP_CIPHER_CTX_free(ctx)

    assert sm4_ecb(SM4_KEY, True).hex() == SM4_CT
    assert sm4_ecb(bytes.fromhex(SM4_CT), False) == SM4_KEY
