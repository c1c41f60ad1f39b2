"""WebSocket subscriptions: gm_subscribe, gm_unsubscribe and the tasks that send notifications.

Rules this module keeps (docs/rpc.md "Subscriptions" is the user's statement of them):
1. A connection holds at most `max_subscriptions` subscriptions (TOO_MANY_SUBSCRIPTIONS beyond).
2. A subscription's id reaches the client before any of its notifications: its task waits for
   the event the connection sets once the gm_subscribe reply is queued (`WsConn.to_start`).
3. A notification goes through the connection's bounded send queue (node/rpcsend.py); when the
   queue refuses it (the connection is closing) the subscription ends.
4. A txCommit subscription sends one notification (the receipt, or why the transaction left the
   pool and can never commit) and ends.
5. A newHeads or events subscription that ends for any reason closes its iterator, so the node
   drops the subscriber. The `subscriptions` gauge counts a subscription once, from gm_subscribe
   until gm_unsubscribe, its own end or its connection's close (node/rpc.py). An exception in a
   subscription is logged as our bug and ends only that subscription.
6. With rpc_auth = "reads", an events or txCommit subscriber of an org sees only its org's
   transactions (node/rpcauth.py rule 2); every subscriber's (the regulator's too) ends when
   its login expires or its account stops being live (node/rpcauth.py rule 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gmchain.ledger.jsonfmt import dropped_to_json, event_note_to_json, header_to_json, hex0x
from gmchain.ledger.types import Block
from gmchain.node.api import ApiError, ErrorCode, NodeApi
from gmchain.node.ratelog import LogLimiter
from gmchain.node.rpcauth import ReadGuard
from gmchain.node.rpcconfig import RpcConfig
from gmchain.node.rpcmethods import MethodHandler, receipt_json
from gmchain.node.rpcmetrics import RpcMetrics
from gmchain.node.rpcsend import WsConn
from gmchain.node.rpcspec import WS_METHODS, RpcError, dumps_compact, handler_name, p_hash, p_str
from gmchain.node.rpcvalidate import ReplyValidator

__all__ = ["RpcSubscriptions"]

log = logging.getLogger("gmchain.rpc")
_Visible = Callable[[bytes], "bool | None"]  # ReadGuard.tx_visibility's test of one tx id


async def _aclose(it: AsyncIterator[Any]) -> None:
    """Close a subscription's iterator so the node drops the subscriber."""
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class RpcSubscriptions:
    """The handlers of the WebSocket-only methods and the subscription tasks they start."""

    def __init__(
        self,
        api: NodeApi,
        config: RpcConfig,
        *,
        metrics: RpcMetrics,
        validator: ReplyValidator | None,
        error_log: LogLimiter,
    ) -> None:
        self._api = api
        self._config = config
        self._metrics = metrics  # shared with the server: `subscriptions` is counted here
        self._validator = validator  # checks each notification when reply validation is on
        self._error_log = error_log  # shared with the server: one rate limit for our bugs
        # rpc_auth = "reads": which transactions' events and receipts a subscriber may see
        # (node/rpcauth.py rule 2); None: every one
        self.guard: ReadGuard | None = None

    def handlers(self) -> dict[str, MethodHandler]:
        """Method name -> handler, for every WebSocket-only method of METHODS."""
        return {name: getattr(self, "_m_" + handler_name(name)) for name in WS_METHODS}

    async def _m_subscribe(self, a: dict[str, Any], conn: WsConn | None) -> Any:
        assert conn is not None
        kind, arg = a["kind"], a["filter"]
        if len(conn.subs) >= self._config.max_subscriptions:
            raise RpcError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self._config.max_subscriptions} subscriptions per connection",
            )
        source: Callable[[], Awaitable[None]]
        sub_id = hex0x(secrets.token_bytes(8))
        if kind == "newHeads":
            if arg is not None:
                raise RpcError(ErrorCode.INVALID_PARAMS, "newHeads takes no filter")
            heads = self._api.subscribe_heads()
            source = lambda: self._pump_heads(conn, sub_id, heads)  # noqa: E731
        elif kind == "events":
            contract, name = self._event_filter(arg)
            see = None if self.guard is None else self.guard.tx_visibility()
            events = self._api.subscribe_events(contract, name)
            source = lambda: self._pump_events(conn, sub_id, events, see)  # noqa: E731
        elif kind == "txCommit":
            if arg is None:
                raise RpcError(ErrorCode.INVALID_PARAMS, "txCommit: missing param 'filter'")
            tx_id = p_hash("filter", arg)
            see = None if self.guard is None else self.guard.tx_visibility()
            source = lambda: self._pump_tx(conn, sub_id, tx_id, see)  # noqa: E731
        else:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, "kind: expected 'newHeads', 'events' or 'txCommit'"
            )
        started = asyncio.Event()
        conn.to_start.append(started)
        conn.subs[sub_id] = asyncio.create_task(self._run_sub(conn, sub_id, started, source))
        self._metrics.subscriptions += 1
        return sub_id

    @staticmethod
    def _event_filter(arg: Any) -> tuple[str | None, str | None]:
        if arg is None:
            return None, None
        if not isinstance(arg, dict) or set(arg) - {"contract", "name"}:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, 'filter: expected {"contract"?: str, "name"?: str}'
            )
        contract, name = arg.get("contract"), arg.get("name")
        return (
            None if contract is None else p_str("filter.contract", contract),
            None if name is None else p_str("filter.name", name),
        )

    async def _m_unsubscribe(self, a: dict[str, Any], conn: WsConn | None) -> Any:
        assert conn is not None
        task = conn.subs.pop(a["subscription"], None)
        if task is None:
            return False
        task.cancel()
        self._metrics.subscriptions -= 1
        return True

    async def _run_sub(
        self,
        conn: WsConn,
        sub_id: str,
        started: asyncio.Event,
        source: Callable[[], Awaitable[None]],
    ) -> None:
        await started.wait()  # the subscription id reaches the client before any notification
        try:
            await source()
        except asyncio.CancelledError:
            raise
        except Exception:
            self._error_log.exception(log, "subscription %s failed", sub_id)
        if conn.subs.pop(sub_id, None) is not None:
            self._metrics.subscriptions -= 1

    def _notify(self, conn: WsConn, sub_id: str, kind: str, result: Any) -> bool:
        if self._validator is not None:
            self._validator.check_notification(kind, result)
        msg = {
            "jsonrpc": "2.0",
            "method": "gm_subscription",
            "params": {"subscription": sub_id, "result": result},
        }
        return conn.send(dumps_compact(msg))

    async def _pump_heads(self, conn: WsConn, sub_id: str, heads: AsyncIterator[Block]) -> None:
        try:
            async for block in heads:
                if not self._notify(conn, sub_id, "newHeads", header_to_json(block.header)):
                    return
        finally:
            await _aclose(heads)

    async def _pump_events(
        self, conn: WsConn, sub_id: str, events: AsyncIterator[Any], see: _Visible | None
    ) -> None:
        try:
            async for height, tx_id, event in events:
                if see is not None:
                    seen = see(tx_id)
                    if seen is None:  # the login expired: the subscription ends
                        return
                    if not seen:  # another org's transaction
                        continue
                result = event_note_to_json(height, tx_id, event)
                if not self._notify(conn, sub_id, "events", result):
                    return
        finally:
            await _aclose(events)

    async def _pump_tx(self, conn: WsConn, sub_id: str, tx_id: bytes, see: _Visible | None) -> None:
        """One notification with the receipt when the tx commits; then the subscription ends
        (without one if the tx is another org's or the login expired, node/rpcauth.py)."""
        found = self._api.get_receipt(tx_id)
        try:
            while found is None:
                found = await self._api.wait_tx(tx_id, 60.0)
        except ApiError as exc:  # it left the pool and can never commit: say why, then end
            reason = dropped_to_json(tx_id, int(exc.code), exc.message)
            self._notify(conn, sub_id, "txCommit", reason)
            return
        if see is None or see(tx_id):
            self._notify(conn, sub_id, "txCommit", receipt_json(self._api, found))
