"""The transaction pool: its own checks (duplicates, capacity, quotas), fair packing order.

Rules this module keeps:
1. The transaction rules that need no state but the head (chain/txrules.py R1, R3-R6) run in
   `precheck`, then the pool's own (P: already pending, capacity, quota); `add` re-runs the
   ones that can change while admission awaits (R5 against the new head, P). Every refusal is a
   `TxRejected` with its `Rejection`. Signatures are not the pool's business: admission verifies
   them (once per node: chain/txrules.py SignatureCache) before `add`.
2. A full pool refuses with `TxRejected(POOL_FULL)` — it never drops an admitted transaction
   silently (FISCO BCOS #2124). Admitted transactions leave when committed, or when they can no
   longer be valid (expired, sender's account removed: `evict*`); then the reason is recorded
   (`dropped_reason`, the last `dropped_memory` of them) and `on_evicted` is told, so the
   submitter's wait ends with that reason instead of a timeout.
3. One sender cannot take more than `per_sender_max` slots (FISCO BCOS #4028).
4. Packing order is round-robin over senders (ordered by their oldest pending transaction),
   arrival order within one sender: no sender can starve another by fee, key order or volume.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from gmchain.chain.txrules import Rejection, TxRejected, TxRules
from gmchain.contracts.keys import address_of
from gmchain.ledger.types import SignedTx

__all__ = ["Dropped", "Mempool", "MempoolConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolConfig:
    max_txs: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    per_sender_max: int = 20_000
    dropped_memory: int = 100_000  # reasons of txs that left without committing, kept for waiters

    def validate(self) -> None:
        for name in ("max_txs", "max_bytes", "per_sender_max", "dropped_memory"):
            if getattr(self, name) <= 0:
                raise ValueError(f"mempool.{name} must be positive")


@dataclass(slots=True)
class _Entry:
    tx: SignedTx
    size: int
    arrived_ms: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """Why a transaction left the pool without committing (it can never commit)."""

    rejection: Rejection
    message: str


class Mempool:
    def __init__(self, *, config: MempoolConfig, rules: TxRules) -> None:
        config.validate()
        self.config = config
        self.rules = rules
        self._pending: OrderedDict[bytes, _Entry] = OrderedDict()  # arrival order
        self._bytes = 0
        # sender -> its pending tx ids in arrival order; senders in the order they last went
        # from no pending tx to one (so by their oldest pending tx). No empty dict is kept.
        self._by_sender: dict[bytes, dict[bytes, None]] = {}
        self._sender_at: dict[bytes, bytes] = {}  # address -> sender key, for every pool sender
        self._dropped: OrderedDict[bytes, Dropped] = OrderedDict()  # LRU, dropped_memory long
        # Called with the ids of txs that left without committing (set by NodeService).
        self.on_evicted: Callable[[list[bytes]], None] | None = None
        # (expiry, tx id) of every admitted tx; entries of txs that left are skipped lazily.
        self._expiries: list[tuple[int, bytes]] = []

    # --- admission ------------------------------------------------------------------------------

    def precheck(self, tx: SignedTx, size: int, head: int) -> None:
        """R1, R3-R6 and the pool's checks (rule 1); changes nothing. Raises TxRejected."""
        self.rules.check_static(tx, size, head)
        self._check_room(tx, size)

    def add(self, tx: SignedTx, size: int, head: int, now_ms: int) -> None:
        """Insert a transaction that passed `precheck` and whose signature verified. Re-runs
        the checks that can change meanwhile (rule 1: R5 on the new head, the pool's)."""
        self.rules.check_window(tx, head)
        self._check_room(tx, size)
        self._pending[tx.tx_id] = _Entry(tx, size, now_ms)
        heapq.heappush(self._expiries, (tx.body.expiry, tx.tx_id))
        self._bytes += size
        sender = tx.body.sender
        own = self._by_sender.get(sender)
        if own is None:
            own = self._by_sender[sender] = {}
            self._sender_at[address_of(sender)] = sender
        own[tx.tx_id] = None
        self._dropped.pop(tx.tx_id, None)

    def _check_room(self, tx: SignedTx, size: int) -> None:
        """P: not pending yet, room in the pool, and in its sender's quota (rule 3)."""
        if tx.tx_id in self._pending:
            raise TxRejected(Rejection.DUPLICATE, "transaction is already pending")
        if len(self._pending) >= self.config.max_txs or (
            self._bytes + size > self.config.max_bytes
        ):
            raise TxRejected(
                Rejection.POOL_FULL,
                f"transaction pool is full ({len(self._pending)} txs); retry later",
            )
        if len(self._by_sender.get(tx.body.sender, ())) >= self.config.per_sender_max:
            raise TxRejected(
                Rejection.SENDER_QUOTA,
                f"sender already has {self.config.per_sender_max} pending transactions",
            )

    # --- packing and removal --------------------------------------------------------------------

    def iter_fair(self) -> Iterator[tuple[SignedTx, int]]:
        """(tx, size) of every pending tx in packing order (rule 4): one round takes each
        sender's next tx. The pool must not change while the iterator is in use."""
        senders: Iterator[dict[bytes, None]] = iter(self._by_sender.values())
        rounds: list[Iterator[bytes]] = []
        first = True
        while first or rounds:
            # The first round walks the senders lazily: a caller that stops early never pays
            # for every sender of a large pool.
            source: Iterable[Iterator[bytes]] = (iter(q) for q in senders) if first else rounds
            first = False
            alive: list[Iterator[bytes]] = []
            for it in source:
                tx_id = next(it, None)
                if tx_id is None:
                    continue
                alive.append(it)
                entry = self._pending[tx_id]
                yield entry.tx, entry.size
            rounds = alive

    def take(
        self, max_count: int, max_bytes: int, exclude: Iterable[frozenset[bytes]]
    ) -> list[SignedTx]:
        """Up to `max_count` pending txs in packing order (rule 4), skipping ids in any
        `exclude` set (transactions already in uncommitted ancestor blocks; such a tx still
        counts as its sender's turn in its round). Does not remove them."""
        excl = list(exclude)
        out: list[SignedTx] = []
        total = 0
        for tx, size in self.iter_fair():
            if len(out) >= max_count:
                break
            if any(tx.tx_id in s for s in excl):
                continue
            if total + size > max_bytes and out:
                break
            out.append(tx)
            total += size
        return out

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        """Take txs out (committed ones, or as part of an eviction). Unknown ids are ignored."""
        n = 0
        for tx_id in tx_ids:
            entry = self._pending.pop(tx_id, None)
            if entry is None:
                continue
            n += 1
            self._bytes -= entry.size
            sender = entry.tx.body.sender
            own = self._by_sender[sender]
            del own[tx_id]
            if not own:
                del self._by_sender[sender]
                self._sender_at.pop(address_of(sender), None)
        return n

    def evict(self, tx_ids: Iterable[bytes], rejection: Rejection, message: str) -> int:
        """Remove txs that can never commit, recording why (rule 2)."""
        gone = [t for t in tx_ids if t in self._pending]
        self.remove(gone)
        why = Dropped(rejection, message)
        for t in gone:
            self._dropped[t] = why
            self._dropped.move_to_end(t)
        while len(self._dropped) > self.config.dropped_memory:
            self._dropped.popitem(last=False)
        if gone and self.on_evicted is not None:
            self.on_evicted(gone)
        return len(gone)

    def evict_sender(self, sender: bytes, rejection: Rejection, message: str) -> int:
        """Evict every pending tx of `sender` (e.g. its account was removed)."""
        return self.evict(list(self._by_sender.get(sender, ())), rejection, message)

    def evict_address(self, address: bytes, rejection: Rejection, message: str) -> int:
        """Evict every pending tx of the sender whose account address is `address`."""
        sender = self._sender_at.get(address)
        return 0 if sender is None else self.evict_sender(sender, rejection, message)

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
        return self.evict(
            dead,
            Rejection.EXPIRED,
            f"expired unpacked: its expiry height was reached (head {head}); "
            "submit it again with a new nonce and a later expiry",
        )

    def drop(self, txs: Sequence[SignedTx]) -> int:
        return self.remove(t.tx_id for t in txs)

    def dropped_reason(self, tx_id: bytes) -> Dropped | None:
        """Why `tx_id` left this pool without committing, if it did (and is still remembered)."""
        return self._dropped.get(tx_id)

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
