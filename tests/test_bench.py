"""Unit tests of the bench harness: histogram, knee finder, analysis and report schema."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from gmchain.bench.hdr import Histogram
from gmchain.bench.knee import SweepPoint, find_knee, is_healthy
from gmchain.bench.loadgen import LoadResult
from gmchain.bench.report import REQUIRED_FIELDS, analyze, check_schema

NAN = float("nan")


def _nearest_rank(sorted_values: list[int], p: float) -> int:
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


@pytest.mark.parametrize("seed", range(5))
def test_histogram_percentiles_match_sorted_list_within_0_1_percent(seed: int) -> None:
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(9, 1.5)) for _ in range(rng.randint(1, 20_000))]
    h = Histogram()
    h.record_many(values)
    values.sort()
    for p in (0, 1, 50, 90, 99, 99.9, 100):
        exact = _nearest_rank(values, p)
        got = h.percentile(p)
        assert abs(got - exact) <= exact / 1000 + 1, (p, got, exact)
    assert h.max == values[-1] and h.min == values[0] and h.count == len(values)
    assert h.mean() == pytest.approx(sum(values) / len(values))


def test_histogram_small_values_are_exact() -> None:
    h = Histogram()
    h.record_many([5, 1, 3, 2, 4])
    assert [h.percentile(p) for p in (20, 40, 60, 80, 100)] == [1, 2, 3, 4, 5]


def test_histogram_merge_equals_recording_both() -> None:
    rng = random.Random(7)
    a_vals = [rng.randint(0, 10**7) for _ in range(3000)]
    b_vals = [rng.randint(0, 10**5) for _ in range(2000)]
    a, b, both = Histogram(), Histogram(), Histogram()
    a.record_many(a_vals)
    b.record_many(b_vals)
    both.record_many(a_vals + b_vals)
    a.merge(b)
    for p in (1, 50, 99, 99.9):
        assert a.percentile(p) == both.percentile(p)
    assert (a.count, a.max, a.min) == (both.count, both.max, both.min)


def test_histogram_rejects_negative_and_bad_percentile() -> None:
    h = Histogram()
    with pytest.raises(ValueError):
        h.record(-1)
    with pytest.raises(ValueError):
        h.percentile(101)
    assert h.percentile(50) == 0


def _pt(offered: float, committed: float, success: float = 1.0, p99: float = 100) -> SweepPoint:
    return SweepPoint(
        offered_tps=offered, committed_tps=committed, success_rate=success, p99_ms=p99
    )


def test_knee_is_last_point_that_keeps_up() -> None:
    # Synthetic saturation curve: committed = min(offered, 2400) with noise above the knee.
    pts = [_pt(r, min(r, 2400) * (0.9 if r > 2400 else 1.0)) for r in range(500, 5001, 500)]
    knee = find_knee(pts)
    assert knee is not None and knee.offered_tps == 2000
    assert not is_healthy(_pt(2500, 2374)) and is_healthy(_pt(2500, 2375))


def test_knee_respects_success_rate_and_latency_bound() -> None:
    pts = [_pt(1000, 1000), _pt(2000, 1990, success=0.9), _pt(1500, 1500, p99=900)]
    assert find_knee(pts).offered_tps == 1500  # type: ignore[union-attr]
    assert find_knee(pts, p99_limit_ms=500).offered_tps == 1000  # type: ignore[union-attr]
    assert find_knee([_pt(1000, 10)]) is None


def _synthetic(n: int = 1000, rate: float = 100.0, lat: float = 0.2) -> LoadResult:
    t0 = 1000.0
    due = [t0 + i / rate for i in range(n)]
    res = LoadResult(
        t0=t0,
        due=due,
        sent=list(due),
        acked=[d + 0.001 for d in due],
        committed=[d + lat for d in due],
        errors=Counter(),
        heads=[(h, t0 + h * 0.1, 10, 0) for h in range(1, 110)],
        receipts_checked=n,
        receipts_ok=n,
        cpu_s=1.0,
        wall_s=10.0,
    )
    return res


def test_analyze_counts_window_latency_and_failures() -> None:
    res = _synthetic()
    for i in range(900, 950):  # 50 refused
        res.acked[i] = NAN
        res.committed[i] = NAN
    res.errors["-32010: pool full"] = 50
    for i in range(950, 960):  # 10 accepted, never committed
        res.committed[i] = NAN
    a = analyze(res, rate=100.0, warmup_s=2.0, duration_s=10.0)
    assert a["latency_ms"]["p50"] == pytest.approx(200, rel=0.002)
    assert a["counts"]["committed"] == 940
    assert a["success_rate"] == pytest.approx(0.94)
    assert a["failures"]["-32010: pool full"] == 50
    assert a["failures"]["accepted but not committed before the drain deadline"] == 10
    # Commits at due + 0.2 s: those in [t0 + 2, t0 + 10] minus the 60 lost ones in the window.
    in_window = sum(1 for c in res.committed if c == c and 1002 <= c <= 1010)
    assert a["tps_committed"] == pytest.approx(in_window / 8, abs=0.1)
    assert sum(s["offered"] for s in a["series"]) == 1000
    assert a["blocks"]["txs_per_block_mean"] == 10
    assert a["blocks"]["interval_ms"]["p50"] == pytest.approx(100, rel=0.01)


def test_analyze_scales_tps_by_failed_receipts() -> None:
    res = _synthetic()
    res.receipts_ok = res.receipts_checked // 2
    res.receipt_failures["duplicate record"] = res.receipts_checked // 2
    a = analyze(res, rate=100.0, warmup_s=2.0, duration_s=10.0)
    full = analyze(_synthetic(), rate=100.0, warmup_s=2.0, duration_s=10.0)
    assert a["tps_committed"] == pytest.approx(full["tps_committed"] / 2, abs=0.1)
    assert a["success_rate"] == pytest.approx(0.5)


def _full_report() -> dict[str, object]:
    a = analyze(_synthetic(), rate=100.0, warmup_s=2.0, duration_s=10.0)
    return {
        "profile": "single",
        "command": "gmchain bench",
        **a,
        "nodes": {"dev": {"cpu_pct_mean": 1, "cpu_pct_max": 2, "rss_mb_max": 3}},
        "ceiling_tps": 8000.0,
        "ratio_to_ceiling": 0.01,
        "manifest": {
            "date_utc": "x",
            "cpu_model": "cpu",
            "cores": 2,
            "memory_gb": 1,
            "python": "3.11",
            "openssl": "3",
            "git_commit": "abc",
        },
        "microbench": {
            "sm2_verify_per_s_1thread": 1,
            "sm2_verify_per_s_all_threads": 2,
            "threads": 2,
            "sm3_mb_per_s": 3,
            "synced_writes_per_s": 4,
        },
        "signing": {"cpu_s": 1},
        "load": {"batch": 20},
        "parameters": {"max_block_txs": 5000},
        "definitions": {"committed": "..."},
    }


def test_schema_accepts_full_report_and_names_missing_fields() -> None:
    rep = _full_report()
    assert check_schema(rep) == []
    assert "tps_committed" in REQUIRED_FIELDS
    del rep["ceiling_tps"]
    rep["latency_ms"] = {"p50": 1}
    rep["success_rate"] = 1.5
    problems = check_schema(rep)
    assert "missing field 'ceiling_tps'" in problems
    assert "missing latency_ms.p999" in problems
    assert "success_rate outside [0, 1]" in problems


def test_analyze_counts_unsent_and_committed_without_reply() -> None:
    res = _synthetic(n=100)
    for i in range(90, 100):  # never acknowledged ...
        res.acked[i] = NAN
    for i in range(95, 100):  # ... of which 5 never committed either (still queued)
        res.committed[i] = NAN
    a = analyze(res, rate=100.0, warmup_s=0.0, duration_s=1.0)
    assert a["counts"]["committed"] == 95
    assert a["failures"] == {
        "not acknowledged when the generator stopped (backlog or reply lost)": 5
    }
    assert a["success_rate"] == pytest.approx(0.95)


def test_auto_batch_holds_at_most_10_ms_of_transactions() -> None:
    from gmchain.bench.run import BATCH_WINDOW_S, batch_for

    assert batch_for(100, 0) == 1  # a fixed 20 held the average tx back 95 ms at 100 tx/s
    assert batch_for(1000, 0) == 10 and batch_for(50_000, 0) == 100  # the server's cap
    assert batch_for(3, 0) == 1 and batch_for(100, 20) == 20  # an explicit --batch wins
    for rate in (10, 100, 700, 1600, 3000):
        b = batch_for(rate, 0)
        assert (b - 1) / rate <= BATCH_WINDOW_S + 1e-9  # first-to-last due spread of a batch


def test_loopback_answer_size_and_a_run_without_the_ceiling() -> None:
    """bench/loopback.py: the fixed answer makes a 2,048-byte reply; a ceiling that failed to be
    measured gives no ratio and the report says why; a report from before the ceiling existed
    renders its queries table as it always did (its committed Markdown stays --render's)."""
    import json

    from gmchain.bench.doc import Doc, to_markdown
    from gmchain.bench.human import _queries
    from gmchain.bench.loopback import REPLY_BYTES, fixed_result, with_loopback_ratios

    reply = '{"jsonrpc":"2.0","id":1,"result":' + fixed_result() + "}"
    assert len(reply) == REPLY_BYTES == 2048 and json.loads(reply)["result"]["data"][:2] == "0x"
    lat = {"p50": 1.0, "p99": 2.0}
    qs = [{"kind": "block", "queries_per_s": 5000.0, "latency_ms": lat}]
    assert with_loopback_ratios(qs, {"http_loopback_qps": 8000.0})[0]["ratio_to_http_loopback"]
    assert qs[0]["ratio_to_http_loopback"] == 0.625
    failed = {"http_loopback_qps": None, "http_loopback": {"error": "OSError()"}}
    assert with_loopback_ratios(qs, failed)[0]["ratio_to_http_loopback"] is None
    md = to_markdown(Doc(title="t", sections=[_queries({"queries": qs, "microbench": failed})]), {})
    assert "| block | 5000.0 | — | 1.0 | 2.0 |" in md
    assert "HTTP loopback ceiling: not measured (OSError())." in md
    del qs[0]["ratio_to_http_loopback"]
    old = to_markdown(Doc(title="t", sections=[_queries({"queries": qs, "microbench": {}})]), {})
    assert "| kind | queries/s | p50 ms | p99 ms |" in old
    assert "| block | 5000.0 | 1.0 | 2.0 |" in old
    assert "loopback" not in old
