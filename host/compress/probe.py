"""What a model's tensors hold on some data: every node output of the top graph, and weights.

Quantizers and the float16 converter both need to know where values sit before they change the
model's types: static int8 leaves nodes that touch inf or NaN float (`non_finite_nodes`), and
float16 leaves nodes float32 where values pass its range (`fp16_overflow`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["FP16_LIMIT", "Overflow", "Peak", "fp16_overflow", "non_finite_nodes", "peaks"]

FP16_LIMIT = 32752.0
"""Half of float16's largest finite value (65504): a tensor reaching it on the data stays
float32, since inputs the data did not show can go past the rest of the range, and float16
arithmetic on such values (a sum of squares, an accumulation) overflows before its output does."""


@dataclass(frozen=True)
class Peak:
    """The largest finite magnitude a float tensor reached, and whether it held inf or NaN."""

    largest: float
    finite: bool


def peaks(model: onnx.ModelProto, feeds: Sequence[dict[str, Any]]) -> dict[str, Peak]:
    """Every float node output of the top graph (Constant nodes too) on `feeds`, and the weights.

    Bodies of If/Loop/Scan are not reached: their tensors are not graph outputs.
    """
    import onnxruntime as ort  # noqa: PLC0415

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in known:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    found: dict[str, Peak] = {}

    def note(name: str, array: np.ndarray) -> None:
        if array.dtype.kind != "f" or not array.size:
            return
        finite = np.isfinite(array)
        largest = float(np.abs(array[finite]).max()) if finite.any() else 0.0
        old = found.get(name, Peak(0.0, True))
        found[name] = Peak(max(old.largest, largest), old.finite and bool(finite.all()))

    for tensor in model.graph.initializer:
        if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            note(tensor.name, numpy_helper.to_array(tensor))
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed), strict=True):
            if isinstance(value, np.ndarray):
                note(name, value)
    return found


def non_finite_nodes(model: onnx.ModelProto, feeds: Sequence[dict[str, Any]]) -> list[str]:
    """Names of nodes that read or write a tensor holding inf or NaN on the given feeds."""
    bad = {name for name, peak in peaks(model, feeds).items() if not peak.finite}
    return [n.name for n in model.graph.node if bad & (set(n.input) | set(n.output))]


@dataclass(frozen=True)
class Overflow:
    """Nodes that must compute in float32 because a tensor they touch passes float16's range."""

    nodes: tuple[str, ...]
    tensors: tuple[tuple[str, float], ...]
    """The tensors past the limit and their largest magnitude, largest first."""

    def describe(self) -> str:
        """One line for the report."""
        shown = ", ".join(self.nodes[:8]) + (
            f" and {len(self.nodes) - 8} more" if len(self.nodes) > 8 else ""
        )
        name, largest = self.tensors[0]
        count = "1 node" if len(self.nodes) == 1 else f"{len(self.nodes)} nodes"
        return (
            f"kept float32 where values pass float16's range on the data (|x| > "
            f"{FP16_LIMIT:.0f}; {name!r} reaches {largest:.3g}): {count}: {shown}"
        )


def fp16_overflow(model: onnx.ModelProto, feeds: Sequence[dict[str, Any]]) -> Overflow:
    """The nodes (named, top graph) that write or read a tensor float16 cannot hold.

    A tensor past `FP16_LIMIT` stays float32 whole: its producer and every reader are kept
    float (the converter would clamp a weight or a Constant to 65504 and turn an activation
    into inf). Nodes must be named first (`keep_float.name_unnamed`).
    """
    over = {
        name: peak.largest
        for name, peak in peaks(model, feeds).items()
        if peak.largest > FP16_LIMIT and math.isfinite(peak.largest)
    }
    nodes = [n.name for n in model.graph.node if over.keys() & (set(n.input) | set(n.output))]
    tensors = tuple(sorted(over.items(), key=lambda item: -item[1]))
    return Overflow(tuple(nodes), tensors)
