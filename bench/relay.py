"""`python -m gmchain.bench.relay`: relay latency and backlog clearing on a local platform
(issue 13 item 8; docs/benchmarks.md "Session 6 — relay latency and backlog").

    python -m gmchain.bench.relay [--dir D] [--base-port P] [--light-rate R --light-s S]
        [--high-rate R --high-s S] [--backlog N --backlog-rate R] [--fresh-rate R --fresh-s S]
        [--out DIR] [--keep]

A separate entry point, not a `--profile` of `python -m gmchain.bench`: that CLI starts one
chain of its own (bench/nodes.py), the platform is three chains and two relayers started by
`gmchain platform up`.

Rules this module keeps:
1. The platform is a real one: `init_platform` (node/platform.py rule 1) in D (a fresh temp dir
   by default) at free ports, the bench keys admitted as `member`s of org `firm-a` in firm-a's
   genesis before any node opens its store (bench/workload.py rule 1), then `gmchain platform
   up --dir D` as a subprocess (nodes, governance set-up, relayers with their default settings).
2. Load is the bench's: records pre-signed as the SDK signs them (bench/workload.py) and offered
   open-loop by the load generator in its own process (bench/loadgen.py), to firm-a only.
3. Each phase owns the seq range its records took in firm-a's outbox (read before and after the
   phase from the chains: node/platform_setup.py `read_progress`); its latencies come from the
   chains only (bench/relaystats.py rule 1): gm_getRelayedRecord(firm-a, seq) on the regulator,
   then gm_getBlockByNumber(arrived height) for the regulator block's timestamp.
4. Backlog: firm-a's relayer is stopped (node/platform_procs.py `stop_pid`, only its own pid),
   N records are queued and committed on firm-a, the relayer is started again exactly as
   `platform up` starts it, and fresh records are offered during the drain; progress (delivered,
   missing) is sampled once a second from the chains until missing = 0 or the drain timeout.
5. The platform is stopped at the end (`platform down`) unless --keep; D is removed only when
   it was a temp dir made here and --keep is not given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from gmchain.bench.loadgen import LoadPlan, LoadResult
from gmchain.bench.relaystats import (
    block_intervals_ms,
    cycle_durations,
    cycle_starts_ms,
    latencies_ms,
    percentiles,
    stage_split,
)
from gmchain.bench.run import _child_load, _in_child, batch_for
from gmchain.bench.workload import BENCH_REPLAY_WINDOW, admit_keys, make_keys, presign

__all__ = ["main", "measure_phase", "relay_settings"]

FIRM = "firm-a"
RPC_BATCH = 100
KEEP_RECORDS = 2000  # per-record rows kept in the JSON report for phases up to this size


def _free_base() -> int:
    from gmchain.node.cluster import _port_in_use

    for base in range(19000, 60000, 100):
        if not any(_port_in_use(base + k) for k in range(0, 64)):
            return base
    raise RuntimeError("no free port range")


def rpc_batch(url: str, calls: list[tuple[str, list[Any]]], timeout: float = 60) -> list[Any]:
    """JSON-RPC batch over HTTP (<= 100 calls a request); results in order, errors raise."""
    out: list[Any] = []
    for s in range(0, len(calls), RPC_BATCH):
        chunk = calls[s : s + RPC_BATCH]
        body = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(chunk)
        ]
        req = urllib.request.Request(
            url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            got = {r["id"]: r for r in json.loads(resp.read())}
        for i in range(len(chunk)):
            r = got[i]
            if "error" in r:
                raise RuntimeError(f"{chunk[i][0]}: {r['error']}")
            out.append(r["result"])
    return out


def relay_settings() -> dict[str, Any]:
    """What the platform's relayer runs with (node/platform_procs.py passes no tuning flags)."""
    from gmchain.crosschain.relay_plan import MAX_BATCH, MAX_BATCH_BYTES
    from gmchain.crosschain.relayer import RelayConfig

    c = RelayConfig()
    return {
        "interval_s": 2.0,  # `gmchain relay --interval` default: sleep between cycles
        "fresh_per_cycle": c.fresh,
        "sweep_per_cycle": c.sweep,
        "batch_max_packets": MAX_BATCH,
        "batch_max_bytes": MAX_BATCH_BYTES,
        "max_inflight": c.max_inflight,
        "proof_jobs": c.proof_jobs,
    }


