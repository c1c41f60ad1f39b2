"""Rule tests for epochs in the consensus core (consensus/replica.py E5, consensus/certs.py rule 6,
consensus/safety.py E1, consensus/epochgate.py, consensus/equivocation.py rule 2).

The replica under test runs epoch 1 on top of a block E that ended epoch 0. Blocks come from
`_EpochApp`, a stand-in for the chain library that builds and accepts empty blocks of one epoch:
these tests are about which messages and certificates a replica of one epoch takes, not about
execution (the simulator runs the real chain library across epoch changes:
tests/test_sim_epochs.py). Signatures are the simulator's real SM3-keyed fake signatures.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gmchain.consensus import (
    Broadcast,
    CertChecker,
    Commit,
    CommitProof,
    ConsensusConfig,
    Effect,
    MessageReceived,
    PersistSafety,
    Replica,
    SafetyData,
    SafetyRules,
    Send,
    Start,
    SyncInfo,
    SyncRequest,
    Validator,
    ValidatorSet,
)
from gmchain.consensus.equivocation import EquivocationDetector
from gmchain.consensus.mutations import Bug
from gmchain.consensus.safety import load_safety_data
from gmchain.consensus.sim.app import SIM_CHAIN_ID, FakeSigner, FakeVerifier
from gmchain.consensus.types import PeerInLaterEpoch
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.codec import encode
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    Height,
    NodeId,
    Proposal,
    QuorumCert,
    Round,
    TimeoutCert,
    TimeoutVote,
    Vote,
)

CFG = ConsensusConfig.minimal()
_Z = Digest(b"\x00" * 32)


def _header(
    parent: BlockHeader, r: int, justify: QuorumCert, proposer: NodeId, epoch: int
) -> BlockHeader:
    return BlockHeader(
        chain_id=SIM_CHAIN_ID,
        epoch=epoch,
        height=Height(parent.height + 1),
        round=Round(r),
        parent_id=parent.block_id,
        timestamp_ms=parent.timestamp_ms + 1,
        proposer=proposer,
        tx_root=_Z,
        tx_count=0,
        receipt_root=_Z,
        acc_root=_Z,
        acc_size=0,
        state_hash=_Z,
        next_validators_hash=_Z,
        justify=justify,
    )


class _EpochApp:
    """Builds and accepts empty blocks of `epoch` only (what chain/ does for its epoch, E3)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.committed: dict[int, tuple[Block, CommitProof]] = {}
        self.ready = True  # the packing policy's "cut a block now"

    def has_pending(self) -> bool:
        return False

    def ready_to_propose(self, now_ms: int) -> bool:
        return self.ready

    def build_block(
        self,
        *,
        parent: BlockHeader,
        round: Round,
        justify: QuorumCert,
        proposer: NodeId,
        now_ms: int,
    ) -> Block:
        return Block(header=_header(parent, round, justify, proposer, self.epoch), txs=())

    def validate_block(self, block: Block, parent: BlockHeader, *, now_ms: int) -> bool:
        return block.header.epoch == self.epoch and not block.txs

    def on_pruned(self, block_ids: Sequence[Digest]) -> None:
        pass

    def get_committed_blocks(
        self, from_height: int, max_count: int
    ) -> Sequence[tuple[Block, CommitProof]]:
        return [
            self.committed[h]
            for h in range(from_height, from_height + max_count)
            if h in self.committed
        ]


