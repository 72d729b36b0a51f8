"""How tensors cross the wire, checked before they touch memory: one rule for both sides.

agent.proto's `Tensor`: numeric values as numpy's `tobytes()` writes them (C order,
little-endian); strings ("str") as, per element, a little-endian uint32 length and that many
UTF-8 bytes. `byte_size` says how many bytes a tensor's values take, so a stream of chunks can be
cut anywhere and a receiver can check a header before it allocates anything.

A tensor file (the `inputs_sha256` of Benchmark, Profile and Activate) is `MAGIC`, a
little-endian uint64 N, N bytes of JSON (a list of {"name", "dtype", "shape", "byte_size"}),
then each tensor's bytes in that order. The host writes it (`write_file`), pushes it like an
artifact, and the runner reads it (`read_file`) after checking every header against the limits.

Kept parsable by Python 3.8 (the agent's oldest); numpy is imported where it is used.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any, Sequence, Tuple

__all__ = [
    "ITEMSIZES",
    "MAGIC",
    "MAX_RANK",
    "MAX_TENSORS",
    "NUMERIC_DTYPES",
    "STRING_DTYPE",
    "TensorError",
    "TensorTooLarge",
    "check_header",
    "check_headers",
    "decode_strings",
    "encode_strings",
    "from_wire",
    "itemsize",
    "read_file",
    "to_wire",
    "write_file",
]

MAGIC = b"EDGEOPT-TENSORS\n"
"""The first bytes of a tensor file."""
STRING_DTYPE = "str"
"""The wire's dtype name for a tensor of strings."""
MAX_RANK = 16
"""Most dimensions a tensor may have (ONNX Runtime's kernels go far lower)."""
MAX_TENSORS = 1024
"""Most tensors one request may carry."""
ITEMSIZES = {
    "float16": 2, "float32": 4, "float64": 8, "int8": 1, "int16": 2, "int32": 4, "int64": 8,
    "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1,
}  # fmt: skip
"""The numpy dtype names the wire accepts besides "str", and their bytes per element (a
table, so that checking a header never imports numpy: it costs the agent ~18 MB)."""
NUMERIC_DTYPES = frozenset(ITEMSIZES)
_LENGTH = struct.Struct("<I")
_HEADER = struct.Struct("<Q")

Header = Tuple[str, str, Tuple[int, ...], int]
"""(name, dtype, shape, byte_size) of a tensor, checked."""


class TensorError(ValueError):
    """A tensor header or its bytes break the contract; the message says which and how."""


class TensorTooLarge(TensorError):
    """Tensors over the receiver's byte limit (RESOURCE_EXHAUSTED on the wire)."""


def itemsize(dtype: str) -> int:
    """Bytes per element of a numeric wire dtype."""
    return ITEMSIZES[dtype]


def check_header(
    name: str, dtype: str, shape: Sequence[int], byte_size: int, max_bytes: int
) -> Header:
    """Check one tensor's header against the contract and `max_bytes`; returns it normalized.

    Raises:
        TensorError: an unknown dtype, a negative dimension, a rank over `MAX_RANK`, a size that
            does not match the shape, or more than `max_bytes`.
    """
    if not name or len(name) > 1024:
        raise TensorError(f"a tensor name must have 1 to 1024 characters, got {name[:40]!r}")
    if dtype != STRING_DTYPE and dtype not in NUMERIC_DTYPES:
        raise TensorError(
            f"tensor {name!r}: dtype {dtype[:40]!r} is not one of "
            f"{', '.join(sorted(NUMERIC_DTYPES))}, {STRING_DTYPE}"
        )
    dims = tuple(int(d) for d in shape)
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise TensorError(
            f"tensor {name!r}: shape {list(dims)[: MAX_RANK + 1]} has a negative dimension or "
            f"more than {MAX_RANK}"
        )
    count = 1
    for d in dims:
        count *= d
    if byte_size < 0:
        raise TensorError(f"tensor {name!r}: a negative size")
    if byte_size > max_bytes:
        raise TensorTooLarge(
            f"tensor {name!r}: {byte_size} bytes is over this agent's limit of {max_bytes} "
            "(max_infer_bytes): split the batch across calls"
        )
    if dtype == STRING_DTYPE:
        if byte_size < count * _LENGTH.size:
            raise TensorError(f"tensor {name!r}: {byte_size} bytes cannot hold {count} strings")
    else:
        want = count * itemsize(dtype)
        if want > max_bytes:
            raise TensorTooLarge(
                f"tensor {name!r}: shape {list(dims)} of {dtype} is {want} bytes, over this "
                f"agent's limit of {max_bytes} (max_infer_bytes): split the batch across calls"
            )
        if byte_size != want:
            raise TensorError(
                f"tensor {name!r}: {byte_size} bytes do not fill shape {list(dims)} of {dtype} "
                f"({want} bytes)"
            )
    return name, dtype, dims, int(byte_size)


def check_headers(headers: Sequence[Header], max_bytes: int) -> list[Header]:
    """Check a request's tensor headers: each, distinct names, and their sum under the limit.

    Raises:
        TensorError: as `check_header`, or too many tensors, a repeated name, or a sum over
            `max_bytes`.
    """
    if len(headers) > MAX_TENSORS:
        raise TensorError(f"{len(headers)} tensors in one request; at most {MAX_TENSORS}")
    checked = [check_header(n, d, s, b, max_bytes) for n, d, s, b in headers]
    names = [h[0] for h in checked]
    if len(set(names)) != len(names):
        raise TensorError(f"tensor names repeat: {names}")
    total = sum(h[3] for h in checked)
    if total > max_bytes:
        raise TensorTooLarge(
            f"the tensors take {total} bytes, over this agent's limit of {max_bytes} "
            "(max_infer_bytes): split the batch across calls"
        )
    return checked


