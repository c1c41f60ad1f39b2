"""Rule tests: one test per numbered safety (S*, T*, P1) and liveness (L*) rule, driving `step`.

Each test builds a 4-validator world by hand (fake signer from consensus.sim.app), feeds one
replica crafted events, and checks the effects it returns. Rule numbers refer to
consensus/safety.py and consensus/replica.py (docs/consensus.md lists them).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import pytest

from gmchain.consensus import (
    BlockRequest,
    BlockResponse,
    Broadcast,
    Commit,
    CommitProof,
    ConsensusConfig,
    Effect,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    Replica,
    SafetyData,
    SafetyRules,
    Send,
    Start,
    SyncInfo,
    SyncRequest,
    SyncResponse,
    Tick,
    Validator,
    ValidatorSet,
    make_genesis_qc,
)
from gmchain.consensus.sim.app import (
    SIM_CHAIN_ID,
    FakeSigner,
    FakeVerifier,
    SimApp,
    make_sim_genesis,
)
from gmchain.consensus.sim.app import make_sim_tx as make_tx
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    NodeId,
    Proposal,
    QuorumCert,
    Round,
    TimeoutCert,
    TimeoutVote,
    Vote,
)

CFG = ConsensusConfig.minimal()


class World:
    """Four validators (or n), one replica under test ("me"), helpers to sign as anyone."""

    def __init__(self, n: int = 4, me: int = 0) -> None:
        self.signers = []
        secrets = {}
        genesis = make_sim_genesis(n)
        for i, v in enumerate(genesis.validators):
            nid = v.node_id
            secrets[nid] = sm3_hash(b"rule-secret" + bytes([i]))
            self.signers.append(FakeSigner(nid, secrets[nid]))
        self.signers.sort(key=lambda s: s.node_id)  # index i leads rounds i, i+n, ...
        self.verifier = FakeVerifier(secrets)
        self.vs = ValidatorSet(Validator(node_id=s.node_id, power=1) for s in self.signers)
        # "me" runs the real chain library over memory; so does the builder of others' blocks.
        self.app = SimApp(genesis=genesis)
        self.builder = SimApp(genesis=genesis)
        self.genesis = self.app.genesis_header
        self.gqc = make_genesis_qc(self.genesis.block_id)
        self.submitted: dict[Digest, object] = {}
        self.me = me
        self.now = 1000

    def ids(self) -> list[NodeId]:
        return [s.node_id for s in self.signers]

    def leader_index(self, r: int) -> int:
        return self.ids().index(self.vs.leader(r))

    def replica(
        self, *, signer: bool = True, safety: SafetyData | None = None, **kw: object
    ) -> Replica:
        cfg = kw.pop("config", CFG)
        return Replica(
            config=cfg,  # type: ignore[arg-type]
            validators=self.vs,
            chain_id=SIM_CHAIN_ID,
            signer=self.signers[self.me] if signer else None,
            verifier=self.verifier,
            app=self.app,
            committed=kw.pop("committed", self.genesis),  # type: ignore[arg-type]
            high_qc=kw.pop("high_qc", self.gqc),  # type: ignore[arg-type]
            safety=safety,
            now_ms=self.now,
            genesis_id=self.genesis.block_id,
        )

    # --- crafting -------------------------------------------------------------------------------

    def block(self, parent: BlockHeader, r: int, justify: QuorumCert, ntx: int = 0) -> Block:
        txs = [make_tx(10_000 + r * 10 + k) for k in range(ntx)]
        for t in txs:
            self.submitted[t.tx_id] = t
        self.builder.pool.clear()
        self.builder.add_txs(txs, self.now)
        return self.builder.build_block(
            parent=parent,
            round=Round(r),
            justify=justify,
            proposer=self.vs.leader(r),
            now_ms=self.now + r,
        )

    def proposal(self, block: Block, tc: TimeoutCert | None = None) -> Proposal:
        signer = self.signers[self.leader_index(block.header.round)]
        sig = signer.sign(Proposal.signing_root(SIM_CHAIN_ID, block.block_id))
        return Proposal(block=block, tc=tc, signature=sig)

    def vote(self, i: int, h: BlockHeader) -> Vote:
        root = QuorumCert.signing_root(SIM_CHAIN_ID, h.epoch, h.block_id, h.round, h.height)
        return Vote(
            block_id=h.block_id,
            round=h.round,
            height=h.height,
            voter=self.signers[i].node_id,
            signature=self.signers[i].sign(root),
        )

    def qc(self, h: BlockHeader, voters: Sequence[int] | None = None) -> QuorumCert:
        if voters is None:
            voters = range(self.vs.quorum_power)
        votes = [self.vote(i, h) for i in voters]
        sigs = tuple(sorted((v.voter, v.signature) for v in votes))
        return QuorumCert(block_id=h.block_id, round=h.round, height=h.height, signatures=sigs)

    def timeout(self, i: int, r: int, hqc: QuorumCert) -> TimeoutVote:
        root = TimeoutVote.signing_root(SIM_CHAIN_ID, 0, r, hqc.round)
        return TimeoutVote(
            round=Round(r),
            high_qc=hqc,
            voter=self.signers[i].node_id,
            signature=self.signers[i].sign(root),
        )

    def tc(self, r: int, hqcs: dict[int, QuorumCert]) -> TimeoutCert:
        tvs = [self.timeout(i, r, q) for i, q in hqcs.items()]
        best = max(hqcs.values(), key=lambda q: q.round)
        entries = tuple(sorted((t.voter, int(t.high_qc.round), t.signature) for t in tvs))
        return TimeoutCert(round=Round(r), high_qc=best, entries=entries)

    def msg(self, sender: int, m: object) -> MessageReceived:
        self.now += 1
        return MessageReceived(sender=self.signers[sender].node_id, msg=m, now_ms=self.now)  # type: ignore[arg-type]

    def chain(self, rounds: Sequence[int], ntx: int = 0) -> list[Block]:
        """Blocks at the given rounds, each extending the previous with a QC for it."""
        out: list[Block] = []
        parent, qc = self.genesis, self.gqc
        for r in rounds:
            b = self.block(parent, r, qc, ntx)
            out.append(b)
            parent, qc = b.header, self.qc(b.header)
        return out


def count_verifications(w: World) -> list[NodeId]:
    """Wrap `w`'s verifier (before `w.replica()`): the list it returns grows by the signer of
    every signature the verifier is then asked to check."""
    asked: list[NodeId] = []
    inner = w.verifier

    class Counting:
        def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool:
            asked.append(node_id)
            return inner.verify(node_id, msg, sig)

    w.verifier = Counting()  # type: ignore[assignment]
    return asked


def sent_votes(effects: Sequence[Effect]) -> list[tuple[NodeId | None, Vote]]:
    """Votes that leave the replica: (destination, vote); destination None = broadcast (L3)."""
    out: list[tuple[NodeId | None, Vote]] = []
    for e in effects:
        if isinstance(e, Send) and isinstance(e.msg, Vote):
            out.append((e.to, e.msg))
        elif isinstance(e, Broadcast) and isinstance(e.msg, Vote):
            out.append((None, e.msg))
    return out


def broadcast_timeouts(effects: Sequence[Effect]) -> list[TimeoutVote]:
    return [e.msg for e in effects if isinstance(e, Broadcast) and isinstance(e.msg, TimeoutVote)]


def commits(effects: Sequence[Effect]) -> list[Commit]:
    return [e for e in effects if isinstance(e, Commit)]


def me_not_leader(w: World, rounds: Sequence[int]) -> None:
    """Pick "me" so that it leads none of the given rounds (keeps votes as Send effects)."""
    leaders = {w.leader_index(r) for r in rounds} | {w.leader_index(r + 1) for r in rounds}
    w.me = next(i for i in range(len(w.signers)) if i not in leaders)


# --- safety rules ------------------------------------------------------------------------------


def test_s1_at_most_one_vote_per_round() -> None:
    w = World(n=7)
    me_not_leader(w, [1])
    rep = w.replica()
    a = w.block(w.genesis, 1, w.gqc, ntx=1)
    b = w.block(w.genesis, 1, w.gqc, ntx=2)  # equivocation: another block for round 1
    first = rep.step(w.msg(w.leader_index(1), w.proposal(a)))
    second = rep.step(w.msg(w.leader_index(1), w.proposal(b)))
    assert [v.block_id for _, v in sent_votes(first)] == [a.block_id]
    assert sent_votes(second) == []


def test_s2_vote_after_tc_requires_qc_at_least_the_tc_high_qc() -> None:
    w = World(n=7)
    b1, b2 = w.chain([1, 2])
    qc1, qc2 = w.qc(b1.header), w.qc(b2.header)
    me_not_leader(w, [1, 2, 3, 4])
    rep = w.replica()
    rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    rep.step(w.msg(w.leader_index(2), w.proposal(b2)))
    tc3 = w.tc(3, {i: qc2 if i < 2 else qc1 for i in range(5)})  # highest hqc: round 2
    bad = w.block(b1.header, 4, qc1)  # extends round-1 QC < TC's round-2 high QC
    good = w.block(b2.header, 4, qc2)
    eff = rep.step(w.msg(w.leader_index(4), w.proposal(bad, tc3)))
    assert sent_votes(eff) == []
    eff = rep.step(w.msg(w.leader_index(4), w.proposal(good, tc3)))
    assert [v.block_id for _, v in sent_votes(eff)] == [good.block_id]


def test_s3_observing_a_qc_raises_preferred_round() -> None:
    w = World()
    rules = SafetyRules(
        chain_id=SIM_CHAIN_ID, signer=w.signers[0], data=SafetyData(), bugs=frozenset()
    )
    b1, b2 = w.chain([1, 2])
    rules.observe_qc(w.qc(b2.header))
    assert rules.data.preferred_round == 2
    rules.observe_qc(w.qc(b1.header))
    assert rules.data.preferred_round == 2  # never lowered


def test_t1_no_timeout_below_last_voted_round() -> None:
    w = World()
    rules = SafetyRules(
        chain_id=SIM_CHAIN_ID,
        signer=w.signers[0],
        data=SafetyData(last_voted_round=Round(5)),
        bugs=frozenset(),
    )
    (b3,) = w.chain([3])
    assert rules.make_timeout(Round(4), w.qc(b3.header), None) is None
    made = rules.make_timeout(Round(5), w.qc(w.chain([4])[0].header), None)
    assert made is not None and made[0].last_voted_round == 5 and made[0].highest_timeout_round == 5


def test_t2_timeout_round_must_follow_a_certificate() -> None:
    w = World()
    rules = SafetyRules(
        chain_id=SIM_CHAIN_ID, signer=w.signers[0], data=SafetyData(), bugs=frozenset()
    )
    (b1,) = w.chain([1])
    qc1 = w.qc(b1.header)
    assert rules.make_timeout(Round(5), qc1, None) is None  # neither qc.round+1 nor tc.round+1
    tc4 = w.tc(4, {0: qc1, 1: qc1, 2: qc1})
    assert rules.make_timeout(Round(5), qc1, tc4) is not None


def test_t3_timeout_high_qc_not_below_preferred_round() -> None:
    w = World()
    rules = SafetyRules(
        chain_id=SIM_CHAIN_ID, signer=w.signers[0], data=SafetyData(), bugs=frozenset()
    )
    b1, b2 = w.chain([1, 2])
    rules.observe_qc(w.qc(b2.header))
    assert rules.make_timeout(Round(2), w.qc(b1.header), None) is None
    assert rules.make_timeout(Round(3), w.qc(b2.header), None) is not None


def test_p1_safety_is_persisted_before_the_vote_leaves() -> None:
    w = World(n=7)
    me_not_leader(w, [1])
    rep = w.replica()
    (b1,) = w.chain([1], ntx=1)
    eff = rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    kinds = [type(e).__name__ for e in eff]
    i_persist = kinds.index("PersistSafety")
    i_send = next(
        i for i, e in enumerate(eff) if isinstance(e, Send | Broadcast) and isinstance(e.msg, Vote)
    )
    assert i_persist < i_send
    data = eff[i_persist].data  # type: ignore[union-attr]
    assert isinstance(data, SafetyData) and data.last_vote is not None
    assert data.last_vote.block_id == b1.block_id and data.last_voted_round == 1
    assert SafetyData.decode(data.encode()) == data


def test_p1_timeout_is_persisted_before_broadcast() -> None:
    w = World()
    rep = w.replica()
    w.app.add_txs([make_tx(1)], w.now)
    rep.step(Start(now_ms=w.now))
    eff = rep.step(Tick(now_ms=w.now + 10_000))
    i_persist = next(i for i, e in enumerate(eff) if isinstance(e, PersistSafety))
    i_bcast = next(i for i, e in enumerate(eff) if isinstance(e, Broadcast))
    assert i_persist < i_bcast
    assert eff[i_persist].data.highest_timeout_round == 1  # type: ignore[union-attr]


def test_restart_with_persisted_safety_never_votes_twice() -> None:
    w = World(n=7)
    me_not_leader(w, [1])
    rep = w.replica()
    a = w.block(w.genesis, 1, w.gqc, ntx=1)
    b = w.block(w.genesis, 1, w.gqc, ntx=2)
    eff = rep.step(w.msg(w.leader_index(1), w.proposal(a)))
    disk = [e.data for e in eff if isinstance(e, PersistSafety)][-1]
    assert isinstance(disk, SafetyData)
    restarted = w.replica(safety=SafetyData.decode(disk.encode()))
    restarted.step(Start(now_ms=w.now))
    assert sent_votes(restarted.step(w.msg(w.leader_index(1), w.proposal(b)))) == []


def test_p2_a_restarted_leader_never_signs_a_second_proposal_in_its_round() -> None:
    w = World()
    w.me = w.leader_index(1)
    rep = w.replica()
    w.app.add_txs([make_tx(5)], w.now)
    eff = rep.step(Start(now_ms=w.now)) + rep.step(Tick(now_ms=w.now + 100))
    kinds = [type(e).__name__ for e in eff]
    i_prop = next(
        i for i, e in enumerate(eff) if isinstance(e, Broadcast) and isinstance(e.msg, Proposal)
    )
    assert "PersistSafety" in kinds[:i_prop]  # P1: persisted before the proposal leaves
    disk = [e.data for e in eff[:i_prop] if isinstance(e, PersistSafety)][-1]
    assert isinstance(disk, SafetyData) and disk.last_proposed_round == 1
    # Restart from what was persisted, with a different pool: the leader stays silent in round 1.
    w.app.restarted()
    w.app.add_txs([make_tx(6)], w.now)
    restarted = w.replica(safety=SafetyData.decode(disk.encode()))
    eff = restarted.step(Start(now_ms=w.now)) + restarted.step(Tick(now_ms=w.now + 200))
    assert not [e for e in eff if isinstance(e, Broadcast) and isinstance(e.msg, Proposal)]
    rules = SafetyRules(chain_id=SIM_CHAIN_ID, signer=w.signers[w.me], data=disk, bugs=frozenset())
    assert rules.sign_proposal(Round(1), bytes(32)) is None
    assert rules.sign_proposal(Round(2), bytes(32)) is not None


# --- liveness and protocol rules ---------------------------------------------------------------


def test_l1_huge_rounds_without_certificates_move_nothing() -> None:
    w = World()
    rep = w.replica()
    rep.step(Start(now_ms=w.now))
    huge = 2**40
    for i in (1, 2, 3):
        rep.step(w.msg(i, w.timeout(i, huge, w.gqc)))  # validly signed, but no TC can form ...
    assert rep.round == 1  # ... beyond max_future_rounds, so nothing is buffered or moved
    forged = QuorumCert(
        block_id=Digest(bytes(32)),
        round=Round(huge),
        height=w.gqc.height,
        signatures=tuple(sorted((s.node_id, bytes(64)) for s in w.signers[:3])),
    )
    rep.step(w.msg(1, w.timeout(1, huge + 1, forged)))
    assert rep.round == 1 and rep.high_qc == w.gqc


def test_l1_valid_qc_and_tc_advance_the_round() -> None:
    w = World()
    rep = w.replica()
    b1, b2 = w.chain([1, 2])
    rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    assert rep.round == 1
    rep.step(w.msg(w.leader_index(2), w.proposal(b2)))
    assert rep.round == 2  # b2's justify certified round 1
    qc1 = w.qc(b1.header)
    for i in (1, 2, 3):
        rep.step(w.msg(i, w.timeout(i, 2, qc1)))
    assert rep.round == 3 and rep.state.last_tc is not None and rep.state.last_tc.round == 2


def test_l2_leader_proposes_once_and_attaches_tc_after_a_timeout() -> None:
    w = World()
    w.me = w.leader_index(2)
    rep = w.replica()
    w.app.add_txs([make_tx(7)], w.now)
    rep.step(Start(now_ms=w.now))
    for i in range(4):
        if i != w.me:
            rep.step(w.msg(i, w.timeout(i, 1, w.gqc)))
    props = [e.msg for e in rep.step(Tick(now_ms=w.now + 100)) if isinstance(e, Broadcast)]
    # The TC for round 1 formed while handling timeouts; the proposal went out then.
    assert rep.round == 2 and rep.state.proposed_round == 2
    again = rep.step(Tick(now_ms=w.now + 200))
    assert not [e for e in again if isinstance(e, Broadcast) and isinstance(e.msg, Proposal)]
    del props


def test_l2_round_skip_without_tc_is_rejected() -> None:
    w = World(n=7)
    me_not_leader(w, [3])
    rep = w.replica()
    b = w.block(w.genesis, 3, w.gqc, ntx=1)  # round 3 extends the round-0 QC, no TC
    eff = rep.step(w.msg(w.leader_index(3), w.proposal(b)))
    assert sent_votes(eff) == [] and b.block_id not in rep.tree.blocks


def test_l3_vote_is_broadcast_by_default_and_counted_locally() -> None:
    w = World(n=7)
    me_not_leader(w, [1])
    rep = w.replica()
    (b1,) = w.chain([1])
    eff = rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    assert [to for to, _ in sent_votes(eff)] == [None]
    assert rep.node_id in rep.votes.by_round[b1.header.round]  # our own vote already counts here


def test_l3_the_leader_votes_for_its_own_proposal_in_the_same_step() -> None:
    w = World()
    w.me = w.leader_index(1)
    rep = w.replica()
    tx = make_tx(8)
    w.submitted[tx.tx_id] = tx  # (the sim app validates only submitted transactions)
    w.app.add_txs([tx], w.now)
    rep.step(Start(now_ms=w.now))
    eff = rep.step(Tick(now_ms=w.now + 100))  # the packing wait has passed: propose now
    props = [e.msg for e in eff if isinstance(e, Broadcast) and isinstance(e.msg, Proposal)]
    assert len(props) == 1
    # The vote leaves with the proposal, not one tick later (a round-trip's worth of latency).
    assert [v.block_id for _, v in sent_votes(eff)] == [props[0].block.block_id]


def test_l3_a_replica_checks_no_signature_of_its_own_and_no_vote_beyond_the_quorum() -> None:
    """certs.py rule 7 and aggregation.py rule 4, through the replica: the leader of round 1
    proposes and votes (its own proposal and vote pass its checks unverified), two peers' votes
    make the QC, the third peer's vote is dropped unchecked. Five verifications became two."""
    w = World()
    w.me = w.leader_index(1)
    asked = count_verifications(w)
    rep = w.replica()
    tx = make_tx(8)
    w.submitted[tx.tx_id] = tx
    w.app.add_txs([tx], w.now)
    rep.step(Start(now_ms=w.now))
    eff = rep.step(Tick(now_ms=w.now + 100))
    (b1,) = [e.msg.block for e in eff if isinstance(e, Broadcast) and isinstance(e.msg, Proposal)]
    assert rep.node_id in rep.votes.by_round[b1.header.round]  # our vote counts, unchecked
    assert asked == []
    peers = [i for i in range(4) if i != w.me]
    for i in peers[:2]:
        rep.step(w.msg(i, w.vote(i, b1.header)))
    assert rep.high_qc.block_id == b1.block_id  # the QC is formed
    rep.step(w.msg(peers[2], w.vote(peers[2], b1.header)))
    assert asked == [w.ids()[i] for i in peers[:2]]


