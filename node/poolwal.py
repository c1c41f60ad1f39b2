"""A write-ahead log of admitted transactions, so an acknowledged transaction survives a crash.

Rules this module keeps (DESIGN.md: "no acknowledged transaction is ever lost"):
1. `gm_sendRawTransaction` returns only after the transaction is in this log on disk (a synced
   LevelDB batch). Submissions arriving together share one fsync (group commit), written from a
   worker thread so the event loop never waits on the disk. If the write fails, every caller of
   that batch gets `PoolLogError` (the client hears it: the documented storage error), never "ok".
2. Entries leave the log when their transaction commits (or can never commit: expired, dropped);
   those deletions are queued, written by the same worker in order with the appends, and not
   synced — losing one only means re-checking it at the next start. `remove` never raises.
   An admission that gives up its entry (refused after its append, or its append failed) calls
   `release`: the entry is deleted only if no other successful append of the same transaction
   (a concurrent resubmission that was acknowledged) still holds it.
3. After a failed write the database is closed at once and reopened before the next write (at
   most once a second): LevelDB's log may now end in a torn record, and appending more records
   behind it would turn that tear into mid-log damage that hides every later entry (issue 10,
   fault 4: a full disk). Reopening recovers the log up to the tear; until it succeeds (space is
   back) appends fail fast with `PoolLogError`.
4. On open a directory that holds files but no LevelDB `CURRENT` is refused (`PoolLogError`),
   never silently re-created empty. A log LevelDB reports damaged (a torn record with more
   records behind it, as 0921e03 left after ENOSPC) is salvaged with `repair_db` and an error
   logged: the entries before the damage are kept (and those in later 32 KiB log blocks; the
   rest of the damaged block is lost). Its entries are re-verified anyway (rule 5), and refusing
   to start would lose all of them.
5. On start every entry is decoded and re-admitted through the normal checks (signature
   included: the file is not trusted); committed, expired and malformed entries are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import plyvel

from gmchain.ledger.store_errors import StoreError

__all__ = ["PoolLogError", "PoolWal"]

log = logging.getLogger("gmchain.node")

_PREFIX = b"t"
# A queued write: (tx id, raw to put or None to delete, the appender's future, is a release).
_Op = tuple[bytes, bytes | None, "asyncio.Future[None] | None", bool]
_REOPEN_INTERVAL_S = 1.0


class PoolLogError(StoreError):
    """The pool log cannot take or give back entries; the message says why and what to do."""


def _open(path: Path) -> Any:
    """Rule 4: open (or create) the log's LevelDB; salvage a damaged one."""
    spath = str(path)
    if path.is_dir() and os.listdir(path) and not (path / "CURRENT").exists():
        raise PoolLogError(
            f"pool log {path} holds files but no LevelDB CURRENT file; refusing to start an "
            "empty log over it (its acknowledged transactions would be forgotten): restore the "
            "directory from backup, or move it aside to start without those transactions"
        )
    path.mkdir(parents=True, exist_ok=True)
    try:
        return plyvel.DB(spath, create_if_missing=True, paranoid_checks=True)
    except plyvel.CorruptionError as e:
        log.error("pool log %s is damaged (%s); salvaging its intact entries", path, e)
    except plyvel.Error as e:
        raise PoolLogError(f"cannot open pool log {path}: {e}") from e
    try:
        plyvel.repair_db(spath)
        return plyvel.DB(spath, create_if_missing=False, paranoid_checks=True)
    except plyvel.Error as e:
        raise PoolLogError(f"cannot salvage pool log {path}: {e}; move it aside") from e


