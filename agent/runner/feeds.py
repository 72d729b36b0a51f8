"""The child's tensors: requests' inputs to arrays, outputs to wire tuples, made-up inputs.

Every input is checked against the session's signature (names, dtypes, shapes, sizes; the type
of a sequence or map) before ONNX Runtime sees it; made-up inputs (smoke tests, benchmarks
without inputs) stay under the agent's byte limit; outputs leave as wire tuples with their bytes
out of band. An input that holds several of the model's fixed batches along its first axis is
run batch by batch (`split_samples`) and the outputs joined (`join_outputs`).
"""

from __future__ import annotations

from typing import Any

from edgeopt.agent.runner.framing import OUTPUT_LIMIT, TensorTuple, out_of_band
from edgeopt.agent.runner.session import RequestError
from edgeopt.proto import tensors as wire
from edgeopt.proto.inputs import made_up_shape

__all__ = [
    "join_outputs",
    "request_feeds",
    "signature",
    "smoke_inputs",
    "split_samples",
    "tensor_file",
    "to_arrays",
    "to_tuples",
]

MAX_RUNS = 4096
"""Most runs one Infer may be split into (samples along the first axis of a fixed batch)."""


def signature(args: list[Any]) -> list[dict[str, Any]]:
    """A session's inputs or outputs as the wire's TensorInfo fields (-1 for a free dimension)."""
    out = []
    for arg in args:
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or [])]
        names = [d if isinstance(d, str) else "" for d in (arg.shape or [])]
        dtype = _wire_dtype(arg.type)
        out.append({"name": arg.name, "dtype": dtype, "shape": shape, "dim_names": names,
                    "value_type": wire.onnx_value_type(arg.type)
                    if dtype in wire.VALUE_DTYPES else ""})  # fmt: skip
    return out


def _wire_dtype(ort_type: str) -> str:
    """The wire's dtype name of an ONNX Runtime type ("str" for strings, "seq", "map")."""
    import numpy as np  # noqa: PLC0415

    if ort_type == "tensor(string)":
        return str(wire.STRING_DTYPE)
    if ort_type.startswith("seq("):
        return str(wire.SEQUENCE_DTYPE)
    if ort_type.startswith("map("):
        return str(wire.MAP_DTYPE)
    return str(np.dtype(_numpy_dtype(ort_type)).name)


def _numpy_dtype(ort_type: str) -> Any:
    import numpy as np  # noqa: PLC0415

    if ort_type == "tensor(string)":
        return object
    table = {
        "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
        "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
        "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
        "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
    }  # fmt: skip
    return table.get(ort_type, np.float32)


def smoke_inputs(
    session: Any, shapes: dict[str, list[int]] | None = None, max_bytes: int = OUTPUT_LIMIT
) -> dict[str, Any]:
    """Made-up inputs for a session (`shapes` fixes free dimensions), within `max_bytes`."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(0)
    feeds: dict[str, Any] = {}
    total = 0
    for arg in session.get_inputs():
        if _wire_dtype(arg.type) in wire.VALUE_DTYPES:
            feeds[arg.name] = _made_up_value(wire.onnx_value_type(arg.type))
            continue
        dims = list(arg.shape or [])
        given = (shapes or {}).get(arg.name)
        if given is not None and len(given) != len(dims):
            raise RequestError(
                "INVALID_ARGUMENT",
                f"input shape for {arg.name!r} has rank {len(given)}, the model's input "
                f"has rank {len(dims)}",
            )
        shape = made_up_shape(dims, given)
        dtype = np.dtype(_numpy_dtype(arg.type))
        if any(d < 0 for d in shape):
            raise RequestError("INVALID_ARGUMENT", f"input shape for {arg.name!r} is negative")
        total += int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 1)
        if total > max_bytes:
            raise RequestError(
                "INVALID_ARGUMENT",
                f"made-up inputs of shape {list(shape)} for {arg.name!r} would take more than "
                f"this agent's limit of {max_bytes} bytes (max_infer_bytes)",
            )
        if dtype.kind == "O":  # the digits, as text: a number-like string parses, a label fits
            feeds[arg.name] = np.full(shape, "0", dtype=object)
        elif dtype.kind == "f":
            feeds[arg.name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
        else:
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
    return feeds


def _made_up_value(value_type: str) -> Any:
    """One small value of a sequence or map type: one element, keys "0" or 0, values zero."""
    import numpy as np  # noqa: PLC0415

    if value_type.startswith("seq("):
        return [_made_up_value(value_type[len("seq(") : -1])]
    if value_type.startswith("map("):
        key_type, item_type = value_type[len("map(") : -1].split(",", 1)
        key: Any = "0" if key_type == wire.STRING_DTYPE else 0
        item = _made_up_value(f"tensor({item_type})")
        return {key: item.reshape(-1)[0]}
    element = value_type[len("tensor(") : -1] if value_type.startswith("tensor(") else "float32"
    if element == wire.STRING_DTYPE:
        return np.full(1, "0", dtype=object)
    return np.zeros(1, dtype=element if element in wire.NUMERIC_DTYPES else "float32")


def request_feeds(request: dict[str, Any], session: Any) -> dict[str, Any]:
    """The request's inputs (given, or in a stored tensor file), else made up from the signature."""
    limit = int(request.get("max_bytes") or OUTPUT_LIMIT)
    inputs = request.get("inputs") or tensor_file(request.get("inputs_path"), limit)
    if inputs:  # several fixed batches: the first is measured
        return split_samples(to_arrays(inputs, session), session)[0]
    return smoke_inputs(session, request.get("shapes"), limit)