def test_l3_a_vote_re_sent_from_persisted_safety_data_is_verified_like_a_peer_s() -> None:
    """certs.py rule 7 trusts only signatures made in this process: after a restart the vote
    read back from disk (SafetyRules re-sends it, never re-signs) goes through the check."""
    w = World(n=7)
    me_not_leader(w, [1])
    a = w.block(w.genesis, 1, w.gqc, ntx=1)
    eff = w.replica().step(w.msg(w.leader_index(1), w.proposal(a)))
    disk = [e.data for e in eff if isinstance(e, PersistSafety)][-1]
    asked = count_verifications(w)
    restarted = w.replica(safety=SafetyData.decode(disk.encode()))
    restarted.step(Start(now_ms=w.now))
    eff = restarted.step(w.msg(w.leader_index(1), w.proposal(a)))
    assert [v.block_id for _, v in sent_votes(eff)] == [a.block_id]  # the same vote, re-sent
    assert w.ids()[w.me] in asked
    assert w.ids()[w.me] in restarted.votes.by_round[a.header.round]  # and counted: it verifies


def test_l3_vote_goes_to_next_leader_when_not_broadcasting() -> None:
    w = World(n=7)
    me_not_leader(w, [1])
    rep = w.replica(config=ConsensusConfig.minimal(broadcast_votes=False))
    (b1,) = w.chain([1])
    eff = rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    assert [to for to, _ in sent_votes(eff)] == [w.vs.leader(2)]


