"""Starting the system under test as separate OS processes, and sampling their CPU and RSS.

Rules this module keeps:
1. Nodes always run as their own processes (`gmchain dev` / `gmchain cluster`), never inside the
   harness's interpreter, so the generator cannot share their event loop or GIL.
2. The bench genesis admits the bench keys before any node opens its store (workload rule 1).
3. CPU and RSS come from /proc/PID/stat and /proc/PID/status (Linux proc(5)), and storage writes
   from /proc/PID/io (the node process only), sampled once a second
   by a background thread of the harness, summed over the node process and its children (its
   signature worker processes); a node that died yields no sample, not an error.
4. The whole sampled series goes into the report (`Sampler.export`), merged down to at most
   1,500 points per node, so an hours-long run shows its RSS and CPU drift.
5. No node outlives the run: a start that fails or is interrupted (Ctrl-C, `timeout -s INT`)
   stops the nodes it started, and stopping is not cut short by a second interrupt (one that
   comes meanwhile is held and raised once the stop is done). SIGTERM
   (`kill`, `timeout` without -s, a CI job's time limit) interrupts a run as Ctrl-C does
   (`terminate_as_interrupt`): the nodes run in sessions of their own, so a harness that died
   of the signal's default action left them running.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey

__all__ = [
    "NodeProc",
    "Sampler",
    "System",
    "launch_single",
    "proc_cpu_s",
    "rpc",
    "start_cluster4",
    "start_single",
    "terminate_as_interrupt",
    "uninterrupted",
]

_TICK = os.sysconf("SC_CLK_TCK")


def rpc(port: int, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """One blocking JSON-RPC call (setup and teardown only, never in the measured window)."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass(slots=True, kw_only=True)
class NodeProc:
    name: str
    rpc_port: int
    pid_file: Path | None = None  # cluster nodes: their node.pid
    popen: subprocess.Popen[bytes] | None = None  # single node: our child

    def pid(self) -> int | None:
        if self.popen is not None:
            return self.popen.pid if self.popen.poll() is None else None
        if self.pid_file is None:
            return None
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid


@dataclass(slots=True, kw_only=True)
class System:
    """The running system under test."""

    profile: str
    directory: Path
    nodes: list[NodeProc]
    chain_id: str
    params: dict[str, Any] = field(default_factory=dict)
    long_chain: Any = None  # bench.longchain.LongChain when the run started on a built chain

    @property
    def ports(self) -> list[int]:
        return [n.rpc_port for n in self.nodes]

    def stop(self) -> None:
        with uninterrupted():  # rule 5
            if self.profile == "cluster4":
                from gmchain.node.cluster import stop_nodes

                stop_nodes(self.directory)
            from gmchain.node.cluster import terminate_processes

            terminate_processes([n.popen for n in self.nodes if n.popen is not None])

    def kill(self, name: str) -> None:
        from gmchain.node.cluster import kill_node

        kill_node(self.directory, name)

    def restart(self, name: str) -> None:
        from gmchain.node.cluster import start_nodes

        start_nodes(self.directory, [name], wait_s=30)


# Seconds a started node has to answer gm_status: 30, or GMCHAIN_BENCH_START_S where starting is
# slow for a reason of the machine, not of gmchain (emulated aarch64 needs ~75 s: deploy/arm64).
_START_S = float(os.environ.get("GMCHAIN_BENCH_START_S", "30"))


def _wait_up(port: int, seconds: float, proc: NodeProc) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            rpc(port, "gm_status", timeout=1.0)
            return
        except (urllib.error.URLError, OSError, RuntimeError):
            if proc.popen is not None and proc.popen.poll() is not None:
                break
            time.sleep(0.1)
    raise SystemExit(f"error: node on port {port} did not come up; see its log")


def _params(cfg_path: Path) -> dict[str, Any]:
    from gmchain.node.config import load_config

    cfg = load_config(cfg_path)
    keep = (
        "round_timeout_ms",
        "max_round_timeout_ms",
        "min_block_txs",
        "max_block_txs",
        "min_wait_ms",
        "max_wait_ms",
        "target_latency_ms",
        "mempool_max_txs",
        "mempool_per_sender",
        "verify_processes",
    )
    return {k: getattr(cfg, k) for k in keep}


