"""Packets and acknowledgements for the xclient contract (crosschain/xclient.py X3, X4).

Rules this module keeps (docs/crosschain.md, "Packets", "Acknowledgements"):
P1. A transaction is proven against a VERIFIED header (`h/`) only: its id is leaf `index` of the
    header's tx_root (`tx_count` leaves), its receipt's bytes leaf `index` of receipt_root, the
    receipt names that id and has status OK (`prove_tx`). A header of epoch e above the verified
    end of e (`e/`) proves nothing: it is the ended epoch's uncommitted suffix, verified before
    the end was known. Hash-only: no signature is checked
    here; the header's certificate was checked by update_client.
P2. A packet's transaction calls `evidence.submit` on its source chain; its receipt carries the
    evidence events (each: the first of its name whose first field matches, with exactly the
    fields the evidence contract emits, in order) `PacketQueued(seq, dest, record_id)` with the
    packet's seq, dest == this chain, the tx's record id, then `EvidenceSubmitted(record_id,
    flow_id, org, step, record_hash)` with the tx's record id, flow id and step, org a string
    and record_hash 32 bytes. Every value stored comes from the proven
    transaction and receipt, never from the packet's own claims (only seq, which the
    PacketQueued event must repeat).
P3. Each packet is judged alone: `Refused(reason)` for one never blocks another.
P4. `p/<seq>` present with the same tx id, or `t/<tx_id>` present: duplicate (idempotent).
    `p/<seq>` present with another tx id: refused (the source queued one seq twice).
P5. An ack's transaction calls `xclient.recv_packets` on the regulator chain and succeeded; each
    of its `PacketReceived` events with chain == this chain and status accepted acknowledges
    that seq, provided our own outbox (evidence namespace) holds that seq for the same record id.
"""

from __future__ import annotations

from dataclasses import dataclass

from gmchain.contracts.framework import Context, StateReader
from gmchain.contracts.xc_layout import FROZEN, PACKET_QUEUED, outbox_key
from gmchain.crosschain.packets import Ack, Packet, PacketFormatError, TxProof
from gmchain.crosschain.xclient_state import (
    Keys,
    StoredHeader,
    get_int,
    get_value,
    load_client,
    put_value,
    u64,
)
from gmchain.ledger.codec import Value
from gmchain.ledger.merkle import leaf_hash, verify_inclusion
from gmchain.ledger.types import Event, Receipt, ReceiptStatus, SignedTx

__all__ = ["ACCEPTED", "DUPLICATE", "Refused", "ack_events", "prove_tx", "receive_packet"]

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
MAX_CONTIGUOUS_STEP = 10_000  # one arrival walks at most this many seqs (bounded CPU)


class Refused(Exception):
    """Rule P3: this packet (or ack) is refused; the message is the reason."""

    def __init__(self, reason: str, chain: str = "", seq: int = 0) -> None:
        super().__init__(reason)
        self.chain, self.seq = chain, seq


@dataclass(frozen=True, slots=True)
class Proven:
    tx: SignedTx
    tx_id: bytes
    receipt: Receipt
    header: StoredHeader


def _fields(e: Event) -> dict[str, Value]:
    return dict(e.fields)


def source_client(state: StateReader, chain: str) -> None:
    cs = load_client(state, chain)
    if cs is None:
        raise Refused(f"chain {chain!r} is not registered")
    if cs.status == FROZEN:
        raise Refused(f"the client of {chain!r} is frozen")


