"""Signature verification in worker processes, past the GIL.

Rules this module keeps:
1. A verification is `keys.get(pubkey).verify(message, signature)` exactly as in-process
   (a chain.txrules.KeyCache; crypto_sm's backend, with its start-up self-test, in every worker).
   Each worker process parses a sender's key once, into its own KeyCache (made when the worker
   starts: the process is its scope); the in-process fallback uses the node's KeyCache.
2. Workers are started with "spawn" (never "fork": the node has threads and an event loop) and
   warmed up before the node serves (each answers one empty request), so the first submissions
   do not pay for process start-up.
3. A broken pool (a worker killed, its socket closed) never loses a verdict: every request it had
   not answered is verified in-process instead, and the pool is not used again.
4. Only bytes cross the process boundary: (public key, signing root, signature) triples in, one
   bool per triple out (the frames below).
5. The event loop itself talks to the workers, through one Unix socket pair per worker (its
   end non-blocking on the loop): no helper thread between them. A frame either way is a
   4-byte big-endian length and that many bytes: a request is a msgpack array of
   [public key, signing root, signature] byte strings, an answer one byte per triple (1: the
   signature verifies, 0: it does not), in request order. A worker answers its requests in the
   order they came, so each keeps a FIFO of the futures waiting for its answers. A worker ends
   when its socket closes (the node stopped, or died); it ignores SIGINT and SIGTERM, which a
   terminal's Ctrl-C or a service manager sends to the node's whole process group: the node's
   stop ends its workers itself. (Sockets rather than pipes: an event loop owns a socket's
   descriptor outright, where uvloop closes a pipe's descriptor and then the file object
   around it again.)

Why: with admission in threads, a single node's SM2 verification and its event loop shared one
GIL; at ~2,050 admitted tx/s the node used ~1.5 of two cores while both verify threads and the
loop waited on the GIL (docs/benchmarks.md, session 2). Why rule 5: before it the workers were
a `ProcessPoolExecutor`, whose requests and answers pass through two helper threads of the node
(its queue feeder and its result manager); each of those, and the loop after them, had to win
the GIL from the consensus thread, and a batch of ~16 signatures spent ~20 ms there for ~2 ms
of verifying (docs/benchmarks.md, session 13).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from multiprocessing.process import BaseProcess
from typing import TypeVar

import msgpack

from gmchain.chain.txrules import KeyCache
from gmchain.crypto_sm.backend import active_backend

__all__ = ["VerifyProcesses", "split_even", "verify_triples"]

log = logging.getLogger("gmchain.verify")

T = TypeVar("T")
Triple = tuple[bytes, bytes, bytes]  # (sender public key, signing root, signature)

_LEN = 4  # rule 5: the frame's length prefix
_MAX_FRAME = 1 << 30  # a worker refuses (ends on) a frame longer than this
_START_TIMEOUT_S = 60.0  # rule 2: the workers' first answers by then, or they are not used


_worker_keys: KeyCache | None = None  # in a worker process: its key cache (rule 1)


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


def _read_exact(fd: int, n: int) -> bytes | None:
    """In a worker: `n` bytes from `fd`, or None at end of file."""
    parts: list[bytes] = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _worker_main(channel: socket.socket) -> None:
    """A worker process (rule 5): answer each request frame until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    global _worker_keys
    _worker_keys = KeyCache()
    active_backend()  # the backend's self-test, before the first answer (rule 2)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        _serve(channel.fileno())


def _serve(fd: int) -> None:
    while True:
        head = _read_exact(fd, _LEN)
        if head is None:
            return
        size = int.from_bytes(head, "big")
        body = _read_exact(fd, size) if size <= _MAX_FRAME else None
        if body is None:
            return
        triples = [(bytes(p), bytes(m), bytes(s)) for p, m, s in msgpack.unpackb(body)]
        verdicts = bytes(verify_triples(triples))
        _write_all(fd, len(verdicts).to_bytes(_LEN, "big") + verdicts)


class WorkerGone(Exception):
    """A worker's socket closed with requests unanswered (rule 3)."""


class _Channel(asyncio.Protocol):
    """The node's end of one worker's socket, on the loop: answer frames to the waiting futures."""

    def __init__(
        self, waiting: collections.deque[asyncio.Future[list[bool]]], gone: Callable[[], None]
    ) -> None:
        self._waiting = waiting
        self._buf = bytearray()
        self._gone = gone  # called when the socket closes

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= _LEN:
            size = int.from_bytes(buf[:_LEN], "big")
            if len(buf) < _LEN + size:
                return
            verdicts = [b == 1 for b in buf[_LEN : _LEN + size]]
            del buf[: _LEN + size]
            if self._waiting:
                fut = self._waiting.popleft()
                if not fut.done():
                    fut.set_result(verdicts)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()


