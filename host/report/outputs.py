"""A model's outputs as people and scripts read them: one line each, JSON, and files.

Tensors, strings, sequences and maps (what ONNX Runtime gives for ZipMap, label encoders and
sequence outputs) come from the wire as numpy arrays, lists and dicts (edgeopt.proto.tensors).
Saved, the tensors go to an `.npz` that numpy loads without pickle (strings as numpy's own
unicode arrays), and every sequence or map to a JSON file beside it (`NAME.json`, each output
as {"type", "value"}; a map's int64 keys become JSON's string keys, the type says so): JSON
because `.npz` can hold a dict only through pickle, which a reader should never have to allow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.proto import tensors as wire

__all__ = ["as_json", "save", "summary"]

SHOWN = 8
"""Values (or samples) a summary line shows."""


def summary(value: Any) -> str:
    """One line for an output: its type and shape, then its first values or top classes."""
    if isinstance(value, (list, dict)):
        return _container_summary(value)
    array = np.asarray(value)
    line = f"{wire.value_type(array)[len('tensor(') : -1]}{list(array.shape)}"
    if array.dtype.kind in "OUS":
        return line + f", first values {[str(v) for v in array.reshape(-1)[:SHOWN]]}"
    if array.ndim == 2 and array.shape[1] > 1 and array.dtype.kind == "f":
        return line + f", argmax per row {array.argmax(1).tolist()[:16]}"
    shown = np.round(array.reshape(-1)[:SHOWN].astype(float), 4).tolist()
    return line + f", first values {shown}"


def _container_summary(value: list[Any] | dict[Any, Any]) -> str:
    kind = wire.value_type(value)
    if isinstance(value, dict):
        return f"{kind} of {len(value)}, top {_top(value)}"
    head = f"{kind}[{len(value)}]"
    if value and isinstance(value[0], dict):
        tops = [_top(item) for item in value[:SHOWN]]
        more = ", ..." if len(value) > SHOWN else ""
        return f"{head}, top class per element {', '.join(tops)}{more}"
    if value and not isinstance(value[0], list):
        return f"{head}, shapes {[list(np.shape(v)) for v in value[:SHOWN]]}"
    return head


def _top(mapping: dict[Any, Any]) -> str:
    """A map's largest value and its key ("3 (0.91)"), or its first entry when not numeric."""
    if not mapping:
        return "(empty)"
    try:
        key = max(mapping, key=lambda k: float(mapping[k]))
        return f"{key} ({float(mapping[key]):.4g})"
    except (TypeError, ValueError):
        key = next(iter(mapping))
        return f"{key} ({mapping[key]})"


def _plain(value: Any) -> Any:
    """JSON data of a value: arrays as nested lists, maps as objects, sequences as lists."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.astype(str).tolist() if value.dtype.kind in "OUS" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def as_json(value: Any, limit: int = 16) -> dict[str, Any]:
    """An output for `--json`: its type, its shape or length, and its first `limit` values."""
    if isinstance(value, (list, dict)):
        items = list(value.items())[:limit] if isinstance(value, dict) else value[:limit]
        shown = dict(items) if isinstance(value, dict) else items
        return {"type": wire.value_type(value), "length": len(value), "values": _plain(shown)}
    array = np.asarray(value)
    return {"shape": list(array.shape), "dtype": wire.value_type(array)[len("tensor(") : -1],
            "values": _plain(array.reshape(-1)[:limit])}  # fmt: skip


def save(path: Path, outputs: dict[str, Any]) -> list[Path]:
    """Write the tensors to `path` (.npz) and the sequences and maps to `path` with .json.

    Returns the files written (the .npz only when there are tensors, the .json only when there
    are sequences or maps).
    """
    tensors = {k: v for k, v in outputs.items() if not isinstance(v, (list, dict))}
    values = {k: v for k, v in outputs.items() if isinstance(v, (list, dict))}
    written = []
    if tensors or not values:
        arrays = {k: np.asarray(v).astype(str) if np.asarray(v).dtype.kind == "O"
                  else np.asarray(v) for k, v in tensors.items()}  # fmt: skip
        # numpy's stub takes **kwds for its allow_pickle flag
        np.savez(path, **arrays)  # type: ignore[arg-type]
        written.append(path if path.suffix == ".npz" else path.with_name(path.name + ".npz"))
    if values:
        side = path.with_suffix(".json")
        side.write_text(
            json.dumps(
                {k: {"type": wire.value_type(v), "value": _plain(v)} for k, v in values.items()},
                indent=1,
            )
        )
        written.append(side)
    return written
