"""Block validity checks that need no execution: header shape, the byte bound, signatures.

Rules this module keeps (docs/protocol.md, block validity):
1. A block's header names this chain, sits at parent height + 1 on the parent's id, has a
   timestamp above its parent's and at most `MAX_CLOCK_DRIFT_MS` ahead of the validator's `now_ms`
   (the now of the consensus event being stepped: never the wall clock read here), and carries at
   most `max_block_txs` transactions: its epoch's `block_max_txs` (EPOCHS.md E11), never more
   than one peer message's array holds (`MAX_MESSAGE_ARRAY`).
2. A block is valid only if every carrier of it fits one peer message: its transactions encode to
   at most `MAX_BLOCK_TX_BYTES`; and only if they respect its epoch's chain parameters (E11):
   together at most `block_max_bytes`, each at most `tx_max_bytes` (txrules R1 as a block rule).
   `epoch_limits` gives the bounds of an epoch's configuration, the wire's caps applied.
3. Every transaction's signature verifies under its sender key over its id (the body's signing
   root): chain/txrules.py R4 and R9, `TxRules.check_signatures` (verified once per node).
Each check returns None or the reason the block is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gmchain.consensus.messages import MAX_BLOCK_TX_BYTES, MAX_MESSAGE_ARRAY
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.types import MAX_TX_BYTES, BlockHeader, SignedTx

__all__ = [
    "MAX_CLOCK_DRIFT_MS",
    "BlockLimits",
    "check_block_bytes",
    "check_header_shape",
    "epoch_limits",
]

MAX_CLOCK_DRIFT_MS = 10_000


@dataclass(frozen=True, slots=True)
class BlockLimits:
    """The bounds a block of one epoch must respect (rules 1, 2)."""

    max_txs: int
    max_bytes: int
    max_tx_bytes: int


WIRE_LIMITS = BlockLimits(MAX_MESSAGE_ARRAY, MAX_BLOCK_TX_BYTES, MAX_TX_BYTES)


def epoch_limits(config: EpochConfig) -> BlockLimits:
    """Rules 1-2: an epoch's block_max_txs, block_max_bytes and tx_max_bytes, each capped by
    what the wire carries."""
    return BlockLimits(
        max_txs=min(MAX_MESSAGE_ARRAY, config.param("block_max_txs")),
        max_bytes=min(MAX_BLOCK_TX_BYTES, config.param("block_max_bytes")),
        max_tx_bytes=min(MAX_TX_BYTES, config.param("tx_max_bytes")),
    )


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


def check_block_bytes(txs: Sequence[SignedTx], limits: BlockLimits = WIRE_LIMITS) -> str | None:
    """Rule 2 (fault 1): an honest leader never builds more than MAX_BLOCK_TX_BYTES of
    transactions, and a Byzantine leader's larger block, once committed, could not be served to a
    syncing peer. With an epoch's `limits` (E11), its block_max_bytes and tx_max_bytes too."""
    total = 0
    for t in txs:
        size = len(t.encode())
        if size > limits.max_tx_bytes:
            return f"a transaction of {size} bytes exceeds this epoch's {limits.max_tx_bytes}"
        total += size
    if total > min(limits.max_bytes, MAX_BLOCK_TX_BYTES):
        return f"transactions exceed {min(limits.max_bytes, MAX_BLOCK_TX_BYTES)} bytes"
    return None
