"""Benchmark cases as data: one CSV row, or one JSON-ready dict (`--json`), per case.

Both keep the caller's order and mark each case on its device's Pareto front. The same cases
give the same bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgeopt.host.report.cases import Case, CaseLike, checked_cases, front_of

__all__ = ["CSV_COLUMNS", "FORMULA_STARTS", "to_records", "write_csv"]

CSV_COLUMNS = (
    "run", "device", "variant", "threads", "provider", "status", "error", "p50_ms", "p90_ms",
    "p99_ms", "mean_ms", "std_ms", "ci_low_ms", "ci_high_ms", "samples", "throughput",
    "size_bytes", "speedup", "accuracy_cosine", "accuracy_drop", "flags", "pareto",
)  # fmt: skip
"""CSV columns; accuracy metrics other than cosine and drop follow as `accuracy_<name>`."""


def _accuracy_columns(cases: Iterable[Case]) -> list[str]:
    extra = sorted({k for c in cases for k in (c.accuracy or {})} - {"cosine", "accuracy_drop"})
    return [f"accuracy_{k}" for k in extra]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP's CSV injection list)."""


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    text = str(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text  # shown as text, never run: a device named =HYPERLINK(...) stays a name
    return text


def write_csv(cases: Iterable[CaseLike], path: str | Path) -> None:
    """Write one CSV row per case, in the caller's order, with a header of `CSV_COLUMNS`.

    Accuracy is flattened to `accuracy_cosine`, `accuracy_drop` (then `accuracy_<name>` for any
    other metric present), flags are joined by ";", `pareto` is "true" or "false" (per device),
    and missing values are empty. Floats are written so that they read back exactly. UTF-8.
    Text is written as given, except that text a spreadsheet would run as a formula (starting
    with = + - @, a tab or a carriage return) gets a leading apostrophe, shown as text.
    """
    pairs = checked_cases(cases)
    checked = [c for _, c in pairs]
    front = front_of(checked, per_device=True)
    extra = _accuracy_columns(checked)
    with Path(path).open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*CSV_COLUMNS, *extra])
        for i, case in enumerate(checked):
            record = case.to_dict()
            accuracy = record.pop("accuracy") or {}
            record["accuracy_cosine"] = accuracy.get("cosine")
            record["accuracy_drop"] = accuracy.get("accuracy_drop")
            for column in extra:
                record[column] = accuracy.get(column.removeprefix("accuracy_"))
            record["flags"] = ";".join(case.flags)
            record["pareto"] = "true" if i in front else "false"
            writer.writerow([_csv_value(record[k]) for k in (*CSV_COLUMNS, *extra)])


def to_records(cases: Iterable[CaseLike]) -> list[dict[str, Any]]:
    """One JSON-ready dict per case, in the caller's order (for `--json`).

    Each has every key of `CaseDict` (missing values None, NaN and infinities as None) plus
    `ci_percent` (the CI half-width as a percentage of p50) and `pareto` (on its device's front).
    `json.dumps(..., allow_nan=False)` accepts the result.
    """
    checked = [c for _, c in checked_cases(cases)]
    front = front_of(checked, per_device=True)
    return [
        {**c.to_dict(), "ci_percent": c.ci_percent, "pareto": i in front}
        for i, c in enumerate(checked)
    ]
