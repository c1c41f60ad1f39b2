"""The few DER (ITU-T X.690) structures that cross the OpenSSL boundary.

Rules kept here:
- Only these shapes exist: ECDSA-Sig-Value / SM2Signature (SEQUENCE of two INTEGERs, RFC 3279
  §2.2.3, GB/T 35276 §7.3), SM2Cipher (SEQUENCE {x INTEGER, y INTEGER, hash OCTET STRING,
  ciphertext OCTET STRING}, GB/T 35276 §7.2), SubjectPublicKeyInfo for an SM2 point
  (RFC 5480 §2) and ECPrivateKey (RFC 5915 §3) with the SM2 curve OID 1.2.156.10197.1.301.
- Encoders produce canonical DER. The decoder is strict: definite minimal lengths, minimal
  non-negative INTEGERs, no trailing bytes. Anything else raises `ValueError`.
- The public API of `crypto_sm` never exposes DER; it exists only to talk to libcrypto.
"""

from __future__ import annotations

__all__ = [
    "SPKI_PREFIX",
    "decode_sig",
    "decode_sm2_cipher",
    "ec_private_key",
    "encode_sig",
    "encode_sm2_cipher",
    "spki",
]

_SEQUENCE = 0x30
_INTEGER = 0x02
_OCTET_STRING = 0x04

# id-ecPublicKey (1.2.840.10045.2.1) and the SM2 curve sm2p256v1 (1.2.156.10197.1.301).
_OID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
_OID_SM2_CURVE = bytes.fromhex("06082a811ccf5501822d")


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def _integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative INTEGER")
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # always room for a sign bit
    if len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return _tlv(_INTEGER, body)


def spki(point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for an uncompressed 65-byte SM2 point."""
    alg = _tlv(_SEQUENCE, _OID_EC_PUBLIC_KEY + _OID_SM2_CURVE)
    return _tlv(_SEQUENCE, alg + _tlv(0x03, b"\x00" + point))


#: The 26 bytes that precede the 65-byte point in an SM2 SubjectPublicKeyInfo.
SPKI_PREFIX = spki(bytes(65))[:-65]


def ec_private_key(scalar: bytes) -> bytes:
    """ECPrivateKey DER (version 1, 32-byte key, [0] curve OID, public key omitted)."""
    body = _integer(1) + _tlv(_OCTET_STRING, scalar) + _tlv(0xA0, _OID_SM2_CURVE)
    return _tlv(_SEQUENCE, body)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def read(self, tag: int) -> bytes:
        buf, pos = self.buf, self.pos
        if pos + 2 > len(buf) or buf[pos] != tag:
            raise ValueError("unexpected DER tag")
        first = buf[pos + 1]
        pos += 2
        if first < 0x80:
            n = first
        else:
            width = first & 0x7F
            if width == 0 or width > 4 or pos + width > len(buf):
                raise ValueError("bad DER length")
            n = int.from_bytes(buf[pos : pos + width], "big")
            pos += width
            if n < 0x80 or n.bit_length() <= 8 * (width - 1):
                raise ValueError("non-minimal DER length")
        if pos + n > len(buf):
            raise ValueError("truncated DER")
        self.pos = pos + n
        return buf[pos : pos + n]

    def integer(self) -> int:
        body = self.read(_INTEGER)
        if not body or body[0] >= 0x80:
            raise ValueError("empty or negative INTEGER")
        if len(body) > 1 and body[0] == 0 and body[1] < 0x80:
            raise ValueError("non-minimal INTEGER")
        return int.from_bytes(body, "big")

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ValueError("trailing bytes after DER value")


def _sequence(data: bytes) -> _Reader:
    outer = _Reader(data)
    inner = _Reader(outer.read(_SEQUENCE))
    outer.end()
    return inner


def encode_sig(r: int, s: int) -> bytes:
    return _tlv(_SEQUENCE, _integer(r) + _integer(s))


def decode_sig(der: bytes) -> tuple[int, int]:
    seq = _sequence(der)
    r, s = seq.integer(), seq.integer()
    seq.end()
    return r, s


def encode_sm2_cipher(x: int, y: int, c3: bytes, c2: bytes) -> bytes:
    body = _integer(x) + _integer(y) + _tlv(_OCTET_STRING, c3) + _tlv(_OCTET_STRING, c2)
    return _tlv(_SEQUENCE, body)


def decode_sm2_cipher(der: bytes) -> tuple[int, int, bytes, bytes]:
    seq = _sequence(der)
    x, y = seq.integer(), seq.integer()
    c3, c2 = seq.read(_OCTET_STRING), seq.read(_OCTET_STRING)
    seq.end()
    return x, y, c3, c2