def prove_tx(state: StateReader, chain: str, proof: TxProof) -> Proven:
    """Rule P1."""
    hdr = StoredHeader.load(state, chain, proof.height)
    if hdr is None:
        raise Refused(f"header {proof.height} of {chain} is not verified (update the client)")
    end = get_value(state, Keys.epoch_end(chain, hdr.epoch))
    if end is not None and hdr.height > int(end[0]):
        raise Refused(
            f"header {proof.height} of {chain} is above the end of its epoch {hdr.epoch} "
            f"(height {end[0]}): an ended epoch's uncommitted suffix"
        )
    try:
        tx = proof.decode_tx()
        receipt = proof.decode_receipt()
    except PacketFormatError as exc:
        raise Refused(str(exc)) from None
    tx_id = tx.tx_id
    if not verify_inclusion(
        leaf_hash(tx_id), proof.index, hdr.tx_count, proof.tx_path, hdr.tx_root
    ):
        raise Refused(
            f"the transaction is not leaf {proof.index} of block {proof.height}'s tx_root"
        )
    if not verify_inclusion(
        leaf_hash(proof.receipt), proof.index, hdr.tx_count, proof.receipt_path, hdr.receipt_root
    ):
        raise Refused(
            f"the receipt is not leaf {proof.index} of block {proof.height}'s receipt_root"
        )
    if receipt.tx_id != tx_id:
        raise Refused("the receipt belongs to another transaction")
    if receipt.status != ReceiptStatus.OK:
        raise Refused(f"the transaction did not succeed (status {receipt.status.name})")
    if tx.body.chain_id != chain:
        raise Refused(f"the transaction is for chain {tx.body.chain_id!r}")
    return Proven(tx=tx, tx_id=tx_id, receipt=receipt, header=hdr)


QUEUED_FIELDS = ("seq", "dest", "record_id")
SUBMITTED_FIELDS = ("record_id", "flow_id", "org", "step", "record_hash")


def _event(receipt: Receipt, name: str, first: tuple[str, Value]) -> dict[str, Value] | None:
    """Rule P2: the first `evidence` event `name` whose first field is `first`; with a field
    named twice, or a list of names other than the one the evidence contract emits, None."""
    want = QUEUED_FIELDS if name == PACKET_QUEUED else SUBMITTED_FIELDS
    for e in receipt.events:
        if (e.contract, e.name) == ("evidence", name) and e.fields and tuple(e.fields[0]) == first:
            if tuple(n for n, _ in e.fields) != want:
                raise Refused(f"the {name} event's fields are not {', '.join(want)}")
            return dict(e.fields)
    return None


def _packet_values(p: Packet, proven: Proven, dest: str) -> list[Value]:
    """Rule P2: the stored copy's first ten values, all from the proven tx and receipt."""
    body = proven.tx.body
    if (body.contract, body.method) != ("evidence", "submit"):
        raise Refused(f"the transaction calls {body.contract}.{body.method}, not evidence.submit")
    args = body.args
    if (
        len(args) < 5
        or not all(isinstance(a, str) for a in args[:4])
        or not isinstance(args[4], bytes)
    ):
        raise Refused("the evidence.submit arguments are not a record")
    record_id, flow_id, scenario, step, digest = args[:5]
    queued = _event(proven.receipt, PACKET_QUEUED, ("seq", p.seq))
    if queued is None:
        raise Refused(f"the receipt has no PacketQueued event with seq {p.seq}")
    if queued.get("dest") != dest:
        raise Refused(f"packet {p.seq} was queued for {queued.get('dest')!r}, not this chain")
    if queued.get("record_id") != record_id:
        raise Refused(f"packet {p.seq}'s PacketQueued event names another record")
    sub = _event(proven.receipt, "EvidenceSubmitted", ("record_id", record_id))
    if sub is None:
        raise Refused("the receipt has no EvidenceSubmitted event for the record")
    if (sub["flow_id"], sub["step"]) != (flow_id, step):
        raise Refused("the EvidenceSubmitted event names another flow or step than the tx")
    if not isinstance(sub["org"], str) or not (
        isinstance(sub["record_hash"], bytes) and len(sub["record_hash"]) == 32
    ):
        raise Refused("the EvidenceSubmitted event's org or record_hash is malformed")
    return [
        proven.header.height,
        p.proof.index,
        proven.tx_id,
        sub["org"],
        flow_id,
        record_id,
        scenario,
        step,
        digest,
        sub["record_hash"],
    ]


