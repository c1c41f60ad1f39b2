"""Flexible packing: when to cut a block, and how big, adapting to queue depth and commit latency.

Rules this policy keeps (DESIGN.md, "The way a transaction travels", step 4):
  K1. Never cut an empty block: `should_cut` is False while nothing is pending. (Empty blocks the
      protocol needs to commit earlier ones are the consensus core's decision, not this policy's.)
  K2. Cut when the pending count reaches `target_size`, or the oldest pending transaction has waited
      `wait_ms`.
  K3. `target_size` grows (x1.5) while the queue holds two targets' worth; it shrinks (x3/4)
      while the smoothed commit latency exceeds `target_latency_ms` *and* there is no such backlog.
      With a backlog, smaller blocks only lower throughput and lengthen the queue, whatever made
      latency high (a crashed leader's timeouts, say): the real-process drills showed a shrinking
      target starving the chain at one tx per block while acknowledged txs expired.
  K4. `wait_ms` shrinks (x3/4) while latency exceeds the target and grows (x5/4) while latency is
      below half of it — batching more when there is room.
  K5. Both always stay within their configured bounds. Integer arithmetic only; pure (no clock).
  K6. With `block_time_budget_ms` > 0, `target_size` never exceeds the transactions that fit the
      budget at the measured execution cost per transaction (`observe_execution`, fed by the node
      with the wall time of each block's execution, built or validated; an EWMA, 1/4 weight per
      block; blocks under `_MIN_TIMED_TXS` transactions say more about per-block overhead than
      per-transaction cost and are not counted). Why: under a backlog K3 grows blocks to
      `max_block_txs`; on a loaded node a block that size took longer to execute than a round,
      rounds ended by timeout, and the chain stood still at exactly the load that needs it most
      (session 8's CAICT sweep on cluster4: 625 tx/s offered, ~250 committed). The cap is a
      hint about block size, never a validity rule: a follower validates any block that obeys
      the block limits. With no budget (0) or no observation yet, only `max_block_txs` caps.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PackingConfig", "PackingPolicy"]

_MIN_TIMED_TXS = 20  # K6: smaller blocks are not counted


@dataclass(frozen=True, slots=True, kw_only=True)
class PackingConfig:
    min_block_txs: int = 1
    max_block_txs: int = 5000
    min_wait_ms: int = 5
    max_wait_ms: int = 500
    target_latency_ms: int = 1000
    block_time_budget_ms: int = 0  # K6 (0: no time cap)

    def validate(self) -> None:
        if not 1 <= self.min_block_txs <= self.max_block_txs:
            raise ValueError("need 1 <= min_block_txs <= max_block_txs")
        if not 0 <= self.min_wait_ms <= self.max_wait_ms:
            raise ValueError("need 0 <= min_wait_ms <= max_wait_ms")
        if self.target_latency_ms <= 0:
            raise ValueError("target_latency_ms must be positive")
        if self.block_time_budget_ms < 0:
            raise ValueError("block_time_budget_ms must be >= 0")


class PackingPolicy:
    """Fed with observations; answers `should_cut(now_ms)` and `target_size`."""

    def __init__(self, config: PackingConfig) -> None:
        config.validate()
        self.config = config
        c = config
        # Invariants (K5): min_block_txs <= target_size <= max_block_txs,
        # min_wait_ms <= wait_ms <= max_wait_ms.
        self.target_size = max(c.min_block_txs, min(c.max_block_txs, 100))
        self.wait_ms = (c.min_wait_ms + c.max_wait_ms) // 2
        self.latency_ewma_ms: int | None = None
        self.pending = 0
        self.oldest_pending_ms: int | None = None  # arrival time of the oldest pending tx
        self.exec_us_per_tx: int | None = None  # K6: EWMA of the measured execution cost

    def observe_queue(self, *, pending: int, oldest_pending_ms: int | None) -> None:
        """The mempool's depth and the arrival time of its oldest transaction (K3)."""
        if pending < 0:
            raise ValueError("pending must be >= 0")
        self.pending = pending
        self.oldest_pending_ms = oldest_pending_ms if pending else None
        if pending >= 2 * self.target_size:
            self.target_size = self._clamp_size(self.target_size * 3 // 2 + 1)

    def observe_execution(self, *, txs: int, elapsed_us: int) -> None:
        """Wall time of one block's execution, built or validated, of `txs` transactions (K6)."""
        if txs < 0 or elapsed_us < 0:
            raise ValueError("txs and elapsed_us must be >= 0")
        if txs < _MIN_TIMED_TXS:
            return
        per_tx = max(1, elapsed_us // txs)
        e = self.exec_us_per_tx
        self.exec_us_per_tx = per_tx if e is None else (3 * e + per_tx) // 4
        self.target_size = self._clamp_size(self.target_size)

    def time_cap(self) -> int:
        """K6: the most transactions whose measured execution fits the budget."""
        c = self.config
        if c.block_time_budget_ms <= 0 or self.exec_us_per_tx is None:
            return c.max_block_txs
        return c.block_time_budget_ms * 1000 // self.exec_us_per_tx

    def observe_commit_latency(self, latency_ms: int) -> None:
        """Pool-to-commit latency of a committed transaction (K3, K4): timed from its entry into
        the pool, the part the cut decisions move, not the whole of what its client waited."""
        if latency_ms < 0:
            raise ValueError("latency must be >= 0")
        e = self.latency_ewma_ms
        e = latency_ms if e is None else (7 * e + latency_ms) // 8
        self.latency_ewma_ms = e
        c = self.config
        if e > c.target_latency_ms:
            if self.pending < 2 * self.target_size:
                self.target_size = self._clamp_size(self.target_size * 3 // 4)
            self.wait_ms = self._clamp_wait(self.wait_ms * 3 // 4)
        elif 2 * e < c.target_latency_ms:
            self.wait_ms = self._clamp_wait(self.wait_ms * 5 // 4 + 1)

    def should_cut(self, now_ms: int) -> bool:
        if self.pending == 0 or self.oldest_pending_ms is None:
            return False  # K1
        return self.pending >= self.target_size or now_ms - self.oldest_pending_ms >= self.wait_ms

    def _clamp_size(self, n: int) -> int:
        c = self.config
        return max(c.min_block_txs, min(c.max_block_txs, self.time_cap(), n))

    def _clamp_wait(self, ms: int) -> int:
        c = self.config
        return max(c.min_wait_ms, min(c.max_wait_ms, ms))
