"""Rule tests of node/mempool.py, driving the Mempool object directly (no sockets).

Rules under test (node/mempool.py rules 1-4; DESIGN.md "Replay protection"; REFERENCES.md
FISCO BCOS #2124 and #4028): every refusal the pool gives (chain/txrules.py R1, R3-R6 through
`precheck`; its own through `add`), an explicit POOL_FULL (never a silent drop), FIFO `take` with
exclusion sets, remove/evict_expired accounting.
"""

from __future__ import annotations

import pytest

from gmchain.chain.txrules import Rejection, TxRejected, TxRules
from gmchain.contracts import default_registry
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import MAX_TX_BYTES, SignedTx
from gmchain.node.mempool import Mempool, MempoolConfig
from tests.node_helpers import CHAIN_ID, sign_tx

W = 10
HEAD = 5


@pytest.fixture(scope="module")
def keys() -> list[PrivateKey]:
    return [PrivateKey.generate() for _ in range(3)]


def pool(**cfg: int) -> Mempool:
    rules = TxRules.with_new_caches(chain_id=CHAIN_ID, replay_window=W, registry=default_registry())
    return Mempool(config=MempoolConfig(**cfg), rules=rules)


def tx(key: PrivateKey, *, expiry: int = HEAD + 3, **kw: object) -> SignedTx:
    return sign_tx(key, expiry=expiry, **kw)  # type: ignore[arg-type]


def add(p: Mempool, t: SignedTx, size: int | None = None, now: int = 0) -> None:
    p.add(t, size if size is not None else len(t.encode()), HEAD, now)


def code_of(p: Mempool, t: SignedTx, size: int | None = None, head: int = HEAD) -> Rejection:
    """The refusal of `t`, by `add` (the pool's own checks and R5) and by `precheck` alike."""
    before = (len(p), p.size_bytes)
    n = size if size is not None else len(t.encode())
    with pytest.raises(TxRejected) as info:
        p.precheck(t, n, head)
    with pytest.raises(TxRejected) as again:
        p.add(t, n, head, 0)
    assert (len(p), p.size_bytes) == before, "a refused tx changed the pool"
    assert info.value.message and again.value.rejection is info.value.rejection
    return info.value.rejection


def precheck_refusal(p: Mempool, t: SignedTx, size: int | None = None) -> Rejection:
    """The refusal of a rule `add` does not re-check (chain/txrules.py R1, R3, R4, R6)."""
    with pytest.raises(TxRejected) as info:
        p.precheck(t, size if size is not None else len(t.encode()), HEAD)
    assert len(p) == 0 or info.value.message
    return info.value.rejection


def test_admission_refusals(keys: list[PrivateKey]) -> None:
    p = pool()
    k = keys[0]
    assert precheck_refusal(p, tx(k), size=MAX_TX_BYTES + 1) is Rejection.TOO_LARGE
    assert precheck_refusal(p, tx(k, chain_id="other-chain")) is Rejection.WRONG_CHAIN
    assert precheck_refusal(p, tx(k, contract="nope")) is Rejection.UNKNOWN_CONTRACT
    assert precheck_refusal(p, tx(k, method="nope")) is Rejection.UNKNOWN_METHOD
    assert precheck_refusal(p, tx(k, method="get", args=["r"])) is Rejection.QUERY_METHOD
    assert precheck_refusal(p, tx(k, args=["only-one-arg"])) is Rejection.BAD_ARGUMENTS
    assert code_of(p, tx(k, expiry=HEAD)) is Rejection.EXPIRED
    assert code_of(p, tx(k, expiry=HEAD - 3)) is Rejection.EXPIRED
    assert code_of(p, tx(k, expiry=HEAD + W + 1)) is Rejection.EXPIRY_TOO_FAR
    # the window's edges are admitted: head < expiry <= head + W
    edge_lo, edge_hi = tx(k, expiry=HEAD + 1), tx(k, expiry=HEAD + W)
    add(p, edge_lo)
    add(p, edge_hi)
    assert edge_lo.tx_id in p and edge_hi.tx_id in p
    assert code_of(p, edge_lo) is Rejection.DUPLICATE
    # exactly MAX_TX_BYTES is fine
    big_ok = tx(k)
    p.precheck(big_ok, MAX_TX_BYTES, HEAD)
    add(p, big_ok, size=MAX_TX_BYTES)
    assert len(p) == 3


def test_precheck_changes_nothing(keys: list[PrivateKey]) -> None:
    p = pool()
    p.precheck(tx(keys[0]), 100, HEAD)  # passes, admits nothing
    assert len(p) == 0 and p.size_bytes == 0


