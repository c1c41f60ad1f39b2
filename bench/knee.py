"""Finding the saturation knee of a rate sweep.

Rules this module keeps:
1. A sweep point is healthy when the system keeps up: committed TPS >= KEEP_UP x offered rate,
   success rate >= 95 % (CAICT stress criterion) and, if a latency bound is given, p99 within it.
2. The knee is the healthy point with the highest committed TPS; above it throughput stops
   following the offered load (or latency explodes). With no healthy point there is no knee.
3. Pure function of the points: no clock, no IO, so it is tested on synthetic data.
Source: CAICT (China Academy of Information and Communications Technology) blockchain
performance test method — stress (send rate ~ commit rate, >= 95 % success), spike (2x, >= 75 %),
stability (20 % of the knee) scenarios; JR/T 0193-2020 performance clauses.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KEEP_UP", "SweepPoint", "find_knee", "is_healthy"]

KEEP_UP = 0.95


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
