"""Bring an ONNX model from the wild into the one shape every later pass can rely on.

Exporters disagree on where weights live. Paddle2ONNX and some spox or hand-built graphs keep
every weight in a `Constant` node (a Paddle OCR detector: 342 of them, no initializer), models of
IR version < 4 list each initializer again as a graph input, large PyTorch exports keep their
tensors in external data files, and control-flow bodies (`If`/`Loop`/`Scan`) hold weights of
their own. ONNX Runtime's quantizer only quantizes initializers that are not graph inputs, so
without this step such a model comes out "quantized" with every weight still float.

`normalize` makes a copy in which:
- every numeric tensor held by a `Constant` node (dense, sparse, or a `value_float(s)`/
  `value_int(s)` attribute) is an initializer of the graph that holds the node, subgraphs
  included; string constants and constants that are graph outputs stay as they are;
- initializers stop being graph inputs where nobody is meant to feed them: all of them below IR
  version 4 (where the format forced the listing; the IR version is raised to 4), and weights
  (two or more dimensions) above it;
- Identity nodes that only rename a constant (how PyTorch exports shared weights) are folded
  away, so quantizers see the weight at the reader's input;
- external data is loaded, so the result is one self-contained model; a missing data file is a
  `ModelError` naming the file.

What it changed comes back as notes in words, for the compression report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
from onnx import numpy_helper

from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.onnxfile import external_files, graphs
from edgeopt.host.compress.passes import Pass
from edgeopt.host.compress.tidy import rename_inputs
from edgeopt.host.errors import ModelError

MIN_IR_WITHOUT_INPUT_INITIALIZERS = 4
"""From IR version 4 on, an initializer need not be a graph input (ONNX IR spec)."""


def _sparse_to_dense(sparse: onnx.SparseTensorProto, name: str) -> onnx.TensorProto:
    """A dense tensor from ONNX's COO sparse form (linear or per-axis indices)."""
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    dims = tuple(sparse.dims)
    dense = np.zeros(int(np.prod(dims)) if dims else 1, dtype=values.dtype)
    if indices.ndim == 2:  # [NNZ, rank] coordinates
        indices = np.ravel_multi_index(tuple(indices.T), dims)
    dense[indices.reshape(-1)] = values.reshape(-1)
    return numpy_helper.from_array(dense.reshape(dims), name)


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:  # noqa: PLR0911
    """The numeric tensor a Constant node holds, named as its output; None for strings."""
    name = node.output[0]
    for attr in node.attribute:
        if attr.name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
            tensor.name = name
            return None if tensor.data_type == onnx.TensorProto.STRING else tensor
        if attr.name == "sparse_value":
            return _sparse_to_dense(attr.sparse_tensor, name)
        if attr.name == "value_float":
            return numpy_helper.from_array(np.array(attr.f, dtype=np.float32), name)
        if attr.name == "value_floats":
            return numpy_helper.from_array(np.array(list(attr.floats), dtype=np.float32), name)
        if attr.name == "value_int":
            return numpy_helper.from_array(np.array(attr.i, dtype=np.int64), name)
        if attr.name == "value_ints":
            return numpy_helper.from_array(np.array(list(attr.ints), dtype=np.int64), name)
    return None  # value_string(s), or an attribute reference inside a function


@dataclass
class NormalizeReport:
    """What `normalize` changed."""

    constants_moved: int = 0
    """Constant nodes turned into initializers."""
    constant_bytes: int = 0
    """Bytes of the tensors they held."""
    sparse_constants: int = 0
    """Of those, how many held a sparse tensor (made dense)."""
    subgraph_constants: int = 0
    """Of those, how many sat inside a control-flow body."""
    inputs_dropped: int = 0
    """Initializers that stopped being graph inputs."""
    ir_raised_from: int | None = None
    """The IR version before it was raised to allow that, if it was."""
    external_data: list[str] = field(default_factory=list)
    """External data files that were loaded into the model."""
    identities_folded: int = 0
    """Identity nodes that only renamed a weight, dropped."""

    def notes(self) -> list[str]:
        """The changes in words (empty when the model needed none)."""
        notes = []
        if self.constants_moved:
            where = f", {self.subgraph_constants} inside control-flow bodies" * bool(
                self.subgraph_constants
            )
            sparse = f", {self.sparse_constants} sparse made dense" * bool(self.sparse_constants)
            notes.append(
                f"{self.constants_moved} Constant nodes ({self.constant_bytes / 2**20:.2f} MiB) "
                f"became initializers{where}{sparse}"
            )
        if self.inputs_dropped:
            raised = (
                f"; IR version {self.ir_raised_from} -> {MIN_IR_WITHOUT_INPUT_INITIALIZERS}"
                if self.ir_raised_from is not None
                else ""
            )
            notes.append(
                f"{self.inputs_dropped} initializers were also listed as graph inputs and are "
                f"now constants{raised}"
            )
        if self.identities_folded:
            notes.append(
                f"{self.identities_folded} Identity nodes that only renamed a weight (shared "
                "weights) were folded, so the quantizers see the weight"
            )
        if self.ir_raised_from is not None and not self.inputs_dropped:
            notes.append(
                f"IR version {self.ir_raised_from} -> {MIN_IR_WITHOUT_INPUT_INITIALIZERS}: "
                "initializers that are not graph inputs need it"
            )
        if self.external_data:
            notes.append(f"external data loaded from {', '.join(self.external_data)}")
        return notes


