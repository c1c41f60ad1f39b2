"""`gmchain bench`: the TPS / latency certification harness.

    gmchain bench --profile single|cluster4 [--duration S] [--rate R | --sweep R1,R2,...]
                  [--scenario none|caict|faults|all] [--batch N] [--json FILE] [--md FILE]

Rules this module keeps:
1. One command from a fresh clone produces the full report: it starts the system itself in a
   fresh work directory (removed afterwards unless --keep), measures the machine first, signs the
   load, runs it, queries, and writes JSON (stable fields: bench.report.REQUIRED_FIELDS),
   Markdown and PNG charts.
2. The generator's settings (batch, connections, keys) are part of the manifest.
3. Goals are never asserted here: the report states numbers; docs/benchmarks.md judges them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gmchain.bench.manifest import ceiling_tps, machine_manifest, microbench
from gmchain.bench.nodes import System, start_cluster4, start_single
from gmchain.bench.report import DEFINITIONS, check_schema, render_markdown, write_charts
from gmchain.bench.run import (
    Harness,
    LoadSettings,
    batch_for,
    kill_leader,
    kill_one,
    restart_after_blocks,
)
from gmchain.bench.workload import make_keys

__all__ = ["main"]

_DEFAULT_RATE = {"single": 3000.0, "cluster4": 1000.0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gmchain bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=("single", "cluster4"), default="single")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (30)")
    p.add_argument("--rate", type=float, default=None, help="offered tx/s (single 3000, c4 1000)")
    p.add_argument("--sweep", default=None, help="comma-separated rates: find the knee")
    p.add_argument("--sweep-seconds", type=float, default=10.0, help="seconds per sweep point")
    p.add_argument(
        "--scenario",
        choices=("none", "caict", "faults", "all"),
        default="none",
        help="caict: sweep + stress/spike/stability; faults: cluster4 kill/leader/restart drills",
    )
    p.add_argument("--stability-seconds", type=float, default=60.0, help="CI: 60; a site: 43200")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds excluded from TPS (5)")
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        help="transactions per JSON-RPC batch (0 = auto: those due within 10 ms, 1..100)",
    )
    p.add_argument("--connections", type=int, default=16, help="HTTP keep-alive connections")
    p.add_argument("--keys", type=int, default=1000, help="sender keys admitted at genesis")
    p.add_argument("--query-seconds", type=float, default=5.0, help="per query kind; 0 = skip")
    p.add_argument("--micro-seconds", type=float, default=1.0, help="per microbenchmark figure")
    p.add_argument("--base-port", type=int, default=18545, help="first RPC port to use")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--md", metavar="FILE", help="Markdown report (default: next to --json)")
    p.add_argument("--charts", metavar="DIR", help="PNG directory (default: next to --json)")
    p.add_argument("--workdir", metavar="DIR", help="where the nodes live (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_base(base: int, offsets: list[int]) -> int:
    """The first base port >= `base` (steps of 10) with every base + offset free to bind."""
    for b in range(base, base + 2000, 10):
        if all(_free(b + o) for o in offsets):
            return b
    raise SystemExit(f"error: no free ports from {base}")


def _start(args: argparse.Namespace, workdir: Path, keys: list[Any]) -> System:
    if args.profile == "single":
        return start_single(workdir / "single", _free_base(args.base_port, [0, 1]), keys)
    b = _free_base(args.base_port, [0, 1, 2, 3, 12000, 12001, 12002, 12003])
    return start_cluster4(workdir / "cluster4", b, b + 12000, keys)


def _caict(h: Harness, args: argparse.Namespace, base: float) -> dict[str, Any]:
    rates = (
        [float(r) for r in args.sweep.split(",")]
        if args.sweep
        else [float(round(base * f)) for f in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)]
    )
    sweep = h.sweep(rates, args.sweep_seconds)
    out: dict[str, Any] = {"sweep": sweep}
    knee = (sweep["knee"] or {}).get("committed_tps") or rates[0]
    st = h.phase(knee, args.duration)
    out["stress"] = _verdict(st, knee, 0.95)
    sp = h.phase(2 * knee, max(10.0, args.sweep_seconds))
    out["spike"] = _verdict(sp, 2 * knee, 0.75)
    sb = h.phase(round(0.2 * knee), args.stability_seconds)
    out["stability"] = _verdict(sb, round(0.2 * knee), 0.95)
    return out


def _verdict(a: dict[str, Any], rate: float, need: float) -> dict[str, Any]:
    return {
        "offered_tps": rate,
        "tps_committed": a["tps_committed"],
        "success_rate": a["success_rate"],
        "required_success": need,
        "passed": a["success_rate"] >= need,
        "latency_ms": a["latency_ms"],
        "failures": a["failures"],
    }


def _faults(h: Harness, args: argparse.Namespace, rate: float, out: dict[str, Any]) -> None:
    """The three cluster4 drills; results go into `out` as each finishes."""
    from gmchain.node.cluster import start_nodes

    d = args.duration
    a = h.phase(rate, d, actions=[(d / 2, kill_one("node3"))])
    t_kill = next((x.get("t") for x in a["actions"] if "t" in x), d / 2)
    series = a["series"]
    w0 = min(int(args.warmup), int(t_kill) - 1)
    before = [p["committed"] for p in series if w0 <= p["t"] < t_kill]
    after = [p["committed"] for p in series if t_kill + 2 <= p["t"] < d]
    b = sum(before) / len(before) if before else 0.0
    f = sum(after) / len(after) if after else 0.0
    out["kill_one_validator"] = {
        "offered_tps": rate,
        "tps_before": round(b, 1),
        "tps_after": round(f, 1),
        "kept_pct": round(100 * f / b, 1) if b else None,
        "actions": a["actions"],
        "success_rate": a["success_rate"],
        "latency_ms": a["latency_ms"],
    }
    start_nodes(h.system.directory, wait_s=60)
    time.sleep(3)
    a = h.phase(rate, d, actions=[(d / 2, kill_leader)])
    res = h.last_result
    gap = None
    if res is not None:
        t_k = next((x.get("t") for x in a["actions"] if "t" in x), d / 2) + res.t0
        hs = sorted(x[1] for x in res.heads)
        gaps = [b2 - a2 for a2, b2 in itertools.pairwise(hs) if b2 >= t_k and a2 <= t_k + 30]
        gap = round(max(gaps), 3) if gaps else None
    out["kill_leader"] = {
        "offered_tps": rate,
        "commit_gap_s": gap,
        "actions": a["actions"],
        "success_rate": a["success_rate"],
        "latency_ms": a["latency_ms"],
    }
    start_nodes(h.system.directory, wait_s=60)
    time.sleep(3)
    a = h.phase(rate, max(d, 30.0), actions=[(5.0, restart_after_blocks("node2", 10))])
    out["restart_catch_up"] = {
        "offered_tps": rate,
        "actions": a["actions"],
        "success_rate": a["success_rate"],
    }
    start_nodes(h.system.directory, wait_s=60)


def main(argv: list[str]) -> int:
    # `gmchain bench -- --profile ...` and `gmchain bench run --profile ...` reach us with the
    # extra token (node/cli.py passes argparse.REMAINDER through); both mean the same thing.
    if argv[:1] in (["--"], ["run"]):
        argv = argv[1:]
    args = _parser().parse_args(argv)
    command = "gmchain bench " + " ".join(shlex.quote(a) for a in argv)
    if args.scenario == "faults" and args.profile != "cluster4":
        print("error: --scenario faults needs --profile cluster4", file=sys.stderr)
        return 2
    rate = args.rate or _DEFAULT_RATE[args.profile]
    manifest = machine_manifest()
    print(f"[bench] microbenchmarks ({args.micro_seconds} s each)…", flush=True)
    micro = microbench(args.micro_seconds)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gmbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    keys = make_keys(args.keys)
    settings = LoadSettings(batch=args.batch, connections=args.connections, warmup_s=args.warmup)
    print(f"[bench] starting {args.profile} in {workdir}…", flush=True)
    system = _start(args, workdir, keys)
    h = Harness(system, keys, settings)
    h.sampler.start()
    batch = batch_for(rate, args.batch)
    try:
        print(f"[bench] load: {rate:g} tx/s for {args.duration:g} s, batch {batch}", flush=True)
        main_run = h.phase(rate, args.duration)
        queries = h.queries(args.query_seconds) if args.query_seconds > 0 else []
        scenarios: dict[str, Any] = {}
        sweep = None
        if args.scenario in ("caict", "all") or args.sweep:
            print("[bench] CAICT scenarios (sweep, stress, spike, stability)…", flush=True)
            c = _caict(h, args, rate)
            sweep = c.pop("sweep")
            scenarios |= c
        if args.scenario in ("faults", "all") and args.profile == "cluster4":
            print("[bench] fault drills…", flush=True)
            try:
                _faults(h, args, rate / 2, scenarios)
            except Exception as exc:  # report what ran; a failed drill must not lose the run
                scenarios["faults_error"] = repr(exc)
    finally:
        h.sampler.stop()
        system.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    manifest["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    n_nodes = len(system.nodes)
    ceiling = ceiling_tps(micro, n_nodes)
    report: dict[str, Any] = {
        "schema": "gmchain-bench/1",
        "profile": args.profile,
        "command": command,
        **{k: v for k, v in main_run.items() if k not in ("actions",)},
        "ceiling_tps": ceiling,
        "ratio_to_ceiling": round(main_run["tps_committed"] / ceiling, 3) if ceiling else 0.0,
        "queries": queries,
        "scenarios": scenarios,
        "manifest": manifest,
        "microbench": micro,
        "parameters": system.params
        | {"nodes": n_nodes, "replay_window": "1000000 (bench genesis)"},
        "load": {
            "batch": batch,
            "batch_setting": args.batch or "auto (10 ms window)",
            "connections": args.connections,
            "keys": args.keys,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "workload": "evidence.submit, one new flow per record, ~410 B signed tx",
            "signing_cpu_s_total": round(h.signing_cpu_s, 2),
        },
        "definitions": DEFINITIONS,
    }
    if sweep is not None:
        report["sweep"] = sweep
    problems = check_schema(report)
    if problems:
        print("warning: report schema: " + "; ".join(problems), file=sys.stderr)
    out_json = Path(args.json) if args.json else None
    stem = out_json.stem if out_json else f"bench-{args.profile}"
    base = out_json.parent if out_json else Path(".")
    charts, note = write_charts(report, Path(args.charts) if args.charts else base, stem)
    report["charts"] = charts
    report["charts_note"] = note
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(report, indent=1) + "\n")
    md = render_markdown(report)
    md_path = Path(args.md) if args.md else (base / f"{stem}.md" if out_json else None)
    if md_path:
        md_path.write_text(md)
    lat = report["latency_ms"]
    print(
        f"[bench] {args.profile}: committed {report['tps_committed']} TPS (offered {rate:g}), "
        f"accepted {report['tps_accepted']}, p50 {lat['p50']} ms p99 {lat['p99']} ms, "
        f"success {report['success_rate']:.2%}, ceiling {ceiling} "
        f"(ratio {report['ratio_to_ceiling']})",
        flush=True,
    )
    for q in queries:
        print(f"[bench] query {q['kind']}: {q['queries_per_s']} /s", flush=True)
    if not out_json:
        print(md)
    return 0
