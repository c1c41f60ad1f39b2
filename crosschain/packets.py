"""What travels between chains, byte for byte (issue 13; docs/crosschain.md, docs/protocol.md).

Every object is one canonical value (`ledger.codec`: msgpack, one encoding per value) whose first
item is a version string, so a reader can never mistake one kind of object for another:

    Certificate   = [headers, proof]
                    headers: [BlockHeader bytes, ...], consecutive, first..certified tip
                    proof:   CommitProof bytes (a child of the tip and the QC that certifies it)
    EpochChange   = [epoch, Certificate, next_validators]
                    the certificate's headers are [P, E, ...]: E ends `epoch`, P is E's parent
                    (committing to `epoch`; xclient_update.py rule U10; only an E at height 1
                    is itself the first header); next_validators =
                    [[pubkey(65), power, org], ...] is epoch + 1's set
    ClientUpdate  = ["gmchain-client-update/1", chain_id, [EpochChange, ...], Certificate | None]
    TxProof       = [height, index, tx, tx_path, receipt, receipt_path]
                    tx: SignedTx bytes, leaf `index` of the header's tx_root (leaf = tx id);
                    receipt: Receipt bytes, leaf `index` of the header's receipt_root (leaf = the
                    receipt's bytes); paths are RFC 6962 inclusion paths (ledger.merkle)
    Packet        = ["gmchain-packet/1", source_chain_id, dest_chain_id, seq, TxProof]
    Ack           = ["gmchain-ack/1", source_chain_id, dest_chain_id, TxProof]
                    source: the chain that received packets (the regulator chain); the proven
                    transaction is its `xclient.recv_packets` call
    Misbehaviour  = ["gmchain-misbehaviour/1", chain_id, Certificate, Certificate]

Rules this module keeps:
1. `encode()` of each object is `ledger.codec.encode` of the list above; `decode` accepts exactly
   those bytes (the codec re-encodes and compares) and raises `PacketFormatError` (a ValueError)
   with a reason for anything else: wrong version string, wrong arity, wrong types, a header or
   proof that does not decode.
2. Decoding checks shape only. Whether a certificate verifies or a proof is included is the
   light client's business (crosschain/xclient.py with chain/lightclient.py), never this module's.
3. Sizes are bounded: at most MAX_HEADERS headers per certificate, MAX_EPOCH_CHANGES epoch
   changes per update, MAX_PATH hashes per inclusion path.
4. Every chain id (Packet, Ack, ClientUpdate, Misbehaviour) is 1..MAX_CHAIN_ID bytes of
   `contracts.framework.IDENT_CHARS` without '/' (a key separator in xclient_state rule S1);
   anything else is refused at decode, and the refusal never repeats the attacker's bytes, so no
   reason or event built from a decoded object can grow past a receipt's limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gmchain.chain.lightclient import Certificate
from gmchain.consensus.messages import CommitProof
from gmchain.contracts.framework import IDENT_CHARS
from gmchain.ledger.codec import DecodeError, Value, decode, encode
from gmchain.ledger.genesis import GenesisValidator
from gmchain.ledger.types import BlockHeader, Receipt, SignedTx

__all__ = [
    "ACK_V1",
    "CLIENT_UPDATE_V1",
    "MAX_CHAIN_ID",
    "MAX_EPOCH_CHANGES",
    "MAX_HEADERS",
    "MAX_PATH",
    "MISBEHAVIOUR_V1",
    "PACKET_V1",
    "Ack",
    "ClientUpdate",
    "EpochChange",
    "Misbehaviour",
    "Packet",
    "PacketFormatError",
    "TxProof",
    "certificate_from_value",
    "certificate_to_value",
]

CLIENT_UPDATE_V1 = "gmchain-client-update/1"
PACKET_V1 = "gmchain-packet/1"
ACK_V1 = "gmchain-ack/1"
MISBEHAVIOUR_V1 = "gmchain-misbehaviour/1"
MAX_HEADERS = 256
MAX_EPOCH_CHANGES = 32
MAX_PATH = 64
MAX_CHAIN_ID = 64  # rule 4: bytes
_CHAIN_CHARS = IDENT_CHARS - {"/"}


class PacketFormatError(ValueError):
    """Rule 1: the bytes are not a well-formed cross-chain object."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise PacketFormatError(what)