class Platform:
    def __init__(
        self, d: Path, base_port: int, keys: int, relay_interval: float | None = None
    ) -> None:
        self.relay_interval = relay_interval
        from gmchain.node.platform import init_platform

        self.d = d
        self.doc = init_platform(d, validators=1, base_port=base_port)
        self.keys = make_keys(keys)
        admit_keys(d / FIRM / "genesis.json", self.keys, FIRM)  # rule 1
        self.firm_url = f"http://127.0.0.1:{self.doc['chains'][FIRM]['rpc_port']}"
        self.reg_url = f"http://127.0.0.1:{self.doc['chains']['regulator']['rpc_port']}"

    def up(self) -> float:
        t = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "gmchain.node.cli", "platform", "up", "--dir", str(self.d)],
            check=True,
            timeout=600,
        )
        return time.monotonic() - t

    def down(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "gmchain.node.cli", "platform", "down", "--dir", str(self.d)],
            check=False,
            timeout=120,
        )

    def progress(self) -> dict[str, Any]:
        from gmchain.node.platform_setup import read_progress

        p = asyncio.run(read_progress(self.reg_url, [(FIRM, self.firm_url)]))
        return dict(p["business"][0])

    def stop_relayer(self) -> int:
        from gmchain.node.platform_procs import RELAYER_STOP_S, relayer_pid, stop_pid

        pid = relayer_pid(self.d, self.doc, FIRM)
        if pid is None:
            raise RuntimeError("firm-a's relayer is not running")
        stop_pid(pid, RELAYER_STOP_S, lambda: relayer_pid(self.d, self.doc, FIRM) == pid)
        (self.d / "relayers" / f"{FIRM}.pid").unlink(missing_ok=True)
        return pid

    def start_relayer(self) -> None:
        """As `platform up` starts it; with `relay_interval` set, the same command plus
        `--interval` (the platform passes none: 2 s)."""
        from gmchain.node.platform_procs import start_relayer

        if self.relay_interval is None:
            start_relayer(self.d, self.doc, FIRM, 30.0)
            return
        import gmchain.node.platform_procs as procs
        from gmchain.node.daemon import DEV_PASSPHRASE

        cmd = procs._relayer_command(self.d, self.doc, FIRM)
        cmd += ["--interval", str(self.relay_interval)]
        env = dict(os.environ, GMCHAIN_PASSPHRASE=DEV_PASSPHRASE)
        with open(self.d / "relayers" / f"{FIRM}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(self.d.resolve()),
                env=env,
            )
        (self.d / "relayers" / f"{FIRM}.pid").write_text(str(proc.pid))
        time.sleep(2.0)

    def relayer_log(self) -> str:
        return (self.d / "relayers" / f"{FIRM}.log").read_text(errors="replace")


def offer(p: Platform, rate: float, seconds: float, label: str) -> tuple[LoadResult, float]:
    """Rule 2: sign rate*seconds records, offer them open-loop to firm-a; (result, sign wall)."""
    count = max(1, int(rate * seconds))
    signed = presign(
        p.keys, count, chain_id=FIRM, expiry=BENCH_REPLAY_WINDOW // 2, run_tag=uuid.uuid4().hex[:8]
    )
    port = int(p.doc["chains"][FIRM]["rpc_port"])
    plan = LoadPlan(
        ports=[port],
        watch_ports=[port],
        raws=signed.raws,
        ids=signed.ids,
        rate=rate,
        batch=batch_for(rate, 0),
        connections=8,
        start_at=time.monotonic() + 4.0,
        drain_s=20.0,
        verify_receipts=200,
        label=label,
    )
    res: LoadResult = _in_child(_child_load, plan, seconds + 120)
    return res, signed.wall_s


