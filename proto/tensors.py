"""How tensors cross the wire, checked before they touch memory: one rule for both sides.

agent.proto's `Tensor`: numeric values as numpy's `tobytes()` writes them (C order,
little-endian); strings ("str") as, per element, a little-endian uint32 length and that many
UTF-8 bytes. `byte_size` says how many bytes a tensor's values take, so a stream of chunks can be
cut anywhere and a receiver can check a header before it allocates anything.

Values that are not tensors (what ONNX Runtime returns for ZipMap, SequenceConstruct and the
ai.onnx.ml map types, and takes for DictVectorizer) cross as dtype "seq" (a Python list) or
"map" (a dict), shape [number of elements], their bytes one encoded value (`encode_value`):

    value  := "T" tensor | "S" uint32 count, count values | "M" tensor keys, tensor values
    tensor := uint8 n, n bytes of dtype name, uint8 rank, rank uint64 dims, uint64 size, data

little-endian, data as above; a map's keys are a 1-D int64 or str tensor without repeats, its
values a 1-D tensor as long; a sequence's elements all have one type (`value_type`), as ONNX's
sequences do. Data, not pickle: a board's bytes are parsed with every count and size checked
against what is left, nesting at most `MAX_DEPTH` deep.

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
    "MAP_DTYPE",
    "MAX_DEPTH",
    "SEQUENCE_DTYPE",
    "VALUE_DTYPES",
    "check_header",
    "check_headers",
    "decode_strings",
    "decode_value",
    "encode_strings",
    "encode_value",
    "from_wire",
    "itemsize",
    "join_values",
    "onnx_value_type",
    "read_file",
    "to_wire",
    "value_type",
    "write_file",
]

MAGIC = b"EDGEOPT-TENSORS\n"
"""The first bytes of a tensor file."""
STRING_DTYPE = "str"
"""The wire's dtype name for a tensor of strings."""
SEQUENCE_DTYPE = "seq"
"""The wire's dtype name for a sequence (a list of tensors, maps or sequences)."""
MAP_DTYPE = "map"
"""The wire's dtype name for a map (int64 or string keys to scalars)."""
VALUE_DTYPES = frozenset({SEQUENCE_DTYPE, MAP_DTYPE})
MAX_DEPTH = 8
"""Deepest nesting of sequences and maps a value may have."""
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
    if dtype != STRING_DTYPE and dtype not in NUMERIC_DTYPES and dtype not in VALUE_DTYPES:
        raise TensorError(
            f"tensor {name!r}: dtype {dtype[:40]!r} is not one of "
            f"{', '.join(sorted(NUMERIC_DTYPES))}, {STRING_DTYPE}, {SEQUENCE_DTYPE}, {MAP_DTYPE}"
        )
    dims = tuple(int(d) for d in shape)
    if dtype in VALUE_DTYPES:
        return _check_value_header(name, dtype, dims, byte_size, max_bytes)
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


