"""`python -m gmchain.bench.querycost`: what one query costs the node in CPU, on a chain of any
length (issue 15 item 3: queries must not slow down as the chain grows).

    python -m gmchain.bench.querycost --blocks 100000 [--txs-per-block 2] [--template DIR]
        [--count 20000] [--kinds block,tx,evidence,proof] [--connections 16] [--json FILE]
        [--profile DIR]

Rules this module keeps:
1. The chain is built once by bench/longchain.py into a template directory (a dev node's
   directory: keys, a genesis admitting the bench keys, the store, the bench keys and the
   sample of tx ids) and copied for every run: runs compare on the same chain, and the node
   never writes to the template. A template is reused only if it was built with the same
   `--blocks` and `--txs-per-block`.
2. The node runs as its own process (`gmchain dev`, as `gmchain bench` starts it; bench.nodes
   rule 1) and the client in a spawned child (bench.loadgen rule 2).
3. The figure is node CPU per query: user + system time of the node process and its children
   from /proc (bench.nodes rule 3) over a fixed number of queries, divided by that number. A
   loaded machine stretches the wall rate but hardly this; the wall rate is reported too, with
   the load average before and after. Measuring starts once the node is idle (`_wait_idle`).
4. Every kind is warmed up with `--warmup` queries first (not counted). Queries pick uniformly
   from the whole chain (heights 1..head; a uniform sample of its transactions), so a long
   chain is read cold where a short one fits in the node's caches: that is the difference to
   measure.
5. With `--profile DIR` the node runs under bench/nodeprof.py: cProfile of its event-loop
   thread during each measured kind only, one DIR/<kind>.pstats each (proof assembly runs in
   worker threads: profile `chain.proofs` in-process for it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gmchain.bench.loadgen import QueryPlan
from gmchain.bench.nodes import launch_single, proc_cpu_s, rpc, terminate_as_interrupt
from gmchain.bench.run import _child_query, _in_child

__all__ = ["build_template", "main", "measure"]

KINDS = ("block", "tx", "evidence", "proof")
_META = "longchain.json"


def build_template(
    template: Path, blocks: int, txs_per_block: int, n_keys: int = 200
) -> dict[str, Any]:
    """Rule 1: the template's metadata, building the template first if it does not match."""
    meta_file = template / _META
    if meta_file.exists():
        meta: dict[str, Any] = json.loads(meta_file.read_text())
        if meta["blocks"] == blocks and meta["txs_per_block"] == txs_per_block:
            return meta
        raise SystemExit(
            f"error: {template} holds a chain of {meta['blocks']} blocks × "
            f"{meta['txs_per_block']} txs; use another --template"
        )
    from gmchain.bench.longchain import build_long_chain
    from gmchain.bench.workload import admit_keys, make_keys
    from gmchain.node.daemon import DEV_ORG, DEV_PASSPHRASE, init_dev
    from gmchain.node.keys_cli import load_key

    if template.exists() and any(template.iterdir()):
        raise SystemExit(f"error: {template} is not empty and holds no {_META}")
    init_dev(template, rpc_port=1, p2p_port=2)  # the ports are set per run
    keys = make_keys(n_keys)
    genesis = admit_keys(template / "genesis.json", keys, DEV_ORG)
    built = build_long_chain(
        template / "db",
        genesis,
        load_key(template / "node.key", DEV_PASSPHRASE.encode()),
        keys,
        blocks=blocks,
        txs_per_block=txs_per_block,
    )
    meta = {
        "blocks": blocks,
        "txs_per_block": txs_per_block,
        "head": built.head,
        "txs": built.txs,
        "chain_id": genesis.chain_id,
        "build_s": built.build_s,
        "sign_cpu_s": built.sign_cpu_s,
        "tx_ids": built.tx_ids,
        "record_ids": built.record_ids,
    }
    meta_file.write_text(json.dumps(meta))
    (template / "bench-keys.hex").write_text("\n".join(k.to_bytes().hex() for k in keys) + "\n")
    return meta


def _set_ports(directory: Path, p2p_port: int) -> None:
    from gmchain.node.config import load_config, write_config

    path = directory / "config.toml"
    cfg = load_config(path)
    write_config(path, replace(cfg, p2p_port=p2p_port, data_dir="db", genesis_file="genesis.json"))


