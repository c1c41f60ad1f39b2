"""Finding the saturation knee of a rate sweep, and saying where a run stood against it.

Rules this module keeps:
1. A sweep point is healthy when the system keeps up: committed TPS >= KEEP_UP x offered rate,
   success rate >= 95 % (CAICT stress criterion) and, if a latency bound is given, p99 within it.
2. The knee is the healthy point with the highest committed TPS; above it throughput stops
   following the offered load (or latency explodes). With no healthy point there is no knee.
3. Every run is classified `below`, `at` or `past` the knee (`classify`): past when it does not
   keep up (rule 1) or when its median latency climbs over the measurement window (an unbounded
   queue: the last third's median p50 at least CLIMB_FACTOR x the first third's and CLIMB_MIN_MS
   more); at when it keeps up but only just (committed < NEAR_KEEP_UP x offered, or the latency
   climbs by half that much), or when its offered rate is within KNEE_BAND of a measured knee;
   below otherwise. A `past` run's numbers are never the headline (bench.human rule 2).
4. Pure functions of the numbers: no clock, no IO, so they are tested on synthetic data.
Source: CAICT (China Academy of Information and Communications Technology) blockchain
performance test method — stress (send rate ~ commit rate, >= 95 % success), spike (2x, >= 75 %),
stability (20 % of the knee, > 95 %) scenarios; JR/T 0193-2020 performance clauses.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CLIMB_FACTOR",
    "CLIMB_MIN_MS",
    "KEEP_UP",
    "KNEE_BAND",
    "NEAR_KEEP_UP",
    "LatencyTrend",
    "Saturation",
    "SweepPoint",
    "classify",
    "find_knee",
    "is_healthy",
    "latency_trend",
]

KEEP_UP = 0.95
NEAR_KEEP_UP = 0.98
CLIMB_FACTOR = 2.0  # last-third median p50 / first-third median p50 of an unbounded queue
CLIMB_MIN_MS = 200.0  # ... and at least this much higher (noise on a fast chain is tens of ms)
KNEE_BAND = 0.10  # offered within +-10 % of a measured knee's offered rate is "at the knee"

Verdict = Literal["below", "at", "past"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    offered_tps: float
    committed_tps: float
    success_rate: float  # committed valid / sent, 0..1
    p99_ms: float


def is_healthy(pt: SweepPoint, *, p99_limit_ms: float | None = None) -> bool:
    if pt.offered_tps <= 0:
        return False
    if pt.committed_tps < KEEP_UP * pt.offered_tps or pt.success_rate < 0.95:
        return False
    return p99_limit_ms is None or pt.p99_ms <= p99_limit_ms


def find_knee(points: list[SweepPoint], *, p99_limit_ms: float | None = None) -> SweepPoint | None:
    """The healthy point with the highest committed TPS (rule 2), or None."""
    healthy = [p for p in points if is_healthy(p, p99_limit_ms=p99_limit_ms)]
    if not healthy:
        return None
    return max(healthy, key=lambda p: (p.committed_tps, -p.offered_tps))


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyTrend:
    """Median latency over the measurement window: first and last third, least-squares slope."""

    first_ms: float  # median of the per-second p50s of the window's first third
    last_ms: float  # ... of its last third
    slope_ms_per_s: float
    points: int  # seconds with at least one commit

    def is_climbing(self, factor: float = CLIMB_FACTOR, min_ms: float = CLIMB_MIN_MS) -> bool:
        return self.last_ms >= factor * self.first_ms and self.last_ms - self.first_ms >= min_ms


def latency_trend(p50_ms: list[float]) -> LatencyTrend | None:
    """Rule 3's trend over per-second p50s (seconds without commits left out); None if < 3."""
    n = len(p50_ms)
    if n < 3:
        return None
    third = max(1, n // 3)
    xs = range(n)
    mx, my = (n - 1) / 2, sum(p50_ms) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, p50_ms, strict=True)) / sxx
    return LatencyTrend(
        first_ms=round(statistics.median(p50_ms[:third]), 2),
        last_ms=round(statistics.median(p50_ms[-third:]), 2),
        slope_ms_per_s=round(slope, 2),
        points=n,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Saturation:
    verdict: Verdict
    committed_ratio: float  # committed TPS / offered TPS
    trend: LatencyTrend | None
    reasons: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        t = self.trend
        return {
            "verdict": self.verdict,
            "committed_ratio": self.committed_ratio,
            "p50_first_third_ms": t.first_ms if t else None,
            "p50_last_third_ms": t.last_ms if t else None,
            "p50_slope_ms_per_s": t.slope_ms_per_s if t else None,
            "latency_climbing": t.is_climbing() if t else None,
            "reasons": list(self.reasons),
        }


def classify(
    *,
    offered_tps: float,
    committed_tps: float,
    success_rate: float,
    p50_series_ms: list[float],
    knee_offered_tps: float | None = None,
) -> Saturation:
    """Where a run stood against the knee (rule 3)."""
    ratio = round(committed_tps / offered_tps, 4) if offered_tps > 0 else 0.0
    trend = latency_trend(p50_series_ms)
    past: list[str] = []
    if ratio < KEEP_UP:
        past.append(f"committed {ratio:.1%} of offered (< {KEEP_UP:.0%})")
    if success_rate < 0.95:
        past.append(f"success {success_rate:.1%} (< 95%)")
    if trend is not None and trend.is_climbing():
        past.append(
            f"median latency climbed from {trend.first_ms:g} to {trend.last_ms:g} ms over the "
            f"window ({trend.slope_ms_per_s:+g} ms/s): an unbounded queue"
        )
    if past:
        return Saturation(verdict="past", committed_ratio=ratio, trend=trend, reasons=tuple(past))
    near: list[str] = []
    if knee_offered_tps:
        rel = offered_tps / knee_offered_tps
        if rel >= 1 - KNEE_BAND:
            near.append(f"offered {rel:.0%} of the sweep's knee ({knee_offered_tps:g} tx/s)")
    if ratio < NEAR_KEEP_UP:
        near.append(f"committed only {ratio:.1%} of offered (< {NEAR_KEEP_UP:.0%})")
    if trend is not None and trend.is_climbing(1 + (CLIMB_FACTOR - 1) / 2, CLIMB_MIN_MS / 2):
        near.append(f"median latency rising ({trend.first_ms:g} -> {trend.last_ms:g} ms)")
    if near:
        return Saturation(verdict="at", committed_ratio=ratio, trend=trend, reasons=tuple(near))
    why = "keeps up with margin"
    if knee_offered_tps:
        why += f"; offered {offered_tps / knee_offered_tps:.0%} of the knee"
    return Saturation(verdict="below", committed_ratio=ratio, trend=trend, reasons=(why,))
