"""Admission: how a transaction gets into the pool (a part of NodeService, node/service.py).

Rules this module keeps (DESIGN.md, "The way a transaction travels"):
1. A transaction is acknowledged (`submit_raw_tx` returns) only when it is in the pool and, for
   RPC submissions, in the pool log on disk (node/poolwal.py).
2. Checks run cheapest first: decoding and the pool's prechecks inline; the store reads (already
   committed? admitted sender?) and the SM2 signature in worker threads, or the signature in
   worker processes when `verify_processes` > 0 (node/verifypool.py) — never on the loop.
3. Work is batched: a gossip batch, and the submissions of one loop iteration (the requests of a
   JSON-RPC batch start together), go through one `admit_many`; each caller still gets its own
   outcome, in order.
4. The pool never holds a committed transaction: committed blocks are re-checked right before the
   insert, with no await in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from gmchain.chain.core import Chain
from gmchain.contracts.framework import Registry
from gmchain.ledger.codec import DecodeError
from gmchain.ledger.store import Store
from gmchain.ledger.types import SignedTx
from gmchain.node.api import ApiError, ErrorCode
from gmchain.node.diskspace import FreeSpaceGuard
from gmchain.node.mempool import Mempool, MempoolError
from gmchain.node.poolwal import PoolLogError, PoolWal
from gmchain.node.verifypool import VerifyProcesses, split_even, verify_signature

if TYPE_CHECKING:
    from gmchain.node.service import _Metrics

__all__ = ["AdmissionMixin"]

log = logging.getLogger("gmchain.node")


def _stopping() -> ApiError:
    return ApiError(ErrorCode.NOT_READY, "node is stopping; submit again to a running node")


_ADMISSION_CHUNKS = 4  # worker-thread jobs per admitted batch (the verify pool has 4 threads)


class AdmissionMixin:
    """The submission half of NodeService; the attributes below are NodeService's."""

    chain: Chain
    store: Store
    mempool: Mempool
    registry: Registry
    wal: PoolWal | None
    disk_guard: FreeSpaceGuard
    metrics: _Metrics
    clock_ms: Callable[[], int]
    gossip_hook: Callable[[bytes], None] | None
    _pool: ThreadPoolExecutor
    _procs: VerifyProcesses | None
    _submits: list[tuple[SignedTx, bytes, asyncio.Future[None]]]
    _admitted_at: dict[bytes, float]
    _bg_tasks: set[asyncio.Task[None]]
    _wake: asyncio.Event
    _closing: bool

    async def submit_raw_tx(self, raw: bytes) -> bytes:
        if self._closing:
            raise _stopping()
        try:
            tx = SignedTx.decode_tx(raw)
        except DecodeError as exc:
            self.metrics.rejected.labels("encoding").inc()
            raise ApiError(ErrorCode.BAD_ENCODING, f"transaction does not decode: {exc}") from None
        # Submissions that arrive in the same loop iteration (the requests of one JSON-RPC batch
        # are started together) are admitted by one admit_many call.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self._submits:
            loop.call_soon(self._flush_submits)
        self._submits.append((tx, raw, fut))
        await fut
        return tx.tx_id

    async def _stop_admission(self) -> None:
        """At stop: queued submissions fail with NOT_READY, batches being admitted are cancelled
        (their callers get NOT_READY too) and awaited, so no worker job outlives the store."""
        queued, self._submits = self._submits, []
        for _, _, fut in queued:
            if not fut.done():
                fut.set_exception(_stopping())
        tasks = list(self._bg_tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _flush_submits(self) -> None:
        batch, self._submits = self._submits, []
        task = asyncio.get_running_loop().create_task(self._admit_submits(batch))
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)

    async def _admit_submits(
        self, batch: list[tuple[SignedTx, bytes, asyncio.Future[None]]]
    ) -> None:
        try:
            out = await self.admit_many([(tx, raw) for tx, raw, _ in batch])
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
        items: Sequence[tuple[SignedTx, bytes]],
        *,
        gossip: bool = True,
        durable: bool = True,
    ) -> list[ApiError | None]:
        """Admit several decoded transactions; one outcome per item (None = admitted).

        The worker-thread checks run in a few chunks rather than one job per transaction: at
        cluster load the per-job cost (submit, futures, wake-ups) was 16 % of a node's event
        loop (py-spy, cluster4 at 700 tx/s), more than the checks' own share of it."""
        out: list[ApiError | None] = [None] * len(items)
        if durable and (low := self.disk_guard.refusal()) is not None:
            # (node/diskspace.py: the reserve is for committing what was already acknowledged)
            return [self._refuse(ErrorCode.STORAGE_UNAVAILABLE, low) for _ in items]
        head = self.chain.head.height
        todo: list[int] = []
        for i, (tx, raw) in enumerate(items):
            try:
                self.mempool.precheck(tx, len(raw), head)
            except MempoolError as exc:
                out[i] = self._refuse(exc.code, exc.message)
                continue
            problem = self.registry.tx_call_problem(tx.body.contract, tx.body.method)
            if problem is not None:  # a block would only carry it as a failed receipt
                out[i] = self._refuse(ErrorCode.UNKNOWN_CONTRACT, problem)
                continue
            todo.append(i)
        if not todo:
            return out
        # The store reads and the signature checks run in the worker threads: LevelDB reads and
        # OpenSSL release the GIL there, and the event loop stays free for the next request.
        checked_at = self.chain.head.height
        verify = [not self.mempool.is_verified(items[i][0].tx_id) for i in todo]
        procs = self._procs
        in_thread = procs is None
        jobs = [
            [(items[todo[k]][0], in_thread and verify[k]) for k in chunk]
            for chunk in split_even(range(len(todo)), _ADMISSION_CHUNKS)
        ]
        loop = asyncio.get_running_loop()
        checks = asyncio.gather(
            *(loop.run_in_executor(self._pool, self._admission_checks_many, j) for j in jobs)
        )
        bad_sig: set[int] = set()  # positions in `todo` whose signature a worker refused
        ks = [k for k in range(len(todo)) if verify[k]] if procs is not None else []
        if procs is not None and ks:
            tx_of = [items[todo[k]][0] for k in ks]
            triples = [(t.body.sender, t.tx_id, t.signature) for t in tx_of]
            results, sig_ok = await asyncio.gather(checks, procs.verify(triples))
            bad_sig = {k for k, ok in zip(ks, sig_ok, strict=True) if not ok}
        else:  # (nothing to verify: every signature is already known good)
            results = await checks
        passed: list[int] = []
        for k, (i, failure) in enumerate(zip(todo, (f for r in results for f in r), strict=True)):
            if failure is None and k in bad_sig:
                failure = (ErrorCode.BAD_SIGNATURE, "signature does not verify")
            if failure is not None:
                out[i] = self._refuse(*failure)
            else:
                passed.append(i)
        if durable and self.wal is not None and passed:
            # Log first, then pool: a tx may commit only after its acknowledgement is durable,
            # and a refused one is never reported as failed while it could still commit.
            wal = self.wal
            logged = await asyncio.gather(
                *(wal.append(items[i][0].tx_id, items[i][1]) for i in passed),
                return_exceptions=True,
            )
            for got in logged:
                if isinstance(got, BaseException) and not isinstance(got, PoolLogError):
                    raise got  # a bug, not the disk: _admit_submits reports it to every caller
            errors = {i: got for i, got in zip(passed, logged, strict=True) if got is not None}
            failed = list(errors)
            if failed:  # the disk failed: those are not acknowledged, and not in the pool
                # (the log already said why; if a failed write reached the disk after all, the
                # release deletes it unless an acknowledged resubmission holds it: poolwal rule 2)
                wal.release([items[i][0].tx_id for i in failed])
                for i in failed:
                    out[i] = self._refuse(
                        ErrorCode.STORAGE_UNAVAILABLE,
                        f"the node could not store the transaction ({errors[i]}); "
                        "it is not accepted: retry later or submit to another node",
                    )
                passed = [i for i in passed if i not in errors]
        now_ms = self.clock_ms()
        for i in passed:
            tx, raw = items[i]
            try:
                # Blocks committed while we awaited (worker checks, pool log): the pool must
                # never hold a committed tx (the executor trusts that), so check them here, with
                # no await between this check and the insert — in memory when they are recent.
                again = self.chain.committed_since(checked_at, tx.tx_id)
                if again or (again is None and self.store.get_tx_location(tx.tx_id) is not None):
                    raise MempoolError(ErrorCode.DUPLICATE, "transaction is already committed")
                self.mempool.add(tx, len(raw), self.chain.head.height, now_ms)
            except MempoolError as exc:
                if durable and self.wal is not None and exc.code is not ErrorCode.DUPLICATE:
                    # (a DUPLICATE's log entry belongs to the concurrent admission that won, or
                    # to a transaction recovered into the pool at start)
                    self.wal.release([tx.tx_id])
                out[i] = self._refuse(exc.code, exc.message)
                continue
            self._admitted_at[tx.tx_id] = time.monotonic()
            if gossip and self.gossip_hook is not None:
                self.gossip_hook(raw)
        self.metrics.pool.set(len(self.mempool))
        self._wake.set()
        return out

    def _refuse(self, code: ErrorCode, message: str) -> ApiError:
        self.metrics.rejected.labels(code.name.lower()).inc()
        return ApiError(code, message)

    def _admission_checks_many(
        self, batch: Sequence[tuple[SignedTx, bool]]
    ) -> list[tuple[ErrorCode, str] | None]:
        return [self._admission_checks(tx, verify) for tx, verify in batch]

    def _admission_checks(self, tx: SignedTx, verify: bool) -> tuple[ErrorCode, str] | None:
        """Runs in a worker thread: committed-duplicate, admitted-sender and signature checks."""
        if self.store.get_tx_location(tx.tx_id) is not None:
            return ErrorCode.DUPLICATE, "transaction is already committed"
        # (uncached: a worker thread must not fill the executor's cache with a stale answer)
        if self.chain.executor.lookup_sender_uncached(tx.body.sender) is None:
            return ErrorCode.UNKNOWN_SENDER, "sender is not an admitted account"
        if verify and not verify_signature(tx.body.sender, tx.tx_id, tx.signature):
            return ErrorCode.BAD_SIGNATURE, "signature does not verify"
        return None
