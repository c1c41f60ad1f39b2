"""The pacemaker: the round timer and its backoff (rules L4 and L5 of consensus/replica.py).

Rules this module keeps (Jolteon, FC 2022, Algorithm 3 "Pacemaker"; DiemBFT v4 section 5):
1. Time is what the caller passes in (`now`, milliseconds from the node's clock); this module reads
   no clock and decides nothing about messages: it says when the round timer fires.
2. `deadline_ms` is None (disarmed) or the time the current round times out. It is armed only when
   the replica can sign a timeout and has something to make progress on, and is disarmed as soon
   as it has nothing (L4): an idle chain sends no timeouts.
3. A timer that fired re-arms for one more period (`restart`): the timeout is re-broadcast each
   period until the round advances (L4).
4. The period is `ConsensusConfig.compute_timeout_ms(backoff)`: the base timeout times
   backoff%^k, capped (L5). `backoff` (k) rises by one for each round that ends by a TC (no higher
   than the first k whose period reaches the cap) and never falls without a commit: a round that
   ends by a QC leaves it as it is.
5. It falls by one at a commit (`on_commit`) when the round that last ended by a QC lasted at most
   half the next-lower period (measured on this replica, from the round's start to that QC): the
   shorter timeout would have held that round with room to spare. At most one step per such round.
Why rules 4-5 (docs/benchmarks.md, "Session 7 — cluster4 stall"): the 2-chain rule commits only
after two consecutive certified rounds. When k was reset by every QC, a cluster whose rounds
need the period of k = 1 alternated for ever — TC (k = 1), QC (k = 0), TC, QC ... — rounds advanced
and nothing committed (40 s stalls of four validators on two loaded cores). Now k never shrinks
between commits, so after GST it grows until rounds fit the period, two in a row succeed and
commit (docs/consensus.md, "Liveness conditions"); a quiet cluster comes back to the base period
one step per commit.
"""

from __future__ import annotations

from collections.abc import Callable

from gmchain.consensus.types import ConsensusConfig

__all__ = ["Pacemaker"]

_MAX_BACKOFF = 32  # compute_timeout_ms applies at most 32 steps (a backoff% of 100 never caps)


class Pacemaker:
    def __init__(self, *, config: ConsensusConfig) -> None:
        self._cfg = config
        # k of rules 4-5: TC-ended rounds since the period last stepped down.
        self.backoff = 0
        # None = disarmed; otherwise when the current round times out (rule 2).
        self.deadline_ms: int | None = None
        # When the current round started (its first on_round_advanced); None before that.
        self._round_start_ms: int | None = None
        # Rule 5: the last round ended by a QC, fast enough to step k down at the next commit.
        self._fast_round = False

    def period_ms(self) -> int:
        """Rule 4: the current round's timeout."""
        return self._cfg.compute_timeout_ms(self.backoff)

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
        """Rule 4 (and rule 5's measure) for the round that ended, then rule 2 for the new round
        (`keep_armed`: the replica can sign a timeout and has something to make progress on)."""
        started, self._round_start_ms = self._round_start_ms, now
        if by_tc:
            self._fast_round = False
            if self.backoff < _MAX_BACKOFF and self.period_ms() < self._cfg.max_round_timeout_ms:
                self.backoff += 1
        else:
            lower = self._cfg.compute_timeout_ms(self.backoff - 1) if self.backoff > 0 else 0
            self._fast_round = started is not None and 2 * (now - started) <= lower
        self.deadline_ms = now + self.period_ms() if keep_armed else None

    def on_commit(self) -> None:
        """Rule 5: a commit steps the period down once if the last QC-ended round was fast. The
        current round keeps its deadline; the shorter period applies from the next round."""
        if self._fast_round and self.backoff > 0:
            self.backoff -= 1
        self._fast_round = False
