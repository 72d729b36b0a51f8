"""Where a model's weights are and how they are stored: float32, float16, int8 or int4.

A quantizer can "succeed" and change nothing: ONNX Runtime's dynamic int8 leaves Conv float, its
static quantizer does not enter `If`/`Loop`/`Scan` bodies, and weights that are graph inputs are
skipped. Size alone hides that (scales and Q/DQ nodes add bytes), so the report counts weights
directly: every tensor of two or more dimensions (or a `MatMulNBits` block) that a node reads
from an initializer, directly or through `DequantizeLinear`. Each is classed by how it is stored
and by the kind of operator that reads it (`ConvInteger` and `QLinearConv` count as Conv,
`MatMulNBits` as MatMul, ...), so a report can say "int8: 98.7 % of weight bytes (62 Conv,
1 Gemm); kept float: 2 ConvTranspose".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx

__all__ = ["COMPUTE_KINDS", "QUANTIZED", "WeightCensus", "census"]

Storage = str
"""One of "float32", "float16", "int8", "int4"."""

QUANTIZED: tuple[Storage, ...] = ("int8", "int4")

_KIND: dict[str, str] = {
    "ConvInteger": "Conv",
    "QLinearConv": "Conv",
    "FusedConv": "Conv",
    "NhwcConv": "Conv",
    "QLinearConvTranspose": "ConvTranspose",
    "MatMulInteger": "MatMul",
    "QLinearMatMul": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "MatMulIntegerToFloat": "MatMul",
    "MatMulNBits": "MatMul",
    "FusedMatMul": "MatMul",
    "QGemm": "Gemm",
    "GatherBlockQuantized": "Gather",
    "DynamicQuantizeLSTM": "LSTM",
    "QAttention": "Attention",
}
"""Quantized and fused operators → the float operator they stand for."""

COMPUTE_KINDS = frozenset(
    {"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "LSTM", "GRU", "RNN", "Attention"}
)
"""Operator kinds whose weights int8 is meant for; other readers of constants (Add, Mul,
Concat of anchors and positional tables) are counted but not expected to be quantized."""

_WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({1}),
    "ConvTranspose": frozenset({1}),
    "ConvInteger": frozenset({1}),
    "QLinearConv": frozenset({3}),
    "QLinearConvTranspose": frozenset({3}),
    "MatMulInteger": frozenset({1}),
    "DynamicQuantizeMatMul": frozenset({1}),
    "MatMulIntegerToFloat": frozenset({1}),
    "MatMulNBits": frozenset({1}),
    "QLinearMatMul": frozenset({0, 3}),
    "QGemm": frozenset({0, 3}),
    "Gather": frozenset({0}),
    "LSTM": frozenset({1, 2}),
    "GRU": frozenset({1, 2}),
    "RNN": frozenset({1, 2}),
    "DynamicQuantizeLSTM": frozenset({1, 2}),
    "Attention": frozenset({1}),
    "QAttention": frozenset({1}),
}
"""Inputs that hold weights, for operators that also take 2-D biases or states (an LSTM's B is
[directions, 8 * hidden]); any other operator's constant inputs of 2+ dims count."""

_INT_OPS = frozenset(
    {
        "ConvInteger",
        "MatMulInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QLinearConvTranspose",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "DynamicQuantizeLSTM",
        "QAttention",
        "MatMulNBits",
        "GatherBlockQuantized",
    }
)
_FLOAT: dict[int, Storage] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "float16",
}
_INT8 = frozenset(
    {
        onnx.TensorProto.INT8,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.UINT16,
    }
)
_INT4 = frozenset({onnx.TensorProto.INT4, onnx.TensorProto.UINT4})
_BYTES_PER_ELEMENT: dict[Storage, float] = {"float32": 4, "float16": 2, "int8": 1, "int4": 0.5}


