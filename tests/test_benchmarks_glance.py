"""docs/benchmarks.md "Results at a glance" carries the numbers of the runs it cites.

The table is written by hand from the JSON of bench/results/2026-12-08-session16; this test
reads those files and finds each run's figures in the row of its goal, so a figure copied wrong,
or a run replaced without its row, fails here.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "bench" / "results" / "2026-12-08-session16"
DOC = (ROOT / "docs" / "benchmarks.md").read_text()


def _rows() -> list[str]:
    section = DOC.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def _row(goal_start: str) -> str:
    found = [r for r in _rows() if r.startswith(f"| {goal_start}")]
    assert len(found) == 1, (goal_start, found)
    return found[0]


def _load(name: str) -> dict[str, Any]:
    return json.loads((RUNS / name).read_text())


def _tps(x: float) -> str:
    return f"{x:,.1f}"


@pytest.mark.parametrize(
    ("goal", "runs"),
    [
        ("single ≥ 0.35×", "single-2000"),
        ("cluster4 ≥ 0.45×", "c4-600"),
    ],
)
def test_throughput_rows_carry_each_runs_figures(goal: str, runs: str) -> None:
    row = _row(goal)
    reps = [_load(f"runs/{runs}-{i}.json") for i in (1, 2, 3)]
    for rep in reps:
        assert _tps(rep["tps_committed"]) in row
        assert f"{rep['ratio_to_ceiling']:.3f}" in row
        assert f"{round(rep['ceiling_tps']):,}" in row
        pct = 100 * rep["tps_committed"] / rep["offered_tps"]
        assert f"{pct:.1f} %" in row or f"{pct:.1f} /" in row or f"{pct:.1f};" in row, pct
    assert _tps(statistics.median(r["tps_committed"] for r in reps)) in row
    assert f"{statistics.median(r['ratio_to_ceiling'] for r in reps):.3f}" in row


def test_light_load_row_carries_each_runs_latency() -> None:
    row = _row("cluster4 p50 ≤ 50 ms")
    reps = [_load(f"runs/c4-100-{i}.json") for i in (1, 2, 3)]
    for rep in reps:
        assert f"{rep['latency_ms']['p50']:.1f}" in row
        assert f"{round(rep['latency_ms']['p99'])}" in row
    assert f"p50 {statistics.median(r['latency_ms']['p50'] for r in reps):.1f} ms" in row


def test_fresh_chain_query_rows_carry_each_runs_rates() -> None:
    reps = [_load(f"runs/qb-{i}.json") for i in (1, 2, 3)]
    block_row, proof_row = _row("block and tx queries"), _row("proofs ≥ 3,000/s")
    for rep in reps:
        assert f"{round(rep['microbench']['http_loopback_qps']):,}" in block_row
        by_kind = {q["kind"]: q for q in rep["queries"]}
        for kind in ("block", "tx"):
            assert f"{round(by_kind[kind]['queries_per_s']):,}" in block_row
            assert f"{by_kind[kind]['ratio_to_http_loopback']:.3f}" in block_row
        assert f"{round(by_kind['proof']['queries_per_s']):,}" in proof_row


def test_long_chain_row_carries_the_medians_of_its_runs() -> None:
    row = _row("the same on a 100,000-block chain")
    files = sorted(RUNS.glob("runs/qc100k-*.json")) + sorted(RUNS.glob("qab/base-*.json"))
    assert len(files) == 7
    per_kind: dict[str, list[float]] = {}
    for f in files:
        for q in json.loads(f.read_text())["queries"]:
            per_kind.setdefault(q["kind"], []).append(q["node_cpu_us_per_query"])
    for kind, cpus in per_kind.items():
        assert f"{kind} {statistics.median(cpus):.1f} " in row, kind
        assert f"{min(cpus):.1f}" in row and f"{max(cpus):.1f}" in row, kind
