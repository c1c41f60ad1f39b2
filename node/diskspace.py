"""Free-space guard: a node refuses new submissions while its disk is nearly full.

Rules this module keeps (issue 10, fault 4):
1. Below `min_free_disk_mb` free on the file system of the ledger store or of the pool log, new
   RPC submissions are refused with STORAGE_UNAVAILABLE (-31020) and a message that says how much
   is free. The reserve is what lets the transactions already acknowledged still commit (blocks,
   receipts, indexes, LevelDB compactions) instead of failing their block write.
2. The check is cheap: `os.statvfs` at most once per `interval_s` (0.25 s), its answer cached in
   between; a submission never waits on it longer than one syscall.
3. `min_free_disk_mb = 0` turns the guard off (then only a failed write refuses a submission).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["FreeSpaceGuard"]

_MIB = 1024 * 1024


class FreeSpaceGuard:
    """`refusal()` is None while every watched file system has `min_free_mb` free."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        min_free_mb: int,
        *,
        interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = [Path(p) for p in paths]
        self._min_free = min_free_mb * _MIB
        self._interval = interval_s
        self._clock = clock
        self._next_at = 0.0  # clock time of the next statvfs
        self._refusal: str | None = None  # the cached answer

    def refusal(self) -> str | None:
        """Why submissions are refused now (None: enough space), at most `interval_s` old."""
        if self._min_free <= 0:
            return None
        now = self._clock()
        if now >= self._next_at:
            self._next_at = now + self._interval
            self._refusal = self._measure()
        return self._refusal

    def free_bytes(self) -> int | None:
        """The least free space (bytes, for unprivileged users) over the watched file systems,
        measured now (None if none could be measured); for the `gmchain_disk_free_bytes` gauge,
        read once per scrape."""
        free = [f for f, _ in self._statvfs()]
        return min(free) if free else None

    def _statvfs(self) -> list[tuple[int, Path]]:
        out = []
        for p in self._paths:
            probe = p if p.exists() else p.parent
            try:
                st = os.statvfs(probe)
            except OSError:
                continue  # not created yet: its parent is measured as well
            out.append((st.f_bavail * st.f_frsize, probe))
        return out

    def _measure(self) -> str | None:
        for free, probe in self._statvfs():
            if free < self._min_free:
                return (
                    f"the node's disk is nearly full: {free / _MIB:.1f} MiB free at {probe}, "
                    f"below min_free_disk_mb = {self._min_free // _MIB}; new transactions are "
                    "refused until space is freed (retry later or submit to another node)"
                )
        return None
