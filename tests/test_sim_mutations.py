"""Mutation checks: each classic bug, planted through `ConsensusConfig.bugs` (never monkeypatching),
must be caught by the simulator within a bounded number of seeds — and the seed that catches it
must pass with the bug removed (so it is the bug, not the scenario, that fails).

Each bug gets the fault profile that exposes it fastest; all of them are also reachable by the
default `--faults all` sweep, only less often.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest

from gmchain.chain.core import Chain
from gmchain.consensus.mutations import Bug
from gmchain.consensus.sim import SimConfig, run_seed

_BYZ = frozenset({"byzantine"})
_HAS_EPOCHS = hasattr(Chain, "take_epoch_switch") and (
    importlib.util.find_spec("gmchain.contracts.governance") is not None
)
CASES = [
    # skip S2: a leader withholds QC(X), then forks below W with a real TC (lock_attack)
    # (the attack needs a leader that alone aggregates the votes: DiemBFT v4's vote routing)
    (
        Bug.SKIP_LOCK_CHECK,
        {"faults": _BYZ, "behaviours": frozenset({"lock_attack"}), "votes": "leader"},
        300,
    ),
    # 2f quorums: Twins straddling a partition make both sides certify and commit
    (Bug.QUORUM_2F, {"faults": _BYZ | {"twins_split"}, "twins_rate_percent": 100}, 600),
    # unverified TCs: forks carrying forged TCs get honest votes
    (
        Bug.UNVERIFIED_TC,
        {"faults": _BYZ, "behaviours": frozenset({"fork"}), "votes": "leader"},
        300,
    ),
    # forgotten safety data: a restarted replica re-votes in a round it already voted in
    (Bug.FORGET_SAFETY, {"faults": _BYZ | {"crash"}, "behaviours": frozenset({"equivocate"})}, 300),
    # epochs (issue 12): a QC of the previous epoch taken as ours — a lagging peer's SyncInfo
    # carries one, and the replica then times out with it (caught at seeds 0, 12, 20)
    (
        Bug.PREVIOUS_EPOCH_QC,
        {"faults": _BYZ | {"crash", "network"}, "reconfig": 5, "spares": 1},
        100,
    ),
    # a set change applied when the deciding block executes, before it commits: QCs of the old
    # epoch formed by the new set (caught at seeds 0, 7, 10)
    (Bug.EARLY_EPOCH_SWITCH, {"reconfig": 3, "spares": 2}, 60),
]


@pytest.mark.parametrize(("bug", "profile", "limit"), CASES, ids=[c[0].value for c in CASES])
def test_planted_bug_is_caught(bug: Bug, profile: dict[str, object], limit: int) -> None:
    if profile.get("reconfig") and not _HAS_EPOCHS:
        pytest.skip("epochs need governance and chain/epochs.py (issue 12: gov, chainep)")
    for seed in range(limit):
        cfg = SimConfig(seed=seed, bugs=frozenset({bug}), **profile)  # type: ignore[arg-type]
        r = run_seed(cfg)
        if r.violations:  # a safety invariant broke
            clean = run_seed(replace(cfg, bugs=frozenset()))
            assert not clean.violations and not clean.liveness_failure, clean.command
            return
    pytest.fail(f"{bug.value} survived {limit} seeds")


# The default profile draws the lock attack rarely: among seeds 0-1,499 it caught
# skip-lock-check at 153, 805, 931, 985, 1481 with the sim's own stand-in app, and at 327, 413,
# 743, 773 over the real chain library (other node ids and tx ids, so other draws); the rate,
# about one seed in 300, did not change. The bound covers the first catch with some room.
DEFAULT_PROFILE_LIMIT = {Bug.SKIP_LOCK_CHECK: 500, Bug.FORGET_SAFETY: 300}


def test_default_profile_also_catches_skip_lock_and_forget_safety() -> None:
    for bug, limit in DEFAULT_PROFILE_LIMIT.items():
        assert any(
            run_seed(SimConfig(seed=s, bugs=frozenset({bug}))).violations for s in range(limit)
        ), bug
