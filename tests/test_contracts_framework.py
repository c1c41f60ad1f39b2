"""Rule tests for contracts/framework.py: schemas, dispatch, errors, describe."""

from __future__ import annotations

import json

import pytest

from gmchain.contracts.framework import (
    IDENT_CHARS,
    MAX_ERROR_BYTES,
    Arg,
    BadArguments,
    Context,
    Contract,
    ContractError,
    QueryContext,
    Registry,
    UnknownContract,
    UnknownMethod,
    default_registry,
    error_text,
    method,
    query,
)
from gmchain.contracts.testing import MemoryStore, make_context
from gmchain.ledger.codec import Value, decode, encode
from gmchain.ledger.types import Event, Receipt, ReceiptStatus

PUB = b"\x04" + bytes(range(64))
IDENT_HINT = "; allowed: letters, digits and . _ - : / @"


class Counter(Contract):
    """A toy contract used to exercise the framework."""

    NAME = "counter"

    @method(
        Arg("name", str, max_len=8, charset="ident"),
        Arg("by", int, min=1, max=10),
        Arg("note", str, optional=True, max_len=4),
        returns="the new value",
    )
    def add(self, ctx: Context, name: str, by: int, note: str | None) -> Value:
        """Add `by` to the named counter."""
        if name == "locked":
            raise ContractError("counter 'locked' is locked")
        key = b"c/" + name.encode()
        old = int.from_bytes(ctx.state.get(key) or b"\x00", "big")
        ctx.state.put(key, (old + by).to_bytes(8, "big"))
        ctx.emit("Added", ("name", name), ("by", by), ("note", note))
        return old + by

    @method(
        Arg("blob", bytes, size=4),
        Arg("flag", bool),
        Arg(
            "pairs",
            list,
            max_len=2,
            items=(Arg("k", str, max_len=3), Arg("v", bytes, max_len=2)),
        ),
        Arg("color", str, max_len=8, choices=("red", "blue")),
    )
    def shapes(
        self, ctx: Context, blob: bytes, flag: bool, pairs: list[Value], color: str
    ) -> Value:
        return [blob, flag, pairs, color]

    @query(Arg("name", str, max_len=8, charset="ident"), name="get")
    def get_counter(self, q: QueryContext, name: str) -> Value:
        raw = q.state.get(b"c/" + name.encode())
        return None if raw is None else int.from_bytes(raw, "big")

    @query(Arg("contract", str, max_len=32))
    def peek(self, q: QueryContext, contract: str) -> Value:
        return [[k, v] for k, v in q.reader_for(contract).scan(b"", 10)]


@pytest.fixture
def env() -> tuple[Registry, MemoryStore]:
    return Registry([Counter()]), MemoryStore()


def ctx_for(store: MemoryStore) -> Context:
    return make_context(store, "counter", sender_pubkey=PUB, sender_org="o", sender_role="member")


def test_invoke_runs_method_and_emits_labelled_events(env: tuple[Registry, MemoryStore]) -> None:
    reg, store = env
    ctx = ctx_for(store)
    assert reg.invoke(ctx, "counter", "add", ["a", 3]) == 3
    ctx2 = ctx_for(store)
    assert reg.invoke(ctx2, "counter", "add", ["a", 4, "hi"]) == 7
    assert ctx2.events == [
        Event(contract="counter", name="Added", fields=(("name", "a"), ("by", 4), ("note", "hi")))
    ]
    assert reg.query(store.reader_factory, "counter", "get", ["a"]) == 7
    assert reg.query(store.reader_factory, "counter", "get", ["b"]) is None


