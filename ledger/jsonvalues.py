"""JSON of canonical values: hex, `value_to_json`, `jsonable`, and `value_from_json` back.

Part of the one JSON layer; import it as `gmchain.ledger.jsonfmt` (that module's rules 1, 2, 4
and 6 are kept here).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from gmchain.ledger.codec import INT_MAX, INT_MIN, Value
from gmchain.ledger.types import MAX_VALUE_DEPTH

__all__ = [
    "JsonFormatError",
    "check_text",
    "hex0x",
    "jsonable",
    "parse_hex",
    "value_from_json",
    "value_to_json",
]


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
    # fromhex parses hex digits and skips whitespace: all of `s` after 0x was digit pairs iff
    # the result has half its length. (A regex over a 64 KB transaction's hex was 90 % of this
    # function's time: docs/benchmarks.md, session 8.)
    try:
        data = bytes.fromhex(s[2:])
    except ValueError:
        data = None
    if data is None or 2 * len(data) != len(s) - 2:
        if len(s) % 2:
            raise JsonFormatError(f"{name}: hex string has an odd number of digits")
        raise JsonFormatError(f"{name}: not a hex string")
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
    t = type(value)  # the exact common types first: this runs per value of every answer
    if t is str or t is int or value is None or t is bool:
        return value
    if t is bytes:
        return "0x" + value.hex()
    if isinstance(value, bytes | bytearray | memoryview):
        return hex0x(bytes(value))
    if isinstance(value, list | tuple):
        return [value_to_json(v) for v in value]
    if isinstance(value, IntEnum):
        return int(value)
    return value


def jsonable(obj: Any) -> Any:
    """Make anything the node hands back (proof bundles, describe output) JSON-safe.

    Like `value_to_json`, and also maps: keys become strings, values converted recursively.
    """
    t = type(obj)  # the exact common types first (a proof bundle is thousands of values)
    if t is str or t is int or obj is None or t is bool:
        return obj
    if t is dict:
        return {str(k): jsonable(v) for k, v in obj.items()}
    if t is list:
        return [jsonable(v) for v in obj]
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
        if not INT_MIN <= obj <= INT_MAX:
            raise JsonFormatError(f"{name}: integer out of the 64-bit range")
        return obj
    if isinstance(obj, list):
        return [_plain_from_json(v, f"{name}[{i}]") for i, v in enumerate(obj)]
    raise JsonFormatError(f"{name}: {_kind(obj)} is not a canonical value (no floats, no objects)")
