"""Charts for the benchmark report as plain SVG text: no plotting library, no fonts, no files.

Rules this module keeps:
1. A chart is a pure function of its numbers: the same report always gives the same bytes, so
   the HTML report is reproducible and a test can read it. Output is SVG 1.1 that browsers and
   Markdown viewers render inline or from a `.svg` file.
2. Every chart names its axes with units and has a legend; shaded spans (warm-up, measurement
   window) and vertical markers (the knee) carry their own labels.
3. Missing values (None) break a line instead of being drawn as zero.
(Why not matplotlib (no longer a dependency): it adds seconds of import time to
every run, its PNGs cannot be inlined in a self-contained HTML file without base64 blobs, and its
output varies with the installed fonts and version; these few line charts need none of it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

__all__ = ["PALETTE", "Series", "Span", "VLine", "line_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    name: str
    points: list[tuple[float, float | None]]
    color: str = ""
    markers: bool = False
    dashed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    x0: float
    x1: float
    label: str
    color: str = "#dddddd"


@dataclass(frozen=True, slots=True, kw_only=True)
class VLine:
    x: float
    label: str
    color: str = "#000000"


@dataclass(slots=True, kw_only=True)
class _Frame:
    x0: float
    x1: float
    y0: float
    y1: float
    log_y: bool
    left: int = 64
    right: int = 16
    top: int = 46
    bottom: int = 44
    width: int = 720
    height: int = 300
    extra: list[str] = field(default_factory=list)

    def px(self, x: float) -> float:
        w = self.width - self.left - self.right
        return self.left + (x - self.x0) / ((self.x1 - self.x0) or 1) * w

    def py(self, y: float) -> float:
        h = self.height - self.top - self.bottom
        if self.log_y:
            y, lo, hi = math.log10(max(y, 1e-9)), math.log10(self.y0), math.log10(self.y1)
        else:
            lo, hi = self.y0, self.y1
        return self.top + h - (y - lo) / ((hi - lo) or 1) * h


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(1, target)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _ticks(lo: float, hi: float) -> list[float]:
    step = _nice_step(hi - lo)
    start = math.floor(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            out.append(round(v, 10))
        v += step
    return out


def _log_ticks(lo: float, hi: float) -> list[float]:
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10**e for m in (1, 2, 5) if lo <= m * 10**e <= hi]
    return out


def _fmt(v: float) -> str:
    if abs(v) >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _bounds(series: list[Series], spans: list[Span], vlines: list[VLine], log_y: bool) -> _Frame:
    xs = [x for s in series for x, y in s.points if y is not None]
    xs += [v for sp in spans for v in (sp.x0, sp.x1)] + [v.x for v in vlines]
    ys = [y for s in series for _, y in s.points if y is not None]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if log_y:
        pos = [y for y in ys if y > 0] or [1.0]
        y0 = 10 ** math.floor(math.log10(min(pos)))
        y1 = 10 ** math.ceil(math.log10(max(pos) * 1.0001))
        return _Frame(x0=x0, x1=x1 if x1 > x0 else x0 + 1, y0=y0, y1=max(y1, y0 * 10), log_y=True)
    y1 = max(ys) if ys else 1.0
    y1 = y1 * 1.05 if y1 > 0 else 1.0
    step = _nice_step(y1)
    return _Frame(
        x0=x0, x1=x1 if x1 > x0 else x0 + 1, y0=0.0, y1=math.ceil(y1 / step) * step, log_y=False
    )


def line_chart(
    *,
    title: str,
    x_label: str,
    y_label: str,
    series: list[Series],
    spans: list[Span] | None = None,
    vlines: list[VLine] | None = None,
    log_y: bool = False,
    width: int = 720,
    height: int = 300,
) -> str:
    """One SVG line chart (rules 1-3)."""
    spans, vlines = spans or [], vlines or []
    f = _bounds(series, spans, vlines, log_y)
    f.width, f.height = width, height
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13">'
        f"{escape(title)}</text>",
    ]
    bottom = height - f.bottom
    for sp in spans:
        a, b = f.px(sp.x0), f.px(sp.x1)
        out.append(
            f'<rect x="{a:.1f}" y="{f.top}" width="{max(0.0, b - a):.1f}" '
            f'height="{bottom - f.top}" fill="{sp.color}" fill-opacity="0.5"/>'
        )
        out.append(
            f'<text x="{(a + b) / 2:.1f}" y="{f.top + 12}" text-anchor="middle" fill="#555">'
            f"{escape(sp.label)}</text>"
        )
    yt = _log_ticks(f.y0, f.y1) if log_y else _ticks(f.y0, f.y1)
    for v in yt:
        y = f.py(v)
        out.append(
            f'<line x1="{f.left}" y1="{y:.1f}" x2="{width - f.right}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(f'<text x="{f.left - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    for v in _ticks(f.x0, f.x1):
        x = f.px(v)
        out.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#444"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_fmt(v)}</text>')
    out.append(
        f'<path d="M{f.left},{f.top} V{bottom} H{width - f.right}" fill="none" stroke="#444"/>'
    )
    out.append(
        f'<text x="{(f.left + width - f.right) / 2:.0f}" y="{height - 6}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="12" y="{(f.top + bottom) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(f.top + bottom) / 2:.0f})">{escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        out += _polyline(f, s, color)
    for vl in vlines:
        x = f.px(vl.x)
        out.append(
            f'<line x1="{x:.1f}" y1="{f.top}" x2="{x:.1f}" y2="{bottom}" stroke="{vl.color}" '
            f'stroke-dasharray="5,3"/>'
        )
        out.append(
            f'<text x="{x + 4:.1f}" y="{f.top + 26}" fill="{vl.color}">{escape(vl.label)}</text>'
        )
    out += _legend(f, series)
    out.append("</svg>")
    return "\n".join(out)


def _polyline(f: _Frame, s: Series, color: str) -> list[str]:
    out, run = [], []
    dash = ' stroke-dasharray="6,4"' if s.dashed else ""
    pts = sorted(s.points, key=lambda p: p[0])
    for x, y in [*pts, (math.inf, None)]:
        if y is not None and not (f.log_y and y <= 0):
            run.append(f"{f.px(x):.1f},{f.py(y):.1f}")
            continue
        if len(run) > 1:
            out.append(
                f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                f'stroke-width="1.6"{dash}/>'
            )
        if s.markers:
            for p in run:
                cx, cy = p.split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
        run = []
    return out


def _legend(f: _Frame, series: list[Series]) -> list[str]:
    """One row under the title (rule 2), out of the plot area so no data hides behind it."""
    out = []
    x = float(f.left)
    y = 32
    for i, s in enumerate(series):
        if not s.name:  # a further point of a named series
            continue
        color = s.color or PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x:.0f}" y="{y - 5}" width="12" height="3" fill="{color}"/>')
        out.append(f'<text x="{x + 16:.0f}" y="{y}">{escape(s.name)}</text>')
        x += 16 + 6.5 * len(s.name) + 14
    return out
