"""Rate-limited logging for errors a caller can trigger at will.

Rules this module keeps:
1. A log line that any client can cause (a request that hits a bug, a refused input) must not
   let that client fill the disk: at most `per_minute` lines per key in each 60 s window, with
   the full traceback; the rest are counted, and the first line of the next window says how many
   were left out (so nothing disappears without a trace).
2. Time comes from an injected monotonic clock (tests drive it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LogLimiter"]

_WINDOW_S = 60.0


@dataclass(slots=True)
class _Window:
    start: float  # clock value when this window opened
    logged: int  # lines written in this window (<= per_minute)
    suppressed: int  # lines left out since the last written line


class LogLimiter:
    """At most `per_minute` lines per key (the message format) per 60 s window."""

    def __init__(self, *, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def maybe_allow(self, key: str) -> int | None:
        """None: leave this line out. Otherwise the number of lines left out before it."""
        now = self._clock()
        w = self._windows.get(key)
        if w is None or now - w.start >= _WINDOW_S:
            if w is None and len(self._windows) > 1024:  # keys are format strings: few
                self._windows.clear()
            left_out = 0 if w is None else w.suppressed
            self._windows[key] = _Window(start=now, logged=1, suppressed=0)
            return left_out
        if w.logged < self.per_minute:
            w.logged += 1
            left_out, w.suppressed = w.suppressed, 0
            return left_out
        w.suppressed += 1
        return None

    def exception(self, logger: logging.Logger, msg: str, *args: object) -> None:
        """`logger.exception(msg, *args)`, rate-limited per `msg`."""
        left_out = self.maybe_allow(msg)
        if left_out is None:
            return
        if left_out:
            logger.error("%d similar errors were not logged in the last minute", left_out)
        logger.exception(msg, *args)
