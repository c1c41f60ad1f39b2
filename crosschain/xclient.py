"""The xclient system contract: light clients of foreign chains, relayed packets and acks.

Every gmchain chain runs it (regulator and business chains alike; issue 13, docs/crosschain.md).
Registration, unfreezing and the relay rule are governance decisions written into this
contract's namespace by the governance contract (contracts/xc_layout.py; framework rule 7); the
methods below are what a relayer, an ordinary admitted account, calls.

Rules this contract keeps (the state layout is crosschain/xclient_state.py rule S1):
X1. `update_client(update)`: a `ClientUpdate` (crosschain/packets.py) for a registered, active
    chain. Epoch changes are followed in order from the trusted epoch, then the certificate is
    checked with its epoch's set, all by chain/lightclient.py (crosschain/xclient_update.py
    U1-U4). Effects: the client's epoch and set advance; every new header is stored as verified
    with the number of the certificate that verified it (numbering: xclient_update.py U7), whose
    CommitProof and this transaction's id are kept at `u/`; latest_height = the highest
    verified height; event `ClientUpdated` (with `update_nos`, the numbers given). Repeats are
    no-ops (OK).
    A certified header conflicting with a verified one (same height and epoch, another block)
    or a second, different epoch change of one epoch is MISBEHAVIOUR: the call succeeds but only
    freezes the client (xclient_update.py U5, U6; event `ClientFrozen`).
X2. `submit_misbehaviour(evidence)`: a `Misbehaviour`; both certificates verify with the set of
    their (common) epoch and commit different blocks at one height -> freeze as in X1;
    otherwise FAILED with the reason.
X3. `recv_packets(packets)`: 1..64 items, each `[Packet bytes]`. Each packet is judged alone
    (crosschain/xclient_packets.py P1-P4): `accepted` (stored, indexed, arrival summary
    advanced), `duplicate` (already here), or refused with a reason. One event per packet:
    `PacketReceived(chain, seq, status, record_id)` or `PacketRefused(chain, seq, reason)`. The
    call is FAILED only when every packet is refused (the error names the first reason). A
    reason is cut to MAX_ERROR_BYTES (`framework.error_text`), and chain ids are bounded at
    decode (crosschain/packets.py rule 4), so no event of a receipt outgrows the codec's limits.
X4. `recv_ack(ack)`: an `Ack` whose proven transaction is a successful `xclient.recv_packets`
    on the registered source chain (P1, P5); each accepted packet of ours it names, whose seq
    our outbox holds for the same record, is recorded once at `a/<seq>` (event `AckRecorded`);
    repeats are no-ops. FAILED when the proof fails.
X5. Bounds: packets <= 64 per call, bytes arguments <= 1 MiB (the transaction size limit binds
    first), query pages <= 1000 items, `missing` scans at most 10,000 seqs.
X6. Queries read only; results are records (framework rule 6) of the shapes in
    crosschain/xclient_state.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gmchain.contracts.framework import (
    Arg,
    Context,
    Contract,
    ContractError,
    QueryContext,
    error_text,
    method,
    query,
)
from gmchain.contracts.results import Shape
from gmchain.contracts.xc_layout import XCLIENT, ClientState
from gmchain.crosschain.packets import ClientUpdate, Misbehaviour, PacketFormatError
from gmchain.crosschain.xclient_packets import (
    Refused,
    ack_events,
    outbox_record,
    receive_packet,
)
from gmchain.crosschain.xclient_state import (
    ACK_RESULT_SHAPE,
    ACK_SHAPE,
    ARRIVALS_SHAPE,
    CLIENT_SHAPE,
    EPOCH_END_SHAPE,
    HEADER_SHAPE,
    MISBEHAVIOUR_SHAPE,
    PACKET_SHAPE,
    RESULT_SHAPE,
    UPDATE_SHAPE,
    Keys,
    StoredHeader,
    ack_result,
    client_result,
    get_int,
    get_value,
    load_client,
    load_meta,
    packet_result,
    put_value,
    u64,
)
from gmchain.crosschain.xclient_update import (
    UpdatePlan,
    apply_freeze,
    apply_plan,
    plan_misbehaviour,
    plan_update,
)
from gmchain.ledger.codec import Value

__all__ = ["MAX_PACKETS", "XClientContract"]

MAX_PACKETS = 64
MAX_PAGE = 1000
MAX_MISSING_SCAN = 10_000
_BLOB = 1024 * 1024
_T = TypeVar("_T")

_CHAIN = Arg("chain_id", str, max_len=64, doc="a registered chain's id")
_START = Arg("start", int, optional=True, doc="first position (default 0)")
_LIMIT = Arg("limit", int, optional=True, min=1, max=MAX_PAGE, doc="default 100")


def _decode(decode: Callable[[bytes], _T], data: bytes, what: str) -> _T:
    """A transaction's message argument, or the transaction fails: malformed bytes are the
    sender's fault (rules X1, X2)."""
    try:
        return decode(data)
    except PacketFormatError as exc:
        raise ContractError(f"malformed {what}: {exc}") from None


