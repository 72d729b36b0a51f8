"""What the board's ONNX Runtime is and which models it can load.

The limits are measured, not looked up: ONNX Runtime is asked to load two tiny probe models, one
stamped with an absurd IR version and one with an absurd opset, and its refusal names the highest
it supports ("max supported IR version: 10", "support for domain ai.onnx is till opset 21"). This
holds for every release from 1.10 on, and needs no `onnx` package on the board: the probe models
are a few hand-encoded protobuf bytes.

`probe_in_subprocess` runs the probe in a child Python so that the agent neither pays ONNX
Runtime's ~30 MB of memory while idle nor dies if the import crashes (as it does under qemu
without an ARM /proc/cpuinfo). `python -m edgeopt.boardfacts.runtime` prints the JSON it reads.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

from edgeopt.proto.capabilities import OnnxRuntimeInfo

__all__ = ["limit_from_error", "probe_in_process", "probe_in_subprocess", "probe_model"]

_IR_RE = re.compile(r"max supported IR version:\s*(\d+)")
_OPSET_RE = re.compile(r"support for domain ai\.onnx is till opset\s*(\d+)")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def probe_model(ir_version: int, opset: int) -> bytes:
    """A serialized onnx ModelProto: y = Identity(x), x and y float[1].

    Field numbers are those of onnx.proto (ModelProto.ir_version=1, graph=7, opset_import=8;
    GraphProto.node=1, name=2, input=11, output=12; NodeProto.input=1, output=2, op_type=4;
    ValueInfoProto.name=1, type=2; TypeProto.tensor_type=1; Tensor.elem_type=1 (1 = FLOAT),
    shape=2; TensorShapeProto.dim=1; Dimension.dim_value=1).
    """
    shape = _len_field(2, _len_field(1, _int_field(1, 1)))
    tensor_type = _len_field(1, _int_field(1, 1) + shape)

    def value_info(name: str) -> bytes:
        return _len_field(1, name.encode()) + _len_field(2, tensor_type)

    node = _len_field(1, b"x") + _len_field(2, b"y") + _len_field(4, b"Identity")
    graph = (
        _len_field(1, node)
        + _len_field(2, b"g")
        + _len_field(11, value_info("x"))
        + _len_field(12, value_info("y"))
    )
    opset_import = _len_field(1, b"") + _int_field(2, opset)
    return _int_field(1, ir_version) + _len_field(7, graph) + _len_field(8, opset_import)


def limit_from_error(message: str, kind: str) -> int | None:
    """The highest supported IR version (`kind="ir"`) or opset (`"opset"`) named in a load error."""
    match = (_IR_RE if kind == "ir" else _OPSET_RE).search(message)
    return int(match.group(1)) if match else None


def probe_in_process() -> OnnxRuntimeInfo:
    """Import onnxruntime here and measure its version, providers and model limits."""
    try:
        import onnxruntime as ort  # noqa: PLC0415  (heavy: only when asked)
    except Exception as exc:  # an ImportError, or a broken native library
        return OnnxRuntimeInfo(error=f"cannot import onnxruntime: {exc}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the probe models are refused on purpose: keep logs quiet
    options.intra_op_num_threads = 1  # no per-core pool (and no pinning that a cpuset refuses)
    found: dict[str, int | None] = {}
    errors = []
    # IR first (opset 13 loads on every supported release), then the opset at that IR.
    for kind, ir, opset in (("ir", 1000, 13), ("opset", None, 1000)):
        model = probe_model(ir if ir is not None else (found.get("ir") or 7), opset)
        try:
            ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            errors.append(f"{kind} probe model was accepted; limit unknown")
        except Exception as exc:
            found[kind] = limit_from_error(str(exc), kind)
            if found[kind] is None:
                errors.append(f"{kind} probe: {str(exc).splitlines()[0][-200:]}")
    return OnnxRuntimeInfo(
        version=str(ort.__version__),
        max_ir_version=found.get("ir"),
        max_opset=found.get("opset"),
        execution_providers=tuple(ort.get_available_providers()),
        error="; ".join(errors),
    )


def probe_in_subprocess(python: str = sys.executable, timeout: float = 60.0) -> OnnxRuntimeInfo:
    """Run `probe_in_process` in a child interpreter and read its JSON answer."""
    cmd = [python, "-m", "edgeopt.boardfacts.runtime"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return OnnxRuntimeInfo(error=f"onnxruntime probe did not run: {exc}")
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return OnnxRuntimeInfo(
            error=f"onnxruntime probe failed (exit status {done.returncode}): {tail}"
        )
    data = json.loads(done.stdout)
    data["execution_providers"] = tuple(data["execution_providers"])
    return OnnxRuntimeInfo(**data)


if __name__ == "__main__":
    json.dump(dataclasses.asdict(probe_in_process()), sys.stdout)
