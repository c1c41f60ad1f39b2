"""Unit tests of the ledger store (`ledger.store`): round trip, refusals, atomicity, iteration
order, identity, and the accumulator against a naive RFC 6962 reference.

Damaged-database tests live in `tests/test_store_corrupt.py`; the SIGKILL campaign in
`tests/test_store_crash.py`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from gmchain.crypto_sm import sm3_hash
from gmchain.ledger.store import BlockWrite, ChainMismatch, Store, StoreError
from tests.crash_child import make_block


def _leaf(data: bytes) -> bytes:
    return sm3_hash(b"\x00" + data)


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH written from the RFC text, over leaf hashes (reference only)."""
    n = len(leaves)
    if n == 0:
        return sm3_hash(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return sm3_hash(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 inclusion proof verification (reference only)."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0
        if fn % 2 == 1 or fn == sn:
            r = sm3_hash(b"\x01" + p + r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sm3_hash(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def _verify_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2 consistency proof verification (reference only)."""
    if m == n:
        return old == new and not proof
    if m & (m - 1) == 0:
        proof = [old, *proof]
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sm3_hash(b"\x01" + c + fr)
            sr = sm3_hash(b"\x01" + c + sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = sm3_hash(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == old and sr == new and sn == 0


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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "db", chain_id=b"test-chain")
    yield s
    s.close()


def test_empty_store_reads_none(store: Store) -> None:
    assert store.head_height() is None and store.head_hash() is None
    assert store.acc_size() == 0
    assert store.get_block_by_height(0) is None
    assert store.get_acc_root() == sm3_hash(b"")
    store.check_consistency(deep=True)


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db"
    blocks = [make_block(5, h) for h in range(12)]
    with Store.open(path, chain_id=b"c") as s:
        for w in blocks:
            s.commit_block(w)
        s.set_commit_proof(11, b"late proof")
        s.put_meta("safety", b"round=7")
    with Store.open(path, chain_id=b"c", deep_check=True) as s:
        assert s.head_height() == 11 and s.head_hash() == blocks[-1].block_hash
        assert s.get_meta("safety") == b"round=7" and s.get_meta("nope") is None
        assert s.get_commit_proof(11) == b"late proof"
        acc = 0
        state: dict[tuple[str, bytes], bytes] = {}
        for w in blocks:
            h = w.height
            assert s.get_block_by_height(h) == w.block_bytes
            assert s.get_block_by_hash(w.block_hash) == w.block_bytes
            assert s.get_header_by_height(h) == w.header_bytes
            assert s.get_block_hash(h) == w.block_hash
            assert s.get_height_by_hash(w.block_hash) == h
            for i, tx_id in enumerate(w.tx_ids):
                assert s.get_tx_location(tx_id) == (h, i)
                assert s.get_receipt(tx_id) == w.receipts[i]
                assert s.get_acc_leaf(acc + i) == w.acc_leaves[i]
            acc += len(w.tx_ids)
            assert s.get_acc_size_at(h) == acc
            for ik, iv in w.index_writes.items():
                assert s.get_index(ik) == iv
            for key, value in w.state_writes.items():
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
        assert s.acc_size() == acc
        for (ns, key), value in state.items():
            assert s.get_state(ns, key) == value
        assert s.get_block_by_height(12) is None and s.get_block_by_height(-1) is None
        assert s.get_tx_location(b"\x00" * 32) is None


@pytest.mark.parametrize("bad", [0, -1, 2, 5, True])
def test_wrong_height_refused_and_nothing_written(store: Store, bad: int) -> None:
    store.commit_block(_block(0))
    with pytest.raises(StoreError, match="next height is 1"):
        store.commit_block(_block(7, height=bad))
    assert store.head_height() == 0 and store.acc_size() == 2
    assert store.get_block_by_hash(sm3_hash(b"b7")) is None
    store.commit_block(_block(1))
    assert store.head_height() == 1


def test_genesis_must_be_height_zero(store: Store) -> None:
    with pytest.raises(StoreError):
        store.commit_block(_block(1))
    assert store.head_height() is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"block_hash": b"short"}, "32 bytes"),
        ({"receipts": [b"only one"]}, "receipts"),
        ({"acc_leaves": []}, "accumulator leaves"),
        ({"tx_ids": [b"\x01" * 32, b"\x01" * 32]}, "repeats a tx id"),
        ({"state_writes": {("", b"k"): b"v"}}, "namespace"),
        ({"state_writes": {("ns", "k"): b"v"}}, "key: bytes"),
        ({"index_writes": {b"": b"v"}}, "non-empty bytes"),
        ({"block_bytes": "text"}, "must be bytes"),
        ({"acc_nodes": {(1, 0): b"\x00" * 32}}, "differs"),
        ({"acc_nodes": {(2, 0): b"\x00" * 32}}, "not completed"),
    ],
)
def test_malformed_block_refused(store: Store, change: dict[str, object], match: str) -> None:
    with pytest.raises(StoreError, match=match):
        store.commit_block(_block(0, **change))
    assert store.head_height() is None
    assert store.get_block_by_height(0) is None
    store.check_consistency(deep=True)


def test_duplicates_across_blocks_refused(store: Store) -> None:
    store.commit_block(_block(0))
    old_tx = store.get_tx_ids(0)
    assert old_tx is not None
    with pytest.raises(StoreError, match="already stored"):
        store.commit_block(_block(1, tx_ids=[old_tx[0], sm3_hash(b"x")]))
    with pytest.raises(StoreError, match="already stored"):
        store.commit_block(_block(1, block_hash=sm3_hash(b"b0")))
    assert store.head_height() == 0


class _ExplodesOnSecondPass(Mapping[tuple[str, bytes], bytes | None]):
    """A mapping that validates fine but raises while the batch is being built."""

    def __init__(self) -> None:
        self._data = {("evidence", b"a"): b"1", ("evidence", b"b"): b"2"}
        self.passes = 0

    def __getitem__(self, key: tuple[str, bytes]) -> bytes | None:
        return self._data[key]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        self.passes += 1
        if self.passes == 2:
            yield next(iter(self._data))
            raise RuntimeError("boom while building the batch")
        yield from self._data


def test_exception_mid_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Store.open(path) as s:
        s.commit_block(_block(0))
        bomb = _ExplodesOnSecondPass()
        w = _block(1, n=5, state_writes=bomb, commit_proof=b"qc1", index_writes={b"i": b"1"})
        with pytest.raises(RuntimeError, match="boom"):
            s.commit_block(w)
        assert bomb.passes == 2  # the batch really was being built when it blew up
        assert s.head_height() == 0 and s.acc_size() == 2
        assert s.get_block_by_height(1) is None and s.get_commit_proof(1) is None
        assert all(s.get_tx_location(t) is None for t in w.tx_ids)
        assert s.get_state("evidence", b"a") is None and s.get_index(b"i") is None
        assert s.get_acc_leaf(2) is None
    with Store.open(path, deep_check=True) as s:
        assert s.head_height() == 0
        s.commit_block(_block(1, n=5))
        assert s.head_height() == 1 and s.acc_size() == 7


def test_iteration_order_is_numeric_and_namespaces_do_not_alias(store: Store) -> None:
    rng = random.Random(3)
    nums = rng.sample(range(100_000), 200)
    writes: dict[tuple[str, bytes], bytes | None] = {
        ("acct", n.to_bytes(8, "big")): b"%d" % n for n in nums
    }
    writes[("a", b"bc")] = b"in a"
    writes[("ab", b"c")] = b"in ab"
    writes[("acct", b"\xff")] = b"short key sorts by bytes"
    store.commit_block(_block(0, state_writes=writes, index_writes={b"x/2": b"2", b"x/10": b"10"}))
    keys = [k for k, _ in store.iter_state("acct")]
    assert keys[:-1] == [n.to_bytes(8, "big") for n in sorted(nums)] and keys[-1] == b"\xff"
    assert list(store.iter_state("a")) == [(b"bc", b"in a")]
    assert list(store.iter_state("ab")) == [(b"c", b"in ab")]
    assert list(store.iter_state("a", b"c")) == []
    assert list(store.iter_index(b"x/")) == [(b"x/10", b"10"), (b"x/2", b"2")]
    # A deletion in a later block removes the key from iteration.
    gone = ("acct", sorted(nums)[0].to_bytes(8, "big"))
    store.commit_block(_block(1, state_writes={gone: None}))
    assert store.get_state(*gone) is None
    assert next(store.iter_state("acct"))[0] == sorted(nums)[1].to_bytes(8, "big")


def test_heights_past_one_byte_keep_numeric_order(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Store.open(path) as s:
        for h in range(300):
            s.commit_block(_block(h, n=0, state_writes={}))
    with Store.open(path, deep_check=True) as s:  # head detection uses the highest block key
        assert s.head_height() == 299
        assert s.get_block_by_height(256) == b"block 256"


def test_chain_id_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Store.open(path, chain_id="chain-A") as s:
        s.commit_block(_block(0))
        assert s.chain_id == b"chain-A"
    with pytest.raises(ChainMismatch, match="chain-A"):
        Store.open(path, chain_id=b"chain-B")
    Store.open(path, chain_id=b"chain-A").close()
    Store.open(path).close()  # no expectation given: opens


def test_empty_store_adopts_chain_id(tmp_path: Path) -> None:
    path = tmp_path / "db"
    Store.open(path).close()
    with Store.open(path, chain_id=b"late") as s:
        assert s.chain_id == b"late"
    with pytest.raises(ChainMismatch):
        Store.open(path, chain_id=b"other")


def test_second_open_is_refused_clearly(store: Store) -> None:
    with pytest.raises(StoreError, match="another gmchain process"):
        Store.open(store.path)


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no ledger store"):
        Store.open(tmp_path / "nothing", create=False)


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "db")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get_block_by_height(0)
    with pytest.raises(StoreError, match="closed"):
        s.commit_block(_block(0))


def test_commit_proof_only_for_committed_blocks(store: Store) -> None:
    with pytest.raises(StoreError):
        store.set_commit_proof(0, b"qc")
    store.commit_block(_block(0))
    assert store.get_commit_proof(0) is None
    store.set_commit_proof(0, b"qc")
    assert store.get_commit_proof(0) == b"qc"


def test_accumulator_matches_rfc6962_reference(store: Store) -> None:
    rng = random.Random(11)
    leaves: list[bytes] = []
    sizes = [0]
    for h in range(25):
        n = rng.choice([0, 1, 2, 3, 5, 8, 13])
        w = _block(h, n=n, state_writes={})
        store.commit_block(w)
        leaves += w.acc_leaves
        sizes.append(len(leaves))
    assert store.acc_size() == len(leaves)
    for size in sorted({*sizes, 1, 2, 7, 64, len(leaves)}):
        assert store.get_acc_root(size) == _mth(leaves[:size]), size
    n = len(leaves)
    for size in (1, 5, 32, 33, n):
        root = _mth(leaves[:size])
        for index in {0, size // 2, size - 1}:
            path = store.get_acc_inclusion_path(index, size)
            assert _root_from_path(leaves[index], index, size, path) == root
    for m in (1, 2, 3, 16, 31, n - 1):
        proof = store.get_acc_consistency_proof(m, n)
        assert _verify_consistency(m, n, _mth(leaves[:m]), _mth(leaves), proof), m
    # Perfect-subtree nodes are stored for every complete subtree.
    for level in range(1, n.bit_length()):
        size = 1 << level
        for i in range(n >> level):
            assert store.get_acc_node(level, i) == _mth(leaves[i * size : (i + 1) * size])
        assert store.get_acc_node(level, n >> level) is None
    with pytest.raises(StoreError):
        store.get_acc_root(n + 1)


def test_correct_supplied_acc_nodes_are_accepted(store: Store) -> None:
    w0 = _block(0, n=3, state_writes={})
    store.commit_block(w0)
    w1 = _block(1, n=1, state_writes={})
    l0 = w0.acc_leaves
    n1 = sm3_hash(b"\x01" + l0[2] + w1.acc_leaves[0])
    n2 = sm3_hash(b"\x01" + sm3_hash(b"\x01" + l0[0] + l0[1]) + n1)
    supplied = {(0, 3): w1.acc_leaves[0], (1, 1): n1, (2, 0): n2}
    store.commit_block(_block(1, n=1, state_writes={}, acc_nodes=supplied))
    assert store.get_acc_node(2, 0) == n2
    w2 = _block(2, n=1, state_writes={})
    with pytest.raises(StoreError, match="not completed"):
        store.commit_block(_block(2, n=1, state_writes={}, acc_nodes={(0, 3): w2.acc_leaves[0]}))


def test_last_epoch_is_kept_in_memory_and_follows_every_write_and_reopen(tmp_path: Path) -> None:
    """`last_epoch` is answered from memory (issue 15: an iterator seek per proof before): it
    must equal a scan of the records after every commit, after a refused one, and on reopen; and
    a reader on another thread that sees a head sees that head's epoch records (the consensus
    thread commits while the proof workers read)."""
    import dataclasses
    import threading

    def scanned(s: Store) -> int:
        with s.snapshot() as snap:
            keys = [key for key, _ in snap.iter_records(b"E")]  # store_keys.P_EPOCH
        return len(keys)

    path = tmp_path / "db"
    store = Store.open(path, chain_id=b"test-chain")
    ends = {5: 1, 9: 2, 10: 3, 40: 4}  # height -> the epoch record its block carries
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            h = store.head_height()
            seen.append((-1 if h is None else h, store.last_epoch()))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for h in range(60):
            w = make_block(7, h)
            if h in ends:
                w = dataclasses.replace(w, epoch_record=(ends[h], b"record %d" % ends[h]))
            if h == 20:  # refused (a gap in the numbering): nothing changes
                with pytest.raises(StoreError, match="epoch record 9 refused"):
                    store.commit_block(dataclasses.replace(w, epoch_record=(9, b"x")))
            store.commit_block(w)
            assert (
                store.last_epoch()
                == scanned(store)
                == max((e for x, e in ends.items() if x <= h), default=0)
            )
    finally:
        stop.set()
        t.join()
    for h, epoch in seen:  # never behind the head it was read after
        assert epoch >= max((e for x, e in ends.items() if x <= h), default=0), (h, epoch)
    store.close()
    again = Store.open(path, chain_id=b"test-chain")
    assert again.last_epoch() == 4 == scanned(again)
    again.close()