def _chain_id(x: object, what: str) -> str:
    """Rule 4 (the message names the rule, never the value)."""
    _need(
        isinstance(x, str) and 1 <= len(x) <= MAX_CHAIN_ID and all(c in _CHAIN_CHARS for c in x),
        f"{what}: a chain id is 1..{MAX_CHAIN_ID} of letters, digits and . _ - : @",
    )
    assert isinstance(x, str)
    return x


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _decode_list(data: bytes, version: str, arity: int) -> list[Any]:
    _need(isinstance(data, bytes | bytearray), f"{version}: expected bytes")
    try:
        v = decode(bytes(data))
    except DecodeError as exc:
        raise PacketFormatError(f"{version}: not canonical: {exc}") from None
    _need(isinstance(v, list) and len(v) == arity, f"{version}: expected a list of {arity} items")
    _need(v[0] == version, f"expected a {version} object, got {repr(v[0])[:80]}")
    return list(v)


def _path(value: Value, what: str) -> tuple[bytes, ...]:
    _need(isinstance(value, list) and len(value) <= MAX_PATH, f"{what}: expected <= 64 hashes")
    _need(all(isinstance(h, bytes) and len(h) == 32 for h in value), f"{what}: 32-byte hashes")
    return tuple(value)


def certificate_to_value(cert: Certificate) -> list[Value]:
    return [[h.encode() for h in cert.headers], cert.proof.encode()]


