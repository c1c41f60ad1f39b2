"""The chaos drill (issue 10 "Also build"): a 4-validator cluster under steady load while a seeded
driver mixes node faults, abusive clients and a full disk; then the invariants that are never
skipped, and a report of the counts.

Rules this drill keeps:
1. Real processes, real sockets, real LevelDB, a real (tmpfs) filesystem that fills up. Every node
   is its own OS process started with `gmchain node start` (the command `gmchain cluster up` runs),
   but by this module, which keeps each process handle so that an exit code is never lost.
2. At most f = 1 node is down, stopped, restarting, abused or on a full disk at any moment: steps
   run one after another, so three of four validators always form a quorum and the chain must
   keep committing.
3. The schedule is a function of the seed and the enabled action kinds only: rounds of a seeded
   permutation of the kinds (each kind once per round), each with a seeded target and hold time.
   Reproduce a run with `python -m tests.chaos --seed S --actions ...`.
4. A node that cannot work must exit (fail-stop): an exit we did not cause must be non-zero, and
   the driver then restarts the node, which must catch up. A live node must answer and follow the
   chain; a node that is alive but frozen (issue 10 fault 3's zombie) is a violation.
5. The end is `check_invariants` (identical hashes at every height on every node; every
   acknowledged tx in exactly one block) plus every acknowledged tx served by every node, every
   node caught up within a bound, and no violation recorded on the way. Nothing is skipped; a
   kind that cannot run here (no tmpfs) is skipped by name and reported, and a run that requires
   it (`require_disk`, the soak) fails instead.
6. Every deadline is a generous bound on a condition (loaded 2-core machines), never a fixed sleep
   standing in for one; hold times are the only sleeps, and they are the fault's duration.

Action kinds (names for GMCHAIN_CHAOS_ACTIONS, comma separated; `all` or `-kind` to drop one):
    kill             SIGKILL a node, hold, restart it; it must catch up under load
    stop             SIGSTOP a node, hold, SIGCONT; it must catch up
    restart          SIGTERM (must exit 0), restart; it must catch up
    idle_restart     fault 2: load paused, kill a node, commit 20 txs, restart it on the idle chain
    slowloris        fault 3a: 1,100 half-sent HTTP requests at a node whose fd limit is 1024
    deaf_ws          fault 6: a WebSocket sending rpc.discover batches that never reads
    wait_hog         fault 5: a WebSocket holding gm_waitForReceipt calls on unknown txs
    proof_flood      fault 7: batches of gm_getTransactionProof(early tx, atHeight=head)
    handshake_stall  fault 8: stalled/garbage P2P handshakes on every node while one restarts
    disk_full        fault 4: one node's data dir is a small tmpfs; fill it, hold, free it
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gmchain.node.config import NodeConfig
from tests.chaos_clients import (
    Abuser,
    DeafWebSocket,
    HandshakeStall,
    ProofFlood,
    Slowloris,
    TmpfsDisk,
    abuser_address,
    rss_bytes,
)
from tests.cluster_helpers import Cluster, LoadGen, check_invariants, rpc_batch, rpc_call

__all__ = ["KINDS", "ChaosConfig", "actions_from_env", "main", "run_chaos", "schedule"]

KINDS = (
    "kill",
    "stop",
    "restart",
    "idle_restart",
    "slowloris",
    "deaf_ws",
    "wait_hog",
    "proof_flood",
    "handshake_stall",
    "disk_full",
)
ABUSE = ("slowloris", "deaf_ws", "wait_hog", "proof_flood")


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    seed: int
    duration_s: float  # chaos time; the first round of every enabled kind always completes
    actions: tuple[str, ...] = KINDS
    rate: float = 30.0  # tx/s of steady load, round robin over the live nodes
    hold_s: tuple[float, float] = (3.0, 8.0)  # how long one fault lasts (seeded uniform)
    gap_s: tuple[float, float] = (1.0, 4.0)  # quiet time before each step
    catchup_s: float = 120.0  # bound for a healed node to reach the others' height
    wedge_s: float = 60.0  # alive but not answering / not following for this long = wedged
    lag_blocks: int = 5  # "behind" means more than this many blocks below the best node
    node_nofile: int | None = 1024  # RLIMIT_NOFILE (soft and hard) every node starts with
    slowloris_conns: int = 1100
    ws_batches: int = 200  # rpc.discover batches of 100 (issue 10 fault 6: 455 MiB on base)
    ws_rss_mib: int = 64  # an abused node may grow by at most this much while abused
    abuse_min_s: float = 10.0  # an abusive client is held at least this long
    wait_hog_batches: int = 11  # issue 10 fault 5: eleven batches lock everyone out on base
    stall_per_port: int = 72  # above the base's 64 pre-auth slots ...
    stall_garbage_every: int = 9  # ... of which every 9th sends garbage, the rest nothing
    # A node restarted while its peers' handshakes stall must rejoin within this bound: with the
    # fault-8 fix it caught up in 0.3-4.3 s on a loaded 2-core machine; on 0921e03 it stayed
    # isolated until a slot freed by chance (3-32 s observed, 0 peers for 10 s in a probe).
    stall_rejoin_s: float = 15.0
    disk_mib: int = 64  # size of the disk_full node's tmpfs above the node's free-space floor
    require_disk: bool = False  # the soak must not skip the full disk

    def validate(self) -> None:
        unknown = set(self.actions) - set(KINDS)
        if unknown or not self.actions:
            raise ValueError(f"unknown or no chaos actions {sorted(unknown)}; known: {KINDS}")


def actions_from_env(default: tuple[str, ...] = KINDS) -> tuple[str, ...]:
    """GMCHAIN_CHAOS_ACTIONS: `all`, `kill,stop`, or `all,-disk_full` (order kept as in KINDS)."""
    raw = os.environ.get("GMCHAIN_CHAOS_ACTIONS", "").strip()
    if not raw:
        return default
    chosen: set[str] = set()
    for part in (p.strip() for p in raw.split(",")):
        if part == "all":
            chosen |= set(KINDS)
        elif part.startswith("-"):
            chosen.discard(part[1:])
        elif part:
            chosen.add(part)
    unknown = chosen - set(KINDS)
    if unknown:
        raise ValueError(f"GMCHAIN_CHAOS_ACTIONS names unknown kinds {sorted(unknown)}: {KINDS}")
    return tuple(k for k in KINDS if k in chosen)


@dataclass(frozen=True)
class Step:
    index: int
    round: int
    kind: str
    target: str
    hold_s: float
    gap_s: float


def schedule(cfg: ChaosConfig, validators: list[str], disk_node: str) -> Iterator[Step]:
    """The endless seeded schedule (rule 3); the driver stops taking steps when time is up."""
    rng = random.Random(cfg.seed)
    index = 0
    for rnd in range(1 << 30):
        kinds = list(cfg.actions)
        rng.shuffle(kinds)
        for kind in kinds:
            target = rng.choice(validators)
            hold = rng.uniform(*cfg.hold_s)
            gap = rng.uniform(*cfg.gap_s)
            yield Step(index, rnd, kind, disk_node if kind == "disk_full" else target, hold, gap)
            index += 1


@dataclass
class Report:
    seed: int
    actions_enabled: list[str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    exits: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    restarts: int = 0
    chaos_s: float = 0.0
    final: dict[str, Any] = field(default_factory=dict)

    def violate(self, kind: str, node: str, step: int | None, detail: str) -> None:
        v = {"kind": kind, "node": node, "step": step, "detail": detail}
        print(f"[chaos] VIOLATION {v}", flush=True)
        self.violations.append(v)

    def counts(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "chaos_s": self.chaos_s,
            "actions": dict(Counter(s["kind"] for s in self.steps if not s.get("skipped"))),
            "skipped": dict(self.skipped),
            "violations": dict(Counter(v["kind"] for v in self.violations)),
            "restarts": self.restarts,
            "unexpected_exits": len(self.exits),
            **{k: v for k, v in self.final.items() if k != "heights"},
        }


class _Nodes:
    """The node processes, with handles (rule 1). Thread-safe: the monitor polls them too."""

    def __init__(self, cluster: Cluster, nofile: int | None) -> None:
        self.c = cluster
        self.nofile = nofile
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.RLock()

    def spawn(self, name: str, wait_s: float = 60.0) -> None:
        nd = self.c.d / name
        cfg_path = nd / "config.toml"
        cmd = [sys.executable, "-m", "gmchain.node.cli", "node", "start", "--config", str(cfg_path)]
        if self.nofile is not None:  # soft = hard = nofile from the first instruction on
            cmd = ["sh", "-c", f'ulimit -n {self.nofile} && exec "$@"', "sh", *cmd]
        with open(nd / "node.log", "ab") as log, self.lock:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(nd),
            )
            self.procs[name] = proc
        (nd / "node.pid").write_text(str(proc.pid))  # sh exec()s the node: the same pid
        deadline = time.monotonic() + wait_s
        while self.c.status(name) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                return  # the caller's catch-up check or the monitor reports it
            time.sleep(0.2)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def poll(self, name: str) -> int | None:
        with self.lock:
            return self.procs[name].poll()

    def signal(self, name: str, sig: int) -> None:
        with self.lock:
            if self.procs[name].poll() is None:
                os.kill(self.procs[name].pid, sig)

    def wait(self, name: str, timeout_s: float) -> int | None:
        try:
            return self.procs[name].wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop_all(self) -> None:
        for name in self.procs:
            self.signal(name, signal.SIGCONT)
            self.signal(name, signal.SIGTERM)
        for name in self.procs:
            if self.wait(name, 15.0) is None:
                self.signal(name, signal.SIGKILL)
                self.wait(name, 15.0)


class _Monitor:
    """Watches every node the driver has not taken down (rule 4): exits and frozen heights."""

    def __init__(self, chaos: _Chaos) -> None:
        self.ch = chaos
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-monitor", daemon=True)
        self.last_ok: dict[str, float] = {}  # node -> when it last answered
        self.last_up: dict[str, tuple[int, float]] = {}  # node -> (height, when it rose to it)
        self.flagged: set[str] = set()  # wedged nodes already reported (once per episode)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def reset(self, name: str) -> None:
        self.last_ok[name] = time.monotonic()
        self.last_up.pop(name, None)
        self.flagged.discard(name)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.check_once()

    def check_once(self) -> None:
        ch = self.ch
        heights: dict[str, int] = {}
        now = time.monotonic()
        for name in ch.c.names:
            if name in ch.excused():
                continue
            code = ch.nodes.poll(name)
            if code is not None:
                ch.record_exit(name, code)
                continue
            st = ch.c.status(name)
            if st is None:
                continue
            self.last_ok[name] = now
            h = int(st["height"])
            heights[name] = h
            prev = self.last_up.get(name)
            if prev is None or h > prev[0]:
                self.last_up[name] = (h, now)
        best = max(heights.values(), default=0)
        for name in ch.c.names:
            if name in ch.excused() or name in self.flagged:
                continue
            since_ok = now - self.last_ok.setdefault(name, now)
            h, since = self.last_up.get(name, (best, now))
            frozen = now - since if best - h > ch.cfg.lag_blocks else 0.0
            if since_ok > ch.cfg.wedge_s or frozen > ch.cfg.wedge_s:
                self.flagged.add(name)
                why = (
                    f"alive but not answering gm_status for {since_ok:.0f}s"
                    if since_ok > ch.cfg.wedge_s
                    else f"alive, answering, but stuck at height {h} for {frozen:.0f}s "
                    f"while the best node is at {best}"
                )
                ch.report.violate("wedged", name, ch.current_step, f"{why}; {_health(ch.c, name)}")


class _Chaos:
    def __init__(self, d: Path, cfg: ChaosConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.c = Cluster.create(d, validators=4, round_timeout_ms=1000)
        self.nodes = _Nodes(self.c, cfg.node_nofile)
        self.report = Report(seed=cfg.seed, actions_enabled=list(cfg.actions))
        self.rng = random.Random(cfg.seed ^ 0x5EED)  # abuser addresses; never the schedule's
        self.lock = threading.Lock()
        self.down: set[str] = set()  # taken down or stopped by the driver (excused, rule 4)
        self.exited: dict[str, int] = {}  # exits the driver did not cause, not yet restarted
        self.current_step: int | None = None
        self.disk_node = self.c.validators[random.Random(cfg.seed).randrange(4)]
        self.disk: TmpfsDisk | None = None
        self.monitor = _Monitor(self)
        self.load: LoadGen | None = None

    # --- bookkeeping ---

    def excused(self) -> set[str]:
        with self.lock:
            return self.down | set(self.exited)

    def record_exit(self, name: str, code: int) -> None:
        with self.lock:
            if name in self.down or name in self.exited:
                return
            self.exited[name] = code
        tail = [ln for ln in self.c.log(name).splitlines() if ln.strip()][-5:]
        e = {"node": name, "code": code, "step": self.current_step, "log_tail": tail}
        print(f"[chaos] {name} exited with {code}: {tail[-1:] or ['(empty log)']}", flush=True)
        self.report.exits.append(e)
        if code == 0 or code < 0:
            how = "exit 0" if code == 0 else f"signal {-code}"
            self.report.violate(
                "unclean_exit", name, self.current_step, f"{how}, not a fail-stop: {tail}"
            )
        elif not tail:
            self.report.violate("unclean_exit", name, self.current_step, "no log line")
        self._set_targets()

    def _set_targets(self) -> None:
        if self.load is not None and self.load.targets:  # empty = paused by idle_restart
            self.load.set_targets([n for n in self.c.names if n not in self.excused()])

    def _take_down(self, name: str) -> None:
        with self.lock:
            self.down.add(name)
        self._set_targets()

    def _bring_back(self, name: str) -> None:
        with self.lock:
            self.down.discard(name)
        self.monitor.reset(name)
        self._set_targets()

    def _live_heights(self, exclude: str | None = None) -> dict[str, int]:
        out = {}
        for n in self.c.names:
            if n == exclude or n in self.excused():
                continue
            h = self.c.height(n)
            if h is not None:
                out[n] = h
        return out

    def _caught_up(
        self, name: str, step: int | None, what: str, *, ahead: int = 0, bound: float = 0.0
    ) -> float | None:
        """Wait (bounded) until `name` reaches the best height the others had when asked, and
        (under load) `ahead` blocks above its own: a node that must also follow the chain."""
        target = max(self._live_heights(exclude=name).values(), default=0)
        target = max(target, (self.c.height(name) or 0) + ahead)
        bound = bound or self.cfg.catchup_s
        t0 = time.monotonic()
        while time.monotonic() - t0 < bound:
            code = self.nodes.poll(name)
            if code is not None:
                self.record_exit(name, code)
                return None
            h = self.c.height(name)
            if h is not None and h >= target:
                return time.monotonic() - t0
            time.sleep(0.25)
        self.report.violate(
            "no_catchup",
            name,
            step,
            f"{what}: still at {self.c.height(name)} < {target} after {bound:.0f}s "
            f"(others now {self._live_heights(exclude=name)})",
        )
        return None

    def _restart_exited(self, step: int | None) -> None:
        with self.lock:
            names = list(self.exited)
        for name in names:
            if self.disk is not None and name == self.disk_node:
                self.disk.free()
            self.nodes.spawn(name)
            self.report.restarts += 1
            with self.lock:
                self.exited.pop(name, None)
            self.monitor.reset(name)
            self._set_targets()
            self._caught_up(name, step, "restarted after its own exit")

    # --- actions (each heals what it broke before it returns) ---

    def _kill(self, s: Step) -> dict[str, Any]:
        self._take_down(s.target)
        self.nodes.signal(s.target, signal.SIGKILL)
        self.nodes.wait(s.target, 30)
        time.sleep(s.hold_s)
        self.nodes.spawn(s.target)
        self.report.restarts += 1
        self._bring_back(s.target)
        return {"catchup_s": self._caught_up(s.target, s.index, "after SIGKILL and restart")}

    def _stop(self, s: Step) -> dict[str, Any]:
        self._take_down(s.target)
        self.nodes.signal(s.target, signal.SIGSTOP)
        time.sleep(s.hold_s)
        self.nodes.signal(s.target, signal.SIGCONT)
        self._bring_back(s.target)
        return {"catchup_s": self._caught_up(s.target, s.index, "after SIGSTOP/SIGCONT")}

    def _restart(self, s: Step) -> dict[str, Any]:
        self._take_down(s.target)
        self.nodes.signal(s.target, signal.SIGTERM)
        code = self.nodes.wait(s.target, 30)
        if code is None:
            self.report.violate("slow_shutdown", s.target, s.index, "SIGTERM: no exit in 30 s")
            self.nodes.signal(s.target, signal.SIGKILL)
            self.nodes.wait(s.target, 30)
        elif code != 0:
            self.report.violate("unclean_exit", s.target, s.index, f"SIGTERM gave exit {code}")
        time.sleep(min(s.hold_s, 2.0))
        self.nodes.spawn(s.target)
        self.report.restarts += 1
        self._bring_back(s.target)
        return {"exit": code, "catchup_s": self._caught_up(s.target, s.index, "after SIGTERM")}

    def _idle_restart(self, s: Step) -> dict[str, Any]:
        assert self.load is not None
        others = [n for n in self.c.names if n != s.target]
        self.load.set_targets([])
        self._wait_idle(self.c.names, s.index)
        self._take_down(s.target)
        self.nodes.signal(s.target, signal.SIGKILL)
        self.nodes.wait(s.target, 30)
        before = len(self.load.acked)
        self.load.set_targets([n for n in others if n not in self.excused()])
        t0 = time.monotonic()
        while len(self.load.acked) < before + 20 and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        self.load.set_targets([])
        self._wait_idle(others, s.index)
        self.nodes.spawn(s.target)
        self.report.restarts += 1
        self._bring_back(s.target)
        self.load.set_targets([])  # _bring_back re-targets only a running load: keep it idle
        took = self._caught_up(s.target, s.index, "restarted on an idle chain (fault 2)")
        self.load.set_targets([n for n in self.c.names if n not in self.excused()])
        return {"txs_while_down": len(self.load.acked) - before, "catchup_s": took}

    def _wait_idle(self, names: list[str], step: int) -> None:
        """Bounded wait for nothing pending and one height on `names` (load paused)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.cfg.catchup_s:
            sts = [self.c.status(n) for n in names if n not in self.excused()]
            if (
                all(s is not None for s in sts)
                and len({int(s["height"]) for s in sts if s}) == 1
                and not any(int(s["pendingTxs"]) for s in sts if s)
            ):
                return
            time.sleep(0.25)
        self.report.violate(
            "no_idle", ",".join(names), step, "pools did not drain / heights differ"
        )

    def _under_abuse(self, s: Step, abuser: Abuser) -> dict[str, Any]:
        """Hold `abuser` on `s.target` for the hold time; the target must keep serving a
        legitimate client (gm_status from 127.0.0.1) and keep following the chain."""
        assert self.load is not None
        pid = self.nodes.pid(s.target)
        rss0 = rss_bytes(pid) or 0
        h0 = self.c.height(s.target) or 0
        best0 = max(self._live_heights().values(), default=0)
        acked0 = Counter(self.load.acked.values())[s.target]
        probes_ok, probes, worst_ms, rss_peak, fds_peak = 0, 0, 0, rss0, 0
        refusals: list[str] = []  # RPC errors a legitimate client got (not timeouts)
        with abuser:
            abuser.ready.wait(timeout=60)  # the hold starts once the abuse is in place
            t_end = time.monotonic() + max(s.hold_s, self.cfg.abuse_min_s)
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                probes += 1
                try:
                    rpc_call(self.c.rpc_port(s.target), "gm_status", timeout_s=5.0)
                    probes_ok += 1
                    worst_ms = max(worst_ms, int((time.monotonic() - t0) * 1000))
                except RuntimeError as exc:
                    refusals.append(str(exc)[:200])
                except (OSError, ValueError) as exc:
                    refusals.append(f"{type(exc).__name__}: {exc}"[:200])
                rss_peak = max(rss_peak, rss_bytes(pid) or 0)
                fds_peak = max(fds_peak, _fd_count(pid))
                time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
            stats = dict(getattr(abuser, "stats", {}))
        h1 = self.c.height(s.target)
        best1 = max(self._live_heights(exclude=s.target).values(), default=0)
        acked1 = Counter(self.load.acked.values())[s.target]
        out = {
            "abuser": stats,
            "probes": f"{probes_ok}/{probes}",
            "probe_worst_ms": worst_ms,
            "probe_failures": refusals[:3],
            "fds_peak": fds_peak,
            "rss_growth_mib": round((rss_peak - rss0) / (1 << 20), 1),
            "height": [h0, h1],
            "acked_by_target": acked1 - acked0,
        }
        if self.nodes.poll(s.target) is None:
            if probes_ok < probes:
                self.report.violate(
                    "lockout",
                    s.target,
                    s.index,
                    f"{s.kind}: {probes - probes_ok} of {probes} probes failed: {refusals[:3]}",
                )
            if (h1 is None or h1 <= h0) and best1 >= best0 + 3:
                self.report.violate(
                    "stalled_under_abuse",
                    s.target,
                    s.index,
                    f"{s.kind}: stayed at {h0}->{h1} while the others went {best0}->{best1}",
                )
            if rss_peak - rss0 > self.cfg.ws_rss_mib << 20:
                self.report.violate(
                    "memory", s.target, s.index, f"{s.kind}: grew {out['rss_growth_mib']} MiB"
                )
        if self.nodes.poll(s.target) is None:
            out["catchup_s"] = self._caught_up(s.target, s.index, f"after {s.kind}")
        return out

    def _abuse(self, s: Step) -> dict[str, Any]:
        port, src, seed = (
            self.c.rpc_port(s.target),
            abuser_address(self.rng),
            self.rng.getrandbits(32),
        )
        abuser: Abuser
        if s.kind == "slowloris":
            abuser = Slowloris(port, conns=self.cfg.slowloris_conns, src=src)
        elif s.kind == "deaf_ws":
            abuser = DeafWebSocket(port, src=src, batches=self.cfg.ws_batches, seed=seed)
        elif s.kind == "wait_hog":
            abuser = DeafWebSocket(
                port,
                src=src,
                batches=self.cfg.wait_hog_batches,
                method="gm_waitForReceipt",
                seed=seed,
            )
        else:
            tx, head = self._early_committed_tx(s.target)
            if tx is None:
                return {"skipped": "no committed transaction yet"}
            abuser = ProofFlood(port, src=src, tx_id=tx, at_height=head)
        return {"src": src, **self._under_abuse(s, abuser)}

    def _early_committed_tx(self, name: str) -> tuple[str | None, int]:
        head = self.c.height(name) or 0
        for h in range(1, head + 1):
            blk = rpc_call(self.c.rpc_port(name), "gm_getBlockByNumber", [h, False])
            if blk and blk["transactions"]:
                return str(blk["transactions"][0]), head
        return None, head

    def _handshake_stall(self, s: Step) -> dict[str, Any]:
        ports = [self.c.p2p_port(n) for n in self.c.names]
        src = abuser_address(self.rng)
        stall = HandshakeStall(
            ports,
            src=src,
            per_port=self.cfg.stall_per_port,
            garbage_every=self.cfg.stall_garbage_every,
            seed=self.rng.getrandbits(32),
        )
        with stall:
            stall.ready.wait(timeout=60)
            time.sleep(min(s.hold_s, 3.0))  # let the stalls take the slots first
            self._take_down(s.target)
            self.nodes.signal(s.target, signal.SIGKILL)
            self.nodes.wait(s.target, 30)
            time.sleep(1.0)
            self.nodes.spawn(s.target)
            self.report.restarts += 1
            self._bring_back(s.target)
            took = self._caught_up(
                s.target,
                s.index,
                "restarted while P2P handshakes stall",
                ahead=self.cfg.lag_blocks,
                bound=self.cfg.stall_rejoin_s,
            )
            stats = dict(stall.stats)
        return {"src": src, "abuser": stats, "catchup_s": took}

    def _disk_full(self, s: Step) -> dict[str, Any]:
        if self.disk is None:
            return {"skipped": self.report.skipped.get("disk_full", "no tmpfs")}
        filled = self.disk.fill()
        errors0 = dict(self.load.errors) if self.load else {}
        time.sleep(s.hold_s)
        free_at_end = self.disk.free_bytes()
        self.disk.free()
        errors1 = dict(self.load.errors) if self.load else {}
        delta = {k: v - errors0.get(k, 0) for k, v in errors1.items() if v != errors0.get(k, 0)}
        out: dict[str, Any] = {"ballast_mib": round(filled / (1 << 20), 1), "load_errors": delta}
        out["free_bytes_while_full"] = free_at_end
        code = self.nodes.poll(s.target)
        if code is not None:
            self.record_exit(s.target, code)
            out["exited"] = code
        else:
            out["catchup_s"] = self._caught_up(s.target, s.index, "after the disk was freed")
        return out

    # --- the run ---

    def setup(self) -> None:
        # The abusers' sockets are this process's descriptors: raise its soft limit if needed.
        need = self.cfg.slowloris_conns + 4 * self.cfg.stall_per_port + 512
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
            if hard < need:
                raise AssertionError(
                    f"the drill needs {need} descriptors; the hard limit is {hard}"
                )
        if "disk_full" in self.cfg.actions:
            # the node keeps a free-space floor (storage fault 4): the tmpfs is that much larger
            size_mib = _free_space_floor_mib() + self.cfg.disk_mib
            disk = TmpfsDisk(self.c.d / self.disk_node / "db", size_mib << 20)
            why = disk.mount()
            if why is None:
                self.disk = disk
            elif self.cfg.require_disk:
                raise AssertionError(f"disk_full is required here but tmpfs failed: {why}")
            else:
                self.report.skipped["disk_full"] = f"cannot mount a tmpfs: {why}"
                print(f"[chaos] SKIPPING disk_full only: {why}", flush=True)
        for n in self.c.names:
            self.nodes.spawn(n)

    def run(self) -> Report:
        cfg = self.cfg
        actions: dict[str, Callable[[Step], dict[str, Any]]] = {
            "kill": self._kill,
            "stop": self._stop,
            "restart": self._restart,
            "idle_restart": self._idle_restart,
            "handshake_stall": self._handshake_stall,
            "disk_full": self._disk_full,
            **dict.fromkeys(ABUSE, self._abuse),
        }
        self.load = LoadGen(self.c, list(self.c.names), rate=cfg.rate).start()
        self.c.wait_height(2, timeout_s=120)  # blocks come only with transactions
        self.monitor.start()
        t_start = time.monotonic()
        for s in schedule(cfg, self.c.validators, self.disk_node):
            if s.round > 0 and time.monotonic() - t_start >= cfg.duration_s:
                break
            time.sleep(s.gap_s)
            self.current_step = s.index
            t0 = time.monotonic()
            print(f"[chaos] step {s.index} {s.kind} on {s.target} hold {s.hold_s:.1f}s", flush=True)
            if s.kind in self.report.skipped:
                rec: dict[str, Any] = {"skipped": self.report.skipped[s.kind]}
            else:
                rec = actions[s.kind](s)
            self._restart_exited(s.index)
            entry = {**asdict(s), "took_s": round(time.monotonic() - t0, 1), **rec}
            print(f"[chaos]   -> {json.dumps(entry, default=str)}", flush=True)
            self.report.steps.append(entry)
        self.current_step = None
        self.report.chaos_s = round(time.monotonic() - t_start, 1)
        return self.finish()

    def finish(self) -> Report:
        """Heal everything, stop the load, then the invariants (rule 5)."""
        assert self.load is not None
        for n in self.c.names:
            self.nodes.signal(n, signal.SIGCONT)
        if self.disk is not None:
            self.disk.free()
        self._restart_exited(None)
        self.load.set_targets([n for n in self.c.names if n not in self.excused()])
        time.sleep(3.0)
        self.load.stop()
        self.monitor.check_once()
        self.monitor.stop()
        self._restart_exited(None)
        for n in self.c.names:  # no node silently wedged: each one alive and following
            self._caught_up(n, None, "at the end, load stopped")
        t0 = time.monotonic()
        rep = check_invariants(self.c, self.load.acked, expiry=self.load.expiry)
        self.report.final["converge_s"] = round(time.monotonic() - t0, 1)
        self._served_everywhere()
        self.report.final.update(
            height=rep.height,
            txs_acknowledged=rep.acked,
            txs_in_chain=rep.txs_in_chain,
            load_errors=dict(self.load.errors),
            heights=self.c.heights(),
        )
        for n in self.c.names:
            if self.nodes.poll(n) is not None:
                self.report.violate("dead_at_end", n, None, f"exit {self.nodes.poll(n)}")
        return self.report

    def _served_everywhere(self) -> None:
        """Every acknowledged tx is served, committed, in the same block by every node."""
        assert self.load is not None
        ids = list(self.load.acked)
        where: dict[str, int] = {}
        for n in self.c.names:
            port = self.c.rpc_port(n)
            for lo in range(0, len(ids), 100):
                chunk = ids[lo : lo + 100]
                got = rpc_batch(port, [("gm_getTransactionByHash", [t]) for t in chunk], 60.0)
                for t, tx in zip(chunk, got, strict=True):
                    assert tx is not None and not tx.get("pending"), f"{n} does not serve {t}"
                    b = int(tx["blockNumber"])
                    assert where.setdefault(t, b) == b, f"{t} in block {where[t]} and {b} ({n})"
        self.report.final["txs_served_by_every_node"] = len(where)


