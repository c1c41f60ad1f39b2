"""The evidence contract: hash-linked evidence records per business flow, and attestations.

Rules this contract keeps (DESIGN.md, "Evidence model"; docs/evidence.md states them for users):
E1. Only an account with an org may submit; the record's owning org is the sender's org.
E2. A record id is used once, ever.
E3. A flow is one linear chain owned by one org. Its first record has prev_record_id None; every
    later record names the flow's current last record. Wrong, stale (fork) or foreign links are
    refused, each with its own message. Only the flow's org may extend it.
E4. Every field is bounded (see the schemas below); metadata is at most 16 [key, value] pairs with
    strictly ascending keys; the classification level is 1..5 (JR/T 0158-2018, securities and
    futures industry data classification, levels 1-5).
E5. The record hash is SM3(DOMAIN_RECORD || 0x00 || encode(RECORD_FIELDS values)), the same
    construction as `ledger.types.compute_signing_root`; `prev_hash` is the previous record's
    hash (32 zero bytes for a flow's first record), so a flow is an evidence chain.
E6. An attestation is an SM2 signature (GB/T 32918.2, default ID of GB/T 35276) by
    `attester_pubkey` over compute_signing_root("attest", [chain_id, record_id, data_digest]).
    The key must be valid, the signature must verify, one attestation per key per record, at most
    MAX_ATTESTATIONS per record. Any admitted account may carry the attestation transaction (the
    attester is usually an investor without an account).
E7. Check everything, then write.
E8. The outbox (issue 13; contracts/xc_layout.py rules 2, 3): after a record's writes, `submit`
    reads this chain's relay rule (the `xclient` namespace, read-only). If a rule is set and
    selects the record's scenario (no scenarios named: every one), the record is queued: seq =
    outbox count + 1 (seqs are contiguous from 1), `outbox_key(seq)` = [tx_id, record_id,
    flow_id, org], the count = seq, and the event PacketQueued(seq, dest, record_id). Without a
    rule nothing is queued. Queries `outbox(start, limit)` and `outbox_count()` read it.

State layout (keys relative to the contract's namespace):
    b"r/" + record_id                          -> encode(RECORD_FIELDS values + [record_hash])
    b"t/" + record_id                          -> encode(list of ATTESTATION_FIELDS lists)
    b"h/" + flow_id                            -> encode([org, count, last_record_id, last_hash])
    b"s/" + flow_id + b"\\x00" + seq (u64 BE)   -> record_id (UTF-8)
    b"d/" + data_digest(32) + record_id        -> b"\\x01"
    b"out/" + seq (u64 BE)                     -> encode([tx_id, record_id, flow_id, org])  (E8)
    b"outn"                                    -> the outbox count, u64 BE                   (E8)
Ids use IDENT_CHARS (no NUL), so the b"\\x00" separator makes every prefix exact.
Events: EvidenceSubmitted(record_id, flow_id, org, step, record_hash),
        EvidenceAttested(record_id, attester, role, attester_pubkey, count),
        PacketQueued(seq, dest, record_id) (E8).
"""

from __future__ import annotations

from collections.abc import Sequence

from gmchain.contracts.framework import (
    Arg,
    Context,
    Contract,
    ContractError,
    QueryContext,
    StateReader,
    method,
    query,
)
from gmchain.contracts.keys import CryptoSmVerifier, Sm2Verifier, address_of
from gmchain.contracts.results import Shape
from gmchain.contracts.xc_layout import (
    OUTBOX_COUNT_KEY,
    PACKET_QUEUED,
    RELAY_RULE_KEY,
    XCLIENT,
    RelayRule,
    outbox_key,
)
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.codec import Value, decode, encode
from gmchain.ledger.types import DOMAIN, compute_signing_root

__all__ = [
    "ATTESTATION_FIELDS",
    "ATTESTATION_SHAPE",
    "DOMAIN_RECORD",
    "FLOW_FIELDS",
    "FLOW_SHAPE",
    "MAX_ATTESTATIONS",
    "MAX_FLOW_PAGE",
    "MAX_METADATA",
    "MAX_OUTBOX_PAGE",
    "MAX_VERIFY",
    "OUTBOX_SHAPE",
    "RECORD_FIELDS",
    "RECORD_SHAPE",
    "SUBMIT_SHAPE",
    "VERIFY_FIELDS",
    "VERIFY_SHAPE",
    "EvidenceContract",
    "attest_message",
    "compute_record_hash",
]

