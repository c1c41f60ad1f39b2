"""Turning raw load results into the report: analysis, JSON schema, Markdown, PNG charts.

Rules this module keeps:
1. Definitions (printed in every report, `DEFINITIONS`): committed = in a block with a quorum
   certificate, fsynced on the answering node (the first node to announce it on newHeads);
   TPS = committed valid transactions over the steady window after warm-up; accepted TPS
   (acknowledged by gm_sendRawTransaction) is reported separately; latency = commit time -
   due time (open loop).
2. Stable field names: `REQUIRED_FIELDS` are always present (`check_schema` enforces it); new
   fields may be added, none renamed.
3. Analysis is a pure function of the recorded times, so it is unit-tested on synthetic results.
4. Charts need matplotlib (in the `[node]` extra); without it the report says so and carries no
   PNG, and nothing else changes.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

from gmchain.bench.hdr import Histogram
from gmchain.bench.loadgen import LoadResult

__all__ = [
    "DEFINITIONS",
    "REQUIRED_FIELDS",
    "analyze",
    "check_schema",
    "render_markdown",
    "write_charts",
]

DEFINITIONS = {
    "committed": "in a block with a quorum certificate, fsynced on the answering node "
    "(the transaction id is in a block announced on newHeads; every node is watched and the "
    "first announcement of a height counts)",
    "tps_committed": "committed valid transactions (receipt status OK) whose commit falls in the "
    "steady window [warmup, duration], divided by the window length",
    "tps_accepted": "transactions acknowledged by gm_sendRawTransaction in the steady window, "
    "divided by its length",
    "latency": "commit time minus the transaction's due time t0 + i/rate (open loop, so queueing "
    "in the generator or the node is included); HDR histogram, nearest-rank percentiles",
    "success_rate": "committed valid transactions / transactions scheduled in the whole run",
    "ceiling_tps": "SM2 verifications/s on all threads of this machine / number of nodes "
    "sharing it",
}

REQUIRED_FIELDS = (
    "tps_committed",
    "tps_accepted",
    "latency_ms",
    "success_rate",
    "ceiling_tps",
    "ratio_to_ceiling",
    "counts",
    "failures",
    "series",
    "blocks",
    "generator",
    "nodes",
    "manifest",
    "microbench",
    "definitions",
)
LATENCY_FIELDS = ("p50", "p90", "p99", "p999", "max")


def _ok(x: float) -> bool:
    return x == x  # not NaN


def analyze(res: LoadResult, *, rate: float, warmup_s: float, duration_s: float) -> dict[str, Any]:
    """Rule 1 over one load phase; times relative to the phase's t0."""
    t0 = res.t0
    w0, w1 = t0 + warmup_s, t0 + duration_s
    win = max(1e-9, w1 - w0)
    n = len(res.due)
    valid_frac = res.receipts_ok / res.receipts_checked if res.receipts_checked else 1.0
    committed_idx = [i for i in range(n) if _ok(res.committed[i])]
    in_win = sum(1 for i in committed_idx if w0 <= res.committed[i] <= w1)
    acked_in_win = sum(1 for t in res.acked if _ok(t) and w0 <= t <= w1)
    hist = Histogram()
    for i in committed_idx:
        if w0 <= res.due[i] <= w1:
            hist.record(max(0, int((res.committed[i] - res.due[i]) * 1e6)))
    acked = sum(1 for t in res.acked if _ok(t))
    refused = sum(res.errors.values())
    committed = len(committed_idx)
    invalid = round(committed * (1 - valid_frac))
    failures: dict[str, int] = dict(res.errors)
    acked_committed = sum(1 for i in committed_idx if _ok(res.acked[i]))
    lost = acked - acked_committed
    if lost > 0:
        failures["accepted but not committed before the drain deadline"] = lost
    if invalid:
        failures["committed with a failed receipt (estimated from the sample)"] = invalid
        for why, c in res.receipt_failures.items():
            failures[f"receipt: {why}"] = c
    # Neither acknowledged, refused nor committed: still queued or in flight when the
    # generator gave up (a committed tx whose reply was lost counts as committed).
    unsent = n - acked - refused - (committed - acked_committed)
    if unsent > 0:
        failures["not acknowledged when the generator stopped (backlog or reply lost)"] = unsent
    series = _series(res, t0)
    return {
        "tps_committed": round(in_win * valid_frac / win, 1),
        "tps_accepted": round(acked_in_win / win, 1),
        "offered_tps": rate,
        "latency_ms": hist.summary_ms(),
        "success_rate": round((committed - invalid) / n, 4) if n else 0.0,
        "counts": {
            "scheduled": n,
            "acknowledged": acked,
            "refused": refused,
            "committed": committed,
            "committed_valid": committed - invalid,
            "receipts_checked": res.receipts_checked,
            "receipts_ok": res.receipts_ok,
        },
        "failures": failures,
        "window_s": [warmup_s, duration_s],
        "series": series,
        "blocks": _blocks(res, w0, w1),
        "generator": {
            "cpu_s": round(res.cpu_s, 2),
            "wall_s": round(res.wall_s, 2),
            "cpu_pct_of_one_core": round(100 * res.cpu_s / res.wall_s, 1) if res.wall_s else 0.0,
            "watched_rpc_port": res.watched_port,
        },
    }