def test_missing_trailing_optional_is_none(env: tuple[Registry, MemoryStore]) -> None:
    reg, store = env
    ctx = ctx_for(store)
    reg.invoke(ctx, "counter", "add", ["a", 1])
    assert ctx.events[0].fields[2] == ("note", None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a"], "add needs argument 'by' (position 1); its arguments are: name, by, note"),
        (["a", 1, None, 5], "add takes at most 3 arguments, got 4"),
        ([None, 1], "argument 'name' is required"),
        ([b"a", 1], "argument 'name' must be str, got bytes"),
        (["", 1], "argument 'name' must not be empty"),
        (["abcdefghi", 1], "argument 'name' is 9 bytes of UTF-8, the limit is 8"),
        (["a b", 1], "argument 'name' contains ' '" + IDENT_HINT),
        (["a\x00", 1], "argument 'name' contains '\\x00'" + IDENT_HINT),
        (["a", 0], "argument 'by' must be in [1, 10], got 0"),
        (["a", 11], "argument 'by' must be in [1, 10], got 11"),
        (["a", True], "argument 'by' must be int, got bool"),
        (["a", "1"], "argument 'by' must be int, got str"),
        (["a", 1, "x\ny"], "argument 'note' contains a control character"),
        (["a", 1, "\u00e9\u00e9\u00e9"], "argument 'note' is 6 bytes of UTF-8, the limit is 4"),
    ],
)
def test_schema_refusals(
    env: tuple[Registry, MemoryStore], args: list[Value], message: str
) -> None:
    reg, store = env
    with pytest.raises(BadArguments) as info:
        reg.invoke(ctx_for(store), "counter", "add", args)
    assert str(info.value) == message
    assert info.value.status is ReceiptStatus.BAD_ARGUMENTS
    assert store.snapshot() == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([b"abc", True, [], "red"], "argument 'blob' must be 4 bytes, got 3"),
        ([b"abcd", 1, [], "red"], "argument 'flag' must be bool, got int"),
        ([b"abcd", True, "x", "red"], "argument 'pairs' must be list, got str"),
        (
            [b"abcd", True, [["a", b""]] * 3, "red"],
            "argument 'pairs' must have 0 to 2 items, got 3",
        ),
        ([b"abcd", True, [["a"]], "red"], "argument 'pairs' item 0 must be a list of 2 values"),
        (
            [b"abcd", True, [["a", b""], ["b", b"xyz"]], "red"],
            "argument 'pairs' item 1: argument 'v' must be 0 to 2 bytes, got 3",
        ),
        ([b"abcd", True, [], "green"], "argument 'color' must be one of red, blue; got 'green'"),
        (b"abcd", "arguments must be a list"),
    ],
)
def test_schema_refusals_other_types(
    env: tuple[Registry, MemoryStore], args: Value, message: str
) -> None:
    reg, store = env
    with pytest.raises(BadArguments) as info:
        reg.invoke(ctx_for(store), "counter", "shapes", args)
    assert str(info.value) == message


def test_schema_accepts_good_shapes(env: tuple[Registry, MemoryStore]) -> None:
    reg, store = env
    out = reg.invoke(ctx_for(store), "counter", "shapes", [b"abcd", False, [("k", b"v")], "blue"])
    assert out == [b"abcd", False, [["k", b"v"]], "blue"]


def test_contract_error_is_failed_status(env: tuple[Registry, MemoryStore]) -> None:
    reg, store = env
    with pytest.raises(ContractError) as info:
        reg.invoke(ctx_for(store), "counter", "add", ["locked", 1])
    assert info.value.status is ReceiptStatus.FAILED
    assert str(info.value) == "counter 'locked' is locked"


def test_unknown_contract_and_method(env: tuple[Registry, MemoryStore]) -> None:
    reg, store = env
    with pytest.raises(UnknownContract) as c:
        reg.invoke(ctx_for(store), "nope", "add", [])
    assert c.value.status is ReceiptStatus.UNKNOWN_CONTRACT
    assert str(c.value) == "unknown contract 'nope'; known contracts: counter"
    with pytest.raises(UnknownMethod) as m:
        reg.invoke(ctx_for(store), "counter", "sub", [])
    assert m.value.status is ReceiptStatus.UNKNOWN_METHOD
    assert (
        str(m.value)
        == "contract 'counter' has no method 'sub'; its methods are: add, shapes, get, peek"
    )


def test_queries_and_methods_do_not_cross(env: tuple[Registry, MemoryStore]) -> None:
    reg, store = env
    with pytest.raises(UnknownMethod, match="is a query"):
        reg.invoke(ctx_for(store), "counter", "get", ["a"])
    with pytest.raises(UnknownMethod, match="changes state"):
        reg.query(store.reader_factory, "counter", "add", ["a", 1])
    assert reg.is_query("counter", "get") and not reg.is_query("counter", "add")
    with pytest.raises(UnknownMethod):
        reg.is_query("counter", "nope")


def test_query_reads_other_contracts(env: tuple[Registry, MemoryStore]) -> None:
    reg, store = env
    store.state("other").put(b"k", b"v")
    assert reg.query(store.reader_factory, "counter", "peek", ["other"]) == [[b"k", b"v"]]
    ctx = ctx_for(store)
    assert ctx.reader_for("other").get(b"k") == b"v"


