"""JSON shapes of the protocol types, as the JSON-RPC server sends them and the SDK parses them.

Rules this module keeps (docs/rpc.md, "Value formats"):
1. Every binary value is a `0x`-prefixed lowercase hex string; heights, rounds, sizes and counts are
   JSON integers. Nothing is ever a JSON float.
2. Canonical values (`ledger.codec`: int, bytes, str, bool, None, lists) map one to one onto JSON
   except for bytes, which become hex strings. Turning JSON back into a value therefore needs a
   schema that says which strings are bytes (`value_from_json`): JSON alone cannot tell "0xab" the
   text from 0xab the bytes.
3. Every object that has an identity carries it (`txId`, `hash`), computed by the node from the
   canonical bytes, and the canonical bytes themselves (`raw`), so a client can recompute the
   identity instead of trusting it (DESIGN.md, "Hashing and signing").
4. Parsing never raises anything but `JsonFormatError` (a ValueError) with a message that names the
   offending field.
5. Member names are camelCase (`txId`, `blockNumber`, `recordHash`). A contract's result is
   rendered from the shape its method declares (`contracts.results.Shape.describe()`, served by
   `gm_contracts`): a record's `[name, value]` pairs become an object whose members are the
   camelCase field names, a map's pairs an object keyed verbatim, scalars as in rule 2. A value
   that does not fit its declared shape is rendered as the plain canonical value (rule 2) rather
   than refused: the shape describes, it never hides data.
6. This module imports only `ledger` and `crypto_sm`: the node, the chain library and the SDK
   all use it, so it may not pull in a server or a database.

Sources: JSON-RPC 2.0; Ethereum's execution-API hex conventions (`0x` prefix, lowercase).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.codec import Value
from gmchain.ledger.types import (
    MAX_VALUE_DEPTH,
    NODE_ID_SIZE,
    Block,
    BlockHeader,
    Event,
    QuorumCert,
    Receipt,
    ReceiptStatus,
    SignedTx,
)

__all__ = [
    "JsonFormatError",
    "args_schema",
    "block_summary_to_json",
    "block_to_json",
    "camel_case",
    "check_text",
    "contracts_to_json",
    "event_to_json",
    "header_to_json",
    "hex0x",
    "jsonable",
    "parse_hex",
    "qc_to_json",
    "receipt_to_json",
    "returns_schema",
    "shape_json_schema",
    "tx_to_json",
    "value_from_json",
    "value_to_json",
    "view_to_json",
]

_HEX_RE = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


class JsonFormatError(ValueError):
    """A JSON value does not have the shape the protocol requires (the caller's fault)."""


def check_text(s: str, name: str) -> str:
    """`s` if it is text that has a UTF-8 form, else JsonFormatError naming `name`.

    JSON lets a client send half a UTF-16 surrogate pair (`"\\ud800"`); Python decodes it to a
    `str` that every later `encode()` refuses, so it is refused here, where arguments arrive."""
    if not s.isascii():
        try:
            s.encode()
        except UnicodeEncodeError as exc:
            raise JsonFormatError(
                f"{name}: not valid UTF-8 text (lone surrogate U+{ord(s[exc.start]):04X} "
                f"at character {exc.start})"
            ) from None
    return s


def hex0x(data: bytes) -> str:
    """`0x` + lowercase hex of `data`."""
    return "0x" + bytes(data).hex()


def parse_hex(s: object, length: int | None = None, *, name: str = "value") -> bytes:
    """Parse a `0x`-prefixed hex string (even number of digits; either case accepted).

    `length`, if given, is the exact number of bytes required. Raises JsonFormatError naming `name`.
    """
    if not isinstance(s, str):
        raise JsonFormatError(f"{name}: expected a 0x-prefixed hex string, got {_kind(s)}")
    if not s.startswith("0x"):
        raise JsonFormatError(f"{name}: hex string must start with 0x")
    if _HEX_RE.fullmatch(s) is None:
        if len(s) % 2:
            raise JsonFormatError(f"{name}: hex string has an odd number of digits")
        raise JsonFormatError(f"{name}: not a hex string")
    data = bytes.fromhex(s[2:])
    if length is not None and len(data) != length:
        raise JsonFormatError(f"{name}: expected {length} bytes, got {len(data)}")
    return data


def _kind(x: object) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, int):
        return "an integer"
    if isinstance(x, float):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "an array"
    if isinstance(x, dict):
        return "an object"
    return type(x).__name__


# --- canonical values <-> JSON -------------------------------------------------------------------


def value_to_json(value: Value) -> Any:
    """A canonical value as JSON: bytes become hex, tuples become lists, the rest is unchanged."""
    if isinstance(value, bytes | bytearray | memoryview):
        return hex0x(bytes(value))
    if isinstance(value, list | tuple):
        return [value_to_json(v) for v in value]
    if isinstance(value, IntEnum):
        return int(value)
    return value