class EpochWorld:
    """Epoch 0: blocks G(h0) <- P(r1) <- E(r2), E ended epoch 0; QC(E) is the root of epoch 1.
    Four validators in both epochs (the same keys: the tests are about epochs, not sets)."""

    def __init__(self, me: int = 0) -> None:
        secrets = {}
        self.signers: list[FakeSigner] = []
        for i in range(4):
            secret = sm3_hash(b"epoch-rule" + bytes([i]))
            nid = NodeId(sm3_hash(b"epoch-node" + bytes([i]))[:20])
            secrets[nid] = secret
            self.signers.append(FakeSigner(nid, secret))
        self.signers.sort(key=lambda s: s.node_id)
        self.verifier = FakeVerifier(secrets)
        self.vs = ValidatorSet(Validator(node_id=s.node_id, power=1) for s in self.signers)
        self.me = me
        self.now = 1000
        g = BlockHeader(
            chain_id=SIM_CHAIN_ID,
            epoch=0,
            height=Height(0),
            round=Round(0),
            parent_id=_Z,
            timestamp_ms=0,
            proposer=NodeId(b"\x00" * 20),
            tx_root=_Z,
            tx_count=0,
            receipt_root=_Z,
            acc_root=_Z,
            acc_size=0,
            state_hash=_Z,
            next_validators_hash=_Z,
            justify=QuorumCert(block_id=_Z, round=Round(0), height=Height(0)),
        )
        self.genesis = g
        gqc = QuorumCert(block_id=g.block_id, round=Round(0), height=Height(0))
        p = _header(g, 1, gqc, self.vs.leader(1), 0)
        self.ending = _header(p, 2, self.qc(p), self.vs.leader(2), 0)
        self.root_qc = self.qc(self.ending, voters=[0, 1, 2])
        # A suffix block of epoch 0 on E (empty), certified by epoch 0: never epoch 1's.
        self.suffix = _header(self.ending, 3, self.root_qc, self.vs.leader(3), 0)
        self.app = _EpochApp(epoch=1)

    def replica(
        self, *, safety: SafetyData | None = None, bugs: frozenset[Bug] = frozenset()
    ) -> Replica:
        return Replica(
            config=CFG,
            validators=self.vs,
            chain_id=SIM_CHAIN_ID,
            signer=self.signers[self.me],
            verifier=self.verifier,
            app=self.app,
            committed=self.ending,
            high_qc=self.root_qc,
            safety=safety,
            now_ms=self.now,
            epoch=1,
            root_qc=self.root_qc,
            bugs=bugs,
        )

    def vote(self, i: int, h: BlockHeader, epoch: int | None = None) -> Vote:
        ep = h.epoch if epoch is None else epoch
        root = QuorumCert.signing_root(SIM_CHAIN_ID, ep, h.block_id, h.round, h.height)
        return Vote(
            epoch=ep,
            block_id=h.block_id,
            round=h.round,
            height=h.height,
            voter=self.signers[i].node_id,
            signature=self.signers[i].sign(root),
        )

    def qc(self, h: BlockHeader, voters: Sequence[int] = (0, 1, 2)) -> QuorumCert:
        sigs = tuple(sorted((v.voter, v.signature) for v in (self.vote(i, h) for i in voters)))
        return QuorumCert(
            epoch=h.epoch, block_id=h.block_id, round=h.round, height=h.height, signatures=sigs
        )

    def timeout(self, i: int, r: int, hqc: QuorumCert, epoch: int = 1) -> TimeoutVote:
        root = TimeoutVote.signing_root(SIM_CHAIN_ID, epoch, r, hqc.round)
        return TimeoutVote(
            epoch=epoch,
            round=Round(r),
            high_qc=hqc,
            voter=self.signers[i].node_id,
            signature=self.signers[i].sign(root),
        )

    def block(self, parent: BlockHeader, r: int, justify: QuorumCert, epoch: int = 1) -> Block:
        return Block(header=_header(parent, r, justify, self.vs.leader(r), epoch), txs=())

    def proposal(self, block: Block, tc: TimeoutCert | None = None) -> Proposal:
        ids = [s.node_id for s in self.signers]
        signer = self.signers[ids.index(block.header.proposer)]
        sig = signer.sign(Proposal.signing_root(SIM_CHAIN_ID, block.block_id))
        return Proposal(block=block, tc=tc, signature=sig)

    def msg(self, sender: int, m: object) -> MessageReceived:
        self.now += 1
        return MessageReceived(sender=self.signers[sender].node_id, msg=m, now_ms=self.now)  # type: ignore[arg-type]

    def leader_index(self, r: int) -> int:
        return [s.node_id for s in self.signers].index(self.vs.leader(r))

    def not_leading(self, rounds: Sequence[int]) -> int:
        busy = {self.leader_index(r) for r in rounds} | {self.leader_index(r + 1) for r in rounds}
        return next(i for i in range(4) if i not in busy)


