"""Unit tests of the flexible packing policy (consensus/packing.py, rules K1-K5)."""

from __future__ import annotations

from random import Random

import pytest

from gmchain.consensus.packing import PackingConfig, PackingPolicy

CFG = PackingConfig(
    min_block_txs=10, max_block_txs=1000, min_wait_ms=5, max_wait_ms=400, target_latency_ms=500
)


def test_k1_never_cuts_an_empty_block_while_idle() -> None:
    p = PackingPolicy(CFG)
    p.observe_queue(pending=0, oldest_pending_ms=None)
    for now in (0, 10**3, 10**6, 10**9):
        assert not p.should_cut(now)


def test_k2_cuts_on_size_or_on_age() -> None:
    p = PackingPolicy(CFG)
    p.observe_queue(pending=p.target_size, oldest_pending_ms=1000)
    assert p.should_cut(1000)  # full
    p.observe_queue(pending=1, oldest_pending_ms=1000)
    assert not p.should_cut(1000 + p.wait_ms - 1)
    assert p.should_cut(1000 + p.wait_ms)  # waited long enough


def test_k3_target_grows_under_queue_depth() -> None:
    p = PackingPolicy(CFG)
    before = p.target_size
    p.observe_queue(pending=5 * before, oldest_pending_ms=0)
    assert p.target_size > before


def test_k3_k4_shrink_when_latency_exceeds_target() -> None:
    p = PackingPolicy(CFG)
    p.observe_queue(pending=10_000, oldest_pending_ms=0)
    big, wait = p.target_size, p.wait_ms
    p.observe_queue(pending=1, oldest_pending_ms=0)  # the backlog is gone
    for _ in range(10):
        p.observe_commit_latency(5 * CFG.target_latency_ms)
    assert p.target_size < big and p.wait_ms < wait


def test_k3_no_shrink_while_a_backlog_waits() -> None:
    """High latency with a backlog (e.g. a crashed leader's timeouts): smaller blocks would only
    starve the chain, so the target holds (drill find: blocks stuck at one tx)."""
    p = PackingPolicy(CFG)
    p.observe_queue(pending=10_000, oldest_pending_ms=0)
    big = p.target_size
    for _ in range(20):
        p.observe_commit_latency(5 * CFG.target_latency_ms)
        p.observe_queue(pending=10_000, oldest_pending_ms=0)
    assert p.target_size >= big


def test_k4_wait_grows_when_latency_is_low() -> None:
    p = PackingPolicy(CFG)
    wait = p.wait_ms
    for _ in range(10):
        p.observe_commit_latency(CFG.target_latency_ms // 10)
    assert p.wait_ms > wait


def test_k5_never_leaves_bounds_under_random_input() -> None:
    rng = Random(7)
    p = PackingPolicy(CFG)
    for _ in range(5000):
        if rng.random() < 0.5:
            p.observe_queue(pending=rng.randint(0, 50_000), oldest_pending_ms=rng.randint(0, 10**6))
        else:
            p.observe_commit_latency(rng.randint(0, 10_000))
        assert CFG.min_block_txs <= p.target_size <= CFG.max_block_txs
        assert CFG.min_wait_ms <= p.wait_ms <= CFG.max_wait_ms


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        PackingConfig(min_block_txs=10, max_block_txs=5).validate()
    with pytest.raises(ValueError):
        PackingConfig(min_wait_ms=10, max_wait_ms=5).validate()
    with pytest.raises(ValueError):
        PackingPolicy(PackingConfig(target_latency_ms=0))


# --- K6: the time budget of a block --------------------------------------------------------------

TIMED = PackingConfig(
    min_block_txs=10,
    max_block_txs=1000,
    min_wait_ms=5,
    max_wait_ms=400,
    target_latency_ms=500,
    block_time_budget_ms=300,
)


def test_k6_a_backlog_never_grows_a_block_past_the_time_budget() -> None:
    # The cluster4 collapse past the knee (session 8's CAICT sweep: 625 tx/s offered, ~250
    # committed): a backlog grew blocks to max_block_txs, whose execution on a loaded node took
    # longer than a round, so rounds ended by timeout and the chain stood still.
    p = PackingPolicy(TIMED)
    for _ in range(20):
        p.observe_execution(txs=400, elapsed_us=400 * 1500)  # 1.5 ms a transaction
        p.observe_queue(pending=100_000, oldest_pending_ms=0)
    assert p.target_size == 300_000 // 1500  # 200 transactions fit 300 ms
    p.observe_queue(pending=100_000, oldest_pending_ms=0)
    assert p.target_size == 200


def test_k6_the_cap_follows_the_measured_cost_both_ways() -> None:
    p = PackingPolicy(TIMED)
    p.observe_queue(pending=100_000, oldest_pending_ms=0)
    for _ in range(20):
        p.observe_execution(txs=500, elapsed_us=500 * 3000)
    slow = p.target_size
    assert slow == 100
    for _ in range(40):
        p.observe_execution(txs=slow, elapsed_us=slow * 300)  # the load went away
        p.observe_queue(pending=100_000, oldest_pending_ms=0)
    assert p.target_size == TIMED.max_block_txs  # 300 ms holds 1,000 at 0.3 ms


def test_k6_small_blocks_and_no_budget_change_nothing() -> None:
    p = PackingPolicy(TIMED)
    before = p.target_size
    p.observe_execution(txs=2, elapsed_us=2 * 50_000)  # per-block overhead, not per-tx cost
    assert p.target_size == before and p.time_cap() == TIMED.max_block_txs
    q = PackingPolicy(CFG)  # block_time_budget_ms = 0: no cap
    for _ in range(20):
        q.observe_execution(txs=500, elapsed_us=500 * 10_000)
        q.observe_queue(pending=100_000, oldest_pending_ms=0)
    assert q.target_size == CFG.max_block_txs


def test_k6_k5_bounds_hold_with_execution_observations() -> None:
    rng = Random(11)
    p = PackingPolicy(TIMED)
    for _ in range(5000):
        x = rng.random()
        if x < 0.33:
            p.observe_queue(pending=rng.randint(0, 50_000), oldest_pending_ms=rng.randint(0, 10**6))
        elif x < 0.66:
            p.observe_commit_latency(rng.randint(0, 10_000))
        else:
            n = rng.randint(0, 2000)
            p.observe_execution(txs=n, elapsed_us=n * rng.randint(1, 100_000))
        assert TIMED.min_block_txs <= p.target_size <= TIMED.max_block_txs
        assert TIMED.min_wait_ms <= p.wait_ms <= TIMED.max_wait_ms