def camel_case(name: str) -> str:
    """`record_hash` -> `recordHash` (rule 5); a name without underscores is unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def view_to_json(value: Value, shape: Any) -> Any:
    """A contract's result as JSON, rendered by its declared shape (rule 5).

    `shape` is a `Shape.describe()` mapping (or None: no shape declared, plain rendering)."""
    if value is None or not isinstance(shape, Mapping):
        return value_to_json(value)
    kind = shape.get("type")
    if kind == "record" and _is_pairs(value, shape):
        fields = {f.get("name"): f for f in shape.get("fields", ()) if isinstance(f, Mapping)}
        assert isinstance(value, list | tuple)
        return {camel_case(k): view_to_json(v, fields.get(k)) for k, v in value}
    if kind == "map" and _is_pairs(value, None):
        assert isinstance(value, list | tuple)
        return {k: view_to_json(v, shape.get("values")) for k, v in value}
    if kind == "list" and isinstance(value, list | tuple):
        return [view_to_json(v, shape.get("items")) for v in value]
    return value_to_json(value)


def contracts_to_json(describe: Any) -> Any:
    """`gm_contracts`: the registry's description with camelCase member names (rule 5); the
    values (contract, method, argument and field names) are kept as they are."""
    if isinstance(describe, Mapping):
        return {camel_case(str(k)): contracts_to_json(v) for k, v in describe.items()}
    if isinstance(describe, list | tuple):
        return [contracts_to_json(v) for v in describe]
    return jsonable(describe)


_HEX_REF = {"$ref": "#/components/schemas/Hex"}
_VALUE_REF = {"$ref": "#/components/schemas/Value"}
_SCALAR_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "null": {"type": "null"},
}


def shape_json_schema(shape: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of what `view_to_json` makes of a value of `shape`.

    docs/openrpc.json states these for the system contracts' queries (`gm_call`'s
    `x-results`); a test derives them again from the registry and compares."""
    kind = shape.get("type")
    out: dict[str, Any]
    if kind in _SCALAR_SCHEMAS:
        out = dict(_SCALAR_SCHEMAS[kind])
    elif kind == "bytes":
        size = shape.get("size")
        out = (
            dict(_HEX_REF)
            if size is None
            else {"type": "string", "pattern": f"^0x[0-9a-f]{{{2 * int(size)}}}$"}
        )
    elif kind == "record":
        fields = [f for f in shape.get("fields", ()) if isinstance(f, Mapping)]
        names = [camel_case(str(f["name"])) for f in fields]
        out = {
            "type": "object",
            "required": names,
            "properties": {n: shape_json_schema(f) for n, f in zip(names, fields, strict=True)},
            "additionalProperties": False,
        }
    elif kind == "list":
        out = {"type": "array", "items": shape_json_schema(shape.get("items") or {})}
    elif kind == "map":
        out = {
            "type": "object",
            "additionalProperties": shape_json_schema(shape.get("values") or {}),
        }
    else:
        out = dict(_VALUE_REF)
    if shape.get("optional") and kind not in ("null", "any", None):
        out = {"anyOf": [out, {"type": "null"}]}
    if shape.get("doc"):
        out["description"] = str(shape["doc"])
    return out


def _is_pairs(value: Value, shape: Mapping[str, Any] | None) -> bool:
    """`value` is a list of [str, value] pairs with unique names (those of `shape`, in order)."""
    if not isinstance(value, list | tuple):
        return False
    names = []
    for pair in value:
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            return False
        names.append(pair[0])
    if len(set(names)) != len(names):
        return False
    if shape is None:
        return True
    return names == [f.get("name") for f in shape.get("fields", ()) if isinstance(f, Mapping)]


