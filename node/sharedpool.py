"""The transaction pool shared by the event loop (admission, gossip, reads) and the consensus
thread (block building, validation, commit): node/mempool.py's pool behind one lock.

Rules this module keeps:
1. Every public method of the pool runs under one re-entrant lock, so the pool's own invariants
   (node/mempool.py) hold across the two threads; `iter_fair` holds it for the whole walk (the
   pool must not change while a block is being packed from it) and releases it when the walk
   ends or its iterator is dropped.
2. The pool never holds a committed transaction (chain/core.py trusts it): `add` re-checks the
   store under the lock. The consensus thread writes a block's synced batch before it removes
   the block's transactions from the pool under this lock, so an `add` either runs before the
   batch is visible (and the commit's removal takes the tx out again) or sees the tx committed
   and refuses it as a duplicate.
3. Nothing here blocks for long: the longest hold is one packing walk (bounded by
   `pack_scan_max_txs`, chain/core.py rule 4), not a block's execution or its fsync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from gmchain.ledger.types import SignedTx
from gmchain.node.api import ErrorCode
from gmchain.node.mempool import Dropped, Mempool, MempoolConfig, MempoolError

__all__ = ["SharedMempool"]


class SharedMempool(Mempool):
    """A Mempool whose every method takes one lock; it adds no other state (rule 1).

    (A subclass, not a wrapper, because the chain and admission are typed against Mempool; the
    lock belongs inside the pool once the pool becomes an interface of the chain library.)"""

    def __init__(
        self,
        *,
        config: MempoolConfig,
        chain_id: str,
        replay_window: int,
        is_committed: Callable[[bytes], bool],
    ) -> None:
        super().__init__(config=config, chain_id=chain_id, replay_window=replay_window)
        self._lock = threading.RLock()
        self._is_committed = is_committed

    def precheck(self, tx: SignedTx, size: int, head: int) -> None:
        with self._lock:
            super().precheck(tx, size, head)

    def add(self, tx: SignedTx, size: int, head: int, now_ms: int) -> None:
        with self._lock:
            if self._is_committed(tx.tx_id):  # rule 2
                raise MempoolError(ErrorCode.DUPLICATE, "transaction is already committed")
            super().add(tx, size, head, now_ms)

    def is_verified(self, tx_id: bytes) -> bool:
        with self._lock:
            return super().is_verified(tx_id)

    def mark_verified(self, tx_id: bytes) -> None:
        with self._lock:
            super().mark_verified(tx_id)

    def iter_fair(self) -> Iterator[tuple[SignedTx, int]]:
        with self._lock:
            yield from super().iter_fair()

    def take(
        self, max_count: int, max_bytes: int, exclude: Iterable[frozenset[bytes]]
    ) -> list[SignedTx]:
        with self._lock:
            return super().take(max_count, max_bytes, exclude)

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        with self._lock:
            return super().remove(tx_ids)

    def evict(self, tx_ids: Iterable[bytes], code: ErrorCode, message: str) -> int:
        with self._lock:
            return super().evict(tx_ids, code, message)

    def evict_sender(self, sender: bytes, code: ErrorCode, message: str) -> int:
        with self._lock:
            return super().evict_sender(sender, code, message)

    def evict_address(self, address: bytes, code: ErrorCode, message: str) -> int:
        with self._lock:
            return super().evict_address(address, code, message)

    def evict_expired(self, head: int) -> int:
        with self._lock:
            return super().evict_expired(head)

    def drop(self, txs: Sequence[SignedTx]) -> int:
        with self._lock:
            return super().drop(txs)

    def dropped_reason(self, tx_id: bytes) -> Dropped | None:
        with self._lock:
            return super().dropped_reason(tx_id)

    def __contains__(self, tx_id: object) -> bool:
        with self._lock:
            return super().__contains__(tx_id)

    def __len__(self) -> int:
        with self._lock:
            return super().__len__()

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def oldest_arrival_ms(self) -> int | None:
        with self._lock:
            return super().oldest_arrival_ms()
