"""Where a run stood against the knee (bench.knee rule 3), and the pieces of the human report
that need no chain: segment merging, the headline rule, bare `gmchain bench`, SVG output."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from gmchain.bench.hdr import Histogram
from gmchain.bench.knee import classify, latency_trend
from gmchain.bench.loadgen import LoadResult
from gmchain.bench.report import analyze, merge_segments
from gmchain.bench.scenarios import headline
from gmchain.bench.svg import Series, Span, VLine, line_chart


def _flat(n: int, ms: float = 80.0) -> list[float]:
    return [ms + (5 if k % 2 else -5) for k in range(n)]


def test_keeping_up_with_flat_latency_is_below_the_knee() -> None:
    s = classify(offered_tps=500, committed_tps=499, success_rate=1.0, p50_series_ms=_flat(20))
    assert s.verdict == "below"
    assert s.trend is not None and not s.trend.is_climbing()


def test_committing_less_than_95_percent_is_past_saturation() -> None:
    s = classify(offered_tps=3000, committed_tps=1698, success_rate=1.0, p50_series_ms=_flat(20))
    assert s.verdict == "past"
    assert "committed 56.6% of offered" in s.reasons[0]
    # 95 % is the line: 2850 of 3000 keeps up (but only just), 2849 does not.
    kept = classify(offered_tps=3000, committed_tps=2850, success_rate=1.0, p50_series_ms=[])
    assert kept.verdict == "at"
    lost = classify(offered_tps=3000, committed_tps=2849, success_rate=1.0, p50_series_ms=[])
    assert lost.verdict == "past"


def test_climbing_latency_is_past_saturation_even_when_counts_keep_up() -> None:
    """The issue's overloaded default run: 100 % success, p50 climbing linearly (a queue)."""
    climbing = [100 + 250 * k for k in range(30)]  # +250 ms every second
    s = classify(offered_tps=1000, committed_tps=990, success_rate=1.0, p50_series_ms=climbing)
    assert s.verdict == "past"
    assert s.trend is not None and s.trend.slope_ms_per_s == pytest.approx(250)
    assert any("unbounded queue" in r for r in s.reasons)
    j = s.to_json()
    assert j["latency_climbing"] is True and j["verdict"] == "past"


def test_a_single_spike_is_not_a_climb() -> None:
    p50 = _flat(30)
    p50[15] = 5000.0  # one slow second in the middle
    s = classify(offered_tps=1000, committed_tps=1000, success_rate=1.0, p50_series_ms=p50)
    assert s.verdict == "below"


def test_rising_latency_or_thin_margin_is_at_the_knee() -> None:
    rising = [100.0] * 10 + [140.0] * 10 + [260.0] * 10  # x2.6 but only +160 ms: not a queue
    s = classify(offered_tps=1000, committed_tps=1000, success_rate=1.0, p50_series_ms=rising)
    assert s.verdict == "at"
    thin = classify(offered_tps=1000, committed_tps=970, success_rate=1.0, p50_series_ms=_flat(9))
    assert thin.verdict == "at"


def test_position_against_a_measured_knee() -> None:
    def at(offered: float) -> str:
        return classify(
            offered_tps=offered,
            committed_tps=offered,
            success_rate=1.0,
            p50_series_ms=_flat(9),
            knee_offered_tps=1000,
        ).verdict

    assert [at(500), at(899), at(905), at(1000), at(1200)] == [
        "below",
        "below",
        "at",
        "at",
        "at",
    ]


def test_failed_transactions_are_past_saturation() -> None:
    s = classify(offered_tps=100, committed_tps=100, success_rate=0.94, p50_series_ms=[])
    assert s.verdict == "past" and "success 94.0%" in s.reasons[0]


def test_latency_trend_needs_three_points() -> None:
    assert latency_trend([1.0, 2.0]) is None
    t = latency_trend([10.0, 20.0, 30.0])
    assert t is not None and (t.first_ms, t.last_ms, t.slope_ms_per_s) == (10, 30, 10)


def _report(verdict: str, sweep: dict[str, object] | None) -> dict[str, object]:
    r: dict[str, object] = {
        "offered_tps": 3000.0,
        "tps_committed": 1698.0,
        "latency_ms": {"p50": 7700.0, "p99": 13000.0},
        "saturation": {"verdict": verdict},
    }
    if sweep is not None:
        r["sweep"] = sweep
    return r


