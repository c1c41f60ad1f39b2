"""`gmchain bench`: the TPS / latency certification harness.

    gmchain bench --profile single|cluster4 [--duration S] [--rate R] [--sweep [R1,R2,...]]
                  [--scenario none|caict|faults|all] [--batch N] [--json FILE] [--md FILE]
                  [--html FILE]

Rules this module keeps:
1. One command from a fresh clone produces the full report: it starts the system itself in a
   fresh work directory (removed afterwards unless --keep), measures the machine first, signs the
   load, runs it, queries, and writes JSON (stable fields: bench.report.REQUIRED_FIELDS), and the
   human report as Markdown and self-contained HTML with SVG charts (bench.human).
2. Bare `gmchain bench` (no argument at all) prints the usage and exits 2: a run takes minutes
   and loads the machine, so it is never started by accident.
3. The generator's settings (batch, connections, keys) are part of the manifest. The batch is
   chosen once per run (`--batch N`, or automatically from `--rate`) and used by every phase,
   so the points of a sweep differ only in their rate.
4. Before it starts, the run says what it will do and its estimated duration
   (bench.scenarios rule 1). Goals are never asserted here: the report states numbers, where
   each run stood against the knee, and the CAICT criteria; docs/benchmarks.md judges goals.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from gmchain.bench.doc import to_html, to_markdown
from gmchain.bench.human import build_report, chart_files
from gmchain.bench.loadgen import hms
from gmchain.bench.loopback import measure_loopback, with_loopback_ratios
from gmchain.bench.manifest import ceiling_tps, machine_manifest, microbench
from gmchain.bench.nodes import (
    System,
    start_cluster4,
    start_single,
    terminate_as_interrupt,
    uninterrupted,
)
from gmchain.bench.report import DEFINITIONS, check_schema
from gmchain.bench.run import BATCH_WINDOW_S, Harness, LoadSettings, batch_for
from gmchain.bench.scenarios import (
    Schedule,
    announce,
    caict,
    faults,
    headline,
    plan_phases,
    runs_caict,
    saturation_of,
)
from gmchain.bench.workload import make_keys

__all__ = ["main"]

_DEFAULT_RATE = {"single": 3000.0, "cluster4": 1000.0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gmchain bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", choices=("single", "cluster4"), default="single")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (30)")
    p.add_argument("--rate", type=float, default=None, help="offered tx/s (single 3000, c4 1000)")
    p.add_argument(
        "--sweep",
        nargs="?",
        const="auto",
        default=None,
        help="run the whole CAICT suite (rate sweep to find the knee, then stress, spike, "
        "stability); optional comma-separated rates, default 0.25x..2x --rate",
    )
    p.add_argument("--sweep-seconds", type=float, default=10.0, help="seconds per sweep point")
    p.add_argument(
        "--scenario",
        choices=("none", "caict", "faults", "all"),
        default="none",
        help="caict: sweep + stress/spike/stability; faults: cluster4 kill/leader/restart drills",
    )
    p.add_argument("--spike-seconds", type=float, default=10.0, help="spike phase length (10)")
    p.add_argument(
        "--stability-seconds",
        type=float,
        default=60.0,
        help="stability phase length: 60 in CI, >= 3600 in `make soak`, 43200 at a site",
    )
    p.add_argument("--warmup", type=float, default=5.0, help="seconds excluded from TPS (5)")
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        help="transactions per JSON-RPC batch, the same for every phase (0 = auto: those due "
        "within 10 ms at --rate, 1..100)",
    )
    p.add_argument("--connections", type=int, default=16, help="HTTP keep-alive connections")
    p.add_argument("--keys", type=int, default=1000, help="sender keys admitted at genesis")
    p.add_argument("--query-seconds", type=float, default=5.0, help="per query kind; 0 = skip")
    p.add_argument(
        "--chain-blocks",
        type=int,
        default=0,
        help="single only: first build this many certified blocks into the node's store "
        "(bench/longchain.py; 100000 takes ~10-40 min), so the queries also read a long chain "
        "(0: start from genesis)",
    )
    p.add_argument("--chain-txs", type=int, default=2, help="transactions per built block (2)")
    p.add_argument("--micro-seconds", type=float, default=1.0, help="per microbenchmark figure")
    p.add_argument("--base-port", type=int, default=18545, help="first RPC port to use")
    p.add_argument(
        "--segment-seconds", type=float, default=600.0, help="longest load child (long phases)"
    )
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--md", metavar="FILE", help="Markdown report (default: next to --json)")
    p.add_argument("--html", metavar="FILE", help="HTML report (default: next to --json)")
    p.add_argument("--charts", metavar="DIR", help="SVG directory (default: next to --json)")
    p.add_argument(
        "--render",
        metavar="JSON",
        help="run nothing: rebuild the Markdown, HTML and SVG charts of an existing JSON report "
        "(next to it, or at --md/--html/--charts)",
    )
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
        return start_single(
            workdir / "single",
            _free_base(args.base_port, [0, 1]),
            keys,
            chain_blocks=args.chain_blocks,
            chain_txs=args.chain_txs,
        )
    b = _free_base(args.base_port, [0, 1, 2, 3, 12000, 12001, 12002, 12003])
    return start_cluster4(workdir / "cluster4", b, b + 12000, keys)


def main(argv: list[str]) -> int:
    with terminate_as_interrupt():  # bench.nodes rule 5
        return _main(argv)


def _main(argv: list[str]) -> int:
    # `gmchain bench -- --profile ...` and `gmchain bench run --profile ...` reach us with the
    # extra token (node/cli.py passes argparse.REMAINDER through); both mean the same thing.
    if argv[:1] in (["--"], ["run"]):
        argv = argv[1:]
    parser = _parser()
    if not argv:  # rule 2
        parser.print_usage(sys.stderr)
        print(
            "gmchain bench: nothing to do; a run needs at least one option, e.g. "
            "`gmchain bench --profile single --rate 1000` (see --help)",
            file=sys.stderr,
        )
        return 2
    args = parser.parse_args(argv)
    if args.render:
        args.json = args.json or args.render
        _write(args, json.loads(Path(args.render).read_text()), write_json=False)
        return 0
    command = "gmchain bench " + " ".join(shlex.quote(a) for a in argv)
    if args.scenario == "faults" and args.profile != "cluster4":
        print("error: --scenario faults needs --profile cluster4", file=sys.stderr)
        return 2
    if args.chain_blocks and args.profile != "single":
        print("error: --chain-blocks needs --profile single", file=sys.stderr)
        return 2
    rate = args.rate or _DEFAULT_RATE[args.profile]
    batch = batch_for(rate, args.batch)  # rule 3: once for the run
    manifest = machine_manifest()
    phases = plan_phases(args, rate)
    print(f"[bench] microbenchmarks ({args.micro_seconds:g} s each)…", flush=True)
    micro = microbench(args.micro_seconds)
    if args.query_seconds > 0:  # the queries' ceiling (bench/loopback.py rule 3)
        print(f"[bench] HTTP loopback ceiling ({args.micro_seconds:g} s)…", flush=True)
        try:
            loop = measure_loopback(args.micro_seconds)
        except Exception as exc:  # a microbenchmark that failed must not lose the run
            loop = {"queries_per_s": None, "error": repr(exc)}
            print(f"warning: HTTP loopback ceiling not measured: {exc!r}", file=sys.stderr)
        micro["http_loopback_qps"] = loop["queries_per_s"]
        micro["http_loopback"] = loop
    sign_per_s = 0.5 * float(micro["sm2_sign_per_s"]) * int(micro["threads"])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gmbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    keys = make_keys(args.keys)
    settings = LoadSettings(
        batch=batch,
        connections=args.connections,
        warmup_s=args.warmup,
        segment_s=args.segment_seconds,
    )
    print(f"[bench] starting {args.profile} in {workdir}…", flush=True)
    system = _start(args, workdir, keys)  # (stops what it started if it fails or is interrupted)
    h: Harness | None = None
    try:
        h = Harness(system, keys, settings)
        sched = Schedule(h, phases, sign_per_s)
        print(
            f"[bench] plan: {announce(args, rate, sched.total_s(rate, args.query_seconds))}",
            flush=True,
        )
        h.sampler.start()
        sched.begin("main run", rate, args.query_seconds)
        main_run = h.phase(rate, args.duration, label="main run")
        queries = []
        if args.query_seconds > 0:
            print(f"[bench] queries: 4 kinds × {args.query_seconds:g} s…", flush=True)
            queries = with_loopback_ratios(h.queries(args.query_seconds), micro)
        scenarios: dict[str, Any] = {}
        sweep = None
        if runs_caict(args):
            c = caict(h, args, rate, sched)
            sweep = c.pop("sweep")
            scenarios |= c
        if args.scenario in ("faults", "all") and args.profile == "cluster4":
            try:
                faults(h, args, rate / 2, scenarios, sched)
            except Exception as exc:  # report what ran; a failed drill must not lose the run
                scenarios["faults_error"] = repr(exc)
    finally:
        with uninterrupted():  # bench.nodes rule 5: a second signal cannot skip the stop
            if h is not None:
                h.sampler.stop()
            system.stop()
            if not args.keep and not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    manifest["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    n_nodes = len(system.nodes)
    ceiling = ceiling_tps(micro, n_nodes)
    knee_offered = ((sweep or {}).get("knee") or {}).get("offered_tps")
    report: dict[str, Any] = {
        "schema": "gmchain-bench/1",
        "profile": args.profile,
        "command": command,
        **{k: v for k, v in main_run.items() if k not in ("actions",)},
        "saturation": saturation_of(main_run, knee_offered),
        "ceiling_tps": ceiling,
        "ratio_to_ceiling": round(main_run["tps_committed"] / ceiling, 3) if ceiling else 0.0,
        "queries": queries,
        "scenarios": scenarios,
        "manifest": manifest,
        "microbench": micro,
        "parameters": system.params
        | {"nodes": n_nodes, "replay_window": "1000000 (bench genesis)"}
        | _built_chain(system),
        "load": {
            "batch": batch,
            "batch_setting": f"--batch {args.batch}"
            if args.batch
            else f"auto: the transactions due within {BATCH_WINDOW_S * 1000:g} ms at --rate "
            f"{rate:g}, fixed for every phase",
            "connections": args.connections,
            "keys": args.keys,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "workload": "evidence.submit, one new flow per record, ~410 B signed tx",
            "signing_cpu_s_total": round(h.signing_cpu_s, 2),
        },
        "node_series": h.sampler.export(),
        "definitions": DEFINITIONS,
    }
    if sweep is not None:
        report["sweep"] = sweep
    report["headline"] = headline(report)
    problems = check_schema(report)
    if problems:
        print("warning: report schema: " + "; ".join(problems), file=sys.stderr)
    _write(args, report)
    _summary(report)
    return 0


def _built_chain(system: System) -> dict[str, Any]:
    """What the run's chain held before the load (--chain-blocks), for the report."""
    lc = system.long_chain
    if lc is None:
        return {}
    return {
        "built_chain_blocks": lc.head,
        "built_chain_txs": lc.txs,
        "built_chain_build_s": lc.build_s,
    }