def encode_strings(values: Any) -> bytes:
    """The wire bytes of an array of strings (C order)."""
    import numpy as np  # noqa: PLC0415

    out = bytearray()
    for value in np.asarray(values, dtype=object).reshape(-1):
        data = (value.decode("utf-8") if isinstance(value, bytes) else str(value)).encode()
        out += _LENGTH.pack(len(data))
        out += data
    return bytes(out)


def decode_strings(data: Any, shape: Sequence[int]) -> Any:
    """An object array of `str` from wire bytes.

    Raises:
        TensorError: the bytes do not hold exactly prod(shape) strings of valid UTF-8.
    """
    import numpy as np  # noqa: PLC0415

    view = memoryview(data).cast("B")
    count = 1
    for d in shape:
        count *= int(d)
    items: list[str] = []
    at = 0
    for _ in range(count):
        if at + _LENGTH.size > len(view):
            raise TensorError(f"string data ends after {len(items)} of {count} strings")
        (size,) = _LENGTH.unpack_from(view, at)
        at += _LENGTH.size
        if at + size > len(view):
            raise TensorError(f"string {len(items)} runs past the end of the data")
        try:
            items.append(bytes(view[at : at + size]).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TensorError(f"string {len(items)} is not UTF-8: {exc.reason}") from None
        at += size
    if at != len(view):
        raise TensorError(f"{len(view) - at} bytes follow the {count} strings")
    array: Any = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(tuple(int(d) for d in shape))


def to_wire(array: Any) -> tuple[str, tuple[int, ...], Any]:
    """(dtype name, shape, buffer) of a numpy array, without copying a C-ordered numeric one.

    Raises:
        TensorError: the array holds objects that are not strings.
    """
    import numpy as np  # noqa: PLC0415

    array = np.asarray(array)
    shape = tuple(int(d) for d in array.shape)
    if array.dtype.kind in "OUS":
        flat = array.reshape(-1)
        if array.dtype.kind == "O" and not all(isinstance(v, (str, bytes)) for v in flat):
            kinds = sorted({type(v).__name__ for v in flat})
            raise TensorError(f"an array of {', '.join(kinds)} objects is not a tensor")
        return STRING_DTYPE, shape, encode_strings(array)
    name = array.dtype.name
    if name not in NUMERIC_DTYPES:
        raise TensorError(f"dtype {name} cannot cross the wire")
    contiguous = np.ascontiguousarray(array).reshape(-1)  # a view when already C-ordered
    return name, shape, contiguous.view(np.uint8).data


def from_wire(dtype: str, shape: Sequence[int], data: Any) -> Any:
    """The numpy array of wire bytes (a view of `data` for numeric dtypes, no copy)."""
    import numpy as np  # noqa: PLC0415

    if dtype == STRING_DTYPE:
        return decode_strings(data, shape)
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(tuple(int(d) for d in shape))


def write_file(stream: IO[bytes], arrays: dict[str, Any]) -> int:
    """Write `arrays` as a tensor file; returns the bytes written."""
    parts = [(name, *to_wire(value)) for name, value in arrays.items()]
    header = json.dumps(
        [
            {"name": n, "dtype": d, "shape": list(s), "byte_size": len(memoryview(b).cast("B"))}
            for n, d, s, b in parts
        ]
    ).encode()
    stream.write(MAGIC + _HEADER.pack(len(header)) + header)
    total = len(MAGIC) + _HEADER.size + len(header)
    for _, _, _, data in parts:
        stream.write(data)
        total += len(memoryview(data).cast("B"))
    return total


def read_file(stream: IO[bytes], max_bytes: int) -> list[tuple[str, str, tuple[int, ...], Any]]:
    """Read a tensor file, every header checked before its bytes are read.

    Raises:
        TensorError: not a tensor file, a header that breaks the contract or `max_bytes`, or
            fewer bytes than the headers promise.
    """
    if stream.read(len(MAGIC)) != MAGIC:
        raise TensorError("not an edgeopt tensor file (it must start with EDGEOPT-TENSORS)")
    raw = stream.read(_HEADER.size)
    if len(raw) != _HEADER.size:
        raise TensorError("the tensor file ends inside its header")
    (size,) = _HEADER.unpack(raw)
    if size > 1 << 20:
        raise TensorError(f"the tensor file's header claims {size} bytes; at most 1 MiB")
    try:
        listing = json.loads(stream.read(size).decode("utf-8"))
        headers = [
            (str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]),
             int(t["byte_size"]))
            for t in listing
        ]  # fmt: skip
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TensorError(f"the tensor file's header is not valid: {exc}") from None
    out = []
    for name, dtype, shape, nbytes in check_headers(headers, max_bytes):
        data = bytearray(nbytes)
        if stream.readinto(data) != nbytes:  # type: ignore[attr-defined]
            raise TensorError(f"the tensor file ends inside tensor {name!r}")
        out.append((name, dtype, shape, data))
    return out
