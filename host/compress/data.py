"""Example, calibration and validation data: `.npz` files of named arrays.

A dataset maps each model input name to an array whose first axis counts samples
(`image: float32[N, 1, 8, 8]`, `input_ids: int64[N, L]`). An optional `labels` array (`int[N]`)
gives the true classes, for task accuracy. `load` checks names, ranks, fixed dimensions and
dtypes against the model's inputs and says exactly what does not fit; `batches` cuts the samples
into feeds for ONNX Runtime.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import onnx

from edgeopt.host.errors import DataError
from edgeopt.proto.inputs import made_up_shape

__all__ = [
    "LABELS",
    "MAX_MADE_UP_BYTES",
    "Dataset",
    "InputSpec",
    "concrete_dims",
    "dims_from",
    "input_specs",
    "load",
    "read_npz",
    "save",
    "show_dims",
    "synthesize",
    "unbatched",
    "vocabulary",
]

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
    onnx.TensorProto.STRING: np.object_,
}
VOCABULARY_ATTRIBUTES = ("cats_strings", "keys_strings", "pool_strings")
"""ai.onnx.ml attributes that list the strings a model knows (OneHotEncoder and CategoryMapper
categories, LabelEncoder keys, TfIdfVectorizer's pool): made-up text inputs draw from them."""


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
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    """Inputs fed whole to every batch: scalars (a sample rate) and inputs whose first axis is
    not the batch (a recurrent state [2, batch, 128])."""

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 1

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds of at most `batch_size` samples each, in order."""
        for start in range(0, len(self), batch_size):
            yield {
                **{k: v[start : start + batch_size] for k, v in self.arrays.items()},
                **self.constants,
            }


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs a caller must feed (initializers listed as inputs excluded)."""
    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        tensor = vi.type.tensor_type
        # Paddle2ONNX writes a free dim as dim_value -1: as free as a named one.
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tensor.shape.dim
        )
        dtype = _ONNX_TO_NUMPY.get(int(tensor.elem_type), np.float32)
        specs.append(InputSpec(vi.name, dtype, dims))
    return specs


def unbatched(specs: list[InputSpec]) -> set[str]:
    """Inputs whose first axis does not count samples.

    Scalars, and inputs with a fixed first axis beside others whose first axis is free (silero's
    state [2, ?, 128] beside its audio [?, ?]).
    """
    free_first = any(s.dims and s.dims[0] is None for s in specs)
    return {s.name for s in specs if not s.dims or (free_first and s.dims[0] is not None)}


def load(path: Path, model: onnx.ModelProto, *, purpose: str) -> Dataset:  # noqa: PLR0912
    """Read an `.npz` and check it against the model's inputs.

    Args:
        path: the file.
        model: the model it must feed.
        purpose: "calibration", "validation" or "example", for messages.

    Raises:
        DataError: unreadable, names missing or extra, wrong rank, fixed dims or sample counts
            that differ, or values that cannot be cast to the input's dtype.
    """
    raw = read_npz(path, purpose)
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
    constants: dict[str, np.ndarray] = {}
    whole = unbatched(specs)
    for spec in specs:
        array = raw[spec.name]
        if spec.name in whole:
            constants[spec.name] = _constant(array, spec, path, purpose)
            continue
        if array.ndim != len(spec.dims):
            raise DataError(
                f"{purpose} data {path}: {spec.name!r} has shape "
                f"{list(array.shape)}, but the model wants rank {len(spec.dims)} "
                f"{show_dims(spec.dims)} (first axis = samples)"
            )
        for axis, (got, want) in enumerate(zip(array.shape[1:], spec.dims[1:], strict=True), 1):
            if want is not None and got != want:
                raise DataError(
                    f"{purpose} data {path}: {spec.name!r} has {got} on axis {axis}, the model "
                    f"wants {want} (model input {show_dims(spec.dims)}, data {list(array.shape)})"
                )
        if (np.dtype(spec.dtype).kind == "O") != (array.dtype.kind in "US"):
            raise DataError(
                f"{purpose} data {path}: {spec.name!r} is {array.dtype}, the model wants "
                f"{'text (an array of str)' if np.dtype(spec.dtype).kind == 'O' else 'numbers'}"
                f" ({_show_dtype(spec.dtype)})"
            )
        if array.dtype != spec.dtype:
            kind_ok = np.can_cast(array.dtype, spec.dtype, casting="same_kind")
            if not kind_ok:
                raise DataError(
                    f"{purpose} data {path}: {spec.name!r} is {array.dtype}, the model wants "
                    f"{np.dtype(spec.dtype).name}"
                )
            array = array.astype(spec.dtype)
        _check_values(array, spec.name, path, purpose)
        arrays[spec.name] = array
    if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "iu"):
        raise DataError(
            f"{purpose} data {path}: 'labels' must hold one class per sample (shape [N]) as "
            f"integer class indices, got {labels.dtype} of shape {list(labels.shape)}"
        )
    counts = {len(a) for a in arrays.values()} | ({len(labels)} if labels is not None else set())
    if len(counts) > 1:
        raise DataError(f"{purpose} data {path}: arrays hold different numbers of samples {counts}")
    if (not arrays and not constants) or (arrays and len(next(iter(arrays.values()))) == 0):
        raise DataError(f"{purpose} data {path}: no samples")
    fixed = {s.dims[0] for s in specs if s.dims and s.dims[0] is not None and s.name not in whole}
    fixed_batch = min(fixed) if fixed else None
    if any(None in s.dims for s in specs if s.name in whole):
        fixed_batch = 1  # a state's free batch axis was given for one sample
    if fixed_batch is not None and arrays and len(next(iter(arrays.values()))) % fixed_batch:
        raise DataError(
            f"{purpose} data {path}: the model takes batches of exactly {fixed_batch}, and "
            f"{len(next(iter(arrays.values())))} samples do not divide into them"
        )
    return Dataset(arrays, labels, path, fixed_batch, constants)


