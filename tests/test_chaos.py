"""The chaos drill (tests/chaos.py): a short seeded run in `make test`, a long one in `make soak`.

Both end in the drill's invariants, which are never skipped (tests/chaos.py rule 5): identical
hashes at every height on every node, every acknowledged transaction in exactly one block and
served by every node, every node caught up within a bound, and no violation on the way (no node
alive but wedged, no exit that is not a fail-stop, no client locking a node out). The counts are
printed (`pytest -s`) and saved as chaos-report.json in the test's tmp dir.

Environment:
    GMCHAIN_CHAOS_SEED      the schedule's seed (short default 1010; soak default: random, printed)
    GMCHAIN_CHAOS_ACTIONS   which action kinds run (tests/chaos.py module doc); default all
    GMCHAIN_CHAOS_SHORT_S   chaos seconds of the short run (default 60; every kind runs once anyway)
    GMCHAIN_SOAK_S          chaos seconds of the soak (default 1800, at least 30 minutes)
Reproduce a run: python -m tests.chaos --seed S --duration D --actions KINDS --dir /tmp/chaos-S
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos import ChaosConfig, actions_from_env, run_chaos


def _check(report_violations: list[dict[str, object]], seed: int) -> None:
    assert not report_violations, (
        f"chaos seed {seed}: {len(report_violations)} violations: {report_violations[:8]}"
    )


@pytest.mark.timeout(1200)
def test_chaos_short(tmp_path: Path) -> None:
    seed = int(os.environ.get("GMCHAIN_CHAOS_SEED", "1010"))
    cfg = ChaosConfig(
        seed=seed,
        duration_s=float(os.environ.get("GMCHAIN_CHAOS_SHORT_S", "60")),
        actions=actions_from_env(),
        hold_s=(2.0, 4.0),
        gap_s=(0.5, 1.5),
        abuse_min_s=6.0,
    )
    report = run_chaos(tmp_path, cfg)
    _check(report.violations, seed)
    counts = report.counts()
    assert counts["txs_acknowledged"] > 0, counts
    assert set(counts["actions"]) == set(cfg.actions) - set(report.skipped), counts  # each ran


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_chaos_soak(tmp_path: Path) -> None:
    seed = int(os.environ.get("GMCHAIN_CHAOS_SEED", str(random.randrange(1 << 30))))
    duration = float(os.environ.get("GMCHAIN_SOAK_S", "1800"))
    cfg = ChaosConfig(
        seed=seed,
        duration_s=duration,
        actions=actions_from_env(),
        disk_mib=512,
        require_disk="disk_full" in actions_from_env(),
    )
    report = run_chaos(tmp_path, cfg)
    _check(report.violations, seed)
    assert report.chaos_s >= duration, f"soak ran {report.chaos_s}s < {duration}s"
