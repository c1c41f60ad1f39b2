"""The cross-chain JSON-RPC methods (issue 13; docs/rpc.md "Cross-chain", docs/crosschain.md).

Thin, read-only conveniences over the queries of the `xclient` contract (crosschain/xclient.py)
and the evidence outbox (contracts/evidence.py rule E8): everything they answer, `gm_call` of
those queries answers too, with the same JSON.

Rules this module keeps (with node/rpcmethods.py's rules 1, 2 and 4):
1. Every answer is a contract query rendered by the shape the contract declares (exactly as
   `gm_call` renders it): one source of truth for what a client, an arrival summary, a relayed
   record, an outbox row or an ack looks like.
2. `gm_getRelayedRecord(chainId, key)` takes a seq (integer >= 1) or a record id (string); it
   answers the stored copy (with the id of the regulator transaction that received it,
   `recvTxId`) plus `header`: the verified header of the source block it was proven against,
   whose `updateNo` names the client update that verified it; `updateTxId`: the id of the
   `update_client` transaction that gave that number (`xclient.update_tx`); `epochUpdateTxIds`:
   the ids of the `update_client` transactions that verified the epoch changes the client
   stored below the header's epoch (`xclient.epoch_end` -> `update_tx`), ascending by epoch,
   each once, without `updateTxId`; `headerBytes`: the header's full canonical bytes, read from
   the certificate inside that update transaction's `ClientUpdate` (their signing root under
   DOMAIN["header"] is the block id); or null.
3. Bounds are the contract's: `missingLimit` <= 1000 (default 100), `limit` <= 1000 (default
   100); a param out of them is INVALID_PARAMS naming it, before any query runs.
"""

from __future__ import annotations

from typing import Any

from gmchain.crosschain.packets import ClientUpdate, PacketFormatError
from gmchain.ledger.jsonfmt import returns_schema, view_to_json
from gmchain.node.api import ErrorCode, NodeApi
from gmchain.node.rpcmethods import MethodHandler
from gmchain.node.rpcsend import WsConn
from gmchain.node.rpcspec import METHODS, RpcError, handler_name

__all__ = ["MAX_XC_LIMIT", "XC_METHODS", "XcMethods"]

XCLIENT = "xclient"
EVIDENCE = "evidence"
MAX_XC_LIMIT = 1000  # rule 3
MAX_EPOCH_SCAN = 10_000  # rule 2: epochs looked at below a record's header epoch
XC_METHODS = frozenset(
    {
        "gm_getCrossChainClient",
        "gm_getArrivals",
        "gm_getRelayedRecord",
        "gm_getOutbox",
        "gm_getAck",
    }
)


def _bounded(name: str, value: int | None, default: int) -> int:
    """Rule 3."""
    if value is None:
        return default
    if not 1 <= value <= MAX_XC_LIMIT:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: expected 1..{MAX_XC_LIMIT}")
    return value


class XcMethods:
    """The handlers of XC_METHODS, over a `NodeApi`."""

    def __init__(self, api: NodeApi) -> None:
        self._api = api

    def handlers(self) -> dict[str, MethodHandler]:
        assert METHODS.keys() >= XC_METHODS
        return {name: getattr(self, "_m_" + handler_name(name)) for name in XC_METHODS}

    def _query(self, contract: str, method: str, args: list[Any]) -> Any:
        """Rule 1."""
        value = self._api.call(contract, method, args)
        shape = returns_schema(self._api.describe_contracts(), contract, method)
        return view_to_json(value, shape)

    async def _m_get_cross_chain_client(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return self._query(XCLIENT, "client", [a["chainId"]])

    async def _m_get_arrivals(self, a: dict[str, Any], c: WsConn | None) -> Any:
        limit = _bounded("missingLimit", a["missingLimit"], 100)
        return self._query(XCLIENT, "arrivals", [a["chainId"], limit])

    async def _m_get_relayed_record(self, a: dict[str, Any], c: WsConn | None) -> Any:
        chain, key = a["chainId"], a["key"]
        if isinstance(key, int) and not isinstance(key, bool) and key >= 1:
            found = self._query(XCLIENT, "packet", [chain, key])
        elif isinstance(key, str) and key:
            found = self._query(XCLIENT, "record", [chain, key])
        else:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, "key: expected a seq (integer >= 1) or a record id"
            )
        if not isinstance(found, dict):
            return None
        header = self._query(XCLIENT, "header", [chain, found["height"]])
        found["header"] = header
        found["updateTxId"] = found["headerBytes"] = None
        found["epochUpdateTxIds"] = []
        if isinstance(header, dict):
            update_tx = self._query(XCLIENT, "update_tx", [chain, header["updateNo"]])
            found["updateTxId"] = update_tx
            found["epochUpdateTxIds"] = self._epoch_updates(chain, header["epoch"], update_tx)
            found["headerBytes"] = self._header_bytes(update_tx, header)
        return found

    def _epoch_updates(self, chain: str, epoch: int, skip: str | None) -> list[str]:
        """Rule 2: the update transactions of the stored epoch changes below `epoch`."""
        out: list[str] = []
        for e in range(min(epoch, MAX_EPOCH_SCAN)):
            end = self._query(XCLIENT, "epoch_end", [chain, e])
            if not isinstance(end, dict):
                continue  # an epoch before the registration
            tx = self._query(XCLIENT, "update_tx", [chain, end["updateNo"]])
            if isinstance(tx, str) and tx != skip and tx not in out:
                out.append(tx)
        return out

    def _header_bytes(self, update_tx: Any, header: dict[str, Any]) -> str | None:
        """Rule 2: the stored header's bytes, from the ClientUpdate that verified it."""
        if not isinstance(update_tx, str):
            return None
        found = self._api.get_tx(bytes.fromhex(update_tx[2:]))
        if found is None or len(found.tx.body.args) != 1:
            return None
        try:
            u = ClientUpdate.decode(found.tx.body.args[0])
        except PacketFormatError:
            return None
        headers = [c.certificate.headers[0] for c in u.epoch_changes]
        headers += [] if u.certificate is None else list(u.certificate.headers)
        for h in headers:
            if h.height == header["height"] and "0x" + h.block_id.hex() == header["blockId"]:
                return "0x" + h.encode().hex()
        return None

    async def _m_get_outbox(self, a: dict[str, Any], c: WsConn | None) -> Any:
        start = 1 if a["start"] is None else a["start"]
        if start < 1:
            raise RpcError(ErrorCode.INVALID_PARAMS, "start: seqs start at 1")
        limit = _bounded("limit", a["limit"], 100)
        count = self._query(EVIDENCE, "outbox_count", [])
        return {"count": count, "packets": self._query(EVIDENCE, "outbox", [start, limit])}

    async def _m_get_ack(self, a: dict[str, Any], c: WsConn | None) -> Any:
        return self._query(XCLIENT, "ack_of_record", [a["recordId"]])
