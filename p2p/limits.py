"""Pure helpers for the transport's limits: token bucket, ban list, reconnect backoff,
pre-authentication slots per source address, the hello replay guard, and refusal summaries.

Rules kept here:
- No IO and no clock reads: every function takes `now` (seconds, monotonic) and randomness comes
  in as a `random.Random` (STYLE.md habit 3), so each rule is unit-testable without sockets.
- The token bucket lets the balance go negative ("debt") and returns how long the caller must
  wait; the caller waits instead of dropping, which turns an over-fast peer into TCP
  backpressure rather than a ban (a legitimate peer may burst during block sync).
- Backoff is capped exponential with multiplicative jitter ("Exponential Backoff And Jitter",
  AWS Architecture Blog, 2015), bounded by [min_s * (1 - jitter), max_s].
- Pre-authentication slots are never one pool a stranger can drain (issue 10, fault 8): every
  source address has its own cap, the addresses of admitted peers have slots no stranger can
  take, and strangers together share a bounded pool. The budget of handshakes that reach SM2
  work (`HandshakeBudget`) is split the same way.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Mapping

__all__ = [
    "BanList",
    "HandshakeBudget",
    "PendingSlots",
    "RefusalSummary",
    "ReplayGuard",
    "TokenBucket",
    "compute_backoff",
]

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

    def get_tokens(self, now: float) -> float:
        """The balance at `now` (refilled, nothing spent)."""
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        return self._tokens


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


class PendingSlots:
    """Slots for inbound connections that have not authenticated yet, by source address.

    An address where `known` admitted peers are configured may hold `per_address * known`
    slots, and those count against nothing else: strangers cannot fill them. Any other address
    may hold `per_address`, and all of them together at most `strangers`.
    """

    __slots__ = ("_held", "_known", "_strangers_held", "per_address", "strangers")

    def __init__(self, *, per_address: int, strangers: int) -> None:
        if per_address < 1 or strangers < 1:
            raise ValueError("per_address and strangers must be >= 1")
        self.per_address = per_address
        self.strangers = strangers
        self._known: dict[str, int] = {}  # address -> admitted peers configured there
        self._held: Counter[str] = Counter()  # address -> slots held; no zero entries
        self._strangers_held = 0  # invariant: slots held by connections taken as strangers

    def set_known(self, known: Mapping[str, int]) -> None:
        """Replace the known addresses; slots already held are released as they were taken."""
        self._known = {a: n for a, n in known.items() if n > 0}

    def is_known(self, address: str) -> bool:
        return address in self._known

    def get_refusal(self, address: str) -> str | None:
        """Why a new connection from `address` may not take a slot now, or None."""
        known = self._known.get(address, 0)
        if self._held[address] >= self.per_address * max(1, known):
            return "per_address_limit"
        if not known and self._strangers_held >= self.strangers:
            return "too_many_handshakes"
        return None

    def take(self, address: str) -> bool:
        """Take a slot (the caller checked `get_refusal`); True if it is a stranger's slot,
        which the caller hands back to `release`."""
        stranger = address not in self._known
        self._held[address] += 1
        self._strangers_held += stranger
        return stranger

    def release(self, address: str, stranger: bool) -> None:
        self._held[address] -= 1
        if self._held[address] <= 0:
            del self._held[address]
        self._strangers_held -= stranger

    def count_held(self) -> dict[str, int]:
        """Slots held now: {"known": n, "strangers": m}."""
        total = sum(self._held.values())
        return {"known": total - self._strangers_held, "strangers": self._strangers_held}


class HandshakeBudget:
    """How many inbound handshakes may reach SM2 work (issue 10, fault 8, review finding 1).

    A hello with a valid proof costs its sender one HMAC and this node an SM2 key generation,
    an encryption and maybe a decryption, and the proof's key (the genesis hash) is public. So
    each source address has a token bucket (`per_address_rate` per second, `per_address_burst`
    deep; times the admitted peers configured there), and strangers' addresses also draw on one
    shared bucket; an admitted peer's configured host draws only on its own, which no stranger
    can spend. An attempt refused by either bucket spends from neither.
    """

    __slots__ = ("_buckets", "_known", "_strangers", "per_address_burst", "per_address_rate")

    def __init__(
        self,
        *,
        per_address_rate: float,
        per_address_burst: int,
        strangers_rate: float,
        strangers_burst: int,
        now: float,
    ) -> None:
        if per_address_rate <= 0 or per_address_burst < 1:
            raise ValueError("per_address_rate must be > 0 and per_address_burst >= 1")
        self.per_address_rate = per_address_rate
        self.per_address_burst = per_address_burst
        self._strangers = TokenBucket(rate=strangers_rate, burst=strangers_burst, now=now)
        self._known: dict[str, int] = {}  # address -> admitted peers configured there
        # address -> its bucket; an entry whose bucket is full again is dropped (count_tracked)
        self._buckets: dict[str, TokenBucket] = {}

    def set_known(self, known: Mapping[str, int]) -> None:
        """Replace the known addresses (their buckets start afresh)."""
        self._known = {a: n for a, n in known.items() if n > 0}
        for address in list(self._buckets):
            del self._buckets[address]

    def maybe_spend(self, address: str, now: float) -> bool:
        """Spend one handshake for `address` if its budget allows; False (nothing spent) if not."""
        bucket = self._buckets.get(address)
        if bucket is None:
            scale = self._known.get(address, 1)
            bucket = TokenBucket(
                rate=self.per_address_rate * scale, burst=self.per_address_burst * scale, now=now
            )
        stranger = address not in self._known
        if bucket.get_tokens(now) < 1 or (stranger and self._strangers.get_tokens(now) < 1):
            return False
        bucket.take(now)
        if stranger:
            self._strangers.take(now)
        if address not in self._buckets and len(self._buckets) >= _TRACKED_BEFORE_PRUNE:
            self.count_tracked(now)
        self._buckets[address] = bucket
        return True

    def count_tracked(self, now: float) -> int:
        """Forget the addresses whose bucket is full again (a fresh one is the same); return
        how many are still tracked. Entries are added only by spending, and strangers spend
        the shared bucket too, so at most about strangers_rate * burst / rate of them live."""
        for address, bucket in list(self._buckets.items()):
            if bucket.get_tokens(now) >= bucket.burst:
                del self._buckets[address]
        return len(self._buckets)


_TRACKED_BEFORE_PRUNE = 1024  # HandshakeBudget prunes refilled buckets past this many addresses


class ReplayGuard:
    """Remembers the last `capacity` values; refuses one seen before (a replayed hello)."""

    __slots__ = ("_order", "_seen", "capacity")

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._seen: set[bytes] = set()  # invariant: exactly the values in _order
        self._order: deque[bytes] = deque()

    def maybe_add(self, value: bytes) -> bool:
        """Add `value`; False (and nothing changes) if it is already remembered."""
        if value in self._seen:
            return False
        self._seen.add(value)
        self._order.append(value)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return True


class RefusalSummary:
    """Counts refusals by reason and hands back what accumulated at most once per `interval_s`,
    so a flood of refused connections costs one log line per interval, not one per connection.
    The first refusal after a quiet interval is reported at once."""

    __slots__ = ("_last", "_pending", "interval_s")

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self._pending: Counter[str] = Counter()  # refusals since the last report
        self._last = float("-inf")  # when the last report was handed out

    def add(self, reason: str, now: float) -> dict[str, int] | None:
        """Count one refusal; return the counts to report (and reset them) if it is time."""
        self._pending[reason] += 1
        if now - self._last < self.interval_s:
            return None
        out = dict(self._pending)
        self._pending.clear()
        self._last = now
        return out