DOMAIN_RECORD = DOMAIN["evidence-record"]
ZERO_HASH = bytes(32)
MAX_ATTESTATIONS = 16
MAX_METADATA = 16
MAX_FLOW_PAGE = 100
MAX_DIGEST_PAGE = 1000
MAX_VERIFY = 10_000
MAX_OUTBOX_PAGE = 1000

_STR = Shape.of("str")
_INT = Shape.of("int")
_HASH = Shape.of("bytes", size=32)
_ADDR = Shape.of("bytes", size=20)

# The hashed and stored fields of a record, in this order (rule E5), with their shapes. `get`
# returns these as [name, value] pairs, then ["record_hash", ...] and ["attestations", [...]].
_RECORD_FIELD_SHAPES: tuple[tuple[str, Shape], ...] = (
    ("record_id", _STR),
    ("chain_id", _STR),
    ("org", _STR),
    ("flow_id", _STR),
    ("seq", _INT),  # position in the flow, from 0
    ("scenario", _STR),
    ("step", _STR),
    ("data_digest", _HASH),
    ("storage_ref", _STR.or_none()),
    ("metadata", Shape.map_of(_STR)),  # list of [key, value], keys strictly ascending
    ("level", _INT),
    ("prev_record_id", _STR.or_none()),
    ("prev_hash", _HASH),
    ("submitter", _ADDR),  # 20-byte address of the submitting account
    ("tx_id", _HASH),
    ("height", _INT),
    ("timestamp_ms", _INT),  # the block header's timestamp
)
RECORD_FIELDS = tuple(name for name, _ in _RECORD_FIELD_SHAPES)
ATTESTATION_SHAPE = Shape.record(
    ("attester", _ADDR),
    ("attester_pubkey", Shape.of("bytes", size=65)),
    ("role", _STR),
    ("signature", Shape.of("bytes", size=64)),
    ("height", _INT),
    ("tx_id", _HASH),
)
ATTESTATION_FIELDS = tuple(name for name, _ in ATTESTATION_SHAPE.fields)
RECORD_SHAPE = Shape.record(
    *_RECORD_FIELD_SHAPES,
    ("record_hash", _HASH),
    ("attestations", Shape.list_of(ATTESTATION_SHAPE)),
    doc="an evidence record (docs/evidence.md, The record)",
)
FLOW_SHAPE = Shape.record(
    ("flow_id", _STR),
    ("org", _STR),
    ("count", _INT),
    ("head_record_id", _STR),
    ("head_hash", _HASH),
    ("start", _INT),
    ("records", Shape.list_of(RECORD_SHAPE)),
)
FLOW_FIELDS = tuple(name for name, _ in FLOW_SHAPE.fields)
VERIFY_SHAPE = Shape.record(
    ("flow_id", _STR),
    ("intact", Shape.of("bool")),
    ("count", _INT),
    ("start", _INT),
    ("checked", _INT),
    ("head_hash", _HASH),
    ("problem", _STR.or_none()),
)
VERIFY_FIELDS = tuple(name for name, _ in VERIFY_SHAPE.fields)
SUBMIT_SHAPE = Shape.record(("record_id", _STR), ("seq", _INT), ("record_hash", _HASH))
OUTBOX_SHAPE = Shape.record(
    ("seq", _INT), ("tx_id", _HASH), ("record_id", _STR), ("flow_id", _STR), ("org", _STR)
)

_ID = 64  # max bytes of record ids and flow ids


def compute_record_hash(values: Sequence[Value]) -> bytes:
    """Record hash of the RECORD_FIELDS values, in order (rule E5)."""
    assert len(values) == len(RECORD_FIELDS)
    return sm3_hash(DOMAIN_RECORD + b"\x00" + encode(list(values)))


def attest_message(chain_id: str, record_id: str, data_digest: bytes) -> bytes:
    """What an attester signs with SM2 (rule E6)."""
    return compute_signing_root("attest", [chain_id, record_id, data_digest])


