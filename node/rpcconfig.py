"""The limits of the RPC server (a part of node/rpc.py; docs/ops.md gives each one's reason).

Rules this module keeps:
1. Every limit has a safe default and `validate()` names the first bad one; the node's
   `config.toml` sets them through its `rpc_*` keys (`RpcConfig.from_node_config`).
2. No limit is one pool a single client can drain: in-flight, wait and connection caps are per
   connection and per address (node/rpclimits.py); the totals only bound memory and descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass

from gmchain.node.config import NodeConfig

__all__ = ["AUTH_MODES", "RpcConfig"]
AUTH_MODES = ("off", "reads")  # rpc_auth (node/rpcauth.py)

_MIB = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcConfig:
    """Limits of the RPC server. Every one is a hard cap; docs/ops.md gives the reasons."""

    max_body_bytes: int = _MIB  # HTTP request body
    max_batch: int = 100  # requests in one batch
    max_subscriptions: int = 32  # per WebSocket connection
    max_ws_message_bytes: int = _MIB  # one WebSocket message
    max_wait_ms: int = 30_000  # gm_waitForReceipt timeout cap
    ws_send_queue: int = 1024  # outgoing messages buffered per WebSocket
    ws_heartbeat_s: float = 30.0
    # per client (node/rpclimits.py); a full batch must fit one connection's in-flight cap
    max_in_flight_per_conn: int = 256
    max_in_flight_per_ip: int = 2048
    max_waits_per_conn: int = 256
    max_waits_per_ip: int = 2048
    max_connections: int = 1024  # in all; lowered to RLIMIT_NOFILE - fd_reserve
    max_connections_per_ip: int = 64  # lowered to half the total in force
    max_ws_per_ip: int = 32  # WebSockets open at once from one address (of the connections)
    max_json_elements: int = 20_000  # JSON values in one message (parsed objects cost ~25x bytes)
    max_in_flight_bytes_per_ip: int = 16 * _MIB  # bytes of one address's messages being handled
    fd_reserve: int = 1024  # descriptors RPC connections never take (LevelDB, P2P, logs)
    header_timeout_s: float = 10.0  # a request's headers (and then its body) must arrive in this
    idle_timeout_s: float = 60.0  # a keep-alive connection with no request is closed after this
    max_response_bytes: int = 16 * _MIB  # one reply (a whole batch reply included)
    ws_send_queue_bytes: int = 32 * _MIB  # queued for one WebSocket
    ws_send_total_bytes: int = 256 * _MIB  # queued for all WebSockets together
    allowed_hosts: tuple[str, ...] = ()  # besides localhost, IP literals and the listen host
    allowed_origins: tuple[str, ...] = ()  # browser origins allowed; none by default
    error_log_per_minute: int = 10  # internal-error tracebacks logged per minute (node/ratelog.py)
    tls_cert: str = ""  # PEM certificate chain; with tls_key the listener speaks TLS only
    tls_key: str = ""  # PEM private key of tls_cert (node/rpctls.py)
    auth: str = "off"  # "off": reads open; "reads": org data needs a login (node/rpcauth.py)
    session_ttl_s: int = 900  # a login token's lifetime

    def validate(self) -> None:
        for name in (
            "max_body_bytes",
            "max_batch",
            "max_subscriptions",
            "max_ws_message_bytes",
            "max_wait_ms",
            "ws_send_queue",
            "max_in_flight_per_conn",
            "max_in_flight_per_ip",
            "max_waits_per_conn",
            "max_waits_per_ip",
            "max_connections",
            "max_connections_per_ip",
            "max_ws_per_ip",
            "max_json_elements",
            "max_in_flight_bytes_per_ip",
            "max_response_bytes",
            "ws_send_queue_bytes",
            "ws_send_total_bytes",
            "error_log_per_minute",
            "session_ttl_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RpcConfig.{name}: expected a positive integer")
        if not isinstance(self.fd_reserve, int) or self.fd_reserve < 0:
            raise ValueError("RpcConfig.fd_reserve: expected a non-negative integer")
        for name in ("ws_heartbeat_s", "header_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RpcConfig.{name}: expected a positive number")
        if self.max_in_flight_per_conn < self.max_batch:
            raise ValueError("RpcConfig.max_in_flight_per_conn: must be at least max_batch")
        if self.max_in_flight_bytes_per_ip < max(self.max_body_bytes, self.max_ws_message_bytes):
            raise ValueError(
                "RpcConfig.max_in_flight_bytes_per_ip: must be at least max_body_bytes and "
                "max_ws_message_bytes"
            )
        if self.ws_send_queue_bytes < self.max_response_bytes:
            raise ValueError("RpcConfig.ws_send_queue_bytes: must be at least max_response_bytes")
        if self.ws_send_total_bytes < self.ws_send_queue_bytes:
            raise ValueError("RpcConfig.ws_send_total_bytes: must be at least ws_send_queue_bytes")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("RpcConfig.tls_cert and tls_key: set both (TLS) or neither")
        if self.auth not in AUTH_MODES:
            raise ValueError(f'RpcConfig.auth: expected "off" or "reads", got {self.auth!r}')
        for host in self.allowed_hosts:
            if not isinstance(host, str) or not host or any(c in host for c in " /\t"):
                raise ValueError(f"RpcConfig.allowed_hosts: {host!r} is not a host name")
        for origin in self.allowed_origins:
            if not isinstance(origin, str) or (origin != "*" and "://" not in origin):
                raise ValueError(
                    f"RpcConfig.allowed_origins: {origin!r} is not an origin (scheme://host[:port])"
                )

    @classmethod
    def from_node_config(cls, cfg: NodeConfig) -> RpcConfig:
        """The RPC limits of a node's config.toml (its `rpc_*` keys)."""
        return cls(
            max_body_bytes=cfg.rpc_max_body_bytes,
            max_in_flight_per_conn=cfg.rpc_max_in_flight_per_conn,
            max_in_flight_per_ip=cfg.rpc_max_in_flight_per_ip,
            max_waits_per_conn=cfg.rpc_max_waits_per_conn,
            max_waits_per_ip=cfg.rpc_max_waits_per_ip,
            max_connections=cfg.rpc_max_connections,
            max_connections_per_ip=cfg.rpc_max_connections_per_ip,
            max_ws_per_ip=cfg.rpc_max_ws_per_ip,
            max_json_elements=cfg.rpc_max_json_elements,
            max_in_flight_bytes_per_ip=cfg.rpc_max_in_flight_bytes_per_ip,
            fd_reserve=cfg.rpc_fd_reserve,
            header_timeout_s=cfg.rpc_header_timeout_s,
            idle_timeout_s=cfg.rpc_idle_timeout_s,
            max_response_bytes=cfg.rpc_max_response_bytes,
            ws_send_queue_bytes=cfg.rpc_ws_send_queue_bytes,
            ws_send_total_bytes=cfg.rpc_ws_send_total_bytes,
            allowed_hosts=tuple(cfg.rpc_allowed_hosts),
            allowed_origins=tuple(cfg.rpc_allowed_origins),
            error_log_per_minute=cfg.rpc_error_log_per_minute,
            tls_cert=cfg.rpc_tls_cert,
            tls_key=cfg.rpc_tls_key,
            auth=cfg.rpc_auth,
            session_ttl_s=cfg.rpc_session_ttl_s,
        )

    @classmethod
    def minimal(cls) -> RpcConfig:
        """Small limits for tests: limits are reached with small inputs."""
        return cls(
            max_body_bytes=256 * 1024,  # still fits one MAX_TX_BYTES tx in hex
            max_batch=10,
            max_subscriptions=4,
            max_ws_message_bytes=64 * 1024,
            max_wait_ms=2_000,
            ws_send_queue=64,
            max_in_flight_per_conn=16,
            max_in_flight_per_ip=64,
            max_waits_per_conn=16,
            max_waits_per_ip=64,
            max_connections=64,
            max_connections_per_ip=32,
            max_response_bytes=1 * _MIB,
            ws_send_queue_bytes=2 * _MIB,
            ws_send_total_bytes=8 * _MIB,
        )
