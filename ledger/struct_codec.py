"""Structs: frozen dataclasses whose canonical codec is derived from their fields.

Rules this module keeps (docs/protocol.md section 2 is the byte-exact statement):
1. A struct is a frozen, slotted, keyword-only dataclass that subclasses `Struct`, with
   `TAG = Tag.X` (ledger.wire), decorated `@wire_struct` above `@dataclass`. It encodes as the
   array `[TAG, field1, field2, ...]` in declared order; a field with `init=False` (a cached id) is
   not encoded.
2. Each field's encoding follows from its type: a struct is its array; `S | None` is nil or S's
   array; `tuple[X, ...]` is an array of X; a fixed `tuple[A, B]` is an array of 2; an IntEnum is
   its int; anything else (int, str, bytes, their NewTypes, a free-form `Value`) is itself.
   A variable-length field declares `field(metadata=max_items(n))`: the decoder refuses a longer
   array before decoding its items, so a hostile peer cannot make us decode more than n of them.
3. Decoding checks the array's length and tag, then builds the struct through its constructor, so
   `__post_init__` checks every field (sizes, ranges, order: the struct's own rules); a ValueError
   or TypeError there becomes DecodeError (the sender's fault).
4. `NESTING` (docs/protocol.md, "Nesting depth") is derived from the same types: 1 for the
   struct's own array plus the deepest field, where a scalar is 0, a struct S is NESTING(S), a list
   or a fixed tuple adds 1, and a free-form value (`Value`, or a field marked `free_form()`) is
   MAX_VALUE_DEPTH. `decode` applies exactly that depth.
5. The derived `to_fields` and `from_fields` are compiled from source once, when the class is
   defined (as `dataclasses` builds `__init__`), so they run as fast as hand-written ones. The
   generated source is kept in the class's `_CODEC_SOURCE` for reading.
A struct whose encoding is more than its fields (contracts/evidence_data.SealedData carries a
version number) keeps a hand-written codec and registers its tag with `wire.register_struct`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import replace
from enum import IntEnum
from functools import cache
from typing import Any, ClassVar, Self, TypeVar

from gmchain.ledger.codec import (
    DEFAULT_LIMITS,
    DecodeError,
    Limits,
    Value,
    decode,
    encode_checked_fields,
)
from gmchain.ledger.scalars import MAX_VALUE_DEPTH
from gmchain.ledger.wire import Tag, register_struct

__all__ = ["Struct", "decode_struct", "free_form", "max_items", "wire_struct"]

_S = TypeVar("_S", bound="Struct")


def max_items(n: int) -> Mapping[str, int]:
    """Field metadata: the longest array a variable-length field decodes from (rule 2)."""
    return {"max_items": n}


def free_form(n: int) -> Mapping[str, int]:
    """Field metadata for a list that is itself one free-form value (a transaction's `args`): at
    most `n` items, nesting at most MAX_VALUE_DEPTH arrays, its own included (rule 4)."""
    return {"max_items": n, "free_form": 1}


@cache
def _limits_with_depth(limits: Limits, depth: int) -> Limits:
    return replace(limits, max_depth=depth)


class Struct:
    """Base of every struct: the canonical encoding of a frozen dataclass with a TAG."""

    TAG: ClassVar[Tag]
    NESTING: ClassVar[int]  # rule 4; set by wire_struct
    _LIMITS: ClassVar[Limits]  # DEFAULT_LIMITS with max_depth = NESTING; set by wire_struct
    _CODEC_SOURCE: ClassVar[str]  # rule 5
    __slots__ = ()

    def to_fields(self) -> list[Value]:
        raise NotImplementedError(f"{type(self).__name__}: decorate the class with @wire_struct")

    @classmethod
    def from_fields(cls, fields: object) -> Self:
        """Build from a decoded array, or raise DecodeError (rule 3)."""
        raise NotImplementedError(f"{cls.__name__}: decorate the class with @wire_struct")

    def encode(self) -> bytes:
        # Every struct checks its fields when built (free-form values with check_value), so the
        # canonical-value walk of ledger.codec.encode is not repeated here.
        return encode_checked_fields(self.to_fields())

    @classmethod
    def decode(cls, data: bytes, limits: Limits | None = None) -> Self:
        """Decode `data` as this struct. The depth limit is always the struct's own NESTING
        (rule 4), whatever `limits` says; its size limits apply as given."""
        lim = cls._LIMITS if limits is None else _limits_with_depth(limits, cls.NESTING)
        return cls.from_fields(decode(data, lim))


def decode_struct(cls: type[Struct], data: bytes) -> Any:
    """Decode bytes as `cls`, raising DecodeError (never anything else) on bad input."""
    return cls.decode(data)


def wire_struct(cls: type[_S]) -> type[_S]:
    """Derive the codec and NESTING of a struct dataclass and register its tag (rules 1-5)."""
    if not (dataclasses.is_dataclass(cls) and issubclass(cls, Struct)):
        raise TypeError(f"{cls.__name__}: @wire_struct goes above @dataclass on a Struct")
    if "NESTING" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: NESTING is derived from the fields; do not declare it")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    gen = _Generator(cls.__name__)
    enc = [gen.enc(f"self.{f.name}", hints[f.name], 0) for f in fields]
    dec = [gen.dec(f"f[{i}]", hints[f.name], f, 0) for i, f in enumerate(fields, start=1)]
    tag, n, name = int(cls.TAG), len(fields) + 1, cls.__name__
    args = ", ".join(f"{fd.name}={d}" for fd, d in zip(fields, dec, strict=True))
    source = (
        f"def to_fields(self):\n"
        f"    return [{', '.join([str(tag), *enc])}]\n"
        f"\n"
        f"def from_fields(cls, f):\n"
        f"    if not isinstance(f, list) or len(f) != {n}:\n"
        f"        raise DecodeError('{name}: expected an array of {n} items')\n"
        f"    if f[0] != {tag} or isinstance(f[0], bool):\n"
        f"        raise DecodeError(f'{name}: wrong type tag {{f[0]!r}}, expected {tag}')\n"
        f"    try:\n"
        f"        return cls({args})\n"
        f"    except (ValueError, TypeError) as exc:\n"
        f"        raise DecodeError(f'{name}: {{exc}}') from exc\n"
    )
    exec(compile(source, f"<wire codec of {cls.__qualname__}>", "exec"), gen.ns)
    nesting = 1 + max((_depth(hints[f.name], f) for f in fields), default=0)
    setattr(cls, "to_fields", gen.ns["to_fields"])  # noqa: B010 (mypy: a method is read-only)
    setattr(cls, "from_fields", classmethod(gen.ns["from_fields"]))  # noqa: B010
    cls.NESTING = nesting
    cls._LIMITS = replace(DEFAULT_LIMITS, max_depth=nesting)
    cls._CODEC_SOURCE = source
    register_struct(cls)  # last: only a complete struct is registered
    return cls


# --- reading field types ----------------------------------------------------------------------


def _struct_of(t: Any) -> type[Struct] | None:
    return t if isinstance(t, type) and issubclass(t, Struct) else None


def _optional_of(t: Any) -> Any:
    """X for `X | None` (or Optional[X]), else None."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(t)) == 2:
            return args[0]
        raise TypeError(f"unsupported union {t!r}: only `X | None` has an encoding")
    return None


def _items_of(t: Any) -> Any:
    """X for `tuple[X, ...]`, else None."""
    args = typing.get_args(t)
    if typing.get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _parts_of(t: Any) -> tuple[Any, ...] | None:
    """(A, B, ...) for a fixed `tuple[A, B, ...]`, else None."""
    args = typing.get_args(t)
    if typing.get_origin(t) is tuple and Ellipsis not in args:
        return args
    return None


def _is_plain(t: Any) -> bool:
    """Encodes as itself (rule 2, last case)."""
    return (
        _struct_of(t) is None
        and _optional_of(t) is None
        and typing.get_origin(t) is not tuple
        and not (isinstance(t, type) and issubclass(t, IntEnum))
    )


def _depth(t: Any, f: dataclasses.Field[Any] | None) -> int:
    """How deep a field of type `t` can nest (rule 4)."""
    if (f is not None and f.metadata.get("free_form")) or t is Any:
        return MAX_VALUE_DEPTH
    s = _struct_of(t)
    if s is not None:
        return s.NESTING
    if (inner := _optional_of(t)) is not None:
        return _depth(inner, None)
    if (item := _items_of(t)) is not None:
        return 1 + _depth(item, None)
    if (parts := _parts_of(t)) is not None:
        return 1 + max(_depth(p, None) for p in parts)
    return 0


class _Generator:
    """Writes the source of one struct's to_fields / from_fields (rule 2 as expressions)."""

    def __init__(self, struct_name: str) -> None:
        self.struct_name = struct_name
        self.ns: dict[str, Any] = {"DecodeError": DecodeError, "_items": _items, "_fixed": _fixed}

    def _ref(self, obj: type) -> str:
        name = f"_{obj.__name__}"
        assert self.ns.get(name, obj) is obj, f"{self.struct_name}: two types named {name}"
        self.ns[name] = obj
        return name

    def enc(self, x: str, t: Any, depth: int) -> str:
        """The expression that turns value `x` of type `t` into its canonical value."""
        if _struct_of(t) is not None:
            return f"{x}.to_fields()"
        if (inner := _optional_of(t)) is not None:
            return f"(None if {x} is None else {self.enc(x, inner, depth)})"
        if (item := _items_of(t)) is not None:
            if _is_plain(item):
                return f"list({x})"
            v = f"_v{depth}"
            return f"[{self.enc(v, item, depth + 1)} for {v} in {x}]"
        if (parts := _parts_of(t)) is not None:
            if all(_is_plain(p) for p in parts):
                return f"list({x})"
            return (
                "[" + ", ".join(self.enc(f"{x}[{i}]", p, depth) for i, p in enumerate(parts)) + "]"
            )
        if isinstance(t, type) and issubclass(t, IntEnum):
            return f"int({x})"
        return x

    def dec(self, x: str, t: Any, f: dataclasses.Field[Any] | None, depth: int) -> str:
        """The expression that turns decoded value `x` into the constructor's argument; the
        constructor then checks it (rule 3)."""
        if (s := _struct_of(t)) is not None:
            return f"{self._ref(s)}.from_fields({x})"
        if (inner := _optional_of(t)) is not None:
            return f"(None if {x} is None else {self.dec(x, inner, None, depth)})"
        if (item := _items_of(t)) is not None:
            limit = None if f is None else f.metadata.get("max_items")
            if limit is None:
                where = f"{self.struct_name}.{f.name}" if f else self.struct_name
                raise TypeError(f"{where}: a list field needs metadata=max_items(n)")
            items = f"_items({x}, {f.name!r}, {limit})"  # type: ignore[union-attr]
            if _is_plain(item):
                return f"tuple({items})"
            v = f"_v{depth}"
            parts = _parts_of(item)
            if parts is not None and all(_is_plain(p) for p in parts):
                # its struct checks each entry's shape (a non-list entry stays as it came)
                return f"tuple(tuple({v}) if type({v}) is list else {v} for {v} in {items})"
            return f"tuple({self.dec(v, item, None, depth + 1)} for {v} in {items})"
        if (parts := _parts_of(t)) is not None:
            if all(_is_plain(p) for p in parts):
                return f"(tuple({x}) if type({x}) is list else {x})"
            p = f"_p{depth}"
            built = ", ".join(
                self.dec(f"{p}[{i}]", a, None, depth + 1) for i, a in enumerate(parts)
            )
            return f"(lambda {p}: ({built},))(_fixed({x}, {len(parts)}))"
        return x


def _items(value: object, name: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{name}: expected a list")
    if len(value) > limit:
        raise ValueError(f"{name}: more than {limit} items")
    return value


def _fixed(value: object, n: int) -> list[Any]:
    if not (isinstance(value, list) and len(value) == n):
        raise ValueError(f"expected an array of {n} items")
    return value
