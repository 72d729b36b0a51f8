"""Pruning the real digits CNN, from a torch.export .pt2 and from a Python factory."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.errors import DataError, UnsupportedModel
from tests.models import DigitsModel


def _weights(path: Path) -> dict[str, tuple[int, ...]]:
    model = onnx.load(str(path))
    return {i.name: tuple(i.dims) for i in model.graph.initializer if len(i.dims) >= 2}


def test_unstructured_half_of_the_weights(digits: DigitsModel) -> None:
    report = compress(
        CompressRequest(model=digits.pt2, precision="fp32", prune=0.5,
                        example=digits.calibration, validation=digits.validation)
    )  # fmt: skip
    assert [s.name for s in report.steps] == ["export", "prune", "export"]
    assert report.after.parameters == report.before.parameters  # shapes stay
    assert 0.45 <= report.after.sparsity <= 0.52
    assert len(report.after.layer_sparsity) == 5  # every Conv and Linear weight
    v = report.validation
    assert v is not None and v.accuracy is not None and v.reference_accuracy is not None
    assert v.reference_accuracy - v.accuracy <= 0.03


def test_structured_shrinks_tensors_and_finetune_recovers(
    digits: DigitsModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(digits.folder)  # the factory module lives there
    out = tmp_path / "pruned.onnx"
    report = compress(
        CompressRequest(model=digits.factory, precision="fp32", prune=0.5, structured=True,
                        finetune=digits.train, epochs=3, example=digits.calibration,
                        validation=digits.validation, output=out)
    )  # fmt: skip
    assert report.after.parameters <= 0.55 * report.before.parameters
    assert report.before.macs is not None and report.after.macs is not None
    assert report.after.macs <= 0.55 * report.before.macs
    shapes = sorted(_weights(out).values())
    assert (8, 1, 3, 3) in shapes and (16, 8, 3, 3) in shapes and (32, 16, 3, 3) in shapes
    assert (64, 128) in shapes or (128, 64) in shapes  # Linear after the flatten: 32 ch x 4
    v = report.validation
    assert v is not None and v.accuracy is not None and v.reference_accuracy is not None
    assert v.reference_accuracy - v.accuracy <= 0.03


def test_structured_with_taylor_importance_and_int8(digits: DigitsModel) -> None:
    report = compress(
        CompressRequest(model=digits.pt2, precision="int8-static", prune=0.25, structured=True,
                        importance="taylor", finetune=digits.train, epochs=2,
                        calibration=digits.calibration, example=digits.calibration,
                        validation=digits.validation)
    )  # fmt: skip
    assert [s.name for s in report.steps] == ["export", "prune-structured", "export", "int8-static"]
    assert report.validation is not None and report.validation.accuracy is not None
    assert report.validation.accuracy >= 0.93


def test_ratio_that_removes_a_layer(digits: DigitsModel, tmp_path: Path) -> None:
    out = tmp_path / "never.onnx"
    with pytest.raises(DataError) as info:
        compress(CompressRequest(model=digits.pt2, prune=0.97, structured=True,
                                 example=digits.calibration, output=out))  # fmt: skip
    assert str(info.value).startswith(
        "prune ratio 0.97 would remove all 16 channels of layer '0', and with them the layer"
    )
    assert not out.exists()
    with pytest.raises(
        DataError, match=r"prune ratio must be between 0 and 1 \(exclusive\), got 1.0"
    ):
        compress(CompressRequest(model=digits.pt2, prune=1.0, example=digits.calibration))


def test_pruning_an_onnx_input_is_refused(digits: DigitsModel) -> None:
    with pytest.raises(UnsupportedModel, match="pruning works on PyTorch models"):
        compress(CompressRequest(model=digits.onnx, prune=0.5))


def test_taylor_needs_labelled_data(digits: DigitsModel) -> None:
    with pytest.raises(DataError, match="taylor importance needs labelled data"):
        compress(CompressRequest(model=digits.pt2, prune=0.5, structured=True,
                                 importance="taylor", example=digits.calibration))  # fmt: skip