# --- state helpers -----------------------------------------------------------------------------


def _record_key(record_id: str) -> bytes:
    return b"r/" + record_id.encode()


def _attest_key(record_id: str) -> bytes:
    return b"t/" + record_id.encode()


def _head_key(flow_id: str) -> bytes:
    return b"h/" + flow_id.encode()


def _seq_key(flow_id: str, seq: int) -> bytes:
    return b"s/" + flow_id.encode() + b"\x00" + seq.to_bytes(8, "big")


def _digest_prefix(digest: bytes) -> bytes:
    return b"d/" + digest


def _load_record(state: StateReader, record_id: str) -> list[Value] | None:
    """Stored values: RECORD_FIELDS values followed by the record hash."""
    raw = state.get(_record_key(record_id))
    return None if raw is None else list(decode(raw))


def _load_head(state: StateReader, flow_id: str) -> tuple[str, int, str, bytes] | None:
    raw = state.get(_head_key(flow_id))
    if raw is None:
        return None
    org, count, last_id, last_hash = decode(raw)
    return org, count, last_id, last_hash


def _load_attestations(state: StateReader, record_id: str) -> list[list[Value]]:
    raw = state.get(_attest_key(record_id))
    return [] if raw is None else list(decode(raw))


_F_FLOW = RECORD_FIELDS.index("flow_id")
_F_SEQ = RECORD_FIELDS.index("seq")
_F_DIGEST = RECORD_FIELDS.index("data_digest")
_F_PREV_ID = RECORD_FIELDS.index("prev_record_id")
_F_PREV_HASH = RECORD_FIELDS.index("prev_hash")


def _record_result(state: StateReader, stored: list[Value]) -> list[Value]:
    record_id = stored[0]
    pairs: list[Value] = [[n, v] for n, v in zip(RECORD_FIELDS, stored[:-1], strict=True)]
    pairs.append(["record_hash", stored[-1]])
    atts = _load_attestations(state, record_id)
    pairs.append(
        [
            "attestations",
            [[[n, v] for n, v in zip(ATTESTATION_FIELDS, a, strict=True)] for a in atts],
        ]
    )
    return pairs


# --- argument schemas --------------------------------------------------------------------------

_RECORD_ID = Arg("record_id", str, max_len=_ID, charset="ident")
_FLOW_ID = Arg("flow_id", str, max_len=_ID, charset="ident")
_DIGEST = Arg("data_digest", bytes, size=32, doc="SM3 digest of the raw data")


