"""The pre-authentication gate: which inbound connections may start a handshake, and the record
of those refused (issue 10, fault 8).

Rules kept here:
- No stranger can keep the node from its admitted peers. Slots are per source IP address
  (`max_pending_per_address`); the configured host of each admitted peer has slots that only
  connections from that address can take (`p2p.limits.PendingSlots`); strangers together hold at
  most `max_pending_handshakes`. Outbound dials never pass through the gate.
- Addresses are compared in canonical form (an IPv4-mapped IPv6 address as IPv4); a peer's host
  name reserves slots once resolved (at start and whenever the admitted list changes).
- Every refusal is counted by reason (`refusals`, exported by the node as
  `gmchain_p2p_handshake_refusals_total`) and logged as one summary line per
  `REFUSAL_LOG_INTERVAL_S` at most, never once per connection: a flood must not fill the disk.
- The replay guard shared by the node's responders lives here (one per node, not per
  connection), so a hello accepted once is refused when sent again (`replayed_hello`).
- So does the budget of handshakes that may reach SM2 work (`p2p.limits.HandshakeBudget`), per
  address and for strangers together, the admitted peers' hosts on a budget of their own: the
  hello proof's key is public, so a valid hello proves little (`handshake_rate`).

Sources: docs/p2p.md §6 ("Pre-authentication"); issue 10, fault 8.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Iterable

from gmchain.p2p.config import HANDSHAKE_BURST_S, P2PConfig, PeerInfo
from gmchain.p2p.limits import HandshakeBudget, PendingSlots, RefusalSummary, ReplayGuard

__all__ = ["PreAuthGate", "compute_address"]

log = logging.getLogger("gmchain.p2p")

REFUSAL_LOG_INTERVAL_S = 60.0  # at most one summary line of refused handshakes per interval
HELLO_REPLAY_WINDOW = 65_536  # nonces of accepted hellos remembered (2 MiB) to refuse replays
DNS_TIMEOUT_S = 5.0  # resolving an admitted peer's host name (for its reserved slots)


def compute_address(host: str) -> str | None:
    """The canonical text of an IP address (an IPv4-mapped IPv6 address as IPv4), or None if
    `host` is not an IP literal."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


class PreAuthGate:
    """Admits inbound connections to the handshake by source address and counts refusals."""

    def __init__(self, config: P2PConfig) -> None:
        self._slots = PendingSlots(
            per_address=config.max_pending_per_address, strangers=config.max_pending_handshakes
        )
        self._budget = HandshakeBudget(
            per_address_rate=config.handshake_rate_per_address,
            per_address_burst=max(1, int(config.handshake_rate_per_address * HANDSHAKE_BURST_S)),
            strangers_rate=config.handshake_rate_strangers,
            strangers_burst=max(1, int(config.handshake_rate_strangers * HANDSHAKE_BURST_S)),
            now=0.0,  # buckets start full, so any later clock reading only tops them up
        )
        self.replay_guard = ReplayGuard(capacity=HELLO_REPLAY_WINDOW)
        self.refusals: Counter[str] = Counter()  # inbound handshakes refused, by reason
        self._summary = RefusalSummary(interval_s=REFUSAL_LOG_INTERVAL_S)
        self._hosts: list[str] = []  # the admitted peers' configured hosts, one per peer
        self._resolved: dict[str, list[str]] = {}  # host name -> its addresses

    # ------------------------------------------------------------------ known addresses

    def set_peers(self, peers: Iterable[PeerInfo]) -> None:
        """Reserve slots for the configured hosts of `peers` (names count once resolved)."""
        self._hosts = [p.host for p in peers]
        self._update_known()

    async def resolve_names(self) -> None:
        """Resolve the host names among the admitted peers' hosts (IP literals need nothing)."""
        loop = asyncio.get_running_loop()
        for host in set(self._hosts):
            if compute_address(host) is not None:
                continue
            try:
                async with asyncio.timeout(DNS_TIMEOUT_S):
                    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (OSError, TimeoutError) as e:
                log.warning("peer host %s does not resolve (%s): no reserved slots for it", host, e)
                continue
            addresses = {compute_address(str(i[4][0])) for i in infos}
            self._resolved[host] = sorted(a for a in addresses if a)
        self._update_known()

    def _update_known(self) -> None:
        known: Counter[str] = Counter()
        for host in self._hosts:
            literal = compute_address(host)
            for address in [literal] if literal else self._resolved.get(host, []):
                known[address] += 1
        self._slots.set_known(known)
        self._budget.set_known(known)

    # ------------------------------------------------------------------ slots

    def get_refusal(self, address: str) -> str | None:
        """Why a new connection from `address` may not start a handshake now, or None."""
        return self._slots.get_refusal(address)

    def take(self, address: str) -> bool:
        """Take a slot for `address` (after `get_refusal` said None); hand the result back to
        `release` when the handshake ends either way."""
        return self._slots.take(address)

    def release(self, address: str, stranger: bool) -> None:
        self._slots.release(address, stranger)

    def count_held(self) -> dict[str, int]:
        return self._slots.count_held()

    def is_known(self, address: str) -> bool:
        """Whether `address` is an admitted peer's configured host."""
        return self._slots.is_known(address)

    def maybe_spend_handshake(self, address: str, now: float) -> bool:
        """Spend one handshake's SM2 work for `address`; False if its budget is spent."""
        return self._budget.maybe_spend(address, now)

    # ------------------------------------------------------------------ refusals

    def on_refused(self, reason: str, address: str, now: float) -> None:
        """Count a refused inbound handshake; log a summary if one is due."""
        self.refusals[reason] += 1
        summary = self._summary.add(reason, now)
        if summary is not None:
            log.warning(
                "inbound handshakes refused since the last summary: %s (%d, the latest from %s); "
                "the next summary comes in %.0f s at the earliest",
                summary,
                sum(summary.values()),
                address,
                REFUSAL_LOG_INTERVAL_S,
            )
