"""The human report: what a certifier reads, built from the JSON report alone.

Rules this module keeps:
1. Tables, never Python reprs: every number is formatted by one of `num` (the JSON value as
   written), `pct` (a 0..1 rate as a percentage with two decimals) or `hms`; a test parses the
   Markdown and the HTML tables and compares them with the JSON.
2. A run past saturation is never presented as the result: the summary opens with
   "PAST SATURATION: offered X tx/s, committed Y TPS" and the headline row is the knee of the
   sweep (bench.scenarios rule 3), or says that there is none and why.
3. Sections in a fixed order: summary (headline, main run), results per scenario with their
   duration and pass/fail against the CAICT criteria, rate sweep, charts over time, stability
   drift, nodes, queries, machine, software, microbenchmarks, method and definitions,
   parameters. A section whose data the run did not produce says so in one line.
"""

from __future__ import annotations

from typing import Any

from gmchain.bench.charts import all_charts
from gmchain.bench.doc import Bullets, Doc, Para, Section, Table
from gmchain.bench.loadgen import hms
from gmchain.bench.report import LATENCY_FIELDS, SPLIT_PARTS
from gmchain.bench.scenarios import CRITERIA

__all__ = ["build_report", "chart_files", "num", "pct"]

_LAT_NAMES = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9", "max": "max"}
_SPLIT_NAMES = {
    "admission": "due to acknowledged (admission)",
    "to_proposal": "acknowledged to its block's timestamp",
    "two_blocks": "its block to block h + 2 (the 2-chain)",
    "announce": "block h + 2 to commit seen",
    "total": "total (due to commit seen)",
}
_SPLIT_STATS = ("p50", "p90", "p99", "mean")
_SPLIT_ONE_VALIDATOR = {  # commit_block 1 (bench/report.py rule 5)
    "two_blocks": "its block to block h + 1 (one validator certifies h + 1 at once)",
    "announce": "block h + 1 to commit seen",
}


def _split_name(part: str, split: dict[str, Any]) -> str:
    """A split part's row name; reports before `commit_block` existed cut at h + 2."""
    if split.get("commit_block", 2) == 1:
        return _SPLIT_ONE_VALIDATOR.get(part, _SPLIT_NAMES[part])
    return _SPLIT_NAMES[part]


_VERDICT = {"below": "below the knee", "at": "at the knee", "past": "PAST SATURATION"}


