"""JSON-RPC 2.0 over HTTP and WebSocket, the OpenRPC document, and the metrics endpoint.

Rules this module keeps (docs/rpc.md is the user's statement of them):
1. The node is reached only through `node.api.NodeApi`; this module holds no chain state.
2. Every reply to a request with an `id` is a JSON-RPC 2.0 response object; every bad input gets
   an error object with a specific code (`node.api.ErrorCode`) and a message naming what is wrong.
   Notifications (no `id`) are executed and get no reply. Nothing a client sends stops the server:
   `ApiError` becomes its code, any other exception becomes -32603 with a generic message and is
   logged as our bug.
3. Hard limits, checked before work is done: body size (HTTP 413 with a JSON-RPC error body),
   batch size, WebSocket message size (close code 1009, RFC 6455 §7.4.1), subscriptions per
   connection, wait timeouts, reply size (one reply or batch reply, -31002 per entry beyond it),
   and the per-client limits of node/rpclimits.py: connections per address and in all, header and
   idle timeouts, requests in flight per connection and per address (RATE_LIMITED, never a queue),
   Host/Origin/Content-Type. No limit is one pool a single client can drain.
6. A WebSocket's send queue is bounded in messages and in bytes, and all queues together in
   bytes: a connection over its budget (or the largest one when the total is over) is closed with
   code 1008 at once, its queue freed and nothing more it sent is run (issue 10 fault 6).
4. Binary values are `0x` lowercase hex; heights are JSON integers (`ledger.jsonfmt`).
5. `rpc.discover` returns the OpenRPC document kept as package data (`node/openrpc.json`);
   `docs/openrpc.json` is a byte-identical copy (a test checks both match the method table).
   The method table and the request parsing are node/rpcspec.py; the limits node/rpcconfig.py;
   per-client admission node/rpclimits.py; reply and send budgets node/rpcsend.py.

This module is the server: HTTP and WebSocket endpoints, request checks, dispatch and error
mapping. The method handlers are node/rpcmethods.py (`RpcMethods`), the subscriptions
node/rpcsubs.py (`RpcSubscriptions`), the governance and epoch methods node/rpcgov.py
(`GovMethods`), the cross-chain methods node/rpcxc.py (`XcMethods`), the counters
node/rpcmetrics.py; the server builds each with what it needs and calls the handlers from one
table.

Sources: JSON-RPC 2.0 specification; OpenRPC 1.2.6; RFC 6455 (WebSocket); Prometheus text
exposition format 0.0.4; FISCO BCOS / Ethereum method naming (docs/REFERENCES.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler

from gmchain.ledger.jsonfmt import JsonFormatError, status_to_json
from gmchain.node.api import ApiError, ErrorCode, NodeApi
from gmchain.node.ratelog import LogLimiter
from gmchain.node.rpcauth import AUTH_TOKEN, AuthMethods, ReadGuard, now_ms, request_token
from gmchain.node.rpcconfig import RpcConfig
from gmchain.node.rpcgov import GovMethods
from gmchain.node.rpclimits import (
    LOCAL_HOSTS,
    ClientConn,
    ConnectionGuard,
    GuardedSite,
    compute_connection_caps,
    fd_limit,
    raise_fd_limit,
    request_refusal,
)
from gmchain.node.rpcmethods import CLIENT_ADDRESS, MethodHandler, RpcMethods
from gmchain.node.rpcmetrics import RpcMetrics, guard_metrics_text
from gmchain.node.rpcsend import ReplyBudget, SendBudget, WsConn, reply_value
from gmchain.node.rpcsession import Sessions
from gmchain.node.rpcspec import (
    METHODS,
    WS_METHODS,
    RpcError,
    dumps_compact,
    error_reply,
    json_elements,
    load_openrpc,
    loads_strict,
    parse_params,
)
from gmchain.node.rpcsubs import RpcSubscriptions
from gmchain.node.rpctls import RpcTls
from gmchain.node.rpcvalidate import ReplyValidator, from_env
from gmchain.node.rpcxc import XcMethods

__all__ = ["METHODS", "WS_METHODS", "RpcConfig", "RpcServer", "load_openrpc"]

log = logging.getLogger("gmchain.rpc")

_WAIT_METHODS = frozenset({"gm_waitForReceipt"})  # hold a future, not work (rpclimits rule 3)
_REQUEST_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})  # JSON-RPC 2.0 §4


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a request needs while it runs: its parsed message is gone by then."""

    req_id: Any
    notification: bool
    name: str
    args: dict[str, Any]


