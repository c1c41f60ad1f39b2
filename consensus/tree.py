"""The block tree: the committed root, the uncommitted blocks above it, a window of recent commits.

Rules this module keeps:
1. Every block in `blocks` descends from `root` through blocks in `blocks` (insert requires a known
   parent; commit prunes every block that does not descend from the new root).
2. Heights grow by exactly one from parent to child, rounds strictly.
3. `recent` holds the last `window` committed blocks (to answer BlockRequests); older ones are
   served by the node through App.get_committed_blocks.
4. Orphans (blocks whose parent is unknown) are bounded in number; the oldest are dropped first.
"""

from __future__ import annotations

from collections import OrderedDict

from gmchain.ledger.types import Block, BlockHeader, Digest

__all__ = ["BlockTree"]


class BlockTree:
    def __init__(self, root: BlockHeader, *, window: int, max_orphans: int) -> None:
        self.root = root  # invariant: the last committed header
        self.blocks: dict[Digest, Block] = {}  # invariant: rule 1
        self.recent: OrderedDict[Digest, Block] = OrderedDict()  # rule 3, oldest first
        self.window = window
        self.orphans: OrderedDict[Digest, Block] = OrderedDict()  # block id -> block, rule 4
        self.max_orphans = max_orphans
        self.nonempty = 0  # invariant: number of blocks in `blocks` with transactions

    def get_header(self, block_id: Digest) -> BlockHeader | None:
        if block_id == self.root.block_id:
            return self.root
        b = self.blocks.get(block_id)
        return None if b is None else b.header

    def get_block(self, block_id: Digest) -> Block | None:
        b = self.blocks.get(block_id)
        return b if b is not None else self.recent.get(block_id)

    def is_extendable(self, block_id: Digest) -> bool:
        """True iff a child of this block may enter the tree (the root or an uncommitted block)."""
        return block_id == self.root.block_id or block_id in self.blocks

    def is_valid_child(self, block: Block) -> bool:
        parent = self.get_header(block.header.parent_id)
        h = block.header
        return (
            parent is not None
            and h.height == parent.height + 1
            and h.round > parent.round
            and h.justify.block_id == parent.block_id
            and h.justify.height == parent.height
        )

    def insert(self, block: Block) -> None:
        """Insert a checked block (is_valid_child and App.validate_block already passed)."""
        bid = block.block_id
        if bid in self.blocks:
            return
        self.blocks[bid] = block
        if block.header.tx_count:
            self.nonempty += 1
        self.orphans.pop(bid, None)

    def add_orphan(self, block: Block) -> None:
        if block.header.height <= self.root.height or block.block_id in self.blocks:
            return
        self.orphans[block.block_id] = block
        while len(self.orphans) > self.max_orphans:
            self.orphans.popitem(last=False)

    def take_orphan_children(self, parent_id: Digest) -> list[Block]:
        kids = [b for b in self.orphans.values() if b.header.parent_id == parent_id]
        for b in kids:
            del self.orphans[b.block_id]
        return kids

    def get_chain_to(self, tip_id: Digest) -> list[Block] | None:
        """The uncommitted blocks from just above the root up to `tip_id`, oldest first."""
        chain: list[Block] = []
        cur = tip_id
        while cur != self.root.block_id:
            b = self.blocks.get(cur)
            if b is None:
                return None
            chain.append(b)
            cur = b.header.parent_id
        chain.reverse()
        return chain

    def get_ancestors(self, block_id: Digest, count: int) -> list[Block]:
        """`block_id` and up to count-1 ancestors, newest first, from memory."""
        out: list[Block] = []
        cur = block_id
        while len(out) < count:
            b = self.get_block(cur)
            if b is None:
                break
            out.append(b)
            cur = b.header.parent_id
        return out

    def commit(self, chain: list[Block]) -> list[Digest]:
        """Make chain[-1] the new root; return the ids of pruned (abandoned) blocks."""
        for b in chain:
            self.blocks.pop(b.block_id, None)
            if b.header.tx_count:
                self.nonempty -= 1
            self.recent[b.block_id] = b
        while len(self.recent) > self.window:
            self.recent.popitem(last=False)
        self.root = chain[-1].header
        return self.prune()

    def adopt_run(self, run: list[Block]) -> list[Digest]:
        """Committed sync: `run` (oldest first) links to the root and is proven committed."""
        chain = self.get_chain_to(run[-1].block_id)
        if chain is not None and [b.block_id for b in chain] == [b.block_id for b in run]:
            return self.commit(chain)
        pruned: list[Digest] = []
        for b in run:
            pruned += self.set_root(b)
        return pruned

    def set_root(self, block: Block) -> list[Digest]:
        """Adopt a committed block proven by a commit proof (committed sync); prune the rest."""
        if block.block_id in self.blocks:
            chain = self.get_chain_to(block.block_id)
            if chain is not None:
                return self.commit(chain)
        self.recent[block.block_id] = block
        while len(self.recent) > self.window:
            self.recent.popitem(last=False)
        self.root = block.header
        return self.prune()

    def prune(self) -> list[Digest]:
        keep = {self.root.block_id}
        pruned: list[Digest] = []
        for b in sorted(self.blocks.values(), key=lambda x: x.header.height):
            if b.header.parent_id in keep and b.header.height > self.root.height:
                keep.add(b.block_id)
            else:
                pruned.append(b.block_id)
        for bid in pruned:
            b = self.blocks.pop(bid)
            if b.header.tx_count:
                self.nonempty -= 1
        for oid in [o for o, b in self.orphans.items() if b.header.height <= self.root.height]:
            del self.orphans[oid]
        return pruned
