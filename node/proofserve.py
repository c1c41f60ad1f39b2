"""Answering the proof methods: bounded work, off the event loop, a bounded share per client.

The proofs themselves are assembled by the chain library (chain/proofs.py: O(log n) work, a
bounded certificate span); this module is the node's wrapper around it.

Rules this module keeps (docs/protocol.md §9; docs/ops.md "Proof requests"):
1. The assembler's refusals become API errors: ProofNotFound → NOT_FOUND, ProofOutOfRange →
   BAD_RANGE (a span beyond `proof_max_span` names the limit).
2. A damaged header read back from the store (chain/readcheck.py) is an error, never an answer.
3. Assembly runs in `proof_threads` worker threads, never on the loop that runs consensus; a
   transaction bundle the assembler kept (chain/proofs.py rule 7) is a dictionary lookup and is
   answered on the loop, outside the shares below (issue 15: the hand-off to a worker and
   back was most of such an answer). A client (its remote address) has at most
   `proof_jobs_per_client` jobs in the workers at once and at most `proof_queue_per_client`
   proof requests accepted (running or waiting); beyond that it gets RATE_LIMITED at once.
   Waiting costs the loop nothing.
4. Workers read only committed data at or below the head taken on the loop when the request
   arrived; committed data never changes, and LevelDB reads are thread-safe, so no lock is held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


class _Client:
    """One client's share (rule 3): `accepted` counts requests admitted and not yet answered."""

    __slots__ = ("accepted", "running")

    def __init__(self, jobs: int) -> None:
        self.accepted = 0
        self.running = asyncio.Semaphore(jobs)


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
        self._pool = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="proof")
        self._clients: dict[str, _Client] = {}

    def close(self) -> None:
        """Wait for running jobs (short: chain/proofs.py rule 1) so none reads a closed store."""
        self._pool.shutdown(wait=True, cancel_futures=True)

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

    async def _run(self, client: str, job: Callable[[], _T]) -> _T:
        share = self._clients.get(client)
        if share is None:
            share = self._clients[client] = _Client(self._limits.jobs_per_client)
        if share.accepted >= self._limits.queue_per_client:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"too many proof requests from this client at once "
                f"(proof_queue_per_client = {self._limits.queue_per_client}); retry later",
            )
        share.accepted += 1
        try:
            await share.running.acquire()
        except BaseException:
            self._leave(client, share, ran=False)
            raise
        try:
            job_future = self._pool.submit(job)
        except RuntimeError:  # the workers are shut down: the node is stopping
            self._leave(client, share, ran=True)
            raise ApiError(ErrorCode.NOT_READY, "the node is stopping") from None
        loop = asyncio.get_running_loop()

        def on_done(_: object) -> None:  # in a worker thread (or the canceller's)
            # A caller that gave up (cancelled) keeps its slot until the job really ends, so a
            # client cannot stack more than its share of running jobs by disconnecting.
            with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to do
                loop.call_soon_threadsafe(self._leave, client, share, True)

        job_future.add_done_callback(on_done)
        return await asyncio.wrap_future(job_future)

    def _leave(self, client: str, share: _Client, ran: bool) -> None:
        """On the loop: a request of `client` is answered (its job left the workers if `ran`)."""
        if ran:
            share.running.release()
        share.accepted -= 1
        if share.accepted == 0 and self._clients.get(client) is share:
            del self._clients[client]

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