def test_l4_pacemaker_is_disarmed_while_idle() -> None:
    w = World()
    rep = w.replica()
    rep.step(Start(now_ms=w.now))
    for k in range(1, 50):
        assert rep.step(Tick(now_ms=w.now + 1000 * k)) == []
    w.app.add_txs([make_tx(3)], w.now)
    eff = []
    for k in range(50, 60):
        eff += rep.step(Tick(now_ms=w.now + 1000 * k))
    assert broadcast_timeouts(eff)


def test_l4_timeout_amplification_joins_after_f_plus_one() -> None:
    w = World()
    rep = w.replica()  # idle: would never time out on its own
    rep.step(Start(now_ms=w.now))
    assert broadcast_timeouts(rep.step(w.msg(1, w.timeout(1, 1, w.gqc)))) == []
    eff = rep.step(w.msg(2, w.timeout(2, 1, w.gqc)))  # 2 of 4 > 1/3 of the power
    assert [t.round for t in broadcast_timeouts(eff)] == [1]


def test_l5_timeouts_back_off_and_are_capped() -> None:
    cfg = ConsensusConfig.minimal()
    ts = [cfg.compute_timeout_ms(k) for k in range(12)]
    assert ts[0] == cfg.round_timeout_ms
    assert all(a <= b for a, b in itertools.pairwise(ts))
    assert ts[1] > ts[0] and ts[-1] == cfg.max_round_timeout_ms


