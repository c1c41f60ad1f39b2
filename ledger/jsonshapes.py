"""JSON of contract results by their declared shapes, and the registry's description.

Part of the one JSON layer; import it as `gmchain.ledger.jsonfmt` (that module's rule 5 is kept
here). A shape is the plain-JSON `Shape.describe()` of `contracts.results` (served by
`gm_contracts` as each method's `returns`), so this module needs nothing from `contracts`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from gmchain.ledger.codec import Value
from gmchain.ledger.jsonvalues import jsonable, value_to_json

__all__ = [
    "args_schema",
    "camel_case",
    "contracts_to_json",
    "returns_schema",
    "shape_json_schema",
    "view_to_json",
]


@functools.lru_cache(maxsize=1024)  # record field names: a small fixed set, converted per answer
def camel_case(name: str) -> str:
    """`record_hash` -> `recordHash` (rule 5); a name without underscores is unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _is_map(x: Any) -> bool:
    return type(x) is dict or isinstance(x, Mapping)  # the exact type first: ABC checks are slow


def _is_seq(x: Any) -> bool:
    return type(x) is list or type(x) is tuple or isinstance(x, list | tuple)


def view_to_json(value: Value, shape: Any) -> Any:
    """A contract's result as JSON, rendered by its declared shape (rule 5).

    `shape` is a `Shape.describe()` mapping (or None: no shape declared, plain rendering)."""
    if value is None or not _is_map(shape):
        return value_to_json(value)
    kind = shape.get("type")
    if kind == "record" and _is_pairs(value, shape):
        fields = {f.get("name"): f for f in shape.get("fields", ()) if _is_map(f)}
        assert isinstance(value, list | tuple)
        return {camel_case(k): view_to_json(v, fields.get(k)) for k, v in value}
    if kind == "map" and _is_pairs(value, None):
        assert isinstance(value, list | tuple)
        return {k: view_to_json(v, shape.get("values")) for k, v in value}
    if kind == "list" and _is_seq(value):
        assert isinstance(value, list | tuple)
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
    if not _is_seq(value):
        return False
    assert isinstance(value, list | tuple)
    names = []
    for pair in value:
        if not (_is_seq(pair) and len(pair) == 2 and isinstance(pair[0], str)):
            return False
        names.append(pair[0])
    if len(set(names)) != len(names):
        return False
    if shape is None:
        return True
    return names == [f.get("name") for f in shape.get("fields", ()) if _is_map(f)]


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
