"""Genesis and start-up: the height-0 block, and what a chain reads back from its store on open.

Rules this module keeps:
1. The genesis block is a pure function of the `Genesis` document: no transactions, parent id =
   the genesis document's hash, timestamp = the document's, state = the admitted accounts written
   by the membership contract (`contracts.membership.genesis_writes`).
2. A store either is empty (the genesis block is then committed as block 0) or holds a chain whose
   block 0 names this genesis as its parent; another genesis is refused, never overwritten.
3. The accumulator frontier is rebuilt from the perfect subtrees the store keeps and must give the
   head header's `acc_size` and `acc_root`, or the store is refused.
"""

from __future__ import annotations

from gmchain.chain.executor import compute_state_hash
from gmchain.contracts.gov_state import GOV_NAMESPACE
from gmchain.contracts.gov_state import genesis_writes as gov_genesis_writes
from gmchain.contracts.membership import genesis_writes
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.merkle import EMPTY_ROOT, Frontier
from gmchain.ledger.store_api import BlockWrite, ChainStore
from gmchain.ledger.types import (
    ZERO_DIGEST,
    Block,
    BlockHeader,
    Digest,
    Genesis,
    Height,
    NodeId,
    QuorumCert,
    Round,
)

__all__ = ["ensure_genesis", "load_frontier", "make_genesis_block", "read_header"]


def make_genesis_block(genesis: Genesis) -> tuple[Block, dict[tuple[str, bytes], bytes | None]]:
    """Rule 1: the height-0 block and its state writes."""
    writes: dict[tuple[str, bytes], bytes | None] = {
        ("membership", k): v for k, v in genesis_writes(genesis.accounts).items()
    }
    writes.update({(GOV_NAMESPACE, k): v for k, v in gov_genesis_writes(genesis).items()})
    header = BlockHeader(
        chain_id=genesis.chain_id,
        epoch=0,
        height=Height(0),
        round=Round(0),
        parent_id=genesis.compute_hash(),
        timestamp_ms=genesis.timestamp_ms,
        proposer=NodeId(bytes(20)),
        tx_root=EMPTY_ROOT,
        tx_count=0,
        receipt_root=EMPTY_ROOT,
        acc_root=EMPTY_ROOT,
        acc_size=0,
        state_hash=compute_state_hash(ZERO_DIGEST, writes),
        next_validators_hash=EpochConfig.from_genesis(genesis).next_validators_commitment,
        justify=QuorumCert(block_id=ZERO_DIGEST, round=Round(0), height=Height(0)),
    )
    return Block(header=header, txs=()), writes


def ensure_genesis(store: ChainStore, genesis: Genesis) -> None:
    """Rule 2: commit the genesis block into an empty store, or check the stored one."""
    if store.head_height() is not None:
        if read_header(store, 0).parent_id != genesis.compute_hash():
            raise RuntimeError(
                "the data directory holds a chain with a different genesis; "
                "use another --data-dir or remove it"
            )
        return
    block, writes = make_genesis_block(genesis)
    store.commit_block(
        BlockWrite(
            height=0,
            block_hash=block.block_id,
            header_bytes=block.header.encode(),
            block_bytes=block.encode(),
            tx_ids=(),
            receipts=(),
            state_writes=writes,
            acc_leaves=(),
            acc_nodes={},
        )
    )


def read_header(store: ChainStore, height: int) -> BlockHeader:
    """The committed header at `height` (which must exist)."""
    raw = store.get_header_by_height(height)
    assert raw is not None, f"committed header {height} missing"
    return BlockHeader.decode(raw)


def load_frontier(store: ChainStore, head: BlockHeader) -> Frontier:
    """Rule 3: the frontier's peaks are perfect subtrees, which the store keeps: rebuild them."""
    size = head.acc_size
    peaks: list[Digest] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size & (1 << level):
            node = store.get_acc_node(level, start >> level)
            if node is None:
                raise RuntimeError(f"accumulator node ({level}, {start >> level}) missing")
            peaks.append(Digest(node))
            start += 1 << level
    frontier = Frontier(size=size, peaks=tuple(peaks))
    if frontier.size != head.acc_size or frontier.root() != head.acc_root:
        raise RuntimeError("accumulator frontier does not match the head header")
    return frontier
