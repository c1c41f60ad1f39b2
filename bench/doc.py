"""A tiny document model for the human report, rendered to Markdown and to self-contained HTML.

Rules this module keeps:
1. The report is built once (bench.human) as sections of paragraphs, bullet lists, tables and
   charts; Markdown and HTML are two renderings of the same blocks, so a number is the same
   string in both (a test parses both and compares them with the JSON).
2. Table cells are plain strings, already formatted; a renderer only escapes them (`|` in
   Markdown, HTML entities in HTML). Every table has a `key`: the HTML `id` (`t-KEY`) and a
   Markdown comment line (`<!-- table: KEY -->`) before it, so tools find a table by name.
3. Inline markup is limited to **bold** and `code` in paragraphs and list items.
4. The HTML file needs nothing else: CSS in a <style> element, charts as inline <svg>.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

__all__ = ["Bullets", "Chart", "Doc", "Para", "Section", "Table", "to_html", "to_markdown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Para:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    key: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    name: str  # file stem suffix: FILE-NAME.svg next to the Markdown
    title: str
    svg: str


Block = Para | Bullets | Table | Chart


@dataclass(slots=True, kw_only=True)
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Doc:
    title: str
    sections: list[Section] = field(default_factory=list)

    def charts(self) -> list[Chart]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Chart)]


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Doc, chart_file: dict[str, str] | None = None) -> str:
    """Rule 1; charts become image links to `chart_file[name]` (or are left out)."""
    lines = [f"# {doc.title}", ""]
    for sec in doc.sections:
        lines += [f"## {sec.title}", ""]
        for b in sec.blocks:
            match b:
                case Para(text=t):
                    lines += [t, ""]
                case Bullets(items=items):
                    lines += [f"- {i}" for i in items] + [""]
                case Table(key=k, header=h, rows=rows):
                    lines.append(f"<!-- table: {k} -->")
                    lines.append("| " + " | ".join(_md_cell(c) for c in h) + " |")
                    lines.append("|" + "---|" * len(h))
                    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
                    lines.append("")
                case Chart(name=n, title=t):
                    if chart_file and n in chart_file:
                        lines += [f"![{t}]({chart_file[n]})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    s = escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #333}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #bbb;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
code{background:#f3f3f3;padding:0 3px}.chart{margin:1em 0}
strong{color:#000}
"""


def to_html(doc: Doc) -> str:
    """Rules 1, 2 and 4."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(doc.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(doc.title)}</h1>",
    ]
    for sec in doc.sections:
        out.append(f"<h2>{escape(sec.title)}</h2>")
        for b in sec.blocks:
            match b:
                case Para(text=t):
                    out.append(f"<p>{_inline(t)}</p>")
                case Bullets(items=items):
                    out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
                case Table(key=k, header=h, rows=rows):
                    out.append(f'<table id="t-{escape(k)}"><thead><tr>')
                    out.append("".join(f"<th>{escape(c)}</th>" for c in h) + "</tr></thead><tbody>")
                    for r in rows:
                        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>")
                    out.append("</tbody></table>")
                case Chart(name=n, svg=svg):
                    out.append(f'<div class="chart" id="c-{escape(n)}">{svg}</div>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
