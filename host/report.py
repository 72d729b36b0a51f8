"""Reports of `edgeopt bench`: benchmark cases as a table, CSV, JSON, plots and one HTML page.

A *case* is one measurement (or the reason there is none) of one model variant on one device
with one thread count and execution provider. Callers pass cases as plain dicts with the keys of
`CaseDict`; every function here also takes `Case` objects. Nothing here talks to a board or to the
state database, and nothing depends on the clock: the same cases give the same bytes.

- `terminal_table`: the aligned text table `edgeopt bench` prints.
- `write_csv` / `to_records`: one flat CSV row, or one JSON-ready dict, per case.
- `pareto`: the cases no other case beats on size, latency and (when measured) accuracy.
- `plot` / `render_png`: one PNG with three panels (latency, speed-up, size vs latency).
- `write_html` / `html_page`: one self-contained HTML5 page (no external URL, no script).

Presentation (table, plots, page) orders cases by device and then by the device's providers
(each by first appearance), threads and variant (fp32, fp16, int8-dynamic, int8-static,
int4-weight, then others by name); data (CSV, records) keeps the caller's order. Malformed
cases raise `ValueError` naming the case.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from edgeopt.host.output import table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Status = Literal["ok", "unsupported", "failed", "not run"]
STATUSES: tuple[Status, ...] = ("ok", "unsupported", "failed", "not run")
VARIANT_ORDER = ("fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight")
"""Variants in the order every view shows them; others follow by name."""

TABLE_HEADERS = (
    "DEVICE", "VARIANT", "THREADS", "EP", "P50", "±CI", "P99", "THROUGHPUT", "SPEED-UP", "SIZE",
    "ACCURACY", "FLAGS/ERROR",
)  # fmt: skip
CSV_COLUMNS = (
    "run", "device", "variant", "threads", "provider", "status", "error", "p50_ms", "p90_ms",
    "p99_ms", "mean_ms", "std_ms", "ci_low_ms", "ci_high_ms", "samples", "throughput",
    "size_bytes", "speedup", "accuracy_cosine", "accuracy_drop", "flags", "pareto",
)  # fmt: skip
"""CSV columns; accuracy metrics other than cosine and drop follow as `accuracy_<name>`."""

FIGURE_SIZE = (12.0, 14.0)
"""Inches of the three-panel PNG; at `DPI` it is 1200 x 1400 pixels."""
EMPTY_FIGURE_SIZE = (12.0, 3.0)
"""Inches of the PNG that says there is nothing to plot."""
DPI = 100

_EP_SHORT = {
    "CPUExecutionProvider": "CPU",
    "CUDAExecutionProvider": "CUDA",
    "TensorrtExecutionProvider": "TensorRT",
    "OpenVINOExecutionProvider": "OpenVINO",
    "CoreMLExecutionProvider": "CoreML",
    "DmlExecutionProvider": "DirectML",
    "QNNExecutionProvider": "QNN",
    "XnnpackExecutionProvider": "XNNPACK",
    "NnapiExecutionProvider": "NNAPI",
    "ACLExecutionProvider": "ACL",
    "ArmNNExecutionProvider": "ArmNN",
    "RknpuExecutionProvider": "RKNPU",
    "ROCMExecutionProvider": "ROCm",
    "MIGraphXExecutionProvider": "MIGraphX",
    "VitisAIExecutionProvider": "VitisAI",
    "WebGpuExecutionProvider": "WebGPU",
}
_TIMING_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "ci_low_ms", "ci_high_ms")
_ERROR_WIDTH = 60
"""Characters of an error message the terminal table shows (the CSV and HTML keep it all)."""
_WARN_FLAGS = frozenset({"throttled", "loaded", "partial"})


class CaseDict(TypedDict, total=False):
    """The dict form of a case, as `edgeopt bench` produces it (all keys; see `Case`)."""

    run: str
    device: str
    variant: str
    threads: int
    provider: str
    status: Status
    error: str
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    std_ms: float | None
    ci_low_ms: float | None
    ci_high_ms: float | None
    samples: int
    throughput: float | None
    size_bytes: int | None
    speedup: float | None
    accuracy: dict[str, float] | None
    flags: list[str]


@dataclass(frozen=True)
class Case:
    """One benchmark case, checked: what every view of this module is drawn from."""

    device: str
    """Inventory name of the board (user text: escaped wherever it is shown)."""
    variant: str
    """Model variant: fp32, fp16, int8-dynamic, int8-static, int4-weight or another name."""
    threads: int
    """Intra-op threads of the run."""
    provider: str
    """ONNX Runtime execution provider, e.g. "CPUExecutionProvider"."""
    status: Status
    """"ok" when measured; otherwise why not."""
    run: str = ""
    """Id of the benchmark run in the state database."""
    error: str = ""
    """Why a case is not ok ("" when ok)."""
    p50_ms: float | None = None
    """Median latency; set for every ok case, None otherwise."""
    p90_ms: float | None = None
    """90th percentile latency."""
    p99_ms: float | None = None
    """99th percentile latency."""
    mean_ms: float | None = None
    """Mean latency."""
    std_ms: float | None = None
    """Standard deviation of the latency."""
    ci_low_ms: float | None = None
    """Lower end of the median's confidence interval."""
    ci_high_ms: float | None = None
    """Upper end of the median's confidence interval."""
    samples: int = 0
    """Timed runs behind the statistics."""
    throughput: float | None = None
    """Inferences per second."""
    size_bytes: int | None = None
    """File size of the variant; set for every ok case."""
    speedup: float | None = None
    """p50 of fp32 (same device, threads, provider) over this p50; None without an fp32 case."""
    accuracy: Mapping[str, float] | None = None
    """Validation metrics against fp32, e.g. {"cosine": 0.998, "accuracy_drop": 0.004}."""
    flags: tuple[str, ...] = ()
    """Conditions of the measurement, e.g. ("throttled",)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], index: int = 0) -> Case:
        """Check and convert one case dict; `index` only names the case in errors.

        Raises:
            ValueError: a required key is missing, a value has the wrong type, the status is
                unknown, or an ok case lacks its p50 or size.
        """
        where = f"case {index}"
        for key in ("device", "variant", "provider", "status"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{where}: {key!r} must be a string, got {data.get(key)!r}")
        where = f"case {index} ({data['device']}/{data['variant']})"
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"{where}: unknown status {status!r} (one of {', '.join(STATUSES)})")
        timings = {key: _number(data.get(key), key, where) for key in _TIMING_KEYS}
        accuracy = data.get("accuracy")
        if accuracy is not None:
            if not isinstance(accuracy, Mapping):
                raise ValueError(f"{where}: 'accuracy' must be a dict, got {accuracy!r}")
            accuracy = {
                str(k): v
                for k, v in ((k, _number(v, f"accuracy.{k}", where)) for k, v in accuracy.items())
                if v is not None
            }
        flags = data.get("flags") or ()
        if isinstance(flags, str) or not isinstance(flags, Iterable):
            raise ValueError(f"{where}: 'flags' must be a list of strings, got {flags!r}")
        case = cls(
            run=str(data.get("run") or ""),
            device=data["device"],
            variant=data["variant"],
            threads=_integer(data.get("threads"), "threads", where),
            provider=data["provider"],
            status=status,
            error=str(data.get("error") or ""),
            samples=_integer(data.get("samples"), "samples", where),
            throughput=_number(data.get("throughput"), "throughput", where),
            size_bytes=_integer(data["size_bytes"], "size_bytes", where)
            if data.get("size_bytes") is not None
            else None,
            speedup=_number(data.get("speedup"), "speedup", where),
            accuracy=accuracy or None,
            flags=tuple(str(f) for f in flags),
            **timings,
        )
        if status == "ok" and (case.p50_ms is None or case.p50_ms <= 0):
            raise ValueError(f"{where}: an ok case needs a positive p50_ms, got {case.p50_ms!r}")
        if status == "ok" and case.size_bytes is None:
            raise ValueError(f"{where}: an ok case needs size_bytes")
        return case

    @property
    def ok(self) -> bool:
        """Measured."""
        return self.status == "ok"

    @property
    def ep(self) -> str:
        """Short name of the execution provider: CPU, CUDA, TensorRT, ..."""
        return _EP_SHORT.get(self.provider) or self.provider.removesuffix("ExecutionProvider")

    @property
    def ci_percent(self) -> float | None:
        """Half-width of the confidence interval as a percentage of p50."""
        if self.p50_ms is None or self.ci_low_ms is None or self.ci_high_ms is None:
            return None
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.p50_ms * 100

    @property
    def cosine(self) -> float | None:
        """Cosine similarity of the outputs to fp32's, when validated."""
        return None if self.accuracy is None else self.accuracy.get("cosine")

    @property
    def accuracy_drop(self) -> float | None:
        """Accuracy lost against fp32 (a fraction: 0.004 is 0.4 points), when validated."""
        return None if self.accuracy is None else self.accuracy.get("accuracy_drop")

    def to_dict(self) -> dict[str, Any]:
        """The case as a JSON-ready dict with every key of `CaseDict` (no NaN, no tuples)."""
        return {
            "run": self.run, "device": self.device, "variant": self.variant,
            "threads": self.threads, "provider": self.provider, "status": self.status,
            "error": self.error, **{key: getattr(self, key) for key in _TIMING_KEYS},
            "samples": self.samples, "throughput": self.throughput,
            "size_bytes": self.size_bytes, "speedup": self.speedup,
            "accuracy": None if self.accuracy is None else dict(self.accuracy),
            "flags": list(self.flags),
        }  # fmt: skip


