"""The p2p handshake's key schedule: transcript hashes, HKDF with HMAC-SM3, the signed digests.

Rules this module keeps (docs/p2p.md; TLS 1.3, RFC 8446 section 7.1; HKDF, RFC 5869):
1. Pure functions of their inputs: no randomness, no state; both sides compute the same bytes.
2. Every derived value is bound to the transcript: auth keys to th_2, traffic keys to th_4,
   with a distinct label per key and direction (`KDF_LABEL || label || th`).
3. Each signed or MACed value starts with its own domain string (`D_*`), so no value of one
   kind can be replayed as another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gmchain.crypto_sm import sm3_hash, sm3_hmac
from gmchain.p2p.framing import encode_message
from gmchain.p2p.handshake_messages import MAC_SIZE
from gmchain.p2p.names import P2PDomain

__all__ = [
    "D_AUTH_I",
    "D_AUTH_R",
    "D_FIN_I",
    "D_FIN_R",
    "D_HELLO",
    "D_TRANSCRIPT",
    "KDF_LABEL",
    "KeySchedule",
    "compute_auth_digest",
    "compute_hello_proof",
    "compute_hkdf_expand",
    "compute_hkdf_extract",
    "compute_key_schedule",
    "compute_transcript_hash",
]

# The domains are registered in p2p/names.py (the transport's namespace).
D_TRANSCRIPT = P2PDomain.TRANSCRIPT.value
D_HELLO = P2PDomain.HELLO.value
D_AUTH_I = P2PDomain.AUTH_I.value
D_AUTH_R = P2PDomain.AUTH_R.value
D_FIN_I = P2PDomain.FIN_I.value
D_FIN_R = P2PDomain.FIN_R.value
KDF_LABEL = P2PDomain.KDF.value

SM4_KEY_SIZE = 16
GCM_IV_SIZE = 12


# ---------------------------------------------------------------------------- key schedule


def compute_hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2) with HMAC-SM3."""
    return sm3_hmac(salt, ikm)


def compute_hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 §2.3) with HMAC-SM3."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF-Expand length out of range")
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = sm3_hmac(prk, block + info + bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def compute_transcript_hash(messages: Sequence[bytes]) -> bytes:
    """th_n = SM3(D_TRANSCRIPT || u32(len M1) || M1 || ... || u32(len Mn) || Mn)."""
    parts = [D_TRANSCRIPT]
    for m in messages:
        parts.append(len(m).to_bytes(4, "big"))
        parts.append(m)
    return sm3_hash(b"".join(parts))


def compute_auth_digest(domain: bytes, fields: list[bytes]) -> bytes:
    """a = SM3(domain || msgpack(fields)): what a side signs (DESIGN.md "Hashing and signing")."""
    return sm3_hash(domain + encode_message(list(fields)))


def compute_hello_proof(
    *,
    genesis_hash: bytes,
    version: int,
    chain_id: str,
    ephemeral: bytes,
    nonce: bytes,
    responder: bytes,
) -> bytes:
    """M1's proof: HMAC-SM3(genesis_hash, D_HELLO || msgpack([version, chain_id, eph_I,
    nonce_I, id_R])). Keyed by the genesis document's hash (Genesis.compute_hash(), block 0's
    parent_id: public, so this proves knowledge of the chain, not membership), bound to the one
    responder it is meant for (so a hello seen on one link cannot be replayed to another node)."""
    fields = [version, chain_id, ephemeral, nonce, responder]
    return sm3_hmac(genesis_hash, D_HELLO + encode_message(fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySchedule:
    """Everything derived from the two KEM secrets; I = initiator, R = responder."""

    prk: bytes
    auth_key_i: bytes
    auth_key_r: bytes
    key_i2r: bytes | None  # traffic keys exist only once th_4 is known
    iv_i2r: bytes | None
    key_r2i: bytes | None
    iv_r2i: bytes | None


def _expand(prk: bytes, label: bytes, th: bytes, length: int) -> bytes:
    return compute_hkdf_expand(prk, KDF_LABEL + label + th, length)


def compute_key_schedule(
    *, secret_i: bytes, secret_r: bytes, th2: bytes, th4: bytes | None = None
) -> KeySchedule:
    """Derive the auth keys (from th_2) and, given th_4, the directional SM4-GCM keys and IVs."""
    prk = compute_hkdf_extract(th2, secret_i + secret_r)
    traffic: list[bytes | None] = [None, None, None, None]
    if th4 is not None:
        traffic = [
            _expand(prk, b"key-i2r", th4, SM4_KEY_SIZE),
            _expand(prk, b"iv-i2r", th4, GCM_IV_SIZE),
            _expand(prk, b"key-r2i", th4, SM4_KEY_SIZE),
            _expand(prk, b"iv-r2i", th4, GCM_IV_SIZE),
        ]
    return KeySchedule(
        prk=prk,
        auth_key_i=_expand(prk, b"auth-i", th2, MAC_SIZE),
        auth_key_r=_expand(prk, b"auth-r", th2, MAC_SIZE),
        key_i2r=traffic[0],
        iv_i2r=traffic[1],
        key_r2i=traffic[2],
        iv_r2i=traffic[3],
    )
