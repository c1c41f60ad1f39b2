"""Hypothesis strategies for every registered wire struct (tests/test_wire_registry.py enumerates
the registry and fails for a struct missing here; tests/test_types_props.py reuses them).

Each strategy draws only valid values (a struct checks its own fields when built).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gmchain.consensus import messages as M  # noqa: N812
from gmchain.consensus.safety import SafetyData
from gmchain.contracts.evidence_data import SealedData
from gmchain.ledger import types as T  # noqa: N812 (short alias for many uses)
from gmchain.ledger.epoch import PARAMS, EpochConfig
from gmchain.node.network import TxBatch

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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
    epoch=u64,
    block_id=digest,
    round=u64,
    height=u64,
    signatures=st.lists(st.tuples(node_id, sig), max_size=4).map(_ascending),
)
vote = st.builds(
    T.Vote, epoch=u64, block_id=digest, round=u64, height=u64, voter=node_id, signature=sig
)
timeout_vote = st.builds(
    T.TimeoutVote, epoch=u64, round=u64, high_qc=qc, voter=node_id, signature=sig
)
timeout_cert = st.builds(
    T.TimeoutCert,
    epoch=u64,
    round=u64,
    high_qc=qc,
    entries=st.lists(st.tuples(node_id, u64, sig), max_size=4).map(_ascending),
)
header = st.builds(
    T.BlockHeader,
    chain_id=text(1, 64),
    epoch=u64,
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
    next_validators_hash=digest,
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


@st.composite
def epoch_config(draw: st.DrawFn) -> EpochConfig:
    vals = draw(st.lists(genesis_validator, min_size=1, max_size=3, unique_by=lambda v: v.pubkey))
    keys = {v.pubkey for v in vals}
    observers = draw(st.lists(pubkey.filter(lambda k: k not in keys), max_size=2, unique=True))
    names = draw(st.lists(st.sampled_from(sorted(PARAMS)), unique=True, max_size=len(PARAMS)))
    params = [(n, draw(st.integers(PARAMS[n][1], PARAMS[n][2]))) for n in sorted(names)]
    return EpochConfig(
        epoch=draw(u64),
        validators=tuple(sorted(vals, key=lambda v: v.node_id)),
        observers=tuple(sorted(observers)),
        params=tuple(params),
    )


_LEDGER: dict[type, st.SearchStrategy[Any]] = {
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
    EpochConfig: epoch_config(),
}

# --- beyond ledger: consensus messages, safety data, gossip, sealed evidence data -----------------


@st.composite
def block_response(draw: st.DrawFn) -> M.BlockResponse:
    blocks = draw(st.lists(block(), max_size=2))
    bid = blocks[0].block_id if blocks else draw(digest)
    return M.BlockResponse(block_id=bid, blocks=tuple(blocks))


commit_proof = st.builds(M.CommitProof, header=header, qc=qc)
count = st.integers(1, M.MAX_BLOCKS_PER_RESPONSE)

SAMPLES: dict[type, st.SearchStrategy[Any]] = {
    **_LEDGER,
    M.CommitProof: commit_proof,
    M.BlockRequest: st.builds(M.BlockRequest, block_id=digest, count=count),
    M.BlockResponse: block_response(),
    M.SyncRequest: st.builds(M.SyncRequest, from_height=st.integers(1, 2**64 - 1), count=count),
    M.SyncResponse: st.builds(
        M.SyncResponse, items=st.lists(st.tuples(block(), commit_proof), max_size=2).map(tuple)
    ),
    M.SyncInfo: st.builds(
        M.SyncInfo, high_qc=qc, tc=st.none() | timeout_cert, commit_qc=st.none() | qc
    ),
    SafetyData: st.builds(
        SafetyData,
        last_voted_round=u64,
        preferred_round=u64,
        highest_timeout_round=u64,
        last_vote=st.none() | vote,
        last_timeout=st.none() | timeout_vote,
        high_qc=st.none() | qc,
        last_tc=st.none() | timeout_cert,
        last_proposed_round=u64,
    ),
    TxBatch: st.builds(TxBatch, txs=st.lists(signed_tx.map(lambda t: t.encode()), max_size=3)),
    SealedData: st.builds(
        SealedData,
        data_digest=digest,
        nonce=st.binary(min_size=12, max_size=12),
        ciphertext=st.binary(min_size=16, max_size=80),
        owner_wrap=st.binary(min_size=113, max_size=113),
        regulator_wrap=st.none() | st.binary(min_size=113, max_size=113),
    ),
}
