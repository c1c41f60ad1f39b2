"""One node: store + chain + consensus replica + RPC surface (implements node.api.NodeApi).

Rules this module keeps (DESIGN.md, "The way a transaction travels"; STYLE.md habit 2):
1. Effects of a consensus step run in order: persist (fsync) first, then send, then apply
   (commit). A vote or timeout never leaves before the safety data that allows it is on disk.
2. The replica is stepped from one place only (`_step`), never re-entrantly; messages a node sends
   to itself are queued and stepped after the current effects.
3. A transaction is acknowledged (`submit_raw_tx` returns) only when it is in the pool; its
   receipt is reported only after its block's synced batch is written. Admission itself (checks,
   batching, the pool log) is node/admission.py.
4. Signature verification runs in worker threads or processes, never on the loop; so do proofs
   (node/proofserve.py: O(log n) work, a bounded share per client).
5. Fail-stop (docs/ops.md, "Limits and failure behaviour"): an exception that escapes a consensus
   step, its effects (a store write, a commit) or the tick loop is one the node cannot handle. It
   is logged once at CRITICAL, `fatal` is set, nothing is stepped or admitted afterwards, `status`
   raises (so `/health` answers 503) and the process exits with EXIT_FATAL (node/daemon.py): a
   node that cannot write must not go on acknowledging transactions at a frozen height.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gmchain.chain.core import Chain, CommittedBlock
from gmchain.chain.readcheck import check_served_block, check_served_header, check_served_tx
from gmchain.chain.txrules import KeyCache, SignatureCache, TxRules
from gmchain.consensus import (
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    Event,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    Replica,
    Send,
    Start,
    Tick,
)
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.contracts.framework import ContractError
from gmchain.crypto_sm import PrivateKey, PublicKey
from gmchain.ledger.codec import DecodeError, Value
from gmchain.ledger.store import Store, StoreCorrupt
from gmchain.ledger.types import Block, BlockHeader, Genesis, NodeId, QuorumCert, Receipt, SignedTx
from gmchain.node.admission import Admission, CommittedView
from gmchain.node.api import ApiError, ErrorCode, NodeStatus, TxLookup, rejected
from gmchain.node.chainpool import MempoolPool
from gmchain.node.config import NodeConfig
from gmchain.node.diskspace import FreeSpaceGuard
from gmchain.node.mempool import Mempool, MempoolConfig
from gmchain.node.poolwal import PoolWal
from gmchain.node.proofserve import ProofLimits, ProofService
from gmchain.node.safetystore import load_safety, save_safety
from gmchain.node.verifypool import VerifyProcesses

__all__ = ["EXIT_FATAL", "KeySigner", "KeyVerifier", "NodeService"]

log = logging.getLogger("gmchain.node")

VERSION = "0.1.0"
CATCH_UP_SLACK = 1  # blocks a healthy replica may trail while the QC that commits them is in flight
EXIT_FATAL = 70  # the process's exit status after a fatal error (EX_SOFTWARE, sysexits.h)


def _now_ms() -> int:
    return int(time.time() * 1000)


class KeySigner:
    """consensus.Signer over an SM2 identity key."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.node_id = NodeId(key.public_key.address)

    def sign(self, msg: bytes) -> bytes:
        return self._key.sign(msg)