class EvidenceContract(Contract):
    """Evidence records of business flows, hash-linked per flow, with SM2 attestations."""

    NAME = "evidence"

    def __init__(self, verifier: Sm2Verifier | None = None) -> None:
        self._verifier: Sm2Verifier = verifier if verifier is not None else CryptoSmVerifier()

    # -- transactions ---------------------------------------------------------------------------

    @method(
        _RECORD_ID,
        _FLOW_ID,
        Arg("scenario", str, max_len=64, doc="business scenario, e.g. private-fund-sale"),
        Arg("step", str, max_len=64, doc="step within the scenario, e.g. risk-disclosure"),
        _DIGEST,
        Arg("storage_ref", str, optional=True, max_len=256, doc="where the sealed raw data is"),
        Arg(
            "metadata",
            list,
            max_len=MAX_METADATA,
            items=(
                Arg("key", str, max_len=32, charset="ident"),
                Arg("value", str, min_len=0, max_len=256),
            ),
            doc="[key, value] pairs, keys strictly ascending",
        ),
        Arg("level", int, min=1, max=5, doc="data classification level"),
        Arg("prev_record_id", str, optional=True, max_len=_ID, charset="ident"),
        returns=SUBMIT_SHAPE,
    )
    def submit(
        self,
        ctx: Context,
        record_id: str,
        flow_id: str,
        scenario: str,
        step: str,
        data_digest: bytes,
        storage_ref: str | None,
        metadata: list[list[str]],
        level: int,
        prev_record_id: str | None,
    ) -> Value:
        """Add a record to the end of its flow (rules E1-E5, E7)."""
        org = ctx.sender_org
        if org is None:  # E1
            raise ContractError(
                "the sender has no account in any org; only an org's accounts can submit evidence"
            )
        for i in range(1, len(metadata)):  # E4
            a, b = metadata[i - 1][0], metadata[i][0]
            if a == b:
                raise ContractError(f"metadata key {a!r} appears twice; keys must be unique")
            if b < a:
                raise ContractError(
                    f"metadata keys must be in ascending order: {b!r} comes after {a!r}"
                )
        existing = _load_record(ctx.state, record_id)
        if existing is not None:  # E2
            raise ContractError(
                f"record id {record_id!r} already exists (in flow {existing[_F_FLOW]!r})"
            )
        seq, prev_hash = self._check_link(ctx.state, org, flow_id, prev_record_id)  # E3
        values: list[Value] = [
            record_id,
            ctx.chain_id,
            org,
            flow_id,
            seq,
            scenario,
            step,
            data_digest,
            storage_ref,
            metadata,
            level,
            prev_record_id,
            prev_hash,
            ctx.sender,
            ctx.tx_id,
            ctx.height,
            ctx.timestamp_ms,
        ]
        record_hash = compute_record_hash(values)  # E5
        ctx.state.put(_record_key(record_id), encode([*values, record_hash]))
        ctx.state.put(_head_key(flow_id), encode([org, seq + 1, record_id, record_hash]))
        ctx.state.put(_seq_key(flow_id, seq), record_id.encode())
        ctx.state.put(_digest_prefix(data_digest) + record_id.encode(), b"\x01")
        ctx.emit(
            "EvidenceSubmitted",
            ("record_id", record_id),
            ("flow_id", flow_id),
            ("org", org),
            ("step", step),
            ("record_hash", record_hash),
        )
        _queue(ctx, record_id, flow_id, org, scenario)  # E8
        return SUBMIT_SHAPE.pairs(record_id, seq, record_hash)

    @staticmethod
    def _check_link(
        state: StateReader, org: str, flow_id: str, prev_record_id: str | None
    ) -> tuple[int, bytes]:
        """Rule E3: return (seq, prev_hash) of the new record, or say which link rule failed."""
        head = _load_head(state, flow_id)
        if head is None:
            if prev_record_id is not None:
                raise ContractError(
                    f"flow {flow_id!r} has no records yet, so its first record must have "
                    f"prev_record_id None (got {prev_record_id!r})"
                )
            return 0, ZERO_HASH
        flow_org, count, last_id, last_hash = head
        if flow_org != org:
            raise ContractError(
                f"flow {flow_id!r} belongs to org {flow_org!r}; "
                f"an account of org {org!r} cannot add records to it"
            )
        if prev_record_id is None:
            raise ContractError(
                f"flow {flow_id!r} already has {count} record(s); prev_record_id must name its "
                f"last record {last_id!r} (a flow has exactly one first record)"
            )
        if prev_record_id != last_id:
            prev = _load_record(state, prev_record_id)
            if prev is None:
                raise ContractError(f"prev_record_id {prev_record_id!r} does not exist")
            if prev[_F_FLOW] != flow_id:
                raise ContractError(
                    f"prev_record_id {prev_record_id!r} belongs to flow {prev[_F_FLOW]!r}, "
                    f"not {flow_id!r}"
                )
            raise ContractError(
                f"prev_record_id {prev_record_id!r} is not the last record of flow {flow_id!r} "
                f"(the last is {last_id!r}); a flow is one linear chain, so forks are refused"
            )
        return count, last_hash

    @method(
        _RECORD_ID,
        Arg("attester_pubkey", bytes, size=65, doc="SM2 public key 0x04||X||Y of the attester"),
        Arg("role", str, max_len=32, charset="ident", doc="e.g. investor, depositor, arbitrator"),
        Arg("signature", bytes, size=64, doc="SM2 r||s over attest_message(...)"),
        returns=Shape.of("int", doc="number of attestations of the record after this one"),
    )
    def attest(
        self, ctx: Context, record_id: str, attester_pubkey: bytes, role: str, signature: bytes
    ) -> Value:
        """Add another party's SM2 signature over a record's digest (rule E6, E7)."""
        if ctx.sender_org is None:
            raise ContractError("the sender has no account; only admitted accounts may attest")
        record = _load_record(ctx.state, record_id)
        if record is None:
            raise ContractError(f"no record {record_id!r}")
        if not self._verifier.is_valid_public(attester_pubkey):
            raise ContractError(
                "attester_pubkey is not a valid SM2 public key (not a point on the curve)"
            )
        atts = _load_attestations(ctx.state, record_id)
        attester = address_of(attester_pubkey)
        if any(a[0] == attester for a in atts):
            raise ContractError(
                f"attester 0x{attester.hex()} has already attested record {record_id!r}"
            )
        if len(atts) >= MAX_ATTESTATIONS:
            raise ContractError(
                f"record {record_id!r} already has {MAX_ATTESTATIONS} attestations, the maximum"
            )
        msg = attest_message(ctx.chain_id, record_id, record[_F_DIGEST])
        if not self._verifier.verify(attester_pubkey, msg, signature):
            raise ContractError(
                "signature does not verify: it must be the attester's SM2 signature over "
                "compute_signing_root('attest', [chain_id, record_id, data_digest]) "
                f"for record {record_id!r} on chain {ctx.chain_id!r}"
            )
        atts.append([attester, attester_pubkey, role, signature, ctx.height, ctx.tx_id])
        ctx.state.put(_attest_key(record_id), encode(atts))
        ctx.emit(
            "EvidenceAttested",
            ("record_id", record_id),
            ("attester", attester),
            ("role", role),
            ("attester_pubkey", attester_pubkey),
            ("count", len(atts)),
        )
        return len(atts)

    # -- queries --------------------------------------------------------------------------------

    @query(_RECORD_ID, returns=RECORD_SHAPE.or_none())
    def get(self, q: QueryContext, record_id: str) -> Value:
        """One record with its attestations, or None."""
        stored = _load_record(q.state, record_id)
        return None if stored is None else _record_result(q.state, stored)

    @query(
        _FLOW_ID,
        Arg("start", int, optional=True, max=2**63 - 1, doc="first seq to return, default 0"),
        Arg("limit", int, optional=True, min=1, max=MAX_FLOW_PAGE, doc=f"default {MAX_FLOW_PAGE}"),
        returns=FLOW_SHAPE.or_none(),
    )
    def flow(self, q: QueryContext, flow_id: str, start: int | None, limit: int | None) -> Value:
        """A flow's records in order, each with its prev_hash/record_hash links (paged)."""
        head = _load_head(q.state, flow_id)
        if head is None:
            return None
        org, count, last_id, last_hash = head
        first = 0 if start is None else start
        end = min(count, first + (MAX_FLOW_PAGE if limit is None else limit))
        records: list[Value] = []
        for seq in range(first, end):
            rid = q.state.get(_seq_key(flow_id, seq))
            assert rid is not None, "flow index has a gap"
            stored = _load_record(q.state, rid.decode())
            assert stored is not None, "flow index points at a missing record"
            records.append(_record_result(q.state, stored))
        return FLOW_SHAPE.pairs(flow_id, org, count, last_id, last_hash, first, records)

    @query(
        _DIGEST,
        Arg("limit", int, optional=True, min=1, max=MAX_DIGEST_PAGE, doc="default 100"),
        returns=Shape.list_of(_STR, doc="record ids, ascending"),
    )
    def by_digest(self, q: QueryContext, data_digest: bytes, limit: int | None) -> Value:
        """Ids of the records whose data digest is `data_digest`."""
        prefix = _digest_prefix(data_digest)
        rows = q.state.scan(prefix, 100 if limit is None else limit)
        return [key[len(prefix) :].decode() for key, _ in rows]

    @query(
        _FLOW_ID,
        Arg("start", int, optional=True, max=2**63 - 1, doc="first seq to check, default 0"),
        Arg("limit", int, optional=True, min=1, max=MAX_VERIFY, doc=f"default {MAX_VERIFY}"),
        returns=VERIFY_SHAPE.or_none(),
    )
    def verify_flow(
        self, q: QueryContext, flow_id: str, start: int | None, limit: int | None
    ) -> Value:
        """Recompute every record hash and link of a flow (or a window of it)."""
        head = _load_head(q.state, flow_id)
        if head is None:
            return None
        _, count, last_id, last_hash = head
        first = 0 if start is None else start
        end = min(count, first + (MAX_VERIFY if limit is None else limit))
        problem, checked = _check_chain(q.state, flow_id, first, end, count, last_id, last_hash)
        return VERIFY_SHAPE.pairs(
            flow_id, problem is None, count, first, checked, last_hash, problem
        )

    @query(
        Arg("start", int, optional=True, min=1, doc="first seq, default 1"),
        Arg("limit", int, optional=True, min=1, max=MAX_OUTBOX_PAGE, doc="default 100"),
        returns=Shape.list_of(OUTBOX_SHAPE, doc="ascending by seq"),
    )
    def outbox(self, q: QueryContext, start: int | None, limit: int | None) -> Value:
        """Queued packets from seq `start` on (rule E8)."""
        first = 1 if start is None else start
        end = min(_outbox_count(q.state), first + (100 if limit is None else limit) - 1)
        out: list[Value] = []
        for seq in range(first, end + 1):
            raw = q.state.get(outbox_key(seq))
            assert raw is not None, "outbox has a gap"
            out.append(OUTBOX_SHAPE.pairs(seq, *decode(raw)))
        return out

    @query(returns=Shape.of("int", doc="packets queued so far; the last seq"))
    def outbox_count(self, q: QueryContext) -> Value:
        """The number of packets queued in the outbox (rule E8)."""
        return _outbox_count(q.state)


