"""Turning raw load results into the report's numbers: analysis and JSON schema.

Rules this module keeps:
1. Definitions (printed in every report, `DEFINITIONS`): committed = in a block with a quorum
   certificate, fsynced on the answering node (the first node to announce it on newHeads);
   TPS = committed valid transactions over the steady window after warm-up; accepted TPS
   (acknowledged by gm_sendRawTransaction) is reported separately; latency = commit time -
   due time (open loop).
2. Stable field names: `REQUIRED_FIELDS` are always present (`check_schema` enforces it); new
   fields may be added, none renamed.
3. Analysis is a pure function of the recorded times, so it is unit-tested on synthetic results.
4. A long phase runs as consecutive segments (bench.run rule 5); `merge_segments` combines
   their analyses exactly: counts and failures add up, latency histograms merge, the steady
   windows are laid end to end (a segment's commits that land in a later segment's window
   count: `commit_until_s`), and the per-second series continue on one time axis.
5. The latency split (`latency_split_ms`, issue 15 item 2: where a light-load transaction's time
   goes) cuts each window transaction's latency at three instants it can be placed by: its
   acknowledgement, the timestamp of the block that holds it (height h) and the timestamp of
   the block whose certification commits h, h + `commit_block` (the 2-chain rule: h commits
   when h + 1 is certified; with several validators the leader of h + 2 does that just before
   it proposes, so 2; one validator's own vote certifies h + 1 as it is proposed, so 1 — cut at
   h + 2 there, an idle chain's late h + 2 made `announce` negative). So admission +
   to_proposal + two_blocks + announce = total for every transaction, and the components'
   means add up to the total's mean. Counted are the transactions whose acknowledgement, h and
   h + commit_block were all seen — so not those of a phase's last block or two, which the idle
   chain never follows. Block timestamps are whole milliseconds (rounded down): to_proposal
   reads ~0.5 ms low and announce ~0.5 ms high.
   A phase run in segments (rule 4) reports the split of its first segment.
The human report (Markdown, HTML, SVG charts) is bench.human's, built from this JSON alone.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

from gmchain.bench.hdr import Histogram
from gmchain.bench.loadgen import LoadResult
from gmchain.bench.relaystats import percentiles

__all__ = [
    "DEFINITIONS",
    "REQUIRED_FIELDS",
    "SPLIT_PARTS",
    "analyze",
    "check_schema",
    "latency_split",
    "merge_segments",
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
    "latency_split": "each transaction's latency cut at its acknowledgement and at two block "
    "timestamps (the proposer's wall clock, placed on the generator's monotonic clock): "
    "admission = acknowledged - due; to_proposal = timestamp of its block h - acknowledged; "
    "two_blocks = timestamp of block h + commit_block - timestamp of h (h commits when h + 1 is "
    "certified: with several validators just before h + 2 is proposed, commit_block 2; with one, "
    "as h + 1 is proposed, commit_block 1); announce = commit seen - timestamp of h + "
    "commit_block; nearest-rank percentiles and the mean, in ms",
    "http_loopback_qps": "queries/s the bench's query client gets from a minimal aiohttp + uvloop "
    "JSON-RPC server on loopback (one POST route, the body parsed, a fixed 2,048-byte answer), "
    "same connections; a query kind's ratio_to_http_loopback is its rate divided by this",
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


def analyze(
    res: LoadResult,
    *,
    rate: float,
    warmup_s: float,
    duration_s: float,
    hist_out: Histogram | None = None,
    commit_until_s: float | None = None,
    commit_block: int = 2,
) -> dict[str, Any]:
    """Rule 1 over one load phase; times relative to the phase's t0. The window's latencies
    are also recorded into `hist_out` when given, and a segment counts its commits and
    acknowledgements up to `commit_until_s` (the end of the whole phase's window), so the
    segments' counts add up to the phase's (rule 4)."""
    t0 = res.t0
    w0, w1 = t0 + warmup_s, t0 + duration_s
    c1 = t0 + (duration_s if commit_until_s is None else commit_until_s)
    win = max(1e-9, w1 - w0)
    n = len(res.due)
    valid_frac = res.receipts_ok / res.receipts_checked if res.receipts_checked else 1.0
    committed_idx = [i for i in range(n) if _ok(res.committed[i])]
    in_win = sum(1 for i in committed_idx if w0 <= res.committed[i] <= c1)
    acked_in_win = sum(1 for t in res.acked if _ok(t) and w0 <= t <= c1)
    hist = Histogram()
    for i in committed_idx:
        if w0 <= res.due[i] <= w1:
            hist.record(max(0, int((res.committed[i] - res.due[i]) * 1e6)))
    if hist_out is not None:
        hist_out.merge(hist)
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
        "latency_split_ms": latency_split(res, w0, w1, commit_block),
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


SPLIT_PARTS = ("admission", "to_proposal", "two_blocks", "announce", "total")


def latency_split(res: LoadResult, w0: float, w1: float, commit_block: int = 2) -> dict[str, Any]:
    """Rule 5, over the transactions due in [w0, w1]; `commit_block`: 2 with several validators,
    1 with one."""
    off = res.wall_minus_mono
    parts: dict[str, list[float]] = {k: [] for k in SPLIT_PARTS}
    if not res.heights or not _ok(off):
        return {"count": 0, "commit_block": commit_block} | {k: None for k in SPLIT_PARTS}
    for i, due in enumerate(res.due):
        h, acked, done = res.heights[i], res.acked[i], res.committed[i]
        if not (w0 <= due <= w1 and _ok(acked) and _ok(done)):
            continue
        s0, s2 = res.stamps.get(h), res.stamps.get(h + commit_block)
        if s0 is None or s2 is None:
            continue
        t0, t2 = s0 / 1000 - off, s2 / 1000 - off
        cuts = (acked - due, t0 - acked, t2 - t0, done - t2, done - due)
        for k, v in zip(SPLIT_PARTS, cuts, strict=True):
            parts[k].append(v * 1000)
    out: dict[str, Any] = {"count": len(parts["total"]), "commit_block": commit_block}
    for k, vs in parts.items():
        st = percentiles(vs, mean_digits=2)
        out[k] = (
            {q: round(st[q], 2) for q in ("p50", "p90", "p99")} | {"mean": st["mean"]}
            if vs
            else None
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


def merge_segments(parts: list[tuple[dict[str, Any], float]], hist: Histogram) -> dict[str, Any]:
    """Rule 4: `parts` = (analysis, its t0 offset in s from the first segment's t0) in order;
    `hist` holds every segment's window latencies."""
    first = parts[0][0]
    counts: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    by_t: dict[int, dict[str, Any]] = {}
    win = committed_w = accepted_w = 0.0
    blocks_in = 0
    for a, off in parts:
        counts.update(a["counts"])
        failures.update(a["failures"])
        w = a["window_s"][1] - a["window_s"][0]
        win += w
        committed_w += a["tps_committed"] * w
        accepted_w += a["tps_accepted"] * w
        blocks_in += a["blocks"]["count_in_window"]
        for p in a["series"]:  # a segment's late commits share seconds with the next one
            t = p["t"] + round(off)
            q = by_t.get(t)
            if q is None:
                by_t[t] = p | {"t": t}
                continue
            lat = p if p["committed"] > q["committed"] else q
            by_t[t] = {
                "t": t,
                **{k: q[k] + p[k] for k in ("offered", "accepted", "committed")},
                "p50_ms": lat["p50_ms"],
                "p99_ms": lat["p99_ms"],
            }
    total_s = parts[-1][1] + parts[-1][0]["window_s"][1]
    gen = [a["generator"] for a, _ in parts]
    blocks = dict(first["blocks"])
    blocks["count_in_window"] = blocks_in
    blocks["heights"] = [first["blocks"]["heights"][:1], parts[-1][0]["blocks"]["heights"][-1:]]
    blocks["heights"] = [h for hs in blocks["heights"] for h in hs]
    blocks["max_gap_ms"] = max((a["blocks"]["max_gap_ms"] or 0.0 for a, _ in parts), default=None)
    return first | {
        "tps_committed": round(committed_w / win, 1) if win else 0.0,
        "tps_accepted": round(accepted_w / win, 1) if win else 0.0,
        "latency_ms": hist.summary_ms(),
        "success_rate": round(counts["committed_valid"] / counts["scheduled"], 4)
        if counts["scheduled"]
        else 0.0,
        "counts": dict(counts),
        "failures": dict(failures),
        "window_s": [first["window_s"][0], total_s],
        "series": [by_t[t] for t in sorted(by_t)],
        "blocks": blocks,
        "generator": {
            "cpu_s": round(sum(g["cpu_s"] for g in gen), 2),
            "wall_s": round(sum(g["wall_s"] for g in gen), 2),
            "cpu_pct_of_one_core": round(
                100 * sum(g["cpu_s"] for g in gen) / max(1e-9, sum(g["wall_s"] for g in gen)), 1
            ),
            "watched_rpc_port": first["generator"]["watched_rpc_port"],
        },
        "segments": len(parts),
    }
