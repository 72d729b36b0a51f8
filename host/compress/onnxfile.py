"""Reading ONNX models and the facts a report and a planner need about them.

`load` turns every way a file can fail to be a model into one `ModelError` that says what is
wrong; `facts` counts parameters, zeros (sparsity), multiply-accumulates where shapes are known,
and lists the operator mix.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import external_data_helper, numpy_helper, shape_inference

from edgeopt.host.errors import ModelError

__all__ = [
    "ModelFacts",
    "ai_onnx_opset",
    "check_external_data",
    "digest",
    "external_files",
    "facts",
    "graphs",
    "load",
    "save",
    "undecodable",
    "with_dims",
]

_DIGEST_CHUNK = 1 << 20


def _hash_file(h: Any, path: Path) -> None:
    with path.open("rb") as f:
        while chunk := f.read(_DIGEST_CHUNK):
            h.update(chunk)


def digest(path: Path) -> str:
    """sha256 of a file, hex; for an ONNX model also of the external data files it names.

    Raises:
        FileNotFoundError: the file is missing.
        ModelError: an external data file it names is missing.
    """
    h = hashlib.sha256()
    _hash_file(h, path)
    if path.suffix == ".onnx":
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception:
            return h.hexdigest()  # not ONNX after all: the loader will say so
        if undecodable(model) is not None:
            return h.hexdigest()  # damaged: the loader will say so
        locations = sorted(external_files(model))
        check_external_data(model, path)
        for location in locations:
            h.update(location.encode())
            _hash_file(h, path.parent / location)
    return h.hexdigest()


def undecodable(message: Message, where: str = "") -> tuple[str, bytes] | None:
    """The first string field (depth first) that is not UTF-8 text, as (field path, bytes).

    protobuf reads ONNX's proto2 strings without checking them and hands back `bytes` where
    the text is not UTF-8; every later step (onnx's checker, shape inference, the quantizers,
    our own messages) expects `str` and fails in its own way (`UnicodeDecodeError`,
    "can't concat str to bytes"). One bit flipped in a node's name is enough.
    """
    for descriptor, value in message.ListFields():
        if descriptor.type not in (descriptor.TYPE_STRING, descriptor.TYPE_MESSAGE):
            continue  # numbers and raw bytes: nothing to decode (and float_data can be long)
        name = f"{where}.{descriptor.name}" if where else descriptor.name
        single = isinstance(value, (str, bytes, Message))
        items = [(name, value)] if single else [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        for place, item in items:
            if isinstance(item, bytes):
                return place, item
            if isinstance(item, Message):
                found = undecodable(item, place)
                if found is not None:
                    return found
    return None


def graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph below it (bodies of If, Loop, Scan, ...), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from graphs(sub)


def external_files(model: onnx.ModelProto) -> dict[str, str]:
    """External data location → the first tensor stored there, over every graph."""
    found: dict[str, str] = {}
    for graph in graphs(model.graph):
        tensors = list(graph.initializer)
        for node in graph.node:  # Constant nodes and other tensor attributes may be external too
            for attr in node.attribute:
                tensors += [attr.t, *attr.tensors]
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                location = next((e.value for e in tensor.external_data if e.key == "location"), "")
                found.setdefault(location, tensor.name)
    return found


def check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Raise `ModelError` naming the file when external data a model needs is not beside it.

    A location must stay inside the model's folder: a model from elsewhere could otherwise name
    `../../.ssh/id_ed25519` and have it read into the model and pushed to a board.
    """
    folder = path.parent.resolve()
    for location, tensor in external_files(model).items():
        data = path.parent / location
        if Path(location).is_absolute() or not data.resolve().is_relative_to(folder):
            raise ModelError(
                f"{path}: external data file {location!r} (holding tensor {tensor!r}) is outside "
                "the model's folder; refused: external data must sit beside the model"
            )
        if not location or not data.is_file():
            raise ModelError(
                f"{path}: external data file {location!r} (holding tensor {tensor!r}) is missing; "
                f"it must sit beside the model at {data}"
            )


