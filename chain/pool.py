"""What the chain library needs of a transaction pool: the `TxPool` protocol.

The chain draws block candidates from a pool and tells it what left; it never owns one. The node
gives it its mempool through node/chainpool.py (which names each reason as the RPC error code of
the same name), the simulator a small in-memory pool (consensus/sim/pool.py).

Rules a `TxPool` keeps (the chain relies on them):
1. `iter_fair` yields (tx, encoded size) in the pool's packing order; the chain may stop early.
2. `is_verified(tx_id)` is True only if this tx's signature was verified by this process; the
   chain calls `mark_verified` after it verified one itself (a signature is verified once).
3. `evict*` removes transactions that can never commit, recording `reason` (a `TxRejected`
   reason such as "EXPIRED"; chain/packer.py lists those it uses) for whoever waits on them.
4. `remove` takes committed ids out (no reason is recorded: they committed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from gmchain.ledger.types import SignedTx

__all__ = ["TxPool"]


class TxPool(Protocol):
    def __len__(self) -> int: ...

    def __contains__(self, tx_id: object) -> bool: ...

    def oldest_arrival_ms(self) -> int | None:
        """Arrival time of the oldest pending tx (None: the pool is empty)."""
        ...

    def iter_fair(self) -> Iterator[tuple[SignedTx, int]]: ...

    def is_verified(self, tx_id: bytes) -> bool: ...

    def mark_verified(self, tx_id: bytes) -> None: ...

    def remove(self, tx_ids: Iterable[bytes]) -> object:
        """Committed: these ids leave the pool."""
        ...

    def evict(self, tx_ids: Iterable[bytes], reason: str, message: str) -> object:
        """These txs can never commit (rule 3)."""
        ...

    def evict_sender(self, sender: bytes, reason: str, message: str) -> object:
        """Every pending tx signed by the key `sender` can never commit (rule 3)."""
        ...

    def evict_address(self, address: bytes, reason: str, message: str) -> object:
        """Every pending tx of the account `address` can never commit (rule 3)."""
        ...

    def evict_expired(self, head_height: int) -> object:
        """Evict what expired at committed height `head_height` (reason "EXPIRED")."""
        ...
