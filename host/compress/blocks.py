"""What a model's compute is made of: the blocks int8 would wrap, and how much work each does.

The weight census (edgeopt.host.compress.weights) says where the weights are; whether static
int8 pays depends on the work around them. A dense 3x3 convolution over 64 channels does 576
multiply-adds per output value: int8 dot products speed that up, and the quantize/dequantize
steps around it are a small cost. A depthwise 3x3 does 9; a squeeze-and-excite block adds two
FCs on a 1x1 map and a sigmoid gate that stays float; each is a quantize/dequantize pair for
little work, and the MobileNetV2 and EfficientNet-B0 layouts ran slower in int8 than in fp32
(benchmarks/tuning.py). `blocks` counts that from the graph with ONNX shape inference:

- multiply-adds (MACs) of every Conv/ConvTranspose/MatMul/Gemm with a constant weight (what
  static int8 quantizes), split into dense and depthwise (grouped) convolutions;
- the activation values those nodes read and write: each crosses a quantize or dequantize step;
  their ratio to the MACs is the int8 `intensity` (work per value quantized);
- squeeze-and-excite gates (a Mul by a Sigmoid/HardSigmoid of a pooled tensor), tiny FCs
  (a weighted node whose output has no spatial extent beyond 1, or under `TINY_FC_MACS`), and
  float activations between quantized nodes (SiLU/GELU/HardSwish/LayerNorm pieces).

Shapes come from ONNX Runtime's symbolic shape inference, then ONNX's. Inputs with symbolic
dimensions take the sample shapes given (the calibration data's), else
1 for the batch axis and `DEFAULT_EXTENT` for the others; a node whose shapes stay unknown is
counted but adds no MACs (`unsized` says how many).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import onnx

from edgeopt.host.compress.runtime import quiet_logger

__all__ = ["DEFAULT_EXTENT", "TINY_FC_MACS", "Blocks", "blocks", "node_macs"]

DEFAULT_EXTENT = 224
"""Size assumed for a symbolic non-batch dimension when no sample shape is given."""
TINY_FC_MACS = 100_000
"""A weighted node with fewer MACs than this is a tiny FC (per-channel gates, small heads)."""

_WEIGHTED = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
_RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}
"""Recurrent operators → their gates (each a [hidden, input + hidden] product per step)."""
_GATES = frozenset({"Sigmoid", "HardSigmoid"})
_POOLS = frozenset({"GlobalAveragePool", "ReduceMean", "GlobalMaxPool", "ReduceMax"})
_FLOAT_ACTIVATIONS = frozenset(
    {"Sigmoid", "HardSigmoid", "HardSwish", "Erf", "Gelu", "Tanh", "Softplus", "Mish",
     "LayerNormalization", "Pow", "Sqrt", "Div", "Exp", "Softmax", "InstanceNormalization"}
)  # fmt: skip
"""Operators static int8 leaves float (it quantizes Conv/MatMul/Gemm/Gather only): each one
between two quantized nodes costs a dequantize before and a quantize after."""


@dataclass(frozen=True)
class Blocks:
    """The compute of one model's main graph (control-flow bodies are not counted)."""

    dense_macs: int = 0
    """Multiply-adds of dense convolutions, MatMul and Gemm with constant weights."""
    depthwise_macs: int = 0
    """Multiply-adds of grouped (depthwise) convolutions."""
    recurrent_macs: int = 0
    """Multiply-adds of LSTM/GRU/RNN nodes (dynamic int8 quantizes them, static int8 not)."""
    recurrent_step_macs: int = 0
    """The same, for one time step: the work a thread pool can share (the steps run in turn)."""
    boundary_values: int = 0
    """Activation values read and written by those nodes (each crosses a (de)quantize step)."""
    weighted_nodes: int = 0
    """Conv/ConvTranspose/MatMul/Gemm nodes with a constant weight."""
    depthwise_convs: int = 0
    """Grouped convolutions among them."""
    tiny_fcs: int = 0
    """Weighted nodes on a 1x1 map or under `TINY_FC_MACS` MACs."""
    se_gates: int = 0
    """Squeeze-and-excite gates: Mul by a Sigmoid/HardSigmoid of a pooled tensor."""
    float_activations: int = 0
    """Nodes static int8 leaves float (SiLU's sigmoid, GELU's Erf, LayerNorm, HardSwish...)."""
    unsized: int = 0
    """Weighted nodes whose shapes shape inference could not tell (no MACs counted)."""

    @property
    def macs(self) -> int:
        """All multiply-adds counted."""
        return self.dense_macs + self.depthwise_macs + self.recurrent_macs

    @property
    def parallel_macs(self) -> int:
        """Multiply-adds an intra-op thread pool can share: recurrent layers by one step."""
        return self.dense_macs + self.depthwise_macs + self.recurrent_step_macs

    @property
    def depthwise_share(self) -> float:
        """Share of the convolution and matrix MACs in depthwise convolutions."""
        both = self.dense_macs + self.depthwise_macs
        return self.depthwise_macs / both if both else 0.0

    @property
    def intensity(self) -> float:
        """MACs per activation value crossing a (de)quantize step; 0 when nothing was sized."""
        both = self.dense_macs + self.depthwise_macs
        return both / self.boundary_values if self.boundary_values else 0.0


