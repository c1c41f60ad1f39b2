"""The certifier-style reports committed under bench/results/ (issue 15): each is a full CAICT run
whose human report (Markdown, HTML, SVG charts) carries the numbers of its JSON and is exactly
what `gmchain bench --render` makes of that JSON today.

If bench/human.py changes how a report reads, re-render the committed ones
(`gmchain bench --render bench/results/<dir>/<name>.json`) and commit the result with the change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gmchain.bench.cli import main
from gmchain.bench.report import check_schema
from tests.report_tables import check_report_tables

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
# The full CAICT runs a certifier would be handed (docs/benchmarks.md names each).
REPORTS = [
    "2026-12-07-session8-caict/cluster4-caict.json",
    "2026-12-07-session9-caict/cluster4-caict.json",
]


@pytest.fixture(params=REPORTS)
def report(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Path]:
    path = RESULTS / request.param
    return json.loads(path.read_text()), path


def test_it_is_a_full_caict_run(report: tuple[dict[str, Any], Path]) -> None:
    rep, path = report
    check_schema(rep)
    points = rep["sweep"]["points"]
    assert len(points) >= 3 and rep["sweep"]["knee"], "a rate sweep that found a knee"
    sc = rep["scenarios"]
    for key in ("stress", "spike", "stability"):
        assert sc[key]["duration_s"] > 0 and sc[key]["counts"]["scheduled"] > 0, key
    assert sc["stability"]["duration_s"] >= 300
    knee = rep["sweep"]["knee"]["committed_tps"]
    assert sc["spike"]["offered_tps"] == pytest.approx(2 * sc["stress"]["offered_tps"], rel=0.02)
    assert sc["stability"]["offered_tps"] == pytest.approx(0.2 * knee, rel=0.05)
    assert rep["manifest"]["git_commit"] and not rep["manifest"].get("git_dirty", False)
    for chart in rep["charts"]:
        assert (path.parent / Path(chart).name).is_file(), chart


def test_its_tables_carry_the_json_numbers(report: tuple[dict[str, Any], Path]) -> None:
    rep, path = report
    check_report_tables(rep, path.with_suffix(".md"), path.with_suffix(".html"))


def test_it_is_what_render_makes_of_its_json(
    report: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    _, path = report
    rc = main(
        [
            "--render", str(path),
            "--md", str(tmp_path / "r.md"),
            "--html", str(tmp_path / "r.html"),
            "--charts", str(tmp_path),
        ]
    )  # fmt: skip
    assert rc == 0
    assert (tmp_path / "r.md").read_text() == path.with_suffix(".md").read_text()
    assert (tmp_path / "r.html").read_text() == path.with_suffix(".html").read_text()
    for svg in sorted(tmp_path.glob("*.svg")):
        assert svg.read_text() == (path.parent / svg.name).read_text(), svg.name
