"""Answering the proof methods: bounded work, off the event loop, a bounded share per client.

The proofs themselves are assembled by the chain library (chain/proofs.py: O(log n) work, a
bounded certificate span); this module is the node's wrapper around it.

Rules this module keeps (docs/protocol.md §9; docs/ops.md "Proof requests"):
1. The assembler's refusals become API errors: ProofNotFound → NOT_FOUND, ProofOutOfRange →
   BAD_RANGE (a span beyond `proof_max_span` names the limit).
2. A damaged header read back from the store (chain/readcheck.py) is an error, never an answer.
3. Assembly runs in `proof_threads` worker threads, never on the event loop; a transaction
   bundle the assembler kept (chain/proofs.py rule 7) is a dictionary lookup and is answered on
   the loop, outside the shares below (issue 15: the hand-off to a worker and back was most of
   such an answer). A client (its remote address) has at most `proof_jobs_per_client` jobs in
   the workers at once and at most `proof_queue_per_client` proof requests accepted (running
   or waiting); beyond that it gets RATE_LIMITED at once. Waiting costs the loop nothing.
4. Workers read only committed data at or below the head taken on the loop when the request
   arrived; committed data never changes, and LevelDB reads are thread-safe, so no lock is held.
5. The workers take their next job themselves (`_Scheduler`): a worker that finishes a job
   starts the next one at once, without a round trip through the loop, choosing among the
   clients with waiting jobs in turn (round robin) and skipping a client that has its
   `proof_jobs_per_client` jobs running. So a client's share holds at every instant, a client
   that arrives while another has a hundred requests waiting is served after at most one job
   of each client ahead of it in the turn, and one client alone keeps its share busy (issue
   15: with a trip through the loop between a client's jobs, a worker woke, worked and slept
   once per proof, and the wake-ups cost ~40 % of a proof's CPU on the reference machine).
   A job ends — and frees its client's slot and queue place — only when its work really ends,
   also when its caller gave up meanwhile; a job given up before it started never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gmchain.chain.proofs import ProofAssembler, ProofNotFound, ProofOutOfRange
from gmchain.chain.readcheck import check_served_header
from gmchain.ledger.store import Store
from gmchain.ledger.types import GenesisValidator
from gmchain.node.api import ApiError, ErrorCode

__all__ = ["ProofLimits", "ProofService"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofLimits:
    max_span: int  # headers in one certificate chain (chain/proofs.py rule 2)
    threads: int  # worker threads (rule 3)
    jobs_per_client: int  # one client's jobs in the workers at once
    queue_per_client: int  # one client's accepted requests, running or waiting


def _count_down(counts: dict[str, int], client: str) -> None:
    """One fewer for `client`; a client at zero leaves the map (it stays small)."""
    left = counts[client] - 1
    if left:
        counts[client] = left
    else:
        del counts[client]


class _Job:
    """One accepted request: its work, for whom, and the loop future its caller awaits."""

    __slots__ = ("client", "future", "loop", "work")

    def __init__(
        self, client: str, work: Callable[[], Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.client = client
        self.work = work
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


class _Scheduler:
    """Rule 5: `threads` workers share the clients' waiting jobs in turn, at most
    `jobs_per_client` of one client's at once. All state is under one lock; the loop only
    submits, withdraws and receives results (through `call_soon_threadsafe`)."""

    def __init__(self, threads: int, jobs_per_client: int, on_end: Callable[[_Job], None]) -> None:
        self._jobs_per_client = jobs_per_client
        self._on_end = on_end  # on the loop, once per job that ran or was refused at close
        self._cond = threading.Condition(threading.Lock())
        # Clients with waiting jobs, in turn order (a dict keeps insertion order; a client that
        # was served goes to the end).
        self._waiting: dict[str, deque[_Job]] = {}
        self._running: dict[str, int] = {}
        self._closed = False
        self._size = threads
        self._threads: list[threading.Thread] = []  # started with the first job

    def submit(self, job: _Job) -> None:
        """Queue `job` (on the loop); RuntimeError once the scheduler is closed."""
        with self._cond:
            if self._closed:
                raise RuntimeError("proof workers are shut down")
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._serve, name=f"proof-{i}", daemon=True)
                    for i in range(self._size)
                ]
                for t in self._threads:
                    t.start()
            queue = self._waiting.get(job.client)
            if queue is None:
                queue = self._waiting[job.client] = deque()
            queue.append(job)
            if self._running.get(job.client, 0) < self._jobs_per_client:
                self._cond.notify()  # else the worker that ends its running job takes it

    def withdraw(self, job: _Job) -> bool:
        """Take back a job that no worker has started (True); False if one has."""
        with self._cond:
            queue = self._waiting.get(job.client)
            if queue is None or job not in queue:
                return False
            queue.remove(job)
            if not queue:
                del self._waiting[job.client]
            return True

    def close(self) -> None:
        """Refuse the waiting jobs (NOT_READY: the node is stopping), let the running ones end,
        and wait for the workers."""
        with self._cond:
            self._closed = True
            dropped = [job for queue in self._waiting.values() for job in queue]
            self._waiting.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        stopping = ApiError(ErrorCode.NOT_READY, "the node is stopping")
        for job in dropped:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                job.loop.call_soon_threadsafe(self._settle, job, None, stopping)
        for t in threads:
            if t is not threading.current_thread():
                t.join()

    def _take(self) -> _Job | None:
        """Under the lock: the next job by turn whose client is below its share. A worker is
        woken only for work it can take: here, if more is left that another worker could."""
        job = None
        for client, queue in self._waiting.items():
            running = self._running.get(client, 0)
            if running < self._jobs_per_client:
                job = queue.popleft()
                del self._waiting[client]
                if queue:
                    self._waiting[client] = queue  # to the end of the turn
                self._running[client] = running + 1
                break
        if job is not None and any(
            self._running.get(c, 0) < self._jobs_per_client for c in self._waiting
        ):
            self._cond.notify()
        return job

    def _serve(self) -> None:
        while True:
            with self._cond:
                job = self._take()
                while job is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    job = self._take()
            try:
                result, error = job.work(), None
            except BaseException as exc:  # delivered to the caller, as an executor would
                result, error = None, exc
            with self._cond:  # this worker takes the next job itself, at the top of the loop
                _count_down(self._running, job.client)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                job.loop.call_soon_threadsafe(self._settle, job, result, error)
            del job, result, error

    def _settle(self, job: _Job, result: Any, error: BaseException | None) -> None:
        """On the loop: hand the outcome to a caller still waiting, then end the job (always:
        its client's queue place is given back even if the outcome cannot be handed over)."""
        try:
            if not job.future.done():
                if error is None:
                    job.future.set_result(result)
                elif isinstance(error, StopIteration):  # a Future refuses it (TypeError)
                    job.future.set_exception(RuntimeError(f"proof job raised {error!r}"))
                else:
                    job.future.set_exception(error)
        finally:
            self._on_end(job)


class ProofService:
    """The builders behind gm_getTransactionProof / gm_getCommitProof / gm_getConsistencyProof."""

    def __init__(
        self,
        *,
        store: Store,
        validators: tuple[GenesisValidator, ...],
        head_height: Callable[[], int],
        limits: ProofLimits,
    ) -> None:
        self.assembler = ProofAssembler(
            store=store,
            validators=validators,
            max_span=limits.max_span,
            check_header=check_served_header,
        )
        self._head_height = head_height
        self._limits = limits
        self._scheduler = _Scheduler(limits.threads, limits.jobs_per_client, self._ended)
        self._accepted: dict[str, int] = {}  # per client: accepted and not yet ended (rule 3)

    def close(self) -> None:
        """Wait for running jobs (short: chain/proofs.py rule 1) so none reads a closed store."""
        self._scheduler.close()

    # --- the async surface (runs on the loop; does no proof work itself) -------------------------

    async def tx_proof(self, tx_id: bytes, at_height: int | None, client: str) -> dict[str, Any]:
        head = self._head_height()
        kept = self.assembler.kept_tx_proof(tx_id, at_height, head)
        if kept is not None:  # rule 3
            return kept
        return await self._run(client, lambda: self.build_tx_proof(tx_id, at_height, head))

    async def commit_proof(self, height: int, client: str) -> dict[str, Any]:
        head = self._head_height()
        return await self._run(client, lambda: self.build_commit_proof(height, head))

    async def consistency_proof(
        self, old_height: int, new_height: int, client: str
    ) -> dict[str, Any]:
        head = self._head_height()
        return await self._run(
            client, lambda: self.build_consistency_proof(old_height, new_height, head)
        )

    async def epoch_proof(
        self, from_epoch: int, to_epoch: int, *, client: str = ""
    ) -> dict[str, Any]:
        """gm_getEpochProof (node/rpcgov.py checked the range against the current epoch)."""
        return await self._run(
            client,
            lambda: _api_errors(lambda: self.assembler.epoch_proof(from_epoch, to_epoch)),
        )

    async def _run(self, client: str, work: Callable[[], _T]) -> _T:
        accepted = self._accepted.get(client, 0)
        if accepted >= self._limits.queue_per_client:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"too many proof requests from this client at once "
                f"(proof_queue_per_client = {self._limits.queue_per_client}); retry later",
            )
        job = _Job(client, work, asyncio.get_running_loop())
        try:
            self._scheduler.submit(job)
        except RuntimeError:  # the workers are shut down: the node is stopping
            raise ApiError(ErrorCode.NOT_READY, "the node is stopping") from None
        self._accepted[client] = accepted + 1
        try:
            result: _T = await job.future
        except asyncio.CancelledError:
            # The caller gave up: a job not yet started is taken back and ends now; a running
            # one keeps its slot and queue place until its work ends (rule 5), so a client
            # cannot stack more than its share of running jobs by disconnecting.
            if self._scheduler.withdraw(job):
                self._ended(job)
            raise
        return result

    def _ended(self, job: _Job) -> None:
        """On the loop: `job` left the scheduler (done, failed or withdrawn)."""
        _count_down(self._accepted, job.client)

    # --- the builders (run in a worker thread): the assembler, its refusals as API errors ------

    def build_tx_proof(self, tx_id: bytes, at_height: int | None, head: int) -> dict[str, Any]:
        return _api_errors(lambda: self.assembler.tx_proof(tx_id, at_height, head))

    def build_commit_proof(self, height: int, head: int) -> dict[str, Any]:
        return _api_errors(lambda: self.assembler.commit_proof(height, head))

    def build_consistency_proof(
        self, old_height: int, new_height: int, head: int
    ) -> dict[str, Any]:
        return _api_errors(lambda: self.assembler.consistency_proof(old_height, new_height, head))


def _api_errors(job: Callable[[], _T]) -> _T:
    """Rule 1."""
    try:
        return job()
    except ProofNotFound as exc:
        raise ApiError(ErrorCode.NOT_FOUND, str(exc)) from None
    except ProofOutOfRange as exc:
        raise ApiError(ErrorCode.BAD_RANGE, str(exc)) from None
