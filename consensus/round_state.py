"""The round state: the certificates that define a replica's round (rule L1) and what it did in it.

Rules this module keeps (Jolteon = DiemBFT v4, Gelashvili et al., FC 2022, Algorithm 3; the rule
numbers are consensus/replica.py's):
1. `high_qc` and `last_tc` are only ever set to certificates the caller has verified
   (consensus/certs.py), and only upwards: a certificate of a lower or equal round changes nothing.
2. After `advance()`, `round == max(high_qc.round, last_tc.round) + 1` (L1); `round` never
   decreases, so a message's round number alone can never move it.
3. The fields record facts, not intentions: `proposed_round` and `timed_out_round` change only once
   the signature exists; `commit_qc` only when a Commit effect has been emitted for it.
This is a plain record owned by one `Replica`; it holds no references to other parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gmchain.consensus.safety import SafetyData
from gmchain.ledger.types import BlockHeader, Digest, QuorumCert, Round, TimeoutCert

__all__ = ["RoundState"]

_R0 = Round(0)


@dataclass(slots=True, kw_only=True)
class RoundState:
    # The highest verified QC seen (L1). Restored from SafetyData when that one is higher.
    high_qc: QuorumCert
    # The highest verified TC seen (L1), None until the first one.
    last_tc: TimeoutCert | None
    # The current round: max(high_qc.round, last_tc.round) + 1 once advance() ran (rule 2).
    round: Round = _R0
    # The last round we signed a proposal in (L2, safety rule P2): we never propose twice in one.
    proposed_round: Round = _R0
    # The last round we signed a timeout in (L4); == round means "we timed out in this round".
    timed_out_round: Round = _R0
    # Verified QCs by the block id they certify, for blocks at or above the committed root; the
    # replica drops the entries below the root and those of pruned blocks when the root moves.
    qcs: dict[Digest, QuorumCert] = field(default_factory=dict)
    # The QC that committed our root (sent in SyncInfo so a peer that missed it can commit, L9);
    # None while the root is genesis or its QC is not known (restart before any commit here).
    commit_qc: QuorumCert | None = None
    # The round of the last QC that committed transactions, while peers may still lack it: its
    # leader's successor proposes (an empty block) so that the QC spreads (L4). -1 = none.
    spread_qc_round: int = -1
    # L10: the highest committed height a peer's *verified* commit QC shows (may trail our own
    # root; `Replica.lag` clamps at 0).
    peak_height: int = 0
    # L10: true from the first peer SyncInfo whose high QC verified.
    heard_status: bool = False

    @classmethod
    def restore(
        cls, *, high_qc: QuorumCert, safety: SafetyData, committed: BlockHeader
    ) -> RoundState:
        """The state after a (re)start: the certificates we hold or last persisted, the round
        they allow, and where we last proposed (P2)."""
        st = cls(
            high_qc=high_qc,
            last_tc=safety.last_tc,
            proposed_round=safety.last_proposed_round,
            peak_height=committed.height,
        )
        if safety.high_qc is not None:
            st.raise_high_qc(safety.high_qc)
        st.advance()
        st.qcs[st.high_qc.block_id] = st.high_qc
        return st

    def compute_round(self) -> Round:
        """L1: one past the highest certified round."""
        tc_round = -1 if self.last_tc is None else self.last_tc.round
        return Round(max(self.high_qc.round, tc_round) + 1)

    def raise_high_qc(self, qc: QuorumCert) -> bool:
        """Rule 1: adopt a verified QC if its round is higher; return whether it was adopted."""
        if qc.round <= self.high_qc.round:
            return False
        self.high_qc = qc
        return True

    def raise_last_tc(self, tc: TimeoutCert) -> bool:
        """Rule 1: adopt a verified TC if its round is higher; return whether it was adopted."""
        if self.last_tc is not None and tc.round <= self.last_tc.round:
            return False
        self.last_tc = tc
        return True

    def advance(self) -> bool:
        """Rule 2: move `round` up to what the certificates allow; return whether it moved."""
        new_round = self.compute_round()
        if new_round <= self.round:
            return False
        self.round = new_round
        return True
