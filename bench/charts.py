"""The report's charts, built from the JSON report alone (bench.svg draws them).

Rules this module keeps:
1. Committed vs offered: every phase of the run is a point (sweep points, main run, CAICT
   scenarios), with the line committed = offered for reference and the knee marked.
2. Latency percentiles (p50, p90, p99) vs offered, on a log axis, for the same points.
3. Over time: throughput (offered, accepted, committed per second) and latency (p50, p99), with
   the warm-up, measurement window and drain shaded and labelled.
4. Per node: CPU %, RSS MB and disk write MB/s over the whole run, the main run's measurement
   window shaded; the stability phase's latency and RSS over its duration, so drift shows.
"""

from __future__ import annotations

from typing import Any

from gmchain.bench.doc import Chart
from gmchain.bench.svg import Series, Span, VLine, line_chart

__all__ = ["all_charts", "load_points"]

_WARM, _MEASURE, _DRAIN = "#f2d7a6", "#c9e8c9", "#dddddd"


def load_points(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(phase name, phase dict with offered_tps, tps_committed, latency_ms) of every load phase."""
    out: list[tuple[str, dict[str, Any]]] = [("main run", report)]
    for k, p in enumerate((report.get("sweep") or {}).get("points", [])):
        out.append((f"sweep {k + 1}", p))
    for name, sc in report.get("scenarios", {}).items():
        if isinstance(sc, dict) and "tps_committed" in sc and "latency_ms" in sc:
            out.append((name, sc))
    return out


def _knee_line(report: dict[str, Any]) -> list[VLine]:
    knee = (report.get("sweep") or {}).get("knee")
    if not knee:
        return []
    return [VLine(x=knee["offered_tps"], label=f"knee: {knee['committed_tps']:g} TPS")]


def _committed_vs_offered(report: dict[str, Any]) -> Chart:
    pts = load_points(report)
    xs = sorted(p["offered_tps"] for _, p in pts)
    sweep = [(p["offered_tps"], p["tps_committed"]) for n, p in pts if n.startswith("sweep")]
    other = [(p["offered_tps"], p["tps_committed"]) for n, p in pts if not n.startswith("sweep")]
    series = [Series(name="committed = offered", points=[(0, 0), (xs[-1], xs[-1])], dashed=True)]
    if sweep:
        series.append(Series(name="rate sweep", points=sweep, markers=True))
    series.append(Series(name="other phases", points=[(x, y) for x, y in other], markers=True))
    svg = line_chart(
        title="Committed vs offered load",
        x_label="offered tx/s",
        y_label="committed TPS",
        series=_points_only(series, keep_lines={"committed = offered", "rate sweep"}),
        vlines=_knee_line(report),
    )
    return Chart(name="knee", title="Committed vs offered load", svg=svg)


def _points_only(series: list[Series], keep_lines: set[str]) -> list[Series]:
    """Scattered phases are markers only: draw each as its own one-point series."""
    out = []
    for s in series:
        if s.name in keep_lines:
            out.append(s)
            continue
        for k, pt in enumerate(s.points):
            out.append(
                Series(name=s.name if k == 0 else "", points=[pt], markers=True, color="#ff7f0e")
            )
    return [s for s in out if s.points]


def _latency_vs_offered(report: dict[str, Any]) -> Chart:
    pts = sorted(
        ((p["offered_tps"], p["latency_ms"]) for _, p in load_points(report)), key=lambda t: t[0]
    )
    series = [
        Series(name=k, points=[(x, lat[k] or None) for x, lat in pts], markers=True)
        for k in ("p50", "p90", "p99")
    ]
    svg = line_chart(
        title="Latency percentiles vs offered load (every phase)",
        x_label="offered tx/s",
        y_label="latency ms (log)",
        series=series,
        vlines=_knee_line(report),
        log_y=True,
    )
    return Chart(name="latency", title="Latency vs offered load", svg=svg)


def _spans(report: dict[str, Any]) -> list[Span]:
    w0, w1 = report["window_s"]
    end = max([p["t"] + 1 for p in report["series"]] + [w1])
    return [
        Span(x0=0, x1=w0, label="warm-up", color=_WARM),
        Span(x0=w0, x1=w1, label="measurement window", color=_MEASURE),
        Span(x0=w1, x1=end, label="drain", color=_DRAIN),
    ]


def _over_time(report: dict[str, Any]) -> list[Chart]:
    s = report["series"]
    thr = line_chart(
        title="Main run: throughput over time",
        x_label="seconds since the first due transaction",
        y_label="tx per second",
        series=[
            Series(name=k, points=[(p["t"], p[k]) for p in s])
            for k in ("offered", "accepted", "committed")
        ],
        spans=_spans(report),
    )
    lat = line_chart(
        title="Main run: commit latency over time",
        x_label="seconds since the first due transaction",
        y_label="latency ms",
        series=[
            Series(name=k.removesuffix("_ms"), points=[(p["t"], p[k]) for p in s])
            for k in ("p50_ms", "p99_ms")
        ],
        spans=_spans(report),
    )
    return [
        Chart(name="time-tps", title="Throughput over time", svg=thr),
        Chart(name="time-latency", title="Latency over time", svg=lat),
    ]


def _nodes(report: dict[str, Any]) -> list[Chart]:
    ns = report.get("node_series") or {}
    if not ns:
        return []
    t0 = report.get("t0_s", 0.0)
    w0, w1 = report["window_s"]
    span = [Span(x0=t0 + w0, x1=t0 + w1, label="main run window", color=_MEASURE)]
    out = []
    for idx, (key, unit, title) in enumerate(
        (
            ("cpu", "CPU % (100 = one core)", "CPU"),
            ("rss", "RSS MB", "RSS"),
            ("disk", "disk write MB/s", "disk writes"),
        )
    ):
        svg = line_chart(
            title=f"Per node: {title} over the whole run",
            x_label="seconds since the harness started sampling",
            y_label=unit,
            series=[  # reports before disk sampling have three columns
                Series(
                    name=n, points=[(r[0], r[1 + idx] if len(r) > 1 + idx else None) for r in rows]
                )
                for n, rows in ns.items()
            ],
            spans=span,
        )
        out.append(Chart(name=f"nodes-{key}", title=f"Per-node {title}", svg=svg))
    return out


def _stability(report: dict[str, Any]) -> list[Chart]:
    sb = report.get("scenarios", {}).get("stability")
    if not isinstance(sb, dict) or not sb.get("series"):
        return []
    s = sb["series"]
    lat = line_chart(
        title=f"Stability: latency over {sb['duration_s']:g} s",
        x_label="seconds since the phase's first due transaction",
        y_label="latency ms",
        series=[
            Series(name=k.removesuffix("_ms"), points=[(p["t"], p[k]) for p in s])
            for k in ("p50_ms", "p99_ms")
        ]
        + [Series(name="committed tx/s", points=[(p["t"], p["committed"]) for p in s])],
    )
    out = [Chart(name="stability-latency", title="Stability: latency drift", svg=lat)]
    ns = report.get("node_series") or {}
    t0, (w0, w1) = sb["t0_s"], sb["window_s"]
    rows = {
        n: [(r[0] - t0, r[2]) for r in pts if t0 + w0 <= r[0] <= t0 + w1] for n, pts in ns.items()
    }
    if any(rows.values()):
        rss = line_chart(
            title="Stability: RSS per node",
            x_label="seconds since the phase's first due transaction",
            y_label="RSS MB",
            series=[Series(name=n, points=p) for n, p in rows.items() if p],
        )
        out.append(Chart(name="stability-rss", title="Stability: RSS drift", svg=rss))
    return out


def all_charts(report: dict[str, Any]) -> dict[str, list[Chart]]:
    """Charts by report section: `load`, `time`, `nodes`, `stability`."""
    return {
        "load": [_committed_vs_offered(report), _latency_vs_offered(report)],
        "time": _over_time(report),
        "nodes": _nodes(report),
        "stability": _stability(report),
    }
