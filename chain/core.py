"""The chain: the `consensus.App` the replica calls (build, validate), and commit.

Its parts: chain/genesis.py (block 0, start-up), chain/packer.py (which pool txs a block takes),
chain/blockrules.py (checks that need no execution), chain/executor.py (execution),
chain/readcheck.py (re-hash of what is served); storage through `ledger.store_api.ChainStore`,
the pool through `chain.pool.TxPool`. It never imports the node.

Rules this module keeps:
1. A block is executed once per node: by the leader while building it, or by a replica while
   validating it; the `ExecResult` is kept by block id until the block commits or is pruned.
2. A replica votes only for a block whose header commitments equal what it computed itself
   (tx_root, tx_count, receipt_root, acc_root, acc_size, state_hash), whose header passes the
   shape checks (chain/blockrules.py rule 1), and whose every transaction passes the block rules
   and the signature check (verified once per node).
3. Committing writes the block, its txs, receipts, state writes, accumulator nodes and the commit
   proof in one `ChainStore.commit_block` (for LevelDB one synced batch); only then are
   listeners told.
4. Building a block packs pool transactions as chain/packer.py says. A committed block that
   removes accounts evicts their senders' pending txs on every node.
5. Epochs (EPOCHS.md E3, E4; chain/epochs.py). A header's `epoch` is its parent's, or the
   parent's + 1 when the parent is the committed block that ended its epoch; its
   `next_validators_hash` is the commitment (ledger/epoch.py rule 3) to its own epoch and set,
   or to the next epoch and its set on an epoch-ending block and on its suffix. The suffix
   (blocks descending from an uncommitted epoch-ending block, same epoch) carries no
   transactions: built so, refused otherwise. A block is refused unless both fields equal the
   values computed here.
6. A commit that includes an epoch-ending block E commits up to and including E and drops the
   blocks after it (the suffix: empty); E's block write carries the epoch record (headers E..B and
   B's commit proof; E's own commit proof is stored only when B = E), in the same store write.
   Every uncommitted block is then of the ended epoch and is forgotten; the switch waits in
   `take_epoch_switch`.
7. `get_committed_blocks` never crosses an epoch end: an answer stops at E. E committed directly
   comes with its own commit proof; E committed through a later block B comes with B's proof and
   is followed by the suffix E+1 .. B rebuilt from the record's headers as empty blocks (the
   receiver validates and commits them like the live path, and its commit truncates at E).
8. Chain parameters (EPOCHS.md E11): a block of epoch e is built and validated with e's
   `block_max_txs`, `block_max_bytes`, `tx_max_bytes` and `replay_window` (chain/blockrules.py
   rules 1-2, chain/txrules.py R1, R5), so a governance change applies from the first block of
   the epoch it starts, never to the block that decided it nor to the suffix. The node's own
   `max_block_txs` and `max_block_bytes` only bound what it builds, below the epoch's.
9. `executing` is True while `build_block` or `validate_block` runs, and while `commit`
   executes a block this node had not (synced, or replayed after a restart); one attribute
   store, read without a lock: a hint for the node's admission (node/admission.py rule 5).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from gmchain.chain.blockrules import (
    MAX_CLOCK_DRIFT_MS,
    BlockLimits,
    check_block_bytes,
    check_header_shape,
    epoch_limits,
)
from gmchain.chain.epochs import EpochRecord, EpochSwitch, compute_epoch_change
from gmchain.chain.executor import (
    BlockContext,
    ExecResult,
    Executor,
    InvalidBlock,
    compute_block_header,
)
from gmchain.chain.genesis import ensure_genesis, load_frontier, make_genesis_block, read_header
from gmchain.chain.packer import REVOKED, BlockPacker
from gmchain.chain.pool import TxPool
from gmchain.chain.readcheck import check_served_block
from gmchain.chain.txrules import Rejection, TxRejected, TxRules
from gmchain.chain.validators import StoreValidators
from gmchain.consensus.messages import MAX_BLOCK_TX_BYTES, CommitProof
from gmchain.consensus.packing import PackingPolicy
from gmchain.contracts.membership import removed_accounts
from gmchain.ledger.codec import decode, encode
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.store_api import BlockWrite, ChainStore
from gmchain.ledger.types import (
    Block,
    BlockHeader,
    Digest,
    Genesis,
    NodeId,
    QuorumCert,
    Round,
    SignedTx,
)

__all__ = [
    "MAX_CLOCK_DRIFT_MS",
    "Chain",
    "CommittedBlock",
    "InvalidBlockParent",
    "compute_block_header",
    "make_genesis_block",
]

log = logging.getLogger("gmchain.chain")

META_PENDING = "pending_blocks"  # uncommitted blocks the replica asked us to keep (PersistBlock)


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    block: Block
    receipts: list[bytes]
    result: ExecResult


class Chain:
    """Implements consensus.App over the store, the executor and the pool."""

    def __init__(
        self,
        *,
        genesis: Genesis,
        store: ChainStore,
        rules: TxRules,
        pool: TxPool,
        packing: PackingPolicy,
        on_commit: Callable[[list[CommittedBlock]], None] | None = None,
        max_block_txs: int = 5000,
        max_block_bytes: int = MAX_BLOCK_TX_BYTES,  # so every carrier of the block fits the wire
        pack_scan_max: int = 4000,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self.genesis = genesis
        # Packing K6: the node's monotonic clock (seconds), only to time block execution for the
        # packing policy's size cap; never part of a validity rule (the chain reads no clock).
        self._timer = timer
        self.chain_id = genesis.chain_id
        self.store = store
        self.pool = pool
        self.packing = packing
        self.on_commit = on_commit
        self.max_block_txs = max_block_txs
        self.rules = rules
        self.executor = Executor(rules=rules, committed=store)
        self.executor.known_uncommitted = pool.__contains__
        self.packer = BlockPacker(
            executor=self.executor,
            pool=pool,
            committed_height=lambda: self.head.height,
            max_block_bytes=max_block_bytes,
            pack_scan_max=pack_scan_max,
        )
        self._results: dict[bytes, ExecResult] = {}
        self.executing = False  # rule 9
        # Tx ids of the most recently committed blocks, newest last: (height, ids).
        self.recent: deque[tuple[int, frozenset[bytes]]] = deque(maxlen=512)
        ensure_genesis(store, genesis)
        # Who votes at each height and each epoch's configuration (chain/validators.py rule 4):
        # ask this, never genesis.validators.
        self.validators = StoreValidators(genesis, store)
        rules.use_epoch_params(self._config_at)  # rule 8: R1 and R5 of the block's epoch
        # Set by a commit that ended an epoch, cleared by take_epoch_switch (rule 6).
        self._switch: EpochSwitch | None = None
        head = store.head_height()
        assert head is not None
        self.head: BlockHeader = read_header(store, head)
        self.frontier = load_frontier(store, self.head)
        self.genesis_id: Digest = read_header(store, 0).block_id
        self._pending: dict[bytes, bytes] = self._load_pending()

    # --- start-up -------------------------------------------------------------------------------

    def _load_pending(self) -> dict[bytes, bytes]:
        raw = self.store.get_meta(META_PENDING)
        if not raw:
            return {}
        out: dict[bytes, bytes] = {}
        for b in decode(raw):
            h = Block.decode(b).header
            # (a block of an epoch that ended at or below it: a suffix left by a crash, rule 6)
            if h.height > self.head.height and h.epoch == self.validators.epoch_at(h.height):
                out[h.block_id] = b
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

    # --- consensus.App --------------------------------------------------------------------------

    def has_pending(self) -> bool:
        return len(self.pool) > 0

    def ready_to_propose(self, now_ms: int) -> bool:
        oldest = self.pool.oldest_arrival_ms()
        self.packing.observe_queue(pending=len(self.pool), oldest_pending_ms=oldest)
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
        with self._executing():
            return self._build(parent, round, justify, proposer, now_ms)

    def validate_block(self, block: Block, parent: BlockHeader, *, now_ms: int) -> bool:
        with self._executing():
            return self._validate(block, parent, now_ms)

    @contextmanager
    def _executing(self) -> Iterator[None]:
        """Rule 9."""
        self.executing = True
        try:
            yield
        finally:
            self.executing = False

    def _build(
        self, parent: BlockHeader, round: Round, justify: QuorumCert, proposer: NodeId, now_ms: int
    ) -> Block:
        parent_res = self._result_for_parent(parent)
        suffix = parent_res is not None and parent_res.next_epoch is not None
        exclude = [r.tx_id_set for r in parent_res.iter_chain()] if parent_res else []
        # Feed the queue depth on every build, not only when the replica asks ready_to_propose:
        # under load it proposes as soon as the parent is certified, and the target must be able
        # to grow back after a stall (found by the SIGKILL drill: blocks stuck at one tx).
        self.packing.observe_queue(
            pending=len(self.pool), oldest_pending_ms=self.pool.oldest_arrival_ms()
        )
        limits = self._limits(parent)  # rule 8
        target = min(self.packing.target_size, self.max_block_txs, limits.max_txs)
        # Rule 5: the suffix of an uncommitted epoch end carries no transactions.
        candidates = [] if suffix else self.packer.pick(parent, parent_res, exclude, target, limits)
        ts = max(now_ms, parent.timestamp_ms + 1)
        ctx = self._context(parent, ts, parent_res)
        result, rejected = self._execute(ctx, candidates, parent_res, strict=False)
        for t, _ in rejected:  # pick checked every candidate on this parent: a safety net
            self.packer.evict_if_never_valid(t)
        self._mark_epoch(result, parent_res)
        txs = [t for t in candidates if t.tx_id in result.tx_id_set]
        header = self._header(parent, round, justify, proposer, ts, result)
        result.block_id = header.block_id
        self._results[header.block_id] = result
        return Block(header=header, txs=tuple(txs))

    def _validate(self, block: Block, parent: BlockHeader, now_ms: int) -> bool:
        h = block.header
        if h.block_id in self._results:
            # We built (or already validated) exactly this block: its id commits to every field.
            return True
        limits = self._limits(parent)  # rule 8
        reason = check_header_shape(
            h,
            parent,
            chain_id=self.chain_id,
            now_ms=now_ms,
            max_block_txs=limits.max_txs,
        ) or check_block_bytes(block.txs, limits)
        if reason is None:
            try:
                self.rules.check_signatures(block.txs)  # R4, R9; verified once per node
            except TxRejected as exc:
                reason = exc.message
        if reason is None:
            try:
                parent_res = self._result_for_parent(parent)
                reason = self._check_epoch_fields(block, parent, parent_res)
                if reason is None:
                    reason = self._execute_and_compare(block, parent, parent_res)
            except InvalidBlock as exc:
                reason = str(exc)
        if reason is not None:
            log.warning(
                "rejecting block %s at height %d: %s", h.block_id.hex()[:16], h.height, reason
            )
            return False
        return True

    def _check_epoch_fields(
        self, block: Block, parent: BlockHeader, parent_res: ExecResult | None
    ) -> str | None:
        """Rule 5, the checks that need no execution (next_validators_hash needs it)."""
        expected = self._child_epoch(parent)
        if block.header.epoch != expected:
            return f"epoch {block.header.epoch} where this chain is in epoch {expected}"
        if parent_res is not None and parent_res.next_epoch is not None and block.txs:
            return "a block after an uncommitted epoch-ending block carries no transactions"
        return None

    def _execute_and_compare(
        self, block: Block, parent: BlockHeader, parent_res: ExecResult | None
    ) -> str | None:
        h = block.header
        ctx = self._context(parent, h.timestamp_ms, parent_res)
        result, _ = self._execute(ctx, block.txs, parent_res, strict=True)
        self._mark_epoch(result, parent_res)
        expected = self._header(parent, h.round, h.justify, h.proposer, h.timestamp_ms, result)
        if expected.next_validators_hash != h.next_validators_hash:
            return "next_validators_hash is not the commitment to the next block's epoch and set"
        if expected.block_id != h.block_id:
            return "header commitments differ from local execution"
        result.block_id = h.block_id
        self._results[h.block_id] = result
        return None

    def _execute(
        self,
        ctx: BlockContext,
        txs: Sequence[SignedTx],
        parent_res: ExecResult | None,
        *,
        strict: bool,
    ) -> tuple[ExecResult, list[tuple[SignedTx, TxRejected]]]:
        """`Executor.execute`, timed for packing K6 when the node gave a timer."""
        if self._timer is None:
            return self.executor.execute(ctx, txs, parent_res, strict=strict)
        t0 = self._timer()
        out = self.executor.execute(ctx, txs, parent_res, strict=strict)
        elapsed_us = int((self._timer() - t0) * 1e6)
        self.packing.observe_execution(txs=len(txs), elapsed_us=max(0, elapsed_us))
        return out

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
            record = self._ending_record(h)
            if record is not None and len(record.headers) > 1:
                # Rule 7: E committed through B; the receiver commits at B only, so the run up to
                # E and the suffix come whole in one answer (beyond max_count if the run starts
                # the answer), or not at all.
                if len(out) + len(record.headers) > max_count:
                    earlier = [item for item in out if item[1] != record.proof]
                    if earlier:
                        return earlier
                out.append((block, record.proof))
                out += [(Block(header=s, txs=()), record.proof) for s in record.headers[1:]]
                break
            out.append((block, proof))
            if record is not None:
                break  # rule 7: an answer stops at an epoch end
            h += 1
        return out

    # --- commit ---------------------------------------------------------------------------------

    def commit(self, blocks: Sequence[Block], proof: CommitProof) -> list[CommittedBlock]:
        done: list[CommittedBlock] = []
        for i, block in enumerate(blocks):
            h = block.header
            if h.height <= self.head.height:
                continue  # already committed (restart replay); idempotent
            epoch = self.validators.epoch_at(h.height)
            if h.epoch < epoch:
                break  # the suffix of the epoch end we committed (rule 6), here or earlier
            if h.epoch > epoch:
                raise RuntimeError(f"commit of block {h.height} of epoch {h.epoch} in {epoch}")
            if h.parent_id != self.head.block_id or h.height != self.head.height + 1:
                raise RuntimeError(
                    f"commit of block {h.height} does not extend head {self.head.height}"
                )
            result = self._results.pop(h.block_id, None)
            if result is None:
                # Synced or restarted: execute on top of the committed head.
                ctx = self._context(self.head, h.timestamp_ms, None)
                with self._executing():
                    result, _ = self.executor.execute(ctx, block.txs, None, strict=True)
                result.block_id = h.block_id
                self._mark_epoch(result, None)
            record = None
            if result.ends_epoch:
                assert result.next_epoch is not None
                suffix = blocks[i + 1 :]
                assert all(not b.txs for b in suffix), "a suffix block carries transactions"
                record = EpochRecord(
                    config=result.next_epoch,
                    start_height=h.height + 1,
                    headers=(h, *(b.header for b in suffix)),
                    proof=proof,
                )
                record.check()
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
                    epoch_record=None if record is None else (record.epoch, record.encode()),
                )
            )
            # executor.py rule 5: the cache of committed state follows the store, at once.
            self.executor.read_cache.on_committed_writes(result.writes)
            self.head = h
            self.frontier = result.frontier
            self.recent.append((h.height, result.tx_id_set))
            if result.touches_membership:  # membership or governance (R8, R8b)
                self.executor.forget_accounts()
                for address in removed_accounts(result.writes):
                    self.pool.evict_address(address, Rejection.UNKNOWN_SENDER, REVOKED)
            # Children were executed on top of this result; it is now the committed base.
            for other in self._results.values():
                if other.parent is result:
                    other.parent = None
            self.pool.remove(result.tx_ids)
            done.append(CommittedBlock(block=block, receipts=result.receipt_bytes, result=result))
            if record is not None:
                self._end_epoch(record)
                break
        if done:
            if any(self._pending.pop(c.block.block_id, None) is not None for c in done):
                self._save_pending()
            self.pool.evict_expired(self.head.height)
            self._prune_stale()
            if self.on_commit is not None:
                self.on_commit(done)
        return done

    def _end_epoch(self, record: EpochRecord) -> None:
        """Rule 6, after E's write: every uncommitted block is of the ended epoch."""
        self.validators.reload()
        self._results.clear()
        if self._pending:
            self._pending.clear()
            self._save_pending()
        self._switch = record.switch()
        log.info(
            "epoch %d ended at height %d; epoch %d starts with %d validators",
            record.epoch - 1,
            record.ending.height,
            record.epoch,
            len(record.config.validators),
        )

    def take_epoch_switch(self) -> EpochSwitch | None:
        """The switch the last commit made (rule 6), once; None when no epoch ended since."""
        switch, self._switch = self._switch, None
        return switch

    def current_epoch_switch(self) -> EpochSwitch | None:
        """The switch that started the current epoch (None in epoch 0): what a node restarted
        right after an epoch end (head = E) builds its replica from."""
        record = self.validators.record(self.validators.current_epoch())
        return None if record is None else record.switch()

    def committed_since(self, height: int, tx_id: bytes) -> bool | None:
        """Whether `tx_id` was committed in a block above `height` (None: not sure, ask the
        store — the in-memory window does not reach back that far)."""
        recent = tuple(self.recent)  # (one C-level copy: the consensus thread appends to it)
        if recent and recent[0][0] > height + 1:
            return None
        return any(tx_id in ids for h, ids in recent if h > height)

    def find_commit_proof(self, height: int) -> CommitProof | None:
        """The proof stored with the first block at or above `height` that has one; the
        headers between chain back to `height` by parent ids. Within an epoch that ended by a
        block E committed through a later block, the search stops at E with the record's proof
        (rule 7: it certifies the suffix's last block, whose headers the record holds)."""
        h = height
        while h <= self.head.height:
            raw = self.store.get_commit_proof(h)
            if raw:
                return CommitProof.decode(raw)
            record = self._ending_record(h)
            if record is not None:
                return record.proof
            h += 1
        return None

    def _ending_record(self, height: int) -> EpochRecord | None:
        """The record of the epoch that starts after `height`, if the block there ended one."""
        epoch = self.validators.epoch_at(height + 1)
        if self.validators.start_height(epoch) != height + 1:
            return None
        return self.validators.record(epoch)

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

    def _child_epoch(self, parent: BlockHeader) -> int:
        """Rule 5: the parent's epoch, + 1 after the committed block that ended it."""
        if parent.block_id == self.head.block_id:
            return self.validators.epoch_at(parent.height + 1)
        return parent.epoch

    def _limits(self, parent: BlockHeader) -> BlockLimits:
        """Rule 8: the bounds of the epoch of a block on `parent`."""
        return epoch_limits(self.validators.config(self._child_epoch(parent)))

    def _config_at(self, height: int) -> EpochConfig:
        """Rule 8: the configuration of the epoch a block at `height` belongs to (the current
        epoch above the committed head: a block of the ended epoch there is a suffix block,
        which carries no transactions)."""
        v = self.validators
        return v.config(v.epoch_at(height))

    def _mark_epoch(self, result: ExecResult, parent_res: ExecResult | None) -> None:
        """chain/epochs.py rule 1 on a fresh result; a suffix block inherits the pending switch."""
        if parent_res is not None and parent_res.next_epoch is not None:
            result.next_epoch = parent_res.next_epoch
            return
        change = compute_epoch_change(result.writes, result.height)
        if change is not None:
            result.next_epoch, result.ends_epoch = change, True

    def _header(
        self,
        parent: BlockHeader,
        round_: Round,
        justify: QuorumCert,
        proposer: NodeId,
        ts: int,
        result: ExecResult,
    ) -> BlockHeader:
        epoch = self._child_epoch(parent)
        signers = result.next_epoch or self.validators.config(epoch)
        return compute_block_header(
            parent,
            result,
            chain_id=self.chain_id,
            epoch=epoch,
            round=round_,
            proposer=proposer,
            timestamp_ms=ts,
            next_validators_hash=signers.next_validators_commitment,
            justify=justify,
        )


class InvalidBlockParent(InvalidBlock):
    """Asked to build or validate on a parent whose execution result we do not hold."""