def _check_value_header(
    name: str, dtype: str, dims: tuple[int, ...], byte_size: int, max_bytes: int
) -> Header:
    """A sequence's or map's header: one dimension (its elements), a size within the limit."""
    if len(dims) != 1 or dims[0] < 0:
        raise TensorError(f"{dtype} {name!r}: shape must be [elements], got {list(dims)[:8]}")
    if byte_size > max_bytes:
        raise TensorTooLarge(
            f"{dtype} {name!r}: {byte_size} bytes is over this agent's limit of {max_bytes} "
            "(max_infer_bytes): split the batch across calls"
        )
    if byte_size < 1 + _LENGTH.size:
        raise TensorError(f"{dtype} {name!r}: {byte_size} bytes cannot hold a {dtype}")
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

    A list is a sequence and a dict a map (`encode_value`), as ONNX Runtime gives them.

    Raises:
        TensorError: the array holds objects that are not strings, or a sequence or map that
            the encoding cannot carry.
    """
    import numpy as np  # noqa: PLC0415

    if isinstance(array, (list, dict)):
        return (SEQUENCE_DTYPE if isinstance(array, list) else MAP_DTYPE), (len(array),), \
            encode_value(array)  # fmt: skip
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
    """The numpy array of wire bytes (a view of `data` for numeric dtypes, no copy).

    A list for "seq", a dict for "map".

    Raises:
        TensorError: strings, a sequence or a map whose bytes break the encoding.
    """
    import numpy as np  # noqa: PLC0415

    if dtype in VALUE_DTYPES:
        value = decode_value(data)
        if isinstance(value, list) != (dtype == SEQUENCE_DTYPE) or not isinstance(
            value, (list, dict)
        ):
            raise TensorError(f"the bytes of a {dtype} hold {value_type(value)}")
        if [len(value)] != [int(d) for d in shape]:
            raise TensorError(f"a {dtype} of shape {list(shape)} holds {len(value)} elements")
        return value
    if dtype == STRING_DTYPE:
        return decode_strings(data, shape)
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(tuple(int(d) for d in shape))


_TENSOR, _SEQUENCE, _MAP = b"T", b"S", b"M"
_KEY_DTYPES = ("int64", STRING_DTYPE)


def value_type(value: Any) -> str:
    """The type of a value in ONNX's words with the wire's dtype names.

    "tensor(float32)", "map(int64,float32)", "seq(map(str,float32))"; "?" for what an empty
    container holds.
    """
    import numpy as np  # noqa: PLC0415

    if isinstance(value, list):
        return f"seq({value_type(value[0]) if value else '?'})"
    if isinstance(value, dict):
        if not value:
            return "map(?,?)"
        keys, values = _map_arrays(value)
        return f"map({_dtype_of(keys)},{_dtype_of(values)})"
    return f"tensor({_dtype_of(np.asarray(value))})"


_ONNX_NAMES = {
    "float": "float32", "double": "float64", "float16": "float16", "string": STRING_DTYPE,
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "uint8": "uint8",
    "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "bool": "bool",
}  # fmt: skip


def onnx_value_type(onnx_type: str) -> str:
    """ONNX Runtime's type string in `value_type`'s words.

    "seq(map(int64,tensor(float)))" is "seq(map(int64,float32))"; an element type the wire has
    no name for stays as it is.
    """
    out, word = [], ""
    for char in onnx_type + "\0":
        if char.isalnum() or char == "_":
            word += char
            continue
        if word:
            out.append(_ONNX_NAMES.get(word, word))
            word = ""
        if char != "\0":
            out.append(char)
    text = "".join(out).replace(" ", "")
    # A map's values are scalars on the wire: "map(int64,tensor(float32))" is "map(int64,float32)".
    while True:
        at = text.find(",tensor(")
        if at < 0:
            return text
        end = text.index(")", at)
        text = text[:at] + "," + text[at + len(",tensor(") : end] + text[end + 1 :]


def _dtype_of(array: Any) -> str:
    kind = array.dtype.kind
    if kind in "OUS":
        return STRING_DTYPE
    return str(array.dtype.name)


def _map_arrays(value: dict[Any, Any]) -> tuple[Any, Any]:
    """A map's keys and values as 1-D arrays, its key type checked."""
    import numpy as np  # noqa: PLC0415

    kinds = set()
    for key in value:
        if isinstance(key, (str, bytes)):
            kinds.add(STRING_DTYPE)
        elif isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            kinds.add("int64")
        else:
            raise TensorError(
                f"a map key of type {type(key).__name__}: keys are all int64 or all strings"
            )
    if len(kinds) > 1:
        raise TensorError("a map's keys mix int64 and strings; ONNX maps have one key type")
    if kinds == {"int64"}:
        keys = np.array(list(value), dtype=np.int64)
    else:
        keys = np.array([k.decode() if isinstance(k, bytes) else k for k in value], dtype=object)
    values = np.asarray(list(value.values()))
    if values.ndim != 1:
        raise TensorError("a map's values must be scalars (numbers or strings)")
    return keys, values


def _one_type(items: list[Any]) -> None:
    """Refuse a sequence whose elements differ in type (an empty container fits any)."""
    kinds = {value_type(v) for v in items}
    known = {k for k in kinds if "?" not in k}
    if len(known) > 1:
        raise TensorError(
            f"a sequence's elements differ in type ({', '.join(sorted(kinds))}); ONNX "
            "sequences hold one type"
        )


def encode_value(value: Any) -> bytes:
    """The wire bytes of a tensor, a sequence (list) or a map (dict); see the module's grammar.

    Raises:
        TensorError: a sequence whose elements differ in type, a map whose keys mix types or
            whose values are not scalars, nesting deeper than `MAX_DEPTH`, or an object array.
    """
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise TensorError(f"sequences and maps nest more than {MAX_DEPTH} deep")
    if isinstance(value, list):
        _one_type(value)
        out += _SEQUENCE + _LENGTH.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        import numpy as np  # noqa: PLC0415

        keys, values = _map_arrays(value) if value else (
            np.zeros(0, np.int64), np.zeros(0, np.float32))  # fmt: skip
        out += _MAP
        _encode_tensor(keys, out)
        _encode_tensor(values, out)
    else:
        out += _TENSOR
        _encode_tensor(value, out)


