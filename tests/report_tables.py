"""The check that a `gmchain bench` human report's tables (Markdown and HTML) carry its JSON's
numbers: used on a fresh run (tests/test_bench_run.py) and on the reports committed under
bench/results/ (tests/test_bench_committed_report.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

__all__ = ["check_report_tables", "md_tables"]


def md_tables(md: str) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    lines = md.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- table: (\S+) -->", line)
        if not m:
            continue
        rows = []
        for row in lines[i + 1 :]:
            if not row.startswith("|"):
                break
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)[1:-1]]
            rows.append(cells)
        assert set(rows[1][0]) <= {"-"}, "separator row"
        out[m.group(1)] = [rows[0], *rows[2:]]
    return out


class _HtmlTables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._key: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._key = str(dict(attrs)["id"]).removeprefix("t-")
            self.tables[self._key] = []
        elif tag == "tr" and self._key:
            self.tables[self._key].append([])
        elif tag in ("td", "th") and self._key:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._key and self._cell is not None:
            self.tables[self._key][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._key = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _seconds(cell: str) -> float:
    """A report's duration (`42 s`, `3 min 05 s`, `2 h 10 min`) in seconds."""
    m = re.fullmatch(r"(?:(\d+) h )?(?:(\d+) min)?(?: ?(\d+) s)?", cell)
    assert m and any(m.groups()), cell
    h, mins, secs = (int(x) if x else 0 for x in m.groups())
    return 3600 * h + 60 * mins + secs


def _kv(table: list[list[str]]) -> dict[str, str]:
    return {r[0]: r[1] for r in table[1:]}


def _pct(cell: str) -> float:
    assert cell.endswith(" %"), cell
    return float(cell.removesuffix(" %")) / 100


