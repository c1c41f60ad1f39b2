"""ledger/jsonfmt.py: hex parsing, value <-> JSON conversion, schema-driven bytes, object shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gmchain.contracts import Shape
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.jsonfmt import (
    JsonFormatError,
    args_schema,
    camel_case,
    contracts_to_json,
    event_to_json,
    hex0x,
    jsonable,
    parse_hex,
    receipt_to_json,
    returns_schema,
    shape_json_schema,
    tx_to_json,
    value_from_json,
    value_to_json,
    view_to_json,
)
from gmchain.ledger.types import Event, Receipt, ReceiptStatus, SignedTx
from tests.test_rpc_fake import DESCRIBE, make_tx

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=20,
)
# (value, schema) pairs of the kinds contract arguments have
typed_arg = st.one_of(
    st.binary(max_size=40).map(lambda b: (b, "bytes")),
    st.binary(min_size=32, max_size=32).map(lambda b: (b, {"type": "bytes32"})),
    st.lists(st.binary(max_size=8), max_size=4).map(lambda xs: (xs, "list<bytes>")),
    plain.map(lambda v: (v, "any")),
    st.text(max_size=10).map(lambda t: ("0x" + t, "str")),
)


@given(st.binary(max_size=100))
def test_hex_roundtrip(data: bytes) -> None:
    text = hex0x(data)
    assert text == text.lower() and text.startswith("0x")
    assert parse_hex(text) == data
    assert parse_hex(text.upper().replace("0X", "0x")) == data
    assert parse_hex(text, len(data)) == data


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("abcd", "start with 0x"),
        ("0xabc", "odd"),
        ("0xzz", "not a hex"),
        ("0x 1", "not a hex"),
        (5, "an integer"),
        (None, "null"),
        (["0x00"], "an array"),
        ("0x0011", "expected 3 bytes"),
    ],
)
def test_parse_hex_errors_name_the_field(value: Any, needle: str) -> None:
    with pytest.raises(JsonFormatError, match="txId") as err:
        parse_hex(value, 3 if value == "0x0011" else None, name="txId")
    assert needle in str(err.value)


@given(st.lists(typed_arg, max_size=6))
def test_value_json_roundtrip_with_schema(args: list[tuple[Any, Any]]) -> None:
    value = [v for v, _ in args]
    as_json = json.loads(json.dumps(value_to_json(value)))
    back = [value_from_json(j, s) for j, (_, s) in zip(as_json, args, strict=True)]
    assert back == value


def test_value_from_json_refuses_non_values() -> None:
    for bad in (1.5, {"a": 1}, [1, {"b": 2}], 2**64, -(2**63) - 1):
        with pytest.raises(JsonFormatError, match="arg"):
            value_from_json(bad, "any", name="arg")
    with pytest.raises(JsonFormatError, match="expected 32 bytes"):
        value_from_json("0x00", "bytes32", name="digest")
    with pytest.raises(JsonFormatError, match="expected an array"):
        value_from_json("0x00", "list<bytes>", name="xs")
    assert value_from_json(["0x01"], "list<bytes>") == [b"\x01"]
    assert value_from_json("0x01", "str") == "0x01"  # a str arg stays text
    assert value_from_json(None, "bytes32") is None


def test_args_schema_shapes() -> None:
    keyed = {"evidence": {"methods": {"by_digest": {"args": [{"name": "d", "type": "bytes32"}]}}}}
    assert args_schema(keyed, "evidence", "by_digest") == [{"name": "d", "type": "bytes32"}]
    by_digest = args_schema(DESCRIBE, "evidence", "by_digest")  # the registry's own shape
    assert by_digest is not None and by_digest[0]["size"] == 32
    listed = {"contracts": [{"name": "evidence", "methods": [{"name": "get", "args": ["str"]}]}]}
    assert args_schema(listed, "evidence", "get") == ["str"]
    assert args_schema(listed, "evidence", "nope") is None
    assert args_schema([], "x", "y") is None


def test_tx_and_receipt_json() -> None:
    tx = make_tx(PrivateKey.generate(), nonce=5, expiry=9, record_id="r")
    j = tx_to_json(tx, height=3, index=1, block_id=b"\x02" * 32)
    assert SignedTx.decode(parse_hex(j["raw"])) == tx
    assert j["txId"] == hex0x(tx.tx_id) and j["nonce"] == 5 and j["blockNumber"] == 3
    assert j["pending"] is False  # committed: also inside a full block
    assert "pending" not in tx_to_json(tx) and "blockNumber" not in tx_to_json(tx)
    assert parse_hex(j["senderAddress"], 20)
    ev = Event(contract="evidence", name="E", fields=(("k", b"\x01"), ("k", "v")))
    rec = Receipt(
        tx_id=tx.tx_id,
        status=ReceiptStatus.BAD_ARGUMENTS,
        result=[b"\xff", [1]],
        events=(ev,),
        error="bad",
    )
    rj = receipt_to_json(rec)
    assert rj["status"] == 4 and rj["statusName"] == "BAD_ARGUMENTS"
    assert rj["result"] == ["0xff", [1]] and rj["events"] == [event_to_json(ev)]
    assert event_to_json(ev)["fields"] == [["k", "0x01"], ["k", "v"]]
    assert Receipt.decode(parse_hex(rj["raw"])) == rec
    assert "blockNumber" not in rj
    json.dumps(rj)


def test_jsonable() -> None:
    assert jsonable({1: (b"\x01", ReceiptStatus.FAILED), "x": None}) == {
        "1": ["0x01", 1],
        "x": None,
    }
    assert value_to_json((b"", [b"\x00"])) == ["0x", ["0x00"]]


def test_real_contract_schemas() -> None:
    """The shapes contracts.framework's Registry.describe() produces."""
    from gmchain.contracts.framework import default_registry

    describe = default_registry().describe()
    schema = args_schema(describe, "evidence", "by_digest")
    assert schema is not None and schema[0]["name"] == "data_digest"
    assert value_from_json(hex0x(b"\x07" * 32), schema[0]) == b"\x07" * 32
    with pytest.raises(JsonFormatError, match="expected 32 bytes"):
        value_from_json("0x07", schema[0], name="data_digest")
    submit = args_schema(describe, "evidence", "submit")
    assert submit is not None
    meta = next(a for a in submit if a["name"] == "metadata")
    assert value_from_json([["k", "0xv"]], meta) == [["k", "0xv"]]  # str pairs stay text
    with pytest.raises(JsonFormatError, match=r"metadata\[0\]: expected an array of 2"):
        value_from_json([["k"]], meta, name="metadata")
    assert args_schema(describe, "membership", "get") is not None


