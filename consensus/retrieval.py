"""Block retrieval and committed sync (rule L8 of consensus/replica.py).

Rules this module keeps (docs/consensus.md, L8):
1. A block referenced by a verified QC that we lack is requested from the peer that referenced
   it, then round-robin over the validators on retry; at most 16 requests are in flight.
2. A `BlockResponse` is used only if solicited or vouched for by a verified QC, if its blocks form
   one parent chain ending at the requested id, and if every block's justify QC verifies.
3. A gap older than the peers' in-memory window falls back to `SyncRequest`; every synced block is
   applied only after its `CommitProof` verifies and its body passes `App.validate_block` on its
   parent (a proof certifies the header, not the transactions beside it), so an unsolicited or
   forged `SyncResponse` is harmless. (The replica applies synced blocks: that is a commit.)
4. A certified block still missing with nothing in flight is re-requested every few retry periods.
5. A proposal whose parent we lack waits in `PendingProposals` (bounded, oldest dropped first, L7)
   until its parent is inserted or the committed root passes its height.
`Retrieval` decides what to ask whom, which answers to use, and answers peers' requests; it reads
the block tree but never changes it (the replica inserts what it returns) and sends through the
function it is given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from gmchain.consensus.certs import CertChecker
from gmchain.consensus.messages import (
    BlockRequest,
    BlockResponse,
    CommitProof,
    ConsensusMessage,
    SyncRequest,
    SyncResponse,
)
from gmchain.consensus.tree import BlockTree
from gmchain.consensus.types import ConsensusConfig, ValidatorSet
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    Height,
    NodeId,
    Proposal,
    QuorumCert,
)

__all__ = ["MAX_INFLIGHT_BLOCKS", "PendingProposals", "Retrieval", "select_proven_runs"]

MAX_INFLIGHT_BLOCKS = 16  # rule 1


class Retrieval:
    def __init__(
        self,
        *,
        config: ConsensusConfig,
        chain_id: str,
        validators: ValidatorSet,
        node_id: NodeId | None,
        certs: CertChecker,
        tree: BlockTree,
        read_committed: Callable[[int, int], Sequence[tuple[Block, CommitProof]]],
        send: Callable[[NodeId, ConsensusMessage], None],
    ) -> None:
        self._cfg = config
        self._chain_id = chain_id
        self._validators = validators
        self._node_id = node_id
        self._certs = certs
        self._tree = tree  # read only: the replica owns it
        self._read_committed = read_committed  # App.get_committed_blocks
        self._send = send
        # Requested block id -> when to re-request it; at most MAX_INFLIGHT_BLOCKS entries from
        # fetch_missing (rule 1). An id leaves when its block is inserted or a response is used.
        self.inflight: dict[Digest, int] = {}
        # When the outstanding SyncRequest may be re-sent; None = none outstanding (one at a time).
        self.sync_inflight_ms: int | None = None
        # The earliest time maybe_repair may re-request a missing certified block (rule 4).
        self.repair_at_ms = 0

    # --- asking ---------------------------------------------------------------------------------

    def pick_peer(self, salt: bytes, now: int) -> NodeId:
        """Round robin over the other validators, moving on every retry period (rule 1)."""
        ids = [i for i in self._validators.node_ids if i != self._node_id]
        if not ids:
            return self._validators.node_ids[0]
        return ids[(salt[0] + now // max(1, self._cfg.request_retry_ms)) % len(ids)]

    def fetch_missing(self, qc: QuorumCert, hint: NodeId | None, now: int) -> None:
        """Rule 1: ask for the block a verified QC certifies, unless we hold or await it."""
        tree = self._tree
        if qc.height <= tree.root.height or tree.get_header(qc.block_id) is not None:
            return
        if qc.block_id in self.inflight or qc.block_id in tree.orphans:
            return
        if len(self.inflight) >= MAX_INFLIGHT_BLOCKS:
            return
        if hint is not None and hint != self._node_id:
            peer = hint
        else:
            peer = self.pick_peer(qc.block_id, now)
        self.request_block(qc.block_id, peer, now)

    def request_block(self, block_id: Digest, peer: NodeId, now: int) -> None:
        self.inflight[block_id] = now + self._cfg.request_retry_ms
        self._send(peer, BlockRequest(block_id=block_id, count=self._cfg.block_request_count))

    def request_sync(self, peer: NodeId, now: int) -> None:
        """Rule 3: ask for committed blocks above our root, one request at a time."""
        if self.sync_inflight_ms is not None:
            return
        self.sync_inflight_ms = now + self._cfg.request_retry_ms
        req = SyncRequest(
            from_height=Height(self._tree.root.height + 1), count=self._cfg.sync_batch
        )
        self._send(peer, req)

    def on_tick(self, now: int, high_qc: QuorumCert) -> None:
        """Re-send what went unanswered; let an unanswered sync go; repair (rule 4)."""
        for bid, retry_at in list(self.inflight.items()):
            if now >= retry_at:
                self.request_block(bid, self.pick_peer(bid, now), now)
        if self.sync_inflight_ms is not None and now >= self.sync_inflight_ms:
            self.sync_inflight_ms = None
        self._maybe_repair(now, high_qc)

    def _maybe_repair(self, now: int, qc: QuorumCert) -> None:
        """Rule 4: a certified block we still lack, with nothing in flight to bring it (an orphan
        whose parent fetch gave up, or a sync that ended early), is re-fetched every few retry
        periods. Without this a replica that lags when the chain goes idle stays one block behind
        until the next proposal (found by the late-observer drill)."""
        tree = self._tree
        if (
            qc.height <= tree.root.height
            or tree.get_header(qc.block_id) is not None
            or self.inflight
            or self.sync_inflight_ms is not None
            or now < self.repair_at_ms
        ):
            return
        self.repair_at_ms = now + 4 * self._cfg.request_retry_ms
        peer = self.pick_peer(qc.block_id, now)
        if qc.block_id in tree.orphans:
            self.request_sync(peer, now)
        else:
            self.request_block(qc.block_id, peer, now)

    # --- serving peers ----------------------------------------------------------------------------

    def serve_blocks(self, peer: NodeId, req: BlockRequest) -> None:
        """The requested block and its ancestors, newest first, from memory (possibly none)."""
        blocks = self._tree.get_ancestors(req.block_id, req.count)
        self._send(peer, BlockResponse(block_id=req.block_id, blocks=tuple(blocks)))

    def serve_sync(self, peer: NodeId, req: SyncRequest) -> None:
        """Committed blocks with their proofs, at most `sync_batch` of them."""
        n = min(req.count, self._cfg.sync_batch)
        items = tuple(self._read_committed(req.from_height, n))
        self._send(peer, SyncResponse(items=items[:n]))

    # --- answers --------------------------------------------------------------------------------

    def on_block_inserted(self, block_id: Digest) -> None:
        self.inflight.pop(block_id, None)

    def on_sync_response(self) -> None:
        self.sync_inflight_ms = None

    def accept_blocks(
        self, sender: NodeId, resp: BlockResponse, now: int, *, vouched: bool
    ) -> tuple[Block, ...] | None:
        """Rule 2: the blocks of a response to use (newest first), or None to drop it. `vouched`:
        a verified QC certifies the requested block. An empty answer to our request means the
        block is beyond the peer's memory: we fall back to committed sync (rule 3)."""
        blocks = resp.blocks
        if not blocks:
            if resp.block_id in self.inflight:
                self.request_sync(sender, now)
            return None
        if blocks[0].block_id != resp.block_id:
            return None
        if resp.block_id not in self.inflight and not vouched:
            return None  # unsolicited, and no verified QC vouches for the block: drop
        for i in range(1, len(blocks)):
            if blocks[i].block_id != blocks[i - 1].header.parent_id:
                return None
        for b in blocks:
            if b.header.chain_id != self._chain_id or not self._certs.verify_qc(b.header.justify):
                return None
        self.inflight.pop(resp.block_id, None)
        return blocks

    def continue_after(self, sender: NodeId, blocks: tuple[Block, ...], now: int) -> None:
        """After the replica inserted a response's blocks: if the oldest still does not link to
        our tree, ask for its ancestors, or for committed sync if the gap is too far (rule 3)."""
        tree = self._tree
        oldest = blocks[-1]
        if tree.is_extendable(oldest.header.parent_id) or (
            oldest.header.height <= tree.root.height + 1
        ):
            return
        if len(blocks) < self._cfg.block_request_count or not self._is_reachable(oldest):
            self.request_sync(sender, now)
        else:
            self.request_block(oldest.header.parent_id, sender, now)

    def _is_reachable(self, oldest: Block) -> bool:
        gap = oldest.header.height - self._tree.root.height
        return gap <= 4 * self._cfg.block_request_count


