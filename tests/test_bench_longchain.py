"""The query bench's long chain (bench/longchain.py) is a real chain a node serves as its own,
and bench/querycost.py measures a fixed number of queries on it (issue 15 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmchain.bench.longchain import build_long_chain
from gmchain.bench.nodes import launch_single, rpc
from gmchain.bench.querycost import build_template, measure
from gmchain.bench.workload import admit_keys, make_keys
from gmchain.ledger.store import Store
from gmchain.ledger.types import Block, SignedTx
from gmchain.node.config import load_genesis
from gmchain.node.daemon import DEV_ORG, DEV_PASSPHRASE, init_dev
from gmchain.node.keys_cli import load_key
from gmchain.node.sdk import verify_proof_bundle
from tests.node_helpers import free_port


def test_built_blocks_are_certified_and_hold_the_bench_transactions(tmp_path: Path) -> None:
    init_dev(tmp_path, rpc_port=1, p2p_port=2)
    keys = make_keys(3)
    genesis = admit_keys(tmp_path / "genesis.json", keys, DEV_ORG)
    validator = load_key(tmp_path / "node.key", DEV_PASSPHRASE.encode())
    built = build_long_chain(
        tmp_path / "db", genesis, validator, keys, blocks=12, txs_per_block=3, progress=False
    )
    assert (built.head, built.txs, len(built.tx_ids)) == (12, 36, 36)
    store = Store.open(tmp_path / "db", chain_id=genesis.chain_id)
    try:
        for h in range(1, 13):
            raw = store.get_block_by_height(h)
            assert raw is not None
            block = Block.decode(raw)
            assert len(block.txs) == 3 and all(isinstance(t, SignedTx) for t in block.txs)
            assert block.header.timestamp_ms > 0
        assert store.get_commit_proof(12) is not None  # the head is certified
    finally:
        store.close()
    with pytest.raises(ValueError, match="fresh store"):  # never extends a chain
        build_long_chain(tmp_path / "db", genesis, validator, keys, blocks=1, txs_per_block=1)


def test_a_node_serves_the_built_chain_and_its_proofs_verify(tmp_path: Path) -> None:
    template = tmp_path / "template"
    meta = build_template(template, blocks=20, txs_per_block=2, n_keys=4)
    assert build_template(template, blocks=20, txs_per_block=2) == meta  # reused, not rebuilt
    with pytest.raises(SystemExit, match="20 blocks"):
        build_template(template, blocks=21, txs_per_block=2)
    port = free_port()
    from shutil import copytree

    from gmchain.bench.querycost import _set_ports

    node_dir = tmp_path / "node"
    copytree(template, node_dir)
    _set_ports(node_dir, free_port())
    system = launch_single(node_dir, port, meta["chain_id"])
    try:
        assert int(rpc(port, "gm_blockNumber")) >= 20
        tx_id = meta["tx_ids"][0]
        got = rpc(port, "gm_getTransactionByHash", [tx_id])
        assert got["txId"] == tx_id and 1 <= got["blockNumber"] <= 20
        bundle = rpc(port, "gm_getTransactionProof", [tx_id, None])
        genesis = load_genesis(node_dir / "genesis.json")
        assert verify_proof_bundle(bundle, genesis=genesis).height == got["blockNumber"]
        pid = system.nodes[0].pid()
        assert pid is not None
        results = measure(
            meta,
            port,
            pid,
            kinds=("block", "tx"),
            count=300,
            warmup=50,
            connections=4,
            profile=None,
        )
    finally:
        system.stop()
    assert [r["kind"] for r in results] == ["block", "tx"]
    for r in results:
        assert r["ok"] == 300 and not r["errors"], r
        assert r["node_cpu_us_per_query"] > 0