def _outbox_count(state: StateReader) -> int:
    raw = state.get(OUTBOX_COUNT_KEY)
    return 0 if raw is None else int.from_bytes(raw, "big")


def _queue(ctx: Context, record_id: str, flow_id: str, org: str, scenario: str) -> None:
    """Rule E8: append the record to the outbox if this chain's relay rule selects it."""
    raw = ctx.reader_for(XCLIENT).get(RELAY_RULE_KEY)
    if raw is None:
        return
    rule = RelayRule.decode(raw)
    if not rule.selects(scenario):
        return
    seq = _outbox_count(ctx.state) + 1
    ctx.state.put(outbox_key(seq), encode([ctx.tx_id, record_id, flow_id, org]))
    ctx.state.put(OUTBOX_COUNT_KEY, seq.to_bytes(8, "big"))
    ctx.emit(PACKET_QUEUED, ("seq", seq), ("dest", rule.dest_chain_id), ("record_id", record_id))


def _check_chain(
    state: StateReader,
    flow_id: str,
    first: int,
    end: int,
    count: int,
    last_id: str,
    last_hash: bytes,
) -> tuple[str | None, int]:
    """Return (first problem or None, number of records checked) for seqs [first, end)."""
    expect_id: str | None = None
    expect_hash = ZERO_HASH
    if first > 0 and first <= count:
        rid = state.get(_seq_key(flow_id, first - 1))
        prev = None if rid is None else _load_record(state, rid.decode())
        if prev is None:
            return f"record at seq {first - 1} is missing", 0
        expect_id, expect_hash = prev[0], compute_record_hash(prev[:-1])
    checked = 0
    for seq in range(first, end):
        rid = state.get(_seq_key(flow_id, seq))
        stored = None if rid is None else _load_record(state, rid.decode())
        if stored is None:
            return f"record at seq {seq} is missing", checked
        record_id = stored[0]
        if stored[_F_FLOW] != flow_id or stored[_F_SEQ] != seq:
            return f"record {record_id!r} is indexed at seq {seq} but says otherwise", checked
        actual = compute_record_hash(stored[:-1])
        if actual != stored[-1]:
            return f"record {record_id!r}: stored hash does not match its fields", checked
        if stored[_F_PREV_ID] != expect_id or stored[_F_PREV_HASH] != expect_hash:
            return f"record {record_id!r}: link to the previous record is broken", checked
        expect_id, expect_hash = record_id, actual
        checked += 1
    if end == count and count > 0 and (expect_id != last_id or expect_hash != last_hash):
        return "the flow head does not match its last record", checked
    return None, checked
