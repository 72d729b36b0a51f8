"""The aligned text table `edgeopt bench` prints, one row per case; its cells serve the page too.

Rows follow the cases' presentation order (`edgeopt.host.report.cases.display_order`); user text
is made safe for a terminal (control characters shown as "?").
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeopt.host.report.cases import Case, CaseLike, checked_cases, in_display_order
from edgeopt.host.report.table import table

__all__ = ["TABLE_HEADERS", "row_cells", "terminal_table"]

TABLE_HEADERS = (
    "DEVICE", "VARIANT", "THREADS", "EP", "P50", "±CI", "P99", "THROUGHPUT", "SPEED-UP", "SIZE",
    "ACCURACY", "FLAGS/ERROR",
)  # fmt: skip
_ERROR_WIDTH = 60
"""Characters of an error message the terminal table shows (the CSV and HTML keep it all)."""


def _printable(text: str) -> str:
    """User text made safe for a terminal: control characters (ESC, newlines) become "?"."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:#.3g} ms" if value < 100 else f"{value:.0f} ms"


def _mib(size: int | None) -> str:
    if size is None:
        return "-"
    mib = size / 2**20
    return f"{mib:.2f} MiB" if mib < 10 else f"{mib:.1f} MiB"


def _accuracy_text(case: Case) -> str:
    parts = []
    if case.cosine is not None:
        parts.append(f"cos {case.cosine:.4f}")
    if case.accuracy_drop is not None:
        parts.append(f"drop {case.accuracy_drop * 100:.2f} pt")
    return ", ".join(parts)


def _notes(case: Case, width: int | None) -> str:
    """FLAGS/ERROR: the flags, and for a case that is not ok its status and error."""
    parts = list(case.flags)
    if not case.ok:
        error = case.error.strip().splitlines()[0] if case.error.strip() else ""
        if width is not None and len(error) > width:
            error = error[: width - 1] + "…"
        parts.insert(0, f"{case.status}: {error}" if error else case.status)
    return ", ".join(parts)


def row_cells(case: Case, error_width: int | None) -> list[str]:
    """The cells of a table row, unescaped (TABLE_HEADERS order)."""
    ok = case.ok
    ci = case.ci_percent
    return [
        case.device,
        case.variant,
        str(case.threads),
        case.ep,
        _ms(case.p50_ms) if ok else "-",
        f"±{ci:.1f}%" if ok and ci is not None else "-",
        _ms(case.p99_ms) if ok else "-",
        f"{case.throughput:.1f}/s" if ok and case.throughput is not None else "-",
        f"{case.speedup:.2f}x" if ok and case.speedup is not None else "-",
        _mib(case.size_bytes),
        _accuracy_text(case) if ok else "",
        _notes(case, error_width),
    ]


def terminal_table(cases: Iterable[CaseLike]) -> str:
    """The cases as an aligned text table, one row per case in presentation order.

    Columns are `TABLE_HEADERS`: ±CI is the half-width of the median's confidence interval as a
    percentage of p50, SPEED-UP is against fp32 on the same device, threads and provider, SIZE is
    in MiB, ACCURACY shows the cosine and the accuracy drop (in percentage points) when
    validated. Cases that are not ok show "-" and their status and error (first line, at most
    60 characters). Control characters in user text are shown as "?".
    """
    checked = [c for _, c in checked_cases(cases)]
    rows = [
        [_printable(cell) for cell in row_cells(c, _ERROR_WIDTH)] for c in in_display_order(checked)
    ]
    return table(TABLE_HEADERS, rows)
