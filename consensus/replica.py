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
      failed leader instead of one (2.5 s per 4 rounds with one of four down: docs/consensus.md).
  L4. The pacemaker is armed while the app has pending transactions, an uncommitted non-empty block
      exists, or we timed out in this round; when it fires we broadcast a signed timeout, and
      re-broadcast it each period until the round advances. More than 1/3 of the power timing out
      in our round makes us time out too (Bracha-style amplification); a quorum of timeouts is a TC.
  L5. Timeouts back off: base * (backoff%)^k, capped; k rises per TC-ended round and falls only at
      a commit after a fast round, never at a bare QC (consensus/pacemaker.py rules 4-5).
  L6. The 2-chain commit rule: a QC for block C whose parent B has round C.round - 1 commits B and
      its ancestors; `Commit` carries them oldest first, each once, with CommitProof(C, QC(C)).
  L7. Messages for rounds beyond current + max_future_rounds are not buffered (their certificates
      are still checked and used); buffers are bounded per (round, voter).
  L8. Missing blocks are fetched with BlockRequest; gaps older than the peers' windows with
      SyncRequest (answered from App.get_committed_blocks); every synced block is applied only
      after its CommitProof verifies.
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
  E5. One epoch per replica (docs/consensus.md "Epochs"; epochgate.py): proposals, votes and
      timeouts of other epochs are dropped and counted; an older epoch's sender gets our SyncInfo
      (L9), a later one's is reported (`PeerInLaterEpoch`) and asked for committed blocks. Epoch
      e+1 starts on committed = E with high_qc = `root_qc` = QC(E) (certs.py rule 6), rounds go
      on, SafetyData restarts; its first leader proposes at once, so laggards learn of it.
Check everything, then change state: an invalid message leaves the replica as it was.

