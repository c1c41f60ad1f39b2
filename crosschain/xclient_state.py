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

from collections.abc import Callable, Sequence
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


def _chain(prefix: bytes, chain: str) -> bytes:
    """`<prefix><chain>\\0`: what every per-chain key starts with (rule S1)."""
    return prefix + chain.encode() + SEP


def _chain_key(prefix: bytes) -> Callable[[str], bytes]:
    return lambda chain: _chain(prefix, chain)


def _chain_u64_key(prefix: bytes) -> Callable[[str, int], bytes]:
    """`<prefix><chain>\\0<n>`, n a u64."""
    return lambda chain, n: _chain(prefix, chain) + u64(n)


def _chain_text_key(prefix: bytes) -> Callable[[str, str], bytes]:
    """`<prefix><chain>\\0<text>` (an org, flow or record id)."""
    return lambda chain, text: _chain(prefix, chain) + text.encode()


def _chain_text_u64_key(prefix: bytes) -> Callable[[str, str, int], bytes]:
    """`<prefix><chain>\\0<text>\\0<i>`, i a u64."""
    return lambda chain, text, i: _chain(prefix, chain) + text.encode() + SEP + u64(i)


def _chain_bytes_key(prefix: bytes) -> Callable[[str, bytes], bytes]:
    """`<prefix><chain>\\0<raw bytes>` (a tx id)."""
    return lambda chain, raw: _chain(prefix, chain) + raw


class Keys:
    """Rule S1, one entry per key of its table: the prefix and the shape; the comment names the
    arguments after the chain."""

    meta = staticmethod(_chain_key(b"m/"))
    header = staticmethod(_chain_u64_key(b"h/"))  # height
    update = staticmethod(_chain_u64_key(b"u/"))  # update_no
    epoch_end = staticmethod(_chain_u64_key(b"e/"))  # epoch
    epoch_set = staticmethod(_chain_u64_key(b"s/"))  # epoch
    evidence = staticmethod(_chain_u64_key(b"x/"))  # n
    packet = staticmethod(_chain_u64_key(b"p/"))  # seq
    record = staticmethod(_chain_text_key(b"r/"))  # record_id
    tx = staticmethod(_chain_bytes_key(b"t/"))  # tx_id
    org_count = staticmethod(_chain_text_key(b"O/"))  # org
    org_item = staticmethod(_chain_text_u64_key(b"o/"))  # org, i
    flow_count = staticmethod(_chain_text_key(b"F/"))  # flow
    flow_item = staticmethod(_chain_text_u64_key(b"f/"))  # flow, i
    arrivals = staticmethod(_chain_key(b"n/"))

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