def start_single(
    directory: Path,
    rpc_port: int,
    keys: list[PrivateKey],
    *,
    chain_blocks: int = 0,
    chain_txs: int = 2,
) -> System:
    """A one-validator chain via `gmchain dev` in `directory` (created fresh); with
    `chain_blocks`, first `chain_blocks` certified blocks of `chain_txs` bench transactions each
    are built into its store (bench/longchain.py), and `System.long_chain` says what they hold."""
    from gmchain.bench.workload import admit_keys
    from gmchain.node.daemon import DEV_ORG, DEV_PASSPHRASE, init_dev

    # One node owns the machine: SM2 verification in one worker process per core, past the
    # event loop's GIL (node/verifypool.py). cluster4 keeps threads: its four nodes already
    # share the cores, and the processes' IPC only added CPU there (docs/benchmarks.md).
    procs = min(8, os.cpu_count() or 1)
    init_dev(directory, rpc_port=rpc_port, p2p_port=rpc_port + 1, verify_processes=procs)
    genesis = admit_keys(directory / "genesis.json", keys, DEV_ORG)
    built = None
    if chain_blocks > 0:
        from gmchain.bench.longchain import build_long_chain
        from gmchain.node.keys_cli import load_key

        print(f"[bench] building a chain of {chain_blocks:,} blocks…", flush=True)
        built = build_long_chain(
            directory / "db",
            genesis,
            load_key(directory / "node.key", DEV_PASSPHRASE.encode()),
            keys,
            blocks=chain_blocks,
            txs_per_block=chain_txs,
        )
    system = launch_single(directory, rpc_port, genesis.chain_id)
    system.long_chain = built
    return system


