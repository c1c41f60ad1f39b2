"""Choosing a block's transactions from the pool, and evicting those that can never commit.

Rules this module keeps:
1. Candidates are examined in the pool's fair order (node/mempool.py rule 4); only those that
   pass the block rules on the parent are packed, up to a target count and `max_block_bytes` (the
   node's, and the block's epoch's `block_max_bytes`: chain/blockrules.py rule 2); transactions
   already in an uncommitted ancestor are skipped.
2. The walk stops after skipping `pack_scan_max` candidates that fail the block rules, so a pool
   full of them cannot make a build unbounded.
3. A candidate that fails the block rules against the *committed* head too can never be included
   (its sender's account is gone, it expired, it names another chain, it committed already): it
   leaves the pool with that reason — and with it every tx of a removed sender. One that fails
   only on a speculative parent is skipped this time. Evicting happens after the walk (it changes
   the pool). A candidate above the block's epoch's `tx_max_bytes` or `block_max_bytes` leaves the
   pool too (TOO_LARGE: a governance change lowered it after the transaction was admitted).
"""

from __future__ import annotations

from collections.abc import Callable

from gmchain.chain.blockrules import WIRE_LIMITS, BlockLimits
from gmchain.chain.executor import ExecResult, Executor
from gmchain.chain.pool import TxPool
from gmchain.chain.txrules import NEVER_VALID, Rejection, TxRejected
from gmchain.ledger.types import BlockHeader, SignedTx

__all__ = ["REVOKED", "BlockPacker"]

REVOKED = (
    "left the pool without committing: its sender is no longer an admitted account "
    "(revoked after the transaction was admitted); it can never commit"
)


class BlockPacker:
    def __init__(
        self,
        *,
        executor: Executor,
        pool: TxPool,
        committed_height: Callable[[], int],
        max_block_bytes: int,
        pack_scan_max: int,
    ) -> None:
        self.executor = executor
        self.pool = pool
        self.committed_height = committed_height
        self.max_block_bytes = max_block_bytes
        self.pack_scan_max = pack_scan_max

    def pick(
        self,
        parent: BlockHeader,
        parent_res: ExecResult | None,
        exclude: list[frozenset[bytes]],
        target: int,
        limits: BlockLimits = WIRE_LIMITS,
    ) -> list[SignedTx]:
        """Up to `target` pool txs that pass the block rules on `parent` (rules 1-3), within the
        block's epoch's `limits`."""
        height = parent.height + 1
        max_bytes = min(self.max_block_bytes, limits.max_bytes)
        out: list[SignedTx] = []
        seen: set[bytes] = set()
        dead: list[SignedTx] = []
        too_large: list[bytes] = []
        tx_limit = min(limits.max_tx_bytes, limits.max_bytes)
        skip_senders: set[bytes] = set()
        total = skipped = 0
        for tx, size in self.pool.iter_fair():
            if len(out) >= target or skipped >= self.pack_scan_max:
                break
            if any(tx.tx_id in s for s in exclude):
                continue
            if tx.body.sender in skip_senders:
                skipped += 1
                continue
            if size > tx_limit:
                too_large.append(tx.tx_id)
                skipped += 1
                continue
            try:
                self.executor.check_tx(tx, height, parent_res, seen)
            except TxRejected as exc:
                if exc.rejection is Rejection.UNKNOWN_SENDER:
                    skip_senders.add(tx.body.sender)  # its other txs fail the same way
                dead.append(tx)
                skipped += 1
                continue
            if total + size > max_bytes and out:
                break
            out.append(tx)
            seen.add(tx.tx_id)
            total += size
        for tx in dead:  # after the walk: evicting changes the pool
            self.evict_if_never_valid(tx)
        if too_large:
            self.pool.evict(
                too_large,
                Rejection.TOO_LARGE,
                f"left the pool without committing: larger than this epoch's chain parameters "
                f"allow ({tx_limit} bytes)",
            )
        return out

    def evict_if_never_valid(self, tx: SignedTx) -> None:
        """Evict `tx` if it fails the block rules on the committed head (rule 3)."""
        if tx.tx_id not in self.pool:
            return
        try:
            self.executor.check_tx(tx, self.committed_height() + 1, None)
        except TxRejected as exc:
            why = exc.rejection  # (chain/txrules.py NEVER_VALID: broken here, broken for good)
            if why not in NEVER_VALID:
                return
            if why is Rejection.UNKNOWN_SENDER:
                self.pool.evict_sender(tx.body.sender, why, REVOKED)
            else:
                self.pool.evict([tx.tx_id], why, f"left the pool without committing: {exc}")
