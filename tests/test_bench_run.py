"""One short real run of `gmchain bench` on the single profile: the JSON has every field, sanely.

No timing assertions (speed is shown by the harness, not by tests): only that the report is
complete and self-consistent for a low offered rate a loaded machine can always carry.
"""

from __future__ import annotations

import json
from pathlib import Path

from gmchain.bench.cli import main
from gmchain.bench.report import LATENCY_FIELDS, REQUIRED_FIELDS, check_schema


def test_short_single_run_produces_full_report(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    rc = main(
        [
            "--profile", "single",
            "--duration", "3",
            "--rate", "40",
            "--warmup", "1",
            "--batch", "5",
            "--keys", "8",
            "--query-seconds", "0.3",
            "--micro-seconds", "0.1",
            "--workdir", str(tmp_path / "w"),
            "--json", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    rep = json.loads(out.read_text())
    assert check_schema(rep) == []
    for f in REQUIRED_FIELDS:
        assert f in rep
    for f in LATENCY_FIELDS:
        assert rep["latency_ms"][f] >= 0
    lat = rep["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    counts = rep["counts"]
    assert counts["scheduled"] == 120
    assert counts["committed_valid"] <= counts["committed"] <= counts["acknowledged"] <= 120
    assert 0 < rep["success_rate"] <= 1
    assert rep["success_rate"] == counts["committed_valid"] / 120
    assert 0 < rep["tps_committed"] <= 3 * 40
    assert rep["ceiling_tps"] == rep["microbench"]["sm2_verify_per_s_all_threads"]
    assert rep["ratio_to_ceiling"] == round(rep["tps_committed"] / rep["ceiling_tps"], 3)
    assert rep["manifest"]["cores"] >= 1 and rep["manifest"]["git_commit"]
    assert rep["parameters"]["validators"] == 1 and rep["load"]["batch"] == 5
    assert sum(s["offered"] for s in rep["series"]) == 120
    assert rep["blocks"]["count_in_window"] >= 1
    assert "dev" in rep["nodes"] and rep["nodes"]["dev"]["rss_mb_max"] > 0
    assert {q["kind"] for q in rep["queries"]} == {"block", "tx", "evidence", "proof"}
    assert all(q["ok"] > 0 for q in rep["queries"])
    assert rep["definitions"]["committed"].startswith("in a block with a quorum certificate")
    md = (tmp_path / "out.md").read_text()
    assert "committed TPS" in md
    assert rep["charts"] or "matplotlib" in rep["charts_note"]
