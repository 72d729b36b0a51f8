"""--target-ort: artifacts that a real ONNX Runtime 1.16.3 (built by `make test`) loads and runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper, version_converter

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.compress.target import drop_unused_opsets, parse_version
from edgeopt.host.errors import DataError, TargetError
from tests.models import DigitsModel

ROOT = Path(__file__).resolve().parents[3]
OLD_PYTHON = ROOT / ".venv" / "ort-1.16.3" / "bin" / "python"

RUN_OLD = """
import sys, numpy as np, onnxruntime as ort
assert ort.__version__ == "1.16.3", ort.__version__
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
data = np.load(sys.argv[2])
np.save(sys.argv[3], session.run(None, {"image": data["image"]})[0])
"""


def run_in_old_ort(model: Path, data: Path, tmp: Path) -> np.ndarray:
    if not OLD_PYTHON.exists():
        pytest.fail(f"{OLD_PYTHON} missing: `make test` builds it (Makefile target ORT_OLD)")
    out = tmp / "out.npy"
    done = subprocess.run([str(OLD_PYTHON), "-c", RUN_OLD, str(model), str(data), str(out)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(done.stderr.strip().splitlines()[-1])
    return np.load(out)


@pytest.mark.parametrize("precision", ["int8-static", "int8-dynamic", "fp16"])
def test_artifact_runs_on_onnxruntime_116(
    digits: DigitsModel, tmp_path: Path, precision: str
) -> None:
    out = tmp_path / "m.onnx"
    request = CompressRequest(
        model=digits.onnx,
        precision=precision,  # type: ignore[arg-type]
        calibration=digits.calibration,
        target_ort="1.16.3",
        output=out,
    )
    compress(request)
    model = onnx.load(str(out))
    assert model.ir_version <= 9
    logits = run_in_old_ort(out, digits.validation, tmp_path)
    labels = np.load(digits.validation)["labels"]
    assert (logits.argmax(1) == labels).mean() >= digits.accuracy - 0.02


def test_new_opset_and_ir_are_lowered(digits: DigitsModel, tmp_path: Path) -> None:
    newer = version_converter.convert_version(onnx.load(str(digits.onnx)), 21)
    newer.ir_version = 10
    src = tmp_path / "opset21.onnx"
    onnx.save(newer, str(src))
    with pytest.raises(
        AssertionError, match="Unsupported model IR version: 10, max supported IR version: 9"
    ):
        run_in_old_ort(src, digits.validation, tmp_path)
    out = tmp_path / "lowered.onnx"
    compress(CompressRequest(model=src, precision="fp32", target_ort="1.16", output=out))
    lowered = onnx.load(str(out))
    assert (lowered.ir_version, lowered.opset_import[0].version) == (9, 19)
    logits = run_in_old_ort(out, digits.validation, tmp_path)
    assert logits.shape == (397, 10)


def _matmul_model(path: Path) -> None:
    weight = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 64])],
        [numpy_helper.from_array(weight, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_int4_is_refused_for_an_ort_without_matmulnbits(tmp_path: Path) -> None:
    src = tmp_path / "mm.onnx"
    _matmul_model(src)
    out = tmp_path / "int4.onnx"
    with pytest.raises(TargetError) as info:
        compress(CompressRequest(model=src, precision="int4-weight", target_ort="1.16", output=out))
    assert str(info.value) == (
        "MatMulNBits (used by int4 weight-only quantization) needs ONNX Runtime >= 1.17; "
        "the target has 1.16. Use int8 for this board."
    )
    assert not out.exists()
    ok = compress(CompressRequest(model=src, precision="int4-weight", target_ort="1.17"))
    assert ok.after.ops == {"MatMulNBits": 1}


def test_dynamic_conv_is_refused_for_old_ort(digits: DigitsModel, tmp_path: Path) -> None:
    """ConvInteger with int8 weights: ORT 1.16.3 really cannot run it, and Target says so."""
    from edgeopt.host.compress import ArtifactCache
    from edgeopt.host.compress.passes import run_pipeline
    from edgeopt.host.compress.quantize import DynamicInt8
    from edgeopt.host.compress.target import Target

    steps = run_pipeline(digits.onnx, [DynamicInt8(conv=True)], ArtifactCache())
    with pytest.raises(AssertionError, match=r"Could not find an implementation for ConvInteger"):
        run_in_old_ort(steps[-1].output, digits.validation, tmp_path)
    with pytest.raises(
        TargetError, match=r"ConvInteger with int8 weights .* needs ONNX Runtime >= 1\.24"
    ):
        run_pipeline(steps[-1].output, [Target(ort_version="1.16")], ArtifactCache())


def test_unused_opset_imports_are_dropped() -> None:
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [], []),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 5),
                       helper.make_opsetid("com.microsoft", 1)],
    )  # fmt: skip
    assert drop_unused_opsets(model) == ["ai.onnx.ml:5", "com.microsoft:1"]
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


@pytest.mark.parametrize("text", ["latest", "1", "v1.16"])
def test_bad_version(text: str) -> None:
    with pytest.raises(DataError, match=r"--target-ort wants a version like 1\.16"):
        parse_version(text)