def receive_packet(ctx: Context, raw: bytes) -> tuple[str, int, str, str]:
    """X3 for one packet: (source chain, seq, status, record id or reason); writes if accepted."""
    try:
        p = Packet.decode(raw)
    except PacketFormatError as exc:
        raise Refused(f"malformed packet: {exc}") from None
    src = p.source_chain_id
    try:
        if p.dest_chain_id != ctx.chain_id:
            raise Refused(f"the packet is for chain {p.dest_chain_id!r}, not {ctx.chain_id!r}")
        source_client(ctx.state, src)
        proven = prove_tx(ctx.state, src, p.proof)
        values = _packet_values(p, proven, ctx.chain_id)
    except Refused as exc:
        raise Refused(str(exc), src, p.seq) from None
    record_id = values[5]
    stored = get_value(ctx.state, Keys.packet(src, p.seq))
    if stored is not None:
        if stored[2] == proven.tx_id:
            return src, p.seq, DUPLICATE, str(record_id)
        raise Refused(f"seq {p.seq} of {src} already arrived with another transaction", src, p.seq)
    seen = get_int(ctx.state, Keys.tx(src, proven.tx_id))
    if seen is not None:
        raise Refused(f"the transaction already arrived as seq {seen}", src, p.seq)
    if ctx.state.get(Keys.record(src, str(record_id))) is not None:
        raise Refused(f"record {record_id!r} of {src} already arrived", src, p.seq)
    _store(ctx, src, p.seq, [*values, ctx.height, ctx.tx_id])
    return src, p.seq, ACCEPTED, str(record_id)


def _store(ctx: Context, src: str, seq: int, values: list[Value]) -> None:
    st = ctx.state
    org, flow, record_id, tx_id = str(values[3]), str(values[4]), str(values[5]), values[2]
    put_value(st, Keys.packet(src, seq), values)
    st.put(Keys.record(src, record_id), u64(seq))
    assert isinstance(tx_id, bytes)
    st.put(Keys.tx(src, tx_id), u64(seq))
    n = get_int(st, Keys.org_count(src, org)) or 0
    st.put(Keys.org_item(src, org, n), u64(seq))
    st.put(Keys.org_count(src, org), u64(n + 1))
    n = get_int(st, Keys.flow_count(src, flow)) or 0
    st.put(Keys.flow_item(src, flow, n), u64(seq))
    st.put(Keys.flow_count(src, flow), u64(n + 1))
    arr = get_value(st, Keys.arrivals(src)) or [0, 0, 0]
    contiguous, max_seq, count = int(arr[0]), int(arr[1]), int(arr[2])
    steps = 0  # p/<seq> is written above; a walk cut short by the bound resumes next time
    while steps < MAX_CONTIGUOUS_STEP and st.get(Keys.packet(src, contiguous + 1)) is not None:
        contiguous += 1
        steps += 1
    put_value(st, Keys.arrivals(src), [contiguous, max(max_seq, seq), count + 1])


def ack_events(ctx: Context, raw: bytes) -> tuple[str, int, bytes, list[tuple[int, str]]]:
    """X4 / rule P5: (regulator chain, its height, its tx id, [(seq, record id), ...])."""
    try:
        ack = Ack.decode(raw)
    except PacketFormatError as exc:
        raise Refused(f"malformed ack: {exc}") from None
    src = ack.source_chain_id
    if ack.dest_chain_id != ctx.chain_id:
        raise Refused(f"the ack is for chain {ack.dest_chain_id!r}, not {ctx.chain_id!r}")
    source_client(ctx.state, src)
    proven = prove_tx(ctx.state, src, ack.proof)
    body = proven.tx.body
    if (body.contract, body.method) != ("xclient", "recv_packets"):
        raise Refused(
            f"the transaction calls {body.contract}.{body.method}, not xclient.recv_packets"
        )
    out: list[tuple[int, str]] = []
    for e in proven.receipt.events:
        f = _fields(e)
        if (e.contract, e.name) != ("xclient", "PacketReceived") or f.get("chain") != ctx.chain_id:
            continue
        seq, record_id = f.get("seq"), f.get("record_id")
        if f.get("status") == ACCEPTED and isinstance(seq, int) and isinstance(record_id, str):
            out.append((seq, record_id))
    return src, proven.header.height, proven.tx_id, out


def outbox_record(ctx: Context, seq: int) -> str | None:
    """The record id our evidence outbox queued as `seq` (xc_layout rule 3), or None."""
    v = get_value(ctx.reader_for("evidence"), outbox_key(seq))
    return None if v is None or not isinstance(v[1], str) else v[1]
