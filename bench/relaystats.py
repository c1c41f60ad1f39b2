"""Relay latency arithmetic for the platform profile (bench/relay.py): pure, no I/O.

Rules this module keeps:
1. A record's relay latency is the regulator block's timestamp (the block at the relayed copy's
   `arrived_height`) minus the business block's timestamp (`header.timestampMs` of the verified
   source header at the copy's `height`), in milliseconds: both are block timestamps, stamped by
   each chain's proposer from the same machine clock, so no client clock enters the number.
2. Percentiles are nearest-rank (p in (0, 100]: the ceil(p/100 * n)-th smallest value); an empty
   sample gives None for every statistic and count 0.
3. Only the seqs a phase owns are counted (its seq range on the business chain's outbox); a seq
   not yet relayed is counted as `undelivered`, never as a latency.
4. The per-stage split uses the relayer's own log (its `relay cycle` lines' times, UTC, minus
   their durations give each cycle's start): it is as good as the two clocks agree (one machine).
"""

from __future__ import annotations

import bisect
import datetime
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "block_intervals_ms",
    "cycle_durations",
    "cycle_starts_ms",
    "latencies_ms",
    "percentiles",
    "relayed_fields",
    "stage_split",
]

_CYCLE = re.compile(r"relay cycle \S+ in (\d+(?:\.\d+)?) s")
_CYCLE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?relay cycle \S+ in (\d+(?:\.\d+)?) s", re.M
)


def percentiles(values: Iterable[float], *, mean_digits: int = 1) -> dict[str, Any]:
    """Rule 2: count, p50, p90, p99, max and mean (rounded to `mean_digits`) of `values`."""
    v = sorted(values)
    n = len(v)
    if n == 0:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}

    def rank(p: float) -> float:
        return v[max(0, math.ceil(p / 100 * n) - 1)]

    return {
        "count": n,
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "max": v[-1],
        "mean": round(sum(v) / n, mean_digits),
    }


def relayed_fields(copy: Mapping[str, Any]) -> tuple[int, int, int]:
    """(business height, business block timestamp ms, regulator arrived height) of a relayed copy
    as gm_getRelayedRecord answers it (snake_case or camelCase keys)."""

    def get(m: Mapping[str, Any], *names: str) -> Any:
        for n in names:
            if n in m:
                return m[n]
        raise KeyError(names[0])

    header = get(copy, "header")
    return (
        int(get(copy, "height")),
        int(get(header, "timestamp_ms", "timestampMs")),
        int(get(copy, "arrived_height", "arrivedHeight")),
    )


def latencies_ms(
    copies: Mapping[int, Mapping[str, Any] | None],
    regulator_ts: Mapping[int, int],
    seqs: Sequence[int],
) -> tuple[list[int], list[int], dict[str, list[int]]]:
    """Rule 1 and 3: per seq in `seqs` the latency (ms); the seqs not relayed; and per seq's
    stages the raw numbers: business height, business ts, regulator height, regulator ts."""
    out: list[int] = []
    missing: list[int] = []
    stages: dict[str, list[int]] = {"biz_h": [], "biz_ts": [], "reg_h": [], "reg_ts": []}
    for s in seqs:
        copy = copies.get(s)
        if not copy:
            missing.append(s)
            continue
        bh, bts, rh = relayed_fields(copy)
        rts = regulator_ts[rh]
        out.append(rts - bts)
        for k, x in (("biz_h", bh), ("biz_ts", bts), ("reg_h", rh), ("reg_ts", rts)):
            stages[k].append(x)
    return out, missing, stages


def cycle_durations(log_text: str) -> list[float]:
    """Seconds of each `relay cycle <chain> in X s` line of a relayer log (crosschain/relayer.py
    rule 4)."""
    return [float(m.group(1)) for m in _CYCLE.finditer(log_text)]


def block_intervals_ms(timestamps: Sequence[int]) -> list[int]:
    """Differences between consecutive block timestamps (sorted by height by the caller)."""
    return [b - a for a, b in itertools.pairwise(timestamps)]


def cycle_starts_ms(log_text: str) -> list[int]:
    """Wall-clock start (ms, UTC) of each relay cycle: the log line's time minus its duration
    (node/logsetup.py text format: `YYYY-MM-DD HH:MM:SS,mmm` in UTC)."""
    out = []
    for m in _CYCLE_LINE.finditer(log_text):
        when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        end = when.replace(tzinfo=datetime.UTC).timestamp() * 1000
        out.append(int(end - float(m.group(2)) * 1000))
    return out


def stage_split(
    biz_ts: Sequence[int], reg_ts: Sequence[int], starts: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Rule 4: split each record's latency at the start of the cycle that delivered it (the last
    cycle start at or before its regulator block): `poll_wait` (business block -> that cycle's
    start, 0 if the cycle started first and read the record mid-cycle) and `in_cycle` (cycle
    start -> regulator block)."""
    s = sorted(starts)
    wait, work = [], []
    for b, r in zip(biz_ts, reg_ts, strict=True):
        i = bisect.bisect_right(s, r) - 1
        if i < 0:
            continue
        wait.append(max(0, s[i] - b))
        work.append(r - max(s[i], b))
    return {"poll_wait_ms": percentiles(wait), "in_cycle_ms": percentiles(work)}