def jsonable(obj: Any) -> Any:
    """Make anything the node hands back (proof bundles, describe output) JSON-safe.

    Like `value_to_json`, and also maps: keys become strings, values converted recursively.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, bytes | bytearray | memoryview):
        return hex0x(bytes(obj))
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, IntEnum):
        return int(obj)
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj
    return str(obj)


def _is_bytes_type(t: str) -> bool:
    return t.startswith("bytes") or t in ("hex", "digest", "address", "pubkey", "signature")


def value_from_json(obj: Any, schema: Any, *, name: str = "value", _nested: bool = False) -> Value:
    """Turn a JSON value into a canonical value, using `schema` to find the bytes.

    `schema` is a type name string (`"bytes"`, `"bytes32"`, ..., `"str"`, `"int"`, `"bool"`,
    `"any"`, `"list<T>"`) or an argument schema as `contracts.framework.Arg.describe()` gives it:
    `{"type": "bytes", "size": 32}`, `{"type": "list", "items": <schema>}` (every element that
    schema) or `{"type": "list", "items": [<schema>, ...]}` (every element an array of exactly
    those, e.g. a [key, value] pair). `null` stays None. Unknown type names convert structurally,
    strings left as strings. Raises JsonFormatError naming the argument, also for a value that
    nests deeper than a free-form value may (MAX_VALUE_DEPTH; docs/protocol.md, Nesting depth).
    """
    if not _nested and isinstance(obj, list) and not _is_within_depth(obj, MAX_VALUE_DEPTH):
        raise JsonFormatError(
            f"{name}: arrays nest deeper than {MAX_VALUE_DEPTH} levels (the most a value may)"
        )
    t: Any = schema
    items: Any = None
    size: int | None = None
    if isinstance(schema, Mapping):
        t = schema.get("type", "any")
        items = schema.get("items")
        size = schema.get("size") if isinstance(schema.get("size"), int) else None
    if not isinstance(t, str):
        t = "any"
    if obj is None:
        # null is None for every type; the contract's own schema check refuses it where a value
        # is required, with the precise reason (`optional` only documents that it is allowed).
        return None
    if _is_bytes_type(t):
        digits = t[5:] if t.startswith("bytes") else ""
        if digits.isdigit():
            size = int(digits)
        return parse_hex(obj, size, name=name)
    if t in ("list", "array") or t.startswith("list"):
        if not isinstance(obj, list):
            raise JsonFormatError(f"{name}: expected an array, got {_kind(obj)}")
        if isinstance(items, list):  # contracts.framework: each item is a tuple of these
            return [_tuple_from_json(v, items, f"{name}[{i}]") for i, v in enumerate(obj)]
        if items is None and "<" in t and t.endswith(">"):
            items = t[t.index("<") + 1 : -1]
        return [
            value_from_json(v, items or "any", name=f"{name}[{i}]", _nested=True)
            for i, v in enumerate(obj)
        ]
    return _plain_from_json(obj, name)


def _is_within_depth(obj: list[Any], limit: int) -> bool:
    """Whether the arrays of `obj` nest at most `limit` levels (iterative: no recursion limit)."""
    stack: list[tuple[list[Any], int]] = [(obj, 1)]
    while stack:
        items, level = stack.pop()
        if level > limit:
            return False
        stack.extend((v, level + 1) for v in items if isinstance(v, list))
    return True


def _tuple_from_json(obj: Any, schemas: list[Any], name: str) -> Value:
    if not isinstance(obj, list) or len(obj) != len(schemas):
        raise JsonFormatError(f"{name}: expected an array of {len(schemas)} values")
    return [
        value_from_json(v, sch, name=f"{name}[{j}]", _nested=True)
        for j, (v, sch) in enumerate(zip(obj, schemas, strict=True))
    ]


def _plain_from_json(obj: Any, name: str) -> Value:
    """Structural conversion: no bytes, strings stay strings, floats and objects refused."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return check_text(obj, name)
    if isinstance(obj, int):
        if not _I64_MIN <= obj <= _U64_MAX:
            raise JsonFormatError(f"{name}: integer out of the 64-bit range")
        return obj
    if isinstance(obj, list):
        return [_plain_from_json(v, f"{name}[{i}]") for i, v in enumerate(obj)]
    raise JsonFormatError(f"{name}: {_kind(obj)} is not a canonical value (no floats, no objects)")


# --- protocol types -> JSON ----------------------------------------------------------------------


def tx_to_json(
    tx: SignedTx,
    *,
    height: int | None = None,
    index: int | None = None,
    block_id: bytes | None = None,
) -> dict[str, Any]:
    """A signed transaction; with its position (and `pending: false`) when it is committed."""
    body = tx.body
    out: dict[str, Any] = {
        "txId": hex0x(tx.tx_id),
        "chainId": body.chain_id,
        "sender": hex0x(body.sender),
        "senderAddress": hex0x(sm3_hash(body.sender)[:NODE_ID_SIZE]),
        "nonce": body.nonce,
        "expiry": int(body.expiry),
        "contract": body.contract,
        "method": body.method,
        "args": value_to_json(list(body.args)),
        "signature": hex0x(tx.signature),
        "raw": hex0x(tx.encode()),
    }
    if height is not None:
        out["blockNumber"] = height
        out["transactionIndex"] = index
        out["blockHash"] = None if block_id is None else hex0x(block_id)
        out["pending"] = False
    return out


