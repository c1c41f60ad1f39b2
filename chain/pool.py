"""What the chain library needs of a transaction pool: the `TxPool` protocol.

The chain draws block candidates from a pool and tells it what left; it never owns one. The node
gives it its mempool through node/chainpool.py (which names each reason as the RPC error code of
the same name), the simulator a small in-memory pool (consensus/sim/pool.py).

Rules a `TxPool` keeps (the chain relies on them):
1. `iter_fair` yields (tx, encoded size) in the pool's packing order; the chain may stop early.
2. `evict*` removes transactions that can never commit, recording `reason` (a
   chain/txrules.py `Rejection` in `NEVER_VALID`) for whoever waits on them.
3. `remove` takes committed ids out (no reason is recorded: they committed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from gmchain.chain.txrules import Rejection
from gmchain.ledger.types import SignedTx

__all__ = ["TxPool"]


class TxPool(Protocol):
    def __len__(self) -> int: ...

    def __contains__(self, tx_id: object) -> bool: ...

    def oldest_arrival_ms(self) -> int | None:
        """Arrival time of the oldest pending tx (None: the pool is empty)."""
        ...

    def iter_fair(self) -> Iterator[tuple[SignedTx, int]]: ...

    def remove(self, tx_ids: Iterable[bytes]) -> object:
        """Committed: these ids leave the pool."""
        ...

    def evict(self, tx_ids: Iterable[bytes], reason: Rejection, message: str) -> object:
        """These txs can never commit (rule 2)."""
        ...

    def evict_sender(self, sender: bytes, reason: Rejection, message: str) -> object:
        """Every pending tx signed by the key `sender` can never commit (rule 2)."""
        ...

    def evict_address(self, address: bytes, reason: Rejection, message: str) -> object:
        """Every pending tx of the account `address` can never commit (rule 2)."""
        ...

    def evict_expired(self, head_height: int) -> object:
        """Evict what expired at committed height `head_height` (reason EXPIRED)."""
        ...
