"""Vote and timeout aggregation: counting signed votes into QCs and timeouts into TCs.

Rules this module keeps (Jolteon, FC 2022, section 3; rules L3, L4 and L7 of consensus/replica.py):
1. Only verified votes and timeouts are counted (the vote's signature is checked here, through the
   shared CertChecker; a timeout arrives already checked by the replica, which must use its high
   QC first), and each voter counts once per round: a second vote or timeout of the same voter in
   that round is ignored, whatever it says — among the votes counted (rule 4's are not).
2. A QC is formed from the votes of one round for one block whose power reaches the quorum; a TC
   from the timeouts of one round whose power reaches the quorum, carrying the highest high QC
   among them (the TC's `high_qc`, Jolteon's "qc_high"). Signatures are sorted by voter so every
   replica that forms the certificate from the same votes forms the same bytes.
3. Bounded (L7): a vote is kept only for rounds in [current - 1, current + max_future_rounds];
   `prune_below` drops whole rounds once the round advances past them.
4. A vote for a block whose votes in that round already reach the quorum is neither verified nor
   counted: the QC was formed from the votes before it, and one more signature changes nothing
   the replica does with it (consensus/replica.py `_on_vote` drops a QC it already holds). With
   broadcast votes every replica receives all n votes and needs 2f + 1: this saves an SM2
   verification per late vote (docs/benchmarks.md, session 15). It is dropped unverified, so it
   proves nothing either way, and unrecorded: that voter's later vote for another block of the
   round is checked and counted. Harmless: the certified block's votes hold a quorum (more than
   2/3 of the power), so another block of the round can never reach one. Equivocation is
   watched apart (consensus/equivocation.py).
"""

from __future__ import annotations

from gmchain.consensus.certs import CertChecker
from gmchain.consensus.types import ValidatorSet
from gmchain.ledger.types import NodeId, QuorumCert, Round, TimeoutCert, TimeoutVote, Vote

__all__ = ["TimeoutAggregator", "VoteAggregator"]


class VoteAggregator:
    def __init__(
        self, *, validators: ValidatorSet, certs: CertChecker, max_future_rounds: int
    ) -> None:
        self._validators = validators
        self._certs = certs
        self._max_future_rounds = max_future_rounds
        # Verified votes by round, then by voter: at most one per voter and round (rule 1), rounds
        # only within the window of rule 3.
        self.by_round: dict[Round, dict[NodeId, Vote]] = {}

    def add(self, vote: Vote, *, current_round: Round) -> QuorumCert | None:
        """Count a vote; return the QC its block has now that it reached the quorum, else None."""
        if vote.round + 1 < current_round or vote.round > current_round + self._max_future_rounds:
            return None
        by_voter = self.by_round.setdefault(vote.round, {})
        if vote.voter in by_voter:
            return None
        same = [v for v in by_voter.values() if v.block_id == vote.block_id]
        power = self._validators.power_of_all(v.voter for v in same)
        if self._certs.is_quorum_power(power):
            return None  # rule 4: certified already
        if not self._certs.verify_vote(vote):
            return None
        by_voter[vote.voter] = vote
        same.append(vote)
        power += self._validators.power_of(vote.voter)  # (a voter not yet in by_voter)
        if not self._certs.is_quorum_power(power):
            return None
        sigs = tuple(sorted((v.voter, v.signature) for v in same))
        return QuorumCert(
            epoch=vote.epoch,
            block_id=vote.block_id,
            round=vote.round,
            height=vote.height,
            signatures=sigs,
        )

    def prune_below(self, round_: int) -> None:
        for r in [r for r in self.by_round if r < round_]:
            del self.by_round[r]


class TimeoutAggregator:
    def __init__(self, *, validators: ValidatorSet) -> None:
        self._validators = validators
        # Verified timeouts by round, then by voter: at most one per voter and round (rule 1).
        self.by_round: dict[Round, dict[NodeId, TimeoutVote]] = {}

    def add(self, tv: TimeoutVote) -> int | None:
        """Count a verified timeout; return the power that timed out in its round, or None if this
        voter was already counted there."""
        by_voter = self.by_round.setdefault(tv.round, {})
        if tv.voter in by_voter:
            return None
        by_voter[tv.voter] = tv
        return self._validators.power_of_all(by_voter)

    def make_tc(self, round_: Round) -> TimeoutCert:
        """Rule 2: the TC of `round_` from the timeouts counted there (the caller checked the
        quorum)."""
        by_voter = self.by_round[round_]
        best = max(by_voter.values(), key=lambda t: t.high_qc.round).high_qc
        entries = tuple(
            sorted((t.voter, int(t.high_qc.round), t.signature) for t in by_voter.values())
        )
        epoch = next(iter(by_voter.values())).epoch  # verified: all of the checker's epoch
        return TimeoutCert(epoch=epoch, round=round_, high_qc=best, entries=entries)

    def prune_below(self, round_: int) -> None:
        for r in [r for r in self.by_round if r < round_]:
            del self.by_round[r]
