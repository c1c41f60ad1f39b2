"""The reference SM2 backend: the pure-Python `gmssl` package (3.2.2), an independent check.

Rules kept here (each works around a property of gmssl 3.2.2 read in its source):
- `CryptSM2.sign` takes the nonce k from the caller and gmssl's own `func.random_hex` uses the
  non-cryptographic `random.choice`. We always pass k from `secrets` in [1, n-1], a fresh one
  per attempt, and on first use we replace `gmssl.func.random_hex` (which `encrypt` also uses
  for its k) with a `secrets`-based one, so no path here draws a nonce from `random`.
- `sign_with_sm3` / `verify_with_sm3` apply Z_A with the hard-coded ID "1234567812345678"
  (`CryptSM2._sm3_z`); we assert that equals `DEFAULT_SM2_ID`.
- The constructor strips a leading "04" with `str.lstrip("04")`, which also eats leading '0'/'4'
  hex digits of X; we set `public_key` (X||Y hex) after construction instead.
- `verify` does not check the range of r and s, nor that the public key is on the curve; both
  are checked before we call it (`crypto_sm.sm2`, `check_public` below).
- Encryption: `mode=1` is C1||C3||C2 and gmssl's C1 is X||Y *without* the 0x04 byte; we add
  and strip it. `decrypt` never compares C3, so we recompute SM3(x2 || M || y2) with gmssl and
  compare it ourselves, and check C1 is on the curve first.
This backend holds the GIL (about 130 verifies/s); it is for tests and cross-checks only.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from gmchain.crypto_sm.errors import CryptoError, InvalidKey
from gmchain.crypto_sm.params import DEFAULT_SM2_ID, GX, GY, A, B, N, P

__all__ = ["GmsslBackend"]

_G_HEX = f"{GX:064x}{GY:064x}"

# GB/T 32918.5-2017 Annex A (= GM/T 0003.5-2012): public key and signature of "message digest".
_KAT_POINT = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
_KAT_SIG = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)


def _secure_random_hex(length: int) -> str:
    """Drop-in for `gmssl.func.random_hex`: a CSPRNG scalar in [1, n-1] as hex."""
    if length == 64:
        return f"{secrets.randbelow(N - 1) + 1:064x}"
    return secrets.token_hex((length + 1) // 2)[:length]


def _on_curve(point: bytes) -> bool:
    """y² = x³ + ax + b (mod p), coordinates in [0, p) — GB/T 32918.1-2016 §7.2.2."""
    if len(point) != 65 or point[0] != 4:
        return False
    x = int.from_bytes(point[1:33], "big")
    y = int.from_bytes(point[33:], "big")
    if x >= P or y >= P:
        return False
    return (y * y - (x * x * x + A * x + B)) % P == 0


class _Handle:
    __slots__ = ("d_hex", "point")

    def __init__(self, d_hex: str, point: bytes) -> None:
        self.d_hex = d_hex
        self.point = point


class GmsslBackend:
    """SM2 through gmssl's pure-Python code; see the module docstring for the rules."""

    name = "gmssl"
    threads_scale = False

    def __init__(self) -> None:
        try:
            from gmssl import func, sm2, sm3
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise CryptoError(
                "the gmssl reference backend needs the `gmssl` package: pip install gmssl"
            ) from exc
        func.random_hex = _secure_random_hex
        self._sm2: Any = sm2
        self._sm3: Any = sm3
        # gmssl hard-codes ENTL || ID = 0x0080 || "1234567812345678" in `_sm3_z`; the
        # known-answer test below (GB/T 32918.5 Annex A, made with that ID) confirms it.
        assert DEFAULT_SM2_ID == b"1234567812345678"
        if not self.verify(_KAT_POINT, b"message digest", _KAT_SIG):
            raise CryptoError("gmssl failed the SM2 known-answer self-test (GB/T 32918.5)")

    def _crypt(self, d_hex: str | None, xy_hex: str) -> Any:
        crypt = self._sm2.CryptSM2(private_key=d_hex, public_key="00", mode=1)
        crypt.public_key = xy_hex  # bypass the lstrip("04") in the constructor
        return crypt

    # -- keys ---------------------------------------------------------------------------

    def check_public(self, point: bytes) -> None:
        if not _on_curve(point):
            raise InvalidKey("public key is not a point on the SM2 curve")

    def load_private(self, scalar: bytes) -> object:
        d_hex = scalar.hex()
        xy = self._crypt(d_hex, "")._kg(int(d_hex, 16), _G_HEX)
        return _Handle(d_hex, bytes.fromhex("04" + xy))

    def public_of(self, handle: object) -> bytes:
        return _handle(handle).point

    # -- signatures -----------------------------------------------------------------------

    def sign(self, handle: object, msg: bytes) -> bytes:
        h = _handle(handle)
        crypt = self._crypt(h.d_hex, h.point[1:].hex())
        while True:  # gmssl returns None when r = 0, r + k = n or s = 0: draw a new k
            k = f"{secrets.randbelow(N - 1) + 1:064x}"
            sig = crypt.sign_with_sm3(msg, k)
            if sig is not None:
                return bytes.fromhex(sig)

    def verify(self, point: bytes, msg: bytes, sig: bytes) -> bool:
        crypt = self._crypt(None, point[1:].hex())
        try:
            return bool(crypt.verify_with_sm3(sig.hex(), msg))
        except Exception:
            return False

    # -- encryption -----------------------------------------------------------------------

    def encrypt(self, point: bytes, plaintext: bytes) -> bytes:
        crypt = self._crypt(None, point[1:].hex())
        while True:  # gmssl returns None when the KDF output is all zero: draw a new k
            out = crypt.encrypt(plaintext)
            if out is not None:
                return b"\x04" + bytes(out)

    def decrypt(self, handle: object, ciphertext: bytes) -> bytes:
        h = _handle(handle)
        c1, c3 = ciphertext[:65], ciphertext[65:97]
        if not _on_curve(c1):
            raise CryptoError("SM2 decryption failed: C1 is not on the curve")
        crypt = self._crypt(h.d_hex, h.point[1:].hex())
        try:
            plain = crypt.decrypt(ciphertext[1:])
            xy = crypt._kg(int(h.d_hex, 16), c1[1:].hex())
        except Exception as exc:
            raise CryptoError("SM2 decryption failed") from exc
        if plain is None or xy is None:
            raise CryptoError("SM2 decryption failed")
        x2, y2 = bytes.fromhex(xy[:64]), bytes.fromhex(xy[64:])
        u = bytes.fromhex(self._sm3.sm3_hash(list(x2 + bytes(plain) + y2)))
        if not hmac.compare_digest(u, c3):
            raise CryptoError("SM2 decryption failed: C3 does not match")
        return bytes(plain)


def _handle(handle: object) -> _Handle:
    if not isinstance(handle, _Handle):
        raise CryptoError("private key handle does not belong to the gmssl backend")
    return handle
