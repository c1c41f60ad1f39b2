"""The xclient contract's state: its keys, stored values and result shapes (docs/crosschain.md).

Rules this module keeps:
S1. Keys are relative to the `xclient` namespace. `<chain>` is the foreign chain id in UTF-8 and
    is always followed by a NUL byte (chain ids, org, flow and record ids hold no control
    character), so a prefix never matches another chain's keys; integers are u64 big-endian:
        c/<chain>                        ClientState (contracts/xc_layout.py rule 1; governance)
        rule                             RelayRule (xc_layout rule 2; governance)
        m/<chain>\\0                      [certificates, misbehaviours] counters
        h/<chain>\\0<height>              [block_id, tx_root, tx_count, receipt_root, epoch,
                                          timestamp_ms, update_no]   a verified header
        u/<chain>\\0<update_no>           [CommitProof bytes, update_client tx id] of the
                                          certificate numbered update_no
        e/<chain>\\0<epoch>               [ending height, ending block id, next set fingerprint,
                                          update_no]                  a verified epoch change
        s/<chain>\\0<epoch>               [[pubkey, power, org], ...]  that epoch's set
        x/<chain>\\0<n>                   [height, [id_a, id_b], [proof_a, proof_b], [signer...],
                                          reason]                     misbehaviour evidence, n >= 1
        p/<chain>\\0<seq>                 PACKET_FIELDS values         a received packet
        r/<chain>\\0<record_id>           seq
        t/<chain>\\0<tx_id>               seq
        O/<chain>\\0<org>                 count of the org's packets
        o/<chain>\\0<org>\\0<i>            seq of the org's i-th packet (i from 0, arrival order)
        F/<chain>\\0<flow>                count of the flow's packets
        f/<chain>\\0<flow>\\0<i>           seq of the flow's i-th packet
        n/<chain>\\0                      [contiguous, max_seq, count]
        a/<seq>                          [regulator_chain, regulator_height, "accepted", "",
                                          regulator_tx_id]            an ack of our packet seq
        b/<record_id>                    seq (the ack's record, checked against our outbox)
S2. Values are canonical (`ledger.codec`); records returned by queries are `[name, value]` pairs
    in the order of their Shape below (framework rule 6).
S3. Nothing here decides a rule; crosschain/xclient.py does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gmchain.contracts.framework import StateAccess, StateReader
from gmchain.contracts.results import Shape
from gmchain.contracts.xc_layout import (
    ClientState,
    client_key,
    outbox_key,
    validators_from_value,
)
from gmchain.ledger.codec import Value, decode, encode
from gmchain.ledger.genesis import GenesisValidator

__all__ = [
    "ACK_SHAPE",
    "ARRIVALS_SHAPE",
    "CLIENT_SHAPE",
    "EPOCH_END_SHAPE",
    "HEADER_SHAPE",
    "MISBEHAVIOUR_SHAPE",
    "PACKET_FIELDS",
    "PACKET_SHAPE",
    "Keys",
    "StoredHeader",
    "load_client",
    "u64",
]

SEP = b"\x00"


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _c(prefix: bytes, chain: str) -> bytes:
    return prefix + chain.encode() + SEP


class Keys:
    """Rule S1, one function per key."""

    @staticmethod
    def meta(chain: str) -> bytes:
        return _c(b"m/", chain)

    @staticmethod
    def header(chain: str, height: int) -> bytes:
        return _c(b"h/", chain) + u64(height)

    @staticmethod
    def update(chain: str, n: int) -> bytes:
        return _c(b"u/", chain) + u64(n)

    @staticmethod
    def epoch_end(chain: str, epoch: int) -> bytes:
        return _c(b"e/", chain) + u64(epoch)

    @staticmethod
    def epoch_set(chain: str, epoch: int) -> bytes:
        return _c(b"s/", chain) + u64(epoch)

    @staticmethod
    def evidence(chain: str, n: int) -> bytes:
        return _c(b"x/", chain) + u64(n)

    @staticmethod
    def packet(chain: str, seq: int) -> bytes:
        return _c(b"p/", chain) + u64(seq)

    @staticmethod
    def record(chain: str, record_id: str) -> bytes:
        return _c(b"r/", chain) + record_id.encode()

    @staticmethod
    def tx(chain: str, tx_id: bytes) -> bytes:
        return _c(b"t/", chain) + tx_id

    @staticmethod
    def org_count(chain: str, org: str) -> bytes:
        return _c(b"O/", chain) + org.encode()

    @staticmethod
    def org_item(chain: str, org: str, i: int) -> bytes:
        return _c(b"o/", chain) + org.encode() + SEP + u64(i)

    @staticmethod
    def flow_count(chain: str, flow: str) -> bytes:
        return _c(b"F/", chain) + flow.encode()

    @staticmethod
    def flow_item(chain: str, flow: str, i: int) -> bytes:
        return _c(b"f/", chain) + flow.encode() + SEP + u64(i)

    @staticmethod
    def arrivals(chain: str) -> bytes:
        return _c(b"n/", chain)

    @staticmethod
    def ack(seq: int) -> bytes:
        return b"a/" + u64(seq)

    @staticmethod
    def ack_record(record_id: str) -> bytes:
        return b"b/" + record_id.encode()


def load_client(state: StateReader, chain: str) -> ClientState | None:
    raw = state.get(client_key(chain))
    return None if raw is None else ClientState.decode(raw)


def get_int(state: StateReader, key: bytes) -> int | None:
    raw = state.get(key)
    return None if raw is None else int.from_bytes(raw, "big")


def get_value(state: StateReader, key: bytes) -> list[Value] | None:
    raw = state.get(key)
    return None if raw is None else list(decode(raw))


def put_value(state: StateAccess, key: bytes, value: Sequence[Value]) -> None:
    state.put(key, encode(list(value)))


def load_set(state: StateReader, chain: str, epoch: int) -> tuple[GenesisValidator, ...] | None:
    raw = state.get(Keys.epoch_set(chain, epoch))
    return None if raw is None else validators_from_value(decode(raw))


def load_meta(state: StateReader, chain: str) -> tuple[int, int]:
    v = get_value(state, Keys.meta(chain))
    return (0, 0) if v is None else (v[0], v[1])


@dataclass(frozen=True, slots=True)
class StoredHeader:
    """An `h/` value (rule S1)."""

    height: int
    block_id: bytes
    tx_root: bytes
    tx_count: int
    receipt_root: bytes
    epoch: int
    timestamp_ms: int
    update_no: int

    def value(self) -> list[Value]:
        return [
            self.block_id,
            self.tx_root,
            self.tx_count,
            self.receipt_root,
            self.epoch,
            self.timestamp_ms,
            self.update_no,
        ]

    @classmethod
    def load(cls, state: StateReader, chain: str, height: int) -> StoredHeader | None:
        v = get_value(state, Keys.header(chain, height))
        return None if v is None else cls(height, *v)


# --- result shapes -----------------------------------------------------------------------------

_STR = Shape.of("str")
_INT = Shape.of("int")
_HASH = Shape.of("bytes", size=32)

VALIDATOR_SHAPE = Shape.record(
    ("pubkey", Shape.of("bytes", size=65)), ("power", _INT), ("org", _STR)
)
CLIENT_SHAPE = Shape.record(
    ("chain_id", _STR),
    ("genesis_hash", _HASH),
    ("genesis_block_id", _HASH),
    ("epoch", _INT),
    ("validators", Shape.list_of(VALIDATOR_SHAPE)),
    ("status", _STR),
    ("latest_height", _INT),
    ("frozen_reason", _STR.or_none()),
    ("certificates", _INT),
    ("misbehaviours", _INT),
    doc="a light client of a registered chain",
)
HEADER_SHAPE = Shape.record(
    ("height", _INT),
    ("block_id", _HASH),
    ("tx_root", _HASH),
    ("tx_count", _INT),
    ("receipt_root", _HASH),
    ("epoch", _INT),
    ("timestamp_ms", _INT),
    ("update_no", _INT),
    doc="a verified header of a registered chain",
)
PACKET_FIELDS = (
    "height",
    "index",
    "tx_id",
    "org",
    "flow_id",
    "record_id",
    "scenario",
    "step",
    "data_digest",
    "record_hash",
    "arrived_height",
    "recv_tx_id",
)
PACKET_SHAPE = Shape.record(
    ("chain_id", _STR),
    ("seq", _INT),
    ("height", _INT),
    ("index", _INT),
    ("tx_id", _HASH),
    ("org", _STR),
    ("flow_id", _STR),
    ("record_id", _STR),
    ("scenario", _STR),
    ("step", _STR),
    ("data_digest", _HASH),
    ("record_hash", _HASH),
    ("arrived_height", _INT),
    ("recv_tx_id", _HASH),
    doc="the verified copy of a relayed evidence record",
)
EPOCH_END_SHAPE = Shape.record(
    ("epoch", _INT),
    ("height", _INT),
    ("block_id", _HASH),
    ("next_fingerprint", _HASH),
    ("update_no", _INT),
    doc="the verified end of an epoch of a registered chain",
)
ARRIVALS_SHAPE = Shape.record(
    ("chain_id", _STR),
    ("contiguous", _INT),
    ("max_seq", _INT),
    ("count", _INT),
    ("missing", Shape.list_of(_INT)),
)
MISBEHAVIOUR_SHAPE = Shape.record(
    ("n", _INT),
    ("height", _INT),
    ("block_ids", Shape.list_of(_HASH)),
    ("proofs", Shape.list_of(Shape.of("bytes"))),
    ("signers", Shape.list_of(Shape.of("bytes", size=20))),
    ("reason", _STR),
)
ACK_SHAPE = Shape.record(
    ("seq", _INT),
    ("record_id", _STR.or_none()),
    ("regulator", _STR),
    ("regulator_height", _INT),
    ("status", _STR),
    ("reason", _STR),
    ("regulator_tx_id", _HASH),
)
RESULT_SHAPE = Shape.record(("seq", _INT), ("status", _STR), ("reason", _STR))
UPDATE_SHAPE = Shape.record(
    ("chain_id", _STR),
    ("status", _STR),
    ("epoch", _INT),
    ("latest_height", _INT),
    ("new_headers", _INT),
    ("reason", _STR.or_none()),
)
ACK_RESULT_SHAPE = Shape.record(("new", _INT), ("known", _INT), ("unmatched", _INT))


def client_result(state: StateReader, chain: str, cs: ClientState) -> list[Value]:
    certs, misb = load_meta(state, chain)
    vals: list[Value] = [VALIDATOR_SHAPE.pairs(v.pubkey, v.power, v.org) for v in cs.validators]
    return CLIENT_SHAPE.pairs(
        chain,
        cs.genesis_hash,
        cs.genesis_block_id,
        cs.epoch,
        vals,
        cs.status,
        cs.latest_height,
        cs.frozen_reason,
        certs,
        misb,
    )


def packet_result(state: StateReader, chain: str, seq: int) -> list[Value] | None:
    v = get_value(state, Keys.packet(chain, seq))
    return None if v is None else PACKET_SHAPE.pairs(chain, seq, *v)


def ack_result(state: StateReader, seq: int, outbox: StateReader) -> list[Value] | None:
    v = get_value(state, Keys.ack(seq))
    if v is None:
        return None
    out = get_value(outbox, outbox_key(seq))
    record_id = None if out is None else out[1]
    return ACK_SHAPE.pairs(seq, record_id, *v)
