"""Pure helpers for the transport's limits: token bucket, ban list, reconnect backoff.

Rules kept here:
- No IO and no clock reads: every function takes `now` (seconds, monotonic) and randomness comes
  in as a `random.Random` (STYLE.md habit 3), so each rule is unit-testable without sockets.
- The token bucket lets the balance go negative ("debt") and returns how long the caller must
  wait; the caller waits instead of dropping, which turns an over-fast peer into TCP
  backpressure rather than a ban (a legitimate peer may burst during block sync).
- Backoff is capped exponential with multiplicative jitter ("Exponential Backoff And Jitter",
  AWS Architecture Blog, 2015), bounded by [min_s * (1 - jitter), max_s].
"""

from __future__ import annotations

import random

__all__ = ["BanList", "TokenBucket", "compute_backoff"]

_MAX_EXPONENT = 64  # factor ** attempt stays finite


class TokenBucket:
    """Token bucket: `rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, *, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst  # invariant: _tokens <= burst; may be negative (debt)
        self._last = now

    def take(self, now: float, n: float = 1.0) -> float:
        """Spend `n` tokens; return the seconds to wait before acting (0.0 if within budget)."""
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class BanList:
    """Node ids refused until an expiry time."""

    __slots__ = ("_until", "total")

    def __init__(self) -> None:
        self._until: dict[bytes, float] = {}  # node_id -> expiry (monotonic seconds)
        self.total = 0  # bans ever issued

    def ban(self, node_id: bytes, now: float, seconds: float) -> None:
        """Ban `node_id` until now + seconds (extends, never shortens, an existing ban)."""
        self._until[node_id] = max(self._until.get(node_id, 0.0), now + seconds)
        self.total += 1

    def get_banned_until(self, node_id: bytes, now: float) -> float | None:
        """Expiry of the ban on `node_id`, or None if it is not banned at `now`."""
        until = self._until.get(node_id)
        if until is None:
            return None
        if until <= now:
            del self._until[node_id]
            return None
        return until

    def is_banned(self, node_id: bytes, now: float) -> bool:
        return self.get_banned_until(node_id, now) is not None

    def count_active(self, now: float) -> int:
        return sum(1 for nid in list(self._until) if self.is_banned(nid, now))


def compute_backoff(
    attempt: int,
    *,
    min_s: float,
    max_s: float,
    factor: float,
    jitter: float,
    rng: random.Random,
) -> float:
    """Delay before reconnect attempt number `attempt` (0-based) with multiplicative jitter."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    base = min(max_s, min_s * factor ** min(attempt, _MAX_EXPONENT))
    return base * (1.0 - jitter * rng.random())