def _series(res: LoadResult, t0: float) -> list[dict[str, Any]]:
    """Per-second counts and commit latency percentiles (second k = [t0 + k, t0 + k + 1))."""
    last = max([t for t in res.committed if _ok(t)] + [res.due[-1] if res.due else t0])
    secs = max(1, math.ceil(last - t0))
    offered: Counter[int] = Counter()
    acked: Counter[int] = Counter()
    committed: Counter[int] = Counter()
    lat: dict[int, Histogram] = {}
    for i, d in enumerate(res.due):
        offered[int(d - t0)] += 1
        if _ok(res.acked[i]):
            acked[int(res.acked[i] - t0)] += 1
        c = res.committed[i]
        if _ok(c):
            k = int(c - t0)
            committed[k] += 1
            lat.setdefault(k, Histogram()).record(max(0, int((c - d) * 1e6)))
    out = []
    for k in range(secs):
        h = lat.get(k)
        out.append(
            {
                "t": k,
                "offered": offered[k],
                "accepted": acked[k],
                "committed": committed[k],
                "p50_ms": round(h.percentile(50) / 1000, 2) if h else None,
                "p99_ms": round(h.percentile(99) / 1000, 2) if h else None,
            }
        )
    return out


def _blocks(res: LoadResult, w0: float, w1: float) -> dict[str, Any]:
    heads = sorted(res.heads)
    # Intervals between announcements in arrival order (with several nodes watched, a height
    # may arrive after a higher one was gap-filled).
    inside = sorted((h for h in heads if w0 <= h[1] <= w1), key=lambda h: h[1])
    intervals = [b[1] - a[1] for a, b in itertools.pairwise(inside)]
    txs = [h[2] for h in inside]
    ih = Histogram()
    ih.record_many(int(x * 1e6) for x in intervals)
    return {
        "count_in_window": len(inside),
        "interval_ms": ih.summary_ms(),
        "txs_per_block_mean": round(sum(txs) / len(txs), 1) if txs else 0.0,
        "txs_per_block_max": max(txs) if txs else 0,
        "heights": [heads[0][0], heads[-1][0]] if heads else [],
        "max_gap_ms": round(max(intervals) * 1000, 1) if intervals else None,
    }


def check_schema(report: dict[str, Any]) -> list[str]:
    """Problems with a report's stable fields (rule 2); empty when it is well-formed."""
    problems = [f"missing field {f!r}" for f in REQUIRED_FIELDS if f not in report]
    lat = report.get("latency_ms", {})
    problems += [f"missing latency_ms.{f}" for f in LATENCY_FIELDS if f not in lat]
    if "success_rate" in report and not 0 <= report["success_rate"] <= 1:
        problems.append("success_rate outside [0, 1]")
    for f in ("tps_committed", "ceiling_tps", "ratio_to_ceiling"):
        v = report.get(f)
        if v is not None and (not isinstance(v, int | float) or v < 0):
            problems.append(f"{f} must be a non-negative number")
    return problems


def _fmt_lat(lat: dict[str, Any]) -> str:
    return " / ".join(f"{lat.get(k, 0):g}" for k in LATENCY_FIELDS)


