"""tests/ports.py: the port blocks tests hand to the nodes they start.

Regression (session 12's fresh-clone CI): a cluster test probes its block of ports, then binds
them seconds later as its nodes (or a rogue node) start; a test on the other xdist worker probed
the same block meanwhile and took a port first (test_drill_byzantine, "address already in use"
on the rogue's P2P port). Each worker now probes only its own share of the range.
"""

from __future__ import annotations

import random

import pytest

from tests.ports import PORT_RANGE, free_port_block, worker_port_range


def _bases(monkeypatch: pytest.MonkeyPatch, worker: str | None, count: str | None) -> set[int]:
    for name, value in (("PYTEST_XDIST_WORKER", worker), ("PYTEST_XDIST_WORKER_COUNT", count)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    rng = random.Random(7)
    return {free_port_block(4, rng=rng) for _ in range(200)}


def test_two_workers_never_probe_the_same_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    lo, hi = PORT_RANGE
    first = _bases(monkeypatch, "gw0", "2")
    second = _bases(monkeypatch, "gw1", "2")
    blocks0 = {b + i for b in first for i in range(4)}
    blocks1 = {b + i for b in second for i in range(4)}
    assert not blocks0 & blocks1
    assert lo <= min(blocks0) and max(blocks0) < max(blocks1) < hi
    assert max(blocks0) < min(blocks1)


def test_without_xdist_the_whole_range(monkeypatch: pytest.MonkeyPatch) -> None:
    lo, hi = PORT_RANGE
    bases = _bases(monkeypatch, None, None)
    assert worker_port_range() == PORT_RANGE
    assert all(lo <= b and b + 4 <= hi for b in bases)
    assert min(bases) < (lo + hi) // 2 < max(bases)  # both halves are used


def test_shares_are_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    lo, hi = worker_port_range()
    assert PORT_RANGE[0] <= lo < hi <= PORT_RANGE[1] < 32768