def measure(
    meta: dict[str, Any],
    port: int,
    pid: int,
    *,
    kinds: tuple[str, ...],
    count: int,
    warmup: int,
    connections: int,
    profile: Path | None,
) -> list[dict[str, Any]]:
    """Rule 3 for each kind in turn."""
    head = int(meta["head"])
    _wait_idle(pid)
    out = []
    for kind in kinds:
        plan = QueryPlan(
            port=port,
            kind=kind,
            tx_ids=meta["tx_ids"],
            record_ids=meta["record_ids"],
            max_height=head,
            connections=connections,
            count=warmup,
        )
        _in_child(_child_query, plan, timeout=600)
        load0 = os.getloadavg()[0]
        if profile is not None:
            os.kill(pid, signal.SIGUSR1)  # bench/nodeprof.py: start profiling
        cpu0 = proc_cpu_s(pid)
        res = _in_child(_child_query, replace(plan, count=count), timeout=3600)
        cpu1 = proc_cpu_s(pid)
        if profile is not None:
            os.kill(pid, signal.SIGUSR2)  # stop and write the kind's file
            _wait_file(profile / "last.pstats")
            (profile / "last.pstats").rename(profile / f"{kind}.pstats")
        if cpu0 is None or cpu1 is None:
            raise SystemExit("error: the node died while measuring")
        ok = max(1, int(res["ok"]))
        res |= {
            "node_cpu_s": round(cpu1 - cpu0, 3),
            "node_cpu_us_per_query": round(1e6 * (cpu1 - cpu0) / ok, 1),
            "client_cpu_us_per_query": round(1e6 * float(res["generator_cpu_s"]) / ok, 1),
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }
        out.append(res)
        print(
            f"[querycost] {kind}: {res['node_cpu_us_per_query']} µs node CPU/query, "
            f"{res['queries_per_s']} /s wall, errors {res['errors'] or 'none'}, "
            f"load {res['load_average']}",
            flush=True,
        )
    return out


def _wait_idle(pid: int, timeout_s: float = 120.0) -> None:
    """Rule 3: start once the node is idle (LevelDB compacts a copied store after it opens it,
    in the node's own threads): under 5 % of a core over one second, or `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cpu0 = proc_cpu_s(pid)
        time.sleep(1.0)
        cpu1 = proc_cpu_s(pid)
        if cpu0 is None or cpu1 is None or cpu1 - cpu0 < 0.05:
            return


def _wait_file(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gmchain.bench.querycost", description=__doc__)
    p.add_argument("--blocks", type=int, default=100_000, help="chain length (100000)")
    p.add_argument("--txs-per-block", type=int, default=2, help="transactions per block (2)")
    p.add_argument("--template", metavar="DIR", help="built chain to reuse (default: temp dir)")
    p.add_argument("--count", type=int, default=20_000, help="measured queries per kind (20000)")
    p.add_argument("--warmup", type=int, default=2_000, help="unmeasured queries first (2000)")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated (all four)")
    p.add_argument("--connections", type=int, default=16, help="client connections (16)")
    p.add_argument("--port", type=int, default=19545, help="RPC port (p2p: port + 1)")
    p.add_argument("--json", metavar="FILE", help="write the results here")
    p.add_argument("--profile", metavar="DIR", help="cProfile the node per kind (rule 5)")
    p.add_argument("--workdir", metavar="DIR", help="node directory (default: a temp dir)")
    p.add_argument(
        "--node-tree",
        metavar="DIR",
        help="run the node's code from this gmchain source tree (e.g. a worktree of main, for "
        "a before/after comparison on the same chain and minute); default: this one",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    with terminate_as_interrupt():  # bench.nodes rule 5: SIGTERM stops the node too
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not set(kinds) <= set(KINDS):
        raise SystemExit(f"error: --kinds: each of {', '.join(KINDS)}")
    template = Path(args.template or tempfile.mkdtemp(prefix="gmchain-longchain-"))
    meta = build_template(template, args.blocks, args.txs_per_block)
    print(
        f"[querycost] chain: {meta['head']:,} blocks, {meta['txs']:,} txs "
        f"(built in {meta['build_s']} s)",
        flush=True,
    )
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gmchain-querycost-"))
    node_dir = work / "node"
    if node_dir.exists():
        shutil.rmtree(node_dir)
    shutil.copytree(template, node_dir)
    _set_ports(node_dir, args.port + 1)
    profile = Path(args.profile).resolve() if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        os.environ["GMCHAIN_NODEPROF_DIR"] = str(profile)  # bench/nodeprof.py, in the node
    system = launch_single(
        node_dir,
        args.port,
        meta["chain_id"],
        profiled=profile is not None,
        node_tree=Path(args.node_tree) if args.node_tree else None,
    )
    try:
        height = int(rpc(args.port, "gm_blockNumber"))
        if height < int(meta["head"]):
            raise SystemExit(f"error: the node is at height {height}, below {meta['head']}")
        pid = system.nodes[0].pid()
        assert pid is not None
        results = measure(
            meta,
            args.port,
            pid,
            kinds=kinds,
            count=args.count,
            warmup=args.warmup,
            connections=args.connections,
            profile=profile,
        )
    finally:
        system.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "blocks": meta["head"],
        "txs": meta["txs"],
        "txs_per_block": meta["txs_per_block"],
        "count": args.count,
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "queries": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
