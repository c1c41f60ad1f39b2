"""Orchestration: start the system, pre-sign, run load phases in a child process, run scenarios.

Rules this module keeps:
1. The harness process only orchestrates and samples /proc; the load generator runs in a spawned
   child (bench.loadgen rule 2) and the nodes in their own processes (bench.nodes rule 1).
2. Transactions for a phase are signed before the phase starts (bench.workload rule 2).
3. Fault actions run on a harness thread at fixed offsets from the phase's t0, and each records
   what it did and when, so the analysis can split the window at the fault.
4. Scenarios follow CAICT's method (bench.knee): stress at the knee, spike at 2x the knee,
   stability at 20 % of the knee; cluster4 faults: one validator killed, the round leader killed,
   a node restarted after >= 10 blocks (catch-up time).
5. A phase longer than `segment_s` (600 s) runs as back-to-back segments, each its own load
   child started at the previous one's last due time, so an hours-long stability run never holds
   more than two segments of signed transactions; the next segment is signed while the current
   one runs, by one worker process when one is fast enough (its CPU is reported like all
   signing, and shows in the node's latency as a load of one core). Later segments have no
   warm-up.
6. Every phase states its batch; bench.cli fixes one batch for the whole run, so the points of a
   sweep differ only in their rate.
7. Before each phase one line names it, its rate, duration and batch, and the time left in the
   phase and in the run (`remaining_after_s`, set by the caller's schedule); the load child
   repeats the time left every 5 s.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from gmchain.bench.hdr import Histogram
from gmchain.bench.knee import SweepPoint, classify, find_knee
from gmchain.bench.loadgen import (
    QUERY_CONNECTIONS,
    LoadPlan,
    LoadResult,
    QueryPlan,
    hms,
    run_load,
    run_queries,
)
from gmchain.bench.nodes import Sampler, System, rpc
from gmchain.bench.report import analyze, merge_segments
from gmchain.bench.workload import BENCH_REPLAY_WINDOW, SignedBatch, presign
from gmchain.crypto_sm import PrivateKey

__all__ = ["BATCH_WINDOW_S", "Harness", "LoadSettings", "batch_for", "window_p50s"]

Action = Callable[["Harness", float], dict[str, Any]]  # (harness, phase t0) -> what happened


BATCH_WINDOW_S = 0.010  # auto batching: a batch holds the transactions due within 10 ms
MAX_BATCH = 100  # the RPC server's batch cap


def batch_for(rate: float, batch: int) -> int:
    """`batch` if set (> 0); otherwise the transactions due within BATCH_WINDOW_S, 1..MAX_BATCH.
    A batch leaves when its last transaction is due (bench/loadgen.py rule 1), so a fixed batch
    of 20 at 100 tx/s held the average transaction back 95 ms before it was even sent — client
    batching measured as chain latency. The window caps that at 10 ms at every rate."""
    if batch > 0:
        return batch
    return max(1, min(MAX_BATCH, round(rate * BATCH_WINDOW_S)))


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSettings:
    batch: int = 0  # 0: auto per phase (batch_for); bench.cli fixes it once per run (rule 6)
    connections: int = 16
    warmup_s: float = 5.0
    drain_s: float = 15.0
    verify_receipts: int = 1000
    segment_s: float = 600.0  # longest single load child (rule 5)
    lead_s: float = 4.0  # time for the load child to spawn and connect before t0


def _child_load(plan: LoadPlan, out: Connection) -> None:
    out.send(run_load(plan))
    out.close()


def _child_query(plan: QueryPlan, out: Connection) -> None:
    out.send(run_queries(plan))
    out.close()


def _in_child(target: Callable[[Any, Connection], None], plan: Any, timeout: float) -> Any:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(plan, send), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise RuntimeError("load generator timed out")
        return recv.recv()
    except BaseException:  # interrupted (SIGTERM reaches the harness only): end it at once
        proc.kill()
        raise
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()


class Harness:
    def __init__(self, system: System, keys: list[PrivateKey], settings: LoadSettings) -> None:
        self.system = system
        self.keys = keys
        self.settings = settings
        self.sampler = Sampler(system)
        self.signing_cpu_s = 0.0
        self.signing_wall_s = 0.0
        self.last_result: LoadResult | None = None
        self.tx_ids: list[str] = []  # committed tx ids (0x hex) for the query workloads
        self.record_ids: list[str] = []
        self.remaining_after_s = 0.0  # the run's estimated time after the current phase
        self._sign_rate = 0.0  # transactions signed per wall second, last measured
        self._sign_workers = 1  # ... by this many worker processes

    def phase(
        self,
        rate: float,
        duration_s: float,
        *,
        actions: list[tuple[float, Action]] | None = None,
        label: str = "load",
    ) -> dict[str, Any]:
        """One open-loop phase at `rate` for `duration_s`; the analysis dict (+ `actions`).
        A phase longer than `segment_s` runs as back-to-back segments (rule 5)."""
        s = self.settings
        batch = batch_for(rate, s.batch)
        n_seg = max(1, math.ceil(duration_s / s.segment_s - 1e-9)) if not actions else 1
        seg_len = [min(s.segment_s, duration_s - k * s.segment_s) for k in range(n_seg)]
        if n_seg == 1:
            seg_len = [duration_s]
        cpu0, wall0 = self.signing_cpu_s, self.signing_wall_s
        first = self._sign(rate, seg_len[0])
        start_at = time.monotonic() + s.lead_s
        phase_end = start_at + duration_s
        run_end = phase_end + self.remaining_after_s
        print(
            f"[bench] {label}: {rate:g} tx/s for {hms(duration_s)}, batch {batch}"
            + (f", {n_seg} segments of {hms(s.segment_s)}" if n_seg > 1 else "")
            + f"; phase ends in {hms(phase_end - time.monotonic())}, "
            f"run in ~{hms(run_end - time.monotonic())}",
            flush=True,
        )
        done: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=self._act, args=(fn, start_at, off, done), daemon=True)
            for off, fn in actions or []
        ]
        for t in threads:
            t.start()
        hist = Histogram()
        parts: list[tuple[dict[str, Any], float]] = []
        signed = first
        pending: list[tuple[threading.Thread, list[Any], float, float, Any]] = []
        t_seg = start_at
        for k, length in enumerate(seg_len):
            box: list[Any] = []
            plan = LoadPlan(
                ports=self.system.ports,
                watch_ports=self.system.ports,
                raws=signed.raws,
                ids=signed.ids,
                rate=rate,
                batch=batch,
                connections=s.connections,
                start_at=t_seg,
                drain_s=s.drain_s,
                verify_receipts=s.verify_receipts,
                label=label + (f" segment {k + 1}/{n_seg}" if n_seg > 1 else ""),
                phase_end_at=phase_end,
                run_end_at=run_end,
            )
            # A later segment's child starts up to a segment early and waits for its t0.
            limit = max(0.0, t_seg - time.monotonic()) + length + s.drain_s + 600
            th = threading.Thread(
                target=lambda p=plan, b=box, x=limit: b.append(
                    _in_child(_child_load, p, timeout=x)
                ),
                daemon=True,
            )
            th.start()
            pending.append((th, box, t_seg - start_at, length, signed))
            # Collect the previous segment (done once its drain ends) before signing the next,
            # so at most two segments of signed transactions are ever in memory (rule 5).
            while len(pending) > 1 or (k + 1 == n_seg and pending):
                item = pending.pop(0)
                parts.append(self._collect(item, rate, not parts, duration_s - item[2], hist))
            if k + 1 < n_seg:  # sign the next segment while this one runs (rule 5)
                signed = self._sign(rate, seg_len[k + 1], background=True)
            t_seg += length
        for t in threads:
            t.join(120)
        out = parts[0][0] if len(parts) == 1 else merge_segments(parts, hist)
        out["nodes"] = self.sampler.summary(start_at + s.warmup_s, start_at + duration_s)
        out["actions"] = done
        out["batch"] = batch
        out["duration_s"] = duration_s
        out["label"] = label
        out["t0_s"] = round(start_at - self.sampler.origin, 3)  # on the node samples' axis
        out["signing"] = {
            "txs": sum(max(1, int(rate * x)) for x in seg_len),
            "cpu_s": round(self.signing_cpu_s - cpu0, 2),
            "wall_s": round(self.signing_wall_s - wall0, 2),
        }
        return out

    def _sign(self, rate: float, seconds: float, *, background: bool = False) -> SignedBatch:
        """Sign one segment. In the background (while a segment runs, rule 5) one worker does
        it when one worker is fast enough to finish in half the segment, so the signing takes
        one core from the system under test rather than all of them."""
        count = max(1, int(rate * seconds))
        workers = None
        if background and self._sign_rate:
            per_worker = self._sign_rate / max(1, self._sign_workers)
            workers = 1 if count / per_worker < seconds / 2 else None
        signed = presign(
            self.keys,
            count,
            chain_id=self.system.chain_id,
            expiry=BENCH_REPLAY_WINDOW // 2,
            run_tag=uuid.uuid4().hex[:8],
            workers=workers,
        )
        self.signing_cpu_s += signed.cpu_s
        self.signing_wall_s += signed.wall_s
        if signed.wall_s > 0 and count > 200:  # small batches sign in-process: no rate
            self._sign_rate = count / signed.wall_s
            self._sign_workers = workers or os.cpu_count() or 1
        return signed

    def _collect(
        self,
        item: tuple[threading.Thread, list[Any], float, float, Any],
        rate: float,
        is_first: bool,
        commit_until_s: float,
        hist: Histogram,
    ) -> tuple[dict[str, Any], float]:
        th, box, offset, length, signed = item
        th.join()
        if not box:
            raise RuntimeError("load generator failed (see the lines above)")
        res: LoadResult = box[0]
        self.last_result = res
        warm = min(self.settings.warmup_s, length / 3) if is_first else 0.0
        a = analyze(
            res,
            rate=rate,
            warmup_s=warm,
            duration_s=length,
            hist_out=hist,
            commit_until_s=commit_until_s,
            commit_block=1 if self.system.params.get("validators") == 1 else 2,  # report rule 5
        )
        committed = [i for i, t in enumerate(res.committed) if t == t]
        self.tx_ids = ["0x" + signed.ids[i].hex() for i in committed[:50_000]]
        self.record_ids = [_record_id(signed.raws[i]) for i in committed[:2000]]
        return a, offset

    def _act(self, fn: Action, t0: float, offset: float, done: list[dict[str, Any]]) -> None:
        time.sleep(max(0.0, t0 + offset - time.monotonic()))
        try:
            done.append({"offset_s": offset} | fn(self, t0))
        except Exception as exc:  # a failed drill is reported, not fatal
            done.append({"offset_s": offset, "error": repr(exc)})

    def queries(
        self, seconds: float, connections: int = QUERY_CONNECTIONS, idle_timeout_s: float = 120.0
    ) -> list[dict[str, Any]]:
        """Query rates on an idle node: first wait (bounded) until no node holds pending
        transactions, so the rates are not measured against the load run's backlog drain."""
        deadline = time.monotonic() + idle_timeout_s
        while time.monotonic() < deadline:
            try:
                busy = sum(int(rpc(p, "gm_status")["pendingTxs"]) for p in self.system.ports)
            except Exception:  # a node still restarting after a drill: ask again
                busy = 1
            if busy == 0:
                break
            time.sleep(0.5)
        port = self.system.ports[0]
        height = int(rpc(port, "gm_blockNumber"))
        # On a built long chain (bench/longchain.py) the queries pick from all of it: its sample
        # of transactions, spread over every height, besides the load's.
        lc = self.system.long_chain
        tx_ids = self.tx_ids + (lc.tx_ids if lc is not None else [])
        record_ids = self.record_ids + (lc.record_ids if lc is not None else [])
        out = []
        for kind in ("block", "tx", "evidence", "proof"):
            if kind != "block" and not tx_ids:
                continue
            plan = QueryPlan(
                port=port,
                kind=kind,
                tx_ids=tx_ids,
                record_ids=record_ids,
                max_height=max(1, height),
                seconds=seconds,
                connections=connections,
            )
            out.append(_in_child(_child_query, plan, timeout=seconds + 120))
        return out

    def sweep(
        self, rates: list[float], seconds: float, on_point: Callable[[int], None] | None = None
    ) -> dict[str, Any]:
        """Points in rising rate; stops after the second point that does not keep up. Each point
        carries its saturation verdict against the knee found (bench.knee rule 3)."""
        points = []
        for k, r in enumerate(rates):
            if on_point is not None:
                on_point(k)
            a = self.phase(r, seconds, label=f"sweep point {k + 1}/{len(rates)}")
            points.append(
                {
                    "offered_tps": r,
                    "tps_committed": a["tps_committed"],
                    "tps_accepted": a["tps_accepted"],
                    "success_rate": a["success_rate"],
                    "latency_ms": a["latency_ms"],
                    "batch": a["batch"],
                    "duration_s": seconds,
                    "p50_series_ms": window_p50s(a),
                }
            )
            sat = a["tps_committed"] < 0.95 * r or a["success_rate"] < 0.95
            if sat and sum(1 for p in points if p["tps_committed"] < 0.95 * p["offered_tps"]) >= 2:
                break
        knee = find_knee(
            [
                SweepPoint(
                    offered_tps=p["offered_tps"],
                    committed_tps=p["tps_committed"],
                    success_rate=p["success_rate"],
                    p99_ms=p["latency_ms"]["p99"],
                )
                for p in points
            ]
        )
        for p in points:
            p["saturation"] = classify(
                offered_tps=p["offered_tps"],
                committed_tps=p["tps_committed"],
                success_rate=p["success_rate"],
                p50_series_ms=p.pop("p50_series_ms"),
                knee_offered_tps=knee.offered_tps if knee else None,
            ).to_json()
        return {
            "points": points,
            "seconds_per_point": seconds,
            "batch": points[0]["batch"] if points else None,
            "knee": None
            if knee is None
            else {"offered_tps": knee.offered_tps, "committed_tps": knee.committed_tps},
        }


