"""Block validity checks that need no execution: header shape, the byte bound, signatures.

Rules this module keeps (docs/protocol.md, block validity):
1. A block's header names this chain, sits at parent height + 1 on the parent's id, has a
   timestamp above its parent's and at most `MAX_CLOCK_DRIFT_MS` ahead of the validator's `now_ms`
   (the now of the consensus event being stepped: never the wall clock read here), and carries at
   most `max_block_txs` transactions.
2. A block is valid only if every carrier of it fits one peer message: its transactions encode to
   at most `MAX_BLOCK_TX_BYTES`.
3. Every transaction's signature verifies under its sender key over its id (the body's signing
   root): chain/txrules.py R4 and R9, `TxRules.check_signatures` (verified once per node).
Each check returns None or the reason the block is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from gmchain.consensus.messages import MAX_BLOCK_TX_BYTES
from gmchain.ledger.types import BlockHeader, SignedTx

__all__ = [
    "MAX_CLOCK_DRIFT_MS",
    "check_block_bytes",
    "check_header_shape",
]

MAX_CLOCK_DRIFT_MS = 10_000


def check_header_shape(
    h: BlockHeader, parent: BlockHeader, *, chain_id: str, now_ms: int, max_block_txs: int
) -> str | None:
    """Rule 1."""
    if h.chain_id != chain_id:
        return "wrong chain id"
    if h.height != parent.height + 1 or h.parent_id != parent.block_id:
        return "height/parent mismatch"
    if h.timestamp_ms <= parent.timestamp_ms:
        return "timestamp does not increase"
    if h.timestamp_ms > now_ms + MAX_CLOCK_DRIFT_MS:
        return "timestamp too far in the future"
    if h.tx_count > max_block_txs:
        return "too many transactions"
    return None


def check_block_bytes(txs: Sequence[SignedTx]) -> str | None:
    """Rule 2 (fault 1): an honest leader never builds more than MAX_BLOCK_TX_BYTES of
    transactions, and a Byzantine leader's larger block, once committed, could not be served to a
    syncing peer."""
    if sum(len(t.encode()) for t in txs) > MAX_BLOCK_TX_BYTES:
        return f"transactions exceed {MAX_BLOCK_TX_BYTES} bytes"
    return None