def _encode_tensor(array: Any, out: bytearray) -> None:
    dtype, shape, data = to_wire(array)
    if dtype in VALUE_DTYPES:
        raise TensorError("a tensor inside a value cannot itself be a sequence or map")
    name = dtype.encode()
    out += bytes([len(name)]) + name + bytes([len(shape)])
    for d in shape:
        out += _HEADER.pack(d)
    view = memoryview(data).cast("B")
    out += _HEADER.pack(len(view))
    out += view


class _Reader:
    """A cursor over untrusted bytes: every read is checked against what is left."""

    def __init__(self, data: Any) -> None:
        self.view = memoryview(data).cast("B")
        self.at = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.at + n > len(self.view):
            raise TensorError(f"the value's bytes end inside {what}")
        piece = self.view[self.at : self.at + n]
        self.at += n
        return piece

    def number(self, codec: struct.Struct, what: str) -> int:
        (n,) = codec.unpack(self.take(codec.size, what))
        return int(n)


def decode_value(data: Any) -> Any:
    """A tensor (numpy array), sequence (list) or map (dict) from `encode_value`'s bytes.

    Raises:
        TensorError: bytes that break the grammar: a count or size past the end, an unknown
            tag or dtype, nesting deeper than `MAX_DEPTH`, a sequence of mixed types, a map with
            repeated keys or keys and values of different lengths, or bytes left over.
    """
    reader = _Reader(data)
    value = _decode(reader, 0)
    if reader.at != len(reader.view):
        raise TensorError(f"{len(reader.view) - reader.at} bytes follow the value")
    return value


def _decode(reader: _Reader, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise TensorError(f"sequences and maps nest more than {MAX_DEPTH} deep")
    tag = bytes(reader.take(1, "a value's tag"))
    if tag == _TENSOR:
        return _decode_tensor(reader)
    if tag == _SEQUENCE:
        count = reader.number(_LENGTH, "a sequence's length")
        if count > len(reader.view) - reader.at:  # every element takes a byte at least
            raise TensorError(f"a sequence claims {count} elements in fewer bytes")
        items = [_decode(reader, depth + 1) for _ in range(count)]
        _one_type(items)
        return items
    if tag == _MAP:
        keys, values = _decode_tensor(reader), _decode_tensor(reader)
        if keys.ndim != 1 or values.ndim != 1 or len(keys) != len(values):
            raise TensorError(
                f"a map's keys {list(keys.shape)} and values {list(values.shape)} must be 1-D "
                "and as long"
            )
        if _dtype_of(keys) not in _KEY_DTYPES:
            raise TensorError(f"a map's keys are {_dtype_of(keys)}; they must be int64 or str")
        # Keys as Python ints or str (as ONNX Runtime gives them), values as numpy scalars,
        # so a map of float32 stays float32.
        result = dict(zip(keys.tolist(), values if values.dtype.kind != "O" else values.tolist()))
        if len(result) != len(keys):
            raise TensorError("a map's keys repeat")
        return result
    raise TensorError(f"unknown value tag {tag!r} (T, S or M)")


def _decode_tensor(reader: _Reader) -> Any:
    size = reader.take(1, "a tensor's dtype")[0]
    try:
        dtype = bytes(reader.take(size, "a tensor's dtype")).decode("ascii")
    except UnicodeDecodeError:
        raise TensorError("a tensor's dtype name is not ASCII") from None
    rank = reader.take(1, "a tensor's rank")[0]
    if rank > MAX_RANK:
        raise TensorError(f"a tensor of rank {rank}; at most {MAX_RANK}")
    dims = [reader.number(_HEADER, "a tensor's shape") for _ in range(rank)]
    nbytes = reader.number(_HEADER, "a tensor's size")
    if dtype in VALUE_DTYPES:
        raise TensorError("a tensor inside a value cannot itself be a sequence or map")
    try:
        check_header("element", dtype, dims, nbytes, len(reader.view))
    except TensorTooLarge:
        raise TensorError(
            f"a {dtype} tensor of shape {dims[:8]} inside the value claims more bytes than the "
            f"value's {len(reader.view)}"
        ) from None
    return from_wire(dtype, dims, bytes(reader.take(nbytes, "a tensor's data")))


def join_values(values: list[Any]) -> Any:
    """One output of several runs (Infer batch by batch) as one value.

    Arrays are joined along their first axis (stacked when they have none), sequences
    concatenated, maps gathered into a sequence of maps.
    """
    import numpy as np  # noqa: PLC0415

    first = values[0]
    if len(values) == 1:
        return first
    if isinstance(first, list):
        return [item for value in values for item in value]
    if isinstance(first, dict):
        return list(values)
    if np.ndim(first) == 0:
        return np.stack(values)
    return np.concatenate(values)


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
