"""What a stored model may ask of the board, checked before ONNX Runtime opens it.

A model is one file in the store. ONNX lets a tensor keep its values in another file named by
its `external_data` "location", which ONNX Runtime resolves against the model's folder; older
releases (which boards run) follow `../` and absolute paths, so a model could make the runner
read any file the agent can. The store never holds such side files (the host inlines external
data before it pushes), so any tensor whose data lives elsewhere is refused.

The check reads the protobuf wire format directly (the agent has no `onnx` package): it walks
exactly the fields that can hold a TensorProto (graph initializers, sparse initializers, node
attributes, subgraphs, functions), skips every other field by its length, and bounds the depth,
so a hostile file costs one pass over its bytes and no more.
"""

from __future__ import annotations

import mmap
from pathlib import Path

__all__ = ["MAX_DEPTH", "ModelRefused", "check_model", "external_tensors"]

MAX_DEPTH = 64
"""Deepest nesting of subgraphs the walk follows; deeper is refused as malformed."""

# Field numbers (onnx.proto3) of the messages on the way to a TensorProto.
# kind -> {field number -> kind of the embedded message}
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {
        5: "tensor",
        6: "graph",
        10: "tensor",
        11: "graph",
        22: "sparse",
        23: "sparse",
    },
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


_MALFORMED = "ONNX Runtime cannot load it: the file is not a valid ONNX protobuf ({})"


class ModelRefused(ValueError):
    """The model asks for something the board will not give; the message says what."""


def _varint(data: memoryview, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= end or shift > 63:
            raise ModelRefused(_MALFORMED.format("a varint is cut"))
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _walk(  # noqa: PLR0912, PLR0917  (one branch per wire type; a hot recursive walk)
    data: memoryview, start: int, end: int, kind: str, depth: int, found: set[str]
) -> None:
    if depth > MAX_DEPTH:
        raise ModelRefused(f"the model nests subgraphs deeper than {MAX_DEPTH} levels")
    fields = _SCHEMA[kind]
    at = start
    tensor_name: str | None = None
    external = False
    while at < end:
        key, at = _varint(data, at, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at, end)
            if kind == "tensor" and number == _TENSOR_LOCATION and value == _EXTERNAL:
                external = True
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 3:  # a (deprecated) group: protobuf parsers accept and skip it
            at = _skip_group(data, at, end, number, depth + 1)
        elif wire == 2:
            size, at = _varint(data, at, end)
            if at + size > end:
                raise ModelRefused(_MALFORMED.format("a field is cut"))
            if number in fields:
                _walk(data, at, at + size, fields[number], depth + 1, found)
            elif kind == "tensor" and number == _TENSOR_NAME:
                tensor_name = bytes(data[at : at + min(size, 200)]).decode("utf-8", "replace")
            elif kind == "tensor" and number == _TENSOR_EXTERNAL:
                external = True
            at += size
        else:
            raise ModelRefused(_MALFORMED.format(f"wire type {wire}"))
    if at != end:
        raise ModelRefused(_MALFORMED.format("a field is cut"))
    if external:
        found.add(tensor_name or "(unnamed)")


def _skip_group(data: memoryview, at: int, end: int, number: int, depth: int) -> int:
    """The position after the group of field `number` that starts at `at`."""
    if depth > MAX_DEPTH:
        raise ModelRefused(f"the model nests groups deeper than {MAX_DEPTH} levels")
    while at < end:
        key, at = _varint(data, at, end)
        inner, wire = key >> 3, key & 7
        if wire == 4:
            if inner != number:
                break
            return at
        if wire == 0:
            _, at = _varint(data, at, end)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _varint(data, at, end)
            at += size
        elif wire == 3:
            at = _skip_group(data, at, end, inner, depth + 1)
        else:
            break
    raise ModelRefused(_MALFORMED.format("a group is not closed"))


def external_tensors(path: Path) -> set[str]:
    """Names of the tensors of the model at `path` whose values live in another file.

    Raises:
        ModelRefused: the file is not a well-formed protobuf along the walked fields.
    """
    found: set[str] = set()
    with path.open("rb") as f:
        size = path.stat().st_size
        if size == 0:
            raise ModelRefused(_MALFORMED.format("the file is empty"))
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                _walk(view, 0, size, "model", 0, found)
            finally:
                view.release()
    return found


def check_model(path: Path) -> None:
    """Refuse a model whose tensors keep their values outside its own file.

    Raises:
        ModelRefused: it names external data (the message lists up to five tensors), or it is
            not a well-formed protobuf.
    """
    names = external_tensors(path)
    if names:
        shown = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
        raise ModelRefused(
            f"the model keeps tensor data outside its file ({shown}); the agent loads "
            "self-contained models only: load the external data into the model before pushing "
            "(edgeopt compress and deploy do this)"
        )