def votes_out(effects: Sequence[Effect]) -> list[Vote]:
    return [e.msg for e in effects if isinstance(e, Send | Broadcast) and isinstance(e.msg, Vote)]


# --- certificates (consensus/certs.py rule 6) --------------------------------------------------


def test_root_qc_is_accepted_by_what_it_certifies_and_no_other_qc_of_the_old_epoch() -> None:
    w = EpochWorld()
    certs = CertChecker(
        chain_id=SIM_CHAIN_ID,
        validators=w.vs,
        verifier=w.verifier,
        genesis_id=None,
        epoch=1,
        root_qc=w.root_qc,
    )
    assert certs.verify_qc(w.root_qc)
    # Another node assembled QC(E) from other votes: the same root.
    assert certs.verify_qc(w.qc(w.ending, voters=[1, 2, 3]))
    # A valid QC of epoch 0 for any other block (a suffix block of E) is refused ...
    assert not certs.verify_qc(w.qc(w.suffix))
    # ... and so is one naming E's id with another round.
    other = w.qc(w.ending)
    forged = QuorumCert(
        epoch=0,
        block_id=other.block_id,
        round=Round(9),
        height=other.height,
        signatures=other.signatures,
    )
    assert not certs.verify_qc(forged)
    # An epoch-0 checker accepts the suffix QC (it is epoch 0's) and never sees a root.
    old = CertChecker(
        chain_id=SIM_CHAIN_ID, validators=w.vs, verifier=w.verifier, genesis_id=None, epoch=0
    )
    assert old.verify_qc(w.qc(w.suffix))


def test_planted_previous_epoch_qc_bug_accepts_the_suffix_qc() -> None:
    """The mutation the sim sweep must catch (consensus/mutations.py PREVIOUS_EPOCH_QC)."""
    w = EpochWorld()
    bugged = CertChecker(
        chain_id=SIM_CHAIN_ID,
        validators=w.vs,
        verifier=w.verifier,
        genesis_id=None,
        epoch=1,
        root_qc=w.root_qc,
        bugs=frozenset({Bug.PREVIOUS_EPOCH_QC}),
    )
    assert bugged.verify_qc(w.qc(w.suffix))


# --- the replica of a new epoch (E5) -----------------------------------------------------------


def test_e5_first_block_of_the_epoch_extends_the_root_and_gets_an_epoch_vote() -> None:
    w = EpochWorld()
    r = int(w.root_qc.round) + 1
    w.me = w.not_leading([r])
    rep = w.replica()
    rep.step(Start(now_ms=w.now))
    assert rep.round == r  # rounds go on from QC(E).round + 1
    b1 = w.block(w.ending, r, w.root_qc)
    effects = rep.step(w.msg(w.leader_index(r), w.proposal(b1)))
    votes = votes_out(effects)
    assert [(v.block_id, v.epoch) for v in votes] == [(b1.block_id, 1)]
    persisted = [e.data for e in effects if isinstance(e, PersistSafety)]
    assert persisted and all(d.epoch == 1 for d in persisted)  # type: ignore[attr-defined]


def test_e5_the_new_epoch_commits_by_its_own_qcs() -> None:
    w = EpochWorld()
    r = int(w.root_qc.round) + 1
    w.me = w.not_leading([r, r + 1])
    rep = w.replica()
    b1 = w.block(w.ending, r, w.root_qc)
    b2 = w.block(b1.header, r + 1, w.qc(b1.header))
    rep.step(w.msg(w.leader_index(r), w.proposal(b1)))
    rep.step(w.msg(w.leader_index(r + 1), w.proposal(b2)))
    effects: list[Effect] = []
    for i in range(3):
        effects += rep.step(w.msg(i, w.vote(i, b2.header)))
    done = [e for e in effects if isinstance(e, Commit)]
    assert [b.block_id for c in done for b in c.blocks] == [b1.block_id]
    assert done[0].proof.qc.epoch == 1