def _health(c: Cluster, name: str) -> str:
    """What the node's /health says (a zombie answered "ok" on 0921e03)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{c.rpc_port(name)}/health", timeout=5) as r:
            return f"/health {r.status} {r.read(200)!r}"
    except urllib.error.HTTPError as exc:
        return f"/health {exc.code} {exc.read(200)!r}"
    except OSError as exc:
        return f"/health unreachable: {exc}"


def _free_space_floor_mib() -> int:
    """The node's default free-space floor, below which it refuses submissions (0 if none)."""
    floor = {f.name: f.default for f in dataclasses.fields(NodeConfig)}.get("min_free_disk_mb")
    return floor if isinstance(floor, int) else 0


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def run_chaos(d: Path, cfg: ChaosConfig) -> Report:
    """Run the drill in directory `d`; the report is saved as `d/chaos-report.json` and printed,
    also when an invariant fails (the failure is then re-raised)."""
    d.mkdir(parents=True, exist_ok=True)
    ch = _Chaos(d / "cluster", cfg)
    failure: BaseException | None = None
    try:
        ch.setup()
        ch.run()
    except BaseException as exc:
        failure = exc
        ch.report.final["failure"] = f"{type(exc).__name__}: {exc}"[:4000]
        for n in ch.c.names:
            tail = ch.c.log(n).splitlines()[-30:]
            print(f"----- {n}/node.log (last {len(tail)} lines) -----\n" + "\n".join(tail))
    finally:
        if ch.load is not None:
            ch.load.stop()
        ch.monitor.stop()
        ch.nodes.stop_all()
        if ch.disk is not None:
            ch.disk.unmount()
        out = {"counts": ch.report.counts(), **asdict(ch.report)}
        (d / "chaos-report.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"[chaos] seed {cfg.seed} counts: {json.dumps(ch.report.counts(), default=str)}")
        print(f"[chaos] report: {d / 'chaos-report.json'}", flush=True)
    if failure is not None:
        raise failure
    return ch.report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1010)
    p.add_argument("--duration", type=float, default=90.0, help="chaos seconds")
    p.add_argument("--actions", default="all", help="kinds, comma separated (see module doc)")
    p.add_argument("--dir", required=True, help="a new directory for the cluster and report")
    p.add_argument("--require-disk", action="store_true")
    args = p.parse_args(argv)
    os.environ["GMCHAIN_CHAOS_ACTIONS"] = args.actions
    cfg = ChaosConfig(
        seed=args.seed,
        duration_s=args.duration,
        actions=actions_from_env(),
        require_disk=args.require_disk,
    )
    rep = run_chaos(Path(args.dir), cfg)
    return 1 if rep.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
