"""The budget for helping peers that fell behind (rule L9 of consensus/replica.py).

A replica answers a peer's stale or lonely timeout with its certificates (SyncInfo). A peer can
send timeouts of many old rounds, so replies are rate-limited here.

Rules this module keeps:
1. At most one reply per (peer, round named) per period, and at most `per_period` replies per peer
   per period whatever rounds its timeouts name. The period is the base round timeout.
2. Memory is bounded by the validator count: entries older than a period are dropped once the
   tables outgrow a small multiple of it (senders are validators; bound them anyway).
3. The per-(peer, round) table is cleared when our round advances: new certificates are worth
   sending again at once.
"""

from __future__ import annotations

from gmchain.ledger.types import NodeId

__all__ = ["HELP_PER_PERIOD", "HelpBudget"]

HELP_PER_PERIOD = 4  # L9: SyncInfo replies per peer per round-timeout period


class HelpBudget:
    def __init__(
        self, *, period_ms: int, validator_count: int, per_period: int = HELP_PER_PERIOD
    ) -> None:
        self._period = period_ms
        self._validator_count = validator_count
        self._per_period = per_period
        # (peer, round its timeout named) -> when we last replied to it (rule 1; cleared, rule 3).
        self.helped: dict[tuple[NodeId, int], int] = {}
        # peer -> when we replied to it within the last period, oldest first (rule 1).
        self.helped_at: dict[NodeId, list[int]] = {}

    def try_spend(self, peer: NodeId, their_round: int, now: int) -> bool:
        """Return True (and record the reply) iff rule 1 allows a reply to `peer` now."""
        period = self._period
        key = (peer, their_round)
        last = self.helped.get(key)
        if last is not None and now - last < period:
            return False
        recent = [t for t in self.helped_at.get(peer, ()) if now - t < period]
        if len(recent) >= self._per_period:
            self.helped_at[peer] = recent
            return False
        if len(self.helped_at) > 4 * self._validator_count:  # rule 2
            self.helped_at = {
                p: ts for p, ts in self.helped_at.items() if ts and now - ts[-1] < period
            }
        self.helped_at[peer] = [*recent, now]
        if len(self.helped) > self._per_period * self._validator_count:  # rule 2
            self.helped = {k: t for k, t in self.helped.items() if now - t < period}
        self.helped[key] = now
        return True

    def on_round_advanced(self) -> None:
        self.helped.clear()  # rule 3
