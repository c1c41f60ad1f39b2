"""A write-ahead log of admitted transactions, so an acknowledged transaction survives a crash.

Rules this module keeps (DESIGN.md: "no acknowledged transaction is ever lost"):
1. `gm_sendRawTransaction` returns only after the transaction is in this log on disk (a synced
   LevelDB batch). Submissions arriving together share one fsync (group commit), written from a
   worker thread so the event loop never waits on the disk.
2. Entries leave the log when their transaction commits (or can never commit: expired, dropped);
   those deletions are not synced — losing one only means re-checking it at the next start.
3. On start every entry is decoded and re-admitted through the normal checks (signature
   included: the file is not trusted); committed, expired and malformed entries are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import plyvel

__all__ = ["PoolWal"]

_PREFIX = b"t"


class PoolWal:
    """Durable set of raw admitted transactions, keyed by tx id."""

    def __init__(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self._db = plyvel.DB(str(path), create_if_missing=True, paranoid_checks=True)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-wal")
        self._queue: list[tuple[bytes, bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._io.shutdown(wait=True)
        self._db.close()

    # --- writes ---------------------------------------------------------------------------------

    async def append(self, tx_id: bytes, raw: bytes) -> None:
        """Return once (tx_id, raw) is durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((tx_id, raw, fut))
        self._wake.set()
        await fut

    def remove(self, tx_ids: Iterable[bytes]) -> None:
        with self._db.write_batch() as b:
            for t in tx_ids:
                b.delete(_PREFIX + t)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await loop.run_in_executor(self._io, self._write, batch)
                except Exception as exc:  # the disk failed: the callers must hear it
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
            if self._closing:
                return

    def _write(self, batch: list[tuple[bytes, bytes, asyncio.Future[None]]]) -> None:
        with self._db.write_batch(transaction=True, sync=True) as b:
            for tx_id, raw, _ in batch:
                b.put(_PREFIX + tx_id, raw)

    # --- reads ----------------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[bytes, bytes]]:
        for key, raw in self._db.iterator(prefix=_PREFIX):
            yield key[len(_PREFIX) :], raw

    def __len__(self) -> int:
        return sum(1 for _ in self._db.iterator(prefix=_PREFIX, include_value=False))