def wait_queued(p: Platform, target: int, timeout: float) -> int:
    end = time.monotonic() + timeout
    while True:
        q = int(p.progress()["queued"])
        if q >= target or time.monotonic() > end:
            return q
        time.sleep(1)


def wait_relayed(p: Platform, timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        pr = p.progress()
        if int(pr["missing"]) == 0 or time.monotonic() > end:
            return pr
        time.sleep(1)


def measure_phase(reg_url: str, seqs: list[int], log_text: str = "") -> dict[str, Any]:
    """Rule 3: latency statistics of the records `seqs` of firm-a, read from the regulator."""
    copies_l = rpc_batch(reg_url, [("gm_getRelayedRecord", [FIRM, s]) for s in seqs])
    copies = dict(zip(seqs, copies_l, strict=True))
    heights = sorted(
        {int(c.get("arrived_height", c.get("arrivedHeight", 0))) for c in copies_l if c}
    )
    blocks = rpc_batch(reg_url, [("gm_getBlockByNumber", [h]) for h in heights])
    reg_ts = {h: int(b["timestampMs"]) for h, b in zip(heights, blocks, strict=True)}
    lat, missing, st = latencies_ms(copies, reg_ts, seqs)
    per_reg_block = percentiles(
        [sum(1 for h in st["reg_h"] if h == x) for x in sorted(set(st["reg_h"]))]
    )
    keep = len(seqs) <= KEEP_RECORDS
    return {
        "stages": stage_split(st["biz_ts"], st["reg_ts"], cycle_starts_ms(log_text)),
        "records": [list(r) for r in zip(*st.values(), strict=True)] if keep else None,
        "records_columns": list(st),
        "seqs": [seqs[0], seqs[-1]] if seqs else [],
        "latency_ms": percentiles(lat),
        "undelivered": len(missing),
        "business_blocks": len(set(st["biz_h"])),
        "regulator_blocks": len(heights),
        "records_per_regulator_block": per_reg_block,
        "span": {
            "first_biz_ts": min(st["biz_ts"], default=0),
            "last_reg_ts": max(st["reg_ts"], default=0),
        },
    }


def chain_intervals(url: str, lo: int, hi: int) -> dict[str, Any]:
    """Block interval statistics (ms) of heights lo..hi on one chain."""
    if hi <= lo:
        return percentiles([])
    hs = list(range(lo, hi + 1))
    ts = [int(b["timestampMs"]) for b in rpc_batch(url, [("gm_getBlockByNumber", [h]) for h in hs])]
    return percentiles(block_intervals_ms(ts))


def _head(url: str) -> int:
    return int(rpc_batch(url, [("gm_blockNumber", [])])[0])


def _submit_stats(res: LoadResult) -> dict[str, Any]:
    lat = [(c - d) * 1000 for c, d in zip(res.committed, res.due, strict=True) if c == c]
    out = percentiles(round(x, 1) for x in lat)
    out["offered"] = len(res.due)
    out["refused"] = dict(res.errors)
    return out


def latency_phase(p: Platform, rate: float, seconds: float, label: str) -> dict[str, Any]:
    q0 = int(p.progress()["queued"])
    fh0, rh0 = _head(p.firm_url), _head(p.reg_url)
    cyc0 = len(cycle_durations(p.relayer_log()))
    print(f"[relay bench] {label}: {rate} rec/s for {seconds} s (seqs from {q0 + 1})", flush=True)
    res, sign_s = offer(p, rate, seconds, label)
    q1 = wait_queued(p, q0 + len(res.due), 30)
    pr = wait_relayed(p, 120)
    seqs = list(range(q0 + 1, q1 + 1))
    out = measure_phase(p.reg_url, seqs, p.relayer_log())
    out |= {
        "rate": rate,
        "seconds": seconds,
        "submit_to_business_commit_ms": _submit_stats(res),
        "signing_wall_s": round(sign_s, 2),
        "firm_a_block_interval_ms": chain_intervals(p.firm_url, fh0 + 1, _head(p.firm_url)),
        "regulator_block_interval_ms": chain_intervals(p.reg_url, rh0 + 1, _head(p.reg_url)),
        "relayer_cycle_s": percentiles(cycle_durations(p.relayer_log())[cyc0:]),
        "progress_after": pr,
    }
    return out


def backlog_phase(
    p: Platform, n: int, rate: float, fresh_rate: float, fresh_s: float, timeout: float
) -> dict[str, Any]:
    pid = p.stop_relayer()
    print(f"[relay bench] backlog: stopped firm-a's relayer (pid {pid})", flush=True)
    q0 = int(p.progress()["queued"])
    res, _ = offer(p, rate, n / rate, "backlog-fill")
    q1 = wait_queued(p, q0 + len(res.due), 120)
    before = p.progress()
    print(f"[relay bench] backlog: {before['missing']} missing; restarting the relayer", flush=True)
    cyc0 = len(cycle_durations(p.relayer_log()))
    fresh_box: list[LoadResult] = []
    fresh_q0 = q1

    def fresh() -> None:
        fresh_box.append(offer(p, fresh_rate, fresh_s, "fresh-during-drain")[0])

    t_restart = time.monotonic()
    wall_restart_ms = int(time.time() * 1000)
    p.start_relayer()
    th = threading.Thread(target=fresh, daemon=True)
    th.start()
    samples: list[tuple[float, int, int]] = []
    t_clear = None
    while time.monotonic() - t_restart < timeout:
        pr = p.progress()
        t = round(time.monotonic() - t_restart, 2)
        samples.append((t, int(pr["delivered"]), int(pr["missing"])))
        if int(pr["delivered"]) >= q1 and t_clear is None:
            t_clear = t  # the whole backlog has arrived
        if t_clear is not None and not th.is_alive() and int(pr["missing"]) == 0:
            break
        time.sleep(1)
    th.join(timeout=120)
    backlog_seqs = list(range(q0 + 1, q1 + 1))
    fresh_end = int(p.progress()["queued"])
    fresh_seqs = list(range(fresh_q0 + 1, fresh_end + 1))
    log_text = p.relayer_log()
    bl = measure_phase(p.reg_url, backlog_seqs, log_text)
    fr = measure_phase(p.reg_url, fresh_seqs, log_text) if fresh_seqs else {}
    delivered0 = samples[0][1] if samples else 0
    return {
        "records_queued": len(backlog_seqs),
        "fill_rate": rate,
        "fill_submit_to_business_commit_ms": _submit_stats(res),
        "missing_at_restart": int(before["missing"]),
        "backlog_cleared_s": t_clear,
        # every record missing at restart (an earlier phase's leftovers too) was delivered by
        # t_clear: the rate is what the relayer delivered from the first sample to then
        "clearing_rate_rec_s": _rate(samples, t_clear),
        "restart_wall_ms": wall_restart_ms,
        "samples": samples,
        "delivered_at_first_sample": delivered0,
        "backlog": bl,
        "fresh": fr | {"rate": fresh_rate, "seconds": fresh_s},
        "relayer_cycle_s": percentiles(cycle_durations(p.relayer_log())[cyc0:]),
    }


def _rate(samples: list[tuple[float, int, int]], t_clear: float | None) -> float | None:
    """Records delivered per second from the first progress sample to the backlog's clearing."""
    if t_clear is None or not samples:
        return None
    t0, d0, _ = samples[0]
    t1, d1 = next((t, d) for t, d, _ in samples if t >= t_clear)
    return round((d1 - d0) / (t1 - t0), 1) if t1 > t0 else None


def _md(report: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any]) -> str:
        return f"| {name} | {s['count']} | {s['p50']} | {s['p90']} | {s['p99']} | {s['max']} |"

    lines = [
        "# Relay latency and backlog (bench/relay.py)",
        "",
        f"- date: {report['date']}; machine: {report['machine']}",
        f"- command: `{report['command']}`",
        f"- load before: `{report['uptime_before']}`; after: `{report['uptime_after']}`",
        f"- relayer settings: {json.dumps(report['relayer_settings'])}",
        "",
        "| phase | records | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, ph in report["phases"].items():
        lines.append(row(f"{name}: business block -> regulator block", ph["latency_ms"]))
        lines.append(row(f"{name}: submit -> business commit", ph["submit_to_business_commit_ms"]))
        lines.append(row(f"{name}: firm-a block interval", ph["firm_a_block_interval_ms"]))
        lines.append(row(f"{name}: regulator block interval", ph["regulator_block_interval_ms"]))
        for k, v in ph["stages"].items():
            lines.append(row(f"{name}: {k} (relayer log)", v))
        c = ph["relayer_cycle_s"]
        lines.append(
            f"| {name}: relayer cycle (s) | {c['count']} | {c['p50']} | {c['p90']} | {c['p99']} "
            f"| {c['max']} |"
        )
    b = report.get("backlog")
    if b:
        lines += [
            row("backlog records: business block -> regulator block", b["backlog"]["latency_ms"]),
        ]
        if b["fresh"].get("latency_ms"):
            lines.append(row("fresh during drain: business -> regulator", b["fresh"]["latency_ms"]))
        lines += [
            "",
            f"Backlog: {b['records_queued']} records queued with the relayer stopped "
            f"({b['missing_at_restart']} missing at restart); cleared in "
            f"{b['backlog_cleared_s']} s "
            f"after the restart: {b['clearing_rate_rec_s']} records/s delivered. "
            f"Relayer cycles during the "
            f"drain: {json.dumps(b['relayer_cycle_s'])}.",
        ]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gmchain.bench.relay", description=__doc__)
    p.add_argument("--dir", type=Path, help="platform folder (default: a fresh temp dir)")
    p.add_argument("--base-port", type=int, default=0, help="0: the first free range")
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--light-rate", type=float, default=5.0)
    p.add_argument("--light-s", type=float, default=60.0)
    p.add_argument("--high-rate", type=float, default=300.0, help="0: skip the high phase")
    p.add_argument("--high-s", type=float, default=30.0)
    p.add_argument("--backlog", type=int, default=10000, help="0: skip the backlog phase")
    p.add_argument("--backlog-rate", type=float, default=300.0)
    p.add_argument("--fresh-rate", type=float, default=5.0)
    p.add_argument("--fresh-s", type=float, default=30.0)
    p.add_argument("--drain-timeout", type=float, default=900.0)
    p.add_argument("--out", type=Path, help="write relay.json and relay.md here")
    p.add_argument(
        "--relay-interval",
        type=float,
        help="restart firm-a's relayer with this --interval (default: the platform's, 2 s)",
    )
    p.add_argument("--keep", action="store_true", help="leave the platform running")
    return p


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def run(args: argparse.Namespace) -> dict[str, Any]:
    made = args.dir is None
    d = Path(tempfile.mkdtemp(prefix="gm-relaybench-")) if made else args.dir
    if not made:
        d.mkdir(parents=True, exist_ok=True)
    base = args.base_port or _free_base()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{os.uname().nodename} {os.uname().machine}, {os.cpu_count()} cpus",
        "command": "python -m gmchain.bench.relay " + " ".join(sys.argv[1:]),
        "uptime_before": _uptime(),
        "relayer_settings": relay_settings(),
        "base_port": base,
        "phases": {},
    }
    p = Platform(d / "platform" if made else d, base, args.keys, args.relay_interval)
    try:
        report["platform_up_s"] = round(p.up(), 1)
        if args.relay_interval is not None:
            p.stop_relayer()
            p.start_relayer()
            report["relayer_settings"]["interval_s"] = args.relay_interval
        report["phases"]["light"] = latency_phase(p, args.light_rate, args.light_s, "light")
        if args.high_rate > 0:
            report["phases"]["high"] = latency_phase(p, args.high_rate, args.high_s, "high")
        if args.backlog > 0:
            report["backlog"] = backlog_phase(
                p,
                args.backlog,
                args.backlog_rate,
                args.fresh_rate,
                args.fresh_s,
                args.drain_timeout,
            )
    finally:
        report["uptime_after"] = _uptime()
        if not args.keep:
            p.down()
            if made:
                shutil.rmtree(d, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report = run(args)
    text = _md(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "relay.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "relay.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
