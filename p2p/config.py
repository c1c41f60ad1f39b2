"""Transport configuration, peer descriptors and the transport's error types.

Rules kept here:
- Config is a frozen dataclass checked by `validate()`; a bad value is the caller's fault and
  raises `ConfigError` with the field name (STYLE.md habit 13). `P2PConfig.minimal()` is the
  small preset for tests.
- A `PeerInfo` is consistent by construction: its `node_id` is the SM3-derived address of its
  SM2 public key (`PublicKey.address`), so the admitted list cannot name one key under two ids.
- Errors follow h11's split: `RemoteProtocolError` (the peer misbehaved: drop, count, maybe ban)
  carries a short machine-readable `reason` that is also the stats key; misuse by the caller is
  `ValueError`/`ConfigError`; our own bugs are assertions.

Defaults follow DESIGN.md ("Transport", "Ports": P2P on 30300) and the issue text for p2p/.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NewType

from gmchain.crypto_sm import PublicKey

__all__ = [
    "HANDSHAKE_BURST_S",
    "ConfigError",
    "MiB",
    "NodeId",
    "P2PConfig",
    "PeerInfo",
    "RemoteProtocolError",
]

NodeId = NewType("NodeId", bytes)
"""A node's 20-byte address (`PublicKey.address`)."""

MiB = 1024 * 1024
NODE_ID_SIZE = 20
HANDSHAKE_BURST_S = 4.0  # a handshake budget saves up this many seconds of its rate


class ConfigError(ValueError):
    """A configuration value is out of range (the caller's fault)."""


class RemoteProtocolError(Exception):
    """The peer broke the protocol; `reason` is a short stable token used as the stats key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInfo:
    """One admitted node: its identity key and where to dial it."""

    node_id: bytes  # == pubkey.address, 20 bytes
    pubkey: PublicKey
    host: str
    port: int
    name: str = ""  # the operator's name for it (log lines only)

    def __post_init__(self) -> None:
        if len(self.node_id) != NODE_ID_SIZE:
            raise ValueError(f"node_id must be {NODE_ID_SIZE} bytes")
        if self.node_id != self.pubkey.address:
            raise ValueError("node_id does not match pubkey.address")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if not self.host:
            raise ValueError("host is empty")

    @classmethod
    def from_pubkey(cls, pubkey: PublicKey, host: str, port: int, name: str = "") -> PeerInfo:
        """Build a PeerInfo whose node_id is derived from the key."""
        return cls(node_id=pubkey.address, pubkey=pubkey, host=host, port=port, name=name)


@dataclass(frozen=True, slots=True, kw_only=True)
class P2PConfig:
    """Limits and timers of the transport. All times in seconds, sizes in bytes."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 30300  # 0 = pick an ephemeral port (tests)
    max_frame: int = 4 * MiB  # largest application payload one frame may carry
    handshake_timeout_s: float = 5.0  # TCP connect + the whole 4-message handshake
    idle_timeout_s: float = 30.0  # nothing received for this long -> disconnect
    # keepalive PINGs are sent after idle_timeout_s / 3 without traffic
    max_queue_frames: int = 1024  # per-peer outbound queue, frames
    max_queue_bytes: int = 64 * MiB  # per-peer outbound queue, bytes
    max_frames_per_s: float = 2000.0  # per-peer inbound token bucket rate
    burst_frames: int = 4000  # token bucket depth
    ban_seconds: float = 60.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    reconnect_factor: float = 2.0
    reconnect_jitter: float = 0.5  # each delay is scaled by a uniform factor in [1 - jitter, 1]
    # Unauthenticated inbound connections (issue 10, fault 8; p2p.limits.PendingSlots): from
    # addresses that are no admitted peer's configured host, at most this many at once ...
    max_pending_handshakes: int = 64
    # ... and from any one address at most this many (times the admitted peers configured at it;
    # those slots are reserved: strangers cannot take them).
    max_pending_per_address: int = 4
    hello_timeout_s: float = 2.0  # the first message (M1) must arrive within this
    # Handshakes that reach SM2 work (~6 ms of it each; the hello proof's key is public), per
    # second (p2p.limits.HandshakeBudget): from any one address (times the admitted peers
    # configured there, a budget of their own), and from strangers' addresses together. Bursts
    # of HANDSHAKE_BURST_S seconds' worth. The SM2 work runs on `handshake_threads` threads.
    handshake_rate_per_address: float = 2.0
    handshake_rate_strangers: float = 20.0
    handshake_threads: int = 2
    rekey_after_bytes: int = 1 << 36  # close and re-handshake after this much sealed data

    def validate(self) -> None:
        """Raise ConfigError naming the first field that is out of range."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("listen_host", "listen_port"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{f.name} must be a number")
            if value <= 0:
                raise ConfigError(f"{f.name} must be > 0, got {value}")
        if not self.listen_host:
            raise ConfigError("listen_host is empty")
        if not 0 <= self.listen_port <= 65535:
            raise ConfigError(f"listen_port out of range: {self.listen_port}")
        if self.max_frame > 64 * MiB:
            raise ConfigError("max_frame above 64 MiB")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ConfigError("reconnect_min_s > reconnect_max_s")
        if self.reconnect_factor < 1.0:
            raise ConfigError("reconnect_factor must be >= 1")
        if self.reconnect_jitter >= 1.0:
            raise ConfigError("reconnect_jitter must be < 1")
        if not isinstance(self.handshake_threads, int) or self.handshake_threads > 64:
            raise ConfigError("handshake_threads must be an integer 1..64")
        if self.burst_frames < 1:
            raise ConfigError("burst_frames must be >= 1")
        if self.max_queue_bytes < self.max_frame:
            raise ConfigError("max_queue_bytes must hold at least one max_frame")

    @classmethod
    def minimal(cls, **overrides: object) -> P2PConfig:
        """Small preset for tests: ephemeral port, short timers, small frames."""
        base: dict[str, object] = {
            "listen_port": 0,
            "max_frame": 64 * 1024,
            "handshake_timeout_s": 2.0,
            "hello_timeout_s": 1.0,
            "idle_timeout_s": 3.0,
            "max_queue_frames": 256,
            "max_queue_bytes": 4 * MiB,
            "ban_seconds": 30.0,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
        }
        base.update(overrides)
        cfg = cls(**base)  # type: ignore[arg-type]
        cfg.validate()
        return cfg
