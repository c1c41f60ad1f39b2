"""chain/executor.py rule 5: the committed-state read cache of block execution.

Over a real LevelDB store in a tmp dir. What must hold: every key the cache holds has exactly the
value the store holds (None for absent) — after a read, after a commit that writes the key, and
after a speculative branch that wrote it is pruned; the re-execution of a re-proposed block
(same transactions, another round) reads no state from the store; reads made for other threads
(the `*_uncached` lookups, queries) neither use nor fill it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gmchain.chain.executor import CommittedReadCache
from gmchain.ledger.store import Store
from gmchain.ledger.types import ReceiptStatus
from tests.node_helpers import ChainRig, TestNet, evidence_args, make_net, sign_tx


@pytest.fixture(scope="module")
def net() -> TestNet:
    return make_net(2, replay_window=20)


@pytest.fixture
def rigs(net: TestNet, tmp_path: Path) -> Iterator[tuple[ChainRig, ChainRig]]:
    leader, replica = ChainRig(tmp_path / "leader", net), ChainRig(tmp_path / "replica", net)
    try:
        yield leader, replica
    finally:
        leader.close()
        replica.close()


class _CountingStore:
    """The real store, counting the state reads that reach it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        self.reads += 1
        return self._store.get_state(namespace, key)

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self._store.iter_state(namespace, prefix)

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        return self._store.get_tx_location(tx_id)


def count_state_reads(rig: ChainRig) -> Callable[[], int]:
    """Counts the state reads block execution makes of the store (through the cache)."""
    counting = _CountingStore(rig.store)
    rig.chain.executor.read_cache._committed = counting
    return lambda: counting.reads


def assert_cache_equals_store(rig: ChainRig) -> int:
    cache = rig.chain.executor.read_cache
    held = dict(cache._values)
    for (ns, key), value in held.items():
        assert rig.store.get_state(ns, key) == value, (ns, key)
    return len(held)


def test_reexecuting_a_reproposed_block_reads_no_state_from_the_store(
    net: TestNet, rigs: tuple[ChainRig, ChainRig]
) -> None:
    leader, replica = rigs
    h = leader.chain.head.height
    txs = [
        sign_tx(net.accounts[i % 2], expiry=h + 8, args=evidence_args(f"r{i}")) for i in range(6)
    ]
    leader.admit(*txs)
    genesis = leader.chain.head
    first = leader.build(genesis)
    again = leader.build(genesis)  # the next round's leader proposes the same transactions
    assert first.block_id != again.block_id
    assert [t.tx_id for t in first.txs] == [t.tx_id for t in again.txs] == [t.tx_id for t in txs]
    reads = count_state_reads(replica)
    replica.now_ms = leader.now_ms
    assert replica.chain.validate_block(first, genesis, now_ms=replica.now_ms)
    n_first = reads()
    assert n_first >= 2 * len(txs)  # each submit reads its record and its flow head: all misses
    assert replica.chain.validate_block(again, genesis, now_ms=replica.now_ms)
    assert reads() == n_first  # the second execution was answered from memory
    assert assert_cache_equals_store(replica) >= 2 * len(txs)


def test_the_cache_follows_commits_and_forgets_pruned_branches(
    net: TestNet, rigs: tuple[ChainRig, ChainRig]
) -> None:
    leader, replica = rigs
    h = leader.chain.head.height
    k = net.accounts[0]
    a = sign_tx(k, expiry=h + 8, args=evidence_args("fork-rec", data=b"branch A"))
    b = sign_tx(k, expiry=h + 8, args=evidence_args("fork-rec", data=b"branch B"))
    genesis = leader.chain.head
    leader.admit(a)
    child_a = leader.build(genesis)
    leader.mempool.remove([a.tx_id])
    leader.admit(b)
    child_b = leader.build(genesis)
    replica.now_ms = leader.now_ms
    # the replica executes branch A (it writes fork-rec speculatively), then branch B
    assert replica.chain.validate_block(child_a, genesis, now_ms=replica.now_ms)
    assert assert_cache_equals_store(replica) > 0  # fork-rec is absent in the store: None
    assert replica.chain.validate_block(child_b, genesis, now_ms=replica.now_ms)
    replica.chain.on_pruned([child_a.block_id])
    assert_cache_equals_store(replica)
    # B commits: every key the cache holds that B wrote now has B's value, as in the store
    replica.commit(child_b)
    leader.commit(child_b)
    cache = replica.chain.executor.read_cache
    written = set(replica.chain.store.get_tx_ids(1) or [])
    assert written == {b.tx_id}
    changed = [k for k in cache._values if cache._values[k] is not None]
    assert changed, "B's writes of keys execution had read must be in the cache, as stored"
    assert_cache_equals_store(replica)
    # A's transaction re-proposed on top of B now fails (fork-rec exists), read from the cache
    leader.admit(a)
    grand = leader.build(child_b.header)
    assert [t.tx_id for t in grand.txs] == [a.tx_id]
    reads = count_state_reads(replica)
    assert replica.chain.validate_block(grand, child_b.header, now_ms=leader.now_ms)
    assert reads() == 0
    res = replica.chain._results[grand.block_id]
    assert [r.status for r in res.receipts] == [ReceiptStatus.FAILED]
    assert "already exists" in res.receipts[0].error


def test_other_threads_reads_neither_use_nor_fill_the_cache(
    net: TestNet, rigs: tuple[ChainRig, ChainRig]
) -> None:
    leader, _ = rigs
    ex = leader.chain.executor
    before = len(ex.read_cache)
    assert ex.lookup_sender_uncached(net.accounts[0].public_key.to_bytes()) is not None
    assert ex.lookup_org_removal_uncached("org-none") is None
    ex.query("evidence", "get", ["nothing-here"])
    assert len(ex.read_cache) == before


def test_a_full_cache_empties_and_still_answers_from_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", chain_id=b"c")
    try:
        cache = CommittedReadCache(store, max_entries=3)
        for i in range(7):
            assert cache.get_state("ns", bytes([i])) is None
            assert len(cache) <= 3
        assert (cache.hits, cache.misses) == (0, 7)
        assert cache.get_state("ns", bytes([6])) is None
        assert cache.hits == 1
        cache.on_committed_writes({("ns", bytes([6])): b"v", ("ns", b"other"): b"w"})
        assert cache.get_state("ns", bytes([6])) == b"v"
        assert ("ns", b"other") not in cache._values  # only keys execution read are held
    finally:
        store.close()