CaseLike = Mapping[str, Any] | Case
"""What the functions of this module take for a case."""


def _number(value: object, key: str, where: str) -> float | None:
    """A finite float, or None for None, NaN and infinities (JSON has no NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value) if math.isfinite(value) else None


def _integer(value: object, key: str, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key!r} must be an integer, got {value!r}")
    return value


def _checked(cases: Iterable[CaseLike]) -> list[tuple[CaseLike, Case]]:
    """Each given case with its checked form, in the caller's order."""
    return [(c, c if isinstance(c, Case) else Case.from_dict(c, i)) for i, c in enumerate(cases)]


def _variant_rank(variant: str) -> tuple[int, str]:
    if variant in VARIANT_ORDER:
        return VARIANT_ORDER.index(variant), ""
    return len(VARIANT_ORDER), variant


def _order(cases: Sequence[Case]) -> list[int]:
    """Indices of `cases` in presentation order.

    Devices by first appearance, a device's providers by first appearance, then threads, then
    variant.
    """
    first: dict[tuple[str, str], int] = {}
    for i, c in enumerate(cases):
        first.setdefault((c.device, ""), i)
        first.setdefault((c.device, c.provider), i)
    return sorted(
        range(len(cases)),
        key=lambda i: (
            first[cases[i].device, ""],
            first[cases[i].device, cases[i].provider],
            cases[i].threads,
            _variant_rank(cases[i].variant),
        ),
    )


