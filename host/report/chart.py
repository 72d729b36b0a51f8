"""The PNG of `edgeopt bench`'s report: latency, speed-up against fp32, size against latency.

Drawn with matplotlib's object API (no pyplot, no display) from the cases of
`edgeopt.host.report.cases`. matplotlib is imported inside the functions that draw, never at
the top of this module, so that importing the report loads it only when a chart is asked for.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt.host.report.cases import (
    STATUSES,
    VARIANT_ORDER,
    Case,
    CaseLike,
    checked_cases,
    front_of,
    in_display_order,
    objectives_of,
    variants_of,
)

__all__ = ["DPI", "EMPTY_FIGURE_SIZE", "FIGURE_SIZE", "plot", "render_png", "summary_line"]

FIGURE_SIZE = (12.0, 14.0)
"""Inches of the three-panel PNG; at `DPI` it is 1200 x 1400 pixels."""
EMPTY_FIGURE_SIZE = (12.0, 3.0)
"""Inches of the PNG that says there is nothing to plot."""
DPI = 100

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
        [c for c in in_display_order(cases) if (c.device, c.provider, c.threads) == config]
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
    for variant in variants_of(cases):
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
    staircase = {
        d: len(objectives_of([c for c in cases if c.device == d])[0]) == 2 for d in devices
    }
    ax.set_title("(c) Size against latency; ringed: Pareto front per device"
                 + ("" if all(staircase.values()) else
                    " (with accuracy where every case was validated)"),
                 loc="left", fontsize=11)  # fmt: skip
    marker = {d: _MARKERS[i % len(_MARKERS)] for i, d in enumerate(devices)}
    cosines = [c.cosine for c in cases if c.cosine is not None]
    colours = _variant_colours(variants_of(cases))
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


def summary_line(cases: Sequence[Case]) -> str:
    """How many cases ended in each status ("3 ok, 1 failed")."""
    counts = {s: sum(c.status == s for c in cases) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _figure(cases: Sequence[Case], title: str | None) -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415

    ordered = in_display_order(cases)
    ok = [c for c in ordered if c.ok]
    if not ok:
        fig = Figure(figsize=EMPTY_FIGURE_SIZE, dpi=DPI)
        ax = fig.add_subplot()
        ax.set_axis_off()
        why = f"({summary_line(ordered)})" if ordered else "(no benchmark cases were given)"
        ax.text(0.5, 0.5, f"No successful benchmark case to plot\n{why}", ha="center",
                va="center", fontsize=16, transform=ax.transAxes)  # fmt: skip
        if title:
            fig.suptitle(_mpl_text(title, 100), fontsize=13)
        return fig
    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=(1, 1, 1.25))
    colours = _variant_colours(variants_of(ok))
    _latency_panel(top, ok, colours)
    _speedup_panel(middle, ok, colours)
    _scatter_panel(fig, bottom, ok, front_of(ok, per_device=True))
    handles, labels = top.get_legend_handles_labels()
    # Title left, variants right, both above panel (a): a centred pair would overlap.
    fig.legend(handles, labels, loc="outside upper right", ncols=len(labels), fontsize=9,
               frameon=False)  # fmt: skip
    if title:
        fig.suptitle(_mpl_text(title, 60), x=0.01, ha="left", fontsize=13)
    return fig


def render_png(cases: Iterable[CaseLike], title: str | None = None) -> bytes:
    """The bytes of the PNG that `plot` writes."""
    checked = [c for _, c in checked_cases(cases)]
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
