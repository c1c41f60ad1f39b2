"""The transaction pool shared by the event loop (admission, gossip, reads) and the consensus
thread (block building, validation, commit): node/mempool.py's pool behind one lock.

Rules this module keeps:
1. Every public method of the pool that changes it, or reads more than one value of it, runs
   under one re-entrant lock, so the pool's own invariants (node/mempool.py) hold across the two
   threads; `iter_fair` holds it for the whole walk (the pool must not change while a block is
   being packed from it) and releases it when the walk ends or its iterator is dropped.
   The reads of one value (`in`, `len`, `size_bytes`) take no lock: each is one operation on a
   dict or one attribute read, atomic under the GIL (CPython 3.11), so it sees the pool before
   or after a change made under the lock, never a broken one. They are the consensus thread's
   per-transaction and per-tick questions (`Executor` asks `in` for every transaction of a
   block it validates); taking the lock there made that thread wait whenever the loop held it
   and was pre-empted (a GIL switch interval, 5 ms, per wait; docs/benchmarks.md, session 5).
2. The pool never holds a committed transaction (chain/core.py trusts it). Admission checks
   "already committed" before it adds (node/admission.py rule 4), but the consensus thread may
   commit between that check and the `add`. A commit removes its block's tx ids from the pool
   (`remove`, under the lock) after its synced batch is written, and the pool remembers the ids
   of its last `REMEMBER_REMOVED` removals (present in the pool or not; evictions excluded: an
   evicted tx is not committed). So an `add` either runs before the commit's removal (which
   then takes the tx out again) or finds the id remembered and refuses it as a duplicate — an
   in-memory check, not a store read on the loop (docs/benchmarks.md: a LevelDB read per
   admitted tx on the loop cost a quarter of it in GIL hand-offs).
3. Nothing here blocks for long: the longest hold is one packing walk (bounded by
   `pack_scan_max_txs`, chain/core.py rule 4), not a block's execution or its fsync.
4. `precheck` runs the transaction rules that read nothing of the pool (chain/txrules.py R1,
   R3-R6, `TxRules.check_static`) outside the lock, and refuses an id already pending first
   (before those rules), as well as one a recent commit removed (rule 2; `add` would refuse it
   after the worker checks): a duplicate — normal in gossip, and re-offered every few seconds
   while it is pending (node/network.py) — costs a dict lookup, not a schema check of its
   arguments and a store read. Only the pool's own checks (P) run under the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from gmchain.chain.txrules import Rejection, TxRejected, TxRules
from gmchain.ledger.types import SignedTx
from gmchain.node.mempool import Dropped, Mempool, MempoolConfig

__all__ = ["REMEMBER_REMOVED", "SharedMempool"]

REMEMBER_REMOVED = 1 << 17  # tx ids of the latest removals kept (rule 2): many blocks' worth


class SharedMempool(Mempool):
    """A Mempool whose every method takes one lock (rule 1), and which remembers the ids its
    latest removals named (rule 2).

    (A subclass, not a wrapper, because the chain and admission are typed against Mempool; the
    lock belongs inside the pool once the pool becomes an interface of the chain library.)"""

    def __init__(
        self,
        *,
        config: MempoolConfig,
        rules: TxRules,
    ) -> None:
        super().__init__(config=config, rules=rules)
        self._lock = threading.RLock()
        self._removed: OrderedDict[bytes, None] = OrderedDict()  # rule 2, oldest first
        self._evicting = 0  # > 0 while an eviction runs (its removals are not commits)

    def precheck(self, tx: SignedTx, size: int, head: int) -> None:
        """Mempool.precheck's checks, split as rule 4 says (same refusals, one reordered: a
        pending id is DUPLICATE even if, by now, a rule would refuse it for another reason)."""
        if tx.tx_id in self._pending:
            raise TxRejected(Rejection.DUPLICATE, "transaction is already pending")
        if tx.tx_id in self._removed:  # rule 2, early: `add` would refuse it anyway
            raise TxRejected(Rejection.DUPLICATE, "transaction is already committed")
        self.rules.check_static(tx, size, head)
        with self._lock:
            self._check_room(tx, size)

    def add(self, tx: SignedTx, size: int, head: int, now_ms: int) -> None:
        with self._lock:
            if tx.tx_id in self._removed:  # rule 2
                raise TxRejected(Rejection.DUPLICATE, "transaction is already committed")
            super().add(tx, size, head, now_ms)

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
            if self._evicting:
                return super().remove(tx_ids)
            ids = list(tx_ids)
            removed = self._removed
            for tx_id in ids:
                removed[tx_id] = None
            while len(removed) > REMEMBER_REMOVED:
                removed.popitem(last=False)
            return super().remove(ids)

    def evict(self, tx_ids: Iterable[bytes], rejection: Rejection, message: str) -> int:
        with self._lock:
            self._evicting += 1
            try:
                return super().evict(tx_ids, rejection, message)
            finally:
                self._evicting -= 1

    def evict_sender(self, sender: bytes, rejection: Rejection, message: str) -> int:
        with self._lock:
            return super().evict_sender(sender, rejection, message)

    def evict_address(self, address: bytes, rejection: Rejection, message: str) -> int:
        with self._lock:
            return super().evict_address(address, rejection, message)

    def evict_expired(self, head: int) -> int:
        with self._lock:
            return super().evict_expired(head)

    def dropped_reason(self, tx_id: bytes) -> Dropped | None:
        with self._lock:
            return super().dropped_reason(tx_id)

    # (rule 1: `__contains__`, `__len__` and `size_bytes` are Mempool's own, without the lock)

    def oldest_arrival_ms(self) -> int | None:
        with self._lock:
            return super().oldest_arrival_ms()
