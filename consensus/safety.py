"""Safety rules: the only code that signs votes and timeouts (Jolteon / DiemBFT v4, 2-chain).

Numbered rules (docs/consensus.md gives the proof sketch; cf. aptos-core
consensus/safety-rules/src/safety_rules_2chain.rs and Gelashvili et al., FC 2022, Algorithm 2):
  S1. Vote only for a block whose round is strictly greater than `last_voted_round`
      (so at most one vote per round, and never a vote in a round we timed out in).
  S2. Vote for block B only if B.round == B.qc.round + 1, or B carries a TC with
      B.round == TC.round + 1 and B.qc.round >= TC.highest_hqc_round  (the 2-chain lock).
  S3. Observing a QC raises `preferred_round` (Jolteon's "one-chain round") to its round.
  T1. Time out in round r only if r >= last_voted_round; afterwards last_voted_round >= r.
  T2. Time out in round r only if r == high_qc.round + 1 or r == last_tc.round + 1.
  T3. Time out only with a high QC whose round is >= preferred_round.
  P2. Proposals are signed here too, at most one per round: a proposal for round r is signed only
      if r > last_proposed_round, which it then becomes (persisted like a vote, P1). A leader
      restarted mid-round therefore never signs a second, different proposal for the same round,
      so peers may treat two signed proposals for one round as proof of equivocation.
  P1. Every signature is returned together with the new SafetyData; the caller persists (fsyncs)
      that data before the signed message leaves the node (the `PersistSafety` effect comes first).
  E1. SafetyData names the epoch its rounds belong to, and SafetyRules of epoch e signs only with
      data of epoch e: data of an earlier epoch is replaced by a fresh SafetyData(epoch=e) (rounds
      restart; votes of two epochs never conflict, the epoch is in every signing root), persisted
      with the first signature of the epoch. Data of a LATER epoch than the replica's is refused
      (ValueError): this node signed in an epoch its chain has not reached, so its store is older
      than its safety data (docs/consensus.md, "Epochs").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from gmchain.consensus.mutations import NO_BUGS, Bug
from gmchain.consensus.types import Signer
from gmchain.ledger.codec import decode
from gmchain.ledger.struct_codec import Struct, wire_struct
from gmchain.ledger.types import (
    BlockHeader,
    Proposal,
    QuorumCert,
    Round,
    TimeoutCert,
    TimeoutVote,
    Vote,
)
from gmchain.ledger.wire import Tag

__all__ = ["SafetyData", "SafetyRules", "load_safety_data"]

_R0 = Round(0)


@wire_struct
@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyData(Struct):
    """What must survive a crash before a vote or timeout leaves (docs/consensus.md, "Persist")."""

    TAG: ClassVar[Tag] = Tag.SAFETY_DATA
    last_voted_round: Round = _R0  # highest round we voted or timed out in (S1, T1)
    preferred_round: Round = _R0  # highest QC round observed (S3, T3)
    highest_timeout_round: Round = _R0  # highest round we signed a timeout for
    last_vote: Vote | None = None  # our vote in last_voted_round, re-sent instead of re-signed
    last_timeout: TimeoutVote | None = None  # our timeout in highest_timeout_round
    high_qc: QuorumCert | None = None  # highest QC known when last persisted
    last_tc: TimeoutCert | None = None  # highest TC known when last persisted (restores the round)
    last_proposed_round: Round = _R0  # highest round we signed a proposal in (P2)
    epoch: int = 0  # the epoch the rounds above belong to (E1)

    def __post_init__(self) -> None:
        for name in (
            "epoch",
            "last_voted_round",
            "preferred_round",
            "highest_timeout_round",
            "last_proposed_round",
        ):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64):
                raise ValueError(f"{name}: expected a u64")
        if self.last_vote is not None and not isinstance(self.last_vote, Vote):
            raise ValueError("last_vote: expected a Vote")
        if self.last_timeout is not None and not isinstance(self.last_timeout, TimeoutVote):
            raise ValueError("last_timeout: expected a TimeoutVote")
        if self.high_qc is not None and not isinstance(self.high_qc, QuorumCert):
            raise ValueError("high_qc: expected a QuorumCert")
        if self.last_tc is not None and not isinstance(self.last_tc, TimeoutCert):
            raise ValueError("last_tc: expected a TimeoutCert")


def load_safety_data(raw: bytes) -> SafetyData:
    """Decode stored SafetyData, including the two earlier layouts: eight fields (before E1 added
    `epoch`: every such store is in epoch 0, the first epoch that could end is written by a node
    that already has the field) and the first stored version (seven fields, before P2 added
    `last_proposed_round`). That layout does not say where the replica last proposed, so the
    rounds it can show were reachable are taken as proposed: one past the highest of its voted,
    timed-out, high-QC and TC rounds (a leader proposes in r only holding a QC or TC of r - 1).
    A leader that had fallen behind, synced a newer QC and proposed right before the upgrade can
    still have proposed later than that: the stored data cannot tell. Hence an upgrade from the
    first layout is stop-all (docs/ops.md, "Upgrading"; the P2P version was raised with it), so
    no peer remembers a proposal from before it. The cost is at most one skipped leader turn."""
    fields = decode(raw)
    if isinstance(fields, list) and len(fields) == 9 and fields[0] == SafetyData.TAG:
        return SafetyData.from_fields([*fields, 0])
    if isinstance(fields, list) and len(fields) == 8 and fields[0] == SafetyData.TAG:
        v1 = SafetyData.from_fields([*fields, 0, 0])
        qc_round = 0 if v1.high_qc is None else v1.high_qc.round
        tc_round = 0 if v1.last_tc is None else v1.last_tc.round
        seen = max(v1.last_voted_round, v1.highest_timeout_round, qc_round, tc_round)
        return replace(v1, last_proposed_round=Round(seen + 1))
    return SafetyData.from_fields(fields)


class SafetyRules:
    """Holds SafetyData and the signer; every method returns (new data, signed message) or None.

    Callers must have verified the certificates passed in; these rules only decide whether signing
    is safe and keep the persisted state monotone.
    """

    def __init__(
        self,
        *,
        chain_id: str,
        signer: Signer,
        data: SafetyData,
        epoch: int = 0,
        bugs: frozenset[Bug] = NO_BUGS,
    ) -> None:
        self.chain_id = chain_id
        self.epoch = epoch  # named in every vote and timeout this replica signs
        self.signer = signer
        if data.epoch > epoch:
            raise ValueError(
                f"safety data of epoch {data.epoch} for a replica of epoch {epoch}: this node "
                "signed in an epoch its chain has not reached (E1)"
            )
        if data.epoch < epoch:
            data = SafetyData(epoch=epoch)  # E1: persisted with the first signature
        # Invariant: only replaced by a value that was handed out to persist; data.epoch == epoch.
        self.data = data
        self.bugs = bugs

    def observe_qc(self, qc: QuorumCert) -> None:
        """S3 (in memory; persisted with the next signature, which is when it matters)."""
        if qc.round > self.data.preferred_round:
            self.data = replace(self.data, preferred_round=qc.round)
        if self.data.high_qc is None or qc.round > self.data.high_qc.round:
            self.data = replace(self.data, high_qc=qc)

    def sign_proposal(self, round_: Round, block_id: bytes) -> tuple[SafetyData, bytes] | None:
        """P2: the leader's signature over `Proposal.signing_root(chain_id, block_id)`, at most
        once per round; None if we already signed a proposal in `round_` or later."""
        if round_ <= self.data.last_proposed_round:
            return None
        sig = self.signer.sign(Proposal.signing_root(self.chain_id, block_id))
        self.data = replace(self.data, last_proposed_round=round_)
        return self.data, sig

    def observe_tc(self, tc: TimeoutCert) -> None:
        """Keep the highest TC, so a restart resumes in the round we signed in."""
        if self.data.last_tc is None or tc.round > self.data.last_tc.round:
            self.data = replace(self.data, last_tc=tc)

    def is_safe_to_vote(self, header: BlockHeader, tc: TimeoutCert | None) -> bool:
        """S1 and S2."""
        r = header.round
        if r <= self.data.last_voted_round:  # S1
            return False
        if Bug.SKIP_LOCK_CHECK in self.bugs:
            return True
        qc_round = header.justify.round
        if r == qc_round + 1:  # S2, first case
            return True
        return tc is not None and r == tc.round + 1 and qc_round >= tc.high_qc.round  # S2

    def make_vote(
        self, header: BlockHeader, tc: TimeoutCert | None
    ) -> tuple[SafetyData, Vote] | None:
        last = self.data.last_vote
        if last is not None and last.round == header.round and last.block_id == header.block_id:
            return self.data, last  # re-send, never re-sign
        if header.epoch != self.epoch:
            return None  # E1: a replica signs in its own epoch only
        self.observe_qc(header.justify)
        if not self.is_safe_to_vote(header, tc):
            return None
        root = QuorumCert.signing_root(
            self.chain_id, header.epoch, header.block_id, header.round, header.height
        )
        vote = Vote(
            epoch=header.epoch,
            block_id=header.block_id,
            round=header.round,
            height=header.height,
            voter=self.signer.node_id,
            signature=self.signer.sign(root),
        )
        self.data = replace(self.data, last_voted_round=header.round, last_vote=vote)
        return self.data, vote

    def is_safe_to_timeout(
        self, round_: Round, high_qc: QuorumCert, last_tc: TimeoutCert | None
    ) -> bool:
        if round_ < self.data.last_voted_round:  # T1
            return False
        if not (  # T2
            round_ == high_qc.round + 1 or (last_tc is not None and round_ == last_tc.round + 1)
        ):
            return False
        return high_qc.round >= self.data.preferred_round  # T3

    def make_timeout(
        self, round_: Round, high_qc: QuorumCert, last_tc: TimeoutCert | None
    ) -> tuple[SafetyData, TimeoutVote] | None:
        lt = self.data.last_timeout
        if lt is not None and lt.round == round_ and lt.high_qc == high_qc:
            return self.data, lt
        self.observe_qc(high_qc)
        if not self.is_safe_to_timeout(round_, high_qc, last_tc):
            return None
        root = TimeoutVote.signing_root(self.chain_id, self.epoch, round_, high_qc.round)
        tv = TimeoutVote(
            epoch=self.epoch,
            round=round_,
            high_qc=high_qc,
            voter=self.signer.node_id,
            signature=self.signer.sign(root),
        )
        self.data = replace(
            self.data,
            last_voted_round=max(self.data.last_voted_round, round_),
            highest_timeout_round=max(self.data.highest_timeout_round, round_),
            last_timeout=tv,
        )
        return self.data, tv
