"""What the relayer sends next: pure planning over progress read from the chains (issue 13).

crosschain/relayer.py reads, each cycle, the destination's arrivals of a source chain and the
source's outbox count; this module decides, without any IO, which sequence numbers to prove and
deliver, how to cut them into `recv_packets` transactions, and which epoch the destination's
light client may be moved to. Its tests drive it with plain values.

Rules this module keeps:
1. Fresh records are never stalled by a backlog: a cycle takes the newest missing seqs first (a
   window of `fresh` seqs, newest-first, from the top of the outbox), then the oldest missing
   seqs (a sweep of `sweep` seqs, oldest-first, from the destination's `contiguous + 1`). With a
   10,000-record backlog, each cycle still delivers every record queued since the last cycle
   (as long as fewer than `fresh` arrive per cycle) while the sweep drains the backlog.
2. Only seqs known to be missing are taken: every seq above the destination's `max_seq` (up to
   the source's count) and the seqs of the destination's `missing` list. A seq between
   `contiguous` and `max_seq` beyond a truncated `missing` list (cut at the caller's limit, or
   at MISSING_SCAN seqs above `contiguous`) is unknown and waits for a later cycle (the sweep
   reaches it as `contiguous` rises). The lowest missing seq, `contiguous + 1`, is always taken
   when anything is missing (the epoch rule needs it).
3. A `recv_packets` transaction carries at most MAX_BATCH packets and at most MAX_BATCH_BYTES
   bytes of packets (tx_max_bytes is 64 KiB; the rest is the transaction's own envelope); a
   packet larger than that on its own is never sent (the caller reports it). Batches keep the
   order they are given.
4. Epochs (the light client verifies a certificate only with its current trusted set, XC.md
   "update_client"): the client is never moved past the epoch of the lowest missing seq, so no
   missing record's header becomes unverifiable; when nothing is missing it follows the source's
   epoch. Packets of a later epoch than that target wait; packets of an earlier epoch can only be
   delivered if their header is already verified on the destination.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MISSING_SCAN",
    "Arrivals",
    "batches",
    "compute_target_epoch",
    "contiguous_runs",
    "select_seqs",
]

MAX_BATCH = 64  # packets per recv_packets (XC.md; the contract's bound)
MAX_BATCH_BYTES = 48 * 1024  # packet bytes per recv_packets transaction
# The destination lists missing seqs only within this many above contiguous (xclient.arrivals).
MISSING_SCAN = 10_000
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrivals:
    """The destination's `arrivals(source, missing_limit)`: every seq <= contiguous arrived;
    max_seq is the highest arrived; count how many arrived; missing the first missing seqs
    above contiguous, ascending, at most `missing_limit` of them."""

    contiguous: int = 0
    max_seq: int = 0
    count: int = 0
    missing: tuple[int, ...] = ()

    def missing_total(self, queued: int) -> int:
        """Records queued on the source and not on the destination."""
        return max(0, queued - self.count)


def select_seqs(arrivals: Arrivals, queued: int, *, fresh: int, sweep: int) -> list[int]:
    """Rules 1 and 2: the seqs to deliver this cycle, fresh ones (newest-first) then the sweep
    (oldest-first), each at most once; `queued` is the source's outbox count."""
    above = max(arrivals.max_seq, arrivals.contiguous)
    gaps = [s for s in arrivals.missing if arrivals.contiguous < s <= min(above, queued)]
    newest = list(range(queued, above, -1))  # all missing, newest first
    chosen: list[int] = []
    seen: set[int] = set()

    def take(seq: int) -> None:
        if seq not in seen:
            seen.add(seq)
            chosen.append(seq)

    for seq in (newest + gaps[::-1])[:fresh]:
        take(seq)
    oldest = gaps + newest[::-1]
    taken = 0
    for seq in oldest:
        if taken >= max(1, sweep):
            break
        if seq not in seen:
            take(seq)
            taken += 1
    return chosen


def contiguous_runs(seqs: Sequence[int], max_len: int) -> list[tuple[int, int]]:
    """`(start, length)` runs covering `seqs` (for paged reads of the outbox), each at most
    `max_len` long."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][0] + runs[-1][1] and runs[-1][1] < max_len:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((seq, 1))
    return runs


def batches(
    items: Sequence[_T],
    size_of: Callable[[_T], int],
    *,
    max_count: int = MAX_BATCH,
    max_bytes: int = MAX_BATCH_BYTES,
) -> tuple[list[list[_T]], list[_T]]:
    """Rule 3: (batches, oversize items), in the given order."""
    out: list[list[_T]] = []
    oversize: list[_T] = []
    current: list[_T] = []
    used = 0
    for item in items:
        size = size_of(item)
        if size > max_bytes:
            oversize.append(item)
            continue
        if current and (len(current) >= max_count or used + size > max_bytes):
            out.append(current)
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        out.append(current)
    return out, oversize


def compute_target_epoch(
    client_epoch: int, lowest_missing_epoch: int | None, source_epoch: int
) -> int:
    """Rule 4: the epoch the destination's client may be moved to this cycle (never back)."""
    if lowest_missing_epoch is None:
        return max(client_epoch, source_epoch)
    return max(client_epoch, min(lowest_missing_epoch, source_epoch))
