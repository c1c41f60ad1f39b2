"""The field rules a struct checks when it is built, and so when it is decoded, read from the code.

Rules this module keeps:
1. The list is read from each struct's `__post_init__`: every call of a ledger.scalars check
   (`check_str`, `check_bytes`, `check_int`, `check_list`, `check_sig_list`, `check_free_value`)
   becomes a rule, its limits evaluated in the struct's own module, so a changed limit changes
   the document. A list field's `max_items` (the decoder's bound) and an IntEnum field's values
   are rules too.
2. Every other check (`need`, `_need`, `raise ValueError`) is described in `_OTHER` by its message;
   a check whose message `_OTHER` does not know stops generation, so a new rule cannot go
   undocumented. `_OTHER` maps a type-only check (the field table already says the type) to None.
3. `rules_of` returns structured `Rule`s: docs/protocol.md renders their text, and
   tests/test_protocol_field_rules.py breaks each one on real bytes and expects the decoder to
   refuse them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
import typing
from enum import IntEnum
from typing import Any, TypeGuard

_CHECKS = {"check_str", "check_bytes", "check_int", "check_list", "check_sig_list"}
_FREE = "check_free_value"
_U64_MAX = 2**64 - 1


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule: `field` is the struct field it is about, `part` what in it (`""`: the field)."""

    field: str
    part: str
    kind: str  # "str", "bytes", "int", "list", "sig_list", "free", "enum", "other"
    params: tuple[Any, ...]
    text: str


def _num(n: int) -> str:
    if n == _U64_MAX:
        return "2^64-1"
    if n >= 2**16 and n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    return str(n)


def _text(kind: str, params: tuple[Any, ...]) -> str:
    if kind == "str":
        max_len, allow_empty = params
        return f"text of {0 if allow_empty else 1} to {max_len} bytes (UTF-8 bytes, not characters)"
    if kind == "bytes":
        return f"bin of exactly {params[0]} bytes"
    if kind == "int":
        lo, hi = params
        return f"integer in [{_num(lo)}, {_num(hi)}]"
    if kind == "list":
        return f"at most {params[0]} items"
    if kind == "sig_list":
        width, max_len = params
        return (
            f"at most {max_len} entries, each an array of {width} items whose first is a 20-byte "
            "node id and last a 64-byte signature, strictly ascending by node id (bytewise; so no "
            "duplicates)"
        )
    if kind == "free":
        return (
            f"a free-form value: canonical, nesting at most {params[0]} arrays, its own included "
            "(section 2, Nesting depth)"
        )
    raise AssertionError(kind)