def test_reader_for_without_factory_is_an_error() -> None:
    ctx = Context(
        chain_id="c",
        tx_id=bytes(32),
        sender_pubkey=PUB,
        sender=bytes(20),
        sender_org=None,
        sender_role=None,
        height=1,
        timestamp_ms=1,
        state=MemoryStore().state("x"),
    )
    with pytest.raises(ContractError, match="no state reader"):
        ctx.reader_for("membership")


def test_describe_is_json_and_complete() -> None:
    reg = Registry([Counter()])
    d = reg.describe()
    json.dumps(d)
    (c,) = d["contracts"]
    assert c["name"] == "counter"
    assert c["doc"] == "A toy contract used to exercise the framework."
    add = c["methods"][0]
    assert (
        add["name"] == "add"
        and add["kind"] == "method"
        and add["returns"]
        == {
            "type": "any",
            "doc": "the new value",
        }
    )
    assert add["doc"] == "Add `by` to the named counter."
    assert add["args"][1] == {"name": "by", "type": "int", "min": 1, "max": 10}
    assert add["args"][2]["optional"] is True
    shapes = c["methods"][1]
    assert shapes["args"][2]["items"][1] == {
        "name": "v",
        "type": "bytes",
        "min_len": 0,
        "max_len": 2,
    }
    assert shapes["args"][3]["choices"] == ["red", "blue"]
    assert [m["kind"] for m in c["methods"]] == ["method", "method", "query", "query"]


def test_default_registry_describes_its_contracts() -> None:
    reg = default_registry()
    d = reg.describe()
    json.dumps(d)
    names = {c["name"]: [m["name"] for m in c["methods"]] for c in d["contracts"]}
    assert names == {
        "membership": ["register", "revoke", "get", "list"],
        "evidence": [
            "submit",
            "attest",
            "get",
            "flow",
            "by_digest",
            "verify_flow",
            "outbox",
            "outbox_count",
        ],
        "governance": [
            "propose",
            "vote",
            "close",
            "proposal",
            "proposals",
            "committee",
            "epoch_config",
            "current_epoch",
        ],
    }


def test_error_text_fits_a_receipt() -> None:
    long = ContractError("\u6570" * 400)  # 1200 bytes of UTF-8
    text = error_text(long)
    assert len(text.encode()) <= MAX_ERROR_BYTES and text.endswith("...")
    Receipt(tx_id=bytes(32), status=ReceiptStatus.FAILED, error=text).encode()
    assert error_text(ContractError("short")) == "short"
    assert error_text(ContractError()) == "ContractError"


def test_bad_schemas_fail_at_declaration() -> None:
    with pytest.raises(AssertionError):
        Arg("s", str)  # no max_len
    with pytest.raises(AssertionError):
        Arg("b", bytes)  # neither size nor max_len
    with pytest.raises(AssertionError):
        method(Arg("a", int), Arg("a", str, max_len=1))  # duplicate names


def test_results_are_canonical(env: tuple[Registry, MemoryStore]) -> None:
    """A method's result is a canonical value exactly as a receipt carries it back: argument
    lists and pairs come out as lists (never tuples), bytes stay bin, text stays str."""
    reg, store = env
    out = reg.invoke(ctx_for(store), "counter", "shapes", [b"abcd", True, (("k", b"v"),), "red"])
    assert out == [b"abcd", True, [["k", b"v"]], "red"]
    raw = encode(out)
    # [bin 4, true, [[str "k", bin "v"]], str "red"], shortest headers (docs/protocol.md §1)
    assert raw == bytes.fromhex("94c40461626364c39192a16bc40176a3726564")
    assert decode(raw) == out  # a tuple anywhere in `out` would not compare equal
    receipt = Receipt(tx_id=bytes(32), status=ReceiptStatus.OK, result=out)
    assert Receipt.decode(receipt.encode()).result == out


def test_ident_charset_is_exactly_the_documented_set() -> None:
    arg = Arg("x", str, max_len=4, charset="ident")
    text = Arg("t", str, max_len=4)
    for cp in [*range(0x300), 0x0660, 0xFF10, 0x6570, 0x1D7CE]:  # incl. non-ASCII digits
        c = chr(cp)
        if c in IDENT_CHARS:
            assert arg.check(c) == c
        else:
            with pytest.raises(BadArguments):
                arg.check(c)
        if cp < 0x20 or cp == 0x7F:
            with pytest.raises(BadArguments):
                text.check(c)
        else:
            assert text.check(c) == c