def num(v: Any) -> str:
    """A JSON number as written in the JSON (`None` as an em dash)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def chart_files(doc: Doc, stem: str) -> dict[str, str]:
    return {c.name: f"{stem}-{c.name}.svg" for c in doc.charts()}


def _kv(key: str, rows: list[tuple[str, str]]) -> Table:
    return Table(key=key, header=["", "value"], rows=[[a, b] for a, b in rows])


def _summary(r: dict[str, Any]) -> Section:
    sec = Section(title="Summary")
    hl, sat = r["headline"], r["saturation"]
    if hl.get("past_saturation"):
        sec.blocks.append(
            Para(
                text=f"**{hl['past_saturation']}.** The main run offered more than the system "
                "commits, so its throughput and latency describe an overloaded queue and are "
                "not a result: " + "; ".join(sat["reasons"]) + "."
            )
        )
    if hl["source"]:
        rows = [
            ("headline from", hl["source"]),
            ("offered tx/s", num(hl["offered_tps"])),
            ("committed TPS", num(hl["tps_committed"])),
            ("latency p50 ms", num(hl["latency_ms"]["p50"])),
            ("latency p99 ms", num(hl["latency_ms"]["p99"])),
        ]
    else:
        rows = [("headline from", "none"), ("why", hl["why_none"])]
    sec.blocks.append(_kv("headline", rows))
    m = r["manifest"]
    sec.blocks.append(
        Para(
            text=f"Profile `{r['profile']}`, {m['date_utc']}, commit `{m['git_commit'][:12]}`"
            + (" (dirty tree)" if m.get("git_dirty") else "")
            + f". Command: `{r['command']}`"
        )
    )
    return sec


def _main_run(r: dict[str, Any]) -> Section:
    sat, b, g = r["saturation"], r["blocks"], r["generator"]
    lat = r["latency_ms"]
    rows = [
        ("position", _VERDICT[sat["verdict"]]),
        ("why", "; ".join(sat["reasons"])),
        ("offered tx/s", num(r["offered_tps"])),
        ("committed TPS", num(r["tps_committed"])),
        ("accepted TPS", num(r["tps_accepted"])),
        ("committed / offered", num(sat["committed_ratio"])),
        ("success rate", pct(r["success_rate"])),
        *((f"latency {_LAT_NAMES[k]} ms", num(lat[k])) for k in LATENCY_FIELDS),
        ("median latency, first third of window ms", num(sat["p50_first_third_ms"])),
        ("median latency, last third of window ms", num(sat["p50_last_third_ms"])),
        ("median latency slope ms/s", num(sat["p50_slope_ms_per_s"])),
        ("duration s", num(r["duration_s"])),
        ("measurement window s", f"{num(r['window_s'][0])} to {num(r['window_s'][1])}"),
        ("batch (tx per JSON-RPC request)", num(r["batch"])),
        ("blocks in window", num(b["count_in_window"])),
        ("mean block interval ms", num(b["interval_ms"]["mean"])),
        ("mean txs per block", num(b["txs_per_block_mean"])),
        ("SM2 ceiling TPS", num(r["ceiling_tps"])),
        ("ratio to ceiling", num(r["ratio_to_ceiling"])),
        ("generator CPU % of one core", num(g["cpu_pct_of_one_core"])),
        ("signing CPU s (before the window)", num(r["signing"]["cpu_s"])),
    ]
    sec = Section(title="Main run", blocks=[_kv("main", rows)])
    split = r.get("latency_split_ms")  # absent from reports made before it existed
    if split and split["count"]:
        # (the report's own definition, so a re-rendered report says what it said when made)
        defined = r["definitions"].get("latency_split", "")
        first = ", those of the phase's first segment" if r.get("segments", 1) > 1 else ""
        sec.blocks.append(
            Table(
                key="latency-split",
                header=["latency split (window)", "p50 ms", "p90 ms", "p99 ms", "mean ms"],
                rows=[
                    [_split_name(k, split), *(num(split[k][q]) for q in _SPLIT_STATS)]
                    for k in SPLIT_PARTS
                ],
            )
        )
        sec.blocks.append(Para(text=f"Over {num(split['count'])} transactions{first}: {defined}."))
    fails = r["failures"]
    if fails:
        sec.blocks.append(
            Table(
                key="failures",
                header=["failure", "count"],
                rows=[[k, num(v)] for k, v in fails.items()],
            )
        )
    else:
        sec.blocks.append(Para(text="Failures: none."))
    return sec


def _scenario_rows(r: dict[str, Any]) -> list[list[str]]:
    def row(name: str, d: dict[str, Any], crit: str, verdict: str) -> list[str]:
        return [
            name,
            crit,
            hms(d["duration_s"]),
            num(d["offered_tps"]),
            num(d["tps_committed"]),
            num(round(d["offered_tps"] / d["tps_committed"], 3)) if d["tps_committed"] else "—",
            pct(d["success_rate"]),
            num(d["latency_ms"]["p50"]),
            num(d["latency_ms"]["p99"]),
            _VERDICT[d["saturation"]["verdict"]],
            verdict,
        ]

    rows = [row("main run", r, "none (a measurement)", "—")]
    for key in ("stress", "spike", "stability"):
        sc = r["scenarios"].get(key)
        if sc:
            rows.append(
                row(sc["scenario"], sc, sc["criterion"], "PASS" if sc["passed"] else "FAIL")
            )
    return rows


def _scenarios(r: dict[str, Any]) -> Section:
    sec = Section(title="Results per scenario")
    header = [
        "scenario", "criterion", "duration", "offered tx/s", "committed TPS", "send/commit",
        "success", "p50 ms", "p99 ms", "position", "verdict",
    ]  # fmt: skip
    sec.blocks.append(Table(key="scenarios", header=header, rows=_scenario_rows(r)))
    if not any(k in r["scenarios"] for k in CRITERIA):
        sec.blocks.append(Para(text="No CAICT scenario ran (add `--sweep` or `--scenario caict`)."))
    drills = [(k, v) for k, v in r["scenarios"].items() if k not in CRITERIA]
    if drills:
        rows = []
        for k, v in drills:
            if not isinstance(v, dict):
                rows.append([k, "error", num(v)])
                continue
            keep = ("tps_before", "tps_after", "kept_pct", "commit_gap_s", "success_rate")
            facts = [f"{f} {num(v[f])}" for f in keep if f in v]
            facts += [
                "; ".join(f"{a}: {num(b)}" for a, b in act.items() if a != "offset_s")
                for act in v.get("actions", [])
            ]
            rows.append([k, hms(v.get("duration_s", 0)), ", ".join(facts)])
        sec.blocks.append(
            Table(key="drills", header=["fault drill", "duration", "result"], rows=rows)
        )
    return sec


def _sweep(r: dict[str, Any], charts: list[Any]) -> Section:
    sec = Section(title="Rate sweep and knee")
    sw = r.get("sweep")
    if not sw:
        sec.blocks.append(Para(text="No rate sweep ran: the charts show this run's phases only."))
    else:
        knee = sw["knee"]
        sec.blocks.append(
            Para(
                text=(
                    f"**Knee: offered {knee['offered_tps']:g} tx/s, committed "
                    f"{knee['committed_tps']:g} TPS**"
                    if knee
                    else "**No knee: no sweep point kept up**"
                )
                + f" (the healthy point with the highest committed TPS). Every point ran "
                f"{sw['seconds_per_point']:g} s with the same batch of {num(sw['batch'])}."
            )
        )
        rows = [
            [
                num(p["offered_tps"]),
                num(p["tps_committed"]),
                num(p["saturation"]["committed_ratio"]),
                pct(p["success_rate"]),
                num(p["latency_ms"]["p50"]),
                num(p["latency_ms"]["p99"]),
                num(p["batch"]),
                _VERDICT[p["saturation"]["verdict"]],
            ]
            for p in sw["points"]
        ]
        header = ["offered tx/s", "committed TPS", "committed / offered", "success", "p50 ms",
                  "p99 ms", "batch", "position"]  # fmt: skip
        sec.blocks.append(Table(key="sweep", header=header, rows=rows))
    sec.blocks += charts
    return sec


def _stability(r: dict[str, Any], charts: list[Any]) -> Section | None:
    sb = r["scenarios"].get("stability")
    if not sb:
        return None
    d = sb["drift"]
    sec = Section(title=f"Stability: drift over {hms(sb['duration_s'])}")
    sec.blocks.append(
        _kv(
            "stability-latency",
            [
                ("window s", num(d["window_s"])),
                ("median latency, first tenth ms", num(d["p50_ms_first"])),
                ("median latency, last tenth ms", num(d["p50_ms_last"])),
            ],
        )
    )
    rows = [
        [n, num(v["rss_mb_first"]), num(v["rss_mb_last"]), num(v["rss_mb_per_hour"])]
        for n, v in d["nodes"].items()
    ]
    header = ["node", "RSS MB, first tenth", "RSS MB, last tenth", "drift MB/h"]
    sec.blocks.append(Table(key="stability-rss", header=header, rows=rows))
    sec.blocks += charts
    return sec


def _nodes(r: dict[str, Any], charts: list[Any]) -> Section:
    rows = [
        [
            n,
            num(s["cpu_pct_mean"]),
            num(s["cpu_pct_max"]),
            num(s["rss_mb_max"]),
            num(s.get("rss_mb_last")),
            num(s.get("disk_write_mb_s_mean")),
        ]
        for n, s in r["nodes"].items()
    ]
    header = ["node", "CPU % mean", "CPU % max", "RSS MB max", "RSS MB last", "disk write MB/s"]
    return Section(
        title="Nodes (main run window; CPU 100 % = one core)",
        blocks=[Table(key="nodes", header=header, rows=rows), *charts],
    )


def _queries(r: dict[str, Any]) -> Section:
    qs = r.get("queries") or []
    if not qs:
        return Section(title="Queries", blocks=[Para(text="Queries were not measured.")])
    # Reports from before session 8 have no loopback ceiling: they render as they always did.
    has_loop = "http_loopback_qps" in r["microbench"]
    rows = [
        [
            q["kind"],
            num(q["queries_per_s"]),
            *([num(q.get("ratio_to_http_loopback"))] if has_loop else []),
            num(q["latency_ms"]["p50"]),
            num(q["latency_ms"]["p99"]),
        ]
        for q in qs
    ]
    header = ["kind", "queries/s", *(["ratio to HTTP loopback"] if has_loop else []), "p50 ms"]
    blocks: list[Any] = [Table(key="queries", header=[*header, "p99 ms"], rows=rows)]
    loop = r["microbench"].get("http_loopback") or {}
    if has_loop and loop.get("queries_per_s"):
        blocks.append(
            Para(
                text=f"HTTP loopback ceiling: {num(loop['queries_per_s'])} queries/s — the same "
                f"client, {num(loop['connections'])} connections, against {loop['server']} "
                f"({num(loop['reply_bytes'])}-byte answer), measured before the nodes started; "
                "the ratio is a kind's rate divided by it."
            )
        )
    elif has_loop:
        why = loop.get("error", "no answer")
        blocks.append(Para(text=f"HTTP loopback ceiling: not measured ({why})."))
    return Section(title="Queries (closed loop, after the main run)", blocks=blocks)


def _machine(r: dict[str, Any]) -> list[Section]:
    m, c = r["manifest"], r["manifest"].get("cpu", {})
    machine = [
        ("CPU model (/proc/cpuinfo model name)", m["cpu_model"]),
        (
            "CPU vendor, family, model, stepping",
            ", ".join(num(c.get(k)) for k in ("vendor", "family", "model", "stepping")),
        ),
        ("CPU clock MHz, cache", f"{num(c.get('mhz'))}, {num(c.get('cache'))}"),
        ("virtual machine (hypervisor flag)", num(c.get("virtualized"))),
        ("cores", num(m["cores"])),
        ("memory GB", num(m["memory_gb"])),
        ("OS", num(m.get("os"))),
        ("architecture", num(m.get("arch"))),
        ("load average 1/5/15 min before", ", ".join(num(x) for x in m["load_average_at_start"])),
        (
            "load average 1/5/15 min after",
            ", ".join(num(x) for x in m.get("load_average_at_end", [])),
        ),
        ("date (UTC)", m["date_utc"]),
    ]
    soft = [
        ("gmchain", num(m.get("gmchain"))),
        ("git commit", m["git_commit"] + (" (dirty tree)" if m.get("git_dirty") else "")),
        ("Python", m["python"]),
        ("OpenSSL", m["openssl"]),
        *((k, num(v)) for k, v in m.get("packages", {}).items()),
        *((("LevelDB build", m["leveldb"]),) if m.get("leveldb") else ()),
    ]
    mb = r["microbench"]
    micro = [
        ("SM2 verify/s, 1 thread", num(mb["sm2_verify_per_s_1thread"])),
        (f"SM2 verify/s, all {mb['threads']} threads", num(mb["sm2_verify_per_s_all_threads"])),
        ("SM2 sign/s", num(mb.get("sm2_sign_per_s"))),
        ("SM3 MB/s", num(mb["sm3_mb_per_s"])),
        ("synced LevelDB writes/s", num(mb["synced_writes_per_s"])),
    ]
    if "http_loopback_qps" in mb:  # since session 8 (bench/loopback.py)
        micro.append(("HTTP loopback queries/s (aiohttp + uvloop)", num(mb["http_loopback_qps"])))
    return [
        Section(title="Machine", blocks=[_kv("machine", machine)]),
        Section(title="Software", blocks=[_kv("software", soft)]),
        Section(
            title="Microbenchmarks (same machine, before the run)", blocks=[_kv("micro", micro)]
        ),
    ]


def _method(r: dict[str, Any]) -> list[Section]:
    crit = [
        [
            c["name"],
            c["rate"],
            c["send_commit"],
            ("> " if c["strict"] else "≥ ") + pct(c["min_success"]),
        ]
        for c in CRITERIA.values()
    ]
    method = Section(
        title="Method and definitions",
        blocks=[
            Para(
                text="CAICT / TrustedBench method: a rate sweep finds the knee (the highest "
                "committed TPS of a point that keeps up: committed ≥ 95 % of offered and ≥ 95 % "
                "success); then pressure at the knee, a spike at twice it and stability at a "
                "fifth of it. Every phase is open loop: transaction i is due at t0 + i/rate "
                "whatever the chain does, and its latency counts from that due time."
            ),
            Table(
                key="criteria",
                header=["scenario", "offered rate", "send/commit", "success"],
                rows=crit,
            ),
            Para(
                text="Position against the knee: **past saturation** when committed < 95 % of "
                "offered, success < 95 %, or the median latency climbs over the measurement "
                "window (last third ≥ 2× the first third and ≥ 200 ms more: an unbounded "
                "queue); **at the knee** when it keeps up only just (committed < 98 % of "
                "offered, latency rising by half that, or offered within 10 % of a measured "
                "knee); **below the knee** otherwise."
            ),
            Bullets(items=[f"**{k}**: {v}" for k, v in r["definitions"].items()]),
        ],
    )
    ld = r["load"]
    load = [
        ("batch (tx per JSON-RPC request)", num(ld["batch"])),
        ("batch setting", ld["batch_setting"]),
        ("connections", num(ld["connections"])),
        ("sender keys", num(ld["keys"])),
        ("warm-up s", num(ld["warmup_s"])),
        ("workload", ld["workload"]),
        ("signing CPU s, whole run", num(ld["signing_cpu_s_total"])),
    ]
    params = [(k, num(v)) for k, v in r["parameters"].items()]
    return [
        method,
        Section(title="Load generator", blocks=[_kv("load", load)]),
        Section(title="Node parameters", blocks=[_kv("parameters", params)]),
    ]


def build_report(r: dict[str, Any]) -> Doc:
    """Rule 3's sections from the JSON report `r`."""
    ch = all_charts(r)
    doc = Doc(title=f"gmchain benchmark report — profile {r['profile']}")
    doc.sections += [_summary(r), _main_run(r), _scenarios(r), _sweep(r, ch["load"])]
    doc.sections.append(Section(title="Main run over time", blocks=list(ch["time"])))
    st = _stability(r, ch["stability"])
    if st is not None:
        doc.sections.append(st)
    doc.sections += [_nodes(r, ch["nodes"]), _queries(r), *_machine(r), *_method(r)]
    return doc
