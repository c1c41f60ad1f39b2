"""The transaction pool: admission checks, verify-once cache, quotas, FIFO packing.

Rules this module keeps:
1. Cheap checks first (size, chain, replay window, duplicates, capacity, quota), the signature
   last; a signature is verified at most once per node (`verified` cache by tx id), and the
   cache is shared with proposal validation.
2. A full pool refuses with `MempoolError(POOL_FULL)` — it never drops an admitted transaction
   silently (FISCO BCOS #2124). Admitted transactions leave only when committed or expired.
3. One sender cannot take more than `per_sender_max` slots (FISCO BCOS #4028).
4. Packing order is arrival order, so no sender can starve another by fee or key order.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger.types import MAX_TX_BYTES, SignedTx
from node.api import ErrorCode

__all__ = ["Mempool", "MempoolConfig", "MempoolError"]


class MempoolError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolConfig:
    max_txs: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    per_sender_max: int = 20_000
    verified_cache: int = 400_000

    def validate(self) -> None:
        for name in ("max_txs", "max_bytes", "per_sender_max", "verified_cache"):
            if getattr(self, name) <= 0:
                raise ValueError(f"mempool.{name} must be positive")


@dataclass(slots=True)
class _Entry:
    tx: SignedTx
    size: int
    arrived_ms: int


class Mempool:
    def __init__(self, *, config: MempoolConfig, chain_id: str, replay_window: int) -> None:
        config.validate()
        self.config = config
        self.chain_id = chain_id
        self.replay_window = replay_window
        self._pending: OrderedDict[bytes, _Entry] = OrderedDict()  # arrival order
        self._bytes = 0
        self._per_sender: dict[bytes, int] = {}
        self._verified: OrderedDict[bytes, None] = OrderedDict()  # LRU of verified tx ids
        # (expiry, tx id) of every admitted tx; entries of txs that left are skipped lazily.
        self._expiries: list[tuple[int, bytes]] = []

    # --- admission ------------------------------------------------------------------------------

    def precheck(self, tx: SignedTx, size: int, head: int) -> None:
        """All checks but the signature and committed-duplicate lookup. Raises MempoolError."""
        if size > MAX_TX_BYTES:
            raise MempoolError(ErrorCode.TOO_LARGE, f"transaction exceeds {MAX_TX_BYTES} bytes")
        body = tx.body
        if body.chain_id != self.chain_id:
            raise MempoolError(
                ErrorCode.WRONG_CHAIN,
                f"transaction is for chain {body.chain_id!r}, this node runs {self.chain_id!r}",
            )
        if body.expiry <= head:
            raise MempoolError(
                ErrorCode.EXPIRED, f"expired: expiry {body.expiry} <= current height {head}"
            )
        if body.expiry > head + self.replay_window:
            raise MempoolError(
                ErrorCode.EXPIRY_TOO_FAR,
                f"expiry {body.expiry} is beyond height {head} + window {self.replay_window}",
            )
        if tx.tx_id in self._pending:
            raise MempoolError(ErrorCode.DUPLICATE, "transaction is already pending")
        if len(self._pending) >= self.config.max_txs or (
            self._bytes + size > self.config.max_bytes
        ):
            raise MempoolError(
                ErrorCode.POOL_FULL,
                f"transaction pool is full ({len(self._pending)} txs); retry later",
            )
        if self._per_sender.get(body.sender, 0) >= self.config.per_sender_max:
            raise MempoolError(
                ErrorCode.SENDER_QUOTA,
                f"sender already has {self.config.per_sender_max} pending transactions",
            )

    def add(self, tx: SignedTx, size: int, head: int, now_ms: int) -> None:
        """Insert a transaction whose signature has been verified. Re-runs the prechecks
        (state may have changed while the signature was being verified)."""
        self.precheck(tx, size, head)
        self.mark_verified(tx.tx_id)
        self._pending[tx.tx_id] = _Entry(tx, size, now_ms)
        heapq.heappush(self._expiries, (tx.body.expiry, tx.tx_id))
        self._bytes += size
        self._per_sender[tx.body.sender] = self._per_sender.get(tx.body.sender, 0) + 1

    # --- verify-once cache ----------------------------------------------------------------------

    def is_verified(self, tx_id: bytes) -> bool:
        return tx_id in self._verified

    def mark_verified(self, tx_id: bytes) -> None:
        self._verified[tx_id] = None
        self._verified.move_to_end(tx_id)
        while len(self._verified) > self.config.verified_cache:
            self._verified.popitem(last=False)

    # --- packing and removal --------------------------------------------------------------------

    def take(
        self, max_count: int, max_bytes: int, exclude: Iterable[frozenset[bytes]]
    ) -> list[SignedTx]:
        """Up to `max_count` pending txs in arrival order, skipping ids in any `exclude` set
        (transactions already in uncommitted ancestor blocks). Does not remove them."""
        excl = list(exclude)
        out: list[SignedTx] = []
        total = 0
        for tx_id, entry in self._pending.items():
            if len(out) >= max_count:
                break
            if any(tx_id in s for s in excl):
                continue
            if total + entry.size > max_bytes and out:
                break
            out.append(entry.tx)
            total += entry.size
        return out

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        n = 0
        for tx_id in tx_ids:
            entry = self._pending.pop(tx_id, None)
            if entry is None:
                continue
            n += 1
            self._bytes -= entry.size
            sender = entry.tx.body.sender
            left = self._per_sender[sender] - 1
            if left:
                self._per_sender[sender] = left
            else:
                del self._per_sender[sender]
        return n

    def evict_expired(self, head: int) -> int:
        """Drop txs that can no longer be included after `head` (expiry <= head)."""
        dead = []
        heap = self._expiries
        while heap and heap[0][0] <= head:
            _, tx_id = heapq.heappop(heap)
            if tx_id in self._pending:
                dead.append(tx_id)
        if len(heap) > 2 * len(self._pending) + 1024:  # drop entries of txs that left
            self._expiries = [(e, t) for e, t in heap if t in self._pending]
            heapq.heapify(self._expiries)
        return self.remove(dead)

    def drop(self, txs: Sequence[SignedTx]) -> int:
        return self.remove(t.tx_id for t in txs)

    # --- introspection --------------------------------------------------------------------------

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def oldest_arrival_ms(self) -> int | None:
        for entry in self._pending.values():
            return entry.arrived_ms
        return None
