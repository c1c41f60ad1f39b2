"""Per-client limits of the RPC server (a part of node/rpc.py; docs/ops.md "Limits and failure
behaviour", docs/rpc.md "Limits").

Rules this module keeps:
1. Connections are admitted per address and in total, and the total leaves `fd_reserve`
   descriptors of RLIMIT_NOFILE to LevelDB and P2P: a refused connection gets one HTTP 503 with a
   -31201 body and is closed at once, so idle clients can never take the descriptors the store needs
   (issue 10 fault 3). `raise_fd_limit` lifts the soft limit to the hard one at start.
2. A connection must deliver a request's headers within `header_timeout_s` of opening or of the
   request's first byte (slowloris); a keep-alive connection idle for `idle_timeout_s` is closed
   (aiohttp's keep-alive timer, which does not restart on partial data). A WebSocket is inside its
   upgrade request for its whole life: neither timer applies; its heartbeat does.
3. Requests being handled are counted per connection and per address, in two separate pools:
   work (every method) and waits (`gm_waitForReceipt`, which only holds a future); the bytes of
   the messages being handled are counted per address. A request beyond a cap is refused
   (-31201) and counted against nobody else (issue 10 fault 5).
4. Browsers: a `Host` that is a name must be allowed (IP literals always are: a DNS rebinding
   always arrives with a name, as geth's vhosts check reasons); an `Origin`, if present, must be
   allowed; a POST must say `Content-Type: application/json` (the CORS "simple" types a page may
   send without a preflight are refused) (issue 10 fault 15).
5. Per-address means per IPv4 address or per IPv6 /64 (`address_key`). When the total is full, a
   newcomer whose address holds fewer connections than the heaviest address (by two or more)
   takes the heaviest address's oldest connection (idle ones first; a WebSocket gets close code
   1013, an idle HTTP connection a 503): a few addresses cannot keep every other client out. An
   address holds at most `max_ws_per_ip` WebSockets (issue 10 fault 5, review).

Sources: RFC 9110 §7.2 (Host), RFC 6454 (Origin), Fetch standard §3.2.3 (CORS-safelisted request
headers); geth rpc/http.go (`virtualHostHandler`, `validateRequest`); RFC 6455 §4.2.2 / §10.2.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import resource
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web

from gmchain.node.api import ErrorCode
from gmchain.node.rpcspec import RpcError, dumps_compact

__all__ = [
    "LOCAL_HOSTS",
    "AddressState",
    "ClientConn",
    "ConnectionGuard",
    "GuardedSite",
    "address_key",
    "compute_connection_caps",
    "fd_limit",
    "is_allowed_host",
    "is_allowed_origin",
    "raise_fd_limit",
    "request_refusal",
]

log = logging.getLogger("gmchain.rpc")

LOCAL_HOSTS = ("localhost",)  # names always allowed besides the IP literals
MIN_CONNECTIONS = 64  # the total cap never goes below this, whatever the descriptor limit
_JSON_TYPES = ("application/json", "application/json-rpc", "application/jsonrequest")  # geth's


def fd_limit() -> int:
    """RLIMIT_NOFILE's soft limit as it is now."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def raise_fd_limit() -> int:
    """Lift RLIMIT_NOFILE's soft limit to its hard limit (as geth's fdlimit.Raise); the soft limit
    the process then has."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return fd_limit()


@dataclass(frozen=True, slots=True)
class ConnectionCaps:
    total: int  # connections open at once, all addresses
    per_ip: int  # connections open at once from one address; below `total`


def compute_connection_caps(
    *, max_connections: int, per_ip: int, fd_reserve: int, nofile: int
) -> ConnectionCaps:
    """The caps in force: the total never uses the first `fd_reserve` descriptors (but is at
    least MIN_CONNECTIONS), and one address never holds more than half of it."""
    total = min(max_connections, max(MIN_CONNECTIONS, nofile - fd_reserve))
    return ConnectionCaps(total=total, per_ip=max(1, min(per_ip, total // 2)))


# --- browser checks -----------------------------------------------------------------------------


def _host_name(host: str) -> str:
    """The name or address of a Host header value, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


@functools.lru_cache(maxsize=256)  # per request on the hot path; bounded (Host is client text)
def _is_ip(name: str) -> bool:
    if "%" in name:  # an IPv6 zone id is free text: `fe80::1%evil.com` is a name, not an address
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_allowed_host(host: str | None, allowed: frozenset[str]) -> bool:
    """No Host (HTTP/1.0), an IP literal, or a name in `allowed` ("*": any)."""
    if not host:
        return True
    name = _host_name(host)
    return _is_ip(name) or "*" in allowed or name in allowed


def is_allowed_origin(origin: str | None, allowed: frozenset[str]) -> bool:
    """No Origin (not a browser), or an origin in `allowed` ("*": any)."""
    if origin is None:
        return True
    return "*" in allowed or origin.strip().lower().rstrip("/") in allowed


