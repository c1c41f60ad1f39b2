"""What the RPC server sends: one reply's byte budget, and WebSocket send queues bounded in
messages and bytes (a part of node/rpc.py, rules 3 and 6).

Rules this module keeps:
1. One reply (a whole batch reply included) is at most `max_response_bytes`: each entry is
   encoded as soon as it is done, and the entries past the limit become -31002 errors.
2. On a WebSocket each encoded entry is counted against the connection's send budget from the
   moment it exists (`reserve`), then while queued and while being written: replies being built
   cannot outgrow the budget (issue 10 fault 6).
3. A connection over its budget, or the one holding most when all of them are over the total,
   is closed with 1008 at once: its counted bytes are handed back and its queue freed without
   waiting for the client to read, and later releases of its bytes are no-ops.
4. A result that is already compact JSON text (`JsonText`: a committed block's or transaction's
   answer kept by node/replycache.py) is spliced into the reply as it is; the reply's bytes are
   exactly those `dumps_compact` makes of the same reply with the result as a JSON value.

Sources: RFC 6455 §7.4.1 (close code 1008); JSON-RPC 2.0 §6 (batch replies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from gmchain.node.api import ErrorCode
from gmchain.node.ratelog import LogLimiter
from gmchain.node.rpcconfig import RpcConfig
from gmchain.node.rpcspec import dumps_compact, error_reply

__all__ = ["JsonText", "ReplyBudget", "SendBudget", "WsConn", "reply_text", "reply_value"]

log = logging.getLogger("gmchain.rpc")
# A reply that cannot be encoded is our bug, but a client may trigger it at will: rate-limited
# like the other internal-error logs (node/ratelog.py; RpcConfig.error_log_per_minute's default).
_ERROR_LOG = LogLimiter(per_minute=RpcConfig().error_log_per_minute)


_REPLY_KEYS = ("jsonrpc", "id", "result")


class JsonText(str):
    """A JSON-RPC result already encoded by `dumps_compact` (rule 4)."""

    __slots__ = ()


def reply_value(reply: dict[str, Any]) -> dict[str, Any]:
    """`reply` with a `JsonText` result decoded: the value a reply validator checks."""
    result = reply.get("result")
    return {**reply, "result": json.loads(result)} if isinstance(result, JsonText) else reply


def reply_text(reply: dict[str, Any]) -> str:
    """`dumps_compact(reply)`; a `JsonText` result is spliced in, not encoded again (rule 4).
    The server's success replies are `{"jsonrpc", "id", "result"}` in that order."""
    result = reply.get("result")
    if type(result) is JsonText and tuple(reply) == _REPLY_KEYS and reply["jsonrpc"] == "2.0":
        return '{"jsonrpc":"2.0","id":' + dumps_compact(reply["id"]) + ',"result":' + result + "}"
    return dumps_compact(reply)


@dataclass(slots=True)
class SendBudget:
    """Bytes queued for all WebSockets together (rule 6)."""

    limit: int
    queued: int = 0
    conns: set[WsConn] = field(default_factory=set)

    def shed(self) -> None:
        """Close the connections holding most until the total is within the limit."""
        while self.queued > self.limit:
            open_ = [c for c in self.conns if c.closing is None and c.queued_bytes > 0]
            if not open_:
                return
            max(open_, key=lambda c: c.queued_bytes).drop(b"server send budget exceeded")


