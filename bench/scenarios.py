"""The run's plan and its CAICT scenarios: schedule and time estimate, verdicts, headline.

Rules this module keeps:
1. A run's phases are planned before it starts (`plan_phases`), so the operator is told what will
   run and for about how long before anything runs, and every phase line states the time left
   (bench.run rule 7). Estimates: a phase's seconds + PHASE_OVERHEAD_S (load child start, drain,
   receipt check) + its signing at the measured signing rate; queries: their seconds + 3 each.
2. CAICT / TrustedBench criteria (`CRITERIA`), checked on every scenario and reported with the
   scenario's duration: pressure (stress) at the knee's committed rate, send/commit <= 1/KEEP_UP
   (~1) and success >= 95 %; spike at 2x the knee, send/commit ~2 and success >= 75 %; stability
   at 20 % of the knee, success > 95 % (strictly), with RSS and latency drift over its duration.
3. Every phase carries its saturation verdict (bench.knee rule 3). The headline is the knee of a
   rate sweep when one ran; otherwise this run's numbers if it was not past saturation; otherwise
   there is none, and the report says PAST SATURATION with the offered and committed rates.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from typing import Any

from gmchain.bench.knee import KEEP_UP, classify
from gmchain.bench.loadgen import hms
from gmchain.bench.run import Harness, kill_leader, kill_one, restart_after_blocks, window_p50s

__all__ = [
    "CRITERIA",
    "PHASE_OVERHEAD_S",
    "Schedule",
    "announce",
    "caict",
    "faults",
    "headline",
    "plan_phases",
    "runs_caict",
    "saturation_of",
    "sweep_rates",
]

PHASE_OVERHEAD_S = 10.0
SWEEP_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)

CRITERIA: dict[str, dict[str, Any]] = {
    "stress": {
        "name": "pressure (stress)",
        "rate": "the knee's committed TPS",
        "send_commit": f"≈ 1 (≤ {1 / KEEP_UP:.2f})",
        "min_success": 0.95,
        "strict": False,
    },
    "spike": {
        "name": "spike",
        "rate": "2 × the knee's committed TPS",
        "send_commit": "≈ 2",
        "min_success": 0.75,
        "strict": False,
    },
    "stability": {
        "name": "stability",
        "rate": "20 % of the knee's committed TPS",
        "send_commit": "≈ 1",
        "min_success": 0.95,
        "strict": True,
    },
}


def sweep_rates(args: argparse.Namespace, base: float) -> list[float]:
    if args.sweep and args.sweep != "auto":
        return [float(r) for r in str(args.sweep).split(",")]
    return [float(round(base * f)) for f in SWEEP_FACTORS]


def runs_caict(args: argparse.Namespace) -> bool:
    return args.scenario in ("caict", "all") or bool(args.sweep)


def plan_phases(args: argparse.Namespace, rate: float) -> list[tuple[str, float]]:
    """(label, load seconds) of every phase of the run, in order (rule 1)."""
    out = [("main run", float(args.duration))]
    if runs_caict(args):
        rates = sweep_rates(args, rate)
        out += [
            (f"sweep point {k + 1}/{len(rates)}", args.sweep_seconds) for k in range(len(rates))
        ]
        out += [("stress", args.duration), ("spike", args.spike_seconds)]
        out += [("stability", args.stability_seconds)]
    if args.scenario in ("faults", "all") and args.profile == "cluster4":
        out += [("kill one validator", args.duration), ("kill the leader", args.duration)]
        out += [("restart and catch up", max(args.duration, 30.0))]
    return out


class Schedule:
    """Time left in the run: set on the harness before each phase (rule 1)."""

    def __init__(self, h: Harness, phases: list[tuple[str, float]], sign_per_s: float) -> None:
        self.h = h
        self.phases = list(phases)
        self.sign_per_s = max(1.0, sign_per_s)
        self.rate = 0.0

    def cost(self, seconds: float, rate: float) -> float:
        return seconds + PHASE_OVERHEAD_S + rate * seconds / self.sign_per_s

    def total_s(self, rate: float, query_s: float) -> float:
        return sum(self.cost(s, rate) for _, s in self.phases) + 4 * (query_s + 3) * (query_s > 0)

    def begin(self, label: str, rate: float, query_s: float = 0.0) -> None:
        """Drop the phases planned before `label` (a sweep may stop early) and set the rest."""
        labels = [p[0] for p in self.phases]
        if label in labels:
            self.phases = self.phases[labels.index(label) :]
        self.h.remaining_after_s = self.total_s(rate, query_s) - self.cost(self.phases[0][1], rate)


def announce(args: argparse.Namespace, rate: float, total_s: float) -> str:
    """What the run will do and for about how long, printed before it starts (rule 1)."""
    parts = [f"main run {rate:g} tx/s for {hms(args.duration)}"]
    if runs_caict(args):
        n = len(sweep_rates(args, rate))
        why = "--sweep runs the whole CAICT suite" if args.sweep else "the CAICT suite"
        parts = [
            f"{why}: {parts[0]}, a rate sweep of {n} points × {hms(args.sweep_seconds)}, then "
            f"stress at the knee ({hms(args.duration)}), spike at 2× the knee "
            f"({hms(args.spike_seconds)}) and stability at 20 % of the knee "
            f"({hms(args.stability_seconds)})"
        ]
    if args.scenario in ("faults", "all") and args.profile == "cluster4":
        parts.append("three fault drills")
    return "; ".join(parts) + f"; estimated duration {hms(total_s)}"


def saturation_of(a: dict[str, Any], knee_offered: float | None) -> dict[str, Any]:
    return classify(
        offered_tps=a["offered_tps"],
        committed_tps=a["tps_committed"],
        success_rate=a["success_rate"],
        p50_series_ms=window_p50s(a),
        knee_offered_tps=knee_offered,
    ).to_json()


def _downsample(series: list[dict[str, Any]], max_points: int = 720) -> list[dict[str, Any]]:
    """Per-second rows merged k at a time (rates averaged, median p50, max p99)."""
    k = max(1, math.ceil(len(series) / max_points))
    out = []
    for i in range(0, len(series), k):
        g = series[i : i + k]
        p50 = [p["p50_ms"] for p in g if p["p50_ms"] is not None]
        p99 = [p["p99_ms"] for p in g if p["p99_ms"] is not None]
        row = {"t": g[0]["t"], "seconds": len(g)}
        row |= {f: round(sum(p[f] for p in g) / len(g), 1) for f in ("offered", "committed")}
        row |= {"p50_ms": statistics.median(p50) if p50 else None, "p99_ms": max(p99, default=None)}
        out.append(row)
    return out


def _drift(h: Harness, a: dict[str, Any]) -> dict[str, Any]:
    """RSS per node and median latency: the first vs the last tenth of the window (rule 2)."""
    t0 = h.sampler.origin + a["t0_s"]
    w0, w1 = a["window_s"]
    tenth = max(1.0, (w1 - w0) / 10)
    hours = max(1e-9, (w1 - w0) / 3600)
    nodes = {}
    for name, pts in h.sampler.series.items():
        # Samples come about once a second (later under load): 1 s of slack on either side,
        # then the first and last tenth of the samples, at least one each.
        win = [p[2] for p in pts if t0 + w0 - 1 <= p[0] <= t0 + w1 + 1]
        k = max(1, len(win) // 10)
        if win:
            mb0, mb1 = sum(win[:k]) / k / 2**20, sum(win[-k:]) / k / 2**20
            nodes[name] = {
                "rss_mb_first": round(mb0, 1),
                "rss_mb_last": round(mb1, 1),
                "rss_mb_per_hour": round((mb1 - mb0) / hours, 1),
            }
    s = [p for p in a["series"] if w0 <= p["t"] < w1 and p["p50_ms"] is not None]
    first_lat = [p["p50_ms"] for p in s if p["t"] < w0 + tenth]
    last_lat = [p["p50_ms"] for p in s if p["t"] >= w1 - tenth]
    return {
        "window_s": w1 - w0,
        "nodes": nodes,
        "p50_ms_first": statistics.median(first_lat) if first_lat else None,
        "p50_ms_last": statistics.median(last_lat) if last_lat else None,
    }


def _verdict(
    h: Harness, name: str, a: dict[str, Any], knee_offered: float | None
) -> dict[str, Any]:
    c = CRITERIA[name]
    need = c["min_success"]
    ok = a["success_rate"] > need if c["strict"] else a["success_rate"] >= need
    if name == "stress":
        ok = ok and a["tps_committed"] >= KEEP_UP * a["offered_tps"]
    out = {
        "scenario": c["name"],
        "offered_tps": a["offered_tps"],
        "tps_committed": a["tps_committed"],
        "send_commit_ratio": round(a["offered_tps"] / a["tps_committed"], 3)
        if a["tps_committed"]
        else None,
        "success_rate": a["success_rate"],
        "required_success": need,
        "criterion": f"rate {c['rate']}; send/commit {c['send_commit']}; success "
        f"{'>' if c['strict'] else '≥'} {need:.0%}",
        "passed": ok,
        "duration_s": a["duration_s"],
        "batch": a["batch"],
        "latency_ms": a["latency_ms"],
        "counts": a["counts"],
        "failures": a["failures"],
        "nodes": a["nodes"],
        "t0_s": a["t0_s"],
        "window_s": a["window_s"],
        "saturation": saturation_of(a, knee_offered if name != "spike" else None),
    }
    if name == "stability":
        out["series"] = _downsample(a["series"])
        out["drift"] = _drift(h, a)
    return out


def caict(h: Harness, args: argparse.Namespace, base: float, sched: Schedule) -> dict[str, Any]:
    """Rule 2: the sweep, then stress, spike and stability around its knee."""
    rates = sweep_rates(args, base)
    labels = [f"sweep point {k + 1}/{len(rates)}" for k in range(len(rates))]
    sweep = h.sweep(rates, args.sweep_seconds, on_point=lambda k: sched.begin(labels[k], base))
    out: dict[str, Any] = {"sweep": sweep}
    knee = sweep["knee"]
    knee_rate = (knee or {}).get("committed_tps") or rates[0]
    knee_offered = (knee or {}).get("offered_tps")
    for name, rate, secs in (
        ("stress", knee_rate, args.duration),
        ("spike", 2 * knee_rate, args.spike_seconds),
        ("stability", round(0.2 * knee_rate, 1), args.stability_seconds),
    ):
        sched.begin(name, rate)
        a = h.phase(rate, secs, label=name)
        out[name] = _verdict(h, name, a, knee_offered)
    return out


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """Rule 3."""
    sat = report["saturation"]["verdict"]
    knee = (report.get("sweep") or {}).get("knee")
    past = None
    if sat == "past":
        past = (
            f"PAST SATURATION: offered {report['offered_tps']:g} tx/s, committed "
            f"{report['tps_committed']:g} TPS"
        )
    if knee:
        pt = next(p for p in report["sweep"]["points"] if p["offered_tps"] == knee["offered_tps"])
        return {
            "source": "knee of the rate sweep",
            "offered_tps": knee["offered_tps"],
            "tps_committed": knee["committed_tps"],
            "latency_ms": {"p50": pt["latency_ms"]["p50"], "p99": pt["latency_ms"]["p99"]},
            "past_saturation": past,
        }
    if sat != "past":
        return {
            "source": f"this run ({sat} the knee)" if sat == "at" else "this run (below the knee)",
            "offered_tps": report["offered_tps"],
            "tps_committed": report["tps_committed"],
            "latency_ms": {k: report["latency_ms"][k] for k in ("p50", "p99")},
            "past_saturation": None,
        }
    why = "no healthy sweep point" if report.get("sweep") else "no sweep ran (add --sweep)"
    return {
        "source": None,
        "why_none": f"this run was past saturation and {why}: the knee is below "
        f"{report['offered_tps']:g} tx/s",
        "past_saturation": past,
    }


def faults(
    h: Harness, args: argparse.Namespace, rate: float, out: dict[str, Any], sched: Schedule
) -> None:
    """The three cluster4 drills; results go into `out` as each finishes."""
    from gmchain.node.cluster import start_nodes

    d = args.duration
    sched.begin("kill one validator", rate)
    a = h.phase(rate, d, actions=[(d / 2, kill_one("node3"))], label="kill one validator")
    t_kill = next((x.get("t") for x in a["actions"] if "t" in x), d / 2)
    series = a["series"]
    w0 = min(int(args.warmup), int(t_kill) - 1)
    before = [p["committed"] for p in series if w0 <= p["t"] < t_kill]
    after = [p["committed"] for p in series if t_kill + 2 <= p["t"] < d]
    b = sum(before) / len(before) if before else 0.0
    f = sum(after) / len(after) if after else 0.0
    out["kill_one_validator"] = {
        "offered_tps": rate,
        "duration_s": d,
        "tps_before": round(b, 1),
        "tps_after": round(f, 1),
        "kept_pct": round(100 * f / b, 1) if b else None,
        "actions": a["actions"],
        "success_rate": a["success_rate"],
        "latency_ms": a["latency_ms"],
    }
    start_nodes(h.system.directory, wait_s=60)
    time.sleep(3)
    sched.begin("kill the leader", rate)
    a = h.phase(rate, d, actions=[(d / 2, kill_leader)], label="kill the leader")
    res = h.last_result
    gap = None
    if res is not None:
        t_k = next((x.get("t") for x in a["actions"] if "t" in x), d / 2) + res.t0
        hs = sorted(x[1] for x in res.heads)
        gaps = [b2 - a2 for a2, b2 in itertools.pairwise(hs) if b2 >= t_k and a2 <= t_k + 30]
        gap = round(max(gaps), 3) if gaps else None
    out["kill_leader"] = {
        "offered_tps": rate,
        "duration_s": d,
        "commit_gap_s": gap,
        "actions": a["actions"],
        "success_rate": a["success_rate"],
        "latency_ms": a["latency_ms"],
    }
    start_nodes(h.system.directory, wait_s=60)
    time.sleep(3)
    d2 = max(d, 30.0)
    sched.begin("restart and catch up", rate)
    a = h.phase(
        rate, d2, actions=[(5.0, restart_after_blocks("node2", 10))], label="restart and catch up"
    )
    out["restart_catch_up"] = {
        "offered_tps": rate,
        "duration_s": d2,
        "actions": a["actions"],
        "success_rate": a["success_rate"],
        "latency_ms": a["latency_ms"],
    }
    start_nodes(h.system.directory, wait_s=60)