def test_e5_messages_of_other_epochs_are_dropped_and_counted() -> None:
    w = EpochWorld()
    r = int(w.root_qc.round) + 1
    w.me = w.not_leading([r])
    rep = w.replica()
    before = (rep.round, rep.high_qc, rep.safety.data if rep.safety else None)
    # A proposal of epoch 0 extending E in our round: the old epoch's suffix, not ours.
    old = w.block(w.ending, r, w.root_qc, epoch=0)
    assert not votes_out(rep.step(w.msg(w.leader_index(r), w.proposal(old))))
    # Old-epoch votes and timeouts, validly signed by members of our own set.
    rep.step(w.msg(1, w.vote(1, w.suffix)))
    rep.step(w.msg(2, w.timeout(2, r, w.root_qc, epoch=0)))
    assert rep.gate.dropped == 3
    assert (rep.round, rep.high_qc, rep.safety.data if rep.safety else None) == before
    # Timeouts of our epoch carrying the root QC form a TC that moves us on.
    for i in (1, 2, 3):
        rep.step(w.msg(i, w.timeout(i, r, w.root_qc)))
    assert rep.round == r + 1


def test_e5_a_later_epoch_is_reported_once_per_peer_and_synced_from() -> None:
    w = EpochWorld()
    rep = w.replica()
    later = w.block(w.ending, int(w.root_qc.round) + 1, w.root_qc, epoch=2)
    v = w.vote(3, later.header)
    effects = rep.step(w.msg(3, v))
    assert PeerInLaterEpoch(peer=w.signers[3].node_id, epoch=2) in effects
    assert [e.to for e in effects if isinstance(e, Send) and isinstance(e.msg, SyncRequest)] == [
        w.signers[3].node_id
    ]
    assert rep.gate.dropped == 1
    again = rep.step(w.msg(3, v))
    assert not [e for e in again if isinstance(e, PeerInLaterEpoch)]
    # A SyncInfo whose TC is of a later epoch shows it too (another peer).
    tc = TimeoutCert(
        epoch=3,
        round=Round(9),
        high_qc=w.root_qc,
        entries=((w.signers[1].node_id, int(w.root_qc.round), b"\x01" * 64),),
    )
    info = rep.step(w.msg(1, SyncInfo(high_qc=w.root_qc, tc=tc)))
    assert PeerInLaterEpoch(peer=w.signers[1].node_id, epoch=3) in info


# --- safety data (consensus/safety.py E1) ------------------------------------------------------


def test_e1_safety_data_of_an_older_epoch_is_replaced_and_a_later_one_refused() -> None:
    w = EpochWorld()
    r = int(w.root_qc.round) + 1
    w.me = w.not_leading([r])
    high = SafetyData(epoch=0, last_voted_round=Round(50), preferred_round=Round(49))
    rep = w.replica(safety=high)
    # Round r < 50: in epoch 0 this would be refused by S1; epoch 1's rounds start afresh.
    effects = rep.step(w.msg(w.leader_index(r), w.proposal(w.block(w.ending, r, w.root_qc))))
    assert len(votes_out(effects)) == 1
    with pytest.raises(ValueError, match="epoch 2"):
        w.replica(safety=SafetyData(epoch=2))


def test_e1_safety_rules_sign_only_their_epoch() -> None:
    w = EpochWorld()
    rules = SafetyRules(chain_id=SIM_CHAIN_ID, signer=w.signers[0], data=SafetyData(), epoch=1)
    assert rules.data.epoch == 1
    r = int(w.root_qc.round) + 1
    assert rules.make_vote(w.block(w.ending, r, w.root_qc, epoch=0).header, None) is None
    made = rules.make_vote(w.block(w.ending, r, w.root_qc).header, None)
    assert made is not None and made[1].epoch == 1 and made[0].epoch == 1


