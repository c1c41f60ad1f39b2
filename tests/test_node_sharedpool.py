"""node/sharedpool.py: the pool shared by the loop and the consensus thread.

Rules under test: rule 1 (one lock: a packing walk on one thread and inserts on another never
break the pool), rule 2 (an id a commit removed is refused by a later `add`, an evicted one is
not remembered as committed).
"""

from __future__ import annotations

import threading

import pytest

from gmchain.chain.txrules import Rejection, TxRejected, TxRules
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey
from gmchain.node.mempool import MempoolConfig
from gmchain.node.sharedpool import SharedMempool
from tests.node_helpers import CHAIN_ID, sign_tx

HEAD = 10


def _pool() -> SharedMempool:
    return SharedMempool(
        config=MempoolConfig(max_txs=100_000, per_sender_max=100_000),
        rules=TxRules.with_new_caches(
            chain_id=CHAIN_ID, replay_window=50, registry=default_registry()
        ),
    )


def test_a_tx_committed_before_its_add_is_refused_and_an_evicted_one_is_not_remembered() -> None:
    key = PrivateKey.generate()
    pool = _pool()
    committed, evicted = (sign_tx(key, expiry=HEAD + 5, nonce=n) for n in (1, 2))
    # The commit removes the block's ids while the tx is still being admitted (not in the pool).
    assert pool.remove([committed.tx_id]) == 0
    with pytest.raises(TxRejected) as err:
        pool.add(committed, len(committed.encode()), HEAD, 0)
    assert err.value.rejection is Rejection.DUPLICATE and committed.tx_id not in pool
    pool.add(evicted, len(evicted.encode()), HEAD, 0)
    assert pool.evict([evicted.tx_id], Rejection.EXPIRED, "gone") == 1
    pool.add(evicted, len(evicted.encode()), HEAD, 0)  # not refused as "already committed"
    assert evicted.tx_id in pool


def test_a_packing_walk_and_concurrent_inserts_keep_the_pool_whole() -> None:
    keys = [PrivateKey.generate() for _ in range(8)]
    txs = [sign_tx(keys[i % 8], expiry=HEAD + 5, nonce=i) for i in range(200)]
    pool = _pool()
    for t in txs[:100]:
        pool.add(t, 300, HEAD, 0)
    errors: list[BaseException] = []

    def walker() -> None:
        try:
            for _ in range(200):
                seen = [t.tx_id for t, _ in pool.iter_fair()]
                assert len(seen) == len(set(seen))
        except BaseException as exc:  # (reported below: a thread's exception is otherwise lost)
            errors.append(exc)

    thread = threading.Thread(target=walker)
    thread.start()
    for t in txs[100:]:
        pool.add(t, 300, HEAD, 0)
    pool.remove(t.tx_id for t in txs[:50])
    thread.join()
    assert errors == []
    assert len(pool) == 150 and pool.size_bytes == 150 * 300


def test_one_value_reads_do_not_wait_for_the_lock() -> None:
    """Rule 1: `in`, `len` and `size_bytes` answer while another thread holds the lock (the
    consensus thread asks them per transaction and per tick; they must not queue behind a
    pre-empted admission)."""
    key = PrivateKey.generate()
    pool = _pool()
    tx = sign_tx(key, expiry=HEAD + 5, nonce=1)
    pool.add(tx, 300, HEAD, 0)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with pool._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    answers: list[object] = []
    reader = threading.Thread(
        target=lambda: answers.extend([tx.tx_id in pool, len(pool), pool.size_bytes])
    )
    reader.start()
    reader.join(2)
    done = not reader.is_alive()
    release.set()
    thread.join()
    reader.join()
    assert done, "a one-value read waited for the pool's lock"
    assert answers == [True, 1, 300]


def test_precheck_refuses_a_pending_or_committed_id_before_the_other_rules() -> None:
    """Rule 4: a pending id is DUPLICATE before R5 is looked at (its expiry may have passed
    since it was admitted), and an id a commit removed is DUPLICATE before the worker checks."""
    key = PrivateKey.generate()
    pool = _pool()
    pending, committed = (sign_tx(key, expiry=HEAD + 5, nonce=n) for n in (1, 2))
    pool.add(pending, 300, HEAD, 0)
    with pytest.raises(TxRejected) as err:
        pool.precheck(pending, 300, HEAD + 10)  # R5 alone would say EXPIRED
    assert err.value.rejection is Rejection.DUPLICATE
    assert "pending" in err.value.message
    pool.remove([committed.tx_id])
    with pytest.raises(TxRejected) as err:
        pool.precheck(committed, 300, HEAD)
    assert err.value.rejection is Rejection.DUPLICATE
    assert "committed" in err.value.message
    fresh = sign_tx(key, expiry=HEAD + 5, nonce=3)
    pool.precheck(fresh, 300, HEAD)  # (passes)
    with pytest.raises(TxRejected) as err:
        pool.precheck(fresh, 300, HEAD + 10)
    assert err.value.rejection is Rejection.EXPIRED