def event_to_json(event: Event) -> dict[str, Any]:
    """An event; `fields` keeps the emitted order as `[name, value]` pairs (names may repeat)."""
    return {
        "contract": event.contract,
        "name": event.name,
        "fields": [[k, value_to_json(v)] for k, v in event.fields],
    }


def receipt_to_json(
    receipt: Receipt,
    *,
    height: int | None = None,
    index: int | None = None,
    block_id: bytes | None = None,
) -> dict[str, Any]:
    """A receipt: `status` is the integer code, `statusName` its name (`OK`, `FAILED`, ...);
    with its position (and `pending: false`) when committed. `result` is the canonical value
    (rule 2), not rendered by a shape: it is what `raw` and the receipt root commit to."""
    status = ReceiptStatus(receipt.status)
    out: dict[str, Any] = {
        "txId": hex0x(receipt.tx_id),
        "status": int(status),
        "statusName": status.name,
        "result": value_to_json(receipt.result),
        "events": [event_to_json(e) for e in receipt.events],
        "error": receipt.error,
        "raw": hex0x(receipt.encode()),
    }
    if height is not None:
        out["blockNumber"] = height
        out["transactionIndex"] = index
        out["blockHash"] = None if block_id is None else hex0x(block_id)
        out["pending"] = False
    return out


def qc_to_json(qc: QuorumCert) -> dict[str, Any]:
    """A quorum certificate; `signatures` ascending by signer node id."""
    return {
        "blockId": hex0x(qc.block_id),
        "round": int(qc.round),
        "height": int(qc.height),
        "signatures": [{"signer": hex0x(n), "signature": hex0x(s)} for n, s in qc.signatures],
    }


def header_to_json(header: BlockHeader) -> dict[str, Any]:
    """A header; `hash` is the block id, `raw` the canonical header bytes it is computed from."""
    return {
        "hash": hex0x(header.block_id),
        "number": int(header.height),
        "chainId": header.chain_id,
        "round": int(header.round),
        "parentHash": hex0x(header.parent_id),
        "timestampMs": header.timestamp_ms,
        "proposer": hex0x(header.proposer),
        "txRoot": hex0x(header.tx_root),
        "txCount": header.tx_count,
        "receiptRoot": hex0x(header.receipt_root),
        "accRoot": hex0x(header.acc_root),
        "accSize": header.acc_size,
        "stateHash": hex0x(header.state_hash),
        "justify": qc_to_json(header.justify),
        "raw": hex0x(header.encode()),
    }


def block_summary_to_json(header: BlockHeader, tx_ids: Sequence[bytes]) -> dict[str, Any]:
    """`block_to_json(block, full_txs=False)` from the header and the tx ids alone."""
    out = header_to_json(header)
    out["transactions"] = [hex0x(t) for t in tx_ids]
    return out


def block_to_json(block: Block, full_txs: bool) -> dict[str, Any]:
    """A block: the header's fields plus `transactions` (ids, or full objects if `full_txs`)."""
    out = header_to_json(block.header)
    h, bid = int(block.header.height), block.block_id
    if full_txs:
        out["transactions"] = [
            tx_to_json(t, height=h, index=i, block_id=bid) for i, t in enumerate(block.txs)
        ]
    else:
        out["transactions"] = [hex0x(t.tx_id) for t in block.txs]
    return out


def args_schema(describe: Any, contract: str, method: str) -> Sequence[Any] | None:
    """The argument schemas of `contract.method` in `NodeApi.describe_contracts()`, if described.

    Accepted shapes (docs/rpc.md, "gm_call"): `{contract: {"methods": {method: {"args": [...]}}}}`,
    or lists of `{"name": ...}` at either level, optionally under a top-level `"contracts"` key.
    """
    top = describe.get("contracts", describe) if isinstance(describe, Mapping) else describe
    c = _find_named(top, contract)
    if not isinstance(c, Mapping):
        return None
    m = _find_named(c.get("methods"), method) or _find_named(c.get("queries"), method)
    if not isinstance(m, Mapping):
        return None
    args = m.get("args", m.get("params"))
    return args if isinstance(args, list) else None


def returns_schema(describe: Any, contract: str, method: str) -> Any:
    """The declared result shape of `contract.method` in `describe_contracts()`, or None."""
    top = describe.get("contracts", describe) if isinstance(describe, Mapping) else describe
    c = _find_named(top, contract)
    if not isinstance(c, Mapping):
        return None
    m = _find_named(c.get("methods"), method) or _find_named(c.get("queries"), method)
    return m.get("returns") if isinstance(m, Mapping) else None


def _find_named(container: Any, name: str) -> Any:
    if isinstance(container, Mapping):
        return container.get(name)
    if isinstance(container, list):
        for item in container:
            if isinstance(item, Mapping) and item.get("name") == name:
                return item
    return None
