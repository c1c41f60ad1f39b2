"""Signature verification in worker processes, past the GIL.

Rules this module keeps:
1. A verification is `keys.get(pubkey).verify(message, signature)` exactly as in-process
   (a chain.txrules.KeyCache; crypto_sm's backend, with its start-up self-test, in every worker).
   Each worker process parses a sender's key once, into its own KeyCache (made when the worker
   starts: the process is its scope); the in-process fallback uses the node's KeyCache.
2. Workers are started with "spawn" (never "fork": the node has threads and an event loop) and
   warmed up before the node serves, so the first submissions do not pay for process start-up.
3. A broken pool (a worker killed) never loses a verdict: the batch is verified in-process
   instead, and the pool is not used again.
4. Only bytes cross the process boundary: (public key, signing root, signature) triples in, one
   bool per triple out.

Why: with admission in threads, a single node's SM2 verification and its event loop shared one
GIL; at ~2,050 admitted tx/s the node used ~1.5 of two cores while both verify threads and the
loop waited on the GIL (docs/benchmarks.md, session 2).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from gmchain.chain.txrules import KeyCache
from gmchain.crypto_sm.backend import active_backend

__all__ = ["VerifyProcesses", "split_even", "verify_triples"]

log = logging.getLogger("gmchain.verify")

T = TypeVar("T")
Triple = tuple[bytes, bytes, bytes]  # (sender public key, signing root, signature)


_worker_keys: KeyCache | None = None  # in a worker process: its key cache (rule 1)


def _init_worker() -> None:
    global _worker_keys
    _worker_keys = KeyCache()


def verify_triples(items: Sequence[Triple], keys: KeyCache | None = None) -> list[bool]:
    """Rule 1: one verdict per triple. Runs in a worker process (`keys` None: the worker's own
    cache) or in a thread as the fallback (`keys`: the node's)."""
    cache = keys or _worker_keys or KeyCache()
    out = []
    for pub, msg, sig in items:
        key = cache.get(pub)
        out.append(key is not None and key.verify(msg, sig))
    return out


def split_even(items: Sequence[T], parts: int) -> list[list[T]]:
    """`items` split into at most `parts` contiguous runs of near-equal length."""
    n = max(1, min(parts, len(items)))
    size = -(-len(items) // n)
    return [list(items[k : k + size]) for k in range(0, len(items), size)]


def _ping() -> int:
    # Unpickling this function imported this module, and with it chain.txrules and crypto_sm (whose
    # backend ran its self-test): the worker is ready for its first batch.
    return len(active_backend().name)


class VerifyProcesses:
    def __init__(self, processes: int, fallback: Executor, keys: KeyCache) -> None:
        self.processes = processes
        self._fallback = fallback
        self._keys = keys
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
        )

    async def start(self) -> None:
        """Rule 2: start every worker now (each imports crypto_sm, runs its self-test, and
        imports what a verification needs). If they cannot start, verify in-process (rule 3)."""
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(
                *(loop.run_in_executor(self._pool, _ping) for _ in range(self.processes))
            )
        except (BrokenProcessPool, OSError) as exc:
            log.error("signature worker processes did not start (%s); verifying in-process", exc)
            self.close()

    async def verify(self, items: Sequence[Triple]) -> list[bool]:
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._pool is not None:
            chunks = split_even(items, self.processes)
            try:
                parts = await asyncio.gather(
                    *(loop.run_in_executor(self._pool, verify_triples, c) for c in chunks)
                )
                return [ok for part in parts for ok in part]
            except BrokenProcessPool:
                log.error("signature worker process died; verifying in-process from now on")
                self._pool = None
        return await loop.run_in_executor(self._fallback, verify_triples, list(items), self._keys)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
