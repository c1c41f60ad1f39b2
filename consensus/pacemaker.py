"""The pacemaker: the round timer and its backoff (rules L4 and L5 of consensus/replica.py).

Rules this module keeps (Jolteon, FC 2022, Algorithm 3 "Pacemaker"; DiemBFT v4 section 5):
1. Time is what the caller passes in (`now`, milliseconds from the node's clock); this module reads
   no clock and decides nothing about messages: it says when the round timer fires.
2. `deadline_ms` is None (disarmed) or the time the current round times out. It is armed only when
   the replica can sign a timeout and has something to make progress on, and is disarmed as soon
   as it has nothing (L4): an idle chain sends no timeouts.
3. A timer that fired re-arms for one more period (`restart`): the timeout is re-broadcast each
   period until the round advances (L4).
4. The period is `ConsensusConfig.compute_timeout_ms(consecutive_timeouts)`: the base timeout
   times backoff%^k after k consecutive rounds that ended by a TC, capped (L5); a round that ends
   by a QC resets k to 0.
"""

from __future__ import annotations

from collections.abc import Callable

from gmchain.consensus.types import ConsensusConfig

__all__ = ["Pacemaker"]


class Pacemaker:
    def __init__(self, *, config: ConsensusConfig) -> None:
        self._cfg = config
        # Rounds in a row that ended by a TC (L5); 0 after a round that ended by a QC.
        self.consecutive_timeouts = 0
        # None = disarmed; otherwise when the current round times out (rule 2).
        self.deadline_ms: int | None = None

    def period_ms(self) -> int:
        """Rule 4: the current round's timeout."""
        return self._cfg.compute_timeout_ms(self.consecutive_timeouts)

    def on_tick(self, now: int, *, can_time_out: bool, needs_progress: Callable[[], bool]) -> bool:
        """Rule 2: arm or disarm the timer; return True iff the round timed out now.

        `needs_progress` is asked lazily (only when the answer matters), in the order the rules
        need it, so an App whose `has_pending` is not free is asked no more than necessary."""
        if self.deadline_ms is None:
            if can_time_out and needs_progress():
                self.deadline_ms = now + self.period_ms()
            return False
        if not needs_progress():
            self.deadline_ms = None  # L4: nothing left to commit (the app saw our Commit)
            return False
        return now >= self.deadline_ms

    def restart(self, now: int) -> None:
        """Rule 3: we time out in this round; fire again one period from now if it lasts."""
        self.deadline_ms = now + self.period_ms()

    def on_round_advanced(self, now: int, *, by_tc: bool, keep_armed: bool) -> None:
        """Rule 4, then rule 2 for the new round (`keep_armed`: the replica can sign a timeout and
        has something to make progress on)."""
        self.consecutive_timeouts = self.consecutive_timeouts + 1 if by_tc else 0
        self.deadline_ms = now + self.period_ms() if keep_armed else None
