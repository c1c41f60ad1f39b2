"""The JSON-RPC method table and request parsing (a part of node/rpc.py).

Rules this module keeps (node/rpc.py rules 2 and 5; docs/rpc.md):
1. Each method's params are declared once, in `METHODS`, with a parser per param; positional
   (array) and named (object) params are both accepted, arity and unknown names are checked, and
   every parse failure is INVALID_PARAMS with a message naming the param.
2. JSON is parsed strictly (UTF-8, no NaN/Infinity); any failure is PARSE_ERROR.
3. `METHODS` is what `node/openrpc.json` documents (a test compares them).
4. A message's size in parsed objects is bounded before it is parsed: `json_elements` counts its
   values (a 1 MiB message of `{},` is ~350,000 dicts, ~25x its size in memory; issue 10 fault 5).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from gmchain.ledger.jsonfmt import JsonFormatError, check_text, jsonable, parse_hex
from gmchain.ledger.types import DIGEST_SIZE, MAX_TX_BYTES, PUBKEY_SIZE, SIGNATURE_SIZE
from gmchain.node.api import ErrorCode

__all__ = [
    "MAX_LIST",
    "METHODS",
    "WS_METHODS",
    "RpcError",
    "RpcMethod",
    "dumps_compact",
    "error_reply",
    "handler_name",
    "json_elements",
    "load_openrpc",
    "loads_strict",
    "p_hash",
    "p_str",
    "parse_params",
]

_MAX_HEIGHT = 2**63 - 1
MAX_LIST = 1000  # items in one list answer (gm_getProposals `limit`)


class RpcError(Exception):
    """An error reply for one request (raised inside this module only)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.data = data


# --- parameters ---------------------------------------------------------------------------------


def _p_hex(name: str, v: Any, size: int | None = None) -> bytes:
    """0x hex of `size` bytes (any size if None): the one hex parameter check."""
    try:
        return parse_hex(v, size, name=name)
    except JsonFormatError as exc:
        raise RpcError(ErrorCode.INVALID_PARAMS, str(exc)) from None


def p_hash(name: str, v: Any) -> bytes:
    return _p_hex(name, v, DIGEST_SIZE)