def _write(args: argparse.Namespace, report: dict[str, Any], *, write_json: bool = True) -> None:
    """JSON, Markdown, HTML and one SVG per chart (rule 1); without --json, Markdown to stdout."""
    out_json = Path(args.json) if args.json else None
    stem = out_json.stem if out_json else f"bench-{args.profile}"
    base = out_json.parent if out_json else Path(".")
    if out_json and write_json:  # first without the chart list: a rendering bug must not lose it
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(report, indent=1) + "\n")
    doc = build_report(report)
    chart_dir = Path(args.charts) if args.charts else base
    files = chart_files(doc, stem)
    md_path = Path(args.md) if args.md else (base / f"{stem}.md" if out_json else None)
    html_path = Path(args.html) if args.html else (base / f"{stem}.html" if out_json else None)
    if md_path or args.charts:
        chart_dir.mkdir(parents=True, exist_ok=True)
        for c in doc.charts():
            (chart_dir / files[c.name]).write_text(c.svg + "\n")
        report["charts"] = [str(chart_dir / f) for f in files.values()]
    if out_json and write_json:
        out_json.write_text(json.dumps(report, indent=1) + "\n")
    rel = {}
    if md_path:
        for n, f in files.items():
            rel[n] = os.path.relpath(chart_dir / f, md_path.parent)
    md = to_markdown(doc, rel)
    if md_path:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(md)
    if html_path:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(to_html(doc))
    if not out_json:
        print(md)


