"""Property tests (hypothesis) of every struct in ledger.types and of the canonical codec.

For each struct: decode(encode(x)) == x and encode(decode(b)) == b; mutated bytes (flipped byte,
truncation, appended byte, changed tag, an int re-encoded wider) are either rejected with
DecodeError or decode to a *different* value whose encoding is exactly those bytes.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmchain.ledger import types as T  # noqa: N812 (short alias for many uses)
from gmchain.ledger.codec import DecodeError, Limits, decode, encode

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u64 = st.integers(min_value=0, max_value=2**64 - 1)
small = st.integers(min_value=0, max_value=300)
digest = st.binary(min_size=32, max_size=32)
node_id = st.binary(min_size=20, max_size=20)
pubkey = st.binary(min_size=65, max_size=65)
sig = st.binary(min_size=64, max_size=64)


def text(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.text(min_size=lo, max_size=hi // 4).filter(lambda s: len(s.encode()) <= hi)


# Contract argument / result values: the codec's value model, small.
values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=8,
)

tx_body = st.builds(
    T.TxBody,
    chain_id=text(1, 64),
    sender=pubkey,
    nonce=u64,
    expiry=st.integers(min_value=1, max_value=2**64 - 1),
    contract=text(1, 32),
    method=text(1, 32),
    args=st.lists(values, max_size=4).map(tuple),
)
signed_tx = st.builds(T.SignedTx, body=tx_body, signature=sig)
event = st.builds(
    T.Event,
    contract=text(1, 32),
    name=text(1, 64),
    fields=st.lists(st.tuples(text(1, 64), values), max_size=3).map(tuple),
)
receipt = st.builds(
    T.Receipt,
    tx_id=digest,
    status=st.sampled_from(list(T.ReceiptStatus)),
    result=values,
    events=st.lists(event, max_size=2).map(tuple),
    error=text(0, 512),
)


def _ascending(entries: list[tuple[Any, ...]]) -> tuple[tuple[Any, ...], ...]:
    seen: dict[bytes, tuple[Any, ...]] = {}
    for e in entries:
        seen.setdefault(e[0], e)
    return tuple(seen[k] for k in sorted(seen))


qc = st.builds(
    T.QuorumCert,
    block_id=digest,
    round=u64,
    height=u64,
    signatures=st.lists(st.tuples(node_id, sig), max_size=4).map(_ascending),
)
vote = st.builds(T.Vote, block_id=digest, round=u64, height=u64, voter=node_id, signature=sig)
timeout_vote = st.builds(T.TimeoutVote, round=u64, high_qc=qc, voter=node_id, signature=sig)
timeout_cert = st.builds(
    T.TimeoutCert,
    round=u64,
    high_qc=qc,
    entries=st.lists(st.tuples(node_id, u64, sig), max_size=4).map(_ascending),
)
header = st.builds(
    T.BlockHeader,
    chain_id=text(1, 64),
    height=u64,
    round=u64,
    parent_id=digest,
    timestamp_ms=u64,
    proposer=node_id,
    tx_root=digest,
    tx_count=small,
    receipt_root=digest,
    acc_root=digest,
    acc_size=u64,
    state_hash=digest,
    justify=qc,
)


@st.composite
def block(draw: st.DrawFn) -> T.Block:
    txs = draw(st.lists(signed_tx, max_size=3))
    h = draw(header)
    h = dataclasses.replace(h, tx_count=len(txs))
    return T.Block(header=h, txs=tuple(txs))


proposal = st.builds(T.Proposal, block=block(), tc=st.none() | timeout_cert, signature=sig)
genesis_validator = st.builds(
    T.GenesisValidator, pubkey=pubkey, power=st.integers(1, 2**32), org=text(1, 64)
)


@st.composite
def genesis(draw: st.DrawFn) -> T.Genesis:
    vals = draw(st.lists(genesis_validator, min_size=1, max_size=3, unique_by=lambda v: v.pubkey))
    return T.Genesis(
        chain_id=draw(text(1, 64)),
        timestamp_ms=draw(u64),
        validators=tuple(vals),
        observers=tuple(draw(st.lists(pubkey, max_size=2))),
        replay_window=draw(st.integers(1, 1_000_000)),
        accounts=tuple(draw(st.lists(st.tuples(pubkey, text(1, 64), text(1, 16)), max_size=2))),
    )


STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    T.TxBody: tx_body,
    T.SignedTx: signed_tx,
    T.Event: event,
    T.Receipt: receipt,
    T.QuorumCert: qc,
    T.Vote: vote,
    T.TimeoutVote: timeout_vote,
    T.TimeoutCert: timeout_cert,
    T.BlockHeader: header,
    T.Block: block(),
    T.Proposal: proposal,
    T.GenesisValidator: genesis_validator,
    T.Genesis: genesis(),
}


def test_every_struct_has_a_strategy() -> None:
    structs = {
        getattr(T, n)
        for n in T.__all__
        if isinstance(getattr(T, n), type) and hasattr(getattr(T, n), "TAG")
    }
    assert structs == set(STRATEGIES)
    tags = [c.TAG for c in structs]
    assert len(set(tags)) == len(tags), "type tags must be distinct"


def _check_mutant(cls: type, data: bytes) -> None:
    """The mutant is rejected, or is the canonical encoding of a different value."""
    try:
        value = cls.decode(data)  # type: ignore[attr-defined]
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


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
def test_round_trip_and_mutations(cls: type) -> None:
    @_SETTINGS
    @given(x=STRATEGIES[cls], data=st.data())
    def run(x: Any, data: st.DataObject) -> None:
        b = x.encode()
        y = cls.decode(b)  # type: ignore[attr-defined]
        assert y == x
        assert y.encode() == b
        assert decode(b) == x.to_fields()
        # Mutations.
        i = data.draw(st.integers(0, len(b) - 1))
        bit = data.draw(st.integers(0, 7))
        _check_mutant(cls, b[:i] + bytes([b[i] ^ (1 << bit)]) + b[i + 1 :])
        _check_mutant(cls, b[:i])
        _check_mutant(cls, b + bytes([data.draw(st.integers(0, 255))]))
        with pytest.raises(DecodeError):
            cls.decode(b + b"\xc0")  # type: ignore[attr-defined]
        wide = _widen_first_int(b)
        assert wide is not None
        with pytest.raises(DecodeError):
            cls.decode(wide)  # type: ignore[attr-defined]
        # Another struct's tag in the same position is always a wrong type.
        fields = x.to_fields()
        for other in STRATEGIES:
            if other is not cls:
                with pytest.raises(DecodeError):
                    cls.decode(encode([other.TAG, *fields[1:]]))  # type: ignore[attr-defined]

    run()


def test_replace_recomputes_cached_ids() -> None:
    @_SETTINGS
    @given(h=header, tx=signed_tx)
    def run(h: T.BlockHeader, tx: T.SignedTx) -> None:
        h2 = dataclasses.replace(h, height=T.Height((h.height + 1) % 2**64))
        assert h2.block_id == T.BlockHeader.decode(h2.encode()).block_id != h.block_id
        tx2 = dataclasses.replace(tx, body=dataclasses.replace(tx.body, nonce=tx.body.nonce ^ 1))
        assert tx2.tx_id == tx2.body.compute_id() != tx.tx_id

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


def test_domains_are_prefix_free() -> None:
    ds = list(T.DOMAIN.values())
    assert len(set(ds)) == len(ds)
    for d in ds:
        assert b"\x00" not in d


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