def render_markdown(report: dict[str, Any]) -> str:
    m = report["manifest"]
    mb = report["microbench"]
    lines = [
        f"# gmchain bench — profile `{report['profile']}`",
        "",
        f"{m['date_utc']} · {m['cpu_model']} · {m['cores']} cores · {m['memory_gb']} GB · "
        f"Python {m['python']} · {m['openssl']} · commit {m['git_commit'][:12]}"
        + (" (dirty)" if m.get("git_dirty") else ""),
        "",
        f"Command: `{report['command']}`",
        "",
        "## Result",
        "",
        "| metric | value |",
        "|---|---|",
        f"| offered TPS | {report.get('offered_tps')} (batch {report['load']['batch']}) |",
        f"| committed TPS | **{report['tps_committed']}** |",
        f"| accepted TPS | {report['tps_accepted']} |",
        f"| latency ms p50/p90/p99/p99.9/max | {_fmt_lat(report['latency_ms'])} |",
        f"| success rate | {report['success_rate']:.2%} |",
        f"| SM2 ceiling TPS / ratio | {report['ceiling_tps']} / {report['ratio_to_ceiling']} |",
        f"| blocks in window / mean interval ms / txs per block | "
        f"{report['blocks']['count_in_window']} / {report['blocks']['interval_ms']['mean']} / "
        f"{report['blocks']['txs_per_block_mean']} |",
        f"| generator CPU | {report['generator']['cpu_pct_of_one_core']} % of one core "
        f"(+ {report['signing']['cpu_s']} CPU-s signing before the run) |",
        "",
        "Failures: " + (", ".join(f"{k}: {v}" for k, v in report["failures"].items()) or "none"),
        "",
        "## Microbenchmarks (same machine, before the run)",
        "",
        f"SM2 verify/s: {mb['sm2_verify_per_s_1thread']} (1 thread), "
        f"{mb['sm2_verify_per_s_all_threads']} (all {mb['threads']}); SM3 {mb['sm3_mb_per_s']} "
        f"MB/s; synced LevelDB writes/s {mb['synced_writes_per_s']}.",
        "",
        "## Nodes (CPU %, RSS)",
        "",
        "| node | CPU % mean | CPU % max | RSS MB max |",
        "|---|---|---|---|",
    ]
    for name, s in report["nodes"].items():
        lines.append(f"| {name} | {s['cpu_pct_mean']} | {s['cpu_pct_max']} | {s['rss_mb_max']} |")
    if report.get("queries"):
        lines += ["", "## Queries (closed loop)", "", "| kind | queries/s | p50 ms | p99 ms |"]
        lines.append("|---|---|---|---|")
        for q in report["queries"]:
            lat = q["latency_ms"]
            lines.append(f"| {q['kind']} | {q['queries_per_s']} | {lat['p50']} | {lat['p99']} |")
    if report.get("sweep"):
        lines += ["", "## Rate sweep", "", "| offered | committed | success | p50 ms | p99 ms |"]
        lines.append("|---|---|---|---|---|")
        for p in report["sweep"]["points"]:
            lines.append(
                f"| {p['offered_tps']} | {p['tps_committed']} | {p['success_rate']:.2%} | "
                f"{p['latency_ms']['p50']} | {p['latency_ms']['p99']} |"
            )
        lines.append("")
        lines.append(f"Knee: {report['sweep'].get('knee')}")
    for name, sc in report.get("scenarios", {}).items():
        lines += ["", f"## Scenario: {name}", "", "```", _short(sc), "```"]
    lines += ["", "## Parameters", "", "```"]
    lines += [f"{k} = {v}" for k, v in report["parameters"].items()]
    lines += ["```", "", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in report["definitions"].items()]
    if report.get("charts_note"):
        lines += ["", f"Charts: {report['charts_note']}"]
    for c in report.get("charts", []):
        lines += ["", f"![{Path(c).stem}]({Path(c).name})"]
    return "\n".join(lines) + "\n"


def _short(sc: dict[str, Any]) -> str:
    keep = {k: v for k, v in sc.items() if k not in ("series", "blocks", "counts", "generator")}
    return "\n".join(f"{k}: {v}" for k, v in keep.items())


def write_charts(report: dict[str, Any], out_dir: Path, stem: str) -> tuple[list[str], str]:
    """PNG charts (rule 4): throughput and latency over time; latency against offered load."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install matplotlib): no PNG charts"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    s = report["series"]
    t = [p["t"] for p in s]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    a1.plot(t, [p["offered"] for p in s], label="offered")
    a1.plot(t, [p["accepted"] for p in s], label="accepted")
    a1.plot(t, [p["committed"] for p in s], label="committed")
    a1.set_ylabel("tx/s")
    a1.legend()
    a1.set_title(f"gmchain bench {report['profile']}: throughput and latency over time")
    a2.plot(t, [p["p50_ms"] for p in s], label="p50")
    a2.plot(t, [p["p99_ms"] for p in s], label="p99")
    a2.set_ylabel("latency ms")
    a2.set_xlabel("seconds since start")
    a2.legend()
    p1 = out_dir / f"{stem}-time.png"
    fig.tight_layout()
    fig.savefig(p1, dpi=90)
    plt.close(fig)
    paths.append(str(p1))
    pts = report.get("sweep", {}).get("points") or []
    if pts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        x = [p["offered_tps"] for p in pts]
        for k in ("p50", "p99"):
            ax.plot(x, [p["latency_ms"][k] for p in pts], marker="o", label=k)
        ax.set_xlabel("offered TPS")
        ax.set_ylabel("latency ms")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title("latency against offered load")
        p2 = out_dir / f"{stem}-load.png"
        fig.tight_layout()
        fig.savefig(p2, dpi=90)
        plt.close(fig)
        paths.append(str(p2))
    return paths, ""