def _other(consts: dict[str, int]) -> dict[tuple[str, str], tuple[str, str] | None]:
    """Rule 2: (struct, check message) -> (field, rule text), or None for a type-only check."""
    blocks = consts["MAX_BLOCKS_PER_RESPONSE"]
    return {
        ("SignedTx", "body: expected a TxBody"): None,
        ("Event", "fields: expected pairs"): None,
        ("Receipt", "status: int"): None,
        ("Receipt", "events: expected Event items"): None,
        ("TimeoutVote", "high_qc: expected a QuorumCert"): None,
        ("TimeoutCert", "high_qc: expected a QuorumCert"): None,
        ("BlockHeader", "justify: expected a QuorumCert"): None,
        ("Block", "header: expected a BlockHeader"): None,
        ("Block", "txs: expected SignedTx items"): None,
        ("Block", "tx_count does not match the transactions"): (
            "txs",
            "exactly `header.tx_count` items",
        ),
        ("Proposal", "block: expected a Block"): None,
        ("Proposal", "tc: expected a TimeoutCert"): None,
        ("Genesis", "validators: at least one"): ("validators", "at least 1 item"),
        ("Genesis", "validators: duplicate key"): (
            "validators",
            "no two with the same `pubkey` (so the same node id)",
        ),
        ("Genesis", "accounts: expected triples"): None,
        ("Genesis", "committee: expected pairs"): None,
        ("Genesis", "committee: ascending by org, no org twice"): (
            "committee",
            "strictly ascending by org (bytewise; so no org twice)",
        ),
        ("Genesis", "gov_thresholds: expected 4 integers"): None,
        ("Genesis", "gov_thresholds: out of range"): (
            "gov_thresholds",
            "(participation num, den, approval num, den): denominators in [1, 1000], "
            "0 <= participation < 1, 1/2 <= approval < 1",
        ),
        ("EpochConfig", "validators: at least one"): ("validators", "at least 1 item"),
        ("EpochConfig", "validators: GenesisValidator"): None,
        ("EpochConfig", "validators: ascending by node id, no key twice"): (
            "validators",
            "strictly ascending by node id (SM3 of the key, first 20 bytes; so no key twice)",
        ),
        ("EpochConfig", "observers: ascending, no key twice"): (
            "observers",
            "strictly ascending (bytewise; so no key twice)",
        ),
        ("EpochConfig", "observers: a validator is not an observer"): (
            "observers",
            "no item equal to a validator's `pubkey`",
        ),
        ("EpochConfig", "params: expected pairs"): None,
        ("EpochConfig", "params: unknown parameter {name}"): (
            "params",
            "each pair's name one of the parameter names of docs/governance.md",
        ),
        ("EpochConfig", "params: integer values"): None,
        ("EpochConfig", "params: value out of its range"): (
            "params",
            "each pair's value an integer in that parameter's range (docs/governance.md)",
        ),
        ("EpochConfig", "params: ascending by name, no name twice"): (
            "params",
            "strictly ascending by name (bytewise; so no name twice)",
        ),
        ("CommitProof", "header: expected a BlockHeader"): None,
        ("CommitProof", "qc: expected a QuorumCert"): None,
        ("BlockRequest", "block_id: 32 bytes"): ("block_id", "bin of exactly 32 bytes"),
        ("BlockRequest", "count: 1..128"): ("count", f"integer in [1, {blocks}]"),
        ("BlockResponse", "block_id: 32 bytes"): ("block_id", "bin of exactly 32 bytes"),
        ("BlockResponse", "blocks: too many"): None,  # the field's max_items says it
        ("BlockResponse", "blocks: expected Block items"): None,
        ("SyncRequest", "from_height: >= 1"): ("from_height", "integer in [1, 2^64-1]"),
        ("SyncRequest", "count: 1..128"): ("count", f"integer in [1, {blocks}]"),
        ("SyncResponse", "items: too many"): None,
        ("SyncResponse", "items: expected (Block, CommitProof) pairs"): None,
        ("SyncInfo", "high_qc: expected a QuorumCert"): None,
        ("SyncInfo", "tc: expected a TimeoutCert"): None,
        ("SyncInfo", "commit_qc: expected a QuorumCert"): None,
        ("TxBatch", "txs: expected at most {MAX_BATCH_TXS} raw transactions"): None,
        ("TxBatch", "txs: each must be bytes of at most MAX_TX_BYTES"): (
            "txs",
            f"each item bin of at most {consts['MAX_TX_BYTES']} bytes (`MAX_TX_BYTES`)",
        ),
    }


_USED: set[tuple[str, str]] = set()  # the _OTHER entries rules_of has met


def unused_descriptions() -> list[tuple[str, str]]:
    """_OTHER entries no check has used (after rules_of ran over every struct): stale ones."""
    return sorted(set(_other({"MAX_BLOCKS_PER_RESPONSE": 0, "MAX_TX_BYTES": 0})) - _USED)


# A check that names a part of a field: (struct, name it checks) -> (field, the part).
_PARTS = {
    ("Event", "field name"): ("fields", "each pair's name"),
    ("Event", "field {pair[0]}"): ("fields", "each pair's value"),
    ("TimeoutCert", "entry high_qc round"): ("entries", "each entry's `high_qc_round`"),
    ("Genesis", "observer"): ("observers", "each item"),
    ("Genesis", "account key"): ("accounts", "each triple's pubkey"),
    ("Genesis", "account org"): ("accounts", "each triple's org"),
    ("Genesis", "account role"): ("accounts", "each triple's role"),
    ("Genesis", "committee org"): ("committee", "each pair's org"),
    ("Genesis", "committee weight"): ("committee", "each pair's weight"),
    ("Genesis", "gov_threshold"): ("gov_thresholds", "each item"),
    ("EpochConfig", "observer"): ("observers", "each item"),
    ("EpochConfig", "param name"): ("params", "each pair's name"),
}


def _message(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(v.value) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
            for v in node.values
            if isinstance(v, ast.Constant | ast.FormattedValue)
        )
    raise SystemExit(f"a check's message is not a string: {ast.unparse(node)}")