def load(path: Path, *, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model (with its external data) and check it.

    Raises:
        ModelError: missing, unreadable, not ONNX, truncated, or failing onnx's checker.
    """
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
    damaged = undecodable(model)
    if damaged is not None:
        place, raw = damaged
        raise ModelError(
            f"{path}: damaged ONNX model: {place} is not UTF-8 text ({raw[:32]!r}); "
            "export or copy the model again"
        )
    if external_files(model):
        check_external_data(model, path)
        try:
            external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:
            raise ModelError(f"{path}: cannot read its external data: {exc}") from exc
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{path}: not an ONNX model (no graph in the file)")
    if check:
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"{path}: malformed ONNX model: {first}") from exc
    return model


def save(model: onnx.ModelProto, path: Path) -> None:
    """Save as one self-contained file (no external data beside it)."""
    onnx.save_model(model, str(path), save_as_external_data=False)


def ai_onnx_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset (0 when it imports none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


@dataclass(frozen=True)
class ModelFacts:
    """What a model is made of."""

    size_bytes: int
    """File size."""
    parameters: int
    """Elements of all initializers (weights, biases, quantization scales)."""
    zero_parameters: int
    """Initializer elements equal to zero."""
    macs: int | None
    """Multiply-accumulates of Conv, Gemm and MatMul for one sample, when shapes are known and
    no such operator sits inside a control-flow body (only one branch of an If runs)."""
    ops: dict[str, int] = field(default_factory=dict)
    """Operator type → count."""
    ir_version: int = 0
    """Model IR version."""
    opset: int = 0
    """ai.onnx opset."""
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    """Weight tensor (2 or more dims) → share of zeros, for tensors that have any."""

    @property
    def sparsity(self) -> float:
        """Share of zero parameters."""
        return self.zero_parameters / self.parameters if self.parameters else 0.0


def _dims(value_info: onnx.ValueInfoProto) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    dims = []
    for d in shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(d.dim_value)
        elif d.HasField("dim_param") or d.HasField("dim_value"):
            dims.append(1)  # symbolic (batch, sequence): count per item
        else:
            return None
    return dims


def _macs(model: onnx.ModelProto, dims: dict[str, tuple[int, ...]] | None = None) -> int | None:
    if dims:
        model = with_dims(model, dims)
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return None
    shapes: dict[str, list[int] | None] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        shapes[vi.name] = _dims(vi)
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    inside = (n for g in list(graphs(model.graph))[1:] for n in g.node)
    if any(n.op_type in ("Conv", "Gemm", "MatMul") for n in inside):
        return None  # which branch of an If runs is not known here
    total = 0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        out = shapes.get(node.output[0])
        weight = shapes.get(node.input[1])
        if not out or not weight:
            return None
        if node.op_type == "Conv":
            # out: N, C_out, *spatial; weight: C_out, C_in/group, *kernel
            total += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type == "Gemm":
            # B is [K, N], or [N, K] with transB=1 (how PyTorch exports Linear)
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            total += int(np.prod(out)) * (weight[1] if trans_b else weight[0])
        else:
            total += int(np.prod(out)) * (weight[-2] if len(weight) >= 2 else weight[0])
    return total


def with_dims(model: onnx.ModelProto, dims: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy whose graph inputs have the given concrete dims (for shape inference)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    for vi in result.graph.input:
        shape = vi.type.tensor_type.shape
        wanted = dims.get(vi.name)
        if wanted is None or len(shape.dim) != len(wanted):
            continue
        for dim, value in zip(shape.dim, wanted, strict=True):
            dim.Clear()
            dim.dim_value = value
    return result


def facts(
    path: Path,
    model: onnx.ModelProto | None = None,
    dims: dict[str, tuple[int, ...]] | None = None,
) -> ModelFacts:
    """Count what `path` holds (loading it unless `model` is given).

    Parameters count every initializer, control-flow bodies included; MACs are counted at
    `dims` (the user's data) where given, else with symbolic dims as 1.
    """
    model = model if model is not None else load(path, check=False)
    params = zeros = 0
    layers = {}
    for init in (t for g in graphs(model.graph) for t in g.initializer):
        array = numpy_helper.to_array(init)
        params += array.size
        zero = int(np.count_nonzero(array == 0))
        zeros += zero
        if array.ndim >= 2 and zero and array.dtype.kind == "f":
            layers[init.name] = zero / array.size
    return ModelFacts(
        size_bytes=path.stat().st_size,
        parameters=params,
        zero_parameters=zeros,
        macs=_macs(model, dims),
        ops=dict(Counter(n.op_type for n in model.graph.node)),
        ir_version=model.ir_version,
        opset=ai_onnx_opset(model),
        layer_sparsity=layers,
    )
