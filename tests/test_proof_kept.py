"""chain/proofs.py rule 7: what the proof assembler keeps (checked headers, certificates, finished
transaction bundles) changes no answer.

A real certified chain (real Chain commits, SM2-signed QCs, tests/proof_chain.py's method) where
blocks are committed in runs of one to four under one CommitProof, as a Jolteon node commits
several blocks at once: a block inside a run is certified only by the proof stored with the
run's last block, so a caller whose head is inside the run must be refused although a caller
with a higher head was answered (and the answer kept). Two assemblers read the same store, one
keeping and one not; every (transaction, atHeight, head) in a shuffled order gets the same
answer or the same refusal from both.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from gmchain.bench.longchain import open_builder_chain
from gmchain.chain.proofs import ProofAssembler, ProofUnavailable, _Kept
from gmchain.chain.readcheck import check_served_header
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block, NodeId, QuorumCert, Round
from gmchain.node.config import load_config, load_genesis
from gmchain.node.daemon import DEV_PASSPHRASE, init_dev
from gmchain.node.keys_cli import load_key
from tests.proof_chain import _tx, signed_qc

RUNS = [1, 3, 2, 1, 4, 1, 2, 3, 1, 1]  # blocks committed together under one proof


def _build(tmp: Path) -> tuple[Path, Any, list[tuple[int, bytes]], int]:
    data = tmp / "dev"
    cfg = load_config(init_dev(data, rpc_port=1))
    genesis = load_genesis(cfg.genesis_file)
    node_key = load_key(data / "node.key", DEV_PASSPHRASE.encode())
    client_key = load_key(data / "client.key", DEV_PASSPHRASE.encode())
    db = Path(cfg.data_dir)
    store = Store.open(db, chain_id=genesis.chain_id)
    chain, mempool, _ = open_builder_chain(genesis, store, packing=PackingConfig())
    proposer = NodeId(node_key.public_key.address)
    now = genesis.timestamp_ms + 1000
    parent = chain.head
    justify = QuorumCert(block_id=parent.block_id, round=parent.round, height=parent.height)
    run: list[Block] = []
    ids: list[tuple[int, bytes]] = []
    sizes = iter(RUNS)
    size = next(sizes)
    k = 0
    while True:
        k += 1
        now += 10
        tx = _tx(genesis, client_key, expiry=k + 50)
        mempool.add(tx, len(tx.encode()), parent.height, now)
        block = chain.build_block(
            parent=parent, round=Round(k), justify=justify, proposer=proposer, now_ms=now
        )
        qc = signed_qc(genesis, node_key, block)
        if len(run) == size:  # this block's QC commits the run (its last block's child)
            chain.commit(run, CommitProof(header=block.header, qc=qc))
            ids += [(b.header.height, t.tx_id) for b in run for t in b.txs]
            run = []
            size = next(sizes, 0)
            if not size:
                break
        run.append(block)
        parent, justify = block.header, qc
    head = chain.head.height
    store.close()
    return db, genesis, ids, head


def _outcome(asm: ProofAssembler, tx_id: bytes, at: int | None, head: int) -> Any:
    try:
        return asm.tx_proof(tx_id, at, head)
    except ProofUnavailable as exc:
        return (type(exc).__name__, str(exc))


def test_kept_proofs_answer_as_fresh_ones_under_every_head(tmp_path: Path) -> None:
    db, genesis, ids, head = _build(tmp_path)
    assert head == sum(RUNS) and len(ids) == head
    store = Store.open(db, chain_id=genesis.chain_id)
    try:
        kw: dict[str, Any] = {
            "store": store,
            "validators": genesis.validators,
            "max_span": 64,
            "check_header": check_served_header,
        }
        kept = ProofAssembler(**kw)
        fresh = ProofAssembler(**kw, keep=False)
        asks = [
            (tx_id, at, h)
            for height, tx_id in ids
            for at in (None, height, min(head, height + 2), head)
            for h in range(height - 1, head + 1)
        ]
        asks *= 2  # each ask again, once something may be kept for it
        random.Random(5).shuffle(asks)
        answers = refusals = 0
        for tx_id, at, h in asks:
            got = _outcome(kept, tx_id, at, h)
            assert got == _outcome(fresh, tx_id, at, h), (tx_id.hex()[:8], at, h)
            answers += isinstance(got, dict)
            refusals += isinstance(got, tuple)
        # Both kinds happened, and the keeping assembler served from what it kept.
        assert answers > 100 and refusals > 100, (answers, refusals)
        assert kept.kept_bundles.hits > 100 and kept.kept_certificates.hits > 100
        assert kept.kept_headers.hits > 0
        assert kept.kept_blocks.hits > 0 and kept.kept_nodes.hits > 0  # rule 8
        assert len(fresh.kept_bundles) == len(fresh.kept_headers) == 0
        assert len(fresh.kept_blocks) == len(fresh.kept_nodes) == 0
    finally:
        store.close()


# --- rule 8: blocks' ids and receipts, accumulator nodes ------------------------------------


class _Reads:
    """The three store reads rule 8 keeps, from dicts, counted."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.ids: dict[int, list[bytes]] = {}
        self.receipts: dict[bytes, bytes] = {}
        self.reads = 0

    def get_acc_node(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return self.nodes.get((level, index))

    def get_tx_ids(self, height: int) -> list[bytes] | None:
        self.reads += 1
        return self.ids.get(height)

    def get_receipt(self, tx_id: bytes) -> bytes | None:
        self.reads += 1
        return self.receipts.get(tx_id)


def _assembler(reads: _Reads) -> ProofAssembler:
    return ProofAssembler(
        store=reads,  # type: ignore[arg-type]
        validators=(),
        max_span=4,
        check_header=lambda *_: None,
    )


def test_a_node_not_stored_yet_is_read_again_once_stored() -> None:
    reads = _Reads()
    asm = _assembler(reads)
    assert asm._acc_node(3, 5) is None  # the subtree is not complete yet
    reads.nodes[(3, 5)] = b"\x01" * 32  # a later commit completes it
    assert asm._acc_node(3, 5) == b"\x01" * 32
    before = reads.reads
    assert asm._acc_node(3, 5) == b"\x01" * 32 and reads.reads == before  # now kept
    # Levels beyond the key's six bits are never kept (they could collide with level 0).
    reads.nodes[(0, 6)] = b"\x02" * 32
    reads.nodes[(64, 5)] = b"\x03" * 32
    assert asm._acc_node(0, 6) == b"\x02" * 32
    assert asm._acc_node(64, 5) == b"\x03" * 32
    assert asm._acc_node(0, 6) == b"\x02" * 32


def test_a_block_with_a_missing_receipt_is_not_kept() -> None:
    reads = _Reads()
    asm = _assembler(reads)
    reads.ids[7] = [b"a" * 32, b"b" * 32]
    reads.receipts[b"a" * 32] = b"ra"
    assert asm._block_ids_and_receipts(7) == ((b"a" * 32, b"b" * 32), (b"ra", b""))
    reads.receipts[b"b" * 32] = b"rb"
    assert asm._block_ids_and_receipts(7)[1] == (b"ra", b"rb")  # read again, not kept broken
    before = reads.reads
    assert asm._block_ids_and_receipts(7)[1] == (b"ra", b"rb") and reads.reads == before
    with pytest.raises(ProofUnavailable):
        asm._block_ids_and_receipts(8)


def test_kept_by_weight_stays_within_its_budget() -> None:
    kept: _Kept[bytes] = _Kept(100, len)
    kept.put("a", b"a" * 60)
    kept.put("b", b"b" * 30)
    assert kept.weight == 90
    kept.put("c", b"c" * 30)  # over: the least recently used goes
    assert kept.get("a") is None and kept.weight == 60
    kept.put("d", b"d" * 101)  # heavier than the whole budget: not kept, nothing evicted
    assert kept.get("d") is None and len(kept) == 2 and kept.weight == 60
    kept.put("b", b"B" * 50)  # replaced: its old weight is given back
    assert kept.get("b") == b"B" * 50 and kept.weight == 80