def select_proven_runs(
    items: Sequence[tuple[Block, CommitProof]],
    root: BlockHeader,
    *,
    validate: Callable[[Block, BlockHeader], bool],
    verify: Callable[[CommitProof], bool],
) -> tuple[list[tuple[list[Block], CommitProof]], BlockHeader, bool]:
    """Rule 3 for a SyncResponse: link each block to `root` (then to the previous one), check its
    body with `validate` (App.validate_block on its parent: a proof certifies the header only, so
    the transactions beside it must be the ones the header commits to), and cut a run at each
    block whose proof names it and `verify`s. Returns the proven runs (oldest first), the last
    linked header, and whether the answer was used to its end with no unproven tail (then the
    peer may have more)."""
    runs: list[tuple[list[Block], CommitProof]] = []
    run: list[Block] = []
    parent = root
    for block, proof in items:
        h = block.header
        if h.height <= parent.height:
            continue
        if h.parent_id != parent.block_id or h.height != parent.height + 1:
            return runs, parent, False
        if not validate(block, parent):
            return runs, parent, False
        run.append(block)
        parent = h
        if proof.committed_id == block.block_id and verify(proof):
            runs.append((run, proof))
            run = []
    return runs, parent, not run


class PendingProposals:
    """Rule 5: proposals (with their sender) waiting for a missing parent, oldest first."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        # At most `limit` entries; every entry's block is above the committed root once
        # `drop_committed` ran for the current root.
        self.items: deque[tuple[NodeId, Proposal]] = deque()

    def add(self, sender: NodeId, p: Proposal) -> None:
        if len(self.items) >= self._limit:
            self.items.popleft()
        self.items.append((sender, p))

    def take_children(self, parent_id: Digest) -> list[tuple[NodeId, Proposal]]:
        """Remove and return the proposals whose block extends `parent_id`, oldest first."""
        kids = [sp for sp in self.items if sp[1].block.header.parent_id == parent_id]
        if kids:
            self.items = deque(sp for sp in self.items if sp[1].block.header.parent_id != parent_id)
        return kids

    def drop_committed(self, root_height: int) -> None:
        self.items = deque((s, p) for s, p in self.items if p.block.header.height > root_height)