def tensor_file(path: str | None, limit: int) -> list[TensorTuple] | None:
    """The tensors of a stored tensor file (proto/tensors.py), checked against `limit`."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            tensors: list[TensorTuple] = wire.read_file(f, limit)
            return tensors
    except wire.TensorError as exc:
        raise RequestError("INVALID_ARGUMENT", f"inputs_sha256: {exc}") from None


def to_arrays(tensors: list[TensorTuple], session: Any) -> dict[str, Any]:
    """Check tensors against the session's inputs and turn them into arrays (lists, dicts).

    An input's first axis may hold several of the model's fixed batches (`split_samples`).
    """
    wanted = {arg.name: arg for arg in session.get_inputs()}
    given = {t[0]: t for t in tensors}
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    if missing or extra:
        raise RequestError(
            "INVALID_ARGUMENT",
            f"inputs do not match the model's {sorted(wanted)}: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}",
        )
    feeds = {}
    for name, arg in wanted.items():
        _, dtype, shape, data = given[name]
        want = _wire_dtype(arg.type)
        if dtype != want:
            hint = " (a string input takes text: an array of str)" if want == "str" else ""
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r} is {dtype}, the model wants {want}{hint}"
            )
        if want in wire.VALUE_DTYPES:
            feeds[name] = _value(name, arg.type, shape, data)
            continue
        dims = list(arg.shape or [])
        if len(shape) != len(dims) or not (
            _fits(dims, shape) or (_fits(dims[1:], shape[1:]) and _batches(dims, shape) > 1)
        ):
            shown = [d if isinstance(d, int) and d > 0 else "?" for d in dims]
            raise RequestError(
                "INVALID_ARGUMENT",
                f"input {name!r} has shape {list(shape)}, the model wants {shown}",
            )
        size = len(memoryview(data).cast("B"))
        if want != wire.STRING_DTYPE and size != _count(shape) * wire.itemsize(want):
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r}: {size} bytes do not fill {list(shape)}"
            )
        try:
            feeds[name] = wire.from_wire(want, shape, data)
        except wire.TensorError as exc:
            raise RequestError("INVALID_ARGUMENT", f"input {name!r}: {exc}") from None
    return feeds


def _count(shape: Any) -> int:
    count = 1
    for d in shape:
        count *= int(d)
    return count


def _fits(dims: list[Any], shape: Any) -> bool:
    """Whether `shape` matches the model's `dims` (a symbolic dimension takes any size)."""
    return all(not (isinstance(d, int) and d > 0) or d == s for d, s in zip(dims, shape))


def _batches(dims: list[Any], shape: Any) -> int:
    """How many of the model's fixed batches the first axis holds (0: not a whole number)."""
    if not dims or not shape or not isinstance(dims[0], int) or dims[0] <= 0:
        return 0
    runs, left = divmod(int(shape[0]), dims[0])
    return runs if not left else 0


