"""Encoding of consensus messages and SafetyData: decode(encode(x)) == x, encode(decode(b)) == b,
and malformed input raises DecodeError (never anything else)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gmchain.consensus import (
    BlockRequest,
    BlockResponse,
    CommitProof,
    SafetyData,
    SyncInfo,
    SyncRequest,
    SyncResponse,
)
from gmchain.consensus.sim.app import make_genesis_header
from gmchain.ledger.codec import DecodeError, decode, encode
from gmchain.ledger.types import (
    Block,
    Digest,
    Height,
    NodeId,
    QuorumCert,
    Round,
    TimeoutCert,
    TimeoutVote,
    Vote,
)

G = make_genesis_header()
QC = QuorumCert(
    block_id=G.block_id,
    round=Round(3),
    height=Height(1),
    signatures=((NodeId(b"\x01" * 20), b"s" * 64),),
)
TC = TimeoutCert(round=Round(4), high_qc=QC, entries=((NodeId(b"\x02" * 20), 3, b"t" * 64),))
VOTE = Vote(
    block_id=G.block_id,
    round=Round(3),
    height=Height(1),
    voter=NodeId(b"\x01" * 20),
    signature=b"v" * 64,
)
TV = TimeoutVote(round=Round(4), high_qc=QC, voter=NodeId(b"\x03" * 20), signature=b"w" * 64)
BLOCK = Block(header=G, txs=())
PROOF = CommitProof(header=G, qc=QC)

SAMPLES = [
    BlockRequest(block_id=Digest(b"\x07" * 32), count=5),
    BlockResponse(block_id=G.block_id, blocks=(BLOCK,)),
    SyncRequest(from_height=Height(9), count=32),
    SyncResponse(items=((BLOCK, PROOF),)),
    SyncInfo(high_qc=QC, tc=TC),
    SyncInfo(high_qc=QC, tc=None),
    PROOF,
    SafetyData(),
    SafetyData(
        last_voted_round=Round(7),
        preferred_round=Round(5),
        highest_timeout_round=Round(6),
        last_vote=VOTE,
        last_timeout=TV,
        high_qc=QC,
        last_tc=TC,
    ),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_roundtrip(msg: object) -> None:
    data = msg.encode()  # type: ignore[attr-defined]
    back = type(msg).decode(data)  # type: ignore[attr-defined]
    assert back == msg and back.encode() == data


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_safety_data_roundtrip(a: int, b: int, c: int) -> None:
    d = SafetyData(
        last_voted_round=Round(a), preferred_round=Round(b), highest_timeout_round=Round(c)
    )
    assert SafetyData.decode(d.encode()) == d


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_malformed_is_decode_error(msg: object) -> None:
    fields = decode(msg.encode())  # type: ignore[attr-defined]
    cls = type(msg)
    with pytest.raises(DecodeError):
        cls.decode(encode([*fields, 1]))  # type: ignore[attr-defined]
    with pytest.raises(DecodeError):
        cls.decode(encode([99, *fields[1:]]))  # type: ignore[attr-defined]
    with pytest.raises(DecodeError):
        cls.decode(msg.encode() + b"\x00")  # type: ignore[attr-defined]


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        BlockRequest(block_id=Digest(b"\x07" * 32), count=0)
    with pytest.raises(ValueError):
        BlockRequest(block_id=Digest(b"\x07" * 32), count=10_000)
    with pytest.raises(ValueError):
        SyncRequest(from_height=Height(0), count=1)


def test_first_stored_safety_version_loads_and_blocks_its_round() -> None:
    from gmchain.consensus.safety import load_safety_data

    d = SafetyData(last_voted_round=Round(7), preferred_round=Round(6), high_qc=QC, last_tc=TC)
    v1 = encode(d.to_fields()[:8])  # the seven-field layout stored before last_proposed_round
    got = load_safety_data(v1)
    assert got.last_voted_round == 7 and got.high_qc == QC and got.last_tc == TC
    assert got.last_proposed_round == 7 + 1  # one past the highest round it voted in
    assert load_safety_data(d.encode()) == d  # the current layout round-trips unchanged
    with pytest.raises(DecodeError):
        load_safety_data(encode([25, 1, 2]))