def _constant(array: np.ndarray, spec: InputSpec, path: Path, purpose: str) -> np.ndarray:
    """An unbatched input's array, checked against the model's dims and cast to its dtype."""
    if array.ndim != len(spec.dims) or any(
        want is not None and got != want for got, want in zip(array.shape, spec.dims, strict=False)
    ):
        raise DataError(
            f"{purpose} data {path}: {spec.name!r} is fed whole to every batch (its first axis "
            f"is not the samples'), so it must have the model's shape {show_dims(spec.dims)}; "
            f"got {list(array.shape)}"
        )
    if array.dtype != spec.dtype:
        if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise DataError(
                f"{purpose} data {path}: {spec.name!r} is {array.dtype}, the model wants "
                f"{np.dtype(spec.dtype).name}"
            )
        array = array.astype(spec.dtype)
    _check_values(array, spec.name, path, purpose)
    return array


def _show_dtype(dtype: type) -> str:
    return "string" if np.dtype(dtype).kind == "O" else np.dtype(dtype).name


def _check_values(array: np.ndarray, name: str, path: Path, purpose: str) -> None:
    """Refuse NaN and infinities: they come from a broken preprocessing step, not from samples.

    Without this check ONNX Runtime's calibrator fails with a bare assertion ("scale issue") and
    validation compares outputs that are NaN already in fp32.
    """
    if array.dtype.kind not in "fc":
        return
    count = int(np.count_nonzero(~np.isfinite(array)))
    if count:
        raise DataError(
            f"{purpose} data {path}: {name!r} holds {count} NaN or infinite value(s); save the "
            "samples the model would really see"
        )


def read_npz(path: Path, purpose: str) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file by name, each member's header checked before it is read.

    NumPy allocates the shape a `.npy` header declares before reading a byte of data, so a
    damaged header (2**40 rows) would take all memory; object arrays are refused (reading them
    unpickles, which runs code), and so is anything that is not a zip of `.npy` members.

    Raises:
        DataError: naming the file and what is wrong with it.
    """
    what = f"{purpose} data {path}"
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise DataError(
                        f"{what}: member {info.filename!r} is not a .npy array; an .npz holds "
                        "one NAME.npy per input, as numpy.savez writes it"
                    )
                name = info.filename.removesuffix(".npy")
                with archive.open(info) as member:
                    _check_npy_header(member, info.file_size, name, what)
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile) as exc:  # fmt: skip
        # zipfile: not a zip, bad CRC, encrypted or unknown compression; numpy: bad header.
        raise DataError(
            f"{what}: cannot read as .npz (a zip of .npy arrays, as numpy.savez writes): {exc}"
        ) from exc
    return arrays


def _check_npy_header(member: IO[bytes], size: int, name: str, what: str) -> None:
    """Check one `.npy` member's header against the bytes it really holds."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise DataError(f"{what}: {name!r} is a .npy of version {version}, which is not read")
    if dtype.hasobject:
        raise DataError(
            f"{what}: {name!r} holds Python objects ({dtype}), which are not loaded (reading "
            "them would unpickle, which runs code); save arrays of numbers"
        )
    available = size - member.tell()
    declared = math.prod(shape) * dtype.itemsize
    if min(shape, default=0) < 0 or declared > available:
        raise DataError(
            f"{what}: {name!r} declares shape {list(shape)} of {dtype} ({declared} bytes) but "
            f"holds {available} bytes: the file is damaged or cut short; write it again"
        )