def launch_single(
    directory: Path,
    rpc_port: int,
    chain_id: str,
    *,
    profiled: bool = False,
    node_tree: Path | None = None,
) -> System:
    """Start `gmchain dev` on an existing dev directory (its config, keys, genesis and store);
    `profiled`: under bench/nodeprof.py (cProfile switched by signals); `node_tree`: the node's
    code from that source tree (another checkout, for before/after comparisons)."""
    entry = "gmchain.bench.nodeprof" if profiled else "gmchain.node.cli"
    env = None
    if node_tree is not None:
        env = os.environ | {"PYTHONPATH": str(node_tree.resolve())}
    log = open(directory / "node.log", "ab")  # noqa: SIM115 - handed to the child
    popen = subprocess.Popen(
        [
            sys.executable,
            *("-m", entry, "dev", "--data-dir", str(directory)),
            *("--rpc-port", str(rpc_port)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    try:
        log.close()
        node = NodeProc(name="dev", rpc_port=rpc_port, popen=popen)
        _wait_up(rpc_port, max(120.0, _START_S), node)  # a long built chain opens slowly
        return System(
            profile="single",
            directory=directory,
            nodes=[node],
            chain_id=chain_id,
            params=_params(directory / "config.toml") | {"validators": 1},
        )
    except BaseException:  # rule 5 (the node runs in its own session: no Ctrl-C reaches it)
        from gmchain.node.cluster import terminate_processes

        with uninterrupted():
            terminate_processes([popen])
        raise


def start_cluster4(directory: Path, base_rpc: int, base_p2p: int, keys: list[PrivateKey]) -> System:
    """Four validators on this machine via node.cluster (`gmchain cluster init/up`)."""
    from gmchain.bench.workload import admit_keys
    from gmchain.node.cluster import init_cluster, start_nodes, stop_nodes

    doc = init_cluster(directory, validators=4, base_rpc=base_rpc, base_p2p=base_p2p)
    genesis = admit_keys(directory / "genesis.json", keys, "org1")
    nodes = [
        NodeProc(
            name=n["name"], rpc_port=n["rpc_port"], pid_file=directory / n["name"] / "node.pid"
        )
        for n in doc["nodes"]
    ]
    try:
        start_nodes(directory, wait_s=60)
        for n in nodes:
            _wait_up(n.rpc_port, _START_S, n)
        return System(
            profile="cluster4",
            directory=directory,
            nodes=nodes,
            chain_id=genesis.chain_id,
            params=_params(directory / "node0" / "config.toml") | {"validators": 4},
        )
    except BaseException:  # rule 5: a node not up, or the run interrupted
        with uninterrupted():
            stop_nodes(directory)
        raise


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Rule 5: SIGINT and SIGTERM are held while the block runs (on the main thread; elsewhere
    no signal arrives anyway), so a second Ctrl-C, or `timeout` passing one on, cannot leave
    nodes running half-stopped; one that came is raised as KeyboardInterrupt when the block has
    ended, unless an exception is already on its way out. The block is bounded: stopping a node
    ends in SIGKILL."""
    if threading.current_thread() is not threading.main_thread() or getattr(
        signal.getsignal(signal.SIGTERM), "holds_for_uninterrupted", False
    ):
        yield  # (nested: the outer block holds the signals and raises when it ends)
        return
    held: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        held.append(signum)

    hold.holds_for_uninterrupted = True  # type: ignore[attr-defined]

    before = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            _put_back(sig, handler)
    if held:  # (reached only when the block ended without an exception)
        name = signal.Signals(held[0]).name
        raise KeyboardInterrupt(f"signal {name}, held while the nodes were stopped")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Rule 5: within the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so the run
    stops its nodes on the way out (main thread only; the previous handler comes back after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        _put_back(signal.SIGTERM, before)


def _put_back(sig: signal.Signals, handler: Any) -> None:
    """A handler `signal.signal` returned; None (one not set from Python) becomes the default."""
    signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _one_sample(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds so far, RSS bytes, parent pid) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        return cpu, rss, int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def _write_bytes(pid: int) -> int:
    """Bytes `pid` caused to be written to storage so far (/proc/PID/io `write_bytes`), 0 if
    unreadable: the node's LevelDB writes and fsyncs (its worker processes write nothing)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds `pid` and its child processes used so far (None if it is gone)."""
    s = _proc_sample(pid)
    return None if s is None else s[0]


def _proc_sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds used so far, RSS bytes) of `pid` and its child processes (a node's signature
    workers, node/verifypool.py, are part of its cost), or None if it is gone (rule 3)."""
    own = _one_sample(pid)
    if own is None:
        return None
    cpu, rss = own[0], own[1]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pid:
            continue
        child = _one_sample(int(entry))
        if child is not None and child[2] == pid:
            cpu += child[0]
            rss += child[1]
    return cpu, rss


class Sampler:
    """Per-second CPU % and RSS of every node (and extra pids), on a daemon thread."""

    def __init__(self, system: System, extra: dict[str, int] | None = None) -> None:
        self.system = system
        self.extra = extra or {}
        # name -> (t, CPU %, RSS bytes, disk write bytes/s)
        self.series: dict[str, list[tuple[float, float, int, float]]] = {}
        self.origin = time.monotonic()  # t = 0 of `export`'s time axis
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _targets(self) -> dict[str, int]:
        out = {n.name: pid for n in self.system.nodes if (pid := n.pid()) is not None}
        return out | self.extra

    def _run(self) -> None:
        last: dict[str, tuple[int, float, float, int]] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            for name, pid in self._targets().items():
                s = _proc_sample(pid)
                if s is None:
                    continue
                wb = _write_bytes(pid)
                prev = last.get(name)
                if prev is not None and prev[0] == pid and now > prev[1]:
                    pct = 100 * (s[0] - prev[2]) / (now - prev[1])
                    wr = max(0, wb - prev[3]) / (now - prev[1])
                    self.series.setdefault(name, []).append((now, round(pct, 1), s[1], wr))
                last[name] = (pid, now, s[0], wb)
            self._stop.wait(1.0)

    def summary(self, t_from: float, t_to: float) -> dict[str, Any]:
        out = {}
        for name, pts in self.series.items():
            win = [p for p in pts if t_from <= p[0] <= t_to] or pts
            if not win:
                continue
            out[name] = {
                "cpu_pct_mean": round(sum(p[1] for p in win) / len(win), 1),
                "cpu_pct_max": max(p[1] for p in win),
                "rss_mb_max": round(max(p[2] for p in win) / 2**20, 1),
                "rss_mb_last": round(win[-1][2] / 2**20, 1),
                "disk_write_mb_s_mean": round(sum(p[3] for p in win) / len(win) / 2**20, 2),
            }
        return out

    def export(self, max_points: int = 1500) -> dict[str, list[list[float]]]:
        """name -> [[t since `origin` s, CPU %, RSS MB, disk write MB/s], ...], at most
        `max_points` per node: consecutive samples are merged (mean CPU and writes, max RSS)
        when there are more (rule 4)."""
        out = {}
        for name, pts in self.series.items():
            step = max(1, math.ceil(len(pts) / max_points))
            rows = []
            for k in range(0, len(pts), step):
                grp = pts[k : k + step]
                rows.append(
                    [
                        round(grp[0][0] - self.origin, 1),
                        round(sum(p[1] for p in grp) / len(grp), 1),
                        round(max(p[2] for p in grp) / 2**20, 1),
                        round(sum(p[3] for p in grp) / len(grp) / 2**20, 3),
                    ]
                )
            out[name] = rows
        return out
