"""Tests of ledger.proofs: transaction proof bundles and consistency proofs, JSON round trips."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.merkle import Frontier, compute_root, leaf_hash
from gmchain.ledger.proofs import (
    ConsistencyProof,
    ProofFormatError,
    TxProofBundle,
    compute_consistency_proof,
    compute_tx_proof,
    verify_tx_proof,
)
from gmchain.ledger.types import BlockHeader, Digest, Height, NodeId, QuorumCert, Round

_CHAIN = "test-chain"


def _chain(
    sizes: list[int],
) -> tuple[list[BlockHeader], list[list[bytes]], dict[tuple[int, int], bytes]]:
    """Headers for blocks with `sizes` transactions each, and the accumulator's stored nodes."""
    headers: list[BlockHeader] = []
    blocks: list[list[bytes]] = []
    nodes: dict[tuple[int, int], bytes] = {}
    frontier = Frontier.empty()
    parent = Digest(sm3_hash(b"genesis"))
    qc = QuorumCert(block_id=parent, round=Round(0), height=Height(0))
    for h, n in enumerate(sizes, start=1):
        tx_ids = [sm3_hash(b"tx %d %d" % (h, i)) for i in range(n)]
        frontier, new = frontier.append([leaf_hash(t) for t in tx_ids])
        nodes.update(new)
        header = BlockHeader(
            chain_id=_CHAIN,
            epoch=0,
            height=Height(h),
            round=Round(h),
            parent_id=parent,
            timestamp_ms=1_700_000_000_000 + h,
            proposer=NodeId(bytes(20)),
            tx_root=compute_root(tx_ids),
            tx_count=n,
            receipt_root=compute_root([]),
            acc_root=frontier.root(),
            acc_size=frontier.size,
            state_hash=Digest(bytes(32)),
            next_validators_hash=Digest(bytes(32)),
            justify=qc,
        )
        headers.append(header)
        blocks.append(tx_ids)
        parent = header.block_id
        qc = QuorumCert(block_id=parent, round=Round(h), height=Height(h))
    return headers, blocks, nodes


def _get(nodes: dict[tuple[int, int], bytes]):  # type: ignore[no-untyped-def]
    return lambda level, index: nodes.get((level, index))


SIZES = [3, 0, 1, 7, 4, 16, 5]


def test_every_tx_proves_against_its_own_and_every_later_header() -> None:
    headers, blocks, nodes = _chain(SIZES)
    for b, (header, tx_ids) in enumerate(zip(headers, blocks, strict=True)):
        for i in range(len(tx_ids)):
            for later in headers[b:]:
                bundle = compute_tx_proof(header, tx_ids, i, _get(nodes), later.acc_size)
                assert bundle.acc_root == later.acc_root
                assert verify_tx_proof(bundle)
                again = TxProofBundle.from_json(json.loads(json.dumps(bundle.to_json())))
                assert again == bundle


def test_tampered_bundles_fail() -> None:
    headers, blocks, nodes = _chain(SIZES)
    header, tx_ids = headers[3], blocks[3]
    good = compute_tx_proof(header, tx_ids, 2, _get(nodes))
    assert verify_tx_proof(good)
    other = headers[5]
    flip = Digest(bytes([good.tx_id[0] ^ 1]) + good.tx_id[1:])
    bad = [
        replace(good, tx_id=flip),
        replace(good, tx_id=Digest(tx_ids[3])),
        replace(good, height=Height(good.height + 1)),
        replace(good, index_in_block=3),
        replace(good, index_in_block=99),
        replace(good, block_tx_root=other.tx_root),
        replace(good, block_inclusion_proof=good.block_inclusion_proof[:-1]),
        replace(good, acc_index=good.acc_index + 1),
        replace(good, acc_size=good.acc_size - 1),
        replace(good, acc_root=other.acc_root),
        replace(good, acc_inclusion_proof=good.acc_inclusion_proof[1:]),
        replace(good, header=other.encode()),
        replace(good, header=good.header + b"\x00"),
        replace(good, header=b""),
    ]
    for n, b in enumerate(bad):
        assert not verify_tx_proof(b), n
    # Not detectable inside the bundle: a larger acc_size with the same root and proof can still
    # verify (RFC 9162 proofs do not bind the size). That is why acc_size and acc_root beyond the
    # header's must be taken from a trusted later header, which binds both (ledger.proofs rule 2).


def test_consistency_between_all_headers() -> None:
    headers, _, nodes = _chain(SIZES)
    sizes = [0] + [h.acc_size for h in headers]
    for old in sizes:
        for new in sizes:
            if old > new:
                continue
            p = compute_consistency_proof(_get(nodes), old, new)
            assert p.verify()
            assert ConsistencyProof.from_json(json.loads(json.dumps(p.to_json()))) == p
            if 0 < old < new:
                wrong = replace(p, old_root=headers[0].block_id)
                assert not wrong.verify()


def test_from_json_rejects_malformed_fields() -> None:
    headers, blocks, nodes = _chain([4])
    obj = compute_tx_proof(headers[0], blocks[0], 1, _get(nodes)).to_json()
    rng = random.Random(1)
    cases = {
        "tx_id": ["00" * 32, "0x" + "00" * 31, "0xZZ" + "00" * 31, "0x" + "AA" * 32, 5],
        "height": [-1, "1", True, 2**64, 1.0],
        "block_inclusion_proof": ["0x00", ["0x00"], [5], ["0x" + "00" * 32] * 65],
        "header": [None, "0x0"],
    }
    for key, values in cases.items():
        for v in values:
            broken = dict(obj)
            broken[key] = v
            with pytest.raises(ProofFormatError):
                TxProofBundle.from_json(broken)
    for key in rng.sample(sorted(obj), 4):
        broken = dict(obj)
        del broken[key]
        with pytest.raises(ProofFormatError):
            TxProofBundle.from_json(broken)
    with pytest.raises(ProofFormatError):
        TxProofBundle.from_json([obj])
    with pytest.raises(ProofFormatError):
        ConsistencyProof.from_json({"old_size": 1})


def test_compute_tx_proof_checks_its_inputs() -> None:
    headers, blocks, nodes = _chain([4, 2])
    with pytest.raises(ValueError):
        compute_tx_proof(headers[0], blocks[0][:3], 0, _get(nodes))
    with pytest.raises(ValueError):
        compute_tx_proof(headers[1], blocks[1], 0, _get(nodes), acc_size=headers[0].acc_size)
