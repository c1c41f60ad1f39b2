"""An HDR-style latency histogram (log-linear buckets, ~3 significant digits) and its percentiles.

Rules this module keeps:
1. Values are non-negative integers (the harness records microseconds). A value lands in a bucket
   whose width is at most 1/1024 of its lower bound, so any reported percentile is within 0.1 % of
   the exact order statistic (Gil Tene's HdrHistogram layout: 2048 sub-buckets, then halves).
2. Percentiles use the nearest-rank definition: the value of rank ceil(p/100 * n) in sorted order,
   reported as the highest value equivalent to its bucket but never above the recorded max.
3. `max` and `min` are exact; merging two histograms equals recording both value streams.
Source: HdrHistogram (G. Tene), "Recording and reporting latency" — log-linear bucket scheme.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["Histogram"]

_SUB_BITS = 11  # 2048 sub-buckets in the first bucket: 3 significant decimal digits
_HALF = 1 << (_SUB_BITS - 1)


def _index(value: int) -> int:
    shift = max(0, value.bit_length() - _SUB_BITS)
    return shift * _HALF + (value >> shift)


def _highest_equivalent(index: int) -> int:
    if index < 2 * _HALF:
        return index
    shift = index // _HALF - 1
    sub = index - shift * _HALF
    return ((sub + 1) << shift) - 1


class Histogram:
    """Counts of integer values in log-linear buckets; `percentile(p)` within 0.1 %."""

    __slots__ = ("_counts", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0  # number of recorded values
        self.total = 0  # their sum (exact), for the mean
        self.max = 0  # exact largest value (0 when empty)
        self.min = 0  # exact smallest value (0 when empty)

    def record(self, value: int, count: int = 1) -> None:
        if value < 0:
            raise ValueError(f"histogram values must be >= 0, got {value}")
        i = _index(value)
        self._counts[i] = self._counts.get(i, 0) + count
        if self.count == 0 or value < self.min:
            self.min = value
        self.count += count
        self.total += value * count
        self.max = max(self.max, value)

    def record_many(self, values: Iterable[int]) -> None:
        for v in values:
            self.record(v)

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        for i, c in other._counts.items():
            self._counts[i] = self._counts.get(i, 0) + c
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> int:
        """Nearest-rank percentile (rule 2); 0 for an empty histogram."""
        if not 0 <= p <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {p}")
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for i in sorted(self._counts):
            seen += self._counts[i]
            if seen >= rank:
                return min(max(_highest_equivalent(i), self.min), self.max)
        return self.max

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary_ms(self) -> dict[str, float]:
        """The report's `latency_ms` object (values recorded in microseconds)."""
        out = {
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "p999": self.percentile(99.9),
            "max": self.max,
            "mean": self.mean(),
        }
        res = {k: round(v / 1000, 3) for k, v in out.items()}
        res["count"] = self.count
        return res