def window_p50s(a: dict[str, Any]) -> list[float]:
    """The per-second p50s inside a phase's measurement window (bench.knee rule 3's input)."""
    w0, w1 = a["window_s"]
    return [p["p50_ms"] for p in a["series"] if w0 <= p["t"] < w1 and p["p50_ms"] is not None]


def _record_id(raw: bytes) -> str:
    from gmchain.ledger.types import SignedTx

    tx = SignedTx.decode_tx(raw)
    return str(tx.body.args[0])


# --- fault actions (cluster4) -------------------------------------------------------------------


def _node_ids(h: Harness) -> dict[str, str]:
    return {n.name: rpc(n.rpc_port, "gm_nodeInfo")["nodeId"] for n in h.system.nodes}


def kill_one(name: str) -> Action:
    def act(h: Harness, t0: float) -> dict[str, Any]:
        h.system.kill(name)
        return {"action": f"killed {name}", "t": round(time.monotonic() - t0, 3)}

    return act


def kill_leader(h: Harness, t0: float) -> dict[str, Any]:
    """Kill the leader of the current round (leader = sorted node ids[round % n])."""
    ids = _node_ids(h)
    order = sorted(ids.values())
    watch = h.system.nodes[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rnd = int(rpc(watch.rpc_port, "gm_status")["round"])
        leader = order[rnd % len(order)]
        name = next(n for n, i in ids.items() if i == leader)
        if name != watch.name:
            h.system.kill(name)
            return {
                "action": f"killed leader {name} of round {rnd}",
                "t": round(time.monotonic() - t0, 3),
            }
        time.sleep(0.01)
    raise RuntimeError("the watched node stayed leader for 10 s")


def restart_after_blocks(name: str, blocks: int = 10) -> Action:
    def act(h: Harness, t0: float) -> dict[str, Any]:
        watch = h.system.nodes[0].rpc_port
        h.system.kill(name)
        t_kill = time.monotonic()
        h0 = int(rpc(watch, "gm_blockNumber"))
        while int(rpc(watch, "gm_blockNumber")) < h0 + blocks:
            time.sleep(0.05)
        down_blocks = int(rpc(watch, "gm_blockNumber")) - h0
        t_restart = time.monotonic()
        h.system.restart(name)
        port = next(n.rpc_port for n in h.system.nodes if n.name == name)
        target = int(rpc(watch, "gm_blockNumber"))
        t_up = time.monotonic()
        deadline = t_up + 120
        while time.monotonic() < deadline:
            try:
                if int(rpc(port, "gm_blockNumber", timeout=1)) >= target:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            return {"action": f"restart {name}", "error": "no catch-up within 120 s"}
        return {
            "action": f"killed {name}, restarted after {down_blocks} blocks",
            "t_kill": round(t_kill - t0, 3),
            "t_restart": round(t_restart - t0, 3),
            "blocks_behind": target - h0,
            "catch_up_s": round(time.monotonic() - t_restart, 3),
            "catch_up_after_rpc_up_s": round(time.monotonic() - t_up, 3),
        }

    return act
