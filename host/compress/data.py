"""Example, calibration and validation data: `.npz` files of named arrays.

A dataset maps each model input name to an array whose first axis counts samples
(`image: float32[N, 1, 8, 8]`, `input_ids: int64[N, L]`). An optional `labels` array (`int[N]`)
gives the true classes, for task accuracy. `load` checks names, ranks, fixed dimensions and
dtypes against the model's inputs and says exactly what does not fit; `batches` cuts the samples
into feeds for ONNX Runtime.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeopt.proto.errors import DataError

LABELS = "labels"

_ONNX_TO_NUMPY: dict[int, type] = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
}


@dataclass(frozen=True)
class InputSpec:
    """One graph input: name, numpy dtype, and dims (None where symbolic)."""

    name: str
    dtype: type
    dims: tuple[int | None, ...]


@dataclass(frozen=True)
class Dataset:
    """Named arrays that fit a model's inputs, plus labels when given."""

    arrays: dict[str, np.ndarray]
    """Input name → samples (first axis)."""
    labels: np.ndarray | None
    """True class per sample."""
    path: Path | None = None
    """The file, for messages."""
    fixed_batch: int | None = None
    """The model's first axis when it is fixed (an export at batch 1): feeds must be that size."""

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of at most `batch_size` samples each, in order."""
        for start in range(0, len(self), batch_size):
            yield {k: v[start : start + batch_size] for k, v in self.arrays.items()}


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs a caller must feed (initializers listed as inputs excluded)."""
    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        tensor = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        dtype = _ONNX_TO_NUMPY.get(int(tensor.elem_type), np.float32)
        specs.append(InputSpec(vi.name, dtype, dims))
    return specs


def load(path: Path, model: onnx.ModelProto, *, purpose: str) -> Dataset:
    """Read an `.npz` and check it against the model's inputs.

    Args:
        path: the file.
        model: the model it must feed.
        purpose: "calibration", "validation" or "example", for messages.

    Raises:
        DataError: unreadable, names missing or extra, wrong rank, fixed dims or sample counts
            that differ, or values that cannot be cast to the input's dtype.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            raw = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{purpose} data {path}: cannot read as .npz: {exc}") from exc
    specs = input_specs(model)
    wanted = [s.name for s in specs]
    labels = raw.pop(LABELS, None)
    missing = [n for n in wanted if n not in raw]
    extra = sorted(set(raw) - set(wanted))
    if missing or extra:
        raise DataError(
            f"{purpose} data {path}: names do not match the model's inputs "
            f"{wanted}: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        array = raw[spec.name]
        if array.ndim != len(spec.dims):
            raise DataError(
                f"{purpose} data {path}: {spec.name!r} has shape "
                f"{list(array.shape)}, but the model wants rank {len(spec.dims)} "
                f"{_show(spec.dims)} (first axis = samples)"
            )
        for axis, (got, want) in enumerate(zip(array.shape[1:], spec.dims[1:], strict=True), 1):
            if want is not None and got != want:
                raise DataError(
                    f"{purpose} data {path}: {spec.name!r} has {got} on axis {axis}, the model "
                    f"wants {want} (model input {_show(spec.dims)}, data {list(array.shape)})"
                )
        if array.dtype != spec.dtype:
            kind_ok = np.can_cast(array.dtype, spec.dtype, casting="same_kind")
            if not kind_ok:
                raise DataError(
                    f"{purpose} data {path}: {spec.name!r} is {array.dtype}, the model wants "
                    f"{np.dtype(spec.dtype).name}"
                )
            array = array.astype(spec.dtype)
        arrays[spec.name] = array
    counts = {len(a) for a in arrays.values()} | ({len(labels)} if labels is not None else set())
    if len(counts) != 1:
        raise DataError(f"{purpose} data {path}: arrays hold different numbers of samples {counts}")
    if not arrays or len(next(iter(arrays.values()))) == 0:
        raise DataError(f"{purpose} data {path}: no samples")
    if labels is not None and labels.ndim != 1:
        raise DataError(
            f"{purpose} data {path}: 'labels' must hold one class per sample (shape [N]), "
            f"got shape {list(labels.shape)}"
        )
    fixed = {s.dims[0] for s in specs if s.dims and s.dims[0] is not None}
    fixed_batch = min(fixed) if fixed else None
    if fixed_batch is not None and len(next(iter(arrays.values()))) % fixed_batch:
        raise DataError(
            f"{purpose} data {path}: the model takes batches of exactly {fixed_batch}, and "
            f"{len(next(iter(arrays.values())))} samples do not divide into them"
        )
    return Dataset(arrays, labels, path, fixed_batch)


def _show(dims: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def save(path: Path, arrays: dict[str, np.ndarray], labels: np.ndarray | None = None) -> None:
    """Write a dataset in the format `load` reads."""
    payload = dict(arrays)
    if labels is not None:
        payload[LABELS] = labels
    np.savez(path, **payload)  # type: ignore[arg-type]