# --- contract results rendered by their declared shape (rule 5) ---------------------------------

_ITEM = Shape.record(("item_id", Shape.of("str")), ("size", Shape.of("int")))
_VIEW = Shape.record(
    ("view_id", Shape.of("str")),
    ("data_hash", Shape.of("bytes", size=2)),
    ("tags", Shape.map_of(Shape.of("str"))),
    ("items", Shape.list_of(_ITEM)),
    ("note", Shape.of("str").or_none()),
).or_none()


def test_camel_case() -> None:
    assert camel_case("record_hash") == "recordHash"
    assert camel_case("prev_record_id") == "prevRecordId"
    assert camel_case("org") == "org" and camel_case("timestamp_ms") == "timestampMs"


def test_view_renders_records_maps_and_lists() -> None:
    value = _VIEW.pairs("v1", b"\xab\xcd", [["b", "2"], ["a", "1"]], [_ITEM.pairs("i", 3)], None)
    out = view_to_json(value, _VIEW.describe())
    assert out == {
        "viewId": "v1",
        "dataHash": "0xabcd",
        "tags": {"b": "2", "a": "1"},  # map keys verbatim, order kept
        "items": [{"itemId": "i", "size": 3}],
        "note": None,
    }
    assert list(out) == ["viewId", "dataHash", "tags", "items", "note"]
    assert view_to_json(None, _VIEW.describe()) is None
    json.dumps(out)


def test_view_that_does_not_fit_its_shape_is_rendered_plain() -> None:
    """The shape describes, it never hides data: wrong names, order or arity stay pairs."""
    shape = _ITEM.describe()
    swapped = [["size", 3], ["item_id", "i"]]
    assert view_to_json(swapped, shape) == swapped
    assert view_to_json([["item_id", b"\x01"]], shape) == [["item_id", "0x01"]]
    assert view_to_json([["k", 1], ["k", 2]], Shape.map_of(Shape.of("int")).describe()) == [
        ["k", 1],
        ["k", 2],
    ]  # a repeated key cannot be an object member
    assert view_to_json([b"\x01"], None) == ["0x01"]  # no shape: plain


def test_shape_json_schema_accepts_what_view_renders() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        **shape_json_schema(_VIEW.describe()),
        "components": {"schemas": {"Hex": {"type": "string"}, "Value": {}}},
    }
    validator = jsonschema.Draft202012Validator(schema)
    value = _VIEW.pairs("v1", b"\x00\x01", [], [], "n")
    assert validator.is_valid(view_to_json(value, _VIEW.describe()))
    assert validator.is_valid(None)
    assert not validator.is_valid(view_to_json(value, None))  # pairs are not the object
    bad_size = _VIEW.pairs("v1", b"\x00", [], [], "n")
    assert not validator.is_valid(view_to_json(bad_size, _VIEW.describe()))


def test_contracts_json_is_camel_case_and_keeps_names() -> None:
    described = {"contracts": [{"name": "c", "methods": [{"name": "get_x", "returns": {}}]}]}
    described["contracts"][0]["methods"][0]["args"] = [{"name": "a_b", "max_len": 3}]
    out = contracts_to_json(described)
    (method,) = out["contracts"][0]["methods"]
    assert method["name"] == "get_x" and method["args"] == [{"name": "a_b", "maxLen": 3}]
    real = default_describe()
    assert returns_schema(real, "evidence", "get") == returns_schema(
        contracts_to_json(real), "evidence", "get"
    )


def default_describe() -> dict[str, Any]:
    from gmchain.contracts import default_registry

    return default_registry().describe()