class WsConn:
    """One WebSocket client: a send queue bounded in messages and bytes, drained by a writer
    task, and subscriptions."""

    def __init__(self, ws: web.WebSocketResponse, config: RpcConfig, budget: SendBudget) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(config.ws_send_queue)
        self.max_queued_bytes = config.ws_send_queue_bytes
        self.queued_bytes = 0  # in the queue plus the message being written; in budget.queued
        self.budget = budget
        self.subs: dict[str, asyncio.Task[None]] = {}
        self.to_start: list[asyncio.Event] = []  # subscriptions waiting for their reply to go out
        self.closing: asyncio.Task[bool] | None = None  # set once the client is found too slow
        self.released = False  # queued_bytes handed back to the budget for good (closing/closed)
        self.writer = asyncio.create_task(self._write())
        budget.conns.add(self)

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                text = await self.queue.get()
                try:
                    await self.ws.send_str(text)
                finally:
                    self._sent(len(text))

    def _sent(self, size: int) -> None:
        if not self.released:
            self.queued_bytes -= size
            self.budget.queued -= size

    def _release_all(self) -> None:
        """Hand every counted byte back at once (queued, being written, or reserved by replies
        still being built, whose later releases are then no-ops) and free the queue."""
        if not self.released:
            self.released = True
            self.budget.queued -= self.queued_bytes
            self.queued_bytes = 0
        while not self.queue.empty():
            self.queue.get_nowait()

    def reserve(self, size: int) -> bool:
        """Count `size` bytes of a reply being built; False (and the connection is being closed)
        once over budget. `send` takes the reservation over, or releases it."""
        if self.closing is not None:
            return False
        self.queued_bytes += size
        self.budget.queued += size
        if self.queued_bytes > self.max_queued_bytes:
            self.drop(b"slow consumer")
        else:
            self.budget.shed()
        return self.closing is None

    def send(self, text: str, reserved: int = 0) -> bool:
        """Queue a message (`reserved` of its bytes already counted); False (and the connection
        is being closed) if the client is too slow or over its byte budget."""
        size = len(text)  # JSON from dumps_compact is ASCII: characters are bytes
        if self.closing is not None:
            self._sent(reserved)  # a no-op once released
            return False
        self.queued_bytes += size - reserved
        self.budget.queued += size - reserved
        if self.queue.full() or self.queued_bytes > self.max_queued_bytes:
            self._sent(size)  # never queued
            self.drop(b"slow consumer")
            return False
        self.queue.put_nowait(text)
        self.budget.shed()
        return self.closing is None

    def send_nothing(self, reserved: int) -> None:
        """Release a reservation whose reply was not sent."""
        self._sent(reserved)

    def drop(self, reason: bytes) -> None:
        """Free the queue now and close with 1008 (the close frame follows what the kernel
        already holds; nothing waits for the client to read)."""
        if self.closing is not None:
            return
        # keep a reference: the loop holds tasks only weakly
        self.closing = asyncio.create_task(
            self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason, drain=False)
        )
        self._release_all()
        self.writer.cancel()

    def release_started(self) -> None:
        for ev in self.to_start:
            ev.set()
        self.to_start.clear()

    async def close(self) -> None:
        for task in list(self.subs.values()):
            task.cancel()
        self.writer.cancel()
        await asyncio.gather(self.writer, *self.subs.values(), return_exceptions=True)
        self.subs.clear()
        self._release_all()
        self.budget.conns.discard(self)


class ReplyBudget:
    """What is left of `max_response_bytes` for one reply or batch reply; on a WebSocket each
    encoded entry is also counted against the connection's send budget as soon as it exists, so
    replies being built cannot outgrow it (rule 6)."""

    __slots__ = ("conn", "left", "limit", "reserved")

    def __init__(self, limit: int, conn: WsConn | None = None) -> None:
        self.limit = limit
        self.left = limit - 2  # the batch's brackets
        self.conn = conn
        self.reserved = 0  # bytes counted in conn's budget, handed over by conn.send

    def encode(self, reply: dict[str, Any]) -> str:
        try:
            text = reply_text(reply)
        except (TypeError, ValueError):  # our bug: a handler returned something not JSON
            _ERROR_LOG.exception(log, "unserialisable JSON-RPC reply")
            text = dumps_compact(
                error_reply(reply.get("id"), ErrorCode.INTERNAL_ERROR, "internal error")
            )
        if len(text) + 1 > self.left:
            msg = f"reply larger than {self.limit} bytes (rpc_max_response_bytes)"
            text = dumps_compact(error_reply(reply.get("id"), ErrorCode.TOO_LARGE, msg))
        self.left -= len(text) + 1
        if self.conn is not None:
            self.reserved += len(text) + 1
            self.conn.reserve(len(text) + 1)
        return text
