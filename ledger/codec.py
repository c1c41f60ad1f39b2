"""Canonical msgpack encoding (docs/protocol.md, "Encoding").

Rules this module keeps:
1. A value is one of: int (-2**63 .. 2**64-1), bytes, str (UTF-8), bool, None, or a list of values.
   No floats, no maps, no extension types — anywhere.
2. Every value has exactly one encoding: msgpack with the smallest width for every int, str,
   bin and array header, `bin` for bytes and `str` for text (msgpack-python's packer with
   `use_bin_type=True`).
3. `decode` accepts only that encoding: it decodes, re-encodes, and rejects the input unless the
   bytes are identical. So non-minimal ints, str-for-bin, floats, maps, ext types and trailing
   bytes are all rejected, and `encode(decode(b)) == b` for every `b` that decodes.
4. Hard limits are applied while decoding (total size, string/bin length, array length, depth), so a
   hostile input cannot make us allocate more than a small multiple of its own size.
5. Depth counts arrays: a scalar nests 0 levels, `[]` and `[1]` one, `[[1]]` two. `max_depth` is
   the deepest nesting accepted. A struct decoder never uses the flat default: it passes the depth
   its own layout can reach (`ledger.struct_codec`, rule 4), so a container accepts every value
   its parts accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = [
    "DEFAULT_LIMITS",
    "INT_MAX",
    "INT_MIN",
    "DecodeError",
    "DepthError",
    "Limits",
    "Value",
    "check_value",
    "decode",
    "encode",
    "encode_checked_fields",
]

# A canonical value. `Any` because mypy cannot express the recursive list type usefully here; the
# rules above are enforced at run time by `_check_value`.
Value = Any

INT_MIN = -(2**63)  # rule 1: the integers a value may hold
INT_MAX = 2**64 - 1


class DecodeError(ValueError):
    """The bytes are not the canonical encoding of a value (the sender's fault)."""


class DepthError(DecodeError):
    """A value nests deeper than the limit (raised by `check_value` and, wrapped, by `decode`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds applied while decoding; each is a hard cap, never a hint."""

    max_size: int = 8 * 1024 * 1024  # whole message, bytes
    max_str: int = 64 * 1024  # one str, bytes of UTF-8
    max_bin: int = 4 * 1024 * 1024  # one bin
    max_array: int = 100_000  # elements of one array
    max_depth: int = 16  # nesting of arrays (rule 5); struct decoders pass their own


DEFAULT_LIMITS = Limits()


def encode(value: Value) -> bytes:
    """Return the one canonical encoding of `value`; raise TypeError/ValueError on a bad value."""
    _check_value(value, 0, DEFAULT_LIMITS.max_depth)
    out = msgpack.packb(value, use_bin_type=True, strict_types=False)
    assert isinstance(out, bytes)
    return out


def check_value(value: Value, max_depth: int = DEFAULT_LIMITS.max_depth) -> None:
    """Raise TypeError/ValueError unless `value` follows rule 1 and nests at most `max_depth`
    arrays (DepthError, a ValueError, names the limit)."""
    _check_value(value, 0, max_depth)


def encode_checked_fields(value: Value) -> bytes:
    """Encode a value whose every part was already checked (a struct whose free-form fields
    passed `check_value` at construction): the same bytes as `encode`, without the walk."""
    out = msgpack.packb(value, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Value:
    """Decode canonical bytes, or raise DecodeError saying what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > limits.max_size:
        raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {limits.max_size}")
    if not data:
        raise DecodeError("empty message")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=0,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing bytes after the value") from exc
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError(f"malformed msgpack: {exc}") from exc
    try:
        _check_value(value, 0, limits.max_depth)
    except DepthError:
        raise
    except (TypeError, ValueError) as exc:
        raise DecodeError(str(exc)) from exc
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("non-canonical encoding")
    return value


def _check_value(value: Value, depth: int, max_depth: int) -> None:
    # Exact-type fast paths first (the common leaves are bytes and str, checked inline in the
    # loop without a call); subclasses (IntEnum, NewType-free subclasses) fall through to
    # isinstance. bool is tested before int: True is not range-checked as 1.
    t = type(value)
    if t is bytes or t is str or t is bool or value is None:
        return
    if t is list or t is tuple:
        if depth >= max_depth:
            raise DepthError(f"arrays nest deeper than {max_depth} levels")
        for item in value:
            ti = type(item)
            if ti is bytes or ti is str or item is None:
                continue
            if ti is int:
                if not INT_MIN <= item <= INT_MAX:
                    raise ValueError(f"integer {item} out of range")
                continue
            _check_value(item, depth + 1, max_depth)
        return
    if t is int:
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"integer {value} out of range")
        return
    if isinstance(value, bool | str | bytes):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"integer {value} out of range")
        return
    if isinstance(value, list | tuple):
        if depth >= max_depth:
            raise DepthError(f"arrays nest deeper than {max_depth} levels")
        for item in value:
            _check_value(item, depth + 1, max_depth)
        return
    if isinstance(value, float):
        raise TypeError("floats are not allowed")
    if isinstance(value, dict):
        raise TypeError("maps are not allowed")
    raise TypeError(f"type {type(value).__name__} is not encodable")