def test_l6_two_chain_commit_needs_consecutive_rounds() -> None:
    w = World()
    b1, b2, b3 = w.chain([1, 2, 3], ntx=1)
    rep = w.replica()
    eff = rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    eff += rep.step(w.msg(w.leader_index(2), w.proposal(b2)))
    assert commits(eff) == []
    eff = rep.step(w.msg(w.leader_index(3), w.proposal(b3)))  # carries QC(b2), b2.round = b1+1
    (c,) = commits(eff)
    assert [b.block_id for b in c.blocks] == [b1.block_id]
    assert c.proof.header == b2.header and c.proof.committed_id == b1.block_id
    assert rep.certs.verify_commit_proof(CommitProof.decode(c.proof.encode()))
    # Non-consecutive: b5 at round 5 (via TC) on b3, QC(b5) must not commit b3.
    tc4 = w.tc(4, {0: w.qc(b3.header), 1: w.qc(b3.header), 2: w.qc(b3.header)})
    b5 = w.block(b3.header, 5, w.qc(b3.header))
    b6 = w.block(b5.header, 6, w.qc(b5.header))
    eff = rep.step(w.msg(w.leader_index(5), w.proposal(b5, tc4)))
    eff += rep.step(w.msg(w.leader_index(6), w.proposal(b6)))
    assert [b.block_id for c in commits(eff) for b in c.blocks] == [b2.block_id]


