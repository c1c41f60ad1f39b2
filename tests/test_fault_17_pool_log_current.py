"""Fault 17 (pool-log part): a pool log whose LevelDB CURRENT file is missing is refused.

On 0921e03 `PoolWal` opened its directory with `create_if_missing=True`, so a pool log that had
lost CURRENT silently started empty: every acknowledged, not yet committed transaction in it was
forgotten. The main store refuses that case (ledger/store.py rule 3); the pool log now does too,
with a message naming the directory and the recovery.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gmchain.node.poolwal import PoolLogError, PoolWal


async def _write_entries(path: Path, n: int) -> None:
    wal = PoolWal(path)
    wal.start()
    await asyncio.gather(*(wal.append(bytes([i]) * 32, b"raw %d" % i) for i in range(n)))
    await wal.close()


async def test_pool_log_without_current_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.pool"
    await _write_entries(path, 3)
    (path / "CURRENT").unlink()
    before = sorted(os.listdir(path))
    with pytest.raises(PoolLogError, match="no LevelDB CURRENT") as info:
        PoolWal(path)
    assert str(path) in str(info.value)
    assert sorted(os.listdir(path)) == before  # nothing was created over the old files


async def test_fresh_and_intact_pool_logs_still_open(tmp_path: Path) -> None:
    fresh = tmp_path / "new.pool"
    wal = PoolWal(fresh)  # a missing directory is a new, empty log
    assert len(wal) == 0
    await wal.close()
    await _write_entries(tmp_path / "old.pool", 3)
    wal = PoolWal(tmp_path / "old.pool")
    assert len(wal) == 3
    await wal.close()