def _name_of(host: str) -> tuple[str, ...]:
    """The listen host if it is a name (IP literals are always allowed)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return (host,) if host else ()
    return ()


class RpcServer:
    """The JSON-RPC server: HTTP POST on `/` and `/rpc`, WebSocket on `/ws`, GET `/metrics` and
    `/health`. Wire it to a node with `RpcServer(api, host=..., port=..., config=...)`."""

    def __init__(
        self,
        api: NodeApi,
        *,
        host: str = "127.0.0.1",
        port: int = 8545,
        config: RpcConfig | None = None,
        reply_validator: ReplyValidator | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._api = api
        # Checks every reply against the OpenRPC document when GMCHAIN_VALIDATE_RPC is set (the
        # test suite sets it); None in production (node/rpcvalidate.py rule 1).
        self._validator = reply_validator if reply_validator is not None else from_env()
        self._host = host
        self._requested_port = port
        self._config = config or RpcConfig()
        self._config.validate()
        self._metrics = RpcMetrics()
        # TLS (node/rpctls.py): loaded now, so an unusable pair stops the node at start
        c = self._config
        self.tls = None if not c.tls_cert else RpcTls(c.tls_cert, c.tls_key)
        self._error_log = LogLimiter(per_minute=self._config.error_log_per_minute)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._conns: set[WsConn] = set()
        self._send_budget = SendBudget(limit=self._config.ws_send_total_bytes)
        self._hosts = frozenset(
            h.lower() for h in (*LOCAL_HOSTS, *self._config.allowed_hosts, *_name_of(host))
        )
        self._origins = frozenset(o.lower().rstrip("/") for o in self._config.allowed_origins)
        self._guard = ConnectionGuard(
            caps=self._caps(fd_limit()),
            header_timeout_s=c.header_timeout_s,
            max_work_per_conn=c.max_in_flight_per_conn,
            max_work_per_ip=c.max_in_flight_per_ip,
            max_waits_per_conn=c.max_waits_per_conn,
            max_waits_per_ip=c.max_waits_per_ip,
            max_bytes_per_ip=c.max_in_flight_bytes_per_ip,
            max_ws_per_ip=c.max_ws_per_ip,
        )
        # The handlers, called straight from this table (no wrapper per request): the methods
        # over the node, and the WebSocket-only ones, which run the subscriptions.
        self._methods = RpcMethods(api, self._config)
        self._subs = RpcSubscriptions(
            api,
            self._config,
            metrics=self._metrics,
            validator=self._validator,
            error_log=self._error_log,
        )
        # Read authentication (node/rpcauth.py): the login methods always; the checks only
        # with rpc_auth = "reads" (rule 1 there)
        sessions = Sessions(ttl_ms=self._config.session_ttl_s * 1000)
        self._reads = ReadGuard(api, sessions, clock_ms) if self._config.auth == "reads" else None
        self._subs.guard = self._reads
        self._handlers: dict[str, MethodHandler] = {
            **self._methods.handlers(),
            **GovMethods(api).handlers(),
            **XcMethods(api).handlers(),
            **AuthMethods(api, sessions, clock_ms).handlers(),
            **self._subs.handlers(),
        }
        assert self._handlers.keys() == METHODS.keys()  # one handler per method: our bug if not

    # --- lifecycle ---

    @property
    def metrics(self) -> RpcMetrics:
        """The RPC counters (read by the daemon's periodic refusal summary, node/opslog.py)."""
        return self._metrics

    @property
    def port(self) -> int:
        """The port listened on (the actual one when 0 was requested)."""
        if self._port is None:
            raise RuntimeError("RpcServer is not started")
        return self._port

    def _caps(self, nofile: int) -> Any:
        c = self._config
        return compute_connection_caps(
            max_connections=c.max_connections,
            per_ip=c.max_connections_per_ip,
            fd_reserve=c.fd_reserve,
            nofile=nofile,
        )

    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self._config.max_body_bytes, middlewares=[self._on_request]
        )
        app.router.add_post("/", self._on_http)
        app.router.add_post("/rpc", self._on_http)
        app.router.add_get("/", self._on_wrong_verb)
        app.router.add_get("/rpc", self._on_wrong_verb)
        app.router.add_get("/ws", self._on_ws)
        app.router.add_get("/metrics", self._on_metrics)
        app.router.add_get("/health", self._on_health)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def start(self) -> None:
        self._check_fd_headroom()
        self._runner = web.AppRunner(
            self.build_app(), access_log=None, keepalive_timeout=self._config.idle_timeout_s
        )
        await self._runner.setup()
        tls = None if self.tls is None else self.tls.listener_context
        site = GuardedSite(self._runner, self._host, self._requested_port, self._guard, tls)
        await site.start()
        addrs = self._runner.addresses
        self._port = int(addrs[0][1]) if addrs else self._requested_port
        scheme = "https" if tls is not None else "http"
        log.info("JSON-RPC listening on %s://%s:%d", scheme, self._host, self._port)
        if tls is None and self._config.auth != "off":
            log.warning(
                "rpc_auth = %s without TLS: login tokens travel in clear text", self._config.auth
            )

    def _check_fd_headroom(self) -> None:
        """Raise the descriptor limit as far as allowed; warn when it is below what the limits
        assume, and fit the connection caps to it (rpclimits rule 1)."""
        nofile = raise_fd_limit()
        self._guard.caps = caps = self._caps(nofile)
        need = self._config.fd_reserve + self._config.max_connections
        if nofile < need:
            log.warning(
                "RLIMIT_NOFILE is %d (after raising the soft limit to the hard one), below the "
                "%d this node's limits assume (rpc_fd_reserve %d + rpc_max_connections %d): RPC "
                "connections are capped at %d in all and %d per address; raise LimitNOFILE "
                "(systemd) or `ulimit -n` (docs/ops.md)",
                nofile,
                need,
                self._config.fd_reserve,
                self._config.max_connections,
                caps.total,
                caps.per_ip,
            )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_shutdown(self, _app: web.Application) -> None:
        for conn in list(self._conns):
            await conn.close()
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # --- HTTP ---

    @web.middleware
    async def _on_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: the browser checks, then the connection is busy until the handler
        returns (its header timer stays off; a WebSocket is busy for its whole life)."""
        client = self._guard.client_of(request)
        if client is not None:
            self._guard.request_started(client)
        try:
            refusal = request_refusal(request, self._hosts, self._origins)
            if refusal is not None:
                status, msg = refusal
                self._metrics.errors[ErrorCode.INVALID_REQUEST] += 1
                reply = error_reply(None, ErrorCode.INVALID_REQUEST, msg)
                return self._json_response(reply, status)
            return await handler(request)
        finally:
            if client is not None:
                self._guard.request_done(client)

    async def _on_http(self, request: web.Request) -> web.StreamResponse:
        CLIENT_ADDRESS.set(request.remote or "")
        AUTH_TOKEN.set(request_token(request.headers))
        limit = self._config.max_body_bytes
        too_big = request.content_length is not None and request.content_length > limit
        body = b""
        content = request.content
        if not too_big and content.is_eof():
            # The whole body came with its headers (the usual case for a query): take it as it
            # is, without a read timer and the awaits of the loop below.
            body = content.read_nowait(-1)
            too_big = len(body) > limit
        elif not too_big:
            chunks: list[bytes] = []
            size = 0
            try:
                async with asyncio.timeout(self._config.header_timeout_s):
                    while chunk := await content.read(65536):
                        size += len(chunk)
                        if size > limit:
                            too_big = True
                            break
                        chunks.append(chunk)
            except TimeoutError:
                self._metrics.errors[ErrorCode.INVALID_REQUEST] += 1
                msg = f"request body not received within {self._config.header_timeout_s:g} s"
                resp = self._json_response(error_reply(None, ErrorCode.INVALID_REQUEST, msg), 408)
                resp.force_close()
                return resp
            body = b"".join(chunks)
        if too_big:
            self._metrics.errors[ErrorCode.TOO_LARGE] += 1
            msg = f"request body exceeds {limit} bytes"
            return self._json_response(error_reply(None, ErrorCode.TOO_LARGE, msg), status=413)
        text = await self.handle_payload(body, None, self._guard.client_of(request))
        if text is None:
            return web.Response(status=204)
        return web.Response(text=text, content_type="application/json")

    async def _on_wrong_verb(self, _request: web.Request) -> web.Response:
        msg = "JSON-RPC requests must be sent with HTTP POST"
        return self._json_response(error_reply(None, ErrorCode.INVALID_REQUEST, msg), status=405)

    def _json_response(self, obj: Any, status: int = 200) -> web.Response:
        if self._validator is not None and isinstance(obj, dict) and "jsonrpc" in obj:
            self._validator.check_reply(None, obj)
        try:
            text = dumps_compact(obj)
        except (TypeError, ValueError):  # our bug: a handler returned something not JSON
            self._error_log.exception(log, "unserialisable JSON-RPC reply")
            text = dumps_compact(error_reply(None, ErrorCode.INTERNAL_ERROR, "internal error"))
        return web.Response(text=text, status=status, content_type="application/json")

    async def _on_metrics(self, _request: web.Request) -> web.Response:
        try:
            node = self._api.metrics_text()
        except Exception:
            log.exception("metrics_text failed")
            node = b""
        body = node + (b"" if not node or node.endswith(b"\n") else b"\n")
        body += self._metrics.render().encode()
        body += guard_metrics_text(self._guard, self._send_budget).encode()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
        return resp

    async def _on_health(self, _request: web.Request) -> web.Response:
        try:
            st = self._api.status()
            status = status_to_json(st)
        except ApiError as exc:
            return self._json_response({"status": "unavailable", "error": exc.message}, 503)
        except Exception:
            log.exception("health check failed")
            return self._json_response({"status": "unavailable", "error": "internal error"}, 503)
        if not st.healthy:
            # Behind its peers (or not yet heard from any): serving reads from an old height as
            # if current is what fault 2 of issue 10 was about.
            why = f"catching up: {status['lag']} blocks behind the peers' committed height"
            if status["lag"] == 0:
                why = "catching up: no peer has reported its committed height yet"
            return self._json_response({"status": "unavailable", "error": why, **status}, 503)
        return self._json_response({"status": "ok", **status})

    # --- WebSocket ---

    async def _on_ws(self, request: web.Request) -> web.StreamResponse:
        client = self._guard.client_of(request)
        if client is not None and not self._guard.websocket_opened(client):
            self._metrics.errors[ErrorCode.RATE_LIMITED] += 1
            n = self._config.max_ws_per_ip
            why = f"busy: at most {n} WebSockets per address (rpc_max_ws_per_ip)"
            resp = self._json_response(error_reply(None, ErrorCode.RATE_LIMITED, why), 503)
            resp.force_close()
            return resp
        ws = web.WebSocketResponse(
            max_msg_size=self._config.max_ws_message_bytes,
            heartbeat=self._config.ws_heartbeat_s,
        )
        await ws.prepare(request)
        CLIENT_ADDRESS.set(request.remote or "")
        AUTH_TOKEN.set(request_token(request.headers))  # the upgrade's
        conn = WsConn(ws, self._config, self._send_budget)
        self._conns.add(conn)
        self._metrics.ws_connections += 1
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for msg in ws:
                if conn.closing is not None:  # over its budget: nothing more it sends is run
                    break
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    task = asyncio.create_task(self._on_ws_message(msg.data, conn, client))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            for task in tasks:
                task.cancel()
            self._metrics.subscriptions -= len(conn.subs)
            await conn.close()
            self._conns.discard(conn)
            self._metrics.ws_connections -= 1
        return ws

    async def _on_ws_message(
        self, data: bytes | str, conn: WsConn, client: ClientConn | None
    ) -> None:
        if conn.closing is not None:  # closed for its budget after this message arrived
            return
        budget = ReplyBudget(self._config.max_response_bytes, conn)
        text = await self.handle_payload(data, conn, client, budget)
        if text is not None:
            conn.send(text, budget.reserved)
        else:
            conn.send_nothing(budget.reserved)
        conn.release_started()

    # --- dispatch ---

    async def handle_payload(
        self,
        data: bytes | str,
        conn: WsConn | None,
        client: ClientConn | None,
        budget: ReplyBudget | None = None,
    ) -> str | None:
        """One HTTP body or WebSocket message -> the reply's JSON text (None if nothing to send),
        at most `max_response_bytes` long: entries beyond it are -31002 errors (rule 3).

        The message's bytes count against its address's in-flight byte budget until the reply is
        made; the parsed message is dropped before anything is awaited: only each request's id,
        method and parsed params stay alive while it runs (issue 10 fault 5)."""
        budget = budget or ReplyBudget(self._config.max_response_bytes)
        try:
            if client is None:
                return await self._handle_payload(data, conn, client, budget)
            size = len(data)
            self._guard.hold_bytes(client, size)
            try:
                return await self._handle_payload(data, conn, client, budget)
            finally:
                self._guard.release_bytes(client, size)
        except RpcError as exc:  # over the address's byte budget
            self._metrics.errors[exc.code] += 1
            return budget.encode(error_reply(None, exc.code, exc.message))

    async def _handle_payload(
        self,
        data: bytes | str,
        conn: WsConn | None,
        client: ClientConn | None,
        budget: ReplyBudget,
    ) -> str | None:
        try:
            limit = self._config.max_json_elements
            if json_elements(data, limit) > limit:
                raise RpcError(
                    ErrorCode.INVALID_REQUEST,
                    f"message has more than {limit} JSON values (rpc_max_json_elements)",
                )
            payload = loads_strict(data)
        except RpcError as exc:
            self._metrics.errors[exc.code] += 1
            return budget.encode(self._checked(None, error_reply(None, exc.code, exc.message)))
        if not isinstance(payload, list):
            single = self._prepare(payload, conn)
            del payload
            reply = (
                single
                if isinstance(single, dict) or single is None
                else await self._execute(single, conn, client)
            )
            return None if reply is None else budget.encode(reply)
        if not payload or len(payload) > self._config.max_batch:
            self._metrics.errors[ErrorCode.INVALID_REQUEST] += 1
            msg = "empty batch" if not payload else f"batch larger than {self._config.max_batch}"
            return budget.encode(
                self._checked(None, error_reply(None, ErrorCode.INVALID_REQUEST, msg))
            )
        prepared = [self._prepare(r, conn) for r in payload]
        del payload

        async def one(p: _Prepared | dict[str, Any] | None) -> str | None:
            # encoded as soon as it is done: one reply object alive
            if conn is not None and conn.closing is not None:
                return None  # its connection was closed for its budget meanwhile
            reply = p if isinstance(p, dict) or p is None else await self._execute(p, conn, client)
            return None if reply is None else budget.encode(reply)

        texts = [t for t in await asyncio.gather(*(one(p) for p in prepared)) if t is not None]
        return "[" + ",".join(texts) + "]" if texts else None

    def _prepare(self, req: Any, conn: WsConn | None) -> _Prepared | dict[str, Any] | None:
        """A request object checked and its params parsed (nothing awaited), or its error reply
        (None: a notification's, which gets no reply)."""
        req_id: Any = None
        notification = False
        name: Any = None
        try:
            if not isinstance(req, dict):
                raise RpcError(ErrorCode.INVALID_REQUEST, "request must be a JSON object")
            notification = "id" not in req
            rid = req.get("id")
            if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int | str)):
                raise RpcError(ErrorCode.INVALID_REQUEST, "id must be a string, integer or null")
            if isinstance(rid, str) and len(rid) > 256:
                raise RpcError(ErrorCode.INVALID_REQUEST, "id longer than 256 characters")
            req_id = rid
            if not req.keys() <= _REQUEST_MEMBERS:
                extra = sorted(k for k in req if k not in _REQUEST_MEMBERS)
                raise RpcError(
                    ErrorCode.INVALID_REQUEST,
                    f"unknown request member {extra[0][:64]!r}: a request object has only "
                    "jsonrpc, method, params and id",
                )
            if req.get("jsonrpc") != "2.0":
                raise RpcError(ErrorCode.INVALID_REQUEST, 'jsonrpc must be exactly "2.0"')
            name = req.get("method")
            if not isinstance(name, str):
                raise RpcError(ErrorCode.INVALID_REQUEST, "method must be a string")
            spec = METHODS.get(name)
            if spec is None:
                raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"method not found: {name[:64]!r}")
            if spec.ws_only and conn is None:
                raise RpcError(ErrorCode.METHOD_NOT_FOUND, f"{name} is only available on /ws")
            self._metrics.requests[name] += 1
            args = parse_params(name, spec, req.get("params"))
        except RpcError as exc:
            reply = self._error(exc, req_id, notification)
            known = name if isinstance(name, str) and name in METHODS else None
            return None if reply is None else self._checked(known, reply)
        return _Prepared(req_id, notification, name, args)

    def _checked(
        self, method: str | None, reply: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`reply`, checked against the OpenRPC document when validation is on."""
        if self._validator is not None:
            self._validator.check_reply(method, reply_value(reply), params)
        return reply

    def _error(self, exc: RpcError, req_id: Any, notification: bool) -> dict[str, Any] | None:
        self._metrics.errors[exc.code] += 1
        # A malformed request object always gets a reply (JSON-RPC 2.0 §5 examples); a
        # well-formed notification never does, not even an error (§4.1).
        if notification and exc.code != ErrorCode.INVALID_REQUEST:
            return None
        return error_reply(req_id, exc.code, exc.message, exc.data)

    async def _execute(
        self, p: _Prepared, conn: WsConn | None, client: ClientConn | None
    ) -> dict[str, Any] | None:
        try:
            result = await self._run(p.name, p.args, conn, client)
        except RpcError as exc:
            reply = self._error(exc, p.req_id, p.notification)
            return None if reply is None else self._checked(p.name, reply)
        if p.notification:
            return None
        return self._checked(p.name, {"jsonrpc": "2.0", "id": p.req_id, "result": result}, p.args)

    async def _run(
        self, name: str, args: dict[str, Any], conn: WsConn | None, client: ClientConn | None
    ) -> Any:
        # client None: not through a GuardedSite (an embedding's own site), no slot to hold
        wait = name in _WAIT_METHODS
        if client is not None:
            self._guard.take_slot(client, wait=wait)
        self._metrics.in_flight += 1
        try:
            if self._reads is not None:  # rpc_auth = "reads" (node/rpcauth.py)
                return await self._reads.run(name, args, conn, self._handlers[name])
            return await self._handlers[name](args, conn)
        except ApiError as exc:
            raise RpcError(exc.code, exc.message, exc.data) from None
        except JsonFormatError as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, str(exc)) from None
        except RpcError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            self._error_log.exception(log, "internal error in %s", name)
            raise RpcError(ErrorCode.INTERNAL_ERROR, "internal error") from None
        finally:
            self._metrics.in_flight -= 1
            if client is not None:
                self._guard.give_slot(client, wait=wait)