def _same(protocol: asyncio.Protocol) -> asyncio.Protocol:
    return protocol


class _Worker:
    def __init__(self, process: BaseProcess) -> None:
        self.process = process
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[asyncio.Future[list[bool]]] = collections.deque()

    def fail_waiting(self, why: str) -> None:
        """Rule 3: every request not answered gets WorkerGone (its caller verifies in-process)."""
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(WorkerGone(why))


class VerifyProcesses:
    def __init__(self, processes: int, fallback: Executor, keys: KeyCache) -> None:
        self.processes = processes
        self._fallback = fallback
        self._keys = keys
        self._workers: list[_Worker] = []
        self._broken = False
        self._started = False
        self._next = 0  # the worker a one-chunk request goes to (round robin)

    @property
    def active(self) -> bool:
        """False once the workers could not start or one of them died (rule 3)."""
        return not self._broken and bool(self._workers)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def start(self) -> None:
        """Rule 2: start every worker now and wait for each one's first answer. If they cannot
        start, verify in-process (rule 3)."""
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        try:
            for _ in range(self.processes):
                mine, theirs = socket.socketpair()
                try:
                    proc = ctx.Process(
                        target=_worker_main, args=(theirs,), name="gmchain-verify", daemon=True
                    )
                    proc.start()
                finally:
                    theirs.close()
                worker = _Worker(proc)
                self._workers.append(worker)
                channel = _Channel(worker.waiting, functools.partial(self._lost, worker))
                try:
                    worker.transport, _ = await loop.connect_accepted_socket(
                        functools.partial(_same, channel), sock=mine
                    )
                except BaseException:
                    mine.close()
                    raise
            pings = asyncio.gather(*(self._ask(w, []) for w in self._workers))
            await asyncio.wait_for(pings, _START_TIMEOUT_S)
            self._started = True
        except (WorkerGone, OSError) as exc:  # (the wait's TimeoutError is an OSError)
            log.error("signature worker processes did not start (%s); verifying in-process", exc)
            self.close()
        except BaseException:  # (cancelled, or a bug: no worker outlives it)
            self.close()
            raise

    def _ask(self, worker: _Worker, triples: Sequence[Triple]) -> asyncio.Future[list[bool]]:
        fut: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        transport = worker.transport
        if self._broken or transport is None or transport.is_closing():
            fut.set_exception(WorkerGone("signature worker is gone"))
            return fut
        body = msgpack.packb([list(t) for t in triples], use_bin_type=True)
        worker.waiting.append(fut)
        transport.write(len(body).to_bytes(_LEN, "big") + body)
        return fut

    def _lost(self, worker: _Worker) -> None:
        """A worker's socket closed (rule 3): its unanswered requests fail over, and the other
        workers are ended (the pool is not used again)."""
        if self._started and not self._broken:
            log.error(
                "signature worker process %s died; verifying in-process from now on",
                worker.process.pid,
            )
            asyncio.get_running_loop().call_soon(self.close)
        self._broken = True
        worker.fail_waiting("signature worker process died")

    async def verify(self, items: Sequence[Triple]) -> list[bool]:
        if not items:
            return []
        if self.active:
            chunks = split_even(items, len(self._workers))
            first = self._next
            self._next = (self._next + 1) % len(self._workers)
            asks = [
                self._ask(self._workers[(first + k) % len(self._workers)], c)
                for k, c in enumerate(chunks)
            ]
            try:
                parts = await asyncio.gather(*asks)
                return [ok for part in parts for ok in part]
            except WorkerGone:
                self.close()  # (gather retrieves the other requests' outcomes)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._fallback, verify_triples, list(items), self._keys)

    def close(self) -> None:
        """Close the sockets and end the processes (a worker keeps nothing: killing it loses
        nothing; one whose node died without this ends at its socket's end of file)."""
        self._broken = True  # (the closing sockets are not reported as deaths)
        workers, self._workers = self._workers, []
        for w in workers:
            if w.transport is not None:
                w.transport.close()
            w.fail_waiting("signature workers closed")
        for w in workers:
            with contextlib.suppress(OSError, ValueError):
                w.process.kill()
        for w in workers:
            with contextlib.suppress(OSError, ValueError):
                w.process.join(1)