def _ordered(cases: Sequence[Case]) -> list[Case]:
    """`cases` in presentation order (see `_order`)."""
    return [cases[i] for i in _order(cases)]


def _variants(cases: Iterable[Case]) -> list[str]:
    return sorted({c.variant for c in cases}, key=_variant_rank)


# --- Pareto front -------------------------------------------------------------------------------


def _objectives(group: Sequence[Case]) -> list[tuple[float, ...]]:
    """Per case, values where smaller is better: size, p50 and, when all have it, accuracy.

    Accuracy counts only when every case of the group was validated, since a case without it can
    be neither better nor worse on it: cosine (negated, higher is better) when all have it, else
    the accuracy drop when all have that.
    """
    base: list[tuple[float, ...]] = [(float(c.size_bytes or 0), c.p50_ms or 0.0) for c in group]
    cosines = [c.cosine for c in group]
    drops = [c.accuracy_drop for c in group]
    if all(v is not None for v in cosines):
        return [(*b, -(v or 0.0)) for b, v in zip(base, cosines, strict=True)]
    if all(v is not None for v in drops):
        return [(*b, v or 0.0) for b, v in zip(base, drops, strict=True)]
    return base


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def _front(cases: Sequence[Case], per_device: bool) -> set[int]:
    """Indices into `cases` of the non-dominated ok cases."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cases):
        if c.ok:
            groups.setdefault(c.device if per_device else "", []).append(i)
    front: set[int] = set()
    for members in groups.values():
        values = _objectives([cases[i] for i in members])
        front.update(
            i
            for i, v in zip(members, values, strict=True)
            if not any(_dominates(w, v) for w in values)
        )
    return front


def pareto(cases: Iterable[CaseLike], *, per_device: bool = True) -> list[CaseLike]:
    """The ok cases that no other ok case beats: the variants worth considering.

    A case is dominated when another is no larger (size_bytes), no slower (p50_ms) and, when
    every compared case carries it, no less accurate (higher cosine, else lower accuracy drop),
    and strictly better on one of these. Cases with identical values do not dominate each other.

    Args:
        cases: case dicts (or `Case` objects).
        per_device: compare only cases of the same device (the default: a board's choice of
            variant, threads and provider); False gives one front over the whole fleet.

    Returns:
        The given objects themselves (not copies), in the caller's order.
    """
    pairs = _checked(cases)
    front = _front([c for _, c in pairs], per_device)
    return [given for i, (given, _) in enumerate(pairs) if i in front]


# --- Text, CSV, JSON ----------------------------------------------------------------------------


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


def _cells(case: Case, error_width: int | None) -> list[str]:
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
    checked = [c for _, c in _checked(cases)]
    rows = [[_printable(cell) for cell in _cells(c, _ERROR_WIDTH)] for c in _ordered(checked)]
    return table(TABLE_HEADERS, rows)


def _accuracy_columns(cases: Iterable[Case]) -> list[str]:
    extra = sorted({k for c in cases for k in (c.accuracy or {})} - {"cosine", "accuracy_drop"})
    return [f"accuracy_{k}" for k in extra]


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


def write_csv(cases: Iterable[CaseLike], path: str | Path) -> None:
    """Write one CSV row per case, in the caller's order, with a header of `CSV_COLUMNS`.

    Accuracy is flattened to `accuracy_cosine`, `accuracy_drop` (then `accuracy_<name>` for any
    other metric present), flags are joined by ";", `pareto` is "true" or "false" (per device),
    and missing values are empty. Floats are written so that they read back exactly. UTF-8.
    Text is written as given: a spreadsheet may treat a device name starting with "=" as a
    formula.
    """
    pairs = _checked(cases)
    checked = [c for _, c in pairs]
    front = _front(checked, per_device=True)
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
    checked = [c for _, c in _checked(cases)]
    front = _front(checked, per_device=True)
    return [
        {**c.to_dict(), "ci_percent": c.ci_percent, "pareto": i in front}
        for i, c in enumerate(checked)
    ]


# --- Plots --------------------------------------------------------------------------------------


def _mpl_text(text: str, limit: int = 28) -> str:
    """User text for a matplotlib label: shortened, and with "$" kept from starting mathtext."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _variant_colours(variants: Sequence[str]) -> dict[str, str]:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
    known = {v: palette[i] for i, v in enumerate(VARIANT_ORDER)}
    others = [v for v in variants if v not in known]
    known.update(
        {v: palette[(len(VARIANT_ORDER) + i) % len(palette)] for i, v in enumerate(others)}
    )
    return known