def _p_height(name: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _MAX_HEIGHT:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: expected a non-negative integer")
    return v


def _p_limit(name: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_LIST:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: expected an integer 1 to {MAX_LIST}")
    return v


def _p_bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: expected true or false")
    return v


def p_str(name: str, v: Any) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 64:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: expected a string of 1 to 64 chars")
    try:
        return check_text(v, name)
    except JsonFormatError as exc:
        raise RpcError(ErrorCode.INVALID_PARAMS, str(exc)) from None


def _p_array(name: str, v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: expected an array")
    return v


def _p_raw(name: str, v: Any) -> bytes:
    if isinstance(v, str) and len(v) > 2 + 2 * MAX_TX_BYTES:
        raise RpcError(ErrorCode.TOO_LARGE, f"{name}: transaction exceeds {MAX_TX_BYTES} bytes")
    raw = _p_hex(name, v)
    if not raw:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: empty transaction")
    return raw


def _p_pubkey(name: str, v: Any) -> bytes:
    return _p_hex(name, v, PUBKEY_SIZE)


def _p_signature(name: str, v: Any) -> bytes:
    return _p_hex(name, v, SIGNATURE_SIZE)


def _p_any(name: str, v: Any) -> Any:
    return v


def _p_seq_or_id(name: str, v: Any) -> int | str:
    """A packet's seq (integer >= 1) or a record id (string; node/rpcxc.py rule 2)."""
    if isinstance(v, int) and not isinstance(v, bool):
        if not 1 <= v <= _MAX_HEIGHT:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: a seq is an integer >= 1")
        return v
    if isinstance(v, str):
        return p_str(name, v)
    raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: expected a seq or a record id")


_Parser = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    parse: _Parser
    required: bool = True
    default: Any = None


@dataclass(frozen=True, slots=True)
class RpcMethod:
    params: tuple[_Param, ...]
    ws_only: bool = False


def parse_params(name: str, spec: RpcMethod, params: Any) -> dict[str, Any]:
    """Positional (array) or named (object) params -> {name: parsed value}; checks arity."""
    out: dict[str, Any] = {}
    if params is None:
        params = []
    if isinstance(params, list):
        if len(params) > len(spec.params):
            raise RpcError(
                ErrorCode.INVALID_PARAMS,
                f"{name}: too many params: expected at most {len(spec.params)}, got {len(params)}",
            )
        given = {p.name: v for p, v in zip(spec.params, params, strict=False)}
    elif isinstance(params, dict):
        known = {p.name for p in spec.params}
        for key in params:
            if key not in known:
                raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: unknown param {key!r}")
        given = dict(params)
    else:
        raise RpcError(ErrorCode.INVALID_PARAMS, "params: expected an array or an object")
    for p in spec.params:
        if p.name in given and not (given[p.name] is None and not p.required):
            out[p.name] = p.parse(p.name, given[p.name])
        elif p.required:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"{name}: missing param {p.name!r}")
        else:
            out[p.name] = p.default
    return out


_HASH = p_hash
METHODS: dict[str, RpcMethod] = {
    "rpc.discover": RpcMethod(()),
    "gm_nodeInfo": RpcMethod(()),
    "gm_status": RpcMethod(()),
    "gm_blockNumber": RpcMethod(()),
    "gm_getTotalTransactionCount": RpcMethod(()),
    "gm_contracts": RpcMethod(()),
    "gm_sendRawTransaction": RpcMethod((_Param("rawTx", _p_raw),)),
    "gm_getTransactionByHash": RpcMethod((_Param("txId", _HASH),)),
    "gm_getTransactionReceipt": RpcMethod((_Param("txId", _HASH),)),
    "gm_waitForReceipt": RpcMethod(
        (_Param("txId", _HASH), _Param("timeoutMs", _p_height, False, 10_000))
    ),
    "gm_getBlockByNumber": RpcMethod(
        (_Param("height", _p_height), _Param("fullTxs", _p_bool, False, False))
    ),
    "gm_getBlockByHash": RpcMethod(
        (_Param("hash", _HASH), _Param("fullTxs", _p_bool, False, False))
    ),
    "gm_call": RpcMethod(
        (
            _Param("contract", p_str),
            _Param("method", p_str),
            _Param("args", _p_array, False, []),
            _Param("withHeight", _p_bool, False, False),
        )
    ),
    "gm_getTransactionProof": RpcMethod(
        (_Param("txId", _HASH), _Param("atHeight", _p_height, False, None))
    ),
    "gm_getConsistencyProof": RpcMethod(
        (_Param("oldHeight", _p_height), _Param("newHeight", _p_height))
    ),
    "gm_getCommitProof": RpcMethod((_Param("height", _p_height),)),
    # governance and epochs (node/rpcgov.py)
    "gm_getProposal": RpcMethod((_Param("id", _p_height),)),
    "gm_getProposals": RpcMethod(
        (_Param("status", p_str, False, None), _Param("limit", _p_limit, False, 100))
    ),
    "gm_getCommittee": RpcMethod(()),
    "gm_getValidators": RpcMethod((_Param("height", _p_height, False, None),)),
    "gm_getEpoch": RpcMethod(()),
    "gm_getEpochProof": RpcMethod(
        (_Param("fromEpoch", _p_height), _Param("toEpoch", _p_height, False, None))
    ),
    # cross-chain (node/rpcxc.py)
    "gm_getCrossChainClient": RpcMethod((_Param("chainId", p_str),)),
    "gm_getArrivals": RpcMethod(
        (_Param("chainId", p_str), _Param("missingLimit", _p_height, False, None))
    ),
    "gm_getRelayedRecord": RpcMethod((_Param("chainId", p_str), _Param("key", _p_seq_or_id))),
    "gm_getOutbox": RpcMethod(
        (_Param("start", _p_height, False, None), _Param("limit", _p_height, False, None))
    ),
    "gm_getAck": RpcMethod((_Param("recordId", p_str),)),
    # read authentication (node/rpcauth.py)
    "gm_authChallenge": RpcMethod(()),
    "gm_authLogin": RpcMethod(
        (
            _Param("publicKey", _p_pubkey),
            _Param("challenge", _HASH),
            _Param("signature", _p_signature),
        )
    ),
    "gm_subscribe": RpcMethod(
        (_Param("kind", p_str), _Param("filter", _p_any, False, None)), ws_only=True
    ),
    "gm_unsubscribe": RpcMethod((_Param("subscription", p_str),), ws_only=True),
}
#: Methods available only on the WebSocket endpoint.
WS_METHODS = frozenset(n for n, m in METHODS.items() if m.ws_only)


@cache
def load_openrpc() -> dict[str, Any]:
    """The OpenRPC document, from package data (works from an installed package)."""
    text = resources.files("gmchain.node").joinpath("openrpc.json").read_text(encoding="utf-8")
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_elements(data: bytes | str, limit: int) -> int:
    """At least the number of values in a JSON text (objects, arrays, members), counted before
    it is parsed (rule 4): one per `{`, `[` and `,`, outside strings once the rough count (which
    also counts those inside strings) is over `limit`."""
    raw = data.encode() if isinstance(data, str) else data
    rough = 1 + raw.count(b"{") + raw.count(b"[") + raw.count(b",")
    if rough <= limit:
        return rough
    # Marks inside strings are not values: count again without the strings (in C, one pass).
    bare = _STRINGS.sub(b"", raw)
    return 1 + bare.count(b"{") + bare.count(b"[") + bare.count(b",")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: Infinity spelled as a number
        raise ValueError(f"number {text[:32]} is out of range")
    return value


# One decoder for every message: it holds no state between calls.
_STRICT_DECODER = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float)


def loads_strict(data: bytes | str) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity (nor a number beyond a double's range); any failure
    is a parse error. What `json.loads` does with these hooks, without building a decoder per
    message."""
    try:
        if isinstance(data, str):
            if data.startswith("\ufeff"):
                raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
        else:
            data = data.decode(json.detect_encoding(data), "surrogatepass")
        return _STRICT_DECODER.decode(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int limit
        raise RpcError(ErrorCode.PARSE_ERROR, f"parse error: {str(exc)[:120]}") from None


def handler_name(method: str) -> str:
    """`gm_getBlockByHash` -> `get_block_by_hash`: the handler's name, `_m_` + this."""
    name = method.removeprefix("gm_").replace(".", "_")
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)


def dumps_compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def error_reply(req_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """A JSON-RPC 2.0 error response object."""
    err: dict[str, Any] = {"code": int(code), "message": message}
    if data is not None:
        err["data"] = jsonable(data)
    return {"jsonrpc": "2.0", "id": req_id, "error": err}
