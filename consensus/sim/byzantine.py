"""Byzantine behaviours for the simulator: each rewrites a correct replica's outgoing effects.

Behaviours (Twins — two replicas sharing one key — is set up by the world, not here):
  equivocate   as leader, send two different blocks for the round to two halves of the network
  fork         as leader, send some nodes a block extending an older QC (with a forged TC or none)
  double_vote  besides each vote, vote for another (random, i.e. invalid or unknown) block
  forge        send proposals, timeouts and sync infos carrying forged QCs/TCs
  flood        send validly signed timeouts and votes for huge round numbers
  withhold     drop own votes, timeouts or proposals
  lock_attack  as leader holding QC(X) that would commit X's parent W: withhold the proposal until
               a TC for the previous round forms without QC(X); then send the honest proposal to
               one node (which commits W) and, to the rest, a block extending W's parent with that
               TC attached (only safety rule S2 stops them voting for it)
A Byzantine node signs with its own key only; it cannot forge others' signatures (it can try).
"""

from __future__ import annotations

from random import Random

from gmchain.consensus.messages import ConsensusMessage, SyncInfo
from gmchain.consensus.sim.app import FakeSigner, SimApp
from gmchain.consensus.types import Broadcast, Effect, Send, ValidatorSet
from gmchain.ledger.types import (
    Block,
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

__all__ = ["BEHAVIOURS", "Byzantine", "Outgoing"]

FLOOD_GAP_MS = 50  # a flooder's rate bound in virtual time (see Byzantine.transform)
BEHAVIOURS = ("equivocate", "fork", "lock_attack", "double_vote", "forge", "flood", "withhold")

# (destination or None for broadcast, message)
Outgoing = tuple[NodeId | None, ConsensusMessage]


class Byzantine:
    def __init__(
        self,
        *,
        behaviours: frozenset[str],
        rng: Random,
        signer: FakeSigner,
        validators: ValidatorSet,
        chain_id: str,
        genesis_qc: QuorumCert,
    ) -> None:
        self.genesis_qc = genesis_qc
        self.behaviours = behaviours
        self.rng = rng
        self.signer = signer
        self.validators = validators
        self.chain_id = chain_id
        self.epoch = 0  # the epoch whose set we sign in (the world updates it at a switch)
        self.last_flood_ms = -(10**9)  # virtual time of our last flood (FLOOD_GAP_MS)
        self.stash: Proposal | None = None  # lock_attack: withheld proposal
        self.alt_ids: set[Digest] = set()  # blocks of our forks (we vote for their children)
        self.queued: list[Effect] = []  # effects decided in observe(), sent with the next step
        self.heard: dict[int, dict[NodeId, TimeoutVote]] = {}  # lock_attack: timeouts received

    def observe(self, msg: ConsensusMessage) -> None:
        """Called by the world for every message delivered to this node."""
        if isinstance(msg, Proposal) and msg.block.header.parent_id in self.alt_ids:
            # Support our fork: vote for every block built on it (a second, conflicting vote).
            self.alt_ids.add(msg.block.block_id)
            vote = self._vote_for(msg)
            self.queued.append(Send(to=self.validators.leader(vote.round + 1), msg=vote))
        stash = self.stash
        if (
            stash is not None
            and isinstance(msg, TimeoutVote)
            and msg.round == stash.block.header.round - 1
        ):
            self.heard.setdefault(msg.round, {})[msg.voter] = msg

    def _assemble_tc(self, round_: int) -> TimeoutCert | None:
        got = self.heard.get(round_, {})
        if not self.validators.is_quorum(got):
            return None
        best = max(got.values(), key=lambda t: t.high_qc.round).high_qc
        entries = tuple(sorted((t.voter, int(t.high_qc.round), t.signature) for t in got.values()))
        return TimeoutCert(epoch=self.epoch, round=Round(round_), high_qc=best, entries=entries)

    def _forged_sigs(self, n: int) -> tuple[tuple[NodeId, bytes], ...]:
        ids = sorted(self.rng.sample(list(self.validators.node_ids), n))
        return tuple((i, self.rng.randbytes(64)) for i in ids)

    def _forged_qc(self, round_: int, height: int) -> QuorumCert:
        n = len(self.validators)
        return QuorumCert(
            epoch=self.epoch,
            block_id=Digest(self.rng.randbytes(32)),
            round=Round(round_),
            height=Height(height),
            signatures=self._forged_sigs(max(1, n * 2 // 3 + 1)),
        )

    def _forged_tc(self, round_: int, high_qc: QuorumCert) -> TimeoutCert:
        ids = sorted(self.validators.node_ids)
        entries = tuple((i, int(high_qc.round), self.rng.randbytes(64)) for i in ids)
        return TimeoutCert(epoch=self.epoch, round=Round(round_), high_qc=high_qc, entries=entries)

    def _sign_proposal(self, block: Block, tc: TimeoutCert | None) -> Proposal:
        sig = self.signer.sign(Proposal.signing_root(self.chain_id, block.block_id))
        return Proposal(block=block, tc=tc, signature=sig)

    def transform(self, effects: list[Effect], app: SimApp, now_ms: int) -> list[Effect]:
        """Rewrite effects; PersistSafety and Commit pass through (they stay local)."""
        out: list[Effect] = self.queued
        self.queued = []
        b = self.behaviours
        rng = self.rng
        if self.stash is not None:
            sprung = self._spring(app, now_ms)
            if self.stash is not None:
                return out + [e for e in effects if not isinstance(e, Send | Broadcast)]
            out.extend(sprung)
        for k, e in enumerate(effects):
            msg = e.msg if isinstance(e, Send | Broadcast) else None
            if msg is None:
                out.append(e)
                continue
            withheld = isinstance(msg, Vote | TimeoutVote | Proposal) and rng.random() < 0.5
            if "withhold" in b and withheld:
                continue
            if isinstance(msg, Proposal) and isinstance(e, Broadcast):
                if (
                    "lock_attack" in b
                    and msg.tc is None
                    and self.stash is None
                    and msg.block.header.height >= 3
                ):
                    self.stash = msg
                    # Withhold everything else of this step too (our own vote for it included).
                    rest = effects[k + 1 :]
                    return out + [x for x in rest if not isinstance(x, Send | Broadcast)]
                out.extend(self._leader(msg, app, now_ms))
                continue
            out.append(e)
            if isinstance(msg, Vote) and "double_vote" in b:
                out.append(Send(to=e.to, msg=self._other_vote(msg)) if isinstance(e, Send) else e)
        if "forge" in b and rng.random() < 0.05:
            out.extend(self._forgeries())
        # (the draw comes first so seeds keep their random streams; at most one flood per
        # FLOOD_GAP_MS of virtual time: floods fired per *step* fed each other among several
        # Byzantine replicas — every flood makes the others step again — and at n = 10 that
        # chain reaction became a message explosion, an artefact of the model, not of the
        # protocol: honest replicas drop the far-future rounds (L7) and answer nothing)
        if "flood" in b and rng.random() < 0.05 and now_ms - self.last_flood_ms >= FLOOD_GAP_MS:
            self.last_flood_ms = now_ms
            out.extend(self._flood())
        return out

    def _other_vote(self, v: Vote) -> Vote:
        bid = Digest(self.rng.randbytes(32))
        root = QuorumCert.signing_root(self.chain_id, self.epoch, bid, v.round, v.height)
        return Vote(
            epoch=self.epoch,
            block_id=bid,
            round=v.round,
            height=v.height,
            voter=v.voter,
            signature=self.signer.sign(root),
        )

    def _leader(self, p: Proposal, app: SimApp, now_ms: int) -> list[Effect]:
        h = p.block.header
        others = [i for i in self.validators.node_ids if i != self.signer.node_id]
        self.rng.shuffle(others)
        half = others[: len(others) // 2 + self.rng.randint(0, 1)]
        alt: Proposal | None = None
        if "fork" in self.behaviours and (p.tc is not None or self.rng.random() < 0.6):
            alt = self._fork(p, app, now_ms)
        if alt is None and "equivocate" in self.behaviours and self.rng.random() < 0.6:
            parent_h = app.find_header(h.parent_id)
            if parent_h is not None:
                block = app.build_any(
                    parent=parent_h,
                    round=h.round,
                    justify=h.justify,
                    proposer=h.proposer,
                    now_ms=now_ms + 1 + self.rng.randint(0, 5),
                )
                if block.block_id != h.block_id:
                    alt = self._sign_proposal(block, p.tc)
        if alt is None:
            return [Broadcast(msg=p)]
        out: list[Effect] = []
        for i in others:
            out.append(Send(to=i, msg=alt if i in half else p))
        # Back the alternative with our own vote too (we vote for p through the inner replica).
        self.alt_ids.add(alt.block.block_id)
        ah = alt.block.header
        out.append(Send(to=self.validators.leader(ah.round + 1), msg=self._vote_for(alt)))
        return out

    def _spring(self, app: SimApp, now_ms: int) -> list[Effect]:
        p = self.stash
        assert p is not None
        h = p.block.header
        last_tc = self._assemble_tc(h.round - 1)
        if last_tc is None:
            if now_ms - h.timestamp_ms > 3000:
                self.stash = None  # give up
            return []
        self.stash = None
        self.heard.clear()
        x = app.find_header(h.parent_id)
        w = None if x is None else app.find_header(x.justify.block_id)
        v = None if w is None else app.find_header(w.justify.block_id)
        if w is None or v is None:
            return [Broadcast(msg=p)]
        block = app.build_any(
            parent=v, round=h.round, justify=w.justify, proposer=h.proposer, now_ms=now_ms + 1
        )
        alt = self._sign_proposal(block, last_tc)
        self.alt_ids.add(block.block_id)
        others = [i for i in self.validators.node_ids if i != self.signer.node_id]
        self.rng.shuffle(others)
        out: list[Effect] = [Send(to=others[0], msg=p)]
        out.extend(Send(to=i, msg=alt) for i in others[1:])
        out.append(Send(to=self.validators.leader(h.round + 1), msg=self._vote_for(alt)))
        return out

    def _vote_for(self, p: Proposal) -> Vote:
        ah = p.block.header
        root = QuorumCert.signing_root(self.chain_id, self.epoch, ah.block_id, ah.round, ah.height)
        return Vote(
            epoch=self.epoch,
            block_id=ah.block_id,
            round=ah.round,
            height=ah.height,
            voter=self.signer.node_id,
            signature=self.signer.sign(root),
        )

    def _fork(self, p: Proposal, app: SimApp, now_ms: int) -> Proposal | None:
        """Extend an older QC than the proposal's at this round (its parent's or further back)."""
        h = p.block.header
        parent = app.find_header(h.parent_id)
        if parent is None:
            return None
        old_qc = parent.justify
        for _ in range(self.rng.choice((0, 1, 1, 2))):  # reach further back: fork a commit
            older = app.find_header(old_qc.block_id)
            if older is None or older.height == 0:
                break
            old_qc = older.justify
        base = app.find_header(old_qc.block_id)
        if base is None:
            return None
        block = app.build_any(
            parent=base, round=h.round, justify=old_qc, proposer=h.proposer, now_ms=now_ms + 1
        )
        # With a real TC the fork is well-formed and only safety rule S2 stops honest votes;
        # otherwise it needs a forged TC (which certificate checks reject) or none (which L2
        # rejects).
        tc = p.tc
        if tc is None:
            tc = self._forged_tc(h.round - 1, old_qc) if self.rng.random() < 0.3 else None
        return self._sign_proposal(block, tc)

    def _forgeries(self) -> list[Effect]:
        r = self.rng.randint(1, 10**6)
        qc = self._forged_qc(r, self.rng.randint(1, 1000))
        sig_root = TimeoutVote.signing_root(self.chain_id, self.epoch, r + 1, qc.round)
        tv = TimeoutVote(
            epoch=self.epoch,
            round=Round(r + 1),
            high_qc=qc,
            voter=self.signer.node_id,
            signature=self.signer.sign(sig_root),
        )
        info = SyncInfo(high_qc=qc, tc=self._forged_tc(r + 5, qc))
        return [Broadcast(msg=tv), Broadcast(msg=info)]

    def _flood(self) -> list[Effect]:
        out: list[Effect] = []
        genesis_like = self.genesis_qc
        for k in range(3):
            r = 2**40 + self.rng.randint(0, 2**20) + k
            root = TimeoutVote.signing_root(self.chain_id, self.epoch, r, 0)
            tv = TimeoutVote(
                epoch=self.epoch,
                round=Round(r),
                high_qc=genesis_like,
                voter=self.signer.node_id,
                signature=self.signer.sign(root),
            )
            out.append(Broadcast(msg=tv))
            bid = Digest(self.rng.randbytes(32))
            vroot = QuorumCert.signing_root(self.chain_id, self.epoch, bid, r, 5)
            vote = Vote(
                epoch=self.epoch,
                block_id=bid,
                round=Round(r),
                height=Height(5),
                voter=self.signer.node_id,
                signature=self.signer.sign(vroot),
            )
            out.append(Broadcast(msg=vote))
        return out
