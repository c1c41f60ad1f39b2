"""docs/protocol.md's field rules (section 2, one list per struct) are the rules decoding enforces.

scripts/field_rules.py reads each struct's rules from its `__post_init__`; the document renders
them. Here every rule on a whole field is broken on real bytes (the struct's example from the
document's chain, one field replaced, re-encoded canonically) and the decoder must refuse it, and
its boundary values must decode. The TxBody rules an independent implementer found missing
(docs review F3) are pinned by value.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gmchain.ledger import types as lt
from gmchain.ledger.codec import DecodeError, encode

ROOT = Path(__file__).resolve().parent.parent
U64_MAX = 2**64 - 1


@cache
def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_protocol_doc", ROOT / "scripts/gen_protocol_doc.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@cache
def _samples() -> dict[type, Any]:
    gen = _gen()
    return dict(gen.struct_samples(gen.build_examples(gen._Signatures(False))))


def _rules() -> ModuleType:
    _gen()  # puts scripts/ on sys.path
    return sys.modules["field_rules"]


def _refused(cls: type, fields: list[Any]) -> bool:
    try:
        cls.decode(encode(fields))  # type: ignore[attr-defined]
    except DecodeError:
        return True
    return False


def _cases(kind: str, params: tuple[Any, ...]) -> tuple[list[Any], list[Any]]:
    """(values the rule refuses, boundary values it accepts)."""
    if kind == "str":
        max_len, allow_empty = params
        bad: list[Any] = ["x" * (max_len + 1), "\u00e9" * (max_len // 2 + 1), b"x"]
        good: list[Any] = ["x" * max_len, "\u00e9" * (max_len // 2)]
        (good if allow_empty else bad).append("")
        return bad, good
    if kind == "bytes":
        (size,) = params
        return [bytes(size - 1), bytes(size + 1), "x" * size], [bytes(size)]
    if kind == "int":
        lo, hi = params
        bad = [lo - 1, True] + ([hi + 1] if hi < U64_MAX else [])
        return bad, [lo, hi]
    if kind == "enum":
        return [max(params) + 1, -1], list(params)
    if kind == "list":
        return [[0] * (params[0] + 1)], []
    raise AssertionError(kind)


def _sig_list_cases(entries: list[list[Any]]) -> list[Any]:
    """Entry lists a `sig_list` rule refuses: out of order, duplicated, short id, short sig."""
    assert len(entries) >= 2, "the example needs two entries to reorder"
    first = entries[0]
    return [
        [entries[1], entries[0], *entries[2:]],
        [first, first],
        [[first[0][:19], *first[1:]]],
        [[*first[:-1], first[-1][:63]]],
        [first[:-1]],
    ]


def _struct_rule_cases() -> list[Any]:
    out = []
    for cls in _gen().STRUCTS:
        for rule in _rules().rules_of(cls):
            if not rule.part and rule.kind in ("str", "bytes", "int", "enum", "list", "sig_list"):
                out.append(pytest.param(cls, rule, id=f"{cls.__name__}.{rule.field}.{rule.kind}"))
    return out


@pytest.mark.parametrize(("cls", "rule"), _struct_rule_cases())
def test_each_documented_field_rule_is_what_decoding_enforces(cls: type, rule: Any) -> None:
    sample = _samples()[cls]
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    index = 1 + names.index(rule.field)
    assert encode(sample.to_fields()) == sample.encode()
    if rule.kind == "sig_list":
        bad, good = _sig_list_cases(sample.to_fields()[index]), [sample.to_fields()[index]]
    else:
        bad, good = _cases(rule.kind, rule.params)
    for value in bad:
        fields = sample.to_fields()
        fields[index] = value
        assert _refused(cls, fields), f"{rule.text}, yet {str(value)[:40]!r} decodes"
    for value in good:
        fields = sample.to_fields()
        fields[index] = value
        assert not _refused(cls, fields), f"{rule.text}, yet {str(value)[:40]!r} is refused"


def test_the_txbody_rules_are_documented_by_value() -> None:
    """F3: the bounds an implementer had to discover by probing a node are in section 2 and 5."""
    rules = {(r.field, r.kind): r for r in _rules().rules_of(lt.TxBody)}
    assert rules[("chain_id", "str")].params == (64, False)
    assert rules[("contract", "str")].params == (32, False)
    assert rules[("method", "str")].params == (32, False)
    assert rules[("nonce", "int")].params == (0, U64_MAX)
    assert rules[("expiry", "int")].params == (1, U64_MAX)
    assert rules[("sender", "bytes")].params == (65,)
    doc = (ROOT / "docs" / "protocol.md").read_text()
    section5 = doc[doc.index("## 5. Transactions") : doc.index("## 6. Headers")]
    for line in (
        "- `chain_id`: text of 1 to 64 bytes",
        "- `contract`: text of 1 to 32 bytes",
        "- `method`: text of 1 to 32 bytes",
        "- `nonce`: integer in [0, 2^64-1]",
        "- `expiry`: integer in [1, 2^64-1]",
    ):
        assert line in section5, line
        assert section5.count(line) == 1


def test_every_other_check_is_described_and_no_description_is_stale() -> None:
    """scripts/field_rules.py rule 2: a struct check with an unknown message stops generation,
    and a description no check uses is reported."""
    fr = _rules()
    for cls in _gen().STRUCTS:
        fr.rules_of(cls)
    assert fr.unused_descriptions() == []
    genesis = {(r.field, r.text) for r in fr.rules_of(lt.Genesis)}
    assert ("validators", "at least 1 item") in genesis
