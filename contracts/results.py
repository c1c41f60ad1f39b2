"""Result shapes: what a contract method returns, declared so that its JSON form can be exact.

Rules this module keeps:
1. A method still returns a canonical value (`ledger.codec`): there are no maps in the canonical
   model, so a record-like result is a list of `[name, value]` pairs in a fixed order. Its
   `Shape` says so, and names every field with that field's own shape.
2. The shape is data: `Shape.describe()` is plain JSON (it is part of `gm_contracts`), and the one
   JSON layer (`ledger.jsonfmt.view_to_json`) renders a value from that description alone, so a
   client holding `gm_contracts` can do exactly what the node does.
3. Kinds: the scalars `str`, `int`, `bool`, `bytes` (`size` = exact length if fixed), `null`;
   `any` (a free-form canonical value); `record` (`fields`: `[name, value]` pairs in exactly this
   order -> a JSON object whose member names are the camelCase field names); `list` (`items`);
   `map` (`[key, value]` pairs with unique string keys -> a JSON object keyed by those strings,
   verbatim). `optional` means the value may also be None (-> JSON null).

Sources: docs/evidence.md (the shapes of the evidence and membership results), docs/rpc.md
("Value formats"), STYLE.md habit 17 (one JSON layer).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gmchain.ledger.codec import Value

__all__ = ["Shape"]

_SCALARS = frozenset({"str", "int", "bool", "bytes", "null", "any"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """The shape of a method's return value (module rule 3). Build with the class methods."""

    kind: str
    optional: bool = False
    size: int | None = None  # bytes: the exact length, if fixed
    fields: tuple[tuple[str, Shape], ...] = ()  # record: names in order, each with its shape
    items: Shape | None = None  # list: every item's shape; map: every value's shape
    doc: str = ""

    def __post_init__(self) -> None:
        # A wrong shape is a programming error in a contract: fail at import time.
        assert self.kind in _SCALARS or self.kind in ("record", "list", "map"), self.kind
        assert (self.kind == "record") == bool(self.fields), f"{self.kind}: fields"
        assert (self.kind in ("list", "map")) == (self.items is not None), f"{self.kind}: items"
        names = [n for n, _ in self.fields]
        assert len(set(names)) == len(names), f"duplicate field names {names}"

    @classmethod
    def of(cls, kind: str, *, size: int | None = None, doc: str = "") -> Shape:
        """A scalar (`str`, `int`, `bool`, `bytes`, `null`) or `any`."""
        assert kind in _SCALARS, kind
        return cls(kind=kind, size=size, doc=doc)

    @classmethod
    def record(cls, *fields: tuple[str, Shape], doc: str = "") -> Shape:
        """`[[name, value], ...]` in exactly the order of `fields`."""
        return cls(kind="record", fields=tuple(fields), doc=doc)

    @classmethod
    def list_of(cls, items: Shape, *, doc: str = "") -> Shape:
        return cls(kind="list", items=items, doc=doc)

    @classmethod
    def map_of(cls, values: Shape, *, doc: str = "") -> Shape:
        """`[[key, value], ...]` with unique string keys (e.g. evidence metadata)."""
        return cls(kind="map", items=values, doc=doc)

    def pairs(self, *values: Value) -> list[Value]:
        """A record's canonical value: `[[name, value], ...]` with this shape's field names."""
        assert self.kind == "record" and len(values) == len(self.fields), "one value per field"
        return [[name, v] for (name, _), v in zip(self.fields, values, strict=True)]

    def or_none(self) -> Shape:
        """The same shape, or None."""
        return replace(self, optional=True)

    def describe(self) -> dict[str, Any]:
        """The JSON description (module rule 2); `ledger.jsonfmt.view_to_json` reads it."""
        d: dict[str, Any] = {"type": self.kind}
        if self.optional:
            d["optional"] = True
        if self.size is not None:
            d["size"] = self.size
        if self.kind == "record":
            d["fields"] = [{"name": n, **s.describe()} for n, s in self.fields]
        if self.items is not None:
            d["items" if self.kind == "list" else "values"] = self.items.describe()
        if self.doc:
            d["doc"] = self.doc
        return d
