"""The consensus thread's precedence over the node's other work: thread niceness.

Rules this module keeps (node/service.py rule 6; docs/ops.md `worker_nice`):
1. Only ever lower a thread's priority (raise its nice value), never raise one: that needs no
   privilege, and the consensus thread keeps the priority the process started with.
2. `lower_this_thread(n, base)` makes the calling thread run `n` nice steps below `base`
   (capped at 19), unless it already runs that low: a thread started by an already lowered
   thread inherits its value (Linux keeps a nice value per thread and a new thread copies its
   creator's). `n` = 0, or a platform without thread priorities: nothing.
3. `base` is what the thread that builds a node ran at before this module first changed it
   (`original_nice`, remembered per thread), so a process that builds several nodes on one
   thread (tests, an embedding program) lowers that thread once, never step after step.
4. A refusal by the OS is logged once and ignored: priority is a performance hint, never a
   reason to stop a node.
Why (docs/benchmarks.md, "Session 7 — cluster4 stall"): since issue 11 the consensus thread
executes blocks beside the event loop and the admission threads instead of between their
callbacks, and the OS shares a node's CPU among all its runnable threads alike; under load a
block's validation waited 1-2 s in the run queue for ~0.1 s of CPU, longer than a round.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Precedence", "lower_this_thread", "original_nice", "thread_nice"]

log = logging.getLogger("gmchain.node")

_warned = False


def thread_nice(native_id: int) -> int | None:
    """The nice value of one thread of this process (None where the OS does not say)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, native_id)
    except (AttributeError, OSError):
        return None


_original: dict[int, int] = {}  # rule 3: native thread id -> its nice value before our change


def original_nice() -> int | None:
    """Rule 3: the calling thread's nice value before this module first lowered it."""
    tid = threading.get_native_id()
    if tid not in _original:
        now = thread_nice(tid)
        if now is None:
            return None
        _original[tid] = now
    return _original[tid]


def lower_this_thread(n: int, base: int | None) -> None:
    """Rule 2 (and 4): the calling thread runs `n` nice steps below `base`."""
    global _warned
    if n <= 0 or base is None or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        target = min(19, base + n)
        if os.getpriority(os.PRIO_PROCESS, tid) < target:  # rule 1: only ever lower it
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as exc:
        if not _warned:
            _warned = True
            log.warning("cannot lower a worker thread's priority (worker_nice): %s", exc)


class Precedence:
    """node/service.py rule 6: `base` is read on the thread that builds the node, before any
    change; the event loop goes `worker_nice` steps below it, the pools it makes twice as many."""

    def __init__(self, worker_nice: int) -> None:
        self.worker_nice = worker_nice
        self.base = original_nice()  # rule 3

    def pool(self, workers: int, prefix: str) -> ThreadPoolExecutor:
        """A thread pool whose threads run 2 x `worker_nice` steps below `base`."""
        return ThreadPoolExecutor(
            workers,
            prefix,
            initializer=lower_this_thread,
            initargs=(2 * self.worker_nice, self.base),
        )

    def lower_loop(self) -> None:
        """Call on the event loop once the consensus thread has started (it inherits the
        priority of the thread that starts it: it must keep `base`)."""
        lower_this_thread(self.worker_nice, self.base)