def test_l7_future_messages_are_bounded() -> None:
    w = World()
    rep = w.replica()
    rep.step(Start(now_ms=w.now))
    (b1,) = w.chain([1])
    far = CFG.max_future_rounds + 5
    for r in range(2, far + 50):
        rep.step(
            w.msg(1, w.vote(1, b1.header.__class__(**{**_fields(b1.header), "round": Round(r)})))
        )
    assert max(rep.votes.by_round) <= rep.round + CFG.max_future_rounds
    assert sum(len(v) for v in rep.votes.by_round.values()) <= CFG.max_future_rounds + 1


def _fields(h: BlockHeader) -> dict[str, object]:
    return {f.name: getattr(h, f.name) for f in dataclasses.fields(h) if f.init}


def test_l8_missing_parent_is_fetched_then_voted() -> None:
    w = World(n=7)
    b1, b2 = w.chain([1, 2], ntx=1)
    me_not_leader(w, [2])
    rep = w.replica()
    leader2 = w.leader_index(2)
    eff = rep.step(w.msg(leader2, w.proposal(b2)))
    reqs = [e for e in eff if isinstance(e, Send) and isinstance(e.msg, BlockRequest)]
    assert reqs and reqs[0].msg.block_id == b1.block_id and sent_votes(eff) == []
    resp = BlockResponse(block_id=b1.block_id, blocks=(b1,))
    eff = rep.step(w.msg(leader2, resp))
    assert [v.block_id for _, v in sent_votes(eff)] == [b2.block_id]
    assert any(isinstance(e, PersistBlock) for e in eff)


