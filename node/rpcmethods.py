"""The JSON-RPC method handlers: one per entry of METHODS that is not a subscription method.

Rules this module keeps (node/rpc.py's rules 1, 2 and 4 are the server's side of the same):
1. The node is reached only through `node.api.NodeApi`; `RpcMethods` holds no chain state.
2. A handler gets the params already parsed and checked (node/rpcspec.py) and the connection (None
   over HTTP). It returns the JSON result or raises `ApiError` or `RpcError`; the server turns
   those into error objects, so a handler never builds one.
3. A transaction, receipt or block read (and gm_call with `withHeight`) states the committed
   height it answered at (`answeredAt`, issue 10 fault 2), read in the same loop turn as the data.
4. The per-request path is hot (thousands of queries a second): a handler is called directly
   from the server's table, with no wrapper object or extra await between them.
5. A committed block's summary and a committed transaction are answered from their encoded
   text once built (node/replycache.py), with `answeredAt` read in the same loop turn.

The subscription methods (gm_subscribe, gm_unsubscribe: the WebSocket-only ones) are
node/rpcsubs.py; the governance and epoch methods node/rpcgov.py.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from gmchain.ledger.jsonfmt import (
    args_schema,
    block_summary_to_json,
    block_to_json,
    contracts_to_json,
    count_to_json,
    hex0x,
    jsonable,
    node_info_to_json,
    pending_to_json,
    receipt_to_json,
    returns_schema,
    status_to_json,
    tx_to_json,
    value_from_json,
    view_to_json,
)
from gmchain.ledger.types import MAX_TX_BYTES
from gmchain.node.api import ErrorCode, NodeApi
from gmchain.node.replycache import ReplyCache, with_height
from gmchain.node.rpcconfig import RpcConfig
from gmchain.node.rpcsend import WsConn
from gmchain.node.rpcspec import METHODS, RpcError, handler_name, load_openrpc

__all__ = ["CLIENT_ADDRESS", "MethodHandler", "RpcMethods", "receipt_json", "summary_json"]

#: A method handler: the parsed params and the WebSocket connection (None over HTTP) -> result.
MethodHandler = Callable[[dict[str, Any], "WsConn | None"], Awaitable[Any]]

# The remote address of the request being handled (set per HTTP request / WebSocket connection
# by node/rpc.py; tasks copy it). Per-client limits below the RPC layer (node/proofserve.py) key
# on it.
CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar(
    "gmchain_rpc_client", default=""
)


def summary_json(found: Any) -> dict[str, Any] | None:
    """block_to_json(block, full_txs=False) from a (header, tx ids) summary."""
    return None if found is None else block_summary_to_json(*found)


def receipt_json(api: NodeApi, found: tuple[Any, int, int]) -> dict[str, Any]:
    """A committed receipt (receipt, height, index) as JSON, with its block id and `answeredAt`."""
    receipt, height, index = found
    out = receipt_to_json(receipt, height=height, index=index, block_id=api.get_block_id(height))
    out["answeredAt"] = api.height()
    return out


class RpcMethods:
    """The handlers of the methods that are not WebSocket-only, over a `NodeApi`."""

    def __init__(self, api: NodeApi, config: RpcConfig) -> None:
        self._api = api
        self._config = config  # node_info reports the limits; wait_for_receipt bounds its wait
        self.replies = ReplyCache()  # rule 5

    def handlers(self) -> dict[str, MethodHandler]:
        """Method name -> handler, for every method of METHODS that is not WebSocket-only and
        not a governance method (node/rpcgov.py; the server checks every method has one)."""
        return {
            name: getattr(self, "_m_" + handler_name(name))
            for name, spec in METHODS.items()
            if not spec.ws_only and hasattr(self, "_m_" + handler_name(name))
        }

    # --- handlers (`a` holds the parsed params) ---

    async def _m_rpc_discover(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return load_openrpc()

    async def _m_node_info(self, a: dict[str, Any], c: WsConn | None) -> Any:
        cfg = self._config
        limits = {
            "maxBodyBytes": cfg.max_body_bytes,
            "maxBatch": cfg.max_batch,
            "maxSubscriptions": cfg.max_subscriptions,
            "maxWsMessageBytes": cfg.max_ws_message_bytes,
            "maxWaitMs": cfg.max_wait_ms,
            "maxResponseBytes": cfg.max_response_bytes,
            "maxInFlightPerConnection": cfg.max_in_flight_per_conn,
            "maxWaitsPerConnection": cfg.max_waits_per_conn,
            "maxTxBytes": MAX_TX_BYTES,
        }
        return node_info_to_json(self._api.status(), limits)

    async def _m_status(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return status_to_json(self._api.status())

    async def _m_block_number(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return self._api.height()

    async def _m_get_total_transaction_count(self, a: dict[str, Any], c: WsConn | None) -> Any:
        st = self._api.status()
        return count_to_json(st)

    async def _m_contracts(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return contracts_to_json(self._api.describe_contracts())

    async def _m_send_raw_transaction(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return hex0x(await self._api.submit_raw_tx(a["rawTx"]))

    def _answered_at(self, out: dict[str, Any] | None) -> dict[str, Any] | None:
        """Issue 10 fault 2: a read states the committed height it answered at (`answeredAt`),
        so a client can tell an answer from a node still catching up (see gm_status)."""
        if out is not None:
            out["answeredAt"] = self._api.height()
        return out

    async def _m_get_transaction_by_hash(self, a: dict[str, Any], c: WsConn | None) -> Any:
        tx_id = a["txId"]
        key = ("tx", tx_id)
        text = self.replies.get(key)
        if text is None:
            found = self._api.get_tx(tx_id)
            if found is None:
                return self._not_committed(tx_id)
            f = found
            out = tx_to_json(
                f.tx, height=f.height, index=f.index, block_id=f.block_id, raw=f.tx_bytes
            )
            text = self.replies.put(key, out)
        return with_height(text, self._api.height())

    async def _m_get_transaction_receipt(self, a: dict[str, Any], c: WsConn | None) -> Any:
        tx_id = a["txId"]
        found = self._api.get_receipt(tx_id)
        if found is None:
            return self._not_committed(tx_id)
        return receipt_json(self._api, found)

    def _not_committed(self, tx_id: bytes) -> dict[str, Any] | None:
        """Pending, unknown (None), or an error with the reason it left the pool uncommitted."""
        if self._api.is_pending(tx_id):
            return pending_to_json(tx_id)
        dropped = self._api.dropped_reason(tx_id)
        if dropped is not None:
            raise dropped
        return None

    async def _m_wait_for_receipt(self, a: dict[str, Any], c: WsConn | None) -> Any:
        timeout_ms = a["timeoutMs"]
        if timeout_ms > self._config.max_wait_ms:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, f"timeoutMs: at most {self._config.max_wait_ms}"
            )
        found = self._api.get_receipt(a["txId"])
        if found is None and timeout_ms > 0:
            found = await self._api.wait_tx(a["txId"], timeout_ms / 1000)
        return None if found is None else receipt_json(self._api, found)

    async def _m_get_block_by_number(self, a: dict[str, Any], c: WsConn | None) -> Any:
        if not a["fullTxs"]:  # header + ids: no tx decoding
            return self._summary("block", self._api.get_block_summary, a["height"])
        block = self._api.get_block(a["height"])
        return None if block is None else self._answered_at(block_to_json(block, a["fullTxs"]))

    async def _m_get_block_by_hash(self, a: dict[str, Any], c: WsConn | None) -> Any:
        if not a["fullTxs"]:
            return self._summary("hash", self._api.get_block_summary_by_hash, a["hash"])
        block = self._api.get_block_by_hash(a["hash"])
        return None if block is None else self._answered_at(block_to_json(block, a["fullTxs"]))

    def _summary(self, kind: str, lookup: Callable[[Any], Any], at: Any) -> Any:
        """A block's header and tx ids as JSON (`lookup(at)`), built once into the reply cache
        under (kind, at); None if there is no such block."""
        key = (kind, at)
        text = self.replies.get(key)
        if text is None:
            found = lookup(at)
            if found is None:
                return None
            text = self.replies.put(key, block_summary_to_json(*found))
        return with_height(text, self._api.height())

    async def _m_call(self, a: dict[str, Any], c: WsConn | None) -> Any:
        contract, method, raw_args = a["contract"], a["method"], a["args"]
        if len(raw_args) > 64:
            raise RpcError(ErrorCode.INVALID_PARAMS, "args: more than 64 items")
        described = self._api.describe_contracts()
        schema = args_schema(described, contract, method) or []
        args = []
        for i, v in enumerate(raw_args):
            arg_schema = schema[i] if i < len(schema) else "any"
            arg_name = arg_schema.get("name", i) if isinstance(arg_schema, dict) else i
            args.append(value_from_json(v, arg_schema, name=f"args[{i}] ({arg_name})"))
        shape = returns_schema(described, contract, method)
        value = view_to_json(self._api.call(contract, method, args), shape)
        if a["withHeight"]:  # the query and the head are read in one loop turn: consistent
            return {"value": value, "answeredAt": self._api.height()}
        return value

    async def _m_get_transaction_proof(self, a: dict[str, Any], c: WsConn | None) -> Any:
        proof = await self._api.tx_proof(a["txId"], a["atHeight"], client=CLIENT_ADDRESS.get())
        return jsonable(proof)

    async def _m_get_consistency_proof(self, a: dict[str, Any], c: WsConn | None) -> Any:
        if a["oldHeight"] > a["newHeight"]:
            raise RpcError(ErrorCode.BAD_RANGE, "oldHeight must not exceed newHeight")
        proof = await self._api.consistency_proof(
            a["oldHeight"], a["newHeight"], client=CLIENT_ADDRESS.get()
        )
        return jsonable(proof)

    async def _m_get_commit_proof(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return jsonable(await self._api.commit_proof(a["height"], client=CLIENT_ADDRESS.get()))