def test_safety_layout_before_epochs_loads_as_epoch_zero() -> None:
    d = SafetyData(last_voted_round=Round(7), last_proposed_round=Round(8))
    eight = encode(d.to_fields()[:9])  # TAG + the eight fields before `epoch`
    got = load_safety_data(eight)
    assert got == d and got.epoch == 0
    e = SafetyData(last_voted_round=Round(7), epoch=5)
    assert load_safety_data(e.encode()) == e


# --- equivocation (consensus/equivocation.py rule 2) -------------------------------------------


def test_equivocation_is_per_epoch_and_round() -> None:
    w = EpochWorld()
    det = EquivocationDetector(chain_id=SIM_CHAIN_ID, verifier=w.verifier)
    voter = w.signers[1].node_id
    r = int(w.root_qc.round) + 1
    a = w.block(w.ending, r, w.root_qc, epoch=0).header
    b = w.block(w.ending, r, w.root_qc, epoch=1).header
    c = w.block(w.ending, r, w.root_qc, epoch=1)
    c_h = _header(w.ending, r, w.root_qc, c.header.proposer, 1)
    c_h = BlockHeader(
        **{
            **{
                f: getattr(c_h, f)
                for f in (
                    "chain_id",
                    "epoch",
                    "height",
                    "round",
                    "parent_id",
                    "proposer",
                    "tx_root",
                    "tx_count",
                    "receipt_root",
                    "acc_root",
                    "acc_size",
                    "state_hash",
                    "next_validators_hash",
                    "justify",
                )
            },
            "timestamp_ms": c_h.timestamp_ms + 5,
        }
    )
    assert det.check(voter, w.vote(1, a)) is None
    assert det.check(voter, w.vote(1, b)) is None  # same round, the next epoch: no conflict
    why = det.check(voter, w.vote(1, c_h))
    assert why is not None and f"round {r} of epoch 1" in why


def test_e5_a_sender_in_an_older_epoch_gets_our_certificates() -> None:
    """epochgate rule 3: a peer still in epoch 0 learns QC(E) and the QC that committed E."""
    w = EpochWorld()
    rep = w.replica()
    r = int(w.root_qc.round) + 1
    stale = w.timeout(2, r, w.root_qc, epoch=0)
    effects = rep.step(w.msg(2, stale))
    infos = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, SyncInfo)]
    assert [e.to for e in infos] == [w.signers[2].node_id]
    assert infos[0].msg.high_qc == w.root_qc  # type: ignore[union-attr]
    # Budgeted (L9): the same peer's next stale messages in this period get nothing.
    assert not [e for e in rep.step(w.msg(2, stale)) if isinstance(e, Send)]
    assert rep.gate.dropped == 2


def test_e5_the_first_leader_of_an_epoch_proposes_at_once_with_nothing_pending() -> None:
    """So a node still in the old epoch sees a message of the new one (and syncs), and the new
    set certifies a block at once, busy or idle."""
    w = EpochWorld()
    r = int(w.root_qc.round) + 1
    w.me = w.leader_index(r)
    w.app.ready = False
    effects = w.replica().step(Start(now_ms=w.now))
    props = [e.msg for e in effects if isinstance(e, Broadcast) and isinstance(e.msg, Proposal)]
    assert len(props) == 1
    h = props[0].block.header
    assert (h.epoch, h.round, h.parent_id, h.justify) == (1, r, w.ending.block_id, w.root_qc)
    # The same start without root_qc (a replica restarted mid-epoch) waits for work.
    without_root = Replica(
        config=CFG,
        validators=w.vs,
        chain_id=SIM_CHAIN_ID,
        signer=w.signers[w.me],
        verifier=w.verifier,
        app=w.app,
        committed=w.ending,
        high_qc=w.root_qc,
        safety=None,
        now_ms=w.now,
        epoch=1,
    )
    assert not [e for e in without_root.step(Start(now_ms=w.now)) if isinstance(e, Broadcast)]
