"""One short real run of `gmchain bench` on the single profile, with the whole CAICT suite in
miniature: the JSON has every field, sanely, and the human report's tables (Markdown and HTML)
carry the JSON's numbers.

No timing assertions (speed is shown by the harness, not by tests): only that the report is
complete and self-consistent for low offered rates a loaded machine can always carry. The main
run and the stability phase are longer than `--segment-seconds`, so both run as two segments.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gmchain.bench.cli import main
from gmchain.bench.report import LATENCY_FIELDS, REQUIRED_FIELDS, check_schema
from tests.report_tables import check_report_tables, md_tables


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "out.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = _run_main(tmp, out)
    (tmp / "stdout.txt").write_text(printed.getvalue())
    assert rc == 0
    return json.loads(out.read_text()), tmp


def _run_main(tmp: Path, out: Path) -> int:
    return main(
        [
            "--profile", "single",
            "--duration", "3",
            "--rate", "40",
            "--warmup", "1",
            "--batch", "5",
            "--keys", "8",
            "--query-seconds", "0.3",
            "--micro-seconds", "0.1",
            "--sweep", "20,40",
            "--sweep-seconds", "2",
            "--spike-seconds", "2",
            "--stability-seconds", "3",
            "--segment-seconds", "2",
            "--workdir", str(tmp / "w"),
            "--json", str(out),
        ]
    )  # fmt: skip


def test_progress_names_the_plan_each_phase_and_the_time_left(
    run: tuple[dict[str, Any], Path],
) -> None:
    lines = (run[1] / "stdout.txt").read_text().splitlines()
    plan = next(x for x in lines if x.startswith("[bench] plan: "))
    assert plan.startswith("[bench] plan: --sweep runs the whole CAICT suite: main run 40 tx/s")
    assert re.search(r"estimated duration (\d+ min )?\d+ s$", plan), plan
    phases = [x for x in lines if re.match(r"\[bench\] [a-z0-9 /]+: [\d.]+ tx/s for ", x)]
    names = [x.split(":")[0].removeprefix("[bench] ") for x in phases]
    assert names == [
        "main run",
        "sweep point 1/2",
        "sweep point 2/2",
        "stress",
        "spike",
        "stability",
    ]
    for line in phases:
        m = re.search(r"for (\d+) s, batch 5.*; phase ends in (\d+) s, run in ~", line)
        assert m and int(m.group(2)) >= int(m.group(1)), line  # the load is still ahead
    assert "2 segments of 2 s" in phases[0] and "2 segments" not in phases[1]
    assert any(x.startswith("[bench] headline (") or "no headline" in x for x in lines)


def test_short_single_run_produces_full_report(run: tuple[dict[str, Any], Path]) -> None:
    rep, tmp = run
    assert check_schema(rep) == []
    for f in REQUIRED_FIELDS:
        assert f in rep
    for f in LATENCY_FIELDS:
        assert rep["latency_ms"][f] >= 0
    lat = rep["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    counts = rep["counts"]
    assert counts["scheduled"] == 120 and rep["segments"] == 2  # 2 s + 1 s at 40 tx/s
    assert counts["committed_valid"] <= counts["committed"] <= counts["acknowledged"] <= 120
    assert 0 < rep["success_rate"] <= 1
    assert rep["success_rate"] == round(counts["committed_valid"] / 120, 4)
    # A loaded machine may commit the whole 3 s run after its window: no lower bound on TPS.
    assert 0 <= rep["tps_committed"] <= 3 * 40 and counts["committed"] > 0
    assert rep["ceiling_tps"] == rep["microbench"]["sm2_verify_per_s_all_threads"]
    assert rep["ratio_to_ceiling"] == round(rep["tps_committed"] / rep["ceiling_tps"], 3)
    assert rep["manifest"]["cores"] >= 1 and rep["manifest"]["git_commit"]
    assert rep["manifest"]["cpu_model"] and "load_average_at_end" in rep["manifest"]
    assert rep["parameters"]["validators"] == 1 and rep["load"]["batch"] == 5
    assert sum(s["offered"] for s in rep["series"]) == 120
    # Blocks were announced (whether any fell inside the short windows depends on the load).
    assert len(rep["blocks"]["heights"]) == 2 and rep["blocks"]["heights"][1] >= 1
    assert "dev" in rep["nodes"] and rep["nodes"]["dev"]["rss_mb_max"] > 0
    assert rep["node_series"]["dev"] and all(r[2] > 0 for r in rep["node_series"]["dev"])
    # [t, CPU %, RSS MB, disk write MB/s] (writes can read 0 where /tmp is a tmpfs)
    assert all(len(r) == 4 and r[3] >= 0 for r in rep["node_series"]["dev"])
    assert {q["kind"] for q in rep["queries"]} == {"block", "tx", "evidence", "proof"}
    assert all(q["ok"] > 0 for q in rep["queries"])
    # The queries' HTTP ceiling (bench/loopback.py), measured by the same client, and each
    # kind's share of it.
    loop = rep["microbench"]["http_loopback"]
    assert loop["ok"] > 0 and not loop["errors"] and loop["connections"] == 32
    assert rep["microbench"]["http_loopback_qps"] == loop["queries_per_s"] > 0
    assert loop["reply_bytes"] == 2048
    for q in rep["queries"]:
        assert q["connections"] == 32
        assert q["ratio_to_http_loopback"] == round(q["queries_per_s"] / loop["queries_per_s"], 3)
    assert "http_loopback_qps" in rep["definitions"]
    assert rep["definitions"]["committed"].startswith("in a block with a quorum certificate")
    assert rep["saturation"]["verdict"] in ("below", "at", "past")
    # The latency split (bench/report.py rule 5) of the first segment's window: its parts add up.
    split = rep["latency_split_ms"]
    assert split["commit_block"] == 1  # one validator: h + 1 certifies h (report rule 5)
    if split["count"]:  # a loaded machine may commit the 2 s segment after its window
        parts = sum(
            split[k]["mean"] for k in ("admission", "to_proposal", "two_blocks", "announce")
        )
        assert parts == pytest.approx(split["total"]["mean"], abs=0.05)
        assert split["admission"]["p50"] > 0 and split["two_blocks"]["p50"] > 0
        assert split["total"]["p50"] <= rep["latency_ms"]["max"] + 1
    # One batch for every phase (bench.cli rule 3), so the sweep's points compare.
    sc = rep["scenarios"]
    assert {p["batch"] for p in rep["sweep"]["points"]} == {5}
    assert {sc[k]["batch"] for k in ("stress", "spike", "stability")} == {5}
    assert sc["stability"]["duration_s"] == 3 and sc["stability"]["drift"]["nodes"]["dev"]
    assert sc["stability"]["counts"]["scheduled"] == sum(
        max(1, int(sc["stability"]["offered_tps"] * x)) for x in (2, 1)
    )
    for f in ("out.md", "out.html", "out-knee.svg", "out-latency.svg", "out-nodes-disk.svg"):
        assert (tmp / f).is_file(), f
    assert sorted(Path(c).name for c in rep["charts"]) == sorted(
        p.name for p in tmp.glob("out-*.svg")
    )


# --- the human report's tables against the JSON -------------------------------------------------


def test_report_tables_carry_the_json_numbers(run: tuple[dict[str, Any], Path]) -> None:
    rep, tmp = run
    check_report_tables(rep, tmp / "out.md", tmp / "out.html")
    # A fresh run measured the HTTP loopback ceiling, so the queries table has its column.
    md = md_tables((tmp / "out.md").read_text())
    assert md["queries"][0] == ["kind", "queries/s", "ratio to HTTP loopback", "p50 ms", "p99 ms"]


def test_render_rebuilds_the_same_report_from_the_json(
    run: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    """`--render` runs nothing: the human report is a function of the JSON alone."""
    _, tmp = run
    before = (tmp / "out.json").read_text()
    rc = main(
        [
            "--render", str(tmp / "out.json"),
            "--md", str(tmp_path / "again.md"),
            "--html", str(tmp_path / "again.html"),
            "--charts", str(tmp_path),
        ]
    )  # fmt: skip
    assert rc == 0
    assert (tmp_path / "again.md").read_text() == (tmp / "out.md").read_text()
    assert (tmp_path / "again.html").read_text() == (tmp / "out.html").read_text()
    assert (tmp_path / "out-knee.svg").read_text() == (tmp / "out-knee.svg").read_text()
    assert (tmp / "out.json").read_text() == before