class KeyVerifier:
    """consensus.Verifier over the validators' SM2 public keys."""

    def __init__(self, keys: Sequence[PublicKey]) -> None:
        self._keys = {NodeId(k.address): k for k in keys}

    def verify(self, node_id: NodeId, msg: bytes, sig: bytes) -> bool:
        key = self._keys.get(node_id)
        return key is not None and key.verify(msg, sig)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("gmchain_block_height", "Committed block height", registry=r)
        self.committed = Counter("gmchain_committed_txs", "Committed transactions", registry=r)
        self.pool = Gauge("gmchain_pool_size", "Pending transactions in the pool", registry=r)
        self.rejected = Counter(
            "gmchain_rejected_txs", "Transactions refused at admission", ["reason"], registry=r
        )
        self.latency = Histogram(
            "gmchain_commit_latency_seconds",
            "Admission to commit, per transaction",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.block_txs = Histogram(
            "gmchain_block_txs",
            "Transactions per committed block",
            buckets=(0, 1, 10, 100, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.round = Gauge("gmchain_consensus_round", "Current consensus round", registry=r)
        self.peers = Gauge("gmchain_peers", "Connected peers", registry=r)
        self.lag = Gauge(
            "gmchain_sync_lag_blocks",
            "Committed blocks behind the peers' verified committed height (consensus L10)",
            registry=r,
        )


class NodeService:
    """Everything one node does, wired together; implements node.api.NodeApi."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        genesis: Genesis,
        key: PrivateKey,
        store: Store,
        consensus_config: ConsensusConfig | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        wal: PoolWal | None = None,
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.key = key
        self.store = store
        self.clock_ms = clock_ms
        self.wal = wal
        watched = [store.path] if wal is None else [store.path, str(wal.path)]
        self.disk_guard = FreeSpaceGuard(watched, config.min_free_disk_mb)
        self.node_id = NodeId(key.public_key.address)
        self.metrics = _Metrics()
        self.registry = default_registry()
        self.rules = TxRules(
            chain_id=genesis.chain_id,
            replay_window=genesis.replay_window,
            registry=self.registry,
            keys=KeyCache(),
            verified=SignatureCache(),
        )
        self.mempool = Mempool(
            config=MempoolConfig(
                max_txs=config.mempool_max_txs,
                per_sender_max=config.mempool_per_sender,
                dropped_memory=config.mempool_dropped_memory,
            ),
            rules=self.rules,
        )
        self.packing = PackingPolicy(
            PackingConfig(
                min_block_txs=config.min_block_txs,
                max_block_txs=config.max_block_txs,
                min_wait_ms=config.min_wait_ms,
                max_wait_ms=config.max_wait_ms,
                target_latency_ms=config.target_latency_ms,
            )
        )
        self.chain = Chain(
            genesis=genesis,
            store=store,
            rules=self.rules,
            pool=MempoolPool(self.mempool),
            packing=self.packing,
            on_commit=self._on_commit,
            max_block_txs=config.max_block_txs,
            pack_scan_max=config.pack_scan_max_txs,
        )
        head_height = self.chain.head.height
        validator_keys = [
            PublicKey.from_bytes(v.pubkey) for v in self.chain.validators.validators_at(head_height)
        ]
        self.validators = self.chain.validators.voting_set_at(head_height)
        self.is_validator = self.node_id in self.validators
        self.verifier = KeyVerifier(validator_keys)
        self.consensus_config = consensus_config or ConsensusConfig(
            round_timeout_ms=config.round_timeout_ms,
            max_round_timeout_ms=config.max_round_timeout_ms,
        )
        self.consensus_config.validate()
        safety = load_safety(store)  # sealed; a damaged copy stops the node (node/safetystore.py)
        self.replica = Replica(
            config=self.consensus_config,
            validators=self.validators,
            chain_id=genesis.chain_id,
            signer=KeySigner(key) if self.is_validator else None,
            verifier=self.verifier,
            app=self.chain,
            committed=self.chain.head,
            high_qc=self._committed_qc(),
            safety=safety,
            now_ms=clock_ms(),
            # Always known, so block 1's genesis QC verifies in a BlockResponse after a restart
            # too (without it a restarted node dropped every response reaching down to block 1).
            genesis_id=self.chain.genesis_id,
            blocks=self.chain.pending_blocks(),
        )
        self.send_hook: Callable[[NodeId | None, Any], None] | None = None  # set by p2p wiring
        self.gossip_hook: Callable[[bytes], None] | None = None  # set by p2p wiring
        self.peer_count: Callable[[], int] = lambda: 0
        self._inbox: list[Event] = []
        self._stepping = False
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="verify")
        n_procs = config.verify_processes
        self._procs = VerifyProcesses(n_procs, self._pool, self.rules.keys) if n_procs > 0 else None
        self._admitted_at: dict[bytes, float] = {}
        self.admission = Admission(
            rules=self.rules,
            mempool=self.mempool,
            chain=self.chain,
            committed=CommittedView(
                tx_location=store.get_tx_location,
                account_of=self.chain.executor.lookup_sender_uncached,
            ),
            wal=wal,
            disk_guard=self.disk_guard,
            threads=self._pool,
            procs=self._procs,
            rejected_metric=self.metrics.rejected,
            clock_ms=clock_ms,
            is_closing=lambda: self._closing,
            on_admitted=self._on_admitted,
        )
        self._block_cache: OrderedDict[int, Block] = OrderedDict()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self.mempool.on_evicted = self._on_evicted
        self._head_subs: set[asyncio.Queue[Any]] = set()
        self._event_subs: set[tuple[str | None, str | None, asyncio.Queue[Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.proofs = ProofService(
            store=store,
            validators=self.chain.validators.validators_at(head_height),
            head_height=lambda: self.chain.head.height,
            limits=ProofLimits(
                max_span=config.proof_max_span,
                threads=config.proof_threads,
                jobs_per_client=config.proof_jobs_per_client,
                queue_per_client=config.proof_queue_per_client,
            ),
        )
        # Rule 5: the error that stopped the node (None while it works); `fatal` is set with it.
        self.fatal_error: BaseException | None = None
        self.fatal = asyncio.Event()
        self.metrics.height.set(self.chain.head.height)

    def _committed_qc(self) -> QuorumCert:
        """The QC that certifies the committed head (from its commit proof), or genesis's."""
        head = self.chain.head
        if head.height == 0:
            return QuorumCert(block_id=head.block_id, round=head.round, height=head.height)
        proof = self.chain.find_commit_proof(head.height)
        if proof is not None and proof.header.justify.block_id == head.block_id:
            return proof.header.justify
        # The proof certifies a later block only if the head is that block's ancestor; the
        # head's own certificate then sits in the next header, which we do not store. Fall back
        # to the head's justify (certifies its parent); sync brings the replica forward.
        return head.justify

    # --- the consensus loop ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._procs is not None:
            await self._procs.start()
        if self.wal is not None:
            self.wal.start()
            await self._recover_pool()
        self._step(Start(now_ms=self.clock_ms()))
        self._task = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _recover_pool(self) -> None:
        """Re-admit the transactions acknowledged before a crash (node/poolwal.py rule 3)."""
        assert self.wal is not None
        gone: list[bytes] = []
        kept = 0
        for tx_id, raw in list(self.wal.entries()):
            try:
                tx = SignedTx.decode_tx(raw)
                if tx.tx_id != tx_id:
                    raise ApiError(ErrorCode.BAD_ENCODING, "log entry does not match its key")
                await self.admission.admit(tx, raw, durable=False)
                kept += 1
            except (DecodeError, ApiError):
                gone.append(tx_id)
        self.wal.remove(gone)
        if kept or gone:
            log.info("pool log: %d transactions re-admitted, %d dropped", kept, len(gone))

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.admission.stop()
        # Wait for the worker jobs already running (short: store reads, one verification each)
        # so none reads the store after the caller closes it.
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.proofs.close()
        if self._procs is not None:
            self._procs.close()
        for futs in self._waiters.values():
            for f in futs:
                if not f.done():
                    f.cancel()

    async def _tick_loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.01)
            self._wake.clear()
            try:
                self._step(Tick(now_ms=self.clock_ms()))
            except Exception as exc:
                self._fail("the consensus tick", exc)
            if self.fatal_error is not None:
                return

    def _fail(self, what: str, exc: BaseException) -> None:
        """Rule 5: stop working, loudly, once; the daemon ends the process on `fatal`."""
        if self.fatal_error is not None:
            return
        self.fatal_error = exc
        self._closing = True  # admission refuses from now on
        log.critical(
            "fatal: %s failed (%s: %s); stopping the node (exit %d) so that a supervisor "
            "restarts it",
            what,
            type(exc).__name__,
            exc,
            EXIT_FATAL,
            exc_info=exc,
        )
        self.fatal.set()

    def send_status(self, to: NodeId | None) -> None:
        """Our certificates (consensus L9, L10) to a peer whose session just started, or to every
        peer (`to` None, periodically): how a node behind on an idle chain learns it is behind."""
        if self.fatal_error is None and self.send_hook is not None:
            self.send_hook(to, self.replica.get_sync_info())

    def deliver(self, sender: NodeId, msg: Any) -> None:
        """A consensus message from a peer (already decoded and size-checked)."""
        self._step(MessageReceived(sender=sender, msg=msg, now_ms=self.clock_ms()))

    def _step(self, event: Event) -> None:
        if self.fatal_error is not None:
            return  # rule 5: a stopped node steps nothing
        self._inbox.append(event)
        if self._stepping:
            return
        self._stepping = True
        try:
            while self._inbox:
                ev = self._inbox.pop(0)
                self._run_effects(self.replica.step(ev))
        except Exception as exc:
            self._inbox.clear()
            self._fail("a consensus step (or a store write it made)", exc)
        finally:
            self._stepping = False
        self.metrics.round.set(getattr(self.replica, "round", 0))

    def _run_effects(self, effects: Sequence[Effect]) -> None:
        # One fsync per step where possible: SafetyData only grows (consensus.safety), so writing
        # the step's newest copy where its first PersistSafety stands keeps "persisted before the
        # signature leaves" for every signature of the step. Stored blocks are written unsynced
        # and made durable by the next synced write (chain/core.py), so a later PersistSafety
        # syncs again if a block was stored since (the leader's own block before its vote).
        newest = next((e for e in reversed(effects) if isinstance(e, PersistSafety)), None)
        synced = False
        block_since_sync = False
        for eff in effects:
            match eff:
                case PersistSafety():
                    if newest is not None and (not synced or block_since_sync):
                        save_safety(self.store, newest.data)
                        synced, block_since_sync = True, False
                case Send(to=to, msg=msg):
                    if to == self.node_id:
                        self._inbox.append(
                            MessageReceived(sender=self.node_id, msg=msg, now_ms=self.clock_ms())
                        )
                    elif self.send_hook is not None:
                        self.send_hook(to, msg)
                case Broadcast(msg=msg):
                    if self.send_hook is not None:
                        self.send_hook(None, msg)
                case PersistBlock(block=block):
                    self.chain.persist_block(block)
                    block_since_sync = True
                case Commit(blocks=blocks, proof=proof):
                    self.chain.commit(blocks, proof)
                case _:
                    raise AssertionError(f"unknown effect {eff!r}")

    def _on_commit(self, done: list[CommittedBlock]) -> None:
        now = time.monotonic()
        for cb in done:
            block = cb.block
            self.metrics.height.set(block.header.height)
            self.metrics.block_txs.observe(len(block.txs))
            self.metrics.committed.inc(len(block.txs))
            worst = -1.0
            for tx in block.txs:
                t0 = self._admitted_at.pop(tx.tx_id, None)
                if t0 is not None:
                    self.metrics.latency.observe(now - t0)
                    worst = max(worst, now - t0)
                for fut in self._waiters.pop(tx.tx_id, ()):
                    if not fut.done():
                        fut.set_result(None)
            if worst >= 0:
                # One observation per block (the slowest of its txs admitted here): the policy
                # adapts per block, so a big block must not count as hundreds of slow samples.
                # The queue depth goes with it: a node sees every commit but leads only 1/n of
                # the rounds, so growth must not depend on building blocks itself.
                self.packing.observe_queue(
                    pending=len(self.mempool), oldest_pending_ms=self.mempool.oldest_arrival_ms()
                )
                self.packing.observe_commit_latency(int(worst * 1000))
            if self.wal is not None and block.txs:
                self.wal.remove(t.tx_id for t in block.txs)
            for q in list(self._head_subs):
                _offer(q, block)
            if self._event_subs:
                for tx, rbytes in zip(block.txs, cb.receipts, strict=True):
                    receipt = Receipt.decode(rbytes)
                    for ev in receipt.events:
                        for contract, name, q in list(self._event_subs):
                            if (contract is None or contract == ev.contract) and (
                                name is None or name == ev.name
                            ):
                                _offer(q, (block.header.height, tx.tx_id, ev))
        self.metrics.pool.set(len(self.mempool))
        if len(self._admitted_at) > 2 * len(self.mempool) + 1024:
            # Txs that left the pool without committing (expired, dropped) leave no timer behind.
            self._admitted_at = {t: v for t, v in self._admitted_at.items() if t in self.mempool}

    # --- admission (node/admission.py) ---------------------------------------------------------

    async def submit_raw_tx(self, raw: bytes) -> bytes:
        return await self.admission.submit_raw_tx(raw)

    async def admit_many(
        self, items: Sequence[tuple[SignedTx, bytes]], *, gossip: bool = True
    ) -> list[ApiError | None]:
        """Admit a peer's gossiped transactions (node/network.py)."""
        return await self.admission.admit_many(items, gossip=gossip)

    def _on_admitted(self, txs: Sequence[tuple[SignedTx, bytes]], gossip: bool) -> None:
        """Transactions entered the pool (node/admission.py): time them, gossip them."""
        now = time.monotonic()
        for tx, raw in txs:
            self._admitted_at[tx.tx_id] = now
            if gossip and self.gossip_hook is not None:
                self.gossip_hook(raw)
        self.metrics.pool.set(len(self.mempool))
        self._wake.set()

    def _on_evicted(self, tx_ids: list[bytes]) -> None:
        """Txs left the pool without committing (node/mempool.py rule 2): their waiters hear the
        reason now, and the pool log forgets them (they can never commit)."""
        for tx_id in tx_ids:
            self._admitted_at.pop(tx_id, None)
            for fut in self._waiters.pop(tx_id, ()):
                if not fut.done():
                    fut.set_result(None)
        if self.wal is not None:
            self.wal.remove(tx_ids)

    # --- NodeApi: reads -------------------------------------------------------------------------

    def status(self) -> NodeStatus:
        if self.fatal_error is not None:
            raise ApiError(
                ErrorCode.NOT_READY, f"node stopped after a fatal error: {self.fatal_error}"
            )
        head = self.chain.head
        lag = self.replica.lag
        # A node of a multi-node chain (or an observer) knows it is caught up only once a peer
        # told it its certificates (consensus L10); a lone validator is the chain.
        needs_peers = self.send_hook is not None and (
            len(self.validators) > 1 or not self.is_validator
        )
        heard = self.replica.heard_status or not needs_peers
        return NodeStatus(
            chain_id=self.genesis.chain_id,
            node_id=self.node_id,
            role="validator" if self.is_validator else "observer",
            height=head.height,
            head=head.block_id,
            genesis=self.chain.genesis_id,
            pending_txs=len(self.mempool),
            peers=self.peer_count(),
            version=VERSION,
            round=int(getattr(self.replica, "round", 0)),
            committed_txs=head.acc_size,
            replay_window=self.genesis.replay_window,
            peer_height=head.height + lag,
            lag=lag,
            catching_up=not heard or lag > CATCH_UP_SLACK,
            healthy=heard and lag <= self.config.health_max_lag_blocks,
        )

    def height(self) -> int:
        return self.chain.head.height

    def get_block(self, height: int) -> Block | None:
        """A committed block; decoded blocks are kept in a small LRU (they never change)."""
        block = self._block_cache.get(height)
        if block is not None:
            self._block_cache.move_to_end(height)
            return block
        raw = self.store.get_block_by_height(height)
        if not raw:
            return None
        block = Block.decode(raw)
        self._check_served(check_served_block, self.store, height, block)
        self._block_cache[height] = block
        if len(self._block_cache) > 256:
            self._block_cache.popitem(last=False)
        return block

    def _check_served(self, check: Callable[..., None], *args: Any) -> None:
        """A record that fails its re-hash (chain/readcheck.py) means this node's own store is
        damaged: the caller gets the error and the node stops (rule 5, exit 70) instead of
        going on with a store it cannot trust — a supervisor's restart then meets the damage
        in `db check` / the start-up checks, with the recovery in the log."""
        try:
            check(*args)
        except StoreCorrupt as exc:
            self._fail("a read of the ledger store (damaged record)", exc)
            raise

    def get_block_by_hash(self, block_id: bytes) -> Block | None:
        height = self.store.get_height_by_hash(block_id)
        return None if height is None else self.get_block(height)

    def get_tx(self, tx_id: bytes) -> TxLookup | None:
        loc = self.store.get_tx_location(tx_id)
        if loc is None:
            return None
        height, index = loc
        cached = self._block_cache.get(height)
        if cached is not None:
            tx = cached.txs[index]
        else:
            raw_block = self.store.get_block_by_height(height)
            assert raw_block is not None
            tx = SignedTx.decode(extract_tx_bytes(raw_block, index))
            self._check_served(check_served_tx, height, tx_id, tx)
        rraw = self.store.get_receipt(tx_id)
        block_id = self.store.get_block_hash(height)
        assert rraw is not None and block_id is not None
        return TxLookup(
            tx=tx, height=height, index=index, block_id=block_id, receipt=Receipt.decode(rraw)
        )

    def get_block_summary(self, height: int) -> tuple[BlockHeader, list[bytes]] | None:
        """A committed block's header and tx ids, without decoding its transactions."""
        raw = self.store.get_header_by_height(height)
        ids = self.store.get_tx_ids(height)
        if raw is None or ids is None:
            return None
        header = BlockHeader.decode(raw)
        self._check_served(check_served_header, self.store, height, header)
        return header, ids

    def get_block_summary_by_hash(self, block_id: bytes) -> tuple[BlockHeader, list[bytes]] | None:
        height = self.store.get_height_by_hash(block_id)
        return None if height is None else self.get_block_summary(height)

    def get_receipt(self, tx_id: bytes) -> tuple[Receipt, int, int] | None:
        loc = self.store.get_tx_location(tx_id)
        rraw = self.store.get_receipt(tx_id)
        if loc is None or rraw is None:
            return None
        return Receipt.decode(rraw), loc[0], loc[1]

    def is_pending(self, tx_id: bytes) -> bool:
        return tx_id in self.mempool

    def call(self, contract: str, method: str, args: Sequence[Value]) -> Value:
        try:
            return self.chain.executor.query(contract, method, args)
        except ContractError as exc:
            raise ApiError(ErrorCode.QUERY_FAILED, str(exc)) from None

    def describe_contracts(self) -> dict[str, Any]:
        return self.registry.describe()

    # Proof methods: assembled off the loop with a bounded share per client (node/proofserve.py).

    async def tx_proof(
        self, tx_id: bytes, at_height: int | None = None, *, client: str = ""
    ) -> dict[str, Any]:
        return await self.proofs.tx_proof(tx_id, at_height, client)

    async def consistency_proof(
        self, old_height: int, new_height: int, *, client: str = ""
    ) -> dict[str, Any]:
        return await self.proofs.consistency_proof(old_height, new_height, client)

    async def commit_proof(self, height: int, *, client: str = "") -> dict[str, Any]:
        return await self.proofs.commit_proof(height, client)

    def _header(self, height: int) -> BlockHeader:
        raw = self.store.get_header_by_height(height)
        if raw is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no block at height {height}")
        header = BlockHeader.decode(raw)
        self._check_served(check_served_header, self.store, height, header)
        return header

    # --- NodeApi: waiting and subscriptions -----------------------------------------------------

    def dropped_reason(self, tx_id: bytes) -> ApiError | None:
        """Why `tx_id` left this node's pool without committing (it never will), if it did."""
        why = self.mempool.dropped_reason(tx_id)
        return None if why is None else rejected(why.rejection, why.message)

    async def wait_tx(self, tx_id: bytes, timeout_s: float) -> tuple[Receipt, int, int] | None:
        """The receipt once the tx commits; None at the timeout; ApiError with the recorded
        reason if the tx left the pool without committing."""
        got = self._receipt_or_reason(tx_id)
        if got is not None:
            return got
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_id, []).append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            return self._receipt_or_reason(tx_id)
        finally:
            lst = self._waiters.get(tx_id)
            if lst is not None and fut in lst:
                lst.remove(fut)
                if not lst:
                    del self._waiters[tx_id]
        return self._receipt_or_reason(tx_id)

    def _receipt_or_reason(self, tx_id: bytes) -> tuple[Receipt, int, int] | None:
        got = self.get_receipt(tx_id)
        if got is None:
            dropped = self.dropped_reason(tx_id)
            if dropped is not None:
                raise dropped
        return got

    def subscribe_heads(self) -> AsyncIterator[Block]:
        """Every block committed from this call on (registered now, not at first iteration)."""
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
        self._head_subs.add(q)
        return _drain(q, lambda: self._head_subs.discard(q))

    def subscribe_events(self, contract: str | None, name: str | None) -> AsyncIterator[Any]:
        """(height, tx_id, Event) of matching committed events, from this call on."""
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=4096)
        entry = (contract, name, q)
        self._event_subs.add(entry)
        return _drain(q, lambda: self._event_subs.discard(entry))

    def metrics_text(self) -> bytes:
        self.metrics.pool.set(len(self.mempool))
        self.metrics.peers.set(self.peer_count())
        self.metrics.lag.set(self.replica.lag)
        return generate_latest(self.metrics.registry)

    def pending_proof_for(self, proof: CommitProof) -> None:  # pragma: no cover - p2p hook
        pass