def test_full_pool_is_an_explicit_error_by_count_and_by_bytes(keys: list[PrivateKey]) -> None:
    p = pool(max_txs=3)
    admitted = [tx(keys[i % 3]) for i in range(3)]
    for t in admitted:
        add(p, t)
    assert code_of(p, tx(keys[0])) is Rejection.POOL_FULL
    # nothing admitted was dropped to make room
    assert all(t.tx_id in p for t in admitted) and len(p) == 3

    q = pool(max_bytes=1000)
    add(q, tx(keys[0]), size=600)
    assert code_of(q, tx(keys[1]), size=401) is Rejection.POOL_FULL
    add(q, tx(keys[1]), size=400)  # exactly full is allowed
    assert q.size_bytes == 1000 and len(q) == 2


def test_sender_quota(keys: list[PrivateKey]) -> None:
    p = pool(per_sender_max=2)
    a, b = keys[0], keys[1]
    add(p, tx(a))
    add(p, tx(a))
    assert code_of(p, tx(a)) is Rejection.SENDER_QUOTA
    add(p, tx(b))  # another sender is not affected
    assert len(p) == 3


def test_take_is_fifo_with_exclusion_sets_and_limits(keys: list[PrivateKey]) -> None:
    p = pool()
    txs = [tx(keys[i % 3]) for i in range(8)]
    for i, t in enumerate(txs):
        add(p, t, size=100, now=i)
    assert [t.tx_id for t in p.take(100, 10**9, [])] == [t.tx_id for t in txs]
    assert p.oldest_arrival_ms() == 0
    excl = [frozenset({txs[0].tx_id, txs[3].tx_id}), frozenset({txs[5].tx_id})]
    got = p.take(100, 10**9, excl)
    assert [t.tx_id for t in got] == [txs[i].tx_id for i in (1, 2, 4, 6, 7)]
    assert [t.tx_id for t in p.take(3, 10**9, excl)] == [txs[i].tx_id for i in (1, 2, 4)]
    assert [t.tx_id for t in p.take(100, 250, [])] == [txs[0].tx_id, txs[1].tx_id]
    # take does not remove
    assert len(p) == 8
    # one tx larger than max_bytes is still returned alone (a block is never stuck)
    assert len(p.take(100, 50, [])) == 1


def test_remove_and_evict_expired_keep_bytes_and_per_sender_counts(keys: list[PrivateKey]) -> None:
    p = pool(per_sender_max=2)
    a, b = keys[0], keys[1]
    a1, a2 = tx(a, expiry=HEAD + 1), tx(a, expiry=HEAD + 5)
    b1 = tx(b, expiry=HEAD + 2)
    for t, size in ((a1, 100), (a2, 200), (b1, 400)):
        add(p, t, size=size)
    assert p.size_bytes == 700
    assert p.remove([a1.tx_id, a1.tx_id, b"\x00" * 32]) == 1  # unknown/repeat ids are ignored
    assert p.size_bytes == 600 and len(p) == 2
    a3 = tx(a)
    add(p, a3, size=50)  # a's quota slot came back
    assert code_of(p, tx(a)) is Rejection.SENDER_QUOTA
    # evict at head HEAD + 2: b1 (expiry HEAD + 2) goes, a2 stays
    assert p.evict_expired(HEAD + 2) == 1
    assert b1.tx_id not in p and a2.tx_id in p
    assert p.size_bytes == 200 + 50
    assert p.drop([a2]) == 1
    rest = p.take(100, 10**9, [])
    assert p.remove(t.tx_id for t in rest) == len(rest)
    assert len(p) == 0 and p.size_bytes == 0 and p.oldest_arrival_ms() is None
    # every per-sender slot was given back: each sender can fill its quota again
    for k in (a, b):
        add(p, tx(k))
        add(p, tx(k))


def test_bytes_accounting_exact(keys: list[PrivateKey]) -> None:
    p = pool()
    txs = [tx(keys[i % 3], expiry=HEAD + 1 + i % 4) for i in range(12)]
    sizes = [50 + 7 * i for i in range(12)]
    for t, s in zip(txs, sizes, strict=True):
        add(p, t, size=s)
    assert p.size_bytes == sum(sizes)
    p.remove([txs[2].tx_id, txs[7].tx_id])
    p.evict_expired(HEAD + 1)  # removes expiry == HEAD + 1: i % 4 == 0
    left = {i for i in range(12) if i not in (2, 7) and i % 4 != 0}
    assert {t.tx_id for t in p.take(100, 10**9, [])} == {txs[i].tx_id for i in left}
    assert p.size_bytes == sum(sizes[i] for i in left)


def test_config_validation() -> None:
    for name in ("max_txs", "max_bytes", "per_sender_max", "dropped_memory"):
        with pytest.raises(ValueError, match=name):
            pool(**{name: 0})