def test_l8_unsolicited_block_response_is_ignored() -> None:
    w = World()
    rep = w.replica()
    (b1,) = w.chain([1])
    rep.step(w.msg(1, BlockResponse(block_id=b1.block_id, blocks=(b1,))))
    assert b1.block_id not in rep.tree.blocks


def test_l8_committed_sync_verifies_every_proof() -> None:
    w = World()
    blocks = w.chain([1, 2, 3], ntx=1)
    proof = CommitProof(header=blocks[1].header, qc=w.qc(blocks[1].header))
    rep = w.replica()
    # A forged proof (QC signed by one validator only) is refused.
    weak = CommitProof(header=blocks[1].header, qc=w.qc(blocks[1].header, voters=(0,)))
    assert commits(rep.step(w.msg(1, SyncRequest(from_height=1, count=4)))) == []
    rep.retrieval.sync_inflight_ms = w.now + 10_000
    assert commits(rep.step(w.msg(1, SyncResponse(items=((blocks[0], weak),))))) == []
    rep.retrieval.sync_inflight_ms = w.now + 10_000
    (c,) = commits(rep.step(w.msg(1, SyncResponse(items=((blocks[0], proof),)))))
    assert c.blocks == (blocks[0],) and rep.committed_header == blocks[0].header


def test_l8_committed_sync_checks_the_body_against_the_proven_header() -> None:
    """Review finding (issue 10): a CommitProof certifies a header, not the transactions beside
    it. A peer that kept the proven header and swapped the block's transaction had a lagging
    node commit the wrong one; now a synced block passes App.validate_block on its parent, as a
    proposal does, before anything of its run is committed."""
    w = World()
    blocks = w.chain([1, 2, 3], ntx=1)
    proof = CommitProof(header=blocks[1].header, qc=w.qc(blocks[1].header))
    other = make_tx(99_999)
    w.submitted[other.tx_id] = other  # a real, submitted tx: only the header binding is wrong
    forged = Block(header=blocks[0].header, txs=(other,))
    rep = w.replica()
    rep.retrieval.sync_inflight_ms = w.now + 10_000
    assert commits(rep.step(w.msg(1, SyncResponse(items=((forged, proof),))))) == []
    assert rep.committed_header == w.genesis
    rep.retrieval.sync_inflight_ms = w.now + 10_000
    (c,) = commits(rep.step(w.msg(1, SyncResponse(items=((blocks[0], proof),)))))
    assert c.blocks == (blocks[0],)


def test_sync_request_is_answered_from_the_app_store() -> None:
    w = World()
    blocks = w.chain([1, 2], ntx=1)
    proof = CommitProof(header=blocks[1].header, qc=w.qc(blocks[1].header))
    assert w.app.validate_block(blocks[0], w.genesis, now_ms=w.now)
    w.app.apply_commit([blocks[0]], proof, w.now)
    rep = w.replica()
    eff = rep.step(w.msg(2, SyncRequest(from_height=1, count=5)))
    (resp,) = [e.msg for e in eff if isinstance(e, Send)]
    assert isinstance(resp, SyncResponse) and resp.items == ((blocks[0], proof),)


def test_l9_a_lone_timeout_is_answered_with_the_commit_qc() -> None:
    w = World()
    b1, b2 = w.chain([1, 2], ntx=1)
    rep = w.replica()
    rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    rep.step(w.msg(w.leader_index(2), w.proposal(b2)))
    qc2 = w.qc(b2.header)
    for i in range(3):  # votes for b2 form QC(b2): b1 commits, round 3 begins
        rep.step(w.msg(i, w.vote(i, b2.header)))
    assert rep.committed_header == b1.header and rep.round == 3
    peer = next(i for i in range(4) if i != w.me)
    eff = rep.step(w.msg(peer, w.timeout(peer, 3, qc2)))  # a peer times out alone in our round
    infos = [e.msg for e in eff if isinstance(e, Send) and isinstance(e.msg, SyncInfo)]
    assert [e.to for e in eff if isinstance(e, Send)] == [w.signers[peer].node_id]
    assert len(infos) == 1 and infos[0].commit_qc is not None
    assert infos[0].commit_qc.block_id == b2.block_id
    # Rate-limited: a repeat within the period is not answered again.
    w.now += 10
    again = rep.step(w.msg(peer, w.timeout(peer, 3, qc2)))
    assert [e for e in again if isinstance(e, Send)] == []


