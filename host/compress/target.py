"""Make an artifact loadable by an older ONNX Runtime on the board.

Boards lag behind: glibc-2.17 systems can get ONNX Runtime 1.16 at most, which refuses IR
version 10, ai.onnx opsets above 19, and imports of domains at versions it does not know, even
when no node uses them (ONNX Runtime's own graph optimizer adds such imports: `ai.onnx.ml` 5 and
friends). The `Target` pass drops opset imports no node uses, converts the ai.onnx opset down with
onnx's version converter, lowers the IR version, and refuses clearly when the target cannot run
the model (int4 `MatMulNBits` before 1.17, tensor types newer than the target's IR).

The limits per release come from ONNX Runtime's compatibility table; the agent measures the
real limits of a board's build (`Capabilities.onnxruntime`), which can be passed in directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import onnx
from onnx import version_converter

from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.passes import Pass
from edgeopt.host.errors import DataError, TargetError

__all__ = [
    "CONTRIB_OPS_SINCE",
    "ORT_LIMITS",
    "Target",
    "drop_unused_opsets",
    "limits_for",
    "parse_version",
    "retarget",
]

ORT_LIMITS: dict[tuple[int, int], tuple[int, int]] = {
    (1, 10): (8, 15),
    (1, 11): (8, 16),
    (1, 12): (8, 17),
    (1, 13): (8, 17),
    (1, 14): (8, 18),
    (1, 15): (9, 19),
    (1, 16): (9, 19),
    (1, 17): (9, 20),
    (1, 18): (10, 21),
    (1, 19): (10, 21),
    (1, 20): (10, 21),
    (1, 21): (10, 22),
}
"""ONNX Runtime (major, minor) → (max IR version, max ai.onnx opset), from ORT's docs."""

CONTRIB_OPS_SINCE: dict[str, tuple[int, int]] = {
    "MatMulNBits": (1, 17),
    # Dynamic int8 of LSTMs (also static int8's recurrent layers); loaded by a real 1.16.3 in
    # tests/integration/test_corpus.py; older releases are not claimed.
    "DynamicQuantizeLSTM": (1, 16),
}
"""com.microsoft operators edgeopt's quantizers emit → the first ONNX Runtime release with them.
Any other contrib operator (the fusions of `--optimize extended`) has no known history here,
so a retargeted model that holds one is refused rather than shipped on a guess."""

_NEW_TYPES_IR: dict[int, int] = {
    onnx.TensorProto.FLOAT8E4M3FN: 9,
    onnx.TensorProto.FLOAT8E5M2: 9,
    onnx.TensorProto.UINT4: 10,
    onnx.TensorProto.INT4: 10,
}


def parse_version(text: str) -> tuple[int, int]:
    """Parse "1.16" or "1.16.3" into (1, 16).

    Raises:
        DataError: not a version.
    """
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if not match:
        raise DataError(f"--target-ort wants a version like 1.16 or 1.16.3, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def limits_for(version: tuple[int, int]) -> tuple[int, int] | None:
    """(max IR, max opset) of an ONNX Runtime release; None when newer than the table."""
    if version in ORT_LIMITS:
        return ORT_LIMITS[version]
    if version < min(ORT_LIMITS):
        raise TargetError(
            f"ONNX Runtime {version[0]}.{version[1]} is older than edgeopt supports (1.10)"
        )
    return None


def _int8_conv_integer(model: onnx.ModelProto) -> bool:
    """Whether a ConvInteger takes int8 (signed) weights, which ORT < 1.24 cannot run."""
    int8 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    return any(n.op_type == "ConvInteger" and n.input[1] in int8 for n in model.graph.node)


def drop_unused_opsets(model: onnx.ModelProto) -> list[str]:
    """Remove opset imports of domains no node (or function) uses; returns the removed ones."""
    used = {n.domain or "" for n in model.graph.node}
    for function in model.functions:
        used |= {n.domain or "" for n in function.node}
        used.add(function.domain)
    used.add("")  # the default domain always stays
    removed = [
        f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import if o.domain not in used
    ]
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return removed


def _tensor_types(model: onnx.ModelProto) -> set[int]:
    types = {init.data_type for init in model.graph.initializer}
    for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        types.add(vi.type.tensor_type.elem_type)
    return types


def retarget(
    model: onnx.ModelProto, max_ir: int, max_opset: int, ort_version: tuple[int, int] | None
) -> onnx.ModelProto:
    """A copy of `model` that an ONNX Runtime with these limits loads.

    Raises:
        TargetError: an operator or type the target lacks, or an opset that cannot be lowered.
    """
    shown = (
        f"{ort_version[0]}.{ort_version[1]}" if ort_version else f"IR {max_ir}/opset {max_opset}"
    )
    if ort_version is not None:
        for node in model.graph.node:
            if node.domain.startswith("com.microsoft") and node.op_type not in CONTRIB_OPS_SINCE:
                raise TargetError(
                    f"{node.domain}.{node.op_type} (from ONNX Runtime's graph optimizer) may not "
                    f"exist in ONNX Runtime {shown}; optimize with --optimize basic, or not at "
                    "all, for an older target"
                )
            since = CONTRIB_OPS_SINCE.get(node.op_type)
            if node.domain == "com.microsoft" and since and ort_version < since:
                raise TargetError(
                    f"{node.op_type} (used by int4 weight-only quantization) needs ONNX Runtime "
                    f">= {since[0]}.{since[1]}; the target has {shown}. Use int8 for this board."
                )
    if ort_version is not None and ort_version < (1, 24) and _int8_conv_integer(model):
        raise TargetError(
            f"ConvInteger with int8 weights (dynamic int8 of Conv layers) needs ONNX Runtime "
            f">= 1.24; the target has {shown}. Use int8-static for convolutions."
        )
    too_new = sorted(
        onnx.TensorProto.DataType.Name(t)
        for t in _tensor_types(model)
        if _NEW_TYPES_IR.get(t, 0) > max_ir
    )
    if too_new:
        raise TargetError(
            f"tensor types {', '.join(too_new)} need a newer IR version than the target's "
            f"{max_ir} (ONNX Runtime {shown})"
        )
    result = onnx.ModelProto()
    result.CopyFrom(model)
    drop_unused_opsets(result)
    opset = onnx_model.ai_onnx_opset(result)
    if opset > max_opset:
        try:
            result = version_converter.convert_version(result, max_opset)
        except Exception as exc:
            raise TargetError(
                f"cannot lower opset {opset} to {max_opset} for ONNX Runtime {shown}: "
                f"{str(exc).strip().splitlines()[0]}"
            ) from exc
    result.ir_version = min(result.ir_version, max_ir)
    return result


@dataclass(frozen=True)
class Target(Pass):
    """Lower an artifact to what a given ONNX Runtime release (or measured limits) can load."""

    name: ClassVar[str] = "target"
    ort_version: str | None = None
    """The board's ONNX Runtime ("1.16", "1.16.3")."""
    max_ir: int | None = None
    """Measured highest IR version (overrides the table)."""
    max_opset: int | None = None
    """Measured highest ai.onnx opset (overrides the table)."""

    def run(self, src: Path, dst: Path) -> None:
        """Write the lowered model."""
        version = parse_version(self.ort_version) if self.ort_version else None
        table = limits_for(version) if version else None
        model = onnx_model.load(src, check=False)
        max_ir = self.max_ir or (table[0] if table else model.ir_version)
        max_opset = self.max_opset or (table[1] if table else onnx_model.ai_onnx_opset(model))
        onnx_model.save(retarget(model, max_ir, max_opset, version), dst)