def _calls(cls: type) -> list[ast.Call | ast.Raise]:
    src = textwrap.dedent(inspect.getsource(cls.__post_init__))  # type: ignore[attr-defined]
    found = [n for n in ast.walk(ast.parse(src)) if _is_check(n)]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def _is_check(n: ast.AST) -> TypeGuard[ast.Call | ast.Raise]:
    """A raise, or a call of a plain name (a check, or a builtin the caller skips)."""
    return isinstance(n, ast.Raise) or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name))


def rules_of(cls: type) -> list[Rule]:
    """Rule 1 and 2: the rules `cls` enforces, in the order it checks them."""
    name = cls.__name__
    module = sys.modules[cls.__module__].__dict__
    other = _other(
        {
            "MAX_BLOCKS_PER_RESPONSE": _const(
                "gmchain.consensus.messages", "MAX_BLOCKS_PER_RESPONSE"
            ),
            "MAX_TX_BYTES": _const("gmchain.ledger.scalars", "MAX_TX_BYTES"),
        }
    )
    rules: list[Rule] = []

    def add(rule: Rule) -> None:
        if rule not in rules:
            rules.append(rule)

    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    for f in fields:  # rule 1: the decoder's bounds and enum values
        if "max_items" in f.metadata:
            n = f.metadata["max_items"]
            add(Rule(f.name, "", "list", (n,), _text("list", (n,))))
        t = hints[f.name]
        if isinstance(t, type) and issubclass(t, IntEnum):
            values = ", ".join(f"{int(m)} (`{m.name}`)" for m in t)
            add(Rule(f.name, "", "enum", tuple(int(m) for m in t), f"one of {values}"))
    for node in _calls(cls):
        if isinstance(node, ast.Raise):
            exc = node.exc
            if not (isinstance(exc, ast.Call) and exc.args):
                raise SystemExit(f"{name}: a raise without a message")
            msg = _message(exc.args[0])
        else:
            assert isinstance(node.func, ast.Name)
            fn = node.func.id
            if fn in _CHECKS or fn == _FREE:
                field, part = _PARTS.get(
                    (name, _message(node.args[0])), (_message(node.args[0]), "")
                )
                if field not in hints:
                    raise SystemExit(f"{name}: a check names {field!r}: add it to _PARTS (rule 1)")
                if fn == _FREE:
                    depth = module["MAX_VALUE_DEPTH"]
                    add(Rule(field, part, "free", (depth,), _text("free", (depth,))))
                    continue
                rest = [eval(ast.unparse(a), module) for a in node.args[2:]]
                kw = {k.arg: eval(ast.unparse(k.value), module) for k in node.keywords}
                if fn == "check_str":
                    params: tuple[Any, ...] = (rest[0], bool(kw.get("allow_empty", False)))
                    kind = "str"
                elif fn == "check_int":
                    lo = rest[0] if rest else kw.get("lo", 0)
                    hi = rest[1] if len(rest) > 1 else kw.get("hi", _U64_MAX)
                    params, kind = (lo, hi), "int"
                else:
                    params, kind = tuple(rest), fn.removeprefix("check_")
                add(Rule(field, part, kind, params, _text(kind, params)))
                continue
            if fn not in ("need", "_need"):
                continue  # not a check (isinstance, len, tuple, ...)
            msg = _message(node.args[1])
        if (name, msg) not in other:
            raise SystemExit(
                f"{name} checks {msg!r}: describe it in scripts/field_rules.py _OTHER (rule 2)"
            )
        _USED.add((name, msg))
        described = other[(name, msg)]
        if described is not None:
            add(Rule(described[0], "", "other", (), described[1]))
    sig_lists = {r.field for r in rules if r.kind == "sig_list"}
    rules = [r for r in rules if not (r.kind == "list" and r.field in sig_lists)]
    order = [f.name for f in fields]
    return sorted(rules, key=lambda r: order.index(r.field))  # stable: checks keep their order


def _const(module: str, name: str) -> int:
    __import__(module)
    value = getattr(sys.modules[module], name)
    assert isinstance(value, int)
    return value


def render(cls: type) -> str:
    """The rules of `cls` as a markdown list, or a sentence when it has none."""
    rules = rules_of(cls)
    if not rules:
        return "Field rules: none beyond the shape above (array length, tag, each field's type)."
    lines = ["Field rules (decoding refuses the bytes, like malformed ones, unless):", ""]
    lines += [f"- `{r.field}`{', ' + r.part if r.part else ''}: {r.text}" for r in rules]
    return "\n".join(lines)