def show_dims(dims: tuple[int | None, ...]) -> str:
    """Dims as text, "?" where symbolic: [?, 3, 224, 224]."""
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def save(path: Path, arrays: dict[str, np.ndarray], labels: np.ndarray | None = None) -> None:
    """Write a dataset in the format `load` reads."""
    payload = dict(arrays)
    if labels is not None:
        payload[LABELS] = labels
    np.savez(path, **payload)  # type: ignore[arg-type]


def concrete_dims(spec: InputSpec, given: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Concrete dims for `spec`: `given` where it fits, else fixed dims, else usual sizes.

    The usual sizes are `edgeopt.proto.inputs`'s, the rule the agent makes up inputs by.
    """
    fits = given is not None and len(given) == len(spec.dims)
    return made_up_shape(spec.dims, given if fits else None)


def dims_from(dataset: Dataset) -> dict[str, tuple[int, ...]]:
    """One sample's dims per input, batch axis 1 (or the model's fixed batch)."""
    batch = dataset.fixed_batch or 1
    dims = {name: (batch, *array.shape[1:]) for name, array in dataset.arrays.items()}
    return {**dims, **{name: tuple(array.shape) for name, array in dataset.constants.items()}}


MAX_MADE_UP_BYTES = 1 << 28
"""The largest made-up input `synthesize` fills: a dim of 2**40 in a damaged model's signature
would otherwise ask numpy for terabytes (a MemoryError, or the OOM killer)."""


def synthesize(
    model: onnx.ModelProto,
    dims: dict[str, tuple[int, ...]] | None = None,
    samples: int = 1,
    seed: int = 0,
) -> Dataset:
    """Made-up inputs that fit `model`: numbers, bools and text.

    Floats in [0, 1), integers in [0, 100), bools random, text drawn from the model's own
    vocabulary (`vocabulary`). For smoke runs, latency and comparisons on models without data
    of their own. Integer inputs stay small (token ids, indices); a model that needs particular
    values (a sample rate, a vocabulary size) wants real data instead.
    """
    rng = np.random.default_rng(seed)
    specs = input_specs(model)
    words = vocabulary(model)
    for spec in specs:
        shape = concrete_dims(spec, (dims or {}).get(spec.name))
        size = math.prod(shape) * max(1, samples) * np.dtype(spec.dtype).itemsize
        if size > MAX_MADE_UP_BYTES:
            raise DataError(
                f"the model's input {spec.name!r} {show_dims(spec.dims)} would take "
                f"{size / 2**30:.3g} GiB of made-up values for {samples} sample(s); a model "
                "that declares such dims is damaged, or wants real data: pass --validate DATA.npz"
            )
    whole = unbatched(specs)
    arrays: dict[str, np.ndarray] = {}
    constants: dict[str, np.ndarray] = {}
    fixed: int | None = None
    for spec in specs:
        shape = concrete_dims(spec, (dims or {}).get(spec.name))
        if spec.name in whole:
            constants[spec.name] = _random(rng, shape, spec.dtype, words)
            if None in spec.dims:
                fixed = 1
            continue
        if spec.dims[0] is not None:
            fixed = spec.dims[0] if fixed is None else min(fixed, spec.dims[0])
        arrays[spec.name] = _random(rng, (shape[0] * samples, *shape[1:]), spec.dtype, words)
    return Dataset(arrays, None, None, fixed, constants)


def vocabulary(model: onnx.ModelProto) -> list[str]:
    """The strings the model's ai.onnx.ml operators know (`VOCABULARY_ATTRIBUTES`), in order."""
    words: dict[str, None] = {}
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in VOCABULARY_ATTRIBUTES:
                words.update(dict.fromkeys(s.decode("utf-8", "replace") for s in attribute.strings))
    return list(words)


def _random(
    rng: np.random.Generator, shape: tuple[int, ...], dtype: type, words: list[str] | None = None
) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "O":  # text: words the model knows, else digits as text
        pool = np.asarray(words or [str(d) for d in range(10)], dtype=object)
        return pool[rng.integers(0, len(pool), size=shape)]
    if kind == "f":
        return rng.random(shape).astype(dtype)
    if kind == "b":
        return np.asarray(rng.random(shape) < 0.5)
    return rng.integers(0, 100, size=shape).astype(dtype)
