"""The sans-IO Jolteon replica: `Replica.step(event) -> list[Effect]`.

Rules this module keeps (Jolteon = DiemBFT v4, Gelashvili et al., FC 2022, Algorithms 1-3;
docs/consensus.md numbers them):
  L1. The current round is max(high_qc.round, last_tc.round) + 1. It changes only when a *verified*
      QC or TC raises one of them; a message's round number alone moves nothing.
  L2. The leader of round r proposes at most once in r, extending high_qc; if r != high_qc.round + 1
      it must attach the TC for round r - 1.
  L3. Replicas vote only for a proposal of their current round, via safety (S1-S3). By default the
      vote is broadcast to every validator (and counted locally), so every replica forms the QC
      itself; `broadcast_votes=False` sends it to the leader of r + 1 only (DiemBFT v4). With the
      latter a crashed next leader loses the QC of the round before its own too: two timeouts per
      failed leader instead of one (the real-process drills measured 2.5 s per 4 rounds with one
      of four validators down).
  L4. The pacemaker is armed while the app has pending transactions, an uncommitted non-empty block
      exists, or we timed out in this round; when it fires we broadcast a signed timeout, and
      re-broadcast it each period until the round advances. More than 1/3 of the power timing out
      in our round makes us time out too (Bracha-style amplification); a quorum of timeouts is a TC.
  L5. Timeouts back off: base * (backoff%)^k after k consecutive TC-ended rounds, capped.
  L6. The 2-chain commit rule: a QC for block C whose parent B has round C.round - 1 commits B and
      its ancestors; `Commit` carries them oldest first, each once, with CommitProof(C, QC(C)).
  L7. Messages for rounds beyond current + max_future_rounds are not buffered (their certificates
      are still checked and used); buffers are bounded per (round, voter).
  L8. Missing blocks are fetched with BlockRequest; gaps older than the peers' windows with
      SyncRequest (answered from App.get_committed_blocks); every synced block is applied only
      after its CommitProof verifies. (The retrieval code is consensus/retrieval.py.)
  L9. A replica that gets a timeout from a peer in an older round, or in our round while we have
      not timed out (it is alone: it may have missed the QC of a commit and so still hold
      transactions everybody else committed), answers with SyncInfo: high QC, TC and the QC of its
      latest commit (rate-limited per peer and round). The receiver commits with that QC if it
      holds the blocks, and fetches them otherwise. At most HELP_PER_PERIOD replies per peer
      and period, whatever rounds its timeouts name. The node also sends SyncInfo to a peer when
      their session starts and to every peer periodically (`get_sync_info`), so a replica that
      restarts on an idle chain learns the peers' committed height without any consensus traffic.
  L10. Lag is measured from verified certificates only, never from a height a peer merely names:
      `peak_height` is the highest h - 1 over the verified `commit_qc`s (height h) of peers'
      SyncInfo, the height that QC committed. A peer can overstate it only by sending a valid QC
      that did not commit (its high QC): by the certified, uncommitted blocks at its tip (one or
      two while rounds are consecutive; more after timeouts left round gaps).
      `heard_status` becomes true at the first peer SyncInfo whose high QC verifies.
  P1. `PersistSafety` precedes every effect that carries a new signature (see consensus.safety).
Check everything, then change state: an invalid message leaves the replica as it was.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from gmchain.consensus.certs import CertChecker
from gmchain.consensus.messages import (
    BlockRequest,
    BlockResponse,
    CommitProof,
    ConsensusMessage,
    SyncInfo,
    SyncRequest,
    SyncResponse,
)
from gmchain.consensus.retrieval import RetrievalMixin
from gmchain.consensus.safety import SafetyData, SafetyRules
from gmchain.consensus.tree import BlockTree
from gmchain.consensus.types import (
    App,
    Broadcast,
    Bug,
    Commit,
    CommittedBlocksFetched,
    ConsensusConfig,
    Effect,
    Event,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    ProposalReceived,
    Send,
    Signer,
    Start,
    Tick,
    TimeoutReceived,
    ValidatorSet,
    Verifier,
    VoteReceived,
)
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

__all__ = ["HELP_PER_PERIOD", "Replica"]

HELP_PER_PERIOD = 4  # L9: SyncInfo replies per peer per round-timeout period


class Replica(RetrievalMixin):
    """One validator's (or observer's) consensus state machine. Never does IO."""

    def __init__(
        self,
        *,
        config: ConsensusConfig,
        validators: ValidatorSet,
        chain_id: str,
        signer: Signer | None,
        verifier: Verifier,
        app: App,
        committed: BlockHeader,
        high_qc: QuorumCert,
        safety: SafetyData | None,
        now_ms: int,
        genesis_id: Digest | None = None,
        blocks: Sequence[Block] = (),
    ) -> None:
        config.validate(allow_bugs=True)
        self.cfg = config
        self.validators = validators
        self.chain_id = chain_id
        self.app = app
        self.node_id: NodeId | None = None if signer is None else signer.node_id
        gid = genesis_id if genesis_id is not None else None
        if gid is None and committed.height == 0:
            gid = committed.block_id
        self.certs = CertChecker(
            chain_id=chain_id,
            validators=validators,
            verifier=verifier,
            genesis_id=gid,
            bugs=config.bugs,
        )
        if safety is None or Bug.FORGET_SAFETY in config.bugs:
            safety = SafetyData()
        self.safety = (
            None
            if signer is None
            else SafetyRules(chain_id=chain_id, signer=signer, data=safety, bugs=config.bugs)
        )
        self.tree = BlockTree(
            committed, window=config.committed_window, max_orphans=config.max_buffered_msgs
        )
        self.now_ms = now_ms
        # Invariant: high_qc is the highest verified QC seen (L1).
        self.high_qc = high_qc
        if safety.high_qc is not None and safety.high_qc.round > high_qc.round:
            self.high_qc = safety.high_qc
        self.last_tc: TimeoutCert | None = safety.last_tc  # highest verified TC seen (L1)
        self.round = self._compute_round()
        self.qcs: dict[Digest, QuorumCert] = {self.high_qc.block_id: self.high_qc}
        # L10: the highest committed height a peer's verified commit QC shows (may trail our root;
        # `lag` clamps), and whether any peer has told us its certificates yet.
        self.peak_height: int = committed.height
        self.heard_status = False
        # The QC that committed our root (sent in SyncInfo so a peer that missed it can commit).
        self.commit_qc: QuorumCert | None = None
        if committed.height > 0:
            last = app.get_committed_blocks(committed.height, 1)
            if last and last[0][0].block_id == committed.block_id:
                self.commit_qc = last[0][1].qc
        self.proposed_round = safety.last_proposed_round  # last round we proposed in (L2, P2)
        self.timed_out_round = Round(0)  # last round we signed a timeout in (L4)
        self.consecutive_timeouts = 0  # L5
        self.deadline_ms: int | None = None  # pacemaker; None = disarmed (L4)
        self.spread_qc_round = -1  # a QC that committed txs; its round while peers may lack it
        # Votes and timeouts by round; each voter counted once per round (L7).
        self.votes: dict[Round, dict[NodeId, Vote]] = {}
        self.timeouts: dict[Round, dict[NodeId, TimeoutVote]] = {}
        self.pending: deque[tuple[NodeId, Proposal]] = deque()  # proposals awaiting a parent
        self.inflight: dict[Digest, int] = {}  # block id -> retry time (L8)
        self.sync_inflight_ms: int | None = None
        self.repair_at_ms = 0  # next time _maybe_repair may re-request a missing certified block
        self.helped: dict[tuple[NodeId, int], int] = {}  # stale-timeout reply -> when sent
        self.helped_at: dict[NodeId, list[int]] = {}  # per peer: when we replied (L9 budget)
        self._effects: list[Effect] = []
        self._local: deque[ConsensusMessage] = deque()
        # Restore stored uncommitted blocks (PersistBlock); no effects, no votes.
        for b in sorted(blocks, key=lambda x: x.header.height):
            if self.tree.is_valid_child(b) and self.app.validate_block(
                b,
                self.tree.get_header(b.header.parent_id),  # type: ignore[arg-type]
            ):
                self.tree.insert(b)
        self._effects = []

    # --- queries --------------------------------------------------------------------------------

    @property
    def committed_header(self) -> BlockHeader:
        return self.tree.root

    def get_sync_info(self) -> SyncInfo:
        """Our certificates for a peer (L9, L10): high QC, highest TC, the QC of our last commit."""
        return SyncInfo(high_qc=self.high_qc, tc=self.last_tc, commit_qc=self.commit_qc)

    @property
    def lag(self) -> int:
        """L10: committed blocks a verified certificate shows that we have not committed yet."""
        return max(0, self.peak_height - self.tree.root.height)

    def is_leader(self, round_: int) -> bool:
        return self.node_id is not None and self.validators.leader(round_) == self.node_id

    def _compute_round(self) -> Round:
        tc_round = -1 if self.last_tc is None else self.last_tc.round
        return Round(max(self.high_qc.round, tc_round) + 1)

    def _needs_progress(self) -> bool:
        return (
            self.app.has_pending()
            or self.tree.nonempty > 0
            or self.timed_out_round == self.round
            or (self.spread_qc_round == self.high_qc.round and len(self.validators) > 1)
        )

    # --- the entry point ------------------------------------------------------------------------

    def step(self, event: Event) -> list[Effect]:
        """Apply one event; return the effects to run in order (persist, then send, then apply)."""
        self._effects = []
        match event:
            case Start(now_ms=now) | Tick(now_ms=now):
                self.now_ms = max(self.now_ms, now)
                self._on_tick(isinstance(event, Start))
            case (
                MessageReceived(sender=s, msg=m, now_ms=now)
                | ProposalReceived(sender=s, msg=m, now_ms=now)
                | VoteReceived(sender=s, msg=m, now_ms=now)
                | TimeoutReceived(sender=s, msg=m, now_ms=now)
            ):
                self.now_ms = max(self.now_ms, now)
                self._on_message(s, m)
            case CommittedBlocksFetched(items=items, now_ms=now):
                self.now_ms = max(self.now_ms, now)
                self._apply_committed(items)
            case _:
                raise TypeError(f"not a consensus event: {event!r}")
        self._drain_local()
        self._maybe_propose()
        # Our own proposal (and our vote on it) go out in this step. Once: a single validator
        # would otherwise propose, commit and propose again without end inside one step.
        self._drain_local()
        effects, self._effects = self._effects, []
        return effects

    def _drain_local(self) -> None:
        while self._local:
            assert self.node_id is not None
            self._on_message(self.node_id, self._local.popleft())

    def _on_message(self, sender: NodeId, msg: ConsensusMessage) -> None:
        match msg:
            case Proposal():
                self._on_proposal(sender, msg)
            case Vote():
                self._on_vote(msg)
            case TimeoutVote():
                self._on_timeout(sender, msg)
            case BlockRequest():
                blocks = self.tree.get_ancestors(msg.block_id, msg.count)
                self._send(sender, BlockResponse(block_id=msg.block_id, blocks=tuple(blocks)))
            case BlockResponse():
                self._on_block_response(sender, msg)
            case SyncRequest():
                n = min(msg.count, self.cfg.sync_batch)
                items = tuple(self.app.get_committed_blocks(msg.from_height, n))
                self._send(sender, SyncResponse(items=items[:n]))
            case SyncInfo():
                cq = msg.commit_qc
                if cq is not None and self.certs.verify_qc(cq):  # (cached: cheap when repeated)
                    self.peak_height = max(self.peak_height, cq.height - 1)  # L10
                    if cq.height > self.tree.root.height + 1:
                        self._process_qc(cq, sender)  # commits if we hold C and its parent (L9)
                if self.certs.verify_qc(msg.high_qc):
                    if sender != self.node_id:
                        self.heard_status = True  # L10
                    self._process_qc(msg.high_qc, sender)
                if msg.tc is not None and self.certs.verify_tc(msg.tc):
                    self._process_tc(msg.tc, sender)
            case SyncResponse():
                # Safe even if unsolicited: every item must link to our root and be proven.
                self.sync_inflight_ms = None
                self._apply_committed(msg.items)
            case _:
                pass  # unknown kinds are the transport's problem; drop

    def _send(self, to: NodeId, msg: ConsensusMessage) -> None:
        if to == self.node_id:
            self._local.append(msg)
        else:
            self._effects.append(Send(to=to, msg=msg))

    # --- pacemaker ------------------------------------------------------------------------------

    def _on_tick(self, starting: bool) -> None:
        now = self.now_ms
        if starting:
            self._fetch_missing(self.high_qc, None)
        if self.deadline_ms is None:
            if self.safety is not None and self._needs_progress():
                self.deadline_ms = now + self.cfg.compute_timeout_ms(self.consecutive_timeouts)
        elif not self._needs_progress():
            self.deadline_ms = None  # L4: nothing left to commit (the app saw our Commit)
        elif now >= self.deadline_ms:
            self._on_local_timeout()
        for bid, retry_at in list(self.inflight.items()):
            if now >= retry_at:
                self._request_block(bid, self._pick_peer(bid))
        if self.sync_inflight_ms is not None and now >= self.sync_inflight_ms:
            self.sync_inflight_ms = None
        self._maybe_repair(now)

    def _on_local_timeout(self) -> None:
        """L4: sign (via safety) and broadcast a timeout for the current round."""
        if self.safety is None:
            return
        self.deadline_ms = self.now_ms + self.cfg.compute_timeout_ms(self.consecutive_timeouts)
        if self.last_tc is not None:
            self.safety.observe_tc(self.last_tc)
        made = self.safety.make_timeout(self.round, self.high_qc, self.last_tc)
        if made is None:
            return
        data, tv = made
        self.timed_out_round = self.round
        self._effects.append(PersistSafety(data=data))
        self._effects.append(Broadcast(msg=tv))
        assert self.node_id is not None
        self._local.append(tv)

    def _advance_round(self, *, by_tc: bool) -> None:
        new_round = self._compute_round()
        if new_round <= self.round:
            return
        self.round = new_round
        self.consecutive_timeouts = self.consecutive_timeouts + 1 if by_tc else 0
        self.helped.clear()
        self.deadline_ms = (
            self.now_ms + self.cfg.compute_timeout_ms(self.consecutive_timeouts)
            if self.safety is not None and self._needs_progress()
            else None
        )
        for r in [r for r in self.votes if r < new_round - 1]:
            del self.votes[r]
        for r in [r for r in self.timeouts if r < new_round]:
            del self.timeouts[r]

    # --- certificates ---------------------------------------------------------------------------

    def _process_qc(self, qc: QuorumCert, hint: NodeId | None) -> None:
        """A verified QC: raise high_qc (L1), apply the commit rule (L6), fetch what is missing."""
        if qc.height <= self.tree.root.height and qc.block_id != self.tree.root.block_id:
            if qc.round > self.high_qc.round:
                self.high_qc = qc
                self._advance_round(by_tc=False)
            return
        if qc.block_id not in self.qcs:
            self.qcs[qc.block_id] = qc
        if self.safety is not None:
            self.safety.observe_qc(qc)
        if qc.round > self.high_qc.round:
            self.high_qc = qc
            self._advance_round(by_tc=False)
        if qc.block_id == self.tree.root.block_id:
            return
        if qc.block_id in self.tree.blocks:
            self._check_commit(qc)
        else:
            self._fetch_missing(qc, hint)

    def _process_tc(self, tc: TimeoutCert, hint: NodeId | None) -> None:
        self._process_qc(tc.high_qc, hint)
        if self.last_tc is None or tc.round > self.last_tc.round:
            self.last_tc = tc
            self._advance_round(by_tc=True)

    def _check_commit(self, qc: QuorumCert) -> None:
        """L6: QC(C) with C.parent = B and C.round == B.round + 1 commits B."""
        child = self.tree.blocks.get(qc.block_id)
        if child is None:
            return
        parent = self.tree.blocks.get(child.header.parent_id)
        if parent is None or child.header.round != parent.header.round + 1:
            return
        chain = self.tree.get_chain_to(parent.block_id)
        if chain is None:
            return
        proof = CommitProof(header=child.header, qc=qc)
        self._commit(chain, proof)

    def _commit(self, chain: list[Block], proof: CommitProof) -> None:
        self._effects.append(Commit(blocks=tuple(chain), proof=proof))
        self.commit_qc = proof.qc
        if any(b.header.tx_count for b in chain):
            self.spread_qc_round = proof.qc.round
        pruned = self.tree.commit(chain)
        self._after_root_change(pruned)

    def _after_root_change(self, pruned: list[Digest]) -> None:
        root_h = self.tree.root.height
        for bid in [b for b, q in self.qcs.items() if q.height < root_h]:
            del self.qcs[bid]
        for bid in pruned:
            self.qcs.pop(bid, None)
        if pruned:
            self.app.on_pruned(pruned)
        self.pending = deque((s, p) for s, p in self.pending if p.block.header.height > root_h)

    # --- proposals and votes --------------------------------------------------------------------

    def _on_proposal(self, sender: NodeId, p: Proposal) -> None:
        h = p.block.header
        qc = h.justify
        if not (h.chain_id == self.chain_id and qc.block_id == h.parent_id and h.round > qc.round):
            return
        if h.height != qc.height + 1:
            return
        tc = p.tc
        if h.round != qc.round + 1:
            # L2 (the well-formedness half of S2): a round skip needs the previous round's TC.
            if (tc is None or tc.round + 1 != h.round) and Bug.SKIP_LOCK_CHECK not in self.cfg.bugs:
                return
        elif tc is not None:
            return  # a TC is only allowed where it is needed (L2)
        if not self.certs.verify_proposal_sig(p) or not self.certs.verify_qc(qc):
            return
        if tc is not None and not self.certs.verify_tc(tc):
            return
        self._process_qc(qc, sender)
        if tc is not None:
            self._process_tc(tc, sender)
        self._accept_proposal(sender, p)

    def _accept_proposal(self, sender: NodeId, p: Proposal) -> None:
        h = p.block.header
        if h.height <= self.tree.root.height or h.block_id in self.tree.blocks:
            return
        if not self.tree.is_extendable(h.parent_id):
            if len(self.pending) >= self.cfg.max_buffered_msgs:
                self.pending.popleft()
            self.pending.append((sender, p))
            self._fetch_missing(h.justify, sender)
            return
        if not self._insert_block(p.block):
            return
        if h.round == self.round and self.safety is not None:
            self._maybe_vote(h, p.tc)

    def _insert_block(self, block: Block) -> bool:
        """Check and insert; then admit any orphans and proposals waiting for it."""
        if not self.tree.is_valid_child(block):
            return False
        parent = self.tree.get_header(block.header.parent_id)
        assert parent is not None
        if not self.app.validate_block(block, parent):
            return False
        self.tree.insert(block)
        self._effects.append(PersistBlock(block=block))
        self.inflight.pop(block.block_id, None)
        self._check_commit(block.header.justify)
        qc = self.qcs.get(block.block_id)
        if qc is not None:
            self._check_commit(qc)
        for kid in self.tree.take_orphan_children(block.block_id):
            if self.tree.is_extendable(kid.header.parent_id):
                self._insert_block(kid)
        waiting = [sp for sp in self.pending if sp[1].block.header.parent_id == block.block_id]
        if waiting:
            self.pending = deque(
                sp for sp in self.pending if sp[1].block.header.parent_id != block.block_id
            )
        for sp in waiting:
            self._accept_proposal(*sp)
        return True

    def _maybe_vote(self, header: BlockHeader, tc: TimeoutCert | None) -> None:
        assert self.safety is not None
        if self.last_tc is not None:
            self.safety.observe_tc(self.last_tc)
        made = self.safety.make_vote(header, tc)
        if made is None:
            return
        data, vote = made
        self._effects.append(PersistSafety(data=data))
        if self.cfg.broadcast_votes and len(self.validators) > 1:
            self._effects.append(Broadcast(msg=vote))
            self._local.append(vote)
        else:
            self._send(self.validators.leader(header.round + 1), vote)

    def _on_vote(self, vote: Vote) -> None:
        if vote.round + 1 < self.round or vote.round > self.round + self.cfg.max_future_rounds:
            return
        by_voter = self.votes.setdefault(vote.round, {})
        if vote.voter in by_voter or not self.certs.verify_vote(vote):
            return
        by_voter[vote.voter] = vote
        same = [v for v in by_voter.values() if v.block_id == vote.block_id]
        power = self.validators.power_of_all(v.voter for v in same)
        if not self.certs.is_quorum_power(power):
            return
        if self.qcs.get(vote.block_id) is not None and vote.round <= self.high_qc.round:
            return
        sigs = tuple(sorted((v.voter, v.signature) for v in same))
        qc = QuorumCert(
            block_id=vote.block_id, round=vote.round, height=vote.height, signatures=sigs
        )
        self._process_qc(qc, vote.voter)

    def _maybe_propose(self) -> None:
        """L2. Propose at most once per round, only when there is something worth committing."""
        r = self.round
        if not self.is_leader(r) or self.proposed_round >= r or self.safety is None:
            return
        parent = self.tree.get_header(self.high_qc.block_id)
        if parent is None:
            return
        tc = None
        if r != self.high_qc.round + 1:
            if self.last_tc is None or self.last_tc.round + 1 != r:
                return
            tc = self.last_tc
        wanted = (
            tc is not None
            or self.tree.nonempty > 0
            or (self.spread_qc_round == self.high_qc.round and len(self.validators) > 1)
            or self.app.ready_to_propose(self.now_ms)
        )
        if not wanted:
            return
        assert self.node_id is not None
        block = self.app.build_block(
            parent=parent, round=r, justify=self.high_qc, proposer=self.node_id, now_ms=self.now_ms
        )
        self.proposed_round = r
        made = self.safety.sign_proposal(r, block.block_id)
        if made is None:
            return  # P2: signed in this round before a restart; never a second proposal
        data, sig = made
        proposal = Proposal(block=block, tc=tc, signature=sig)
        self._effects.append(PersistSafety(data=data))
        self._effects.append(Broadcast(msg=proposal))
        self._local.append(proposal)

    # --- timeouts -------------------------------------------------------------------------------

    def _on_timeout(self, sender: NodeId, tv: TimeoutVote) -> None:
        if not self.certs.verify_timeout_sig(tv) or not self.certs.verify_qc(tv.high_qc):
            return
        self._process_qc(tv.high_qc, sender)
        if tv.round < self.round:
            self._help(sender, tv.round)
            return
        if tv.round > self.round + self.cfg.max_future_rounds:
            return  # L7: a huge round moves nothing
        by_voter = self.timeouts.setdefault(tv.round, {})
        if tv.voter in by_voter:
            return
        by_voter[tv.voter] = tv
        power = self.validators.power_of_all(by_voter)
        if (
            tv.round == self.round
            and self.timed_out_round < self.round
            and power >= self.validators.validity_power
        ):
            self._on_local_timeout()  # amplification (L4)
        if tv.round == self.round and self.timed_out_round < self.round:
            self._help(sender, tv.round)  # L9: it is alone; it may lack the QC of our last commit
        if not self.certs.is_quorum_power(power):
            return
        if self.last_tc is not None and self.last_tc.round >= tv.round:
            return
        best = max(by_voter.values(), key=lambda t: t.high_qc.round).high_qc
        entries = tuple(
            sorted((t.voter, int(t.high_qc.round), t.signature) for t in by_voter.values())
        )
        tc = TimeoutCert(round=tv.round, high_qc=best, entries=entries)
        self._process_tc(tc, sender)

    def _help(self, sender: NodeId, their_round: int) -> None:
        """L9: a peer timed out in an older round, or alone in ours: send it our certificates,
        including the QC of our latest commit, at most once per (peer, round, period) and at most
        HELP_PER_PERIOD times per peer and period (a peer replaying old timeouts of many rounds
        must not get a reply for each)."""
        now, period = self.now_ms, self.cfg.round_timeout_ms
        key = (sender, their_round)
        last = self.helped.get(key)
        if sender == self.node_id or (last is not None and now - last < period):
            return
        recent = [t for t in self.helped_at.get(sender, ()) if now - t < period]
        if len(recent) >= HELP_PER_PERIOD:
            self.helped_at[sender] = recent
            return
        if len(self.helped_at) > 4 * len(self.validators):  # (senders are peers; bound anyway)
            self.helped_at = {
                p: ts for p, ts in self.helped_at.items() if ts and now - ts[-1] < period
            }
        self.helped_at[sender] = [*recent, now]
        if len(self.helped) > HELP_PER_PERIOD * len(self.validators):
            self.helped = {k: t for k, t in self.helped.items() if now - t < period}
        self.helped[key] = now
        self._send(sender, self.get_sync_info())