@dataclass
class WeightCensus:
    """Weights counted by storage and by the kind of operator reading them."""

    elements: Counter[Storage] = field(default_factory=Counter)
    """Weight elements per storage class (each tensor once)."""
    compute_elements: Counter[Storage] = field(default_factory=Counter)
    """The same, for weights read by compute operators (Conv, MatMul, Gemm, Gather, RNNs)."""
    subgraph_elements: Counter[Storage] = field(default_factory=Counter)
    """The same, for weights inside control-flow bodies."""
    nodes: Counter[tuple[str, Storage]] = field(default_factory=Counter)
    """(operator kind, storage) → how many nodes read such a weight."""
    subgraph_nodes: Counter[tuple[str, Storage]] = field(default_factory=Counter)
    """The same, for nodes inside control-flow bodies."""
    kind_elements: Counter[tuple[str, Storage]] = field(default_factory=Counter)
    """(operator kind, storage) → weight elements (a tensor shared by kinds counts for each)."""
    subgraph_kind_elements: Counter[tuple[str, Storage]] = field(default_factory=Counter)
    """The same, for weights inside control-flow bodies."""
    classic_ops: tuple[str, ...] = ()
    """The ai.onnx.ml operators of the graph (TreeEnsembleClassifier, LinearClassifier, ...):
    their parameters are attributes, not weight tensors, so no precision reaches them."""

    @property
    def total(self) -> int:
        """All weight elements."""
        return sum(self.elements.values())

    def share(self, *storages: Storage) -> float:
        """Share of weight elements (= of their float32 bytes) stored in one of `storages`."""
        return sum(self.elements[s] for s in storages) / self.total if self.total else 0.0

    @property
    def quantized_share(self) -> float:
        """Share of weight elements stored as int8 or int4."""
        return self.share(*QUANTIZED)

    def stored_bytes(self, compute_only: bool = False) -> float:
        """Bytes the weights take as stored (scales and zero points not counted)."""
        counts = self.compute_elements if compute_only else self.elements
        return sum(n * _BYTES_PER_ELEMENT[s] for s, n in counts.items())

    def bytes_ratio(
        self, reference: WeightCensus, kinds: frozenset[str], subgraphs: bool = True
    ) -> float | None:
        """Stored bytes of the weights read by `kinds`, over their float32 bytes in `reference`.

        With `subgraphs` False, weights inside control-flow bodies are left out on both sides.
        None when the reference has no such weights.
        """

        def counts(c: WeightCensus) -> Counter[tuple[str, Storage]]:
            return c.kind_elements if subgraphs else c.kind_elements - c.subgraph_kind_elements

        before = sum(n for (k, _), n in counts(reference).items() if k in kinds)
        after = sum(n * _BYTES_PER_ELEMENT[s] for (k, s), n in counts(self).items() if k in kinds)
        return after / (4 * before) if before else None

    def kinds(self, storages: tuple[Storage, ...], subgraph: bool = False) -> dict[str, int]:
        """Operator kind → nodes reading a weight stored in one of `storages`, most first."""
        source = self.subgraph_nodes if subgraph else self.nodes
        counts: Counter[str] = Counter()
        for (kind, storage), n in source.items():
            if storage in storages:
                counts[kind] += n
        return dict(counts.most_common())

    def kept_float_compute(self) -> dict[str, int]:
        """Compute-operator kinds → nodes whose weights are still float32."""
        return {k: n for k, n in self.kinds(("float32",)).items() if k in COMPUTE_KINDS}

    def summary(self, storages: tuple[Storage, ...] = QUANTIZED) -> str:
        """One line: "int8: 98.7 % of weight bytes (62 Conv, 1 Gemm); kept float: 2 Gemm"."""
        label = "/".join(s for s in storages if self.elements[s]) or "/".join(storages)
        done = ", ".join(f"{n} {k}" for k, n in self.kinds(storages).items()) or "no operator"
        line = f"{label}: {self.share(*storages):.1%} of weight bytes ({done})"
        kept = self.kept_float_compute()
        if kept:
            line += "; kept float: " + ", ".join(f"{n} {k}" for k, n in kept.items())
            inside = {
                k: n
                for k, n in self.kinds(("float32",), subgraph=True).items()
                if k in COMPUTE_KINDS
            }
            if inside:
                line += " (" + ", ".join(f"{n} {k}" for k, n in inside.items())
                line += " inside If/Loop/Scan bodies)"
        return line


def _elements(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims)) if tensor.dims else 1


def _storage(tensor: onnx.TensorProto, quantized_use: bool) -> Storage | None:
    if tensor.data_type in _FLOAT:
        return _FLOAT[tensor.data_type]
    if quantized_use and tensor.data_type in _INT4:
        return "int4"
    if quantized_use and tensor.data_type in _INT8:
        return "int8"
    return None  # int64 shapes, bools, strings: not weights


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


_VIEW_OPS = frozenset(
    {"Identity", "Reshape", "Transpose", "Slice", "Squeeze", "Unsqueeze", "Flatten", "Split"}
)
"""Operators that only cut or rearrange a constant: their reader is the weight's real user
(spox and tf2onnx slice an LSTM's W and R out of one fused tensor)."""