def _configs(cases: Sequence[Case]) -> list[tuple[str, str, int]]:
    """The (device, provider, threads) groups of the bar charts, in presentation order."""
    seen: dict[tuple[str, str, int], None] = {}
    for c in cases:
        seen.setdefault((c.device, c.provider, c.threads), None)
    return list(seen)


def _config_label(config: tuple[str, str, int], cases: Sequence[Case]) -> str:
    device, provider, threads = config
    ep = next(c.ep for c in cases if c.provider == provider)
    return f"{_mpl_text(device)}\n{threads} thr · {_mpl_text(ep, 12)}"


def _grouped_bars(
    ax: Axes,
    cases: Sequence[Case],
    value: Callable[[Case], float | None],
    colours: Mapping[str, str],
    *,
    with_ci: bool,
    labels: bool,
) -> None:
    """One group of bars per (device, provider, threads), one bar per variant it has."""
    configs = _configs(cases)
    groups = [
        [c for c in _ordered(cases) if (c.device, c.provider, c.threads) == config]
        for config in configs
    ]
    width = 0.8 / max(len(g) for g in groups)
    bars: dict[str, list[tuple[float, float, float, float]]] = {}  # x, height, -err, +err
    for x, group in enumerate(groups):
        for k, case in enumerate(group):
            height = value(case) or 0.0
            low = height - case.ci_low_ms if case.ci_low_ms is not None else 0.0
            high = case.ci_high_ms - height if case.ci_high_ms is not None else 0.0
            offset = (k - (len(group) - 1) / 2) * width
            bars.setdefault(case.variant, []).append((x + offset, height, low, high))
    for variant in _variants(cases):
        xs, heights, lows, highs = zip(*bars[variant], strict=True)
        drawn = ax.bar(
            xs, heights, width * 0.92, color=colours[variant], label=variant,
            yerr=[[max(v, 0.0) for v in lows], [max(v, 0.0) for v in highs]] if with_ci else None,
            error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333333"},
        )  # fmt: skip
        if labels:
            ax.bar_label(drawn, fmt="%.2fx", fontsize=7, padding=2)
    ax.set_xticks(range(len(configs)))
    ax.set_xticklabels([_config_label(c, cases) for c in configs], fontsize=8)
    if len(configs) > 6:
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
    ax.set_xlim(-0.6, len(configs) - 0.4)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)


