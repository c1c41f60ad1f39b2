"""The node's ledger side of consensus: the `consensus.App` the replica calls, and commit.

Rules this module keeps:
1. A block is executed once per node: by the leader while building it, or by a replica while
   validating it; the `ExecResult` is kept by block id until the block commits or is pruned.
2. A replica votes only for a block whose header commitments equal what it computed itself
   (tx_root, tx_count, receipt_root, acc_root, acc_size, state_hash), whose height and parent
   match, whose timestamp increases and is not too far ahead of our clock, and whose every
   transaction passes the block rules and the signature check (verified once per node).
3. Committing writes the block, its txs, receipts, state writes, accumulator nodes and the commit
   proof in one synced LevelDB batch (ledger.store); only then are waiters told.
4. Building a block examines pool transactions in the pool's fair order (node/mempool.py rule 4)
   and packs only those that pass the block rules on the parent; it stops after skipping
   `pack_scan_max` that do not, so a pool full of them cannot make a build unbounded.
   One that fails them against the *committed* head too can never be included (its sender's
   account is gone, or it expired): it leaves the pool with that reason — and with it every tx
   of a removed sender. One that fails only on a speculative parent is skipped this time. A
   committed block that removes accounts evicts their senders' pending txs on every node.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gmchain.chain.executor import (
    BlockContext,
    ExecResult,
    Executor,
    InvalidBlock,
    TxRejected,
    compute_state_hash,
)
from gmchain.consensus.messages import MAX_BLOCK_TX_BYTES, CommitProof
from gmchain.consensus.packing import PackingPolicy
from gmchain.contracts.framework import Registry
from gmchain.contracts.membership import genesis_writes, removed_accounts
from gmchain.crypto_sm import PublicKey, verify_many
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.merkle import EMPTY_ROOT, Frontier
from gmchain.ledger.store import BlockWrite, Store
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
    SignedTx,
)
from gmchain.node.api import ErrorCode
from gmchain.node.mempool import Mempool
from gmchain.node.readcheck import check_served_block

__all__ = ["Chain", "CommittedBlock", "make_genesis_block", "sender_key"]

log = logging.getLogger("gmchain.chain")

MAX_CLOCK_DRIFT_MS = 10_000
# Block-rule failures (ledger.executor.TxRejected reasons, named as the admission ErrorCodes)
# that, when they hold against the committed head, hold for every block that can still be built.
_NEVER_VALID = {
    "EXPIRED": ErrorCode.EXPIRED,
    "UNKNOWN_SENDER": ErrorCode.UNKNOWN_SENDER,
    "WRONG_CHAIN": ErrorCode.WRONG_CHAIN,
    "DUPLICATE": ErrorCode.DUPLICATE,
}
_REVOKED = (
    "left the pool without committing: its sender is no longer an admitted account "
    "(revoked after the transaction was admitted); it can never commit"
)
META_PENDING = "pending_blocks"  # uncommitted blocks the replica asked us to keep (PersistBlock)


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    block: Block
    receipts: list[bytes]
    result: ExecResult


def make_genesis_block(genesis: Genesis) -> tuple[Block, dict[tuple[str, bytes], bytes | None]]:
    """The height-0 block: no txs, parent_id = genesis hash, state = the admitted accounts."""
    writes: dict[tuple[str, bytes], bytes | None] = {
        ("membership", k): v for k, v in genesis_writes(genesis.accounts).items()
    }
    header = BlockHeader(
        chain_id=genesis.chain_id,
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
        justify=QuorumCert(block_id=ZERO_DIGEST, round=Round(0), height=Height(0)),
    )
    return Block(header=header, txs=()), writes


class Chain:
    """Implements consensus.App over the store, the executor and the mempool."""

    def __init__(
        self,
        *,
        genesis: Genesis,
        store: Store,
        registry: Registry,
        mempool: Mempool,
        packing: PackingPolicy,
        clock_ms: Callable[[], int],
        on_commit: Callable[[list[CommittedBlock]], None] | None = None,
        max_block_txs: int = 5000,
        max_block_bytes: int = MAX_BLOCK_TX_BYTES,  # so every carrier of the block fits the wire
        pack_scan_max: int = 4000,
    ) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.store = store
        self.mempool = mempool
        self.packing = packing
        self.clock_ms = clock_ms
        self.on_commit = on_commit
        self.max_block_txs = max_block_txs
        self.max_block_bytes = max_block_bytes
        self.pack_scan_max = pack_scan_max
        self.executor = Executor(
            chain_id=genesis.chain_id,
            registry=registry,
            committed=store,
            replay_window=genesis.replay_window,
        )
        self.executor.known_uncommitted = mempool.__contains__
        self._results: dict[bytes, ExecResult] = {}
        # Tx ids of the most recently committed blocks, newest last: (height, ids).
        self.recent: deque[tuple[int, frozenset[bytes]]] = deque(maxlen=512)
        self._ensure_genesis()
        head = store.head_height()
        assert head is not None
        raw = store.get_header_by_height(head)
        assert raw is not None
        self.head: BlockHeader = BlockHeader.decode(raw)
        self.frontier = self._load_frontier()
        self.genesis_id: Digest = self._header_at(0).block_id
        self._pending: dict[bytes, bytes] = self._load_pending()

    # --- start-up -------------------------------------------------------------------------------

    def _ensure_genesis(self) -> None:
        if self.store.head_height() is not None:
            raw = self.store.get_header_by_height(0)
            assert raw is not None
            if BlockHeader.decode(raw).parent_id != self.genesis.compute_hash():
                raise RuntimeError(
                    "the data directory holds a chain with a different genesis; "
                    "use another --data-dir or remove it"
                )
            return
        block, writes = make_genesis_block(self.genesis)
        self.store.commit_block(
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

    def _load_frontier(self) -> Frontier:
        # The frontier's peaks are perfect subtrees, which the store keeps: rebuild them.
        size = self.head.acc_size
        peaks: list[Digest] = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size & (1 << level):
                node = self.store.get_acc_node(level, start >> level)
                if node is None:
                    raise RuntimeError(f"accumulator node ({level}, {start >> level}) missing")
                peaks.append(Digest(node))
                start += 1 << level
        frontier = Frontier(size=size, peaks=tuple(peaks))
        if frontier.size != self.head.acc_size or frontier.root() != self.head.acc_root:
            raise RuntimeError("accumulator frontier does not match the head header")
        return frontier

    def _load_pending(self) -> dict[bytes, bytes]:
        raw = self.store.get_meta(META_PENDING)
        if not raw:
            return {}
        out: dict[bytes, bytes] = {}
        for b in decode(raw):
            block = Block.decode(b)
            if block.header.height > self.head.height:
                out[block.block_id] = b
        return out

    def pending_blocks(self) -> list[Block]:
        """Uncommitted blocks kept across a restart, for `Replica(blocks=...)`."""
        return [Block.decode(b) for b in self._pending.values()]

    def persist_block(self, block: Block) -> None:
        """Keep an uncommitted block until it commits or is pruned. Not synced by itself: the
        replica's next PersistSafety (synced) makes it durable, as LevelDB's log is sequential."""
        self._pending[block.block_id] = block.encode()
        self._save_pending()

    def _save_pending(self) -> None:
        self.store.put_meta(META_PENDING, encode(list(self._pending.values())), sync=False)

    def _header_at(self, height: int) -> BlockHeader:
        raw = self.store.get_header_by_height(height)
        assert raw is not None
        return BlockHeader.decode(raw)

    # --- consensus.App --------------------------------------------------------------------------

    def has_pending(self) -> bool:
        return len(self.mempool) > 0

    def ready_to_propose(self, now_ms: int) -> bool:
        oldest = self.mempool.oldest_arrival_ms()
        self.packing.observe_queue(pending=len(self.mempool), oldest_pending_ms=oldest)
        return bool(self.packing.should_cut(now_ms))

    def build_block(
        self,
        *,
        parent: BlockHeader,
        round: Round,
        justify: QuorumCert,
        proposer: NodeId,
        now_ms: int,
    ) -> Block:
        parent_res = self._result_for_parent(parent)
        exclude = [r.tx_id_set for r in parent_res.iter_chain()] if parent_res else []
        # Feed the queue depth on every build, not only when the replica asks ready_to_propose:
        # under load it proposes as soon as the parent is certified, and the target must be able
        # to grow back after a stall (found by the SIGKILL drill: blocks stuck at one tx).
        self.packing.observe_queue(
            pending=len(self.mempool), oldest_pending_ms=self.mempool.oldest_arrival_ms()
        )
        target = min(self.packing.target_size, self.max_block_txs)
        candidates = self._pick(parent, parent_res, exclude, target)
        ts = max(now_ms, parent.timestamp_ms + 1)
        ctx = self._context(parent, ts, parent_res)
        result, rejected = self.executor.execute(ctx, candidates, parent_res, strict=False)
        for t, _ in rejected:  # _pick checked every candidate on this parent: a safety net
            self._evict_if_never_valid(t)
        txs = [t for t in candidates if t.tx_id in result.tx_id_set]
        header = self._header(parent, round, justify, proposer, ts, result)
        result.block_id = header.block_id
        self._results[header.block_id] = result
        return Block(header=header, txs=tuple(txs))

    def _pick(
        self,
        parent: BlockHeader,
        parent_res: ExecResult | None,
        exclude: list[frozenset[bytes]],
        target: int,
    ) -> list[SignedTx]:
        """Up to `target` pool txs that pass the block rules on `parent` (rule 4)."""
        height = parent.height + 1
        out: list[SignedTx] = []
        seen: set[bytes] = set()
        dead: list[SignedTx] = []
        skip_senders: set[bytes] = set()
        total = skipped = 0
        for tx, size in self.mempool.iter_fair():
            if len(out) >= target or skipped >= self.pack_scan_max:
                break
            if any(tx.tx_id in s for s in exclude):
                continue
            if tx.body.sender in skip_senders:
                skipped += 1
                continue
            try:
                self.executor.check_tx(tx, height, parent_res, seen)
            except TxRejected as exc:
                if exc.reason == "UNKNOWN_SENDER":
                    skip_senders.add(tx.body.sender)  # its other txs fail the same way
                dead.append(tx)
                skipped += 1
                continue
            if total + size > self.max_block_bytes and out:
                break
            out.append(tx)
            seen.add(tx.tx_id)
            total += size
        for tx in dead:  # after the walk: evicting changes the pool
            self._evict_if_never_valid(tx)
        return out

    def _evict_if_never_valid(self, tx: SignedTx) -> None:
        """Evict `tx` if it fails the block rules on the committed head (rule 4)."""
        if tx.tx_id not in self.mempool:
            return
        try:
            self.executor.check_tx(tx, self.head.height + 1, None)
        except TxRejected as exc:
            code = _NEVER_VALID.get(exc.reason)
            if code is ErrorCode.UNKNOWN_SENDER:
                self.mempool.evict_sender(tx.body.sender, code, _REVOKED)
            elif code is not None:
                self.mempool.evict([tx.tx_id], code, f"left the pool without committing: {exc}")

    def validate_block(self, block: Block, parent: BlockHeader) -> bool:
        h = block.header
        if h.block_id in self._results:
            # We built (or already validated) exactly this block: its id commits to every field.
            return True
        reason = self._check_header_shape(h, parent) or self._check_block_bytes(block.txs)
        if reason is None:
            reason = self._check_signatures(block.txs)
        if reason is None:
            try:
                parent_res = self._result_for_parent(parent)
                ctx = self._context(parent, h.timestamp_ms, parent_res)
                result, _ = self.executor.execute(ctx, block.txs, parent_res, strict=True)
            except InvalidBlock as exc:
                reason = str(exc)
            else:
                expected = self._header(
                    parent, h.round, h.justify, h.proposer, h.timestamp_ms, result
                )
                if expected.block_id != h.block_id:
                    reason = "header commitments differ from local execution"
                else:
                    result.block_id = h.block_id
                    self._results[h.block_id] = result
        if reason is not None:
            log.warning(
                "rejecting block %s at height %d: %s", h.block_id.hex()[:16], h.height, reason
            )
            return False
        return True

    def on_pruned(self, block_ids: Sequence[Digest]) -> None:
        changed = False
        for bid in block_ids:
            self._results.pop(bid, None)
            changed |= self._pending.pop(bid, None) is not None
        if changed:
            self._save_pending()

    def get_committed_blocks(
        self, from_height: int, max_count: int
    ) -> Sequence[tuple[Block, CommitProof]]:
        out: list[tuple[Block, CommitProof]] = []
        head = self.head.height
        h = from_height
        while h <= head and len(out) < max_count:
            raw = self.store.get_block_by_height(h)
            proof = self.find_commit_proof(h)
            if raw is None or proof is None:
                break
            block = Block.decode(raw)
            check_served_block(self.store, h, block)  # never sync a damaged block to a peer
            out.append((block, proof))
            h += 1
        return out

    # --- commit ---------------------------------------------------------------------------------

    def commit(self, blocks: Sequence[Block], proof: CommitProof) -> list[CommittedBlock]:
        done: list[CommittedBlock] = []
        for i, block in enumerate(blocks):
            h = block.header
            if h.height <= self.head.height:
                continue  # already committed (restart replay); idempotent
            if h.parent_id != self.head.block_id or h.height != self.head.height + 1:
                raise RuntimeError(
                    f"commit of block {h.height} does not extend head {self.head.height}"
                )
            result = self._results.pop(h.block_id, None)
            if result is None:
                # Synced or restarted: execute on top of the committed head.
                ctx = self._context(self.head, h.timestamp_ms, None)
                result, _ = self.executor.execute(ctx, block.txs, None, strict=True)
                result.block_id = h.block_id
            last = i == len(blocks) - 1
            self.store.commit_block(
                BlockWrite(
                    height=h.height,
                    block_hash=h.block_id,
                    header_bytes=h.encode(),
                    block_bytes=block.encode(),
                    tx_ids=result.tx_ids,
                    receipts=result.receipt_bytes,
                    state_writes=result.writes,
                    acc_leaves=result.leaf_hashes,
                    acc_nodes={k: v for k, v in result.acc_nodes.items() if k[0] > 0},
                    commit_proof=proof.encode() if last else b"",
                )
            )
            self.head = h
            self.frontier = result.frontier
            self.recent.append((h.height, result.tx_id_set))
            if any(ns == "membership" for ns, _ in result.writes):
                self.executor.forget_accounts()
                for address in removed_accounts(result.writes):
                    self.mempool.evict_address(address, ErrorCode.UNKNOWN_SENDER, _REVOKED)
            # Children were executed on top of this result; it is now the committed base.
            for other in self._results.values():
                if other.parent is result:
                    other.parent = None
            self.mempool.remove(result.tx_ids)
            done.append(CommittedBlock(block=block, receipts=result.receipt_bytes, result=result))
        if done:
            if any(self._pending.pop(c.block.block_id, None) is not None for c in done):
                self._save_pending()
            self.mempool.evict_expired(self.head.height)
            self._prune_stale()
            if self.on_commit is not None:
                self.on_commit(done)
        return done

    def committed_since(self, height: int, tx_id: bytes) -> bool | None:
        """Whether `tx_id` was committed in a block above `height` (None: not sure, ask the
        store — the in-memory window does not reach back that far)."""
        if self.recent and self.recent[0][0] > height + 1:
            return None
        return any(tx_id in ids for h, ids in self.recent if h > height)

    def find_commit_proof(self, height: int) -> CommitProof | None:
        """The proof stored with the first block at or above `height` that has one; the
        headers between chain back to `height` by parent ids."""
        h = height
        while h <= self.head.height:
            raw = self.store.get_commit_proof(h)
            if raw:
                return CommitProof.decode(raw)
            h += 1
        return None

    # --- helpers --------------------------------------------------------------------------------

    def _prune_stale(self) -> None:
        stale = [bid for bid, r in self._results.items() if r.height <= self.head.height]
        for bid in stale:
            del self._results[bid]

    def _result_for_parent(self, parent: BlockHeader) -> ExecResult | None:
        if parent.block_id == self.head.block_id:
            return None
        res = self._results.get(parent.block_id)
        if res is None:
            raise InvalidBlockParent(f"parent {parent.block_id.hex()[:16]} was never executed here")
        return res

    def _context(self, parent: BlockHeader, ts: int, parent_res: ExecResult | None) -> BlockContext:
        return BlockContext(
            chain_id=self.chain_id,
            height=parent.height + 1,
            timestamp_ms=ts,
            parent_state_hash=parent.state_hash,
            parent_frontier=parent_res.frontier if parent_res else self.frontier,
        )

    def _header(
        self,
        parent: BlockHeader,
        round_: Round,
        justify: QuorumCert,
        proposer: NodeId,
        ts: int,
        result: ExecResult,
    ) -> BlockHeader:
        return BlockHeader(
            chain_id=self.chain_id,
            height=Height(parent.height + 1),
            round=round_,
            parent_id=parent.block_id,
            timestamp_ms=ts,
            proposer=proposer,
            tx_root=result.tx_root,
            tx_count=len(result.tx_ids),
            receipt_root=result.receipt_root,
            acc_root=result.frontier.root(),
            acc_size=result.frontier.size,
            state_hash=result.state_hash,
            justify=justify,
        )

    def _check_header_shape(self, h: BlockHeader, parent: BlockHeader) -> str | None:
        if h.chain_id != self.chain_id:
            return "wrong chain id"
        if h.height != parent.height + 1 or h.parent_id != parent.block_id:
            return "height/parent mismatch"
        if h.timestamp_ms <= parent.timestamp_ms:
            return "timestamp does not increase"
        if h.timestamp_ms > self.clock_ms() + MAX_CLOCK_DRIFT_MS:
            return "timestamp too far in the future"
        if h.tx_count > self.max_block_txs:
            return "too many transactions"
        return None

    @staticmethod
    def _check_block_bytes(txs: Sequence[SignedTx]) -> str | None:
        """A block is valid only if every carrier of it fits one peer message (fault 1): an
        honest leader never builds more than MAX_BLOCK_TX_BYTES of transactions, and a
        Byzantine leader's larger block, once committed, could not be served to a syncing peer."""
        if sum(len(t.encode()) for t in txs) > MAX_BLOCK_TX_BYTES:
            return f"transactions exceed {MAX_BLOCK_TX_BYTES} bytes"
        return None

    def _check_signatures(self, txs: Sequence[SignedTx]) -> str | None:
        todo = [t for t in txs if not self.mempool.is_verified(t.tx_id)]
        if not todo:
            return None
        items = []
        for t in todo:
            key = sender_key(t.body.sender)
            if key is None:
                return f"tx {t.tx_id.hex()[:16]}: invalid sender key"
            items.append((key, t.tx_id, t.signature))
        for t, ok in zip(todo, verify_many(items), strict=True):
            if not ok:
                return f"tx {t.tx_id.hex()[:16]}: bad signature"
            self.mempool.mark_verified(t.tx_id)
        return None


@functools.lru_cache(maxsize=4096)
def sender_key(raw: bytes) -> PublicKey | None:
    """Parsed (and curve-checked) sender keys, shared by admission and proposal validation: a
    busy sender is parsed once, not per tx. None for an invalid key."""
    try:
        return PublicKey.from_bytes(raw)
    except Exception:  # any invalid key is a bad signature to the caller
        return None


class InvalidBlockParent(InvalidBlock):
    """Asked to build or validate on a parent whose execution result we do not hold."""