def certificate_from_value(value: Value, what: str = "certificate") -> Certificate:
    _need(isinstance(value, list) and len(value) == 2, f"{what}: expected [headers, proof]")
    headers, proof = value
    _need(isinstance(headers, list) and 1 <= len(headers) <= MAX_HEADERS, f"{what}: 1..256 headers")
    _need(isinstance(proof, bytes), f"{what}: proof must be bytes")
    try:
        hs = tuple(BlockHeader.decode(h) for h in headers)
        cp = CommitProof.decode(proof)
    except (DecodeError, ValueError, TypeError) as exc:
        raise PacketFormatError(f"{what}: {exc}") from None
    return Certificate(headers=hs, proof=cp)


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochChange:
    epoch: int
    certificate: Certificate
    next_validators: tuple[GenesisValidator, ...]

    def to_value(self) -> list[Value]:
        return [
            self.epoch,
            certificate_to_value(self.certificate),
            [[v.pubkey, v.power, v.org] for v in self.next_validators],
        ]

    @classmethod
    def from_value(cls, value: Value) -> EpochChange:
        _need(isinstance(value, list) and len(value) == 3, "epoch change: expected 3 items")
        epoch, cert, nxt = value
        _need(_is_int(epoch), "epoch change: epoch must be an integer >= 0")
        _need(isinstance(nxt, list) and len(nxt) >= 1, "epoch change: next_validators")
        try:
            vals = tuple(GenesisValidator(pubkey=p, power=w, org=o) for p, w, o in nxt)
        except (TypeError, ValueError) as exc:
            raise PacketFormatError(f"epoch change: next_validators: {exc}") from None
        return cls(
            epoch=epoch,
            certificate=certificate_from_value(cert, f"epoch change {epoch}"),
            next_validators=vals,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientUpdate:
    chain_id: str
    epoch_changes: tuple[EpochChange, ...] = ()
    certificate: Certificate | None = None

    def encode(self) -> bytes:
        cert = None if self.certificate is None else certificate_to_value(self.certificate)
        changes = [c.to_value() for c in self.epoch_changes]
        return encode([CLIENT_UPDATE_V1, self.chain_id, changes, cert])

    @classmethod
    def decode(cls, data: bytes) -> ClientUpdate:
        _, chain_id, changes, cert = _decode_list(data, CLIENT_UPDATE_V1, 4)
        chain_id = _chain_id(chain_id, "client update: chain_id")
        _need(
            isinstance(changes, list) and len(changes) <= MAX_EPOCH_CHANGES,
            "client update: at most 32 epoch changes",
        )
        return cls(
            chain_id=chain_id,
            epoch_changes=tuple(EpochChange.from_value(c) for c in changes),
            certificate=None if cert is None else certificate_from_value(cert),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TxProof:
    height: int
    index: int
    tx: bytes
    tx_path: tuple[bytes, ...]
    receipt: bytes
    receipt_path: tuple[bytes, ...]

    def to_value(self) -> list[Value]:
        return [
            self.height,
            self.index,
            self.tx,
            list(self.tx_path),
            self.receipt,
            list(self.receipt_path),
        ]

    @classmethod
    def from_value(cls, value: Value) -> TxProof:
        _need(isinstance(value, list) and len(value) == 6, "tx proof: expected 6 items")
        height, index, tx, tx_path, receipt, receipt_path = value
        _need(_is_int(height) and _is_int(index), "tx proof: height and index >= 0")
        _need(isinstance(tx, bytes) and isinstance(receipt, bytes), "tx proof: tx, receipt bytes")
        return cls(
            height=height,
            index=index,
            tx=tx,
            tx_path=_path(tx_path, "tx_path"),
            receipt=receipt,
            receipt_path=_path(receipt_path, "receipt_path"),
        )

    def decode_tx(self) -> SignedTx:
        try:
            return SignedTx.decode_tx(self.tx)
        except (DecodeError, ValueError, TypeError) as exc:
            raise PacketFormatError(f"tx proof: the transaction does not decode: {exc}") from None

    def decode_receipt(self) -> Receipt:
        try:
            return Receipt.decode(self.receipt)
        except (DecodeError, ValueError, TypeError) as exc:
            raise PacketFormatError(f"tx proof: the receipt does not decode: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Packet:
    source_chain_id: str
    dest_chain_id: str
    seq: int
    proof: TxProof

    def encode(self) -> bytes:
        return encode(
            [PACKET_V1, self.source_chain_id, self.dest_chain_id, self.seq, self.proof.to_value()]
        )

    @classmethod
    def decode(cls, data: bytes) -> Packet:
        _, src, dest, seq, proof = _decode_list(data, PACKET_V1, 5)
        src = _chain_id(src, "packet: source_chain_id")
        dest = _chain_id(dest, "packet: dest_chain_id")
        _need(_is_int(seq) and seq >= 1, "packet: seq must be an integer >= 1")
        return cls(
            source_chain_id=src, dest_chain_id=dest, seq=seq, proof=TxProof.from_value(proof)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    source_chain_id: str
    dest_chain_id: str
    proof: TxProof

    def encode(self) -> bytes:
        return encode([ACK_V1, self.source_chain_id, self.dest_chain_id, self.proof.to_value()])

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        _, src, dest, proof = _decode_list(data, ACK_V1, 4)
        src = _chain_id(src, "ack: source_chain_id")
        dest = _chain_id(dest, "ack: dest_chain_id")
        return cls(source_chain_id=src, dest_chain_id=dest, proof=TxProof.from_value(proof))


@dataclass(frozen=True, slots=True, kw_only=True)
class Misbehaviour:
    chain_id: str
    first: Certificate
    second: Certificate

    def encode(self) -> bytes:
        return encode(
            [
                MISBEHAVIOUR_V1,
                self.chain_id,
                certificate_to_value(self.first),
                certificate_to_value(self.second),
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Misbehaviour:
        _, chain_id, a, b = _decode_list(data, MISBEHAVIOUR_V1, 4)
        chain_id = _chain_id(chain_id, "misbehaviour: chain_id")
        return cls(
            chain_id=chain_id,
            first=certificate_from_value(a, "first certificate"),
            second=certificate_from_value(b, "second certificate"),
        )