def _move_constants(graph: onnx.GraphProto, top: bool, report: NormalizeReport) -> None:
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:
        tensor = None
        if (
            node.op_type == "Constant"
            and node.domain in ("", "ai.onnx")
            and node.output
            and node.output[0] not in outputs
        ):
            tensor = _constant_tensor(node)
        if tensor is None:
            keep.append(node)
            continue
        graph.initializer.append(tensor)
        report.constants_moved += 1
        report.constant_bytes += numpy_helper.to_array(tensor).nbytes
        report.sparse_constants += any(a.name == "sparse_value" for a in node.attribute)
        report.subgraph_constants += not top
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def _fold_identities(graph: onnx.GraphProto, visible: set[str]) -> int:
    """Drop Identity nodes that only rename a constant; their readers read the constant.

    PyTorch exports shared weights (ALBERT's layers, tied embeddings) as one initializer and
    Identity nodes naming it again; quantizers look for an initializer at a MatMul's input and
    skip a MatMul that reads an Identity.
    """
    constants = visible | {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        source = rename.get(node.input[0], node.input[0]) if node.input else ""
        if node.op_type == "Identity" and source in constants and node.output[0] not in outputs:
            rename[node.output[0]] = source
            continue
        keep.append(node)
    folded = len(rename)
    if folded:
        del graph.node[:]
        graph.node.extend(keep)
        rename_inputs(graph, rename)
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                folded += _fold_identities(sub, constants)
    return folded


def _drop_input_initializers(model: onnx.ModelProto, report: NormalizeReport) -> None:
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    below_4 = model.ir_version < MIN_IR_WITHOUT_INPUT_INITIALIZERS

    def constant(vi: onnx.ValueInfoProto) -> bool:
        tensor = initializers.get(vi.name)
        # Above IR 4 a listed initializer is a default the caller may override: only weights
        # (nobody feeds a weight at run time) lose their input.
        return tensor is not None and (below_4 or len(tensor.dims) >= 2)

    keep = [vi for vi in graph.input if not constant(vi)]
    dropped = len(graph.input) - len(keep)
    if not dropped:
        return
    del graph.input[:]
    graph.input.extend(keep)
    report.inputs_dropped = dropped
    if below_4:
        report.ir_raised_from = model.ir_version
        model.ir_version = MIN_IR_WITHOUT_INPUT_INITIALIZERS


def normalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, NormalizeReport]:
    """A normalized copy of `model` (external data must already be loaded) and what changed."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    report = NormalizeReport()
    for graph in graphs(result.graph):
        _move_constants(graph, graph is result.graph, report)
    _drop_input_initializers(result, report)
    if report.constants_moved and result.ir_version < MIN_IR_WITHOUT_INPUT_INITIALIZERS:
        # The new initializers are not graph inputs, which IR < 4 does not allow.
        report.ir_raised_from = report.ir_raised_from or result.ir_version
        result.ir_version = MIN_IR_WITHOUT_INPUT_INITIALIZERS
    report.identities_folded = _fold_identities(result.graph, set())
    return result, report


def with_input_dims(model: onnx.ModelProto, dims: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy whose graph inputs have the given concrete dims (for shape inference only)."""
    return onnx_model.with_dims(model, dims)


@dataclass(frozen=True)
class Normalize(Pass):
    """The first pass on every ONNX input: see the module docstring."""

    name: ClassVar[str] = "normalize"

    def run(self, src: Path, dst: Path) -> list[str]:
        """Write the normalized model; returns what changed, in words."""
        model = onnx_model.load(src, check=False)
        normalized, report = normalize(model)
        report.external_data = sorted(external_files(onnx.load(str(src), load_external_data=False)))
        try:
            onnx.checker.check_model(normalized)
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"{src}: malformed ONNX model: {first}") from exc
        onnx_model.save(normalized, dst)
        return report.notes()


__all__ = [
    "Normalize",
    "NormalizeReport",
    "graphs",
    "normalize",
    "with_input_dims",
]
