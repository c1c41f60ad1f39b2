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
