"""Answering the proof methods: bounded work, off the event loop, a bounded share per client.

Rules this module keeps (docs/protocol.md §9; docs/ops.md "Proof requests"):
1. A proof's work is O(log n) in the chain's length plus the tx's own block: the tx and its
   receipt are proven in their block, the block is certified by its own commit certificate, and
   a later anchor header is reached by an accumulator inclusion path and the anchor's own
   certificate (RFC 9162 §2.1.3) — never by the header chain between the two blocks.
2. A certificate's header chain (a block up to the tip its stored CommitProof certifies) is at
   most `proof_max_span` headers, and at most that many heights are searched for it; beyond it
   the request is refused with BAD_RANGE naming the limit, before any header is read.
3. Assembly runs in `proof_threads` worker threads, never on the loop that runs consensus. A
   client (its remote address) has at most `proof_jobs_per_client` jobs in the workers at once
   and at most `proof_queue_per_client` proof requests accepted (running or waiting); beyond
   that it gets RATE_LIMITED at once. Waiting costs the loop nothing.
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

from gmchain.chain.lightclient import Certificate, build_full_proof
from gmchain.chain.readcheck import check_served_header
from gmchain.consensus.messages import CommitProof
from gmchain.ledger.merkle import acc_consistency_proof
from gmchain.ledger.store import Store
from gmchain.ledger.types import BlockHeader, GenesisValidator
from gmchain.node.api import ApiError, ErrorCode

__all__ = ["ProofLimits", "ProofService"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofLimits:
    max_span: int  # headers in one certificate chain (rule 2)
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
        self._store = store
        self._validators = validators
        self._head_height = head_height
        self._limits = limits
        self._pool = ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="proof")
        self._clients: dict[str, _Client] = {}

    def close(self) -> None:
        """Wait for running jobs (short, bounded by rule 1) so none reads a closed store."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- the async surface (runs on the loop; does no proof work itself) -------------------------

    async def tx_proof(self, tx_id: bytes, at_height: int | None, client: str) -> dict[str, Any]:
        head = self._head_height()
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

    # --- the builders (run in a worker thread; plain functions of the store) ---------------------

    def build_tx_proof(self, tx_id: bytes, at_height: int | None, head: int) -> dict[str, Any]:
        loc = self._store.get_tx_location(tx_id)
        if loc is None or loc[0] > head:
            raise ApiError(ErrorCode.NOT_FOUND, "transaction is not committed on this node")
        height, index = loc
        commit = self._certificate(height, head)
        tip = commit.headers[-1].height
        at = min(tip, head) if at_height is None else at_height
        if not height <= at <= head:
            raise ApiError(
                ErrorCode.BAD_RANGE, f"atHeight must be between {height} and {head}, got {at}"
            )
        header = commit.headers[0]
        tx_ids = self._store.get_tx_ids(height)
        if tx_ids is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no block at height {height}")
        receipts = [self._store.get_receipt(t) or b"" for t in tx_ids]
        anchor_commit = None if at <= tip else self._certificate(at, head)
        anchor = commit.headers[at - height] if anchor_commit is None else anchor_commit.headers[0]
        return build_full_proof(
            header=header,
            tx_ids=tx_ids,
            receipts=receipts,
            index=index,
            get_node=self._store.get_acc_node,
            anchor=anchor,
            commit=commit,
            anchor_commit=anchor_commit,
        )

    def build_commit_proof(self, height: int, head: int) -> dict[str, Any]:
        if not 0 <= height <= head:
            raise ApiError(ErrorCode.BAD_RANGE, f"no committed block at height {height}")
        cert = self._certificate(height, head)
        return {
            "height": height,
            "headers": cert.to_json()["headers"],  # height .. the certified tip
            "proof": "0x" + cert.proof.encode().hex(),
            "validators": [
                {"pubkey": "0x" + v.pubkey.hex(), "power": v.power, "org": v.org}
                for v in self._validators
            ],
        }

    def build_consistency_proof(
        self, old_height: int, new_height: int, head: int
    ) -> dict[str, Any]:
        if not 0 <= old_height <= new_height <= head:
            raise ApiError(
                ErrorCode.BAD_RANGE,
                f"need 0 <= oldHeight <= newHeight <= {head}, got {old_height}, {new_height}",
            )
        old, new = self._header(old_height), self._header(new_height)
        proof = acc_consistency_proof(self._store.get_acc_node, old.acc_size, new.acc_size)
        return {
            "old_height": old_height,
            "new_height": new_height,
            "old_size": old.acc_size,
            "new_size": new.acc_size,
            "old_root": "0x" + old.acc_root.hex(),
            "new_root": "0x" + new.acc_root.hex(),
            "proof": ["0x" + h.hex() for h in proof],
            "old_header": "0x" + old.encode().hex(),
            "new_header": "0x" + new.encode().hex(),
        }

    def _certificate(self, height: int, head: int) -> Certificate:
        """Rule 2: the first stored CommitProof at or above `height` within the span, and the
        headers from `height` to the tip it certifies."""
        span = self._limits.max_span
        proof = None
        for h in range(height, min(head, height + span - 1) + 1):
            raw = self._store.get_commit_proof(h)
            if raw:
                proof = CommitProof.decode(raw)
                break
        if proof is None:
            if height + span - 1 < head:
                raise self._span_error(height)
            raise ApiError(ErrorCode.NOT_FOUND, f"no commit proof covers height {height} yet")
        tip = proof.header.height - 1
        if tip < height:  # a stored proof certifies the block it is stored with, or a later one
            raise ApiError(ErrorCode.NOT_FOUND, f"no commit proof covers height {height}")
        if tip - height + 1 > span:
            raise self._span_error(height)
        return Certificate(
            headers=tuple(self._header(h) for h in range(height, tip + 1)), proof=proof
        )

    def _span_error(self, height: int) -> ApiError:
        return ApiError(
            ErrorCode.BAD_RANGE,
            f"the commit certificate of height {height} lies more than proof_max_span = "
            f"{self._limits.max_span} blocks above it; prove against another height",
        )

    def _header(self, height: int) -> BlockHeader:
        raw = self._store.get_header_by_height(height)
        if raw is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no block at height {height}")
        header = BlockHeader.decode(raw)
        check_served_header(self._store, height, header)  # chain/readcheck.py
        return header
