"""Re-check what is served from a chain's own store: a damaged record is an error, never an answer.

Rules this module keeps (issue 10, fault 11: a flipped byte in an .ldb file once served a block
whose hash no longer matched its child's `parent_id`):
1. LevelDB checksums are verified on these reads (ledger/store.py rule 7); on top of that, what is
   cheap to re-hash is re-hashed before it is served: a header's id (one SM3 over ~300 bytes)
   against the block hash recorded at commit, its height against the height asked for, and a
   block's transactions against its header's `tx_root` (one SM3 per transaction, and the block is
   decoded anyway; the node caches decoded blocks).
2. A mismatch raises `StoreCorrupt` naming the height and the recovery; the caller answers with an
   error (and the node stops if the error escapes into consensus, where it cannot be handled).
"""

from __future__ import annotations

from gmchain.ledger.merkle import EMPTY_ROOT, compute_root
from gmchain.ledger.store_api import ChainStore
from gmchain.ledger.store_errors import RECOVERY_HINT, StoreCorrupt
from gmchain.ledger.types import Block, BlockHeader, SignedTx

__all__ = ["check_served_block", "check_served_header", "check_served_tx"]


def _damaged(height: int, what: str) -> StoreCorrupt:
    return StoreCorrupt(
        f"ledger store is damaged: block {height} read back {what}; refusing to serve it: "
        f"{RECOVERY_HINT}"
    )


def check_served_header(store: ChainStore, height: int, header: BlockHeader) -> None:
    """Rule 1: the header at `height` still hashes to the block hash recorded at commit."""
    if header.height != height:
        raise _damaged(height, f"with height {header.height}")
    if store.get_block_hash(height) != header.block_id:
        raise _damaged(height, "with a header that no longer hashes to its recorded block hash")


def check_served_block(store: ChainStore, height: int, block: Block) -> None:
    """Rule 1: header as in `check_served_header`, and the transactions match its `tx_root`."""
    check_served_header(store, height, block.header)
    ids = [t.tx_id for t in block.txs]
    if (compute_root(ids) if ids else EMPTY_ROOT) != block.header.tx_root:
        raise _damaged(height, "with transactions that no longer match its tx_root")


def check_served_tx(height: int, tx_id: bytes, tx: SignedTx) -> None:
    """A transaction cut from a stored block is the one its index entry names."""
    if tx.tx_id != tx_id:
        raise _damaged(height, f"without transaction {tx_id.hex()} at its recorded index")
