"""Results as people read them: tables, CSV, PNG charts, HTML pages, run-to-run changes.

May import: edgeopt.host.errors, edgeopt.host.config, edgeopt.proto. Only the CLI imports it.
This package is the bench report's public face: `from edgeopt.host import report`, then
`report.terminal_table`, `report.write_csv`, `report.to_records`, `report.pareto`,
`report.plot`, `report.render_png`, `report.html_page`, `report.write_html` (see `__all__`).
matplotlib is imported only when a chart is drawn (`chart` has no module-level import of it).

    names       short names of execution providers, for every report
    table       plain-text columns and JSON for the CLI
    cases       benchmark cases: the model, checks, presentation order, Pareto front
    text        the terminal table of cases (its cells serve the page too)
    records     cases as CSV rows and JSON records
    chart       the PNG chart of cases (matplotlib, imported when drawing)
    html        the self-contained HTML page of cases
    history     what changed between runs, beyond the noise
    op_profile  an operator profile as text and as a chart
    outputs     a model's outputs (tensors, sequences, maps) as lines, JSON and files

The views import `cases`, never the reverse: names <── cases <── text, records, chart <── html.
"""

from edgeopt.host.report.cases import (
    STATUSES,
    VARIANT_ORDER,
    Case,
    CaseDict,
    CaseLike,
    Status,
    pareto,
)
from edgeopt.host.report.chart import plot, render_png
from edgeopt.host.report.html import html_page, write_html
from edgeopt.host.report.names import short_provider
from edgeopt.host.report.records import CSV_COLUMNS, to_records, write_csv
from edgeopt.host.report.text import TABLE_HEADERS, terminal_table

__all__ = [
    "CSV_COLUMNS",
    "STATUSES",
    "TABLE_HEADERS",
    "VARIANT_ORDER",
    "Case",
    "CaseDict",
    "CaseLike",
    "Status",
    "html_page",
    "pareto",
    "plot",
    "render_png",
    "short_provider",
    "terminal_table",
    "to_records",
    "write_csv",
    "write_html",
]