Parts, each keeping its own rules (docs/architecture.md, "Consensus parts"): RoundState (L1),
Pacemaker (L4, L5), Vote/TimeoutAggregator (L3, L4, L7), Retrieval and PendingProposals (L8),
HelpBudget (L9), BlockTree, SafetyRules, CertChecker. This module says which part is asked what.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from gmchain.consensus.aggregation import TimeoutAggregator, VoteAggregator
from gmchain.consensus.certs import CertChecker
from gmchain.consensus.epochgate import EpochGate
from gmchain.consensus.helpbudget import HELP_PER_PERIOD, HelpBudget
from gmchain.consensus.messages import (
    BlockRequest,
    BlockResponse,
    CommitProof,
    ConsensusMessage,
    SyncInfo,
    SyncRequest,
    SyncResponse,
)
from gmchain.consensus.mutations import NO_BUGS, Bug
from gmchain.consensus.pacemaker import Pacemaker
from gmchain.consensus.retrieval import PendingProposals, Retrieval, select_proven_runs
from gmchain.consensus.round_state import RoundState
from gmchain.consensus.safety import SafetyData, SafetyRules
from gmchain.consensus.tree import BlockTree
from gmchain.consensus.types import (
    App,
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    Event,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    Send,
    Signer,
    Start,
    Tick,
    ValidatorSet,
    Verifier,
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


class Replica:
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
        epoch: int = 0,
        root_qc: QuorumCert | None = None,
        bugs: frozenset[Bug] = NO_BUGS,
    ) -> None:
        """E5: `root_qc` = QC(E) when `committed` is E. `bugs`: consensus/mutations.py."""
        config.validate()
        self.cfg = config
        self.bugs = bugs
        self.validators = validators
        self.chain_id = chain_id
        self.app = app
        self.node_id: NodeId | None = None if signer is None else signer.node_id
        gid = genesis_id
        if gid is None and committed.height == 0:
            gid = committed.block_id
        self.epoch = epoch
        self.gate = EpochGate(epoch=epoch)  # E5
        self.certs = CertChecker(
            chain_id=chain_id,
            validators=validators,
            verifier=verifier,
            genesis_id=gid,
            epoch=epoch,
            root_qc=root_qc,
            bugs=bugs,
        )
        if safety is None or Bug.FORGET_SAFETY in bugs or safety.epoch < epoch:
            safety = SafetyData(epoch=epoch)  # consensus/safety.py E1
        # None for an observer (no signer): it never signs; it follows the certificates only.
        signer = self.certs.trusting(signer)  # what we sign, we need not verify (certs.py rule 7)
        self.safety = (
            None
            if signer is None
            else SafetyRules(chain_id=chain_id, signer=signer, data=safety, epoch=epoch, bugs=bugs)
        )
        self.tree = BlockTree(
            committed, window=config.committed_window, max_orphans=config.max_buffered_msgs
        )
        # The latest time any event carried (never decreases): the core's only clock.
        self.now_ms = now_ms
        self.state = RoundState.restore(high_qc=high_qc, safety=safety, committed=committed)
        if root_qc is not None and high_qc.block_id == root_qc.block_id:  # E5: a first block now
            self.state.spread_qc_round = root_qc.round
        last = app.get_committed_blocks(committed.height, 1) if committed.height > 0 else ()
        if last and last[0][0].block_id == committed.block_id:
            self.state.commit_qc = last[0][1].qc
        self.pacemaker = Pacemaker(config=config)
        self.votes = VoteAggregator(
            validators=validators, certs=self.certs, max_future_rounds=config.max_future_rounds
        )
        self.timeouts = TimeoutAggregator(validators=validators)
        self.retrieval = Retrieval(
            config=config,
            chain_id=chain_id,
            validators=validators,
            node_id=self.node_id,
            certs=self.certs,
            tree=self.tree,
            read_committed=app.get_committed_blocks,
            send=self._send,
        )
        self.help = HelpBudget(period_ms=config.round_timeout_ms, validator_count=len(validators))
        self.pending = PendingProposals(limit=config.max_buffered_msgs)
        # The step's effects (empty between steps); messages to ourselves, handled in the step.
        self._effects: list[Effect] = []
        self._local: deque[ConsensusMessage] = deque()
        for b in sorted(blocks, key=lambda x: x.header.height):  # stored (PersistBlock): no effects
            parent = self.tree.get_header(b.header.parent_id)
            ok = parent is not None and self.tree.is_valid_child(b)
            if ok and self.app.validate_block(b, parent, now_ms=now_ms):  # type: ignore[arg-type]
                self.tree.insert(b)

    # --- queries --------------------------------------------------------------------------------

    @property
    def round(self) -> Round:
        return self.state.round

    @property
    def high_qc(self) -> QuorumCert:
        return self.state.high_qc

    @property
    def heard_status(self) -> bool:
        """L10: some peer's SyncInfo with a verified high QC has arrived."""
        return self.state.heard_status

    @property
    def committed_header(self) -> BlockHeader:
        return self.tree.root

    def get_sync_info(self) -> SyncInfo:
        """Our certificates for a peer (L9, L10): high QC, highest TC, the QC of our last commit."""
        return SyncInfo(high_qc=self.high_qc, tc=self.state.last_tc, commit_qc=self.state.commit_qc)

    @property
    def lag(self) -> int:
        """L10: committed blocks a verified certificate shows that we have not committed yet."""
        return max(0, self.state.peak_height - self.tree.root.height)

    def is_leader(self, round_: int) -> bool:
        return self.node_id is not None and self.validators.leader(round_) == self.node_id

    def _needs_progress(self) -> bool:
        st = self.state
        return (
            self.app.has_pending()
            or self.tree.nonempty > 0
            or st.timed_out_round == st.round
            or (st.spread_qc_round == st.high_qc.round and len(self.validators) > 1)
        )

    # --- the entry point ------------------------------------------------------------------------

    def step(self, event: Event) -> list[Effect]:
        """Apply one event; return the effects to run in order (persist, then send, then apply)."""
        self._effects = []
        match event:
            case Start(now_ms=now) | Tick(now_ms=now):
                self.now_ms = max(self.now_ms, now)
                self._on_tick(isinstance(event, Start))
            case MessageReceived(sender=s, msg=m, now_ms=now):
                self.now_ms = max(self.now_ms, now)
                self._on_message(s, m)
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
        admitted, later, behind = self.gate.admit(sender, msg)  # E5
        if later is not None:
            self._effects.append(later)
            self.retrieval.request_sync(sender, self.now_ms)
        if behind is not None:
            self._help(sender, behind)  # it is in an older epoch: our certificates lead it on
        if not admitted:
            return
        match msg:
            case Proposal():
                self._on_proposal(sender, msg)
            case Vote():
                self._on_vote(msg)
            case TimeoutVote():
                self._on_timeout(sender, msg)
            case BlockRequest():
                self.retrieval.serve_blocks(sender, msg)
            case BlockResponse():
                self._on_block_response(sender, msg)
            case SyncRequest():
                self.retrieval.serve_sync(sender, msg)
            case SyncInfo():
                self._on_sync_info(sender, msg)
            case SyncResponse():  # safe even if unsolicited: items must link to our root, proven
                self.retrieval.on_sync_response()
                self._apply_committed(msg.items)
            case _:
                pass  # unknown kinds are the transport's problem; drop

    def _send(self, to: NodeId, msg: ConsensusMessage) -> None:
        if to == self.node_id:
            self._local.append(msg)
        else:
            self._effects.append(Send(to=to, msg=msg))

    def _on_sync_info(self, sender: NodeId, msg: SyncInfo) -> None:
        st = self.state
        cq = msg.commit_qc
        if cq is not None and self.certs.verify_qc(cq):  # (cached: cheap when repeated)
            st.peak_height = max(st.peak_height, cq.height - 1)  # L10
            if cq.height > self.tree.root.height + 1:
                self._process_qc(cq, sender)  # commits if we hold C and its parent (L9)
        if self.certs.verify_qc(msg.high_qc):
            if sender != self.node_id:
                st.heard_status = True  # L10
            self._process_qc(msg.high_qc, sender)
        if msg.tc is not None and self.certs.verify_tc(msg.tc):
            self._process_tc(msg.tc, sender)

    # --- pacemaker (the timer itself is consensus/pacemaker.py) ---------------------------------

    def _on_tick(self, starting: bool) -> None:
        now = self.now_ms
        if starting:
            self.retrieval.fetch_missing(self.state.high_qc, None, now)
        if self.pacemaker.on_tick(
            now, can_time_out=self.safety is not None, needs_progress=self._needs_progress
        ):
            self._on_local_timeout()
        self.retrieval.on_tick(now, self.state.high_qc)

    def _on_local_timeout(self) -> None:
        """L4: sign (via safety) and broadcast a timeout for the current round."""
        if self.safety is None:
            return
        st = self.state
        self.pacemaker.restart(self.now_ms)
        if st.last_tc is not None:
            self.safety.observe_tc(st.last_tc)
        made = self.safety.make_timeout(st.round, st.high_qc, st.last_tc)
        if made is None:
            return
        data, tv = made
        st.timed_out_round = st.round
        self._effects.append(PersistSafety(data=data))
        self._effects.append(Broadcast(msg=tv))
        self._local.append(tv)

    def _advance_round(self, *, by_tc: bool) -> None:
        if not self.state.advance():
            return
        new_round = self.state.round
        self.help.on_round_advanced()
        self.pacemaker.on_round_advanced(
            self.now_ms, by_tc=by_tc, keep_armed=self.safety is not None and self._needs_progress()
        )
        self.votes.prune_below(new_round - 1)
        self.timeouts.prune_below(new_round)

    # --- certificates ---------------------------------------------------------------------------

    def _process_qc(self, qc: QuorumCert, hint: NodeId | None) -> None:
        """A verified QC: raise high_qc (L1), apply the commit rule (L6), fetch what is missing."""
        st, root = self.state, self.tree.root
        if qc.height <= root.height and qc.block_id != root.block_id:
            if st.raise_high_qc(qc):
                self._advance_round(by_tc=False)
            return
        if qc.block_id not in st.qcs:
            st.qcs[qc.block_id] = qc
        if self.safety is not None:
            self.safety.observe_qc(qc)
        if st.raise_high_qc(qc):
            self._advance_round(by_tc=False)
        if qc.block_id == self.tree.root.block_id:
            return
        if qc.block_id in self.tree.blocks:
            self._check_commit(qc)
        else:
            self.retrieval.fetch_missing(qc, hint, self.now_ms)

    def _process_tc(self, tc: TimeoutCert, hint: NodeId | None) -> None:
        self._process_qc(tc.high_qc, hint)
        if self.state.raise_last_tc(tc):
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
        if chain is not None:
            self._commit(chain, CommitProof(header=child.header, qc=qc))

    def _commit(self, chain: list[Block], proof: CommitProof) -> None:
        self._effects.append(Commit(blocks=tuple(chain), proof=proof))
        self.state.commit_qc = proof.qc
        if any(b.header.tx_count for b in chain):
            self.state.spread_qc_round = proof.qc.round
        self._after_root_change(self.tree.commit(chain))

    def _after_root_change(self, pruned: list[Digest]) -> None:
        self.pacemaker.on_commit()  # L5 (every Commit effect is followed by this)
        root_h, qcs = self.tree.root.height, self.state.qcs
        for bid in [b for b, q in qcs.items() if q.height < root_h] + pruned:
            qcs.pop(bid, None)
        if pruned:
            self.app.on_pruned(pruned)
        self.pending.drop_committed(root_h)

    def _apply_committed(self, items: tuple[tuple[Block, CommitProof], ...]) -> None:
        """Committed sync (L8): commit each proven run (consensus/retrieval.py rule 3)."""
        runs, parent, complete = select_proven_runs(
            items,
            self.tree.root,
            validate=lambda b, p: self.app.validate_block(b, p, now_ms=self.now_ms),
            verify=self.certs.verify_commit_proof,
        )
        for run, proof in runs:
            self._effects.append(Commit(blocks=tuple(run), proof=proof))
            self.state.commit_qc = proof.qc
            self._after_root_change(self.tree.adopt_run(run))
            self._process_qc(proof.header.justify, None)
            self._process_qc(proof.qc, None)
        if len(items) >= self.cfg.sync_batch and complete:
            now = self.now_ms
            self.retrieval.request_sync(self.retrieval.pick_peer(parent.block_id, now), now)

    # --- proposals, votes and blocks ------------------------------------------------------------

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
            if (tc is None or tc.round + 1 != h.round) and Bug.SKIP_LOCK_CHECK not in self.bugs:
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
            self.pending.add(sender, p)
            self.retrieval.fetch_missing(h.justify, sender, self.now_ms)
            return
        if not self._insert_block(p.block):
            return
        if h.round == self.state.round and self.safety is not None:
            self._maybe_vote(h, p.tc)

    def _insert_block(self, block: Block) -> bool:
        """Check and insert; then admit any orphans and proposals waiting for it."""
        if not self.tree.is_valid_child(block):
            return False
        parent = self.tree.get_header(block.header.parent_id)
        assert parent is not None
        if not self.app.validate_block(block, parent, now_ms=self.now_ms):
            return False
        self.tree.insert(block)
        self._effects.append(PersistBlock(block=block))
        self.retrieval.on_block_inserted(block.block_id)
        self._check_commit(block.header.justify)
        qc = self.state.qcs.get(block.block_id)
        if qc is not None:
            self._check_commit(qc)
        for kid in self.tree.take_orphan_children(block.block_id):
            if self.tree.is_extendable(kid.header.parent_id):
                self._insert_block(kid)
        for sp in self.pending.take_children(block.block_id):
            self._accept_proposal(*sp)
        return True

    def _on_block_response(self, sender: NodeId, resp: BlockResponse) -> None:
        """L8: insert the blocks Retrieval accepts (oldest first), park the rest as orphans."""
        blocks = self.retrieval.accept_blocks(
            sender, resp, self.now_ms, vouched=resp.block_id in self.state.qcs
        )
        if blocks is None:
            return
        for b in reversed(blocks):  # oldest first
            if b.header.height <= self.tree.root.height or b.block_id in self.tree.blocks:
                continue
            if self.tree.is_extendable(b.header.parent_id):
                self._insert_block(b)
            else:
                self.tree.add_orphan(b)
        self.retrieval.continue_after(sender, blocks, self.now_ms)
        for b in blocks:
            self._process_qc(b.header.justify, sender)

    def _maybe_vote(self, header: BlockHeader, tc: TimeoutCert | None) -> None:
        assert self.safety is not None
        if self.state.last_tc is not None:
            self.safety.observe_tc(self.state.last_tc)
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
        st = self.state
        qc = self.votes.add(vote, current_round=st.round)
        if qc is None:
            return
        if st.qcs.get(vote.block_id) is not None and vote.round <= st.high_qc.round:
            return  # a QC we already hold and used
        self._process_qc(qc, vote.voter)

    def _maybe_propose(self) -> None:
        """L2. Propose at most once per round, only when there is something worth committing."""
        st = self.state
        r = st.round
        if not self.is_leader(r) or st.proposed_round >= r or self.safety is None:
            return
        parent = self.tree.get_header(st.high_qc.block_id)
        if parent is None:
            return
        tc = None
        if r != st.high_qc.round + 1:
            if st.last_tc is None or st.last_tc.round + 1 != r:
                return
            tc = st.last_tc
        wanted = (
            tc is not None
            or self.tree.nonempty > 0
            or (st.spread_qc_round == st.high_qc.round and len(self.validators) > 1)
            or self.app.ready_to_propose(self.now_ms)
        )
        if not wanted:
            return
        assert self.node_id is not None
        block = self.app.build_block(
            parent=parent, round=r, justify=st.high_qc, proposer=self.node_id, now_ms=self.now_ms
        )
        st.proposed_round = r
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
        st = self.state
        if tv.round < st.round:
            self._help(sender, tv.round)
            return
        if tv.round > st.round + self.cfg.max_future_rounds:
            return  # L7: a huge round moves nothing
        power = self.timeouts.add(tv)
        if power is None:
            return
        alone = tv.round == st.round and st.timed_out_round < st.round
        if alone and power >= self.validators.validity_power:
            self._on_local_timeout()  # amplification (L4)
        if tv.round == st.round and st.timed_out_round < st.round:
            self._help(sender, tv.round)  # L9: it is alone; it may lack the QC of our last commit
        if not self.certs.is_quorum_power(power):
            return
        if st.last_tc is not None and st.last_tc.round >= tv.round:
            return
        self._process_tc(self.timeouts.make_tc(tv.round), sender)

    def _help(self, sender: NodeId, their_round: int) -> None:
        """L9: a peer timed out in an older round, or alone in ours: send it our certificates,
        including the QC of our latest commit, within the budget of consensus/helpbudget.py."""
        if sender == self.node_id or not self.help.try_spend(sender, their_round, self.now_ms):
            return
        self._send(sender, self.get_sync_info())
