"""The `ChainStore` contract (ledger/store_api.py), run against both implementations: the
LevelDB `ledger.store.Store` and the in-memory `ledger.memstore.MemStore` (the simulator's disk).
And the real chain library over each: the same blocks give the same headers and state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gmchain.chain.core import Chain
from gmchain.chain.txrules import TxRules
from gmchain.consensus.messages import CommitProof
from gmchain.consensus.packing import PackingConfig, PackingPolicy
from gmchain.contracts import default_registry
from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.memstore import MemStore
from gmchain.ledger.store import Store, StoreError
from gmchain.ledger.store_api import BlockWrite, ChainStore
from gmchain.ledger.types import NodeId, QuorumCert, Round, SignedTx
from gmchain.node.chainpool import MempoolPool
from gmchain.node.mempool import Mempool, MempoolConfig
from tests.crash_child import make_block
from tests.node_helpers import TestNet, make_net, sign_tx


def _leaf(data: bytes) -> bytes:
    return sm3_hash(b"\x00" + data)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes (reference only)."""
    n = len(leaves)
    if n == 0:
        return sm3_hash(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return sm3_hash(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _block(h: int, n: int = 2, **kw: object) -> BlockWrite:
    tx_ids = [sm3_hash(b"t%d.%d" % (h, i)) for i in range(n)]
    fields: dict[str, object] = {
        "height": h,
        "block_hash": sm3_hash(b"b%d" % h),
        "header_bytes": b"header %d" % h,
        "block_bytes": b"block %d" % h,
        "tx_ids": tx_ids,
        "receipts": [b"receipt " + t for t in tx_ids],
        "state_writes": {("evidence", b"h%d" % h): b"v%d" % h},
        "acc_leaves": [_leaf(t) for t in tx_ids],
        "acc_nodes": {},
    }
    fields.update(kw)
    return BlockWrite(**fields)  # type: ignore[arg-type]


Opener = Callable[[Path], ChainStore]


def _open_leveldb(path: Path) -> ChainStore:
    return Store.open(path / "db", chain_id=b"contract")


def _open_mem(path: Path) -> ChainStore:
    return MemStore()


@pytest.fixture(params=[_open_leveldb, _open_mem], ids=["leveldb", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChainStore]:
    s = request.param(tmp_path)
    yield s
    if isinstance(s, Store):
        s.close()


def test_empty_store_reads_none(store: ChainStore) -> None:
    assert store.head_height() is None
    for h in (0, 1, -1):
        assert store.get_block_by_height(h) is None
        assert store.get_header_by_height(h) is None
        assert store.get_block_hash(h) is None
        assert store.get_commit_proof(h) is None
    assert store.get_tx_location(b"\x00" * 32) is None
    assert store.get_receipt(b"\x00" * 32) is None
    assert store.get_state("evidence", b"k") is None
    assert list(store.iter_state("evidence")) == []
    assert store.get_acc_node(0, 0) is None and store.get_acc_node(1, 0) is None
    assert store.get_meta("x") is None


def test_round_trip(store: ChainStore) -> None:
    blocks = [make_block(5, h) for h in range(12)]
    for w in blocks:
        store.commit_block(w)
    store.put_meta("pending", b"p1", sync=False)
    store.put_meta("safety", b"round=7")
    assert store.head_height() == 11
    assert store.get_meta("pending") == b"p1" and store.get_meta("safety") == b"round=7"
    state: dict[tuple[str, bytes], bytes] = {}
    for w in blocks:
        h = w.height
        assert store.get_block_by_height(h) == w.block_bytes
        assert store.get_header_by_height(h) == w.header_bytes
        assert store.get_block_hash(h) == w.block_hash
        assert store.get_commit_proof(h) == (w.commit_proof or None)
        for i, tx_id in enumerate(w.tx_ids):
            assert store.get_tx_location(tx_id) == (h, i)
            assert store.get_receipt(tx_id) == w.receipts[i]
        for key, value in w.state_writes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    for (ns, key), value in state.items():
        assert store.get_state(ns, key) == value
    for ns in {ns for ns, _ in state}:
        want = sorted((k, v) for (n, k), v in state.items() if n == ns)
        assert list(store.iter_state(ns)) == want
        assert list(store.iter_state(ns, b"k1")) == [(k, v) for k, v in want if k[:2] == b"k1"]
    assert store.get_block_by_height(12) is None


@pytest.mark.parametrize("bad", [0, 2, -1, True])
def test_wrong_height_refused_and_nothing_written(store: ChainStore, bad: int) -> None:
    store.commit_block(_block(0))
    with pytest.raises(StoreError, match="next height is 1"):
        store.commit_block(_block(7, height=bad))
    assert store.head_height() == 0
    assert store.get_state("evidence", b"h7") is None
    store.commit_block(_block(1))
    assert store.head_height() == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"block_hash": b"short"}, "32 bytes"),
        ({"receipts": [b"only one"]}, "receipts"),
        ({"tx_ids": [b"\x01" * 32, b"\x01" * 32]}, "repeats a tx id"),
        ({"state_writes": {("ns", "k"): b"v"}}, "key: bytes"),
        ({"acc_nodes": {(1, 0): b"\x00" * 32}}, "differs"),
    ],
)
def test_malformed_block_refused(store: ChainStore, change: dict[str, object], match: str) -> None:
    with pytest.raises(StoreError, match=match):
        store.commit_block(_block(0, **change))
    assert store.head_height() is None and store.get_block_by_height(0) is None
    assert store.get_acc_node(0, 0) is None


