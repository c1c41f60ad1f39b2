"""The transaction pool: admission checks, verify-once cache, quotas, fair packing order.

Rules this module keeps:
1. Cheap checks first (size, chain, replay window, duplicates, capacity, quota), the signature
   last; a signature is verified at most once per node (`verified` cache by tx id), and the
   cache is shared with proposal validation.
2. A full pool refuses with `MempoolError(POOL_FULL)` — it never drops an admitted transaction
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

from gmchain.contracts.keys import address_of
from gmchain.ledger.types import MAX_TX_BYTES, SignedTx
from gmchain.node.api import ErrorCode

__all__ = ["Dropped", "Mempool", "MempoolConfig", "MempoolError"]


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
    dropped_memory: int = 100_000  # reasons of txs that left without committing, kept for waiters

    def validate(self) -> None:
        for name in ("max_txs", "max_bytes", "per_sender_max", "verified_cache", "dropped_memory"):
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

    code: ErrorCode
    message: str


class Mempool:
    def __init__(self, *, config: MempoolConfig, chain_id: str, replay_window: int) -> None:
        config.validate()
        self.config = config
        self.chain_id = chain_id
        self.replay_window = replay_window
        self._pending: OrderedDict[bytes, _Entry] = OrderedDict()  # arrival order
        self._bytes = 0
        # sender -> its pending tx ids in arrival order; senders in the order they last went
        # from no pending tx to one (so by their oldest pending tx). No empty dict is kept.
        self._by_sender: dict[bytes, dict[bytes, None]] = {}
        self._sender_at: dict[bytes, bytes] = {}  # address -> sender key, for every pool sender
        self._dropped: OrderedDict[bytes, Dropped] = OrderedDict()  # LRU, dropped_memory long
        # Called with the ids of txs that left without committing (set by NodeService).
        self.on_evicted: Callable[[list[bytes]], None] | None = None
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
        if len(self._by_sender.get(body.sender, ())) >= self.config.per_sender_max:
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
        sender = tx.body.sender
        own = self._by_sender.get(sender)
        if own is None:
            own = self._by_sender[sender] = {}
            self._sender_at[address_of(sender)] = sender
        own[tx.tx_id] = None
        self._dropped.pop(tx.tx_id, None)

    # --- verify-once cache ----------------------------------------------------------------------

    def is_verified(self, tx_id: bytes) -> bool:
        return tx_id in self._verified

    def mark_verified(self, tx_id: bytes) -> None:
        self._verified[tx_id] = None
        self._verified.move_to_end(tx_id)
        while len(self._verified) > self.config.verified_cache:
            self._verified.popitem(last=False)

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

    def evict(self, tx_ids: Iterable[bytes], code: ErrorCode, message: str) -> int:
        """Remove txs that can never commit, recording why (rule 2)."""
        gone = [t for t in tx_ids if t in self._pending]
        self.remove(gone)
        why = Dropped(code, message)
        for t in gone:
            self._dropped[t] = why
            self._dropped.move_to_end(t)
        while len(self._dropped) > self.config.dropped_memory:
            self._dropped.popitem(last=False)
        if gone and self.on_evicted is not None:
            self.on_evicted(gone)
        return len(gone)

    def evict_sender(self, sender: bytes, code: ErrorCode, message: str) -> int:
        """Evict every pending tx of `sender` (e.g. its account was removed)."""
        return self.evict(list(self._by_sender.get(sender, ())), code, message)

    def evict_address(self, address: bytes, code: ErrorCode, message: str) -> int:
        """Evict every pending tx of the sender whose account address is `address`."""
        sender = self._sender_at.get(address)
        return 0 if sender is None else self.evict_sender(sender, code, message)

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
            ErrorCode.EXPIRED,
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