def _wide(values: Iterable[float], ratio: float = 20.0) -> bool:
    """Whether positive values span enough to need a log axis."""
    values = [v for v in values if v > 0]
    return bool(values) and max(values) / min(values) > ratio


def _latency_panel(ax: Axes, cases: Sequence[Case], colours: Mapping[str, str]) -> None:
    _grouped_bars(ax, cases, lambda c: c.p50_ms, colours, with_ci=True, labels=False)
    log = _wide(c.p50_ms or 0.0 for c in cases)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("p50 latency (ms" + (", log scale)" if log else ")"))
    ax.set_title("(a) Median latency per device and variant (error bars: confidence interval)",
                 loc="left", fontsize=11)  # fmt: skip


def _speedup_panel(ax: Axes, cases: Sequence[Case], colours: Mapping[str, str]) -> None:
    ax.set_title("(b) Speed-up against fp32 on the same device, threads and provider",
                 loc="left", fontsize=11)  # fmt: skip
    with_speedup = [c for c in cases if c.speedup is not None]
    if not with_speedup:
        ax.text(0.5, 0.5, "No fp32 case to compare with: no speed-ups", ha="center",
                va="center", transform=ax.transAxes, fontsize=11, color="#555555")  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        return
    _grouped_bars(ax, with_speedup, lambda c: c.speedup, colours, with_ci=False,
                  labels=len(with_speedup) <= 48)  # fmt: skip
    ax.axhline(1.0, color="#333333", linestyle="--", linewidth=1)
    top = max(c.speedup or 0.0 for c in with_speedup)
    ax.set_ylim(0, max(top, 1.0) * 1.15)
    ax.set_ylabel("speed-up vs fp32 (times)")


