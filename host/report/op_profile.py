"""An operator profile (`edgeopt profile`) as text and as a PNG chart.

The aggregates come from `edgeopt.proto.profiling` (the agent's Profile answer and the one-shot
SSH run read the same trace), so both ways print the same tables. Providers are named as in
the bench report (`edgeopt.host.report.names.short_provider`), "?" when the trace names none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeopt.host.report.names import short_provider
from edgeopt.host.report.table import table
from edgeopt.proto import profiling

__all__ = ["plot", "report"]


def report(agg: Mapping[str, Any], top: int, requested: str = "") -> str:
    """The top nodes, the op types, and nodes that fell back to the CPU, as text."""
    lines = [
        f"one run: {agg['run_ms']:.3g} ms wall, {agg['node_ms']:.3g} ms in operators",
        "",
        table(["NODE", "OP", "EP", "CALLS", "MEAN", "SHARE"], [
            [n["node"][:48], n["op_type"], _ep(n["provider"]), str(n["calls"]),
             f"{n['mean_ms']:.3g} ms", f"{n['share']:.1%}"]
            for n in agg["nodes"][:top]
        ]),
        "",
        table(["OP TYPE", "EP", "NODES", "TOTAL", "SHARE"], [
            [t["op_type"], _ep(t["provider"]), str(t["nodes"]), f"{t['total_ms']:.3g} ms",
             f"{t['share']:.1%}"]
            for t in agg["op_types"]
        ]),
    ]  # fmt: skip
    fell = profiling.fallbacks(agg["nodes"], requested)
    if fell:
        names = ", ".join(f"{n['node']} ({n['op_type']})" for n in fell[:10])
        lines += ["", f"{len(fell)} node(s) fell back to the CPU from {_ep(requested)}: {names}"]
    return "\n".join(lines)


def _ep(provider: str) -> str:
    return short_provider(provider) or "?"


def plot(agg: Mapping[str, Any], path: Path, title: str, top: int = 20) -> None:
    """A PNG bar chart of the op types' share of the time (and the top nodes)."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    types = list(agg["op_types"])[:top][::-1]
    nodes = list(agg["nodes"])[:top][::-1]
    figure = Figure(figsize=(10, 8), dpi=100)
    ax1, ax2 = figure.subplots(2, 1)
    ax1.barh([f"{t['op_type']} ({_ep(t['provider'])})" for t in types],
             [100 * t["share"] for t in types], color="#1f77b4")  # fmt: skip
    ax1.set_xlabel("share of operator time (%)")
    ax1.set_title(title)
    ax2.barh([n["node"][-40:] for n in nodes], [n["mean_ms"] for n in nodes], color="#ff7f0e")
    ax2.set_xlabel("mean time per run (ms)")
    ax2.set_title(f"top {len(nodes)} nodes")
    figure.tight_layout()
    figure.savefig(path)
