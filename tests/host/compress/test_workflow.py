"""Compression of a real CNN trained on real data, through the library (no CLI)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import pytest

from edgeopt.host.compress import ArtifactCache, CompressRequest, Gate, compress, sweep
from edgeopt.host.errors import AccuracyGateFailed, DataError, ModelError, UnsupportedModel
from tests.models import DigitsModel


def test_trained_reference_is_good(digits: DigitsModel) -> None:
    assert digits.accuracy >= 0.96


def test_int8_static_keeps_accuracy_and_shrinks(digits: DigitsModel, tmp_path: Path) -> None:
    out = tmp_path / "static.onnx"
    report = compress(
        CompressRequest(
            model=digits.onnx, precision="int8-static", calibration=digits.calibration,
            validation=digits.validation, output=out, gate=Gate(max_accuracy_drop=0.005),
        )
    )  # fmt: skip
    v = report.validation
    assert v is not None and v.accuracy is not None and v.reference_accuracy is not None
    assert v.reference_accuracy - v.accuracy <= 0.005
    assert report.after.size_bytes <= 0.35 * report.before.size_bytes
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    assert out.read_bytes() == report.artifact.read_bytes()


@pytest.mark.parametrize("precision", ["int8-dynamic", "fp16"])
def test_other_precisions(digits: DigitsModel, precision: str) -> None:
    report = compress(
        CompressRequest(model=digits.onnx, precision=precision, validation=digits.validation)  # type: ignore[arg-type]
    )
    v = report.validation
    assert v is not None and v.top1_agreement is not None
    assert v.top1_agreement >= 0.99 and v.cosine >= 0.999
    assert report.after.size_bytes < report.before.size_bytes


def test_second_identical_request_is_served_from_cache(digits: DigitsModel) -> None:
    request = CompressRequest(model=digits.onnx, precision="int8-dynamic", optimize="basic")
    first = compress(request)
    second = compress(request)
    # Every ONNX input is normalized first (see normalize.py); that step is cached too.
    steps = [s.name for s in first.steps]
    assert not first.cached and steps == ["normalize", "optimize", "int8-dynamic"]
    assert second.cached and all(s.seconds == 0.0 for s in second.steps)
    assert second.artifact == first.artifact
    assert len(list(ArtifactCache().entries())) == 3
    other = compress(dataclasses.replace(request, per_channel=False))
    assert not other.steps[-1].cached  # a different config is a different artifact


def test_gate_rejects_with_metric_and_shortfall(digits: DigitsModel, tmp_path: Path) -> None:
    out = tmp_path / "never.onnx"
    with pytest.raises(AccuracyGateFailed) as info:
        compress(
            CompressRequest(
                model=digits.onnx, precision="int8-dynamic", validation=digits.validation,
                output=out, gate=Gate(min_cosine=0.9999999),
            )
        )  # fmt: skip
    err = info.value
    assert err.metric == "cosine" and err.limit == 0.9999999 and err.value < err.limit
    assert str(err).startswith("int8-dynamic fails the gate: cosine similarity ")
    assert "(short by " in str(err)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_static_without_calibration(digits: DigitsModel) -> None:
    with pytest.raises(DataError, match="static int8 needs calibration data: pass --calibration"):
        compress(CompressRequest(model=digits.onnx, precision="int8-static"))


def test_calibration_that_does_not_fit(digits: DigitsModel, tmp_path: Path) -> None:
    import numpy as np

    wrong_name = tmp_path / "name.npz"
    np.savez(wrong_name, img=np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(DataError) as info:
        compress(CompressRequest(model=digits.onnx, precision="int8-static",
                                 calibration=wrong_name))  # fmt: skip
    assert str(info.value) == (
        f"calibration data {wrong_name}: names do not match the model's inputs ['image']: "
        "missing ['image'], unexpected ['img']"
    )
    wrong_shape = tmp_path / "shape.npz"
    np.savez(wrong_shape, image=np.zeros((4, 1, 28, 28), np.float32))
    with pytest.raises(DataError, match=r"'image' has 28 on axis 2, the model wants 8"):
        compress(CompressRequest(model=digits.onnx, precision="int8-static",
                                 calibration=wrong_shape))  # fmt: skip


def test_int4_needs_matmul(digits: DigitsModel) -> None:
    with pytest.raises(UnsupportedModel, match="applies to MatMul with constant weights"):
        compress(CompressRequest(model=digits.onnx, precision="int4-weight"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a model\n", "not an ONNX model"),
        (b"", "not an ONNX model (no graph in the file)"),
    ],
)
def test_not_a_model(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compress(CompressRequest(model=path))


def test_truncated_model(digits: DigitsModel, tmp_path: Path) -> None:
    path = tmp_path / "cut.onnx"
    path.write_bytes(digits.onnx.read_bytes()[:5000])
    with pytest.raises(ModelError, match=f"{path}: not an ONNX model"):
        compress(CompressRequest(model=path))


def test_sweep_reports_every_precision(digits: DigitsModel) -> None:
    rows = sweep(
        CompressRequest(model=digits.onnx, calibration=digits.calibration,
                        validation=digits.validation, gate=Gate(max_accuracy_drop=0.01))
    )  # fmt: skip
    by = {r.precision: r for r in rows}
    assert list(by) == ["fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight"]
    assert by["int4-weight"].report is None
    assert "MatMul" in (by["int4-weight"].rejected or "")
    for name in ("fp32", "fp16", "int8-dynamic", "int8-static"):
        assert by[name].report is not None and by[name].rejected is None, by[name].rejected


def test_nothing_is_left_in_the_working_directory(
    digits: DigitsModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT's tools drop sym_shape_infer_temp.onnx and .data files in the working directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "calib.npz").write_bytes(digits.calibration.read_bytes())
    compress(CompressRequest(model=digits.onnx, precision="int8-static",
                             calibration=Path("calib.npz"), output=Path("out.onnx")))  # fmt: skip
    assert sorted(p.name for p in work.iterdir()) == ["calib.npz", "out.onnx"]