_MAX_LABELS = 12
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")


def _scatter_panel(fig: Figure, ax: Axes, cases: Sequence[Case], front: set[int]) -> None:
    devices = list(dict.fromkeys(c.device for c in cases))
    # Where accuracy is a third objective the front is no size/latency staircase: no line then.
    staircase = {d: len(_objectives([c for c in cases if c.device == d])[0]) == 2 for d in devices}
    ax.set_title("(c) Size against latency; ringed: Pareto front per device"
                 + ("" if all(staircase.values()) else
                    " (with accuracy where every case was validated)"),
                 loc="left", fontsize=11)  # fmt: skip
    marker = {d: _MARKERS[i % len(_MARKERS)] for i, d in enumerate(devices)}
    cosines = [c.cosine for c in cases if c.cosine is not None]
    colours = _variant_colours(_variants(cases))
    mib = [(c.size_bytes or 0) / 2**20 for c in cases]
    ms = [c.p50_ms or 0.0 for c in cases]
    norm = None
    if cosines:
        from matplotlib.colors import Normalize  # noqa: PLC0415

        low, high = min(cosines), max(cosines)
        norm = Normalize(vmin=min(low, high - 1e-3), vmax=high)
    for device in devices:
        members = [i for i, c in enumerate(cases) if c.device == device]
        style: dict[str, Any] = {
            "s": 45, "marker": marker[device], "edgecolors": "#222222", "linewidths": 0.6,
            "zorder": 3,
        }  # fmt: skip
        for i in members:
            case = cases[i]
            if norm is not None and case.cosine is not None:
                ax.scatter([mib[i]], [ms[i]], c=[case.cosine], cmap="viridis", norm=norm, **style)
            else:  # by variant; grey when others are coloured by a cosine this one lacks
                grey = norm is not None
                ax.scatter([mib[i]], [ms[i]], color="#cccccc" if grey else colours[case.variant],
                           **style)  # fmt: skip
        on_front = sorted((i for i in members if i in front), key=lambda i: (mib[i], ms[i]))
        if len(on_front) > 1 and staircase[device]:
            ax.plot([mib[i] for i in on_front], [ms[i] for i in on_front], color="#555555",
                    linestyle=":", linewidth=1, zorder=2)  # fmt: skip
        for i in on_front:
            ax.scatter([mib[i]], [ms[i]], s=170, facecolors="none", edgecolors="#000000",
                       linewidths=1.4, zorder=4)  # fmt: skip
            if len(front) > _MAX_LABELS:
                continue  # past a dozen the labels hide each other; the table has them all
            label = _mpl_text(cases[i].variant, 24)
            if len(devices) > 1:
                label = f"{_mpl_text(device, 16)}: {label}"
            ax.annotate(label, (mib[i], ms[i]), xytext=(8, 6),
                        textcoords="offset points", fontsize=8, zorder=5)  # fmt: skip
    if _wide(mib):
        ax.set_xscale("log")
    if _wide(ms):
        ax.set_yscale("log")
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel("model size (MiB)")
    ax.set_ylabel("p50 latency (ms)")
    ax.grid(color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    from matplotlib.lines import Line2D  # noqa: PLC0415

    handles = [
        Line2D([], [], marker=marker[d], linestyle="", color="#888888", markeredgecolor="#222222",
               label=_mpl_text(d))
        for d in devices
    ]  # fmt: skip
    handles.append(Line2D([], [], marker="o", linestyle="", markersize=12, markerfacecolor="none",
                          markeredgecolor="#000000", label="Pareto front"))  # fmt: skip
    # Outside the axes: inside, "best" still hides points when the panel is crowded.
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0, frameon=False)  # fmt: skip
    if norm is not None:
        from matplotlib.cm import ScalarMappable  # noqa: PLC0415

        bar = fig.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=ax, pad=0.01)
        bar.set_label("cosine vs fp32 (grey: not validated)", fontsize=9)


