"""One node, wired: store, pool, chain, consensus driver, commit bus, queries, proofs, transport
(implements node.api.NodeApi).

Rules this module keeps (DESIGN.md, "The way a transaction travels"; docs/architecture.md
"The node"):
1. NodeService is wiring: each part is built here and given what it needs through its
   constructor; the work is theirs. The consensus driver (node/driver.py) runs the replica and
   the chain's write side on the consensus thread — persist, then send, then apply — and never on
   the event loop; the loop runs RPC, admission (node/admission.py), the network and the commit
   bus's listeners.
2. A transaction is acknowledged (`submit_raw_tx` returns) only when it is in the pool; its
   receipt is reported only after its block's synced batch is written (the commit bus publishes
   after the chain's head is published, node/commitbus.py rule 1).
3. Signature verification runs in worker threads or processes, never on the loop; so do proofs
   (node/proofserve.py) and block execution (the consensus thread).
4. Reads on the loop stay consistent while the consensus thread commits (node/queries.py rule 1).
5. Fail-stop (docs/ops.md, "Limits and failure behaviour"): an exception that escapes a consensus
   step, its effects (a store write, a commit) or a served read of a damaged record is one the
   node cannot handle. It is logged once at CRITICAL, `fatal` is set, nothing is stepped or
   admitted afterwards, `status` raises (so `/health` answers 503) and the process exits with
   EXIT_FATAL (node/daemon.py): a node that cannot write must not go on acknowledging
   transactions at a frozen height.
6. The consensus thread goes first: the event loop runs `worker_nice` nice steps below it, the
   admission verify threads twice that (node/threadprio.py; docs/benchmarks.md session 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.registry import Collector

from gmchain.chain.core import Chain, CommittedBlock
from gmchain.chain.txrules import KeyCache, SignatureCache, TxRules
from gmchain.consensus import ConsensusConfig, Replica
from gmchain.consensus.messages import ConsensusMessage
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.consensus.types import EpochStart, make_validator_set
from gmchain.crosschain import node_registry
from gmchain.crypto_sm import PrivateKey, PublicKey
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.epoch import EpochConfig
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block, Genesis, NodeId, QuorumCert, Receipt, SignedTx
from gmchain.node.admission import Admission, CommittedView
from gmchain.node.api import ApiError, ErrorCode, NodeStatus, rejected
from gmchain.node.chainpool import MempoolPool
from gmchain.node.commitbus import CommitBus, Subscriptions, TxWaiters
from gmchain.node.config import NodeConfig
from gmchain.node.diskspace import FreeSpaceGuard
from gmchain.node.driver import ConsensusDriver, ReplicaView
from gmchain.node.epochreplica import build_replica
from gmchain.node.mempool import MempoolConfig
from gmchain.node.metrics import NodeMetrics, refresh_scrape_metrics
from gmchain.node.opslog import StoryLogs, compute_peer_names
from gmchain.node.poolwal import PoolWal
from gmchain.node.proofserve import ProofLimits, ProofService
from gmchain.node.queries import Queries
from gmchain.node.sharedpool import SharedMempool
from gmchain.node.signing import KeySigner, KeyVerifier
from gmchain.node.threadprio import Precedence
from gmchain.node.transport import NoPeers, Transport
from gmchain.node.verifypool import VerifyProcesses

__all__ = ["EXIT_FATAL", "KeySigner", "KeyVerifier", "NodeService"]

log = logging.getLogger("gmchain.node")

_Metrics = NodeMetrics  # (node/admission.py's name for it)

VERSION = "0.1.0"
CATCH_UP_SLACK = 1  # blocks a healthy replica may trail while the QC that commits them is in flight
EXIT_FATAL = 70  # the process's exit status after a fatal error (EX_SOFTWARE, sysexits.h)


def _now_ms() -> int:
    return int(time.time() * 1000)


class NodeService:
    """Everything one node does, wired together; implements node.api.NodeApi."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        genesis: Genesis,
        key: PrivateKey,
        store: Store,
        transport: Transport | None = None,
        consensus_config: ConsensusConfig | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        wal: PoolWal | None = None,
    ) -> None:
        self.config, self.genesis, self.key, self.store = config, genesis, key, store
        self.clock_ms, self.wal = clock_ms, wal
        self.transport: Transport = NoPeers() if transport is None else transport
        watched = [store.path] if wal is None else [store.path, str(wal.path)]
        self.disk_guard = FreeSpaceGuard(watched, config.min_free_disk_mb)
        self.node_id = NodeId(key.public_key.address)
        self.metrics = NodeMetrics()
        self.registry = node_registry()
        self.rules = TxRules(
            chain_id=genesis.chain_id,
            replay_window=genesis.replay_window,
            registry=self.registry,
            keys=KeyCache(),
            verified=SignatureCache(),
        )
        self.mempool = SharedMempool(
            config=MempoolConfig(
                max_txs=config.mempool_max_txs,
                per_sender_max=config.mempool_per_sender,
                dropped_memory=config.mempool_dropped_memory,
            ),
            rules=self.rules,
        )
        self.mempool.on_evicted = self._evicted_anywhere
        # Owned by the consensus thread (the chain reads it while building blocks); the commit
        # listener's feedback reaches it through `driver.call`.
        # (every PackingConfig field is a node config key of the same name)
        packing = {f.name: getattr(config, f.name) for f in dataclasses.fields(PackingConfig)}
        self.packing = PackingPolicy(PackingConfig(**packing))
        self.chain = Chain(
            genesis=genesis,
            store=store,
            rules=self.rules,
            pool=MempoolPool(self.mempool),
            packing=self.packing,
            max_block_txs=config.max_block_txs,
            pack_scan_max=config.pack_scan_max_txs,
            timer=time.perf_counter,
        )
        head_height = self.chain.head.height
        voters = self.chain.validators.validators_at(head_height)
        self.validators = self.chain.validators.voting_set_at(head_height)
        self.is_validator = self.node_id in self.validators
        self.verifier = KeyVerifier([PublicKey.from_bytes(v.pubkey) for v in voters])
        self.consensus_config = consensus_config or ConsensusConfig(
            round_timeout_ms=config.round_timeout_ms,
            max_round_timeout_ms=config.max_round_timeout_ms,
        )
        self.consensus_config.validate()
        # Issue 12 (E5): a node restarted after an epoch change runs the current epoch's replica
        # (chain/epochs.py keeps the switch that started it; a chain without epochs has none).
        current: EpochStart | None = self.chain.current_epoch_switch()
        if current is not None:
            self.on_epoch(current.config)
        replica = self._replica_for_epoch(current, restarting=True)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `start` ran on
        # The story in the log (node/opslog.py): commits on the loop, sync and round timeouts
        # on the consensus thread (from `_on_stepped`).
        names = compute_peer_names(config, self.node_id, self.validators.node_ids)
        self.logs = StoryLogs(
            every_blocks=config.log_commit_every_blocks,
            every_s=config.log_commit_every_s,
            leader_of=lambda r: names.get(self.validators.leader(r), "?"),
            on_timeout=self.metrics.round_timeouts.inc,
            timed_out_round=int(replica.state.timed_out_round),
        )
        self.bus = CommitBus()
        self.waiters = TxWaiters()
        self.subscriptions = Subscriptions()
        self.bus.subscribe(self._count_commit)
        self.bus.subscribe(self.waiters.on_commit)
        self.bus.subscribe(self.subscriptions.on_commit)
        self.driver = ConsensusDriver(
            replica=replica,
            chain=self.chain,
            store=store,
            transport=self.transport,
            node_id=self.node_id,
            clock_ms=clock_ms,
            to_loop=self._to_loop,
            on_commit=self.bus.publish,
            on_fail=self._fail,
            on_stepped=self._on_stepped,
            # Issue 12 (E4/E5, node/driver.py rule 6): the chain hands over an epoch switch after
            # the commit that ended the epoch; chain/epochs.py provides it (a chain without it
            # never switches).
            take_epoch_switch=self.chain.take_epoch_switch,
            make_replica=self._replica_for_epoch,
            on_epoch=self.on_epoch,
        )
        self.queries = Queries(
            store=store,
            registry=self.registry,
            executor=self.chain.executor,
            on_corrupt=lambda exc: self._fail("a read of the ledger store (damaged record)", exc),
            head_height=lambda: self.chain.head.height,
        )
        # NodeApi reads answered by Queries as they are (bound, not wrapped)
        q = self.queries
        self.current_epoch, self.epoch_config = q.current_epoch, q.epoch_config
        self.get_block, self.get_block_by_hash = q.get_block, q.get_block_by_hash
        self.get_block_summary, self.get_block_id = q.get_block_summary, q.get_block_id
        self.get_block_summary_by_hash = q.get_block_summary_by_hash
        self.get_tx, self.get_receipt, self.call = q.get_tx, q.get_receipt, q.call
        self.describe_contracts = q.describe_contracts
        self.account_of, self.org_of = q.account_of, q.org_of  # RPC logins (node/rpcauth.py)
        self.proofs = ProofService(
            store=store,
            validators=voters,
            head_height=lambda: self.chain.head.height,
            limits=ProofLimits(
                max_span=config.proof_max_span,
                threads=config.proof_threads,
                jobs_per_client=config.proof_jobs_per_client,
                queue_per_client=config.proof_queue_per_client,
            ),
        )
        self.epoch_proof = self.proofs.epoch_proof
        self._wake = asyncio.Event()  # set when the pool gained txs: forwarded to the driver
        self._precedence = Precedence(config.worker_nice)  # rule 6
        self._pool = self._precedence.pool(4, "verify")
        n_procs = config.verify_processes
        self._procs = VerifyProcesses(n_procs, self._pool, self.rules.keys) if n_procs > 0 else None
        self._timed: dict[bytes, tuple[float, float]] = {}  # received, pooled (rule 6)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.admission = Admission(
            rules=self.rules,
            mempool=self.mempool,
            chain=self.chain,
            committed=CommittedView(
                tx_location=store.get_tx_location,
                account_of=self.chain.executor.lookup_sender_uncached,
                org_removal_of=self.chain.executor.lookup_org_removal_uncached,
            ),
            wal=wal,
            disk_guard=self.disk_guard,
            threads=self._pool,
            procs=self._procs,
            rejected_metric=self.metrics.rejected,
            clock_ms=clock_ms,
            is_closing=lambda: self._closing,
            on_admitted=self._on_admitted,
            consensus_busy=lambda: self.chain.executing,
        )
        self.verify_signature = self.admission.verify_signature  # an RPC login's (rpcauth)
        # Rule 5: the error that stopped the node (None while it works); `fatal` is set with it.
        self.fatal_error: BaseException | None = None
        self.fatal = asyncio.Event()
        self.metrics.height.set(self.chain.head.height)
        self.metrics.last_block_time.set(self.chain.head.timestamp_ms / 1000)
        role = "validator" if self.is_validator else "observer"
        self.metrics.node_info.labels(config.name, self.node_id.hex(), genesis.chain_id, role).set(
            1
        )

    def _replica_for_epoch(self, switch: EpochStart | None, *, restarting: bool = False) -> Replica:
        """node/driver.py rule 6 (on the consensus thread): the replica of the epoch `switch`
        starts (node/epochreplica.py; None: epoch 0)."""
        return build_replica(
            chain=self.chain,
            store=self.store,
            key=self.key,
            node_id=self.node_id,
            chain_id=self.genesis.chain_id,
            base_config=self.consensus_config,
            genesis_validators=(self.validators, self.verifier),
            committed_qc=self._committed_qc,
            now_ms=self.clock_ms(),
            switch=switch,
            restarting=restarting,
        )

    def on_epoch(self, config: EpochConfig) -> None:
        """The hook node/driver.py rule 6 calls on the loop when an epoch starts: the status
        answers with the new set, and the P2P layer admits exactly `config.admitted_keys()` from
        here (node/transport.py rule 3; node/network.py rule 5, E9)."""
        self.validators = make_validator_set(config)
        self.is_validator = self.node_id in self.validators
        self.metrics.set_epoch(config.epoch)
        self.transport.on_epoch(config)

    def _committed_qc(self) -> QuorumCert:
        """The QC that certifies the committed head (from its commit proof), or genesis's."""
        head = self.chain.head
        if head.height == 0:
            return QuorumCert(
                epoch=head.epoch, block_id=head.block_id, round=head.round, height=head.height
            )
        proof = self.chain.find_commit_proof(head.height)
        if proof is not None and proof.header.justify.block_id == head.block_id:
            return proof.header.justify
        # The proof certifies a later block only if the head is that block's ancestor; the
        # head's own certificate then sits in the next header, which we do not store. Fall back
        # to the head's justify (certifies its parent); sync brings the replica forward.
        return head.justify

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._procs is not None:
            await self._procs.start()
        if self.wal is not None:
            self.wal.start()
            await self._recover_pool()
        self.driver.start()
        self._precedence.lower_loop()  # rule 6: once the consensus thread has started
        self._task = self._loop.create_task(self._forward_wakes())

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
        # The consensus thread ends after its current step, so nothing writes the store after
        # the caller closes it; the worker jobs already running end too (short reads).
        await asyncio.to_thread(self.driver.stop)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.proofs.close()
        if self._procs is not None:
            self._procs.close()
        self.waiters.cancel_all()

    async def _forward_wakes(self) -> None:
        """Admission sets `_wake` when the pool gained transactions: a leader may propose now."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            self.driver.wake()

    # --- admission (node/admission.py) ---------------------------------------------------------

    async def submit_raw_tx(self, raw: bytes) -> bytes:
        return await self.admission.submit_raw_tx(raw)

    async def admit_many(
        self, items: Sequence[tuple[SignedTx, bytes]], *, gossip: bool = True
    ) -> list[ApiError | None]:
        """Admit a peer's gossiped transactions (node/network.py)."""
        return await self.admission.admit_many(items, gossip=gossip)

    def _on_admitted(
        self, txs: Sequence[tuple[SignedTx, bytes]], gossip: bool, received: float
    ) -> None:
        """Transactions entered the pool (node/admission.py): time them (rule 6), gossip them."""
        timed = (received, time.monotonic())  # (received, pooled): admission rule 6
        for tx, raw in txs:
            self._timed[tx.tx_id] = timed
            if gossip:
                self.transport.gossip(raw)
        self.metrics.pool.set(len(self.mempool))
        self._wake.set()

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the loop, in FIFO order (node/driver.py rule 3)."""
        loop = self._loop
        if loop is None:  # not started: the caller is on the constructing thread
            fn(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone
            loop.call_soon_threadsafe(fn, *args)

    def _fail(self, what: str, exc: BaseException) -> None:
        """Rule 5: stop working, loudly, once; the daemon ends the process on `fatal`."""
        if self.fatal_error is not None:
            return
        self.fatal_error = exc
        self._closing = True  # admission refuses from now on
        self.driver.halt()
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

    # --- what the network asks (node/network.py PeerNode) ---------------------------------------

    def deliver(self, sender: NodeId, msg: ConsensusMessage) -> None:
        """A consensus message from a peer (already decoded and size-checked)."""
        if self.fatal_error is None:
            self.driver.deliver(sender, msg)

    def send_status(self, to: NodeId | None) -> None:
        """Our certificates (consensus L9, L10) to a peer whose session just started, or to every
        peer (`to` None, periodically): how a node behind on an idle chain learns it is behind."""
        if self.fatal_error is None:
            self.driver.send_status(to)

    def pending_txs(self, max_count: int) -> list[SignedTx]:
        """Up to `max_count` pending transactions, oldest senders first (for re-gossip)."""
        return self.mempool.take(max_count, 1 << 62, ())

    def register_metrics(self, collector: Collector) -> None:
        self.metrics.registry.register(collector)

    # --- commit listeners (on the loop, published by the driver through the bus) ---------------

    def _on_stepped(self, view: ReplicaView) -> None:
        """After each consensus step, on the consensus thread: round metrics, the sync and
        round-timeout lines (node/opslog.py rule 4)."""
        self.metrics.round.set(view.round)
        self.logs.on_view(
            timed_out_round=view.timed_out_round,
            height=self.chain.head.height,
            lag=view.lag,
            catching_up=self._is_catching_up(view),
            heard=view.heard_status,
        )

    def _is_catching_up(self, view: ReplicaView) -> bool:
        """gm_status `catchingUp`: behind the peers' verified committed height by more than a
        commit in flight, or (with peers to hear from) not yet told where they are (L10)."""
        return not self._has_heard(view) or view.lag > CATCH_UP_SLACK

    def _has_heard(self, view: ReplicaView) -> bool:
        # A node of a multi-node chain (or an observer) knows it is caught up only once a peer
        # told it its certificates (consensus L10); a lone validator is the chain.
        lone = len(self.validators) == 1 and self.is_validator
        return view.heard_status or not self.transport.has_peers or lone

    def _count_commit(self, done: list[CommittedBlock]) -> None:
        """Metrics, the sampled commit line, the packing policy's feedback and the pool log, per
        committed block."""
        now = time.monotonic()
        self.logs.commits.on_commit([cb.block for cb in done])
        for cb in done:
            block = cb.block
            self.metrics.height.set(block.header.height)
            self.metrics.last_block_time.set(block.header.timestamp_ms / 1000)
            self.metrics.count_failed_receipts(cb.result.receipts)
            self.metrics.block_txs.observe(len(block.txs))
            self.metrics.committed.inc(len(block.txs))
            worst = -1.0
            for tx in block.txs:
                timed = self._timed.pop(tx.tx_id, None)
                if timed is not None:
                    received, pooled = timed  # admission rule 6
                    self.metrics.latency.observe(now - received)
                    worst = max(worst, now - pooled)
            if worst >= 0:
                # One observation per block (the slowest of its txs admitted here): the policy
                # adapts per block, so a big block must not count as hundreds of slow samples.
                # It is fed the pool-to-commit part (admission rule 6): what packing decides.
                # The queue depth goes with it: a node sees every commit but leads only 1/n of
                # the rounds, so growth must not depend on building blocks itself.
                self.driver.call(functools.partial(self._packing_feedback, int(worst * 1000)))
            if self.wal is not None and block.txs:
                self.wal.remove(t.tx_id for t in block.txs)
        self.metrics.pool.set(len(self.mempool))
        self.metrics.set_epoch(self.queries.latest_epoch())  # one state read per batch
        if len(self._timed) > 2 * len(self.mempool) + 1024:
            # Txs that left the pool without committing (expired, dropped) leave no timer behind.
            self._timed = {t: v for t, v in self._timed.items() if t in self.mempool}

    def _packing_feedback(self, latency_ms: int) -> None:
        """On the consensus thread, which owns the packing policy."""
        self.packing.observe_queue(
            pending=len(self.mempool), oldest_pending_ms=self.mempool.oldest_arrival_ms()
        )
        self.packing.observe_commit_latency(latency_ms)

    def _evicted_anywhere(self, tx_ids: list[bytes]) -> None:
        """The pool evicts on the consensus thread (chain/core.py rule 4): hop to the loop."""
        self._to_loop(self._on_evicted, tx_ids)

    def _on_evicted(self, tx_ids: list[bytes]) -> None:
        """Txs left the pool without committing (node/mempool.py rule 2): their waiters hear the
        reason now, and the pool log forgets them (they can never commit)."""
        for tx_id in tx_ids:
            self._timed.pop(tx_id, None)
            self.waiters.release(tx_id)
        if self.wal is not None:
            self.wal.remove(tx_ids)

    # --- NodeApi: status and reads --------------------------------------------------------------

    def status(self) -> NodeStatus:
        if self.fatal_error is not None:
            raise ApiError(
                ErrorCode.NOT_READY, f"node stopped after a fatal error: {self.fatal_error}"
            )
        head = self.chain.head
        view = self.driver.view
        lag = view.lag
        heard = self._has_heard(view)
        return NodeStatus(
            chain_id=self.genesis.chain_id,
            node_id=self.node_id,
            role="validator" if self.is_validator else "observer",
            height=head.height,
            head=head.block_id,
            genesis=self.chain.genesis_id,
            pending_txs=len(self.mempool),
            peers=self.transport.peer_count(),
            version=VERSION,
            round=view.round,
            committed_txs=head.acc_size,
            replay_window=self.rules.window_at(head.height + 1),  # E11: the current epoch's
            peer_height=head.height + lag,
            lag=lag,
            catching_up=self._is_catching_up(view),
            healthy=heard and lag <= self.config.health_max_lag_blocks,
        )

    def height(self) -> int:
        return self.chain.head.height

    def is_pending(self, tx_id: bytes) -> bool:
        return tx_id in self.mempool

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
        # (no await between the look and the registration: a commit's notification runs on
        # this loop, so it cannot fall between them)
        await self.waiters.wait(tx_id, timeout_s)
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
        return self.subscriptions.heads()

    def subscribe_events(self, contract: str | None, name: str | None) -> AsyncIterator[Any]:
        """(height, tx_id, Event) of matching committed events, from this call on."""
        return self.subscriptions.events(contract, name)

    def metrics_text(self) -> bytes:
        refresh_scrape_metrics(
            self.metrics,
            view=self.driver.view,
            pool_size=len(self.mempool),
            transport=self.transport,
            catching_up=self._is_catching_up(self.driver.view),
            free_bytes=self.disk_guard.free_bytes(),
            voting=self.validators,
            node_id=self.node_id,
        )
        self.metrics.set_governance(self.driver.later_epoch, self.queries.proposal_counts())
        return generate_latest(self.metrics.registry)