def _summary(report: dict[str, Any]) -> None:
    lat = report["latency_ms"]
    sat = report["saturation"]
    print(
        f"[bench] {report['profile']} main run: offered {report['offered_tps']:g}, committed "
        f"{report['tps_committed']} TPS ({sat['verdict']} the knee), accepted "
        f"{report['tps_accepted']}, p50 {lat['p50']} ms p99 {lat['p99']} ms, success "
        f"{report['success_rate']:.2%}, ceiling {report['ceiling_tps']} "
        f"(ratio {report['ratio_to_ceiling']}), batch {report['load']['batch']}",
        flush=True,
    )
    hl = report["headline"]
    if hl.get("past_saturation"):
        print(f"[bench] {hl['past_saturation']} — not a result", flush=True)
    if hl["source"]:
        print(
            f"[bench] headline ({hl['source']}): {hl['tps_committed']} TPS committed at "
            f"{hl['offered_tps']:g} offered, p50 {hl['latency_ms']['p50']} ms, "
            f"p99 {hl['latency_ms']['p99']} ms",
            flush=True,
        )
    else:
        print(f"[bench] no headline: {hl['why_none']}", flush=True)
    for _name, sc in report["scenarios"].items():
        if isinstance(sc, dict) and "passed" in sc:
            print(
                f"[bench] {sc['scenario']}: {'PASS' if sc['passed'] else 'FAIL'} "
                f"({hms(sc['duration_s'])}, offered {sc['offered_tps']:g}, committed "
                f"{sc['tps_committed']}, success {sc['success_rate']:.2%}; {sc['criterion']})",
                flush=True,
            )
    loop = report["microbench"].get("http_loopback_qps")
    for q in report["queries"]:
        ratio = q.get("ratio_to_http_loopback")
        share = f" ({ratio}× the HTTP loopback's {loop} /s)" if ratio is not None else ""
        print(f"[bench] query {q['kind']}: {q['queries_per_s']} /s{share}", flush=True)