def _summary(cases: Sequence[Case]) -> str:
    counts = {s: sum(c.status == s for c in cases) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _figure(cases: Sequence[Case], title: str | None) -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415

    ordered = _ordered(cases)
    ok = [c for c in ordered if c.ok]
    if not ok:
        fig = Figure(figsize=EMPTY_FIGURE_SIZE, dpi=DPI)
        ax = fig.add_subplot()
        ax.set_axis_off()
        why = f"({_summary(ordered)})" if ordered else "(no benchmark cases were given)"
        ax.text(0.5, 0.5, f"No successful benchmark case to plot\n{why}", ha="center",
                va="center", fontsize=16, transform=ax.transAxes)  # fmt: skip
        if title:
            fig.suptitle(_mpl_text(title, 100), fontsize=13)
        return fig
    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=(1, 1, 1.25))
    colours = _variant_colours(_variants(ok))
    _latency_panel(top, ok, colours)
    _speedup_panel(middle, ok, colours)
    _scatter_panel(fig, bottom, ok, _front(ok, per_device=True))
    handles, labels = top.get_legend_handles_labels()
    # Title left, variants right, both above panel (a): a centred pair would overlap.
    fig.legend(handles, labels, loc="outside upper right", ncols=len(labels), fontsize=9,
               frameon=False)  # fmt: skip
    if title:
        fig.suptitle(_mpl_text(title, 60), x=0.01, ha="left", fontsize=13)
    return fig


def render_png(cases: Iterable[CaseLike], title: str | None = None) -> bytes:
    """The bytes of the PNG that `plot` writes."""
    checked = [c for _, c in _checked(cases)]
    with warnings.catch_warnings():
        # A device name in a script DejaVu Sans lacks draws as boxes; that is no reason to warn.
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        fig = _figure(checked, title)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def plot(cases: Iterable[CaseLike], path: str | Path, title: str | None = None) -> None:
    """Write one PNG of three panels: latency, speed-up, and size against latency.

    (a) p50 per device/threads/provider and variant as grouped bars with the confidence
    interval as error bars (log axis when latencies span more than 20 times); (b) the speed-up
    against fp32 in the same layout, with a line at 1.0; (c) size against p50, one marker shape
    per device, coloured by cosine when validated (else by variant), with each device's Pareto
    front (see `pareto`) ringed, joined and labelled. Cases that are not ok are left out; with
    none ok the PNG says so. The image is `FIGURE_SIZE` at `DPI` (1200 x 1400 pixels; 1200 x 300
    when empty), drawn without pyplot or a display, and the same cases give the same bytes.
    """
    Path(path).write_bytes(render_png(cases, title))


# --- HTML ---------------------------------------------------------------------------------------

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
        f'<span class="flag{" warn" if f in _WARN_FLAGS else ""}">{html.escape(f)}</span>'
        for f in case.flags
    )
    return " ".join(parts)


def _html_table(cases: Sequence[Case], front: set[int]) -> str:
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in TABLE_HEADERS)
    rows = []
    for i in _order(cases):
        case = cases[i]
        cells = _cells(case, None)[:-1]
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
    checked = [c for _, c in _checked(cases)]
    front = _front(checked, per_device=True)
    png = base64.b64encode(render_png(checked)).decode("ascii")
    size = FIGURE_SIZE if any(c.ok for c in checked) else EMPTY_FIGURE_SIZE
    width, height = (round(v * DPI) for v in size)
    meta_items = "\n".join(
        f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
        for k, v in (meta or {}).items()
    )
    meta_list = f'<dl class="meta">\n{meta_items}\n</dl>\n' if meta_items else ""
    summary = _summary(checked) or "none"
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