def _value(name: str, onnx_type: str, shape: Any, data: Any) -> Any:
    """A sequence or map input, decoded and checked against the model's type."""
    try:
        value = wire.from_wire(_wire_dtype(onnx_type), shape, data)
    except wire.TensorError as exc:
        raise RequestError("INVALID_ARGUMENT", f"input {name!r}: {exc}") from None
    want, got = wire.onnx_value_type(onnx_type), wire.value_type(value)
    if isinstance(value, dict) and value:
        import numpy as np  # noqa: PLC0415

        key_type, value_type = want[len("map(") : -1].split(",", 1)
        if got.split(",")[0] != f"map({key_type}":
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r} is {got}, the model wants {want}"
            )
        try:  # numbers arrive as float64 or int64; the model's map may hold float32
            cast = np.asarray(list(value.values())).astype(value_type).tolist()
        except (TypeError, ValueError):
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r} is {got}, the model wants {want}"
            ) from None
        return dict(zip(value, cast))
    if "?" not in got and got != want:
        raise RequestError("INVALID_ARGUMENT", f"input {name!r} is {got}, the model wants {want}")
    return value


def _declared(value: Any, value_type: str) -> Any:
    """A map (or the maps in a sequence) with its values as numpy scalars of `value_type`'s."""
    import numpy as np  # noqa: PLC0415

    if isinstance(value, list) and value_type.startswith("seq("):
        return [_declared(v, value_type[len("seq(") : -1]) for v in value]
    if isinstance(value, dict) and value_type.startswith("map(") and value:
        dtype = value_type[len("map(") : -1].split(",", 1)[1]
        if dtype in wire.NUMERIC_DTYPES:
            return dict(zip(value, np.asarray(list(value.values()), dtype=dtype)))
    return value


def split_samples(feeds: dict[str, Any], session: Any) -> list[dict[str, Any]]:
    """The feeds of each run: one, or one per fixed batch when the inputs hold several.

    Inputs that match the model's shape as they are (a state, a scalar) go whole to every run.

    Raises:
        RequestError: INVALID_ARGUMENT when the inputs hold different numbers of batches, or
            more than `MAX_RUNS`.
    """
    counts = {}
    for arg in session.get_inputs():
        value = feeds.get(arg.name)
        dims = list(arg.shape or [])
        if isinstance(value, (list, dict)) or value is None or _fits(dims, value.shape):
            continue
        counts[arg.name] = _batches(dims, value.shape)
    if not counts:
        return [feeds]
    if len(set(counts.values())) > 1:
        raise RequestError(
            "INVALID_ARGUMENT",
            "the inputs hold different numbers of the model's fixed batches: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        )
    runs = next(iter(counts.values()))
    if runs > MAX_RUNS:
        raise RequestError(
            "INVALID_ARGUMENT", f"the inputs hold {runs} batches; one call runs at most {MAX_RUNS}"
        )
    runs_feeds = []
    for index in range(runs):
        run = dict(feeds)
        for name in counts:
            step = feeds[name].shape[0] // runs
            run[name] = feeds[name][index * step : (index + 1) * step]
        runs_feeds.append(run)
    return runs_feeds


def join_outputs(runs: list[list[Any]]) -> list[Any]:
    """The outputs of several runs as one (each output's values joined by `wire.join_values`)."""
    if len(runs) == 1:
        return runs[0]
    return [wire.join_values(list(values)) for values in zip(*runs)]


def to_tuples(
    names: list[str],
    arrays: list[Any],
    limit: int = OUTPUT_LIMIT,
    types: list[str] | None = None,
) -> list[TensorTuple]:
    """Outputs as wire tensors, their bytes out of band (no copy of a C-ordered array).

    A sequence or map (ZipMap's output) is encoded as agent.proto's `Tensor` says, a map's
    values in the type ONNX Runtime declares for the output (`types`: float32 for ZipMap, where
    its Python floats would otherwise say float64).

    Raises:
        RequestError: FAILED_PRECONDITION for an output the wire cannot carry (a sequence of
            mixed types, an array of objects that are not strings), RESOURCE_EXHAUSTED for
            outputs over `limit` bytes.
    """
    out = []
    total = 0
    for index, (name, output) in enumerate(zip(names, arrays)):
        value = output
        if types is not None and isinstance(output, (list, dict)):
            value = _declared(output, wire.onnx_value_type(types[index]))
        try:
            dtype, shape, data = wire.to_wire(value)
        except wire.TensorError as exc:
            raise RequestError("FAILED_PRECONDITION", f"output {name!r}: {exc}") from None
        total += len(memoryview(data).cast("B"))
        if total > limit:
            raise RequestError(
                "RESOURCE_EXHAUSTED",
                f"the outputs take more than this agent's limit of {limit} bytes "
                "(max_infer_bytes): split the batch across calls",
            )
        out.append((name, dtype, shape, out_of_band(data)))
    return out