def test_duplicates_across_blocks_refused(store: ChainStore) -> None:
    w0 = _block(0)
    store.commit_block(w0)
    with pytest.raises(StoreError, match="already stored"):
        store.commit_block(_block(1, tx_ids=[w0.tx_ids[0], sm3_hash(b"x")]))
    with pytest.raises(StoreError, match="already stored"):
        store.commit_block(_block(1, block_hash=w0.block_hash))
    assert store.head_height() == 0
    assert store.get_tx_location(sm3_hash(b"x")) is None


def test_epoch_records_are_numbered_without_gaps_and_written_with_their_block(
    store: ChainStore,
) -> None:
    """store_api rule 5: the record of epoch n comes with a block, all or nothing, n = last + 1."""
    store.commit_block(_block(0, 0))
    assert store.last_epoch() == 0 and store.get_epoch_record(1) is None
    with pytest.raises(StoreError, match="epoch record 2 refused: the next epoch is 1"):
        store.commit_block(_block(1, epoch_record=(2, b"two")))
    assert store.head_height() == 0 and store.last_epoch() == 0  # the block was refused whole
    with pytest.raises(StoreError, match="epoch_record must be"):
        store.commit_block(_block(1, epoch_record=("1", b"one")))
    store.commit_block(_block(1, epoch_record=(1, b"one")))
    store.commit_block(_block(2))
    with pytest.raises(StoreError, match="epoch record 1 refused: the next epoch is 2"):
        store.commit_block(_block(3, epoch_record=(1, b"again")))
    store.commit_block(_block(3, epoch_record=(2, b"two")))
    assert store.last_epoch() == 2 and store.head_height() == 3
    assert [store.get_epoch_record(n) for n in (0, 1, 2, 3)] == [None, b"one", b"two", None]


def test_deletion_and_iteration_order(store: ChainStore) -> None:
    nums = random.Random(3).sample(range(100_000), 50)
    writes: dict[tuple[str, bytes], bytes | None] = {
        ("acct", n.to_bytes(8, "big")): b"%d" % n for n in nums
    }
    writes[("a", b"bc")] = b"in a"
    writes[("ab", b"c")] = b"in ab"
    store.commit_block(_block(0, state_writes=writes))
    assert [k for k, _ in store.iter_state("acct")] == [n.to_bytes(8, "big") for n in sorted(nums)]
    assert list(store.iter_state("a")) == [(b"bc", b"in a")]
    gone = ("acct", sorted(nums)[0].to_bytes(8, "big"))
    store.commit_block(_block(1, state_writes={gone: None, ("acct", b"\x00"): b"new"}))
    assert store.get_state(*gone) is None
    assert [k for k, _ in store.iter_state("acct")][:2] == [
        b"\x00",
        sorted(nums)[1].to_bytes(8, "big"),
    ]


def test_accumulator_nodes_match_rfc6962(store: ChainStore) -> None:
    rng = random.Random(11)
    leaves: list[bytes] = []
    for h in range(20):
        w = _block(h, n=rng.choice([0, 1, 2, 3, 5, 8]), state_writes={})
        store.commit_block(w)
        leaves += w.acc_leaves
    n = len(leaves)
    for i, leaf in enumerate(leaves):
        assert store.get_acc_node(0, i) == leaf
    for level in range(1, n.bit_length()):
        size = 1 << level
        for i in range(n >> level):
            assert store.get_acc_node(level, i) == _mth(leaves[i * size : (i + 1) * size])
        assert store.get_acc_node(level, n >> level) is None


def _run_chain(store: ChainStore, net: TestNet, txs: list[SignedTx]) -> list[bytes]:
    """Build and commit five blocks with the real chain library; return the header bytes."""
    genesis = net.genesis
    rules = TxRules.with_new_caches(
        chain_id=genesis.chain_id, replay_window=genesis.replay_window, registry=default_registry()
    )
    mempool = Mempool(config=MempoolConfig(), rules=rules)
    chain = Chain(
        genesis=genesis,
        store=store,
        rules=rules,
        pool=MempoolPool(mempool),
        packing=PackingPolicy(PackingConfig(min_block_txs=1, max_block_txs=3)),
    )
    for tx in txs:
        mempool.add(tx, len(tx.encode()), 0, genesis.timestamp_ms)
    proposer = NodeId(bytes(20))
    parent = chain.head
    justify = QuorumCert(block_id=parent.block_id, round=Round(0), height=parent.height)
    for k in range(1, 6):
        block = chain.build_block(
            parent=parent,
            round=Round(k),
            justify=justify,
            proposer=proposer,
            now_ms=genesis.timestamp_ms + 10 * k,
        )
        qc = QuorumCert(block_id=block.block_id, round=Round(k), height=block.header.height)
        chain.commit([block], CommitProof(header=block.header, qc=qc))
        parent, justify = block.header, qc
    assert chain.head.height == 5 and len(mempool) == 0
    return [store.get_header_by_height(h) or b"" for h in range(6)]


def test_the_chain_library_writes_the_same_chain_to_either_store(tmp_path: Path) -> None:
    net = make_net()
    txs = [sign_tx(net.accounts[i % 3], expiry=4 + i) for i in range(7)]
    mem = MemStore()
    on_mem = _run_chain(mem, net, txs)
    with Store.open(tmp_path / "db", chain_id=net.genesis.chain_id) as disk:
        on_disk = _run_chain(disk, net, txs)
        keys = [(ns, k) for ns in ("membership", "evidence") for k, _ in disk.iter_state(ns)]
        assert keys and all(mem.get_state(ns, k) == disk.get_state(ns, k) for ns, k in keys)
        assert all(disk.get_tx_location(t.tx_id) is not None for t in txs)
    assert on_mem == on_disk
    assert all(mem.get_tx_location(t.tx_id) is not None for t in txs)
