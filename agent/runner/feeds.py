"""The child's tensors: requests' inputs to arrays, outputs to wire tuples, made-up inputs.

Every input is checked against the session's signature (names, dtypes, shapes, sizes) before ONNX
Runtime sees it; made-up inputs (smoke tests, benchmarks without inputs) stay under the agent's
byte limit; outputs leave as wire tuples with their bytes out of band.
"""

from __future__ import annotations

from typing import Any

from edgeopt.agent.runner.framing import OUTPUT_LIMIT, TensorTuple, out_of_band
from edgeopt.agent.runner.session import RequestError
from edgeopt.proto import tensors as wire
from edgeopt.proto.inputs import made_up_shape

__all__ = ["request_feeds", "signature", "smoke_inputs", "tensor_file", "to_arrays", "to_tuples"]


def signature(args: list[Any]) -> list[dict[str, Any]]:
    """A session's inputs or outputs as the wire's TensorInfo fields (-1 for a free dimension)."""
    out = []
    for arg in args:
        shape = [d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or [])]
        names = [d if isinstance(d, str) else "" for d in (arg.shape or [])]
        out.append({"name": arg.name, "dtype": _wire_dtype(arg.type), "shape": shape,
                    "dim_names": names})  # fmt: skip
    return out


def _wire_dtype(ort_type: str) -> str:
    """The wire's dtype name of an ONNX Runtime type ("str" for strings)."""
    import numpy as np  # noqa: PLC0415

    if ort_type == "tensor(string)":
        return str(wire.STRING_DTYPE)
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
        if dtype.kind == "O":
            feeds[arg.name] = np.full(shape, "", dtype=object)
        elif dtype.kind == "f":
            feeds[arg.name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
        else:
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
    return feeds


def request_feeds(request: dict[str, Any], session: Any) -> dict[str, Any]:
    """The request's inputs (given, or in a stored tensor file), else made up from the signature."""
    limit = int(request.get("max_bytes") or OUTPUT_LIMIT)
    inputs = request.get("inputs") or tensor_file(request.get("inputs_path"), limit)
    if inputs:
        return to_arrays(inputs, session)
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
    """Check tensors against the session's inputs and turn them into arrays."""
    import numpy as np  # noqa: PLC0415

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
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r} is {dtype}, the model wants {want}"
            )
        dims = list(arg.shape or [])
        if len(shape) != len(dims) or any(
            isinstance(d, int) and d > 0 and d != s for d, s in zip(dims, shape)
        ):
            shown = [d if isinstance(d, int) and d > 0 else "?" for d in dims]
            raise RequestError(
                "INVALID_ARGUMENT",
                f"input {name!r} has shape {list(shape)}, the model wants {shown}",
            )
        size = len(memoryview(data).cast("B"))
        if want != wire.STRING_DTYPE and size != int(np.prod(shape, dtype=object)) * wire.itemsize(
            want
        ):
            raise RequestError(
                "INVALID_ARGUMENT", f"input {name!r}: {size} bytes do not fill {list(shape)}"
            )
        try:
            feeds[name] = wire.from_wire(want, shape, data)
        except wire.TensorError as exc:
            raise RequestError("INVALID_ARGUMENT", f"input {name!r}: {exc}") from None
    return feeds


def to_tuples(names: list[str], arrays: list[Any], limit: int = OUTPUT_LIMIT) -> list[TensorTuple]:
    """Outputs as wire tensors, their bytes out of band (no copy of a C-ordered array).

    Raises:
        RequestError: FAILED_PRECONDITION for an output that is not a tensor (a sequence of
            maps, as ZipMap gives) or outputs over `limit` bytes.
    """
    out = []
    total = 0
    for name, value in zip(names, arrays):
        if isinstance(value, (list, dict)):
            kind = "a sequence of maps (ZipMap)" if value and isinstance(value[0], dict) else (
                "a sequence" if isinstance(value, list) else "a map")  # fmt: skip
            raise RequestError(
                "FAILED_PRECONDITION",
                f"output {name!r} is {kind}, not a tensor: the wire carries tensors only; "
                "convert the model without ZipMap (skl2onnx: options={'zipmap': False})",
            )
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
