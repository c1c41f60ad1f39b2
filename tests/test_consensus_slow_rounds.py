"""Four replicas whose rounds need more than the base timeout must still commit (L5, session 7).

A small deterministic world in virtual time, beside the simulator (consensus/sim/world.py models
a faulty network, not slow nodes): each replica is one thread, as in a node (node/driver.py
rule 1), so an event that arrives while it is busy waits, and a step costs virtual time — a leader
that builds a block is busy `build_ms`, a replica that validates another's proposal `validate_ms`.
With a build longer than the base period and shorter than one backoff step, every round whose
timer ran at the base period times out before its proposal arrives. Jolteon's 2-chain rule needs
two certified rounds in a row to commit, so a pacemaker that returns to the base period at every QC
alternates TC, QC, TC, QC ... and commits nothing, the stall of docs/benchmarks.md "Session 7 —
cluster4 stall" (TC and QC alternating for 40 s on four validators sharing two loaded cores).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from gmchain.chain.validators import GenesisValidators
from gmchain.consensus import (
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    MessageReceived,
    PersistBlock,
    Replica,
    Send,
    Start,
    Tick,
)
from gmchain.consensus.sim.app import (
    SIM_CHAIN_ID,
    FakeSigner,
    FakeVerifier,
    SimApp,
    make_sim_genesis,
    sim_txs,
)
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.types import Proposal

TICK_MS = 10
NET_MS = 2


@dataclass(slots=True)
class _Node:
    replica: Replica
    app: SimApp
    busy_until: int = 0
    rounds_by_tc: int = 0
    rounds_by_qc: int = 0
    seen: list[int] = field(default_factory=list)


def _run(*, build_ms: int, validate_ms: int, horizon_ms: int) -> list[_Node]:
    genesis = make_sim_genesis(4)
    provider = GenesisValidators(genesis)
    validators = provider.voting_set_at(0)
    ids = [v.node_id for v in provider.validators_at(0)]
    secrets = {nid: sm3_hash(b"slow-rounds" + bytes([i])) for i, nid in enumerate(ids)}
    verifier = FakeVerifier(secrets)
    # The cluster's shape at a smaller scale: base 200 ms, x1.5 per step, cap 1600 ms.
    cfg = ConsensusConfig.minimal()
    nodes: list[_Node] = []
    for nid in ids:
        app = SimApp(genesis=genesis)
        app.add_txs(sim_txs(), 0)
        replica = Replica(
            config=cfg,
            validators=validators,
            chain_id=SIM_CHAIN_ID,
            signer=FakeSigner(nid, secrets[nid]),
            verifier=verifier,
            app=app,
            committed=app.committed_header,
            high_qc=app.committed_qc(),
            safety=None,
            now_ms=0,
        )
        nodes.append(_Node(replica=replica, app=app))
    index = {n.replica.node_id: i for i, n in enumerate(nodes)}
    heap: list[tuple[int, int, int, object]] = []
    seq = 0

    def push(t: int, idx: int, event: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, idx, event))

    for i in range(4):
        push(0, i, "start")
        push(TICK_MS, i, "tick")
    while heap:
        t, _, i, item = heapq.heappop(heap)
        if t > horizon_ms:
            break
        node = nodes[i]
        if t < node.busy_until:  # one thread: the event waits for the step in progress
            push(node.busy_until, i, item)
            continue
        if item == "tick":
            push(t + TICK_MS, i, "tick")
            event: object = Tick(now_ms=t)
        elif item == "start":
            event = Start(now_ms=t)
        else:
            event = item
        rep = node.replica
        before = (rep.round, rep.state.last_tc, rep.high_qc.round)
        effects: list[Effect] = rep.step(event)  # type: ignore[arg-type]
        if rep.round != before[0]:
            if rep.state.last_tc is not before[1]:
                node.rounds_by_tc += 1
            else:
                node.rounds_by_qc += 1
        cost = 0
        if isinstance(event, MessageReceived) and isinstance(event.msg, Proposal):
            cost += validate_ms
        if any(isinstance(e, Broadcast) and isinstance(e.msg, Proposal) for e in effects):
            cost += build_ms
        node.busy_until = t + cost
        out = node.busy_until + NET_MS  # messages leave when the step's work is done
        for e in effects:
            match e:
                case PersistBlock(block=block):
                    node.app.persist_block(block)
                case Commit(blocks=blocks, proof=proof):
                    node.app.apply_commit(blocks, proof, t)
                    node.seen.extend(b.header.height for b in blocks)
                case Broadcast(msg=msg):
                    for j in range(4):
                        if j != i:
                            push(out, j, MessageReceived(sender=rep.node_id, msg=msg, now_ms=out))
                case Send(to=to, msg=msg):
                    push(out, index[to], MessageReceived(sender=rep.node_id, msg=msg, now_ms=out))
    return nodes


def _committed_txs(node: _Node) -> int:
    return sum(1 for tx in sim_txs() if node.app.is_committed_tx(tx.tx_id))


def test_rounds_slower_than_the_base_timeout_still_commit() -> None:
    # A round takes ~build + validate + 2 hops = 285 ms: more than the base 200 ms, less than
    # the 300 ms of one backoff step.
    nodes = _run(build_ms=250, validate_ms=30, horizon_ms=10_000)
    for node in nodes:
        assert node.rounds_by_tc >= 1  # the base period is too short here: the premise holds
        assert _committed_txs(node) == len(sim_txs()), (
            f"committed {_committed_txs(node)} of {len(sim_txs())} in 10 s of virtual time; "
            f"rounds by QC {node.rounds_by_qc}, by TC {node.rounds_by_tc}"
        )
        assert node.seen == list(range(1, len(node.seen) + 1))  # each height once, in order
        # L5: once a backoff step fits the rounds, they keep fitting: TC rounds stay few.
        assert node.rounds_by_tc <= 2, (node.rounds_by_qc, node.rounds_by_tc)


def test_fast_rounds_never_time_out() -> None:
    """The control: the same world with rounds well inside the base period."""
    nodes = _run(build_ms=20, validate_ms=20, horizon_ms=10_000)
    for node in nodes:
        assert node.rounds_by_tc == 0
        assert _committed_txs(node) == len(sim_txs())
        assert node.replica.pacemaker.backoff == 0
