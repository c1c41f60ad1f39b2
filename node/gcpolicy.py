"""The node process's settings for Python's cyclic garbage collector.

Rules this module keeps (docs/ops.md, "The garbage collector"):
1. Applied once, by the daemon, after the node has started (modules imported, store opened,
   genesis read, threads and verify processes running) and before it serves its first request:
   `gc.freeze()` moves every object alive then into the permanent generation, which no later
   collection walks; `gc.set_threshold(GEN0, GEN1, GEN2)` lets a young generation grow to
   GEN0 net allocations before it is collected instead of CPython's 700.
2. Nothing is switched off: every generation is still collected, the oldest one still under
   CPython's own rule (a full collection once the objects promoted since the last one exceed
   a quarter of those that survived it), so cyclic garbage is still freed and memory bounded.
   Only how often and how much is walked changes.
Why: a node at work tracks 80,000-135,000 objects (measured at 1,500 tx/s: the pool, requests
and blocks in flight, caches), and every collection holds the GIL that the consensus thread
needs. With CPython's defaults that node ran ~2,400 young, ~220 middle and 20 full collections
(~87 ms on average; a full one every ~2 s of the load) in a run with a 30 s load, about 3 s
of GIL-holding CPU; with these settings 145, 13 and 2 (docs/benchmarks.md, session 10).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

__all__ = ["GEN0", "GEN1", "GEN2", "GcPolicy", "apply_gc_policy"]

GEN0 = 20_000  # net allocations of tracked objects before a young collection (CPython: 700)
GEN1 = 10  # young collections before a middle one (CPython's default)
GEN2 = 10  # middle collections before a full one is considered (CPython's default)


@dataclass(frozen=True, slots=True)
class GcPolicy:
    """What `apply_gc_policy` did, for the `node_start` log line."""

    thresholds: tuple[int, int, int]
    frozen: int  # objects moved to the permanent generation

    def describe(self) -> str:
        a, b, c = self.thresholds
        return f"thresholds {a}/{b}/{c}, {self.frozen} objects frozen at start"


def apply_gc_policy() -> GcPolicy:
    """Rule 1. Call once, when the node has started; calling again freezes what is new since."""
    gc.collect()  # what startup left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(GEN0, GEN1, GEN2)
    return GcPolicy(thresholds=gc.get_threshold(), frozen=gc.get_freeze_count())