def request_refusal(
    request: web.BaseRequest, hosts: frozenset[str], origins: frozenset[str]
) -> tuple[int, str] | None:
    """(HTTP status, message) if a browser rule refuses the request, else None (rule 4)."""
    headers = request.headers
    return _refusal(
        headers.get("Host"),
        headers.get("Origin"),
        request.method,
        headers.get("Content-Type", ""),
        hosts,
        origins,
    )


@functools.lru_cache(maxsize=256)  # a client sends the same headers on every request; bounded
def _refusal(
    host: str | None,
    origin: str | None,
    method: str,
    content_type: str,
    hosts: frozenset[str],
    origins: frozenset[str],
) -> tuple[int, str] | None:
    if not is_allowed_host(host, hosts):
        return 403, f"host {_host_name(host or '')[:64]!r} is not allowed (rpc_allowed_hosts)"
    if not is_allowed_origin(origin, origins):
        return 403, f"origin {(origin or '')[:64]!r} is not allowed (rpc_allowed_origins)"
    if method == "POST":
        ctype = content_type.partition(";")[0].strip().lower()
        if ctype not in _JSON_TYPES:
            return 415, "Content-Type must be application/json"
    return None


# --- connections --------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class AddressState:
    """What one remote address holds now; removed when it holds nothing."""

    connections: int = 0
    work: int = 0  # requests being handled (rule 3)
    waits: int = 0  # gm_waitForReceipt being handled (rule 3)
    request_bytes: int = 0  # bytes of the messages being handled (rule 3)
    websockets: int = 0  # of `connections`, upgraded to WebSockets (rule 5)
    conns: dict[ClientConn, None] = field(default_factory=dict)  # oldest first (rule 5)


@dataclass(slots=True, eq=False)
class ClientConn:
    """One accepted connection (HTTP keep-alive or WebSocket) and its counters."""

    ip: str
    address: AddressState
    work: int = 0
    waits: int = 0
    busy: bool = False  # inside a request handler (a WebSocket: for its whole life)
    websocket: bool = False
    evicted: bool = False  # closed to let a lighter address in (rule 5); already released
    header_timer: asyncio.TimerHandle | None = None
    transport: asyncio.Transport | None = None


