"""The p2p handshake's messages M1-M4: their fields, limits and the one encoding of each.

Rules this module keeps (docs/p2p.md gives the byte layout and a worked example):
1. Each message is a frozen dataclass encoded as a msgpack array `[tag, fields...]`
   (p2p.framing); `decode` checks every field's type and exact size before returning, and a
   failure is a RemoteProtocolError("malformed", ...) naming the field.
2. An M1 whose layout belongs to another protocol version is refused as "version", not
   "malformed", so mixed-version peers learn why.
The state machines that send and check these messages are in p2p/handshake.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from gmchain.p2p.config import RemoteProtocolError
from gmchain.p2p.framing import decode_message, encode_message
from gmchain.p2p.names import FrameTag

__all__ = [
    "GENESIS_HASH_SIZE",
    "HANDSHAKE_MAX_FRAME",
    "MAC_SIZE",
    "MAX_CHAIN_ID",
    "MAX_KEM_CT",
    "NONCE_SIZE",
    "PROTOCOL_VERSION",
    "PUBKEY_SIZE",
    "SECRET_SIZE",
    "SIG_SIZE",
    "InitiatorAuth",
    "InitiatorHello",
    "ResponderAuth",
    "ResponderHello",
]

# 2: SyncInfo gained `commit_qc` and SafetyData `last_proposed_round` (consensus L9, P2). Peers of
# different versions refuse each other at the handshake ("version") instead of decoding each
# other's messages as garbage and banning; upgrading from 1 is stop-all (docs/ops.md).
# 3: M1 gained `proof` (issue 10, fault 8): no SM2 work for a hello that does not know the chain.
PROTOCOL_VERSION = 3
HANDSHAKE_MAX_FRAME = 4096  # every handshake message is far smaller; caps pre-auth buffering

# The tags are registered in p2p/names.py (the transport's namespace).
TAG_INITIATOR_HELLO = int(FrameTag.INITIATOR_HELLO)
TAG_RESPONDER_HELLO = int(FrameTag.RESPONDER_HELLO)
TAG_INITIATOR_AUTH = int(FrameTag.INITIATOR_AUTH)
TAG_RESPONDER_AUTH = int(FrameTag.RESPONDER_AUTH)

PUBKEY_SIZE = 65
NONCE_SIZE = 32
SECRET_SIZE = 32
SIG_SIZE = 64
MAC_SIZE = 32
GENESIS_HASH_SIZE = 32
MAX_KEM_CT = 256  # SM2 ciphertext of 32 bytes is ~97..140 bytes depending on encoding
MAX_CHAIN_ID = 64


# ---------------------------------------------------------------------------- field checks


def _check_bytes(value: Any, name: str, *, size: int | None = None, max_size: int = 0) -> bytes:
    if type(value) is not bytes:
        raise RemoteProtocolError("malformed", f"{name} is not bin")
    if size is not None and len(value) != size:
        raise RemoteProtocolError("malformed", f"{name} is {len(value)} bytes, want {size}")
    if max_size and not 0 < len(value) <= max_size:
        raise RemoteProtocolError("malformed", f"{name} length {len(value)}")
    return value


def _check_version_chain(version: Any, chain_id: Any) -> tuple[int, str]:
    if type(version) is not int:
        raise RemoteProtocolError("malformed", "version is not an int")
    if type(chain_id) is not str or not 0 < len(chain_id) <= MAX_CHAIN_ID:
        raise RemoteProtocolError("malformed", "chain_id")
    return version, chain_id


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiatorHello:
    """M1: the initiator's ephemeral SM2 public key and nonce, and its proof of the chain."""

    version: int
    chain_id: str
    ephemeral: bytes  # 65 bytes, 0x04 || X || Y
    nonce: bytes  # 32 bytes
    proof: bytes  # 32 bytes, compute_hello_proof(...)

    def encode(self) -> bytes:
        return encode_message(
            [
                TAG_INITIATOR_HELLO,
                self.version,
                self.chain_id,
                self.ephemeral,
                self.nonce,
                self.proof,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> InitiatorHello:
        try:
            _, version, chain_id, eph, nonce, proof = decode_message(data, TAG_INITIATOR_HELLO, 6)
        except RemoteProtocolError as e:
            # A peer of another version may lay M1 out differently: say "version", not "malformed"
            other = _peek_version(data)
            if e.reason == "malformed" and other is not None and other != PROTOCOL_VERSION:
                raise RemoteProtocolError("version", f"peer speaks v{other}") from None
            raise
        version, chain_id = _check_version_chain(version, chain_id)
        return cls(
            version=version,
            chain_id=chain_id,
            ephemeral=_check_bytes(eph, "ephemeral", size=PUBKEY_SIZE),
            nonce=_check_bytes(nonce, "nonce", size=NONCE_SIZE),
            proof=_check_bytes(proof, "proof", size=MAC_SIZE),
        )


def _peek_version(data: bytes) -> int | None:
    """The version field of a `[tag, version, ...]` array of any arity (None if there is none)."""
    try:
        obj = msgpack.unpackb(data, raw=False, max_map_len=0, max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if isinstance(obj, list) and len(obj) >= 2 and type(obj[1]) is int:
        return int(obj[1])
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponderHello:
    """M2: the responder's ephemeral key, nonce, and its secret encrypted to eph_I."""

    version: int
    chain_id: str
    ephemeral: bytes
    nonce: bytes
    kem_ct: bytes  # SM2Enc(eph_I, s_R)

    def encode(self) -> bytes:
        return encode_message(
            [
                TAG_RESPONDER_HELLO,
                self.version,
                self.chain_id,
                self.ephemeral,
                self.nonce,
                self.kem_ct,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> ResponderHello:
        _, version, chain_id, eph, nonce, ct = decode_message(data, TAG_RESPONDER_HELLO, 6)
        version, chain_id = _check_version_chain(version, chain_id)
        return cls(
            version=version,
            chain_id=chain_id,
            ephemeral=_check_bytes(eph, "ephemeral", size=PUBKEY_SIZE),
            nonce=_check_bytes(nonce, "nonce", size=NONCE_SIZE),
            kem_ct=_check_bytes(ct, "kem_ct", max_size=MAX_KEM_CT),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InitiatorAuth:
    """M3: the initiator's secret encrypted to eph_R, its identity, signature and MAC."""

    kem_ct: bytes
    identity: bytes  # 65-byte SM2 identity public key
    signature: bytes  # 64-byte r || s over a_I
    mac: bytes  # 32 bytes

    def encode(self) -> bytes:
        return encode_message(
            [TAG_INITIATOR_AUTH, self.kem_ct, self.identity, self.signature, self.mac]
        )

    @classmethod
    def decode(cls, data: bytes) -> InitiatorAuth:
        _, ct, identity, sig, mac = decode_message(data, TAG_INITIATOR_AUTH, 5)
        return cls(
            kem_ct=_check_bytes(ct, "kem_ct", max_size=MAX_KEM_CT),
            identity=_check_bytes(identity, "identity", size=PUBKEY_SIZE),
            signature=_check_bytes(sig, "signature", size=SIG_SIZE),
            mac=_check_bytes(mac, "mac", size=MAC_SIZE),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponderAuth:
    """M4: the responder's identity, signature over th_3, and MAC."""

    identity: bytes
    signature: bytes
    mac: bytes

    def encode(self) -> bytes:
        return encode_message([TAG_RESPONDER_AUTH, self.identity, self.signature, self.mac])

    @classmethod
    def decode(cls, data: bytes) -> ResponderAuth:
        _, identity, sig, mac = decode_message(data, TAG_RESPONDER_AUTH, 4)
        return cls(
            identity=_check_bytes(identity, "identity", size=PUBKEY_SIZE),
            signature=_check_bytes(sig, "signature", size=SIG_SIZE),
            mac=_check_bytes(mac, "mac", size=MAC_SIZE),
        )