_OVERFLOW = object()


def extract_tx_bytes(block_bytes: bytes, index: int) -> bytes:
    """The canonical bytes of transaction `index` inside an encoded Block `[6, header, [txs]]`,
    found by skipping (in msgpack's C code) instead of decoding the whole block."""
    u = msgpack.Unpacker(raw=False, max_buffer_size=len(block_bytes) + 1)
    u.feed(block_bytes)
    if u.read_array_header() != 3:
        raise ValueError("not an encoded block")
    u.skip()  # tag
    u.skip()  # header
    n = u.read_array_header()
    if not 0 <= index < n:
        raise IndexError(f"block has {n} transactions, no index {index}")
    for _ in range(index):
        u.skip()
    start = u.tell()
    u.skip()
    return block_bytes[start : u.tell()]


async def _drain(q: asyncio.Queue[Any], cleanup: Callable[[], None]) -> AsyncIterator[Any]:
    """Yield a subscriber's queue until it overflows or the consumer closes the iterator."""
    try:
        while True:
            item = await q.get()
            if item is _OVERFLOW:
                return
            yield item
    finally:
        cleanup()


def _offer(q: asyncio.Queue[Any], item: Any) -> None:
    """Deliver to a subscriber; a subscriber too slow to keep up is ended, not buffered forever."""
    try:
        q.put_nowait(item)
    except asyncio.QueueFull:
        while not q.empty():
            q.get_nowait()
        q.put_nowait(_OVERFLOW)
