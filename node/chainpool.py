"""The node's mempool as the chain library's `chain.pool.TxPool`.

Rule: the chain names why a transaction can never commit by a chain/txrules.py `Rejection`; the
mempool records it, and a waiter on that transaction is answered with its code (node/api.py
REJECTION_CODES).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gmchain.chain.txrules import Rejection
from gmchain.ledger.types import SignedTx
from gmchain.node.mempool import Mempool

__all__ = ["MempoolPool"]


class MempoolPool:
    """`Mempool` as a `TxPool`."""

    __slots__ = ("mempool",)

    def __init__(self, mempool: Mempool) -> None:
        self.mempool = mempool

    def __len__(self) -> int:
        return len(self.mempool)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self.mempool

    def oldest_arrival_ms(self) -> int | None:
        return self.mempool.oldest_arrival_ms()

    def iter_fair(self) -> Iterator[tuple[SignedTx, int]]:
        return self.mempool.iter_fair()

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        return self.mempool.remove(tx_ids)

    def evict(self, tx_ids: Iterable[bytes], reason: Rejection, message: str) -> int:
        return self.mempool.evict(tx_ids, reason, message)

    def evict_sender(self, sender: bytes, reason: Rejection, message: str) -> int:
        return self.mempool.evict_sender(sender, reason, message)

    def evict_address(self, address: bytes, reason: Rejection, message: str) -> int:
        return self.mempool.evict_address(address, reason, message)

    def evict_expired(self, head_height: int) -> int:
        return self.mempool.evict_expired(head_height)
