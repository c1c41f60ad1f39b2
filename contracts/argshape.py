"""The values a method receives for arguments its schema already accepted (contracts/framework.py
rule 2b: a node checks one call's arguments once).

Rules this module keeps:
1. `shape_args(schema, args)` returns exactly what `MethodSpec.check_args(args)` returns when that
   accepts `args`: the list padded with None for the missing trailing (optional) arguments, and
   each list argument's items rebuilt as new lists (so a method never shares a list with the
   transaction, or with another execution of it); every other value is passed as it is.
2. It checks nothing. Call it only for arguments this node's `check_args` accepted with the same
   schema: `TxRules.checked_calls` says which (chain/txrules.py, "Caches").
3. tests/test_txcost.py compares it with `check_args` for every method of every system contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gmchain.ledger.codec import Value

if TYPE_CHECKING:
    from gmchain.contracts.framework import Arg

__all__ = ["shape_args"]


def shape_args(schema: Sequence[Arg], args: Sequence[Value]) -> list[Value]:
    """Rule 1, for a method whose arguments are `schema`."""
    values = list(args) + [None] * (len(schema) - len(args))
    return [_shaped(a, v) for a, v in zip(schema, values, strict=True)]


def _shaped(arg: Arg, value: Value) -> Value:
    """What `arg.check(value)` returns for a value it accepted."""
    if value is None or arg.kind is not list:
        return value
    assert arg.items is not None
    items = arg.items
    return [[_shaped(sub, v) for sub, v in zip(items, item, strict=True)] for item in value]
