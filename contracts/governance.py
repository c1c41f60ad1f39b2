"""The governance contract: a committee of organisations decides who validates, who connects,
which orgs and accounts are admitted, and the chain parameters (issue 12; EPOCHS.md E1, E2, E10).

Rules this contract keeps (each refusal names its rule; docs/governance.md states them too):
G1. The committee is (org, weight) pairs (genesis: `Genesis.committee`, or every validator org
    with weight 1). Only an account with role "admin" of a committee org may propose or vote.
G2. `propose(kind, args, expiry_height)` -> the new proposal id (1, 2, ...). `args` is the
    canonical encoding (ledger.codec) of the kind's positional argument list
    (contracts/gov_kinds.py KINDS; `propose_args` builds it); the change must be valid now
    (gov_kinds G-K2, G-K3), and height < expiry_height <= height + MAX_LIFETIME.
G3. `vote(id, yes)`: one vote per committee org per proposal; a later vote of the same org
    replaces its earlier one, while the proposal is open. Voting on a decided proposal is refused.
G4. Tally against the committee as it is at the vote (orgs without a seat count nothing). With
    thresholds (p_num, p_den, a_num, a_den) and total committee weight T: APPROVED when
    voted * p_den > p_num * T and yes * a_den > a_num * T; REJECTED when approval became
    impossible: (T - no) * a_den <= a_num * T. Integer arithmetic only.
G5. An approved proposal executes in the same transaction, exactly once: its change is planned
    again on the current state; if it is no longer valid, the proposal is "failed" (the reason is
    kept), otherwise its writes are made and it is "executed". A decided proposal never changes.
G6. A proposal is open while height <= expiry_height. After that, the first vote touching it,
    or `close(id)`, marks it "expired" (that transaction succeeds; the vote does not count).
G7. A change to validators, power, node keys, observers or parameters writes the next epoch
    configuration (EPOCHS.md E2; contracts/gov_state.py G-S3). An org's removal is kept for good
    and its accounts are refused by every node (chain/txrules.py R8b, EPOCHS.md E10).
G8. Cross-chain decisions (register_chain, unfreeze_chain, set_relay_rule, clear_relay_rule;
    gov_kinds G-K5) write the `xclient` namespace's client state and relay rule through
    framework rule 7, and change no epoch configuration.
State: contracts/gov_state.py G-S1. Events: ProposalCreated(id, kind, org, by, expiry_height),
Voted(id, org, yes), ProposalApproved(id), ProposalRejected(id), ProposalExpired(id),
Executed(id, kind, changes, epoch), ExecutionFailed(id, reason).

Helpers for tests, the CLI and other helpers (real governance transactions):
- `make_join_request(chain_id, node_key, org)` -> (node_pubkey, org, pop): a node's join request
  with its proof of possession (gov_kinds G-K4).
- `propose_args(kind, values, expiry_height)` -> the args list of `governance.propose`;
  `vote_args(pid, yes)` -> the args list of `governance.vote`.
- Readers (any StateReader of the "governance" namespace): `latest_epoch`, `epoch_config`,
  `pending_epoch_change`, `committee`, `removed_orgs`, `is_org_removed`, `org_removal`,
  `revoked_node_keys`, `is_node_key_revoked` (re-exported from contracts/gov_state.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gmchain.contracts.framework import (
    Arg,
    BadArguments,
    Context,
    Contract,
    ContractError,
    MethodSpec,
    QueryContext,
    method,
    query,
)
from gmchain.contracts.gov_kinds import KINDS, Plan, View, join_request_root, plan
from gmchain.contracts.gov_state import (
    GOV_NAMESPACE,
    K_NEXT_ID,
    STATUSES,
    Proposal,
    committee,
    epoch_config,
    genesis_writes,
    is_node_key_revoked,
    is_org_removed,
    latest_epoch,
    org_removal,
    pending_epoch_change,
    read_proposal,
    removed_orgs,
    revoked_node_keys,
    thresholds,
    write_next_config,
    write_proposal,
)
from gmchain.contracts.keys import CryptoSmVerifier, Sm2Verifier
from gmchain.contracts.membership import write_account, write_revocation
from gmchain.contracts.results import Shape
from gmchain.contracts.xc_layout import XCLIENT
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.codec import DecodeError, Value, decode, encode

__all__ = [
    "GOV_NAMESPACE",
    "KINDS",
    "MAX_LIFETIME",
    "PROPOSAL_SHAPE",
    "GovernanceContract",
    "committee",
    "epoch_config",
    "genesis_writes",
    "is_node_key_revoked",
    "is_org_removed",
    "latest_epoch",
    "make_join_request",
    "org_removal",
    "pending_epoch_change",
    "propose_args",
    "removed_orgs",
    "revoked_node_keys",
    "vote_args",
]

MAX_LIFETIME = 1_000_000  # blocks a proposal may stay open (G2)
MAX_ARGS_BYTES = 48 * 1024  # a register_chain of up to MAX_VALIDATORS foreign validators
MAX_LIST = 1000
_SCAN_ALL = 1 << 20

PROPOSAL_SHAPE = Shape.record(
    ("id", Shape.of("int")),
    ("kind", Shape.of("str")),
    ("args", Shape.of("any", doc="the kind's positional arguments")),
    ("proposer_org", Shape.of("str")),
    ("proposer", Shape.of("bytes", size=20)),
    ("created_height", Shape.of("int")),
    ("expiry_height", Shape.of("int")),
    ("status", Shape.of("str", doc=" | ".join(STATUSES))),
    ("votes", Shape.list_of(Shape.record(("org", Shape.of("str")), ("yes", Shape.of("bool"))))),
    ("decided_height", Shape.of("int", doc="0 while open")),
    ("note", Shape.of("str", doc="what execution changed, or why it failed")),
)
_VALIDATOR_SHAPE = Shape.record(
    ("pubkey", Shape.of("bytes", size=65)), ("power", Shape.of("int")), ("org", Shape.of("str"))
)
EPOCH_CONFIG_SHAPE = Shape.record(
    ("epoch", Shape.of("int")),
    ("validators", Shape.list_of(_VALIDATOR_SHAPE, doc="ascending by node id")),
    ("observers", Shape.list_of(Shape.of("bytes", size=65))),
    ("params", Shape.map_of(Shape.of("int"))),
)
COMMITTEE_SHAPE = Shape.record(
    ("members", Shape.list_of(Shape.record(("org", Shape.of("str")), ("weight", Shape.of("int"))))),
    ("thresholds", Shape.list_of(Shape.of("int"), doc="p_num, p_den, a_num, a_den (G4)")),
)


def make_join_request(chain_id: str, node_key: PrivateKey, org: str) -> tuple[bytes, str, bytes]:
    """(node_pubkey, org, pop): a join request signed by the node's own key (gov_kinds G-K4)."""
    pubkey = node_key.public_key.to_bytes()
    return pubkey, org, node_key.sign(join_request_root(chain_id, pubkey, org))