class XClientContract(Contract):
    """Light clients of registered chains, the packets relayed from them, and acks of ours."""

    NAME = XCLIENT

    # -- transactions ---------------------------------------------------------------------------

    @method(
        Arg("update", bytes, max_len=_BLOB, doc="a ClientUpdate (crosschain/packets.py)"),
        returns=UPDATE_SHAPE,
    )
    def update_client(self, ctx: Context, update: bytes) -> Value:
        """Follow a registered chain's epoch changes and verify a certificate (rule X1)."""
        u = _decode(ClientUpdate.decode, update, "client update")
        return self._finish(ctx, u.chain_id, plan_update(ctx.state, u.chain_id, u))

    @method(
        Arg("evidence", bytes, max_len=_BLOB, doc="a Misbehaviour (crosschain/packets.py)"),
        returns=UPDATE_SHAPE,
    )
    def submit_misbehaviour(self, ctx: Context, evidence: bytes) -> Value:
        """Freeze a client with two conflicting certificates of one epoch (rule X2)."""
        m = _decode(Misbehaviour.decode, evidence, "misbehaviour")
        return self._finish(ctx, m.chain_id, plan_misbehaviour(ctx.state, m.chain_id, m))

    @staticmethod
    def _finish(ctx: Context, chain: str, plan: UpdatePlan) -> Value:
        if plan.freeze is not None:
            apply_freeze(ctx, chain, plan)
            cs = load_client(ctx.state, chain)
            assert cs is not None
            return UPDATE_SHAPE.pairs(
                chain, cs.status, cs.epoch, cs.latest_height, 0, plan.freeze.reason
            )
        new = len(plan.headers)
        if new or plan.epoch_ends:
            first = load_meta(ctx.state, chain)[0] + 1
            numbers: list[Value] = list(range(first, first + len(plan.certificates)))
            apply_plan(ctx, chain, plan)
            ctx.emit(
                "ClientUpdated",
                ("chain", chain),
                ("epoch", plan.state.epoch),
                ("latest_height", plan.state.latest_height),
                ("new_headers", new),
                ("update_nos", numbers),
            )
        return UPDATE_SHAPE.pairs(
            chain, plan.state.status, plan.state.epoch, plan.state.latest_height, new, None
        )

    @method(
        Arg(
            "packets",
            list,
            min_len=1,
            max_len=MAX_PACKETS,
            items=(Arg("packet", bytes, max_len=_BLOB),),
            doc="[[Packet bytes], ...]",
        ),
        returns=Shape.list_of(RESULT_SHAPE, doc="one outcome per packet, in order"),
    )
    def recv_packets(self, ctx: Context, packets: list[list[bytes]]) -> Value:
        """Receive relayed evidence packets, each judged alone (rule X3)."""
        out: list[Value] = []
        first_reason: str | None = None
        for (raw,) in packets:
            try:
                src, seq, status, record_id = receive_packet(ctx, raw)
            except Refused as exc:
                reason = error_text(exc)  # rule X3: at most MAX_ERROR_BYTES
                first_reason = first_reason or reason
                ctx.emit(
                    "PacketRefused", ("chain", exc.chain), ("seq", exc.seq), ("reason", reason)
                )
                out.append(RESULT_SHAPE.pairs(exc.seq, "refused", reason))
                continue
            ctx.emit(
                "PacketReceived",
                ("chain", src),
                ("seq", seq),
                ("status", status),
                ("record_id", record_id),
            )
            out.append(RESULT_SHAPE.pairs(seq, status, ""))
        if first_reason is not None and all(r[1][1] == "refused" for r in out):
            raise ContractError(f"all {len(out)} packets refused; the first: {first_reason}")
        return out

    @method(
        Arg("ack", bytes, max_len=_BLOB, doc="an Ack (crosschain/packets.py)"),
        returns=ACK_RESULT_SHAPE,
    )
    def recv_ack(self, ctx: Context, ack: bytes) -> Value:
        """Record the regulator's acceptance of packets of ours (rule X4)."""
        try:
            src, height, reg_tx, seqs = ack_events(ctx, ack)
        except Refused as exc:
            raise ContractError(f"ack refused: {exc}") from None
        new = known = unmatched = 0
        for seq, record_id in seqs:
            if ctx.state.get(Keys.ack(seq)) is not None:
                known += 1
                continue
            if outbox_record(ctx, seq) != record_id:
                unmatched += 1
                continue
            put_value(ctx.state, Keys.ack(seq), [src, height, "accepted", "", reg_tx])
            ctx.state.put(Keys.ack_record(record_id), u64(seq))
            ctx.emit(
                "AckRecorded",
                ("seq", seq),
                ("record_id", record_id),
                ("regulator", src),
                ("height", height),
            )
            new += 1
        return ACK_RESULT_SHAPE.pairs(new, known, unmatched)

    # -- queries --------------------------------------------------------------------------------

    @query(_CHAIN, returns=CLIENT_SHAPE.or_none())
    def client(self, q: QueryContext, chain_id: str) -> Value:
        """The light client of a registered chain, or None."""
        cs = load_client(q.state, chain_id)
        return None if cs is None else client_result(q.state, chain_id, cs)

    @query(returns=Shape.list_of(CLIENT_SHAPE))
    def clients(self, q: QueryContext) -> Value:
        """Every registered chain's client (at most 1000), ascending by chain id."""
        out: list[Value] = []
        for key, raw in q.state.scan(b"c/", MAX_PAGE):
            chain = key[2:].decode()
            out.append(client_result(q.state, chain, ClientState.decode(raw)))
        return out

    @query(_CHAIN, Arg("height", int), returns=HEADER_SHAPE.or_none())
    def header(self, q: QueryContext, chain_id: str, height: int) -> Value:
        """A verified header of a registered chain, or None."""
        s = StoredHeader.load(q.state, chain_id, height)
        return None if s is None else HEADER_SHAPE.pairs(height, *s.value())

    @query(_CHAIN, Arg("update_no", int, min=1), returns=Shape.of("bytes").or_none())
    def update_proof(self, q: QueryContext, chain_id: str, update_no: int) -> Value:
        """The CommitProof bytes of verified certificate `update_no` (see header.update_no)."""
        v = get_value(q.state, Keys.update(chain_id, update_no))
        return None if v is None else v[0]

    @query(_CHAIN, Arg("update_no", int, min=1), returns=Shape.of("bytes", size=32).or_none())
    def update_tx(self, q: QueryContext, chain_id: str, update_no: int) -> Value:
        """The id of the update_client transaction that verified certificate `update_no`."""
        v = get_value(q.state, Keys.update(chain_id, update_no))
        return None if v is None else v[1]

    @query(_CHAIN, Arg("epoch", int), returns=EPOCH_END_SHAPE.or_none())
    def epoch_end(self, q: QueryContext, chain_id: str, epoch: int) -> Value:
        """The verified end of `epoch` of a registered chain (its epoch change), or None."""
        v = get_value(q.state, Keys.epoch_end(chain_id, epoch))
        return None if v is None else EPOCH_END_SHAPE.pairs(epoch, *v)

    @query(
        _CHAIN,
        Arg("missing_limit", int, optional=True, max=MAX_PAGE, doc="default 100"),
        returns=ARRIVALS_SHAPE,
    )
    def arrivals(self, q: QueryContext, chain_id: str, missing_limit: int | None) -> Value:
        """Packets arrived from a chain: contiguous, max_seq, count and the first missing seqs."""
        arr = get_value(q.state, Keys.arrivals(chain_id)) or [0, 0, 0]
        contiguous, max_seq = int(arr[0]), int(arr[1])
        limit = 100 if missing_limit is None else missing_limit
        missing: list[Value] = []
        seq = contiguous + 1
        while seq < max_seq and len(missing) < limit and seq - contiguous <= MAX_MISSING_SCAN:
            if q.state.get(Keys.packet(chain_id, seq)) is None:
                missing.append(seq)
            seq += 1
        return ARRIVALS_SHAPE.pairs(chain_id, contiguous, max_seq, arr[2], missing)

    @query(_CHAIN, Arg("seq", int, min=1), returns=PACKET_SHAPE.or_none())
    def packet(self, q: QueryContext, chain_id: str, seq: int) -> Value:
        """The verified copy of packet `seq` from a chain, or None."""
        return packet_result(q.state, chain_id, seq)

    @query(_CHAIN, Arg("record_id", str, max_len=64), returns=PACKET_SHAPE.or_none())
    def record(self, q: QueryContext, chain_id: str, record_id: str) -> Value:
        """The verified copy of a relayed record, by its id on the source chain, or None."""
        seq = get_int(q.state, Keys.record(chain_id, record_id))
        return None if seq is None else packet_result(q.state, chain_id, seq)

    @query(_CHAIN, Arg("org", str, max_len=64), _START, _LIMIT, returns=Shape.list_of(PACKET_SHAPE))
    def by_org(
        self, q: QueryContext, chain_id: str, org: str, start: int | None, limit: int | None
    ) -> Value:
        """An org's relayed records in arrival order, from position `start`."""
        return self._page(q, chain_id, Keys.org_count(chain_id, org),
                          lambda i: Keys.org_item(chain_id, org, i), start, limit)  # fmt: skip

    @query(
        _CHAIN, Arg("flow", str, max_len=64), _START, _LIMIT, returns=Shape.list_of(PACKET_SHAPE)
    )
    def by_flow(
        self, q: QueryContext, chain_id: str, flow: str, start: int | None, limit: int | None
    ) -> Value:
        """A flow's relayed records in arrival order, from position `start`."""
        return self._page(q, chain_id, Keys.flow_count(chain_id, flow),
                          lambda i: Keys.flow_item(chain_id, flow, i), start, limit)  # fmt: skip

    @staticmethod
    def _page(
        q: QueryContext, chain: str, count_key: bytes, item: object, start: int | None,
        limit: int | None,
    ) -> Value:  # fmt: skip
        n = get_int(q.state, count_key) or 0
        first = start or 0
        out: list[Value] = []
        for i in range(first, min(n, first + (100 if limit is None else limit))):
            seq = get_int(q.state, item(i))  # type: ignore[operator]
            assert seq is not None, "index gap"
            out.append(packet_result(q.state, chain, seq))
        return out

    @query(_CHAIN, returns=Shape.list_of(MISBEHAVIOUR_SHAPE))
    def misbehaviour(self, q: QueryContext, chain_id: str) -> Value:
        """The misbehaviour evidence stored for a chain, oldest first (at most 1000)."""
        n = min(load_meta(q.state, chain_id)[1], MAX_PAGE)
        out: list[Value] = []
        for i in range(1, n + 1):
            v = get_value(q.state, Keys.evidence(chain_id, i))
            assert v is not None
            out.append(MISBEHAVIOUR_SHAPE.pairs(i, *v))
        return out

    @query(Arg("seq", int, min=1), returns=ACK_SHAPE.or_none())
    def ack(self, q: QueryContext, seq: int) -> Value:
        """The regulator's ack of our packet `seq`, or None."""
        return ack_result(q.state, seq, q.reader_for("evidence"))

    @query(Arg("record_id", str, max_len=64), returns=ACK_SHAPE.or_none())
    def ack_of_record(self, q: QueryContext, record_id: str) -> Value:
        """The ack of our record `record_id`, or None (not queued, not acked yet)."""
        seq = get_int(q.state, Keys.ack_record(record_id))
        return None if seq is None else ack_result(q.state, seq, q.reader_for("evidence"))

    @query(Arg("start", int, optional=True, min=1, doc="first seq (default 1)"), _LIMIT,
           returns=Shape.list_of(ACK_SHAPE))  # fmt: skip
    def acks(self, q: QueryContext, start: int | None, limit: int | None) -> Value:
        """The acks of our seqs start .. start + limit - 1 that exist, ascending."""
        first = start or 1
        out: list[Value] = []
        for seq in range(first, first + (100 if limit is None else limit)):
            r = ack_result(q.state, seq, q.reader_for("evidence"))
            if r is not None:
                out.append(r)
        return out