class PoolWal:
    """Durable set of raw admitted transactions, keyed by tx id."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        # The open database, or None after a failed write until it is reopened (rule 3).
        self._db: Any = _open(self._path)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-wal")
        # Ordered writes waiting for the worker (_Op); the batch being written.
        self._queue: list[_Op] = []
        self._inflight: list[_Op] = []
        # Successful appends not yet released or removed, per tx id (rule 2).
        self._holders: dict[bytes, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._broken = ""  # why the last write failed; "" while the database is healthy
        self._reopen_at = 0.0  # monotonic time of the next reopen attempt while broken

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
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def broken(self) -> str:
        """Why the log cannot write right now ("" if it can)."""
        return self._broken

    # --- writes ---------------------------------------------------------------------------------

    async def append(self, tx_id: bytes, raw: bytes) -> None:
        """Return once (tx_id, raw) is durable; raise PoolLogError if it could not be written."""
        if self._closing:
            raise PoolLogError("pool log is closing")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((tx_id, raw, fut, False))
        self._wake.set()
        await fut

    def remove(self, tx_ids: Iterable[bytes]) -> None:
        """Queue deletions (rule 2: committed or can never commit); never raises."""
        for t in tx_ids:
            self._holders.pop(t, None)
            self._queue.append((t, None, None, False))
        self._wake.set()

    def release(self, tx_ids: Iterable[bytes]) -> None:
        """One admission gives up its entry (rule 2); never raises."""
        for t in tx_ids:
            left = self._holders.get(t, 0) - 1
            if left > 0:
                self._holders[t] = left
                continue
            self._holders.pop(t, None)
            self._queue.append((t, None, None, True))
        self._wake.set()

    def _resolve(self, batch: list[_Op]) -> list[_Op]:
        """Drop the releases of entries held again by now (an append queued before them in this
        batch, or one written since they were queued): rule 2."""
        out: list[_Op] = []
        put_here: set[bytes] = set()
        for op in batch:
            tx_id, raw, _, release = op
            if raw is not None:
                put_here.add(tx_id)
            elif release and (tx_id in put_here or self._holders.get(tx_id, 0) > 0):
                continue
            out.append(op)
        return out

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._resolve(self._queue), []
                waiting = [fut for _, _, fut, _ in batch if fut is not None]
                self._inflight = batch
                try:
                    await loop.run_in_executor(self._io, self._write, batch)
                except Exception as exc:  # the disk failed: the callers must hear it (rule 1)
                    err = exc if isinstance(exc, PoolLogError) else PoolLogError(str(exc))
                    for fut in waiting:
                        if not fut.done():
                            fut.set_exception(err)
                    continue
                finally:
                    self._inflight = []
                for tx_id, raw, _, _ in batch:
                    if raw is not None:
                        self._holders[tx_id] = self._holders.get(tx_id, 0) + 1
                for fut in waiting:
                    if not fut.done():
                        fut.set_result(None)
            if self._closing:
                return

    def _write(self, batch: list[_Op]) -> None:
        """Runs in the worker thread, the only writer."""
        if self._db is None:
            self._reopen()
        sync = any(raw is not None for _, raw, _, _ in batch)
        try:
            with self._db.write_batch(transaction=True, sync=sync) as b:
                for tx_id, raw, _, _ in batch:
                    if raw is None:
                        b.delete(_PREFIX + tx_id)
                    else:
                        b.put(_PREFIX + tx_id, raw)
        except plyvel.Error as e:
            self._broken = str(e)
            self._reopen_at = time.monotonic()  # the first retry may come at once
            with contextlib.suppress(plyvel.Error):
                self._db.close()
            self._db = None
            log.error("pool log write failed (%s); reopening it before the next write", e)
            raise PoolLogError(f"pool log write failed: {e}") from e

    def _reopen(self) -> None:
        now = time.monotonic()
        if now < self._reopen_at:
            raise PoolLogError(f"pool log unavailable since a write failed ({self._broken})")
        self._reopen_at = now + _REOPEN_INTERVAL_S
        try:
            self._db = _open(self._path)
        except PoolLogError as e:
            raise PoolLogError(
                f"pool log unavailable since a write failed ({self._broken}); reopening it "
                f"failed: {e}"
            ) from e
        log.info("pool log reopened after a failed write (%s)", self._broken)
        self._broken = ""

    # --- reads ----------------------------------------------------------------------------------

    def _require_db(self) -> Any:
        if self._db is None:
            raise PoolLogError(f"pool log unavailable since a write failed ({self._broken})")
        return self._db

    def entries(self) -> Iterator[tuple[bytes, bytes]]:
        """The entries on disk (start-up recovery reads them before any write is queued)."""
        for key, raw in self._require_db().iterator(prefix=_PREFIX):
            yield key[len(_PREFIX) :], raw

    def __len__(self) -> int:
        """Entries the log holds once the writes already queued have landed."""
        keys = {k for k in self._require_db().iterator(prefix=_PREFIX, include_value=False)}
        for tx_id, raw, _, _ in [*self._inflight, *self._queue]:
            if raw is None:
                keys.discard(_PREFIX + tx_id)
            else:
                keys.add(_PREFIX + tx_id)
        return len(keys)
