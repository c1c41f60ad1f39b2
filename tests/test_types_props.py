"""Property tests (hypothesis) of ledger structs beyond their encoding, and of the canonical codec.

Every struct's round trip and mutations are in tests/test_wire_registry.py (it enumerates the
wire registry); the strategies are in tests/wire_samples.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import given

from gmchain.ledger import types as T  # noqa: N812 (short alias for many uses)
from gmchain.ledger.codec import DecodeError, Limits, decode, encode
from gmchain.ledger.struct_codec import Struct
from tests.wire_samples import SETTINGS as _SETTINGS
from tests.wire_samples import header, signed_tx, values


def test_replace_recomputes_cached_ids() -> None:
    @_SETTINGS
    @given(h=header, tx=signed_tx)
    def run(h: T.BlockHeader, tx: T.SignedTx) -> None:
        h2 = dataclasses.replace(h, height=T.Height((h.height + 1) % 2**64))
        assert h2.block_id == T.BlockHeader.decode(h2.encode()).block_id != h.block_id
        tx2 = dataclasses.replace(tx, body=dataclasses.replace(tx.body, nonce=tx.body.nonce ^ 1))
        assert tx2.tx_id == tx2.body.compute_id() != tx.tx_id

    run()


def test_header_keeps_its_encoding_and_id_once_computed() -> None:
    """ledger/block.py rule 1: a decoded header keeps the bytes it came from as its encoding and
    hashes them for its id; a header built or replaced computes both from its fields."""

    @_SETTINGS
    @given(h=header)
    def run(h: T.BlockHeader) -> None:
        raw = h.encode()
        assert raw == Struct.encode(h) and h.encode() is raw  # computed once, then kept
        again = T.BlockHeader.decode(memoryview(raw))
        assert again.encode() == raw and type(again.encode()) is bytes
        assert again.block_id == h.block_id == T.compute_signing_root("header", h.to_fields())
        assert h.block_id != T.compute_signing_root("tx", h.to_fields())
        moved = dataclasses.replace(again, round=T.Round((again.round + 1) % 2**64))
        assert moved.encode() == Struct.encode(moved) != raw  # nothing stale carried over
        assert moved.block_id == T.compute_signing_root("header", moved.to_fields())
        assert moved.block_id != again.block_id

    run()


def test_signed_tx_id_is_computed_and_domain_separated() -> None:
    @_SETTINGS
    @given(tx=signed_tx)
    def run(tx: T.SignedTx) -> None:
        again = T.SignedTx.decode(tx.encode())
        assert again.tx_id == tx.body.compute_id()
        assert tx.tx_id == T.compute_signing_root("tx", tx.body.to_fields())
        assert tx.tx_id != T.compute_signing_root("header", tx.body.to_fields())

    run()


# --- codec --------------------------------------------------------------------------------------


@_SETTINGS
@given(v=values)
def test_codec_round_trip(v: Any) -> None:
    b = encode(v)
    assert decode(b) == (list(v) if isinstance(v, tuple) else v)
    assert encode(decode(b)) == b


@pytest.mark.parametrize(
    "raw",
    [
        msgpack.packb(1.5),
        msgpack.packb([1, 2.0]),
        msgpack.packb({"a": 1}),
        msgpack.packb([{}]),
        msgpack.packb(msgpack.ExtType(1, b"x")),
        b"\xa2\xff\xfe",  # fixstr with invalid UTF-8
        b"\xd9\x01a",  # str8 for a 1-byte string (non-minimal)
        b"\xcc\x05",  # uint8 for 5
        b"\xd0\x05",  # int8 for 5
        b"\xcd\x00\x10",  # uint16 for 16
        b"\xdc\x00\x01\x01",  # array16 of one item
        b"\xa1a",  # str where our model would have used bin... decodes as str: see below
        b"",
        b"\x01\x02",  # trailing byte
        b"\xc1",  # never-used byte
        b"\x92\x01",  # truncated array
    ],
)
def test_codec_rejects(raw: bytes) -> None:
    if raw == b"\xa1a":
        assert decode(raw) == "a"  # a valid str; struct decoders reject it where bytes belong
        with pytest.raises(DecodeError):
            T.Vote.decode(encode([7, "a" * 32, 1, 1, b"x" * 20, b"s" * 64]))
        return
    with pytest.raises(DecodeError):
        decode(raw)


def test_codec_limits() -> None:
    lim = Limits(max_size=100, max_str=5, max_bin=5, max_array=3, max_depth=3)
    with pytest.raises(DecodeError):
        decode(encode(b"x" * 101), lim)
    with pytest.raises(DecodeError):
        decode(encode("x" * 6), lim)
    with pytest.raises(DecodeError):
        decode(encode(b"x" * 6), lim)
    with pytest.raises(DecodeError):
        decode(encode([1, 2, 3, 4]), lim)
    with pytest.raises(DecodeError):
        decode(encode([[[[1]]]]), lim)
    assert decode(encode([[[1]]]), lim) == [[[1]]]
    deep: Any = 1
    for _ in range(17):
        deep = [deep]
    with pytest.raises(ValueError):
        encode(deep)
    with pytest.raises(DecodeError):
        decode(msgpack.packb(deep))
    with pytest.raises(DecodeError):
        decode(b"\x91" * 100_000 + b"\x01")  # very deep nesting must not crash the decoder
    with pytest.raises(DecodeError):
        decode(b"\xdd\xff\xff\xff\xff")  # array32 claiming 4G items
    with pytest.raises(DecodeError):
        decode(b"\xc6\xff\xff\xff\xff")  # bin32 claiming 4 GiB


def test_encode_rejects_bad_values() -> None:
    for bad in (1.0, {"a": 1}, 2**64, -(2**63) - 1, object(), {1, 2}):
        with pytest.raises((TypeError, ValueError)):
            encode(bad)


def test_signed_tx_size_limit() -> None:
    body = T.TxBody(
        chain_id="c",
        sender=b"\x04" * 65,
        nonce=0,
        expiry=T.Height(1),
        contract="c",
        method="m",
        args=(b"x" * (T.MAX_TX_BYTES),),
    )
    tx = T.SignedTx(body=body, signature=b"s" * 64)
    with pytest.raises(DecodeError):
        T.SignedTx.decode_tx(tx.encode())