def test_l9_commit_qc_in_sync_info_commits_held_blocks() -> None:
    w = World()
    b1, b2 = w.chain([1, 2], ntx=1)
    me_not_leader(w, [1, 2])
    rep = w.replica()
    rep.step(w.msg(w.leader_index(1), w.proposal(b1)))
    rep.step(w.msg(w.leader_index(2), w.proposal(b2)))
    qc1 = b2.header.justify
    assert rep.committed_header == w.genesis  # QC(b2) never reached us
    # A commit QC with too few signatures changes nothing.
    weak = SyncInfo(high_qc=qc1, tc=None, commit_qc=w.qc(b2.header, voters=(0, 1)))
    assert commits(rep.step(w.msg(1, weak))) == []
    good = SyncInfo(high_qc=qc1, tc=None, commit_qc=w.qc(b2.header))
    (c,) = commits(rep.step(w.msg(1, good)))
    assert c.blocks == (b1,) and rep.committed_header == b1.header


# --- whole-replica behaviours ------------------------------------------------------------------


def test_single_validator_commits_and_stays_quiet_when_idle() -> None:
    w = World(n=1)
    rep = w.replica()
    rep.step(Start(now_ms=w.now))
    assert rep.step(Tick(now_ms=w.now + 5000)) == []  # idle: no empty blocks
    tx = make_tx(42)
    w.submitted[tx.tx_id] = tx
    w.app.add_txs([tx], w.now)
    committed: list[Block] = []
    proposals = 0
    for k in range(1, 30):
        for e in rep.step(Tick(now_ms=w.now + 5000 + 50 * k)):
            if isinstance(e, Commit):
                committed.extend(e.blocks)
                w.app.apply_commit(e.blocks, e.proof, w.now)
            if isinstance(e, Broadcast) and isinstance(e.msg, Proposal):
                proposals += 1
    assert [t.tx_id for b in committed for t in b.txs] == [tx.tx_id]
    assert proposals == 2  # the block with the tx, then one empty block to commit it
    assert rep.step(Tick(now_ms=w.now + 100_000)) == []


def test_observer_follows_and_commits_but_never_signs() -> None:
    w = World()
    b1, b2, b3 = w.chain([1, 2, 3], ntx=1)
    obs = w.replica(signer=False)
    eff: list[Effect] = []
    for b in (b1, b2, b3):
        eff += obs.step(w.msg(w.leader_index(b.header.round), w.proposal(b)))
    eff += obs.step(Tick(now_ms=w.now + 60_000))
    assert [b.block_id for c in commits(eff) for b in c.blocks] == [b1.block_id]
    assert not [e for e in eff if isinstance(e, PersistSafety | Send | Broadcast)]


def test_invalid_proposal_signature_changes_nothing() -> None:
    w = World()
    (b1,) = w.chain([1])
    rep = w.replica()
    bad = Proposal(block=b1, tc=None, signature=bytes(64))
    assert rep.step(w.msg(w.leader_index(1), bad)) == []
    assert rep.tree.blocks == {} and rep.round == 1


def test_config_has_no_way_to_carry_a_planted_bug() -> None:
    """Planted bugs reach a replica only as Replica(bugs=...), never through its configuration."""
    from gmchain.consensus.mutations import Bug

    with pytest.raises(TypeError):
        ConsensusConfig(bugs=frozenset({Bug.QUORUM_2F}))  # type: ignore[call-arg]
    ConsensusConfig().validate()


def test_sync_response_applies_only_proven_runs() -> None:
    w = World()
    blocks = w.chain([1, 2, 3, 4], ntx=1)
    p1 = CommitProof(header=blocks[1].header, qc=w.qc(blocks[1].header))  # proves blocks[0]
    p2 = CommitProof(header=blocks[3].header, qc=w.qc(blocks[3].header))  # proves blocks[2]
    rep = w.replica()
    items = ((blocks[0], p1), (blocks[1], p2), (blocks[2], p2))
    eff = rep.step(w.msg(1, SyncResponse(items=items)))
    got = [[b.block_id for b in c.blocks] for c in commits(eff)]
    assert got == [[blocks[0].block_id], [blocks[1].block_id, blocks[2].block_id]]
    # Replaying them commits nothing twice.
    again = rep.step(w.msg(1, SyncResponse(items=((blocks[2], p2),))))
    assert commits(again) == []


def test_quorum_is_more_than_two_thirds_of_the_power() -> None:
    ids = [NodeId(bytes([i]) * 20) for i in range(1, 5)]
    equal = ValidatorSet(Validator(node_id=i, power=1) for i in ids)
    assert equal.quorum_power == 3 and equal.is_quorum(ids[:3]) and not equal.is_quorum(ids[:2])
    weighted = ValidatorSet(
        Validator(node_id=i, power=p) for i, p in zip(ids, [1, 1, 1, 6], strict=True)
    )
    assert weighted.quorum_power == 7  # total 9: 2/3 is 6, a quorum needs more
    assert not weighted.is_quorum([ids[3]]) and weighted.is_quorum([ids[3], ids[0]])
    assert weighted.power_of(NodeId(b"\xff" * 20)) == 0
    assert [weighted.leader(r) for r in range(5)] == [*sorted(ids), sorted(ids)[0]]


