"""Reconfiguration under faults (issue 12; docs/consensus.md "Epochs", "The simulator").

Every run changes the validator set with real governance transactions (consensus/sim/epochs.py:
a spare node joins with its proof of possession, a validator leaves, a power changes, a key
rotates) while the faults run, and must keep every invariant — agreement, validity, no double
vote, commit order, and the epoch ones: every node starts each epoch at the same block with the
same configuration, each epoch's QCs are formed by its own set only, no honest replica sends a
certificate of another epoch but its root — and be live: probes commit, the script finishes and
every honest node reaches the latest epoch. `make sim-long` runs the larger sweeps.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gmchain.chain.core import Chain
from gmchain.consensus.sim import SimConfig, SimResult, run_seed

pytest.importorskip("gmchain.contracts.governance", reason="governance (issue 12, gov) not merged")
if not hasattr(Chain, "take_epoch_switch"):
    pytest.skip("chain/epochs.py (issue 12, chainep) not merged", allow_module_level=True)

EPOCHS = {"reconfig": 3, "spares": 2}

# (nodes, byzantine, first seed, count): 60 seeds at n=4 and 20 at n=7 with every fault kind.
CHUNKS = [(4, 1, 30 * k, 30) for k in range(2)] + [(7, 2, 0, 20)]


def _sweep(cfgs: list[SimConfig]) -> list[SimResult]:
    results, failures = [], []
    for cfg in cfgs:
        r = run_seed(cfg)
        results.append(r)
        if r.violations or r.liveness_failure:
            failures.append(
                f"{r.violations or r.note or 'liveness failure'}\n  replay: {r.command}"
            )
    assert not failures, "\n".join(failures)
    return results


@pytest.mark.parametrize(("nodes", "byzantine", "start", "count"), CHUNKS)
def test_epoch_sweep_under_every_fault_kind(
    nodes: int, byzantine: int, start: int, count: int
) -> None:
    results = _sweep(
        [
            SimConfig(seed=s, nodes=nodes, byzantine=byzantine, **EPOCHS)  # type: ignore[arg-type]
            for s in range(start, start + count)
        ]
    )
    # The runs did change epochs, with every kind of change among them.
    assert sum(r.epochs for r in results) >= 2 * count
    kinds = {k for r in results for k in r.gov_executed}
    assert kinds == {"add_validator", "remove_validator", "set_power", "rotate_node_key"}


def test_adds_and_removals_during_partitions() -> None:
    cfgs = [
        SimConfig(seed=s, faults=frozenset({"partition", "network"}), fault_ms=3000, **EPOCHS)  # type: ignore[arg-type]
        for s in range(15)
    ]
    results = _sweep(cfgs)
    assert sum(r.epochs for r in results) >= 30


def test_the_joining_or_leaving_node_crashing() -> None:
    cfgs = [
        SimConfig(seed=s, faults=frozenset({"crash", "network"}), fault_ms=3000, **EPOCHS)  # type: ignore[arg-type]
        for s in range(15)
    ]
    results = _sweep(cfgs)
    assert sum(r.subject_crashes for r in results) >= 3


def test_byzantine_members_of_the_old_and_new_sets_and_twins_across_the_boundary() -> None:
    cfgs = [
        SimConfig(
            seed=s,
            faults=frozenset({"byzantine", "twins_split"}),
            twins_rate_percent=100,
            **EPOCHS,  # type: ignore[arg-type]
        )
        for s in range(15)
    ]
    results = _sweep(cfgs)
    assert sum(r.epochs for r in results) >= 30


def test_back_to_back_epochs() -> None:
    """Six changes in a row with no faults: each executes and each starts an epoch."""
    for s in range(5):
        r = run_seed(SimConfig(seed=s, byzantine=0, faults=frozenset(), reconfig=6, spares=2))
        assert not r.violations and not r.liveness_failure, r.command
        assert r.epochs == len(r.gov_executed) == 6, (r.gov_executed, r.command)


def test_a_node_down_across_several_epochs_catches_up() -> None:
    cfgs = [
        SimConfig(
            seed=s,
            faults=frozenset({"crash", "network"}),
            outage_percent=100,
            fault_ms=3000,
            reconfig=4,
            spares=2,
        )
        for s in range(12)
    ]
    results = _sweep(cfgs)
    # Liveness already says every honest node reached the latest epoch; some were far behind.
    assert max(r.catch_up_epochs for r in results) >= 2


def test_a_seed_replays_bit_for_bit() -> None:
    cfg = SimConfig(seed=3, **EPOCHS)  # type: ignore[arg-type]
    a, b = run_seed(cfg), run_seed(replace(cfg))
    assert (a.commits, a.epochs, a.messages, a.gov_executed) == (
        b.commits,
        b.epochs,
        b.messages,
        b.gov_executed,
    )
