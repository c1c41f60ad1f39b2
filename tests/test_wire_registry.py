"""The wire registry (ledger/wire.py, p2p/names.py) and every struct it registers.

Every module of gmchain is imported first, so the registry holds every struct that exists; the
per-struct tests are parametrized by the registry itself, not by a list written here, and fail for
a struct that has no sample strategy in tests/wire_samples.py. For each struct:
decode(encode(x)) == x and encode(decode(b)) == b, the bytes are the checked canonical encoding of
its fields, and mutated bytes or fields (flipped bit, truncation, trailing byte, a wider int,
another struct's tag, a field of another shape) are rejected with DecodeError or decode to a value
whose encoding is exactly those bytes.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import itertools
import pkgutil
import struct
from types import ModuleType
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gmchain
from gmchain.ledger import wire
from gmchain.ledger.codec import DecodeError, encode
from gmchain.ledger.struct_codec import Struct, wire_struct
from gmchain.ledger.types import Event, Vote
from gmchain.ledger.wire import (
    HASH_PREFIXES,
    SIGNING_DOMAINS,
    Tag,
    WireCollision,
    registered_structs,
    struct_for_tag,
)
from gmchain.p2p.names import FrameTag, P2PDomain
from tests.wire_samples import SAMPLES, SETTINGS


def _import_every_module() -> list[ModuleType]:
    mods = []
    for info in pkgutil.walk_packages(gmchain.__path__, "gmchain."):
        if info.name.rsplit(".", 1)[-1] == "__main__" or ".testdata" in info.name:
            continue  # a __main__ runs its program when imported
        mods.append(importlib.import_module(info.name))
    return mods


MODULES = _import_every_module()
STRUCTS = registered_structs()


# --- the registry ----------------------------------------------------------------------------


def test_every_tag_names_exactly_one_loaded_struct() -> None:
    assert sorted(c.TAG for c in STRUCTS) == sorted(Tag)
    for tag in Tag:
        cls = struct_for_tag(tag)
        assert cls is not None and cls.TAG is tag
    assert struct_for_tag(0) is None and struct_for_tag(39) is None


def test_every_class_carrying_a_tag_is_registered() -> None:
    """A class that declares a TAG anywhere in gmchain is the registered struct of that tag; a
    Struct subclass cannot exist outside the registry either."""
    seen = 0
    for mod in MODULES:
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ != mod.__name__:
                continue
            if "TAG" in vars(cls) or (issubclass(cls, Struct) and cls is not Struct):
                assert struct_for_tag(cls.TAG) is cls, f"{mod.__name__}.{cls.__name__}"
                seen += 1
    assert seen == len(Tag)


def dataclass_frozen(cls: type) -> type:
    return dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)


def test_a_tag_claimed_twice_or_unregistered_fails_when_the_class_is_defined() -> None:
    with pytest.raises(WireCollision, match="tag 7 claimed by"):

        @wire_struct
        @dataclass_frozen
        class Impostor(Struct):
            TAG: ClassVar[Tag] = Tag.VOTE
            x: int

    with pytest.raises(WireCollision, match=r"member of ledger\.wire\.Tag"):

        @wire_struct
        @dataclass_frozen
        class Unlisted(Struct):
            TAG: ClassVar[int] = 99
            x: int

    assert struct_for_tag(Tag.VOTE) is Vote


def test_tags_have_no_aliases() -> None:
    # enum.unique makes an alias an import error; this states the property for both namespaces.
    assert len(Tag.__members__) == len(set(Tag))
    assert len(FrameTag.__members__) == len(set(FrameTag))


@pytest.mark.parametrize(
    ("signing", "prefixes", "message"),
    [
        ([("a", b"X/A"), ("a", b"X/B")], [], "registered twice"),
        ([("a", b"X/A")], [("a", b"X/B")], "registered twice"),
        ([("a", b"X/A"), ("b", b"X/A")], [], "prefixes the other"),
        ([("a", b"X/A")], [("b", b"X/A/v2")], "prefixes the other"),
        ([("a", b"X/A\x00")], [], "NUL"),
    ],
)
def test_a_domain_collision_fails(
    signing: list[tuple[str, bytes]], prefixes: list[tuple[str, bytes]], message: str
) -> None:
    with pytest.raises(WireCollision, match=message):
        wire._domain_tables(signing, prefixes)


def test_every_domain_of_every_namespace_is_distinct_nul_free_and_prefix_free() -> None:
    """The node key signs votes (ledger domains) and handshake digests (p2p domains): no hash
    input of one kind may be read as one of another kind."""
    domains = [*SIGNING_DOMAINS.values(), *HASH_PREFIXES.values(), *(d.value for d in P2PDomain)]
    assert len(domains) == len(set(domains)) == 23  # snapshot-content, rpc-login, site-descriptor
    for d in domains:
        assert b"\x00" not in d
    for a, b in itertools.permutations(domains, 2):
        assert not a.startswith(b), (a, b)
    assert not set(SIGNING_DOMAINS) & set(HASH_PREFIXES)
    with pytest.raises(KeyError):
        wire.compute_signing_root("validator-set", [])  # a hash prefix is not a signing domain


# --- every struct -------------------------------------------------------------------------------


def _check_mutant(cls: Any, data: bytes) -> None:
    """The mutant is rejected, or is the canonical encoding of a different value."""
    try:
        value = cls.decode(data)
    except DecodeError:
        return
    assert value.encode() == data


def _widen_first_int(data: bytes) -> bytes | None:
    """Re-encode the first positive fixint (the type tag) as uint64: same value, wider."""
    if data and 0x90 <= data[0] <= 0x9F and len(data) > 1 and data[1] <= 0x7F:
        return data[:1] + b"\xcf" + struct.pack(">Q", data[1]) + data[2:]
    if data and data[0] == 0xDC and len(data) > 3 and data[3] <= 0x7F:
        return data[:3] + b"\xcf" + struct.pack(">Q", data[3]) + data[4:]
    return None


_SHAPES: list[Any] = [None, 0, True, "ab", b"", b"x" * 32, [], ["ab"], [[]], [b"x" * 20, b"y"]]


def _check_other_shapes(cls: Any, fields: list[Any]) -> None:
    """Each field, and the first item of each list field, replaced by a value of another shape:
    rejected, or decoded to a value that encodes to exactly those bytes (never normalised)."""
    for i in range(1, len(fields)):
        for shape in _SHAPES:
            _check_mutant(cls, encode([*fields[:i], shape, *fields[i + 1 :]]))
            if isinstance(fields[i], list) and fields[i]:
                inner = [shape, *fields[i][1:]]
                _check_mutant(cls, encode([*fields[:i], inner, *fields[i + 1 :]]))


@pytest.mark.parametrize("cls", STRUCTS, ids=lambda c: c.__name__)
def test_round_trip_canonical_and_mutations(cls: Any) -> None:
    assert cls in SAMPLES, f"{cls.__name__} is registered but tests/wire_samples.py has no sample"

    @SETTINGS
    @given(x=SAMPLES[cls], data=st.data())
    def run(x: Any, data: st.DataObject) -> None:
        b = x.encode()
        assert b == encode(x.to_fields())  # the checked canonical encoding of its fields
        y = cls.decode(b)
        assert y == x
        assert y.encode() == b
        # Mutated bytes.
        i = data.draw(st.integers(0, len(b) - 1))
        bit = data.draw(st.integers(0, 7))
        _check_mutant(cls, b[:i] + bytes([b[i] ^ (1 << bit)]) + b[i + 1 :])
        _check_mutant(cls, b[:i])
        _check_mutant(cls, b + bytes([data.draw(st.integers(0, 255))]))
        with pytest.raises(DecodeError):
            cls.decode(b + b"\xc0")  # trailing bytes
        wide = _widen_first_int(b)
        assert wide is not None
        with pytest.raises(DecodeError):
            cls.decode(wide)  # a non-shortest int
        # Mutated fields: another struct's tag, a bool tag, one field more or less, other shapes.
        fields = x.to_fields()
        for other in STRUCTS:
            if other is not cls:
                with pytest.raises(DecodeError):
                    cls.decode(encode([other.TAG, *fields[1:]]))
        with pytest.raises(DecodeError):
            cls.decode(encode([True, *fields[1:]]) if cls.TAG == 1 else encode(fields[:-1]))
        with pytest.raises(DecodeError):
            cls.decode(encode([*fields, None]))
        _check_other_shapes(cls, fields)

    run()


def test_an_event_refuses_a_field_that_is_not_a_pair() -> None:
    """Regression: a string in place of a [name, value] pair was split into characters (`"ab"`
    became ("a", "b")), so decoding accepted bytes that re-encode differently."""
    with pytest.raises(DecodeError, match="expected pairs"):
        Event.decode(encode([3, "contract", "name", ["ab"]]))