def test_each_signature_is_verified_once_and_failures_are_never_cached() -> None:
    from gmchain.consensus.certs import CertChecker

    w = World()
    calls: list[bytes] = []

    class Counting:
        def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool:
            calls.append(node_id)
            return w.verifier.verify(node_id, msg, sig)

    certs = CertChecker(
        chain_id=SIM_CHAIN_ID, validators=w.vs, verifier=Counting(), genesis_id=w.genesis.block_id
    )
    (b1,) = w.chain([1])
    for i in (0, 1):
        assert certs.verify_vote(w.vote(i, b1.header))
    assert len(calls) == 2
    assert certs.verify_qc(w.qc(b1.header, voters=(0, 1, 2)))  # only signer 2 is new
    assert len(calls) == 3
    # A forged signature under a signer whose genuine one is cached is still checked, and fails.
    qc = w.qc(b1.header, voters=(0, 1, 3))
    forged = tuple(
        (nid, bytes(64)) if nid == w.signers[0].node_id else (nid, sig)
        for nid, sig in qc.signatures
    )
    bad = QuorumCert(block_id=qc.block_id, round=qc.round, height=qc.height, signatures=forged)
    assert not certs.verify_qc(bad)
    assert not certs.verify_qc(bad)  # and a failure is not remembered as a success


def test_l9_replies_per_peer_are_budgeted_whatever_rounds_it_names() -> None:
    from gmchain.consensus.replica import HELP_PER_PERIOD

    w = World()
    blocks = w.chain(list(range(1, 25)))
    rep = w.replica()
    for b in blocks:
        rep.step(w.msg(w.leader_index(b.header.round), w.proposal(b)))
    assert rep.round >= 24
    peer = next(i for i in range(4) if i != w.me)
    replies = 0
    for r in range(1, 21):  # replayed timeouts of twenty old rounds, all within one period
        old = w.timeout(peer, r, w.qc(blocks[r - 2].header) if r > 1 else w.gqc)
        eff = rep.step(w.msg(peer, old))
        replies += sum(isinstance(e, Send) and isinstance(e.msg, SyncInfo) for e in eff)
    assert replies == HELP_PER_PERIOD


def test_l10_lag_is_measured_from_verified_commit_qcs_only() -> None:
    w = World()
    blocks = w.chain([1, 2, 3, 4, 5, 6])
    rep = w.replica()
    assert rep.lag == 0 and not rep.heard_status
    tip = blocks[-1].header  # QC(b6) commits b5: the peer's committed height is 5
    # A peer naming a height without a quorum's signatures moves nothing (CVE-2025-24371's lie).
    forged_qc = w.qc(tip, voters=(1, 2))
    lie = SyncInfo(high_qc=forged_qc, tc=None, commit_qc=forged_qc)
    assert [e for e in rep.step(w.msg(1, lie)) if isinstance(e, Send)] == []
    assert rep.lag == 0 and rep.state.peak_height == 0 and not rep.heard_status
    # A verified commit QC: lag 5, and fetching starts at once (from the peer that sent it).
    qc6 = w.qc(tip)
    eff = rep.step(w.msg(2, SyncInfo(high_qc=qc6, tc=None, commit_qc=qc6)))
    assert rep.heard_status and rep.state.peak_height == 5 and rep.lag == 5
    reqs = [e for e in eff if isinstance(e, Send) and isinstance(e.msg, BlockRequest)]
    assert [(e.to, e.msg.block_id) for e in reqs] == [(w.signers[2].node_id, tip.block_id)]
    # get_sync_info is what the node sends on connect and periodically.
    assert rep.get_sync_info().high_qc == qc6


def test_l10_a_peer_that_never_answers_cannot_stall_sync() -> None:
    w = World()
    blocks = w.chain([1, 2, 3])
    rep = w.replica()
    qc3 = w.qc(blocks[-1].header)
    rep.step(w.msg(1, SyncInfo(high_qc=qc3, tc=None, commit_qc=qc3)))  # then peer 1 goes silent
    asked: set[NodeId] = set()
    for _ in range(12):
        w.now += CFG.request_retry_ms
        eff = rep.step(Tick(now_ms=w.now))
        asked |= {e.to for e in eff if isinstance(e, Send) and isinstance(e.msg, BlockRequest)}
    assert asked - {w.signers[1].node_id}, "retries never left the silent peer"
    # An honest answer from another validator brings the blocks and the commit.
    other = next(i for i in range(1, 4) if w.signers[i].node_id in asked and i != 1)
    resp = BlockResponse(block_id=blocks[-1].block_id, blocks=tuple(reversed(blocks)))
    commits(rep.step(w.msg(other, resp)))
    assert rep.committed_header == blocks[1].header and rep.lag == 0