def test_a_past_saturation_run_is_never_the_headline() -> None:
    sweep = {
        "points": [
            {"offered_tps": 400.0, "latency_ms": {"p50": 70.0, "p99": 200.0}},
            {"offered_tps": 800.0, "latency_ms": {"p50": 900.0, "p99": 4000.0}},
        ],
        "knee": {"offered_tps": 400.0, "committed_tps": 398.5},
    }
    h = headline(_report("past", sweep))
    assert h["past_saturation"] == "PAST SATURATION: offered 3000 tx/s, committed 1698 TPS"
    assert (h["tps_committed"], h["latency_ms"]["p50"]) == (398.5, 70.0)
    assert h["source"] == "knee of the rate sweep"
    none = headline(_report("past", None))
    assert none["source"] is None and "add --sweep" in none["why_none"]
    assert none["past_saturation"].startswith("PAST SATURATION")
    own = headline(_report("below", None))
    assert own["tps_committed"] == 1698.0 and own["past_saturation"] is None


def _result(t0: float, n: int, rate: float, lat: float) -> LoadResult:
    due = [t0 + i / rate for i in range(n)]
    return LoadResult(
        t0=t0,
        due=due,
        sent=list(due),
        acked=[d + 0.001 for d in due],
        committed=[d + lat + (i % 7) * 0.01 for i, d in enumerate(due)],
        errors=Counter({"-32010: pool full": 2}),
        heads=[(h, t0 + h * 0.1, 10, 0) for h in range(1, int(n / rate * 10))],
        receipts_checked=n,
        receipts_ok=n,
        cpu_s=1.0,
        wall_s=10.0,
    )


def test_merged_segments_add_up_to_their_parts() -> None:
    """bench.report rule 4: counts, failures and latency histograms of segments add up."""
    a, b = _result(1000.0, 1000, 100.0, 0.2), _result(1010.0, 1000, 100.0, 0.3)
    hist = Histogram()
    pa = analyze(a, rate=100.0, warmup_s=2.0, duration_s=10.0, hist_out=hist)
    pb = analyze(b, rate=100.0, warmup_s=0.0, duration_s=10.0, hist_out=hist)
    m = merge_segments([(pa, 0.0), (pb, 10.0)], hist)
    assert m["counts"]["scheduled"] == 2000
    assert m["counts"]["committed"] == pa["counts"]["committed"] + pb["counts"]["committed"]
    assert m["failures"]["-32010: pool full"] == 4
    assert m["window_s"] == [2.0, 20.0]
    assert m["tps_committed"] == pytest.approx(
        (pa["tps_committed"] * 8 + pb["tps_committed"] * 10) / 18, abs=0.1
    )
    assert pa["latency_ms"]["p50"] < m["latency_ms"]["p50"] < pb["latency_ms"]["p50"]
    assert m["latency_ms"]["max"] == pb["latency_ms"]["max"]
    assert sum(p["offered"] for p in m["series"]) == 2000
    assert [p["t"] for p in m["series"]] == sorted({p["t"] for p in m["series"]})
    assert m["segments"] == 2


def test_bare_bench_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from gmchain.bench.cli import main as bench_main
    from gmchain.node.cli import main as gm_main

    assert bench_main([]) == 2
    assert "usage: gmchain bench" in capsys.readouterr().err
    assert gm_main(["bench"]) == 2
    assert "usage: gmchain bench" in capsys.readouterr().err
    p = subprocess.run(
        [sys.executable, "-m", "gmchain.bench"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2 and "usage: gmchain bench" in p.stderr and not p.stdout


def test_svg_chart_is_well_formed_and_breaks_lines_at_missing_values() -> None:
    svg = line_chart(
        title="t <&>",
        x_label="x",
        y_label="y",
        series=[Series(name="a", points=[(0, 1.0), (1, 2.0), (2, None), (3, 4.0), (4, 5.0)])],
        spans=[Span(x0=0, x1=1, label="warm-up")],
        vlines=[VLine(x=2, label="knee")],
        log_y=True,
    )
    root = ET.fromstring(svg)
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2  # the None splits the series in two
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "t <&>" in texts and "warm-up" in texts and "knee" in texts


def test_sweep_announces_the_whole_caict_suite_and_its_duration() -> None:
    from gmchain.bench.cli import _parser
    from gmchain.bench.scenarios import announce, plan_phases

    args = _parser().parse_args(["--sweep", "--rate", "400", "--stability-seconds", "3600"])
    phases = plan_phases(args, 400.0)
    assert [p[0] for p in phases] == [
        "main run",
        *(f"sweep point {k}/7" for k in range(1, 8)),
        "stress",
        "spike",
        "stability",
    ]
    assert sum(s for _, s in phases) == 30 + 7 * 10 + 30 + 10 + 3600
    text = announce(args, 400.0, 4000.0)
    assert text.startswith("--sweep runs the whole CAICT suite: main run 400 tx/s for 30 s")
    assert "a rate sweep of 7 points × 10 s" in text and "(1 h 00 min)" in text
    assert text.endswith("estimated duration 1 h 06 min")
    one = _parser().parse_args(["--rate", "100"])
    assert announce(one, 100.0, 45.0) == "main run 100 tx/s for 30 s; estimated duration 45 s"