def _fixed(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy whose inputs have concrete dimensions (from `shapes`, else 1 / DEFAULT_EXTENT)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    initializers = {t.name for t in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        given = shapes.get(value.name)
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if given is not None and axis < len(given):
                size = int(given[axis])
            else:
                size = 1 if axis == 0 else DEFAULT_EXTENT
            dim.Clear()
            dim.dim_value = size
    return fixed


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Value name → concrete shape, where shape inference found one.

    ONNX Runtime's symbolic shape inference first (it folds the shape arithmetic of Reshape
    chains that tf2onnx and Paddle2ONNX write), then ONNX's own for what it left unknown.
    """
    out: dict[str, tuple[int, ...]] = {}
    for infer in (
        _symbolic,
        lambda m: onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True),
    ):
        try:
            with quiet_logger():
                inferred = infer(model)
        except Exception:
            continue
        for name, shape in _concrete(inferred.graph).items():
            out.setdefault(name, shape)
    return out


def _symbolic(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's symbolic shape inference, its partial answer kept.

    `SymbolicShapeInference.infer_shapes` saves an incomplete result as
    sym_shape_infer_temp.onnx in the working directory and raises; these are the same steps
    without the save (a private API: when it changes, the exception falls back to ONNX's).
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference  # noqa: PLC0415

    infer = SymbolicShapeInference(2**31 - 1, True, False, 0)
    infer._preprocess(model)
    while infer.run_:
        infer._infer_impl()
    infer._update_output_from_vi()
    return cast(onnx.ModelProto, infer.out_mp_)


def _concrete(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            out[value.name] = tuple(int(d.dim_value) for d in dims)
    for tensor in graph.initializer:
        out[tensor.name] = tuple(int(d) for d in tensor.dims)
    return out


def _constants(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Initializers and Constant node outputs (Paddle2ONNX keeps weights there) → shape."""
    out = {t.name: tuple(int(d) for d in t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = tuple(int(d) for d in node.attribute[0].t.dims)
    return out


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _size(shape: tuple[int, ...] | None) -> int | None:
    return int(np.prod(shape)) if shape is not None else None


def blocks(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Blocks:
    """Count the compute of `model`'s main graph; see the module docstring."""
    graph = model.graph
    known = _shapes(_fixed(model, shapes or {}))
    constants = _constants(graph)
    producer = {out: node for node in graph.node for out in node.output}
    counts = dict.fromkeys(
        ("dense_macs", "depthwise_macs", "recurrent_macs", "recurrent_step_macs",
         "boundary_values", "weighted_nodes",
         "depthwise_convs", "tiny_fcs", "se_gates", "float_activations", "unsized"), 0,
    )  # fmt: skip
    for node in graph.node:
        if node.op_type in _FLOAT_ACTIVATIONS:
            counts["float_activations"] += 1
        if node.op_type == "Mul" and _is_gate(node, producer):
            counts["se_gates"] += 1
        weight = node.input[1] if len(node.input) > 1 else ""
        if node.op_type in _RECURRENT and weight in constants:
            counts["weighted_nodes"] += 1
            x_shape = known.get(node.input[0])
            if x_shape is None or len(x_shape) != 3 or len(constants[weight]) != 3:
                counts["unsized"] += 1
                continue
            dirs, gates_hidden, inputs = constants[weight]
            hidden = gates_hidden // _RECURRENT[node.op_type]
            # X is [seq, batch, input] (layout 0) or [batch, seq, input] (layout 1).
            batch = x_shape[1] if _attr(node, "layout", 0) == 0 else x_shape[0]
            step = batch * dirs * gates_hidden * (inputs + hidden)
            counts["recurrent_macs"] += step * (x_shape[0] * x_shape[1] // batch)
            counts["recurrent_step_macs"] += step
            continue
        if node.op_type not in _WEIGHTED or weight not in constants or len(constants[weight]) < 2:
            continue
        counts["weighted_nodes"] += 1
        grouped = node.op_type == "Conv" and _attr(node, "group", 1) > 1
        counts["depthwise_convs"] += grouped
        x, y = _size(known.get(node.input[0])), _size(known.get(node.output[0]))
        if x is None or y is None:
            counts["unsized"] += 1
            continue
        macs = _macs(node, constants[weight], x, y)
        counts["depthwise_macs" if grouped else "dense_macs"] += macs
        counts["boundary_values"] += x + y
        out_shape = known[node.output[0]]
        on_a_point = node.op_type == "Conv" and int(np.prod(out_shape[2:])) == 1
        counts["tiny_fcs"] += on_a_point or macs < TINY_FC_MACS
    return Blocks(**counts)


def node_macs(
    model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, int]:
    """Multiply-adds of each named Conv/ConvTranspose/MatMul/Gemm with a constant weight.

    Main graph only; nodes shape inference could not size are left out.
    """
    known = _shapes(_fixed(model, shapes or {}))
    constants = _constants(model.graph)
    out = {}
    for node in model.graph.node:
        weight = node.input[1] if len(node.input) > 1 else ""
        if node.op_type not in _WEIGHTED or weight not in constants or len(constants[weight]) < 2:
            continue
        x, y = _size(known.get(node.input[0])), _size(known.get(node.output[0]))
        if node.name and x is not None and y is not None:
            out[node.name] = _macs(node, constants[weight], x, y)
    return out


def _macs(node: onnx.NodeProto, w: tuple[int, ...], x: int, y: int) -> int:
    """Multiply-adds of one weighted node from its weight shape and its value counts."""
    if node.op_type == "Conv":  # w: [out, in / group, k...]; each output value reads in/group*k
        return y * int(np.prod(w[1:]))
    if node.op_type == "ConvTranspose":  # w: [in, out / group, k...]; each input value writes
        return x * int(np.prod(w[1:]))
    if node.op_type == "Gemm" and _attr(node, "transB", 0):
        return y * w[-1]
    return y * w[-2]  # MatMul/Gemm: each output value is a dot product over K


def _is_gate(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> bool:
    """A Mul of x by a Sigmoid/HardSigmoid of something pooled within a few nodes (not of x)."""
    for name in node.input:
        gate = producer.get(name)
        if gate is None or gate.op_type not in _GATES or gate.input[0] in node.input:
            continue  # (x * sigmoid(x) is SiLU, an activation, not a gate)
        frontier, steps = [gate.input[0]], 0
        while frontier and steps < 6:
            source = producer.get(frontier.pop())
            steps += 1
            if source is None:
                continue
            if source.op_type in _POOLS:
                return True
            frontier.extend(source.input[:1])
    return False