Sources = dict[str, tuple[tuple[str, ...], bool]]
"""Value name → (the initializers it is a view of, whether a DequantizeLinear is on the way);
several for a Concat of weights."""


@dataclass
class _Walk:
    """One census in the making: what was counted already, so shared tensors count once."""

    census: WeightCensus
    seen: set[tuple[object, ...]] = field(default_factory=set)


def _count(
    walk: _Walk,
    graph: onnx.GraphProto,
    outer: dict[str, onnx.TensorProto],
    outer_sources: Sources,
    depth: int,
) -> None:
    initializers = {**outer, **{t.name: t for t in graph.initializer}}
    sources: Sources = {**outer_sources, **{t.name: ((t.name,), False) for t in graph.initializer}}
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                _count(walk, sub, initializers, sources, depth + 1)
        data = sources.get(node.input[0]) if node.input else None
        if node.op_type == "Concat":
            # A Concat of weights (spox joins an LSTM's slices) is a view of all of them.
            parts = [sources.get(name) for name in node.input]
            if parts and all(p is not None for p in parts):
                roots = tuple(dict.fromkeys(r for p in parts if p for r in p[0]))
                data = (roots, any(p[1] for p in parts if p))
            else:
                data = None
        if data is not None and (
            node.op_type == "Concat"
            or node.op_type in _VIEW_OPS
            or (node.op_type == "DequantizeLinear" and not data[1])
        ):
            through_dq = data[1] or node.op_type == "DequantizeLinear"
            for name in node.output:
                sources[name] = (data[0], through_dq)
            continue
        _count_node(walk, node, (initializers, sources), depth)


def _count_node(
    walk: _Walk,
    node: onnx.NodeProto,
    scope: tuple[dict[str, onnx.TensorProto], Sources],
    depth: int,
) -> None:
    census = walk.census
    initializers, sources = scope
    kind = _KIND.get(node.op_type, node.op_type)
    slots = _WEIGHT_SLOTS.get(node.op_type)
    storages: set[Storage] = set()
    for index, name in enumerate(node.input):
        if (slots is not None and index not in slots) or name not in sources:
            continue
        roots, through_dq = sources[name]
        for source in roots:
            storage = _count_input(walk, node, index, initializers[source], source, through_dq,
                                   kind, depth)  # fmt: skip
            if storage is not None:
                storages.add(storage)
    for storage in storages:  # a node counts once per storage class it reads
        census.nodes[(kind, storage)] += 1
        if depth:
            census.subgraph_nodes[(kind, storage)] += 1


def _count_input(  # noqa: PLR0917  (one input of one node: all of it is needed)
    walk: _Walk,
    node: onnx.NodeProto,
    index: int,
    tensor: onnx.TensorProto,
    source: str,
    through_dq: bool,
    kind: str,
    depth: int,
) -> Storage | None:
    """Count one weight a node reads; returns its storage (None: not a weight)."""
    census, seen = walk.census, walk.seen
    elements = _elements(tensor)
    storage: Storage | None
    if node.op_type == "MatMulNBits" and index == 1:
        storage = "int4" if _attr(node, "bits", 4) == 4 else "int8"
        elements = _attr(node, "K", 0) * _attr(node, "N", 0)
    elif len(tensor.dims) < 2:
        return None  # biases, scales, zero points, shapes
    else:
        storage = _storage(tensor, through_dq or node.op_type in _INT_OPS)
    if storage is None:
        return None
    key = (id(tensor), source)
    if ("kind", *key, kind) not in seen:
        seen.add(("kind", *key, kind))
        census.kind_elements[(kind, storage)] += elements
        if depth:
            census.subgraph_kind_elements[(kind, storage)] += elements
    if ("all", *key) in seen:
        return storage
    seen.add(("all", *key))
    census.elements[storage] += elements
    if kind in COMPUTE_KINDS:
        census.compute_elements[storage] += elements
    if depth:
        census.subgraph_elements[storage] += elements
    return storage


def census(model: onnx.ModelProto) -> WeightCensus:
    """Count the weights of `model`, subgraphs included."""
    result = WeightCensus()
    _count(_Walk(result), model.graph, {}, {}, 0)
    result.classic_ops = tuple(sorted({n.op_type for n in model.graph.node
                                       if n.domain == "ai.onnx.ml"}))  # fmt: skip
    return result
