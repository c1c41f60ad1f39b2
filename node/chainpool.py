"""The node's mempool as the chain library's `chain.pool.TxPool`.

Rule: the chain names why a transaction can never commit by its `TxRejected` reason; each reason
it uses (chain/packer.py `NEVER_VALID`) is the name of the admission `ErrorCode` a waiter on that
transaction is answered with, so the mapping is `ErrorCode[reason]`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gmchain.ledger.types import SignedTx
from gmchain.node.api import ErrorCode
from gmchain.node.mempool import Mempool

__all__ = ["MempoolPool"]


class MempoolPool:
    """Adapts `Mempool` (which records `ErrorCode`s) to `TxPool` (which names reasons)."""

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

    def is_verified(self, tx_id: bytes) -> bool:
        return self.mempool.is_verified(tx_id)

    def mark_verified(self, tx_id: bytes) -> None:
        self.mempool.mark_verified(tx_id)

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        return self.mempool.remove(tx_ids)

    def evict(self, tx_ids: Iterable[bytes], reason: str, message: str) -> int:
        return self.mempool.evict(tx_ids, ErrorCode[reason], message)

    def evict_sender(self, sender: bytes, reason: str, message: str) -> int:
        return self.mempool.evict_sender(sender, ErrorCode[reason], message)

    def evict_address(self, address: bytes, reason: str, message: str) -> int:
        return self.mempool.evict_address(address, ErrorCode[reason], message)

    def evict_expired(self, head_height: int) -> int:
        return self.mempool.evict_expired(head_height)