def check_report_tables(rep: dict[str, Any], md_path: Path, html_path: Path) -> None:
    """Every number the human report's tables show is the JSON's (Markdown and HTML alike)."""
    md = md_tables(md_path.read_text())
    parser = _HtmlTables()
    parser.feed(html_path.read_text())
    assert md == parser.tables  # one document model, two renderings: same cells
    html_text = html_path.read_text()
    assert "<svg" in html_text and "<img" not in html_text and "<script" not in html_text

    main_t = _kv(md["main"])
    assert float(main_t["offered tx/s"]) == rep["offered_tps"]
    assert float(main_t["committed TPS"]) == rep["tps_committed"]
    assert float(main_t["accepted TPS"]) == rep["tps_accepted"]
    assert _pct(main_t["success rate"]) == pytest.approx(rep["success_rate"], abs=5e-5)
    for k, name in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9")):
        assert float(main_t[f"latency {name} ms"]) == rep["latency_ms"][k]
    assert float(main_t["batch (tx per JSON-RPC request)"]) == rep["load"]["batch"]
    assert float(main_t["SM2 ceiling TPS"]) == rep["ceiling_tps"]
    assert float(main_t["committed / offered"]) == rep["saturation"]["committed_ratio"]
    assert main_t["position"] in ("below the knee", "at the knee", "PAST SATURATION")

    split = rep.get("latency_split_ms")  # reports since session 14 (bench/report.py rule 5)
    if split and split["count"]:
        rows = md["latency-split"]
        assert rows[0] == ["latency split (window)", "p50 ms", "p90 ms", "p99 ms", "mean ms"]
        assert len(rows) == 6  # admission, to_proposal, two_blocks, announce, total
        for row, part in zip(
            rows[1:], ("admission", "to_proposal", "two_blocks", "announce", "total"), strict=True
        ):
            assert [float(x) for x in row[1:]] == [
                split[part][q] for q in ("p50", "p90", "p99", "mean")
            ]
    else:
        assert "latency-split" not in md

    hl = _kv(md["headline"])
    knee = rep["sweep"]["knee"]
    if knee:
        assert hl["headline from"] == "knee of the rate sweep"
        assert float(hl["committed TPS"]) == knee["committed_tps"]
        assert float(hl["offered tx/s"]) == knee["offered_tps"]
    if rep["saturation"]["verdict"] == "past":
        assert "PAST SATURATION: offered" in md_path.read_text()

    sweep = md["sweep"]
    assert sweep[0][:2] == ["offered tx/s", "committed TPS"]
    assert len(sweep) - 1 == len(rep["sweep"]["points"])
    for row, p in zip(sweep[1:], rep["sweep"]["points"], strict=True):
        assert float(row[0]) == p["offered_tps"] and float(row[1]) == p["tps_committed"]
        assert _pct(row[3]) == pytest.approx(p["success_rate"], abs=5e-5)
        assert float(row[4]) == p["latency_ms"]["p50"] and float(row[5]) == p["latency_ms"]["p99"]
        assert int(row[6]) == p["batch"]

    sc = {r[0]: r for r in md["scenarios"][1:]}
    head = md["scenarios"][0]
    for key in ("stress", "spike", "stability"):
        s = rep["scenarios"][key]
        row = dict(zip(head, sc[s["scenario"]], strict=True))
        assert float(row["offered tx/s"]) == s["offered_tps"]
        assert float(row["committed TPS"]) == s["tps_committed"]
        assert _pct(row["success"]) == pytest.approx(s["success_rate"], abs=5e-5)
        assert row["verdict"] == ("PASS" if s["passed"] else "FAIL")
        assert _seconds(row["duration"]) == pytest.approx(
            s["duration_s"], abs=0.5 if s["duration_s"] < 3600 else 30
        )
        assert row["criterion"] == s["criterion"]

    nodes = {r[0]: r for r in md["nodes"][1:]}
    assert set(nodes) == set(rep["nodes"])
    for name, n in rep["nodes"].items():
        assert [float(x) for x in nodes[name][1:6]] == [
            n["cpu_pct_mean"],
            n["cpu_pct_max"],
            n["rss_mb_max"],
            n["rss_mb_last"],
            n["disk_write_mb_s_mean"],
        ]
    head = md["queries"][0]
    q = {r[0]: dict(zip(head, r, strict=True)) for r in md["queries"][1:]}
    for x in rep["queries"]:
        assert float(q[x["kind"]]["queries/s"]) == x["queries_per_s"]
        if "ratio_to_http_loopback" in x:  # reports since session 8 (bench/loopback.py)
            ratio = x["ratio_to_http_loopback"]
            cell = q[x["kind"]]["ratio to HTTP loopback"]
            assert (cell == "—") if ratio is None else (float(cell) == ratio), cell
    loop = rep["microbench"].get("http_loopback_qps")
    if loop is not None:
        assert float(_kv(md["micro"])["HTTP loopback queries/s (aiohttp + uvloop)"]) == loop
        assert f"HTTP loopback ceiling: {loop} queries/s" in md_path.read_text()

    m = _kv(md["machine"])
    assert m["CPU model (/proc/cpuinfo model name)"] == rep["manifest"]["cpu_model"]
    assert m["cores"] == str(rep["manifest"]["cores"])
    before = [float(x) for x in m["load average 1/5/15 min before"].split(", ")]
    assert before == rep["manifest"]["load_average_at_start"]
    assert _kv(md["software"])["git commit"].startswith(rep["manifest"]["git_commit"])
    crit = {r[0]: r for r in md["criteria"][1:]}
    assert crit["pressure (stress)"][3] == "≥ 95.00 %" and crit["stability"][3] == "> 95.00 %"
    assert crit["spike"][3] == "≥ 75.00 %"

    stab = {r[0]: r for r in md["stability-rss"][1:]}
    for name, d in rep["scenarios"]["stability"]["drift"]["nodes"].items():
        assert float(stab[name][1]) == d["rss_mb_first"]
        assert float(stab[name][3]) == d["rss_mb_per_hour"]
    # No Python reprs anywhere in the human report.
    text = md_path.read_text()
    assert "{'" not in text and "':" not in text and "True" not in text