@dataclass(slots=True)
class ConnectionGuard:
    """Admission of connections and the in-flight counters (rules 1-3)."""

    caps: ConnectionCaps
    header_timeout_s: float
    max_work_per_conn: int
    max_work_per_ip: int
    max_waits_per_conn: int
    max_waits_per_ip: int
    max_bytes_per_ip: int = 1 << 62
    max_ws_per_ip: int = 1 << 30
    connections: int = 0
    refused: int = 0  # connections refused at the caps, for /metrics
    evicted: int = 0  # connections closed to let a lighter address in, for /metrics
    timed_out: int = 0  # connections closed by the header timeout, for /metrics
    addresses: dict[str, AddressState] = field(default_factory=dict)
    by_transport: dict[Any, ClientConn] = field(default_factory=dict)

    def protocol(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        return _GuardedProtocol(self, inner)

    def client_of(self, request: web.BaseRequest) -> ClientConn | None:
        return self.by_transport.get(request.transport)

    def admit(self, ip: str, transport: asyncio.Transport) -> ClientConn | None:
        key = address_key(ip)
        addr = self.addresses.get(key)
        held = 0 if addr is None else addr.connections
        if held >= self.caps.per_ip:
            self.refused += 1
            return None
        if self.connections >= self.caps.total and not self._evict_heaviest(held):
            self.refused += 1
            return None
        if addr is None:
            addr = self.addresses[key] = AddressState()
        addr.connections += 1
        self.connections += 1
        conn = ClientConn(ip=key, address=addr, transport=transport)
        addr.conns[conn] = None
        self.by_transport[transport] = conn
        return conn

    def _evict_heaviest(self, held: int) -> bool:
        """The total is full and an address holding `held` connections wants one: close the
        oldest (idle ones first) connection of the address holding the most, if that is more
        than `held` + 1, so a few addresses can never keep the rest out (rule 5)."""
        heaviest = max(self.addresses.values(), key=lambda a: a.connections, default=None)
        if heaviest is None or heaviest.connections <= held + 1:
            return False
        victim = next((c for c in heaviest.conns if not c.busy), None)
        victim = victim or next(iter(heaviest.conns))
        transport, websocket = victim.transport, victim.websocket
        self.release(victim)
        victim.evicted = True
        self.evicted += 1
        if transport is not None:
            if websocket:
                transport.write(_WS_EVICTED_FRAME)
            elif not victim.busy:
                transport.write(_refusal_bytes(self.caps))
            if transport.get_write_buffer_size() > 0:  # it does not read: its descriptor now
                transport.abort()
            else:
                transport.close()
        return True

    def release(self, conn: ClientConn) -> None:
        if conn.evicted:
            return
        self.by_transport.pop(conn.transport, None)
        self.connections -= 1
        conn.address.connections -= 1
        conn.address.conns.pop(conn, None)
        if conn.websocket:
            conn.websocket = False
            conn.address.websockets -= 1
        self._forget_if_idle(conn)

    def websocket_opened(self, conn: ClientConn) -> bool:
        """Count `conn` as a WebSocket of its address; False if the address has its cap."""
        if conn.address.websockets >= self.max_ws_per_ip:
            self.refused += 1
            return False
        conn.websocket = True
        conn.address.websockets += 1
        return True

    def _forget_if_idle(self, conn: ClientConn) -> None:
        a = conn.address
        idle = a.connections == 0 and a.work == 0 and a.waits == 0 and a.request_bytes == 0
        if idle and self.addresses.get(conn.ip) is a:
            del self.addresses[conn.ip]

    # The two pairs below run on every request: plain calls in a try/finally of the caller, not
    # context managers (a generator-based one cost ~2 % of a query on the loop).

    def hold_bytes(self, conn: ClientConn, size: int) -> None:
        """Count a message of `size` bytes against its address while it is handled (rule 3);
        the caller gives them back with `release_bytes` once the reply is made."""
        a = conn.address
        if a.request_bytes + size > self.max_bytes_per_ip:
            raise RpcError(
                ErrorCode.RATE_LIMITED,
                f"busy: more than {self.max_bytes_per_ip} request bytes in flight from this "
                "address (rpc_max_in_flight_bytes_per_ip)",
            )
        a.request_bytes += size

    def release_bytes(self, conn: ClientConn, size: int) -> None:
        conn.address.request_bytes -= size
        self._forget_if_idle(conn)

    def arm_header_timer(self, conn: ClientConn) -> None:
        if conn.header_timer is None and not conn.busy:
            loop = asyncio.get_running_loop()
            conn.header_timer = loop.call_later(self.header_timeout_s, self._headers_late, conn)

    def _headers_late(self, conn: ClientConn) -> None:
        conn.header_timer = None
        if not conn.busy and conn.transport is not None:
            self.timed_out += 1
            conn.transport.close()

    def request_started(self, conn: ClientConn) -> None:
        conn.busy = True
        if conn.header_timer is not None:
            conn.header_timer.cancel()
            conn.header_timer = None

    def request_done(self, conn: ClientConn) -> None:
        conn.busy = False

    def take_slot(self, conn: ClientConn, *, wait: bool) -> None:
        """Hold one work or wait slot of `conn` and its address; RATE_LIMITED if none is free.
        The caller gives it back with `give_slot` (same `wait`) when the request is done."""
        a = conn.address
        if wait:
            if conn.waits >= self.max_waits_per_conn:
                raise RpcError(ErrorCode.RATE_LIMITED, "busy: too many waits on this connection")
            if a.waits >= self.max_waits_per_ip:
                raise RpcError(ErrorCode.RATE_LIMITED, "busy: too many waits from this address")
            conn.waits += 1
            a.waits += 1
        else:
            if conn.work >= self.max_work_per_conn:
                raise RpcError(
                    ErrorCode.RATE_LIMITED, "busy: too many requests in flight on this connection"
                )
            if a.work >= self.max_work_per_ip:
                raise RpcError(
                    ErrorCode.RATE_LIMITED, "busy: too many requests in flight from this address"
                )
            conn.work += 1
            a.work += 1

    def give_slot(self, conn: ClientConn, *, wait: bool) -> None:
        a = conn.address
        if wait:
            conn.waits -= 1
            a.waits -= 1
        else:
            conn.work -= 1
            a.work -= 1
        self._forget_if_idle(conn)


def address_key(ip: str) -> str:
    """What the per-address limits key on: an IPv4 address, or an IPv6 address's /64 (one
    host is commonly given a whole /64, so its single addresses cost it nothing) (rule 5)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


_WS_EVICTED_REASON = b"evicted: the server is full and this address holds the most connections"
# A server's close frame (RFC 6455 §5.5.1): FIN + opcode 8, unmasked, code 1013 "Try Again Later".
_WS_EVICTED_FRAME = bytes([0x88, 2 + len(_WS_EVICTED_REASON)]) + b"\x03\xf5" + _WS_EVICTED_REASON


def _refusal_bytes(caps: ConnectionCaps) -> bytes:
    msg = f"busy: too many connections (at most {caps.per_ip} per address, {caps.total} in all)"
    body = dumps_compact(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": int(ErrorCode.RATE_LIMITED), "message": msg},
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's request handler behind the connection caps and the header timer."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._conn: ClientConn | None = None

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's are not asyncio.Transport subclasses
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self._conn = self._guard.admit(ip, transport)
        if self._conn is None:
            transport.write(_refusal_bytes(self._guard.caps))
            transport.close()
            return
        self._inner.connection_made(transport)
        self._guard.arm_header_timer(self._conn)

    def data_received(self, data: bytes) -> None:
        if self._conn is None or self._conn.evicted:
            return
        self._guard.arm_header_timer(self._conn)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._conn is None:
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.header_timer is not None:
            conn.header_timer.cancel()
        self._guard.release(conn)
        conn.transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a ConnectionGuard."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = lambda: self._guard.protocol(server())  # noqa: E731
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            ssl=self._ssl_context,
            # a TLS handshake must finish within the header timeout (rule 2)
            ssl_handshake_timeout=(
                None if self._ssl_context is None else self._guard.header_timeout_s
            ),
        )
