"""Admission: how a transaction gets into the pool. An object NodeService holds and delegates to.

Rules this module keeps (DESIGN.md, "The way a transaction travels"):
1. A transaction is acknowledged (`submit_raw_tx` returns) only when it is in the pool and, for
   RPC submissions, in the pool log on disk (node/poolwal.py).
2. The transaction rules are chain/txrules.py's, in its order (R1-R9); a refusal's JSON-RPC code
   comes from node/api.py REJECTION_CODES. The checks that read no state run inline on the loop
   (decoding, `Mempool.precheck`); the store reads (R7 committed, R8 admitted sender) and the
   SM2 signature (R9) run in worker threads, or the signature in worker processes when
   `verify_processes` > 0 (node/verifypool.py) — never on the loop.
3. Work is batched: a gossip batch, and the submissions of one loop iteration (the requests of a
   JSON-RPC batch start together), go through one `admit_many`; each caller still gets its own
   outcome, in order.
4. The pool never holds a committed transaction: committed blocks are re-checked right before the
   insert, with no await in between.
5. Admission yields to block execution: while the consensus thread builds, validates, or (a
   synced block) commits and executes a block (`consensus_busy`: chain/core.py rule 9), a
   batch waits before its checks — in `YIELD_POLL_S` sleeps, so the loop goes on serving the
   network and reads — for at most `YIELD_MAX_S`. Every check still runs; only when. Why: the
   consensus thread's block execution releases the GIL at every store read, and each time it
   must wait for the GIL again while a busy loop holds it (up to a switch interval, 5 ms); at
   cluster load the loop was always busy admitting, and a block's validation took seconds of
   waiting for a fraction of a second of work, longer than a round's timeout
   (docs/benchmarks.md, session 5). The rest of a step (its synced writes, the commit's
   batch) does not hold admission: from issue 11 to session 12 the whole step did, and on one
   node at 1,500 tx/s the thread was in a step most of the time, so nearly every batch waited
   the full bound and reached the pool in bursts (docs/benchmarks.md, sessions 12 and 13).
   When consensus ran on the loop (before issue 11) admission waited for a whole step,
   without the bound.
6. A transaction's commit latency, as the node reports it (`gmchain_commit_latency_seconds`),
   is timed from when admission received it, not from when it entered the pool: for an RPC
   submission, when the first request of its batch reached `submit_raw_tx` (after the HTTP
   request was read and parsed; rule 3's batch is one loop iteration); for a peer's gossip
   batch, when `admit_many` started; for the pool log's transactions re-admitted at start,
   the restart (the log keeps no times). The wait of rule 5, the checks and the pool log are
   part of what a client waits for: timed from the pool, a node at 1,500 tx/s whose admission
   took ~50 ms reported about half the latency its clients saw (docs/benchmarks.md, session
   12). The packing policy is still fed the pool-to-commit part (consensus/packing.py K3, K4):
   that is the part its cut decisions move; feeding it the whole latency was measured and not
   kept (session 12).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from prometheus_client import Counter

from gmchain.chain.txrules import Account, Rejection, TxRejected, TxRules
from gmchain.ledger.types import BlockHeader, SignedTx
from gmchain.node.api import ApiError, ErrorCode, rejected
from gmchain.node.diskspace import FreeSpaceGuard
from gmchain.node.mempool import Mempool
from gmchain.node.poolwal import PoolLogError, PoolWal
from gmchain.node.verifypool import VerifyProcesses, split_even, verify_triples

__all__ = ["Admission", "AdmissionChain", "CommittedView"]

log = logging.getLogger("gmchain.node")

_ADMISSION_CHUNKS = 4  # worker-thread jobs per batch whose signatures threads verify (4 threads)
YIELD_POLL_S = 0.002  # rule 5: how often a waiting batch looks again
YIELD_MAX_S = 0.05  # rule 5: the longest a batch waits for consensus (then it runs anyway)
_Submit = tuple[SignedTx, bytes, "asyncio.Future[None]"]
_Items = Sequence[tuple[SignedTx, bytes]]


def _stopping() -> ApiError:
    return ApiError(ErrorCode.NOT_READY, "node is stopping; submit again to a running node")


class AdmissionChain(Protocol):
    """What admission reads of the chain on the loop: the head, and what committed lately."""

    @property
    def head(self) -> BlockHeader: ...

    def committed_since(self, height: int, tx_id: bytes) -> bool | None: ...


class CommittedView:
    """R7 and R8 against committed state, read from the store (safe from any worker thread)."""

    def __init__(
        self,
        *,
        tx_location: Callable[[bytes], object | None],
        account_of: Callable[[bytes], Account | None],
        org_removal_of: Callable[[str], int | None],
    ) -> None:
        self._tx_location = tx_location
        self._account_of = account_of  # uncached: a worker must not fill a cache with stale data
        self._org_removal_of = org_removal_of  # R8b, uncached likewise

    def in_uncommitted(self, tx_id: bytes) -> bool:
        return False  # (a tx of an uncommitted block is still pending: the pool refuses it)

    def is_committed(self, tx_id: bytes) -> bool:
        return self._tx_location(tx_id) is not None

    def sender_account(self, pubkey: bytes) -> Account | None:
        return self._account_of(pubkey)

    def org_removal(self, org: str) -> int | None:
        return self._org_removal_of(org)


class Admission:
    """Checks transactions and puts the good ones in the pool (the module rules)."""

    def __init__(
        self,
        *,
        rules: TxRules,
        mempool: Mempool,
        chain: AdmissionChain,
        committed: CommittedView,
        wal: PoolWal | None,
        disk_guard: FreeSpaceGuard,
        threads: ThreadPoolExecutor,
        procs: VerifyProcesses | None,
        rejected_metric: Counter,
        clock_ms: Callable[[], int],
        is_closing: Callable[[], bool],
        on_admitted: Callable[[Sequence[tuple[SignedTx, bytes]], bool, float], None],
        consensus_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self._rules = rules
        self._mempool = mempool
        self._chain = chain
        self._committed = committed
        self._wal = wal
        self._disk_guard = disk_guard
        self._threads = threads
        self._procs = procs
        self._rejected_metric = rejected_metric
        # The metric's child per label value, looked up once: `labels()` took a fifth of a
        # loop refusing re-gossiped duplicates (py-spy, docs/benchmarks.md session 5).
        self._rejected_by: dict[str, Counter] = {}
        self._clock_ms = clock_ms
        self._is_closing = is_closing
        # Told once per admit_many of the transactions that entered the pool, whether to gossip
        # them, and when they were received (rule 6; NodeService: latency clock, gossip, pool
        # gauge, wake the consensus loop).
        self._on_admitted = on_admitted
        self._consensus_busy = consensus_busy  # rule 5
        # RPC submissions of this loop iteration (a JSON-RPC batch), admitted together (rule 3).
        self._submits: list[_Submit] = []
        self._submits_since = 0.0  # when the first of `_submits` reached submit_raw_tx (rule 6)
        self._tasks: set[asyncio.Task[None]] = set()  # admit_many calls under way for _submits

    # --- the RPC entry --------------------------------------------------------------------------

    async def verify_signature(self, pubkey: bytes, root: bytes, signature: bytes) -> bool:
        """One SM2 verification off the loop, on the pools admission uses (an RPC login,
        node/rpcauth.py): the worker processes if any, else the verify threads and KeyCache."""
        triple = [(pubkey, root, signature)]
        if self._procs is not None:
            return (await self._procs.verify(triple))[0]
        loop = asyncio.get_running_loop()
        keys = self._rules.keys
        return (await loop.run_in_executor(self._threads, verify_triples, triple, keys))[0]

    async def submit_raw_tx(self, raw: bytes) -> bytes:
        received = time.monotonic()  # rule 6
        if self._is_closing():
            raise _stopping()
        try:
            tx = self._rules.decode(raw)  # R1, R2
        except TxRejected as exc:
            raise self._refuse(exc) from None
        # Submissions that arrive in the same loop iteration (the requests of one JSON-RPC batch
        # are started together) are admitted by one admit_many call.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self._submits:
            self._submits_since = received
            loop.call_soon(self._flush_submits)
        self._submits.append((tx, raw, fut))
        await fut
        return tx.tx_id

    async def stop(self) -> None:
        """At stop: queued submissions fail with NOT_READY, batches being admitted are cancelled
        (their callers get NOT_READY too) and awaited, so no worker job outlives the store."""
        queued, self._submits = self._submits, []
        for _, _, fut in queued:
            if not fut.done():
                fut.set_exception(_stopping())
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _flush_submits(self) -> None:
        batch, self._submits = self._submits, []
        received = self._submits_since
        task = asyncio.get_running_loop().create_task(self._admit_submits(batch, received))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _admit_submits(self, batch: list[_Submit], received: float) -> None:
        try:
            out = await self.admit_many([(tx, raw) for tx, raw, _ in batch], received=received)
        except asyncio.CancelledError:  # shutting down: a clear error, not a cancelled caller
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(_stopping())
            raise
        except Exception as exc:  # a bug: every caller must hear it (admit_many returns errors)
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, _, fut), failure in zip(batch, out, strict=True):
            if fut.done():
                continue  # the caller went away (cancelled)
            if failure is None:
                fut.set_result(None)
            else:
                fut.set_exception(failure)

    # --- admitting decoded transactions ---------------------------------------------------------

    async def admit(
        self, tx: SignedTx, raw: bytes, *, gossip: bool = True, durable: bool = True
    ) -> None:
        """Admit a decoded transaction (from RPC or from a peer's gossip). Raises ApiError.

        durable=True (RPC submissions): return only once the tx is in the pool log on disk."""
        (failure,) = await self.admit_many([(tx, raw)], gossip=gossip, durable=durable)
        if failure is not None:
            raise failure

    async def admit_many(
        self,
        items: _Items,
        *,
        gossip: bool = True,
        durable: bool = True,
        received: float | None = None,
    ) -> list[ApiError | None]:
        """Admit several decoded transactions; one outcome per item (None = admitted).

        The steps: the checks that read no state, on the loop; the store reads and signatures
        off it; the pool log (durable); the insert into the pool."""
        if durable and (low := self._disk_guard.refusal()) is not None:
            # (node/diskspace.py: the reserve is for committing what was already acknowledged)
            return [self._refuse_storage(low) for _ in items]
        if received is None:  # rule 6 (a submission's batch brings its own)
            received = time.monotonic()
        await self._yield_to_consensus()
        out: list[ApiError | None] = [None] * len(items)
        todo = self._precheck(items, out)
        if not todo:
            return out
        checked_at = self._chain.head.height
        passed = await self._check_off_loop(items, todo, out)
        if durable and self._wal is not None and passed:
            passed = await self._log(self._wal, items, passed, out)
        self._insert(items, passed, out, checked_at, received, durable=durable, gossip=gossip)
        return out

    async def _yield_to_consensus(self) -> None:
        """Rule 5."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + YIELD_MAX_S  # (real time: a loaded loop's sleeps run long)
        while self._consensus_busy() and loop.time() < deadline:
            await asyncio.sleep(YIELD_POLL_S)

    def _precheck(self, items: _Items, out: list[ApiError | None]) -> list[int]:
        """R1, R3-R6 and the pool's own checks (no state but the head); the positions that pass."""
        head = self._chain.head.height
        todo: list[int] = []
        for i, (tx, raw) in enumerate(items):
            try:
                self._mempool.precheck(tx, len(raw), head)
            except TxRejected as exc:
                out[i] = self._refuse(exc)
                continue
            todo.append(i)
        return todo

    async def _check_off_loop(
        self, items: _Items, todo: list[int], out: list[ApiError | None]
    ) -> list[int]:
        """R7 (committed), R8 and R9 in worker threads (R9 in worker processes when there are
        some): LevelDB reads and OpenSSL release the GIL there, and the event loop stays free.

        The worker-thread checks run in a few chunks rather than one job per transaction: at
        cluster load the per-job cost (submit, futures, wake-ups) was 16 % of a node's event
        loop (py-spy, cluster4 at 700 tx/s), more than the checks' own share of it. With worker
        processes for the signatures, one job: the threads then only read the store (a few
        microseconds a read), and each more job is one more thread that must win the GIL back
        from the consensus thread before the batch can go on (docs/benchmarks.md, session 13)."""
        txs = [items[i][0] for i in todo]
        verify = [not self._rules.is_verified(t.tx_id) for t in txs]
        procs = self._procs if self._procs is not None and self._procs.active else None
        jobs = [
            [(txs[k], procs is None and verify[k]) for k in chunk]
            for chunk in split_even(range(len(txs)), _ADMISSION_CHUNKS if procs is None else 1)
        ]
        loop = asyncio.get_running_loop()
        checks = asyncio.gather(
            *(loop.run_in_executor(self._threads, self._check_in_thread, j) for j in jobs)
        )
        in_procs = [k for k in range(len(txs)) if verify[k]] if procs is not None else []
        bad_sig: set[int] = set()  # positions in `txs` whose signature a worker process refused
        if procs is not None and in_procs:
            triples = [(txs[k].body.sender, txs[k].tx_id, txs[k].signature) for k in in_procs]
            results, sig_ok = await asyncio.gather(checks, procs.verify(triples))
            bad_sig = {k for k, ok in zip(in_procs, sig_ok, strict=True) if not ok}
            self._rules.verified.mark(
                txs[k].tx_id for k, ok in zip(in_procs, sig_ok, strict=True) if ok
            )
        else:  # (nothing to verify in processes: threads verified, or every signature is known)
            results = await checks
        passed: list[int] = []
        failures = (f for r in results for f in r)
        for k, (i, failure) in enumerate(zip(todo, failures, strict=True)):
            if failure is None and k in bad_sig:
                failure = TxRejected(Rejection.BAD_SIGNATURE, "signature does not verify")
            if failure is not None:
                out[i] = self._refuse(failure)
            else:
                passed.append(i)
        return passed

    def _check_in_thread(self, batch: Sequence[tuple[SignedTx, bool]]) -> list[TxRejected | None]:
        """Runs in a worker thread: R7 (committed), R8, and R9 when asked."""
        out: list[TxRejected | None] = []
        for tx, verify in batch:
            try:
                self._rules.check_state(tx, self._committed)
                if verify:
                    self._rules.check_signature(tx)
            except TxRejected as exc:
                out.append(exc)
            else:
                out.append(None)
        return out

    async def _log(
        self, wal: PoolWal, items: _Items, passed: list[int], out: list[ApiError | None]
    ) -> list[int]:
        """Log first, then pool: a tx may commit only after its acknowledgement is durable, and
        a refused one is never reported as failed while it could still commit. Returns the
        positions whose entry is on disk."""
        logged = await asyncio.gather(
            *(wal.append(items[i][0].tx_id, items[i][1]) for i in passed),
            return_exceptions=True,
        )
        for got in logged:
            if isinstance(got, BaseException) and not isinstance(got, PoolLogError):
                raise got  # a bug, not the disk: _admit_submits reports it to every caller
        errors = {i: got for i, got in zip(passed, logged, strict=True) if got is not None}
        if not errors:
            return passed
        # The disk failed: those are not acknowledged, and not in the pool (the log already said
        # why; if a failed write reached the disk after all, the release deletes it unless an
        # acknowledged resubmission holds it: poolwal rule 2).
        wal.release([items[i][0].tx_id for i in errors])
        for i, err in errors.items():
            out[i] = self._refuse_storage(
                f"the node could not store the transaction ({err}); "
                "it is not accepted: retry later or submit to another node"
            )
        return [i for i in passed if i not in errors]

    def _insert(
        self,
        items: _Items,
        passed: list[int],
        out: list[ApiError | None],
        checked_at: int,
        received: float,
        *,
        durable: bool,
        gossip: bool,
    ) -> None:
        """Into the pool (rule 4: no await between the committed re-check and the insert)."""
        now_ms = self._clock_ms()
        head = self._chain.head.height
        admitted: list[tuple[SignedTx, bytes]] = []
        for i in passed:
            tx, raw = items[i]
            try:
                self._check_not_committed_since(tx, checked_at)
                self._mempool.add(tx, len(raw), head, now_ms)  # R5 on the new head, pool checks
            except TxRejected as exc:
                if durable and self._wal is not None and exc.rejection is not Rejection.DUPLICATE:
                    # (a DUPLICATE's log entry belongs to the concurrent admission that won, or
                    # to a transaction recovered into the pool at start)
                    self._wal.release([tx.tx_id])
                out[i] = self._refuse(exc)
                continue
            admitted.append((tx, raw))
        self._on_admitted(admitted, gossip, received)

    def _check_not_committed_since(self, tx: SignedTx, height: int) -> None:
        """R7 for blocks committed while we awaited (worker checks, pool log): in memory when
        they are recent, else in the store. The pool must never hold a committed tx (the
        executor trusts that)."""
        again = self._chain.committed_since(height, tx.tx_id)
        if again or (again is None and self._committed.is_committed(tx.tx_id)):
            raise TxRejected(Rejection.DUPLICATE, "transaction is already committed")

    # --- refusals -------------------------------------------------------------------------------

    def _refuse(self, exc: TxRejected) -> ApiError:
        self._count_refusal(exc.rejection.value)
        return rejected(exc.rejection, exc.message)

    def _refuse_storage(self, message: str) -> ApiError:
        self._count_refusal("storage_unavailable")
        return ApiError(ErrorCode.STORAGE_UNAVAILABLE, message)

    def _count_refusal(self, label: str) -> None:
        child = self._rejected_by.get(label)
        if child is None:
            child = self._rejected_by[label] = self._rejected_metric.labels(label)
        child.inc()
