"""The one self-contained HTML page of `edgeopt bench`'s report: metadata, table, plots.

Its table has the cells of `edgeopt.host.report.text` (full error messages), its chart is the
PNG of `edgeopt.host.report.chart`, embedded.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from edgeopt.host.report.cases import Case, CaseLike, checked_cases, display_order, front_of
from edgeopt.host.report.chart import (
    DPI,
    EMPTY_FIGURE_SIZE,
    FIGURE_SIZE,
    render_png,
    summary_line,
)
from edgeopt.host.report.text import TABLE_HEADERS, row_cells

__all__ = ["WARN_FLAGS", "html_page", "write_html"]

WARN_FLAGS = frozenset({"throttled", "loaded", "partial"})
"""Flags of a measurement that the page shows as warnings."""
_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 12px; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 28px 0 8px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.meta dt { font-weight: 600; color: #555; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
p.summary { color: #444; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
th, td { padding: 4px 6px; border-bottom: 1px solid #e3e3e3; text-align: left;
         vertical-align: top; }
th { background: #f4f5f7; position: sticky; top: 0; white-space: nowrap; }
td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; min-width: 9em; overflow-wrap: anywhere; }
tr.failed td { background: #fdecea; }
tr.unsupported td, tr.not-run td { color: #777; background: #fafafa; }
tr.pareto td:nth-child(2) { font-weight: 700; }
.flag { display: inline-block; padding: 0 6px; border-radius: 8px; background: #e8eaed;
        font-size: 0.78rem; margin-right: 4px; }
.flag.warn { background: #ffe7c2; color: #7a4b00; }
.status { font-weight: 600; }
figure { margin: 16px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption, footer { color: #666; font-size: 0.85rem; }
"""
_NUMERIC = frozenset({"THREADS", "P50", "±CI", "P99", "THROUGHPUT", "SPEED-UP", "SIZE"})


def _html_notes(case: Case) -> str:
    parts = []
    if not case.ok:
        status = f'<span class="status">{html.escape(case.status)}</span>'
        parts.append(f"{status}: {html.escape(case.error)}" if case.error else status)
    parts.extend(
        f'<span class="flag{" warn" if f in WARN_FLAGS else ""}">{html.escape(f)}</span>'
        for f in case.flags
    )
    return " ".join(parts)


def _html_table(cases: Sequence[Case], front: set[int]) -> str:
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in TABLE_HEADERS)
    rows = []
    for i in display_order(cases):
        case = cases[i]
        cells = row_cells(case, None)[:-1]
        tds = []
        for header, cell in zip(TABLE_HEADERS, cells, strict=False):
            text = html.escape(cell)
            if header == "VARIANT" and i in front:
                text += ' <span title="on its device\'s Pareto front">★</span>'
            kind = "num" if header in _NUMERIC else "wrap" if header == "ACCURACY" else ""
            tds.append(f'<td class="{kind}">{text}</td>' if kind else f"<td>{text}</td>")
        tds.append(f'<td class="wrap">{_html_notes(case)}</td>')
        classes = case.status.replace(" ", "-") + (" pareto" if i in front else "")
        rows.append(f'<tr class="{classes}">{"".join(tds)}</tr>')
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows)
        + "\n</tbody>\n</table></div>"
    )


def html_page(cases: Iterable[CaseLike], title: str, meta: Mapping[str, str] | None = None) -> str:
    """The text of the page `write_html` writes."""
    checked = [c for _, c in checked_cases(cases)]
    front = front_of(checked, per_device=True)
    png = base64.b64encode(render_png(checked)).decode("ascii")
    size = FIGURE_SIZE if any(c.ok for c in checked) else EMPTY_FIGURE_SIZE
    width, height = (round(v * DPI) for v in size)
    meta_items = "\n".join(
        f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
        for k, v in (meta or {}).items()
    )
    meta_list = f'<dl class="meta">\n{meta_items}\n</dl>\n' if meta_items else ""
    summary = summary_line(checked) or "none"
    noun = "case" if len(checked) == 1 else "cases"
    alt = (
        "Three plots: median latency per device and variant, speed-up against fp32, and model "
        "size against latency with the Pareto front"
        if any(c.ok for c in checked)
        else "No successful benchmark case to plot"
    )
    # The policy makes the page inert even if some text escaped escaping: no script, no fetch.
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{meta_list}<h2>Results</h2>
<p class="summary">{len(checked)} {noun}: {html.escape(summary)}. ★ marks a variant on its \
device's Pareto front (no other is smaller, faster and, when validated, more accurate).</p>
{_html_table(checked, front)}
<h2>Plots</h2>
<figure>
<img src="data:image/png;base64,{png}" width="{width}" height="{height}" alt="{alt}">
<figcaption>(a) median latency with its confidence interval, (b) speed-up against fp32,
(c) size against latency; cases that are not ok are left out.</figcaption>
</figure>
<footer>Made by edgeopt bench.</footer>
</body>
</html>
"""


def write_html(
    cases: Iterable[CaseLike], path: str | Path, title: str, meta: Mapping[str, str] | None = None
) -> None:
    """Write one self-contained HTML5 page: metadata, the table and the plots.

    `meta` (e.g. model, date, edgeopt version, host CPU) becomes a definition list, in its
    order. The table has the columns of `terminal_table` with full error messages; the PNG of
    `plot` is embedded as a data: URI. The page loads nothing (no external URL; a content
    security policy forbids scripts and fetches) and all text is HTML-escaped. UTF-8.
    """
    Path(path).write_text(html_page(cases, title, meta), encoding="utf-8")
