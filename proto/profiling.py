"""Per-operator aggregates of an ONNX Runtime profile (its Chrome trace JSON).

Shared by the agent (Profile RPC, in the runner) and the host (one-shot profiling over SSH,
where the board's own Python writes the trace): one reading of the trace for both. Pure Python,
no dependencies.

ONNX Runtime's profiler writes one event per node run ("cat": "Node", name "<node>_kernel_time",
args op_name and provider) and one per session run ("cat": "Session", name "model_run"). A node
that ran on the CPU provider while another provider was asked for is a fallback: the board's
accelerator did not take it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["KERNEL_SUFFIX", "aggregate", "fallbacks", "node_events"]

KERNEL_SUFFIX = "_kernel_time"


def node_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The trace's kernel events (one per node per run)."""
    return [
        e for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith(KERNEL_SUFFIX)
    ]  # fmt: skip


def aggregate(events: Iterable[Mapping[str, Any]], skip_runs: int = 0) -> dict[str, Any]:
    """Per node and per op type: calls, total and mean time (ms), share of the nodes' time.

    The first `skip_runs` model runs (warm-up: first-run allocations, caches) are left out.
    Returns a dict with "nodes" (sorted by total time, largest first), "op_types" (likewise),
    "runs" (model runs counted), "run_ms" (mean wall time of one model run) and "node_ms" (mean
    summed operator time of one run).
    """
    events = list(events)
    model_runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: float(e.get("ts", 0)),
    )
    cutoff = float(model_runs[skip_runs]["ts"]) if 0 < skip_runs < len(model_runs) else None
    kept_runs = model_runs[skip_runs:] if cutoff is not None else model_runs
    per_node: dict[str, dict[str, Any]] = {}
    for e in node_events(events):
        if cutoff is not None and float(e.get("ts", 0)) < cutoff:
            continue
        name = str(e["name"])[: -len(KERNEL_SUFFIX)]
        args = e.get("args", {})
        row = per_node.setdefault(name, {
            "node": name, "op_type": str(args.get("op_name", "")),
            "provider": str(args.get("provider", "")), "calls": 0, "total_ms": 0.0,
        })  # fmt: skip
        row["calls"] += 1
        row["total_ms"] += float(e.get("dur", 0)) / 1000.0
    total = sum(r["total_ms"] for r in per_node.values())
    nodes = sorted(per_node.values(), key=lambda r: -r["total_ms"])
    for r in nodes:
        r["mean_ms"] = r["total_ms"] / max(1, r["calls"])
        r["share"] = r["total_ms"] / total if total else 0.0
    per_type: dict[tuple[str, str], dict[str, Any]] = {}
    for r in nodes:
        key = (r["op_type"], r["provider"])
        t = per_type.setdefault(key, {"op_type": key[0], "provider": key[1], "nodes": 0,
                                      "calls": 0, "total_ms": 0.0})  # fmt: skip
        t["nodes"] += 1
        t["calls"] += r["calls"]
        t["total_ms"] += r["total_ms"]
    op_types = sorted(per_type.values(), key=lambda r: -r["total_ms"])
    for t in op_types:
        t["share"] = t["total_ms"] / total if total else 0.0
    runs = len(kept_runs)
    return {
        "nodes": nodes,
        "op_types": op_types,
        "runs": runs,
        "run_ms": sum(float(e.get("dur", 0)) for e in kept_runs) / 1000.0 / runs if runs else 0.0,
        "node_ms": total / runs if runs else 0.0,
    }


def fallbacks(nodes: Iterable[Mapping[str, Any]], requested: str) -> list[Mapping[str, Any]]:
    """Nodes that ran on the CPU provider although `requested` was asked for."""
    if not requested or requested == "CPUExecutionProvider":
        return []
    return [n for n in nodes if n.get("provider") == "CPUExecutionProvider"]