def propose_args(kind: str, values: Sequence[Value], expiry_height: int) -> list[Value]:
    """The args of `governance.propose` for `kind` with its positional `values` (G2)."""
    return [kind, encode(list(values)), expiry_height]


def vote_args(pid: int, yes: bool) -> list[Value]:
    return [pid, yes]


def _proposal_value(p: Proposal) -> list[Value]:
    return PROPOSAL_SHAPE.pairs(
        p.pid,
        p.kind,
        list(p.args),
        p.proposer_org,
        p.proposer,
        p.created_height,
        p.expiry_height,
        p.status,
        [[["org", org], ["yes", yes]] for org, yes in p.votes],
        p.decided_height,
        p.note,
    )


def _tally(p: Proposal, seats: dict[str, int], th: tuple[int, int, int, int]) -> str:
    """G4: "approved", "rejected" or "open"."""
    p_num, p_den, a_num, a_den = th
    total = sum(seats.values())
    yes = sum(seats.get(org, 0) for org, v in p.votes if v)
    no = sum(seats.get(org, 0) for org, v in p.votes if not v)
    if (yes + no) * p_den > p_num * total and yes * a_den > a_num * total:
        return "approved"
    if (total - no) * a_den <= a_num * total:
        return "rejected"
    return "open"


class GovernanceContract(Contract):
    """Committee decisions on validators, observers, orgs, accounts and chain parameters."""

    NAME = GOV_NAMESPACE

    def __init__(self, verifier: Sm2Verifier | None = None) -> None:
        self._verifier: Sm2Verifier = verifier if verifier is not None else CryptoSmVerifier()

    # --- checks -----------------------------------------------------------------------------

    @staticmethod
    def _require_member(ctx: Context, action: str) -> str:
        """G1: the sender's org, if the sender is an admin of a committee org."""
        if ctx.sender_role != "admin" or ctx.sender_org is None:
            raise ContractError(
                f"G1: only an admin of a committee org may {action}; "
                f"the sender's role is {ctx.sender_role!r}"
            )
        if ctx.sender_org not in dict(committee(ctx.state)):
            raise ContractError(f"G1: org {ctx.sender_org!r} has no seat on the committee")
        return ctx.sender_org

    def _view(self, ctx: Context, pid: int) -> View:
        return View(
            gov=ctx.state,
            membership=ctx.reader_for("membership"),
            xclient=ctx.reader_for(XCLIENT),
            verifier=self._verifier,
            chain_id=ctx.chain_id,
            pid=pid,
            height=ctx.height,
        )

    @staticmethod
    def _open_proposal(ctx: Context, pid: int) -> Proposal:
        p = read_proposal(ctx.state, pid)
        if p is None:
            raise ContractError(f"no proposal {pid}")
        if p.status != "open":
            raise ContractError(
                f"G3: proposal {pid} is already {p.status} (at height {p.decided_height})"
            )
        return p

    # --- writes -----------------------------------------------------------------------------

    def _execute(self, ctx: Context, p: Proposal, change: Plan) -> Proposal:
        """G5, G7: make an approved proposal's writes (all checks are done)."""
        for key, value in change.gov.items():
            if value is None:
                ctx.state.delete(key)
            else:
                ctx.state.put(key, value)
        if change.xclient:  # gov_kinds G-K5 (framework rule 7)
            xclient = ctx.writer_for(XCLIENT)
            for key, value in change.xclient.items():
                if value is None:
                    xclient.delete(key)
                else:
                    xclient.put(key, value)
        if change.register_admin is not None:
            pubkey, org = change.register_admin
            write_account(ctx.writer_for("membership"), pubkey, org, "admin")
        if change.revoke_account is not None:
            address, org = change.revoke_account
            write_revocation(ctx.writer_for("membership"), address, org, ctx.height)
        epoch: int | None = None
        if change.config is not None:
            epoch = write_next_config(ctx.state, change.config, ctx.height)
            change.changes.append(f"epoch {epoch} configuration written")
        note = "; ".join(change.changes)
        ctx.emit(
            "Executed",
            ("id", p.pid),
            ("kind", p.kind),
            ("changes", list(change.changes)),
            ("epoch", epoch),
        )
        return replace(p, status="executed", decided_height=ctx.height, note=note[:500])

    def _expire(self, ctx: Context, p: Proposal) -> None:
        write_proposal(ctx.state, replace(p, status="expired", decided_height=ctx.height))
        ctx.emit("ProposalExpired", ("id", p.pid))

    # --- methods ----------------------------------------------------------------------------

    @method(
        Arg("kind", str, max_len=32, choices=tuple(KINDS)),
        Arg("args", bytes, max_len=MAX_ARGS_BYTES, doc="canonical encoding of the kind's args"),
        Arg("expiry_height", int, min=1),
        returns=Shape.of("int", doc="the new proposal's id"),
    )
    def propose(self, ctx: Context, kind: str, args: bytes, expiry_height: int) -> Value:
        """Propose a change to the committee (rules G1, G2)."""
        org = self._require_member(ctx, "propose")
        if not ctx.height < expiry_height <= ctx.height + MAX_LIFETIME:
            raise ContractError(
                f"G2: expiry_height must be in [{ctx.height + 1}, {ctx.height + MAX_LIFETIME}], "
                f"got {expiry_height}"
            )
        try:
            raw_values = decode(args)
        except DecodeError as exc:
            raise BadArguments(f"G2: args do not decode: {exc}") from None
        if not isinstance(raw_values, list):
            raise BadArguments("G2: args must encode a list")
        spec = MethodSpec(name=kind, args=KINDS[kind], readonly=False, attr="")
        values = tuple(spec.check_args(raw_values))
        raw_next = ctx.state.get(K_NEXT_ID)
        pid = 1 if raw_next is None else int(decode(raw_next))
        plan(kind, values, self._view(ctx, pid))  # G2: refuse a change that is invalid now
        p = Proposal(
            pid=pid,
            kind=kind,
            args=values,
            proposer_org=org,
            proposer=ctx.sender,
            created_height=ctx.height,
            expiry_height=expiry_height,
            status="open",
        )
        write_proposal(ctx.state, p)
        ctx.state.put(K_NEXT_ID, encode(pid + 1))
        ctx.emit(
            "ProposalCreated",
            ("id", pid),
            ("kind", kind),
            ("org", org),
            ("by", ctx.sender),
            ("expiry_height", expiry_height),
        )
        return pid

    @method(
        Arg("id", int, min=1),
        Arg("yes", bool),
        returns=Shape.of("str", doc="the proposal's status after the vote"),
    )
    def vote(self, ctx: Context, pid: int, yes: bool) -> Value:
        """Vote on an open proposal; executes it when approved (rules G3-G6)."""
        org = self._require_member(ctx, "vote")
        p = self._open_proposal(ctx, pid)
        if ctx.height > p.expiry_height:
            self._expire(ctx, p)  # G6
            return "expired"
        p = p.with_vote(org, yes)
        ctx.emit("Voted", ("id", pid), ("org", org), ("yes", yes))
        outcome = _tally(p, dict(committee(ctx.state)), thresholds(ctx.state))
        if outcome == "approved":
            ctx.emit("ProposalApproved", ("id", pid))
            try:
                change = plan(p.kind, p.args, self._view(ctx, pid))
            except ContractError as exc:  # G5: no longer valid
                reason = str(exc)[:500]
                p = replace(p, status="failed", decided_height=ctx.height, note=reason)
                ctx.emit("ExecutionFailed", ("id", pid), ("reason", reason))
            else:
                p = self._execute(ctx, p, change)
        elif outcome == "rejected":
            p = replace(p, status="rejected", decided_height=ctx.height)
            ctx.emit("ProposalRejected", ("id", pid))
        write_proposal(ctx.state, p)
        return p.status

    @method(Arg("id", int, min=1), returns=Shape.of("str", doc='"expired"'))
    def close(self, ctx: Context, pid: int) -> Value:
        """Mark an open proposal past its expiry height as expired (rule G6); anyone may."""
        p = self._open_proposal(ctx, pid)
        if ctx.height <= p.expiry_height:
            raise ContractError(
                f"G6: proposal {pid} is open until height {p.expiry_height} (now {ctx.height})"
            )
        self._expire(ctx, p)
        return "expired"

    # --- queries ----------------------------------------------------------------------------

    @query(Arg("id", int, min=1), name="proposal", returns=PROPOSAL_SHAPE.or_none())
    def get_proposal(self, q: QueryContext, pid: int) -> Value:
        """One proposal, or None."""
        p = read_proposal(q.state, pid)
        return None if p is None else _proposal_value(p)

    @query(
        Arg("status", str, max_len=16, choices=STATUSES, optional=True, doc="default: all"),
        Arg("limit", int, optional=True, min=1, max=MAX_LIST, doc=f"default {MAX_LIST}"),
        name="proposals",
        returns=Shape.list_of(PROPOSAL_SHAPE, doc="ascending by id"),
    )
    def list_proposals(self, q: QueryContext, status: str | None, limit: int | None) -> Value:
        """Proposals, optionally only those with one status."""
        out: list[Value] = []
        for key, raw in q.state.scan(b"p/", _SCAN_ALL):
            p = Proposal.from_value(int.from_bytes(key[2:], "big"), decode(raw))
            if status is None or p.status == status:
                out.append(_proposal_value(p))
                if len(out) >= (MAX_LIST if limit is None else limit):
                    break
        return out

    @query(name="committee", returns=COMMITTEE_SHAPE)
    def get_committee(self, q: QueryContext) -> Value:
        """The committee's orgs and weights, and the thresholds (rules G1, G4)."""
        members = [[["org", org], ["weight", w]] for org, w in committee(q.state)]
        return COMMITTEE_SHAPE.pairs(members, list(thresholds(q.state)))

    @query(Arg("epoch", int), name="epoch_config", returns=EPOCH_CONFIG_SHAPE.or_none())
    def get_epoch_config(self, q: QueryContext, epoch: int) -> Value:
        """An epoch's configuration (EPOCHS.md E1), or None if it was never written."""
        c = epoch_config(q.state, epoch)
        if c is None:
            return None
        return EPOCH_CONFIG_SHAPE.pairs(
            c.epoch,
            [_VALIDATOR_SHAPE.pairs(v.pubkey, v.power, v.org) for v in c.validators],
            list(c.observers),
            [[n, v] for n, v in c.params],
        )

    @query(name="current_epoch", returns=Shape.of("int", doc="the latest epoch written (E2)"))
    def get_current_epoch(self, q: QueryContext) -> Value:
        """The latest epoch whose configuration is written (it starts once its block commits)."""
        return latest_epoch(q.state)
