"""Reading ONNX models and the facts a report and a planner need about them.

`load` turns every way a file can fail to be a model into one `ModelError` that says what is
wrong; `facts` counts parameters, zeros (sparsity), multiply-accumulates where shapes are known,
and lists the operator mix.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from edgeopt.proto.errors import ModelError

_DIGEST_CHUNK = 1 << 20


def _hash_file(h: Any, path: Path) -> None:
    with path.open("rb") as f:
        while chunk := f.read(_DIGEST_CHUNK):
            h.update(chunk)


def digest(path: Path) -> str:
    """sha256 of a file, hex; for an ONNX model also of the external data files it names.

    Raises:
        FileNotFoundError: the file (or an external data file it names) is missing.
    """
    h = hashlib.sha256()
    _hash_file(h, path)
    if path.suffix == ".onnx":
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception:
            return h.hexdigest()  # not ONNX after all: the loader will say so
        locations = sorted(
            {
                entry.value
                for tensor in model.graph.initializer
                for entry in tensor.external_data
                if entry.key == "location"
            }
        )
        for location in locations:
            h.update(location.encode())
            _hash_file(h, path.parent / location)
    return h.hexdigest()


def load(path: Path, *, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model (with its external data) and check it.

    Raises:
        ModelError: missing, unreadable, not ONNX, truncated, or failing onnx's checker.
    """
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from exc
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
    """Multiply-accumulates of Conv, Gemm and MatMul for batch 1, when shapes are known."""
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
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(1)  # symbolic (batch, sequence): count per item
        else:
            return None
    return dims


def _macs(model: onnx.ModelProto) -> int | None:
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:
        return None
    shapes: dict[str, list[int] | None] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        shapes[vi.name] = _dims(vi)
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
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


def facts(path: Path, model: onnx.ModelProto | None = None) -> ModelFacts:
    """Count what `path` holds (loading it unless `model` is given)."""
    model = model if model is not None else load(path, check=False)
    params = zeros = 0
    layers = {}
    for init in model.graph.initializer:
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
        macs=_macs(model),
        ops=dict(Counter(n.op_type for n in model.graph.node)),
        ir_version=model.ir_version,
        opset=ai_onnx_opset(model),
        layer_sparsity=layers,
    )
