"""Block retrieval and committed sync for the replica (rule L8 of consensus/replica.py).

Rules this module keeps (docs/consensus.md, L8):
1. A block referenced by a verified QC that we lack is requested from the peer that referenced
   it, then round-robin over the validators on retry; at most 16 requests are in flight.
2. A `BlockResponse` is used only if solicited or vouched for by a verified QC, if its blocks form
   one parent chain ending at the requested id, and if every block's justify QC verifies.
3. A gap older than the peers' in-memory window falls back to `SyncRequest`; every synced block is
   applied only after its `CommitProof` verifies and its body passes `App.validate_block` on its
   parent (a proof certifies the header, not the transactions beside it), so an unsolicited or
   forged `SyncResponse` is harmless.
4. A certified block still missing with nothing in flight is re-requested every few retry periods.
Part of `Replica` (a mixin: the attributes and methods declared below are the replica's own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gmchain.consensus.certs import CertChecker
from gmchain.consensus.messages import (
    BlockRequest,
    BlockResponse,
    CommitProof,
    ConsensusMessage,
    SyncRequest,
)
from gmchain.consensus.tree import BlockTree
from gmchain.consensus.types import App, Commit, ConsensusConfig, Effect, ValidatorSet
from gmchain.ledger.types import Block, Digest, Height, NodeId, QuorumCert

__all__ = ["RetrievalMixin"]


class RetrievalMixin:
    cfg: ConsensusConfig
    app: App
    certs: CertChecker
    tree: BlockTree
    validators: ValidatorSet
    node_id: NodeId | None
    now_ms: int
    chain_id: str
    high_qc: QuorumCert
    commit_qc: QuorumCert | None
    qcs: dict[Digest, QuorumCert]
    inflight: dict[Digest, int]
    sync_inflight_ms: int | None
    repair_at_ms: int
    _effects: list[Effect]

    if TYPE_CHECKING:

        def _send(self, to: NodeId, msg: ConsensusMessage) -> None: ...

        def _insert_block(self, block: Block) -> bool: ...

        def _process_qc(self, qc: QuorumCert, hint: NodeId | None) -> None: ...

        def _after_root_change(self, pruned: list[Digest]) -> None: ...

    def _maybe_repair(self, now: int) -> None:
        """L8: a certified block we still lack, with nothing in flight to bring it (an orphan whose
        parent fetch gave up, or a sync that ended early), is re-fetched every few retry periods.
        Without this a replica that lags when the chain goes idle stays one block behind until
        the next proposal (found by the late-observer drill)."""
        qc = self.high_qc
        if (
            qc.height <= self.tree.root.height
            or self.tree.get_header(qc.block_id) is not None
            or self.inflight
            or self.sync_inflight_ms is not None
            or now < self.repair_at_ms
        ):
            return
        self.repair_at_ms = now + 4 * self.cfg.request_retry_ms
        peer = self._pick_peer(qc.block_id)
        if qc.block_id in self.tree.orphans:
            self._request_sync(peer)
        else:
            self._request_block(qc.block_id, peer)

    def _pick_peer(self, salt: bytes) -> NodeId:
        ids = [i for i in self.validators.node_ids if i != self.node_id]
        if not ids:
            return self.validators.node_ids[0]
        return ids[(salt[0] + self.now_ms // max(1, self.cfg.request_retry_ms)) % len(ids)]

    def _fetch_missing(self, qc: QuorumCert, hint: NodeId | None) -> None:
        if qc.height <= self.tree.root.height or self.tree.get_header(qc.block_id) is not None:
            return
        if qc.block_id in self.inflight or qc.block_id in self.tree.orphans:
            return
        if len(self.inflight) >= 16:
            return
        peer = hint if hint is not None and hint != self.node_id else self._pick_peer(qc.block_id)
        self._request_block(qc.block_id, peer)

    def _request_block(self, block_id: Digest, peer: NodeId) -> None:
        self.inflight[block_id] = self.now_ms + self.cfg.request_retry_ms
        self._send(peer, BlockRequest(block_id=block_id, count=self.cfg.block_request_count))

    def _on_block_response(self, sender: NodeId, resp: BlockResponse) -> None:
        blocks = resp.blocks
        if not blocks:
            if resp.block_id in self.inflight:
                self._request_sync(sender)  # beyond the peer's memory: committed sync (L8)
            return
        if blocks[0].block_id != resp.block_id:
            return
        if resp.block_id not in self.inflight and resp.block_id not in self.qcs:
            return  # unsolicited, and no verified QC vouches for the block: drop
        for i in range(1, len(blocks)):
            if blocks[i].block_id != blocks[i - 1].header.parent_id:
                return
        for b in blocks:
            if b.header.chain_id != self.chain_id or not self.certs.verify_qc(b.header.justify):
                return
        self.inflight.pop(resp.block_id, None)
        for b in reversed(blocks):  # oldest first
            if b.header.height <= self.tree.root.height or b.block_id in self.tree.blocks:
                continue
            if self.tree.is_extendable(b.header.parent_id):
                self._insert_block(b)
            else:
                self.tree.add_orphan(b)
        oldest = blocks[-1]
        if not self.tree.is_extendable(oldest.header.parent_id) and (
            oldest.header.height > self.tree.root.height + 1
        ):
            if len(blocks) < self.cfg.block_request_count or not self._chain_reachable(oldest):
                self._request_sync(sender)
            else:
                self._request_block(oldest.header.parent_id, sender)
        for b in blocks:
            self._process_qc(b.header.justify, sender)

    def _chain_reachable(self, oldest: Block) -> bool:
        gap = oldest.header.height - self.tree.root.height
        return gap <= 4 * self.cfg.block_request_count

    def _request_sync(self, peer: NodeId) -> None:
        if self.sync_inflight_ms is not None:
            return
        self.sync_inflight_ms = self.now_ms + self.cfg.request_retry_ms
        req = SyncRequest(from_height=Height(self.tree.root.height + 1), count=self.cfg.sync_batch)
        self._send(peer, req)

    def _apply_committed(self, items: tuple[tuple[Block, CommitProof], ...]) -> None:
        """Committed sync: link each block to our root; commit each run ending at a proven tip."""
        run: list[Block] = []
        parent = self.tree.root
        for block, proof in items:
            h = block.header
            if h.height <= parent.height:
                continue
            if h.parent_id != parent.block_id or h.height != parent.height + 1:
                return
            # Rule 3: a proof certifies the header only; the body must be the one the header
            # commits to (transactions, signatures, execution results), checked exactly as a
            # proposal is — or one peer could make a lagging node commit other transactions.
            if not self.app.validate_block(block, parent):
                return
            run.append(block)
            parent = h
            if proof.committed_id != block.block_id or not self.certs.verify_commit_proof(proof):
                continue
            self._effects.append(Commit(blocks=tuple(run), proof=proof))
            self.commit_qc = proof.qc
            pruned = self.tree.adopt_run(run)
            self._after_root_change(pruned)
            self._process_qc(proof.header.justify, None)
            self._process_qc(proof.qc, None)
            run = []
        if len(items) >= self.cfg.sync_batch and not run:
            self._request_sync(self._pick_peer(parent.block_id))
