"""The ways a model can come in: TorchScript, a factory with --input-shape, old opsets, and an
operator ONNX Runtime does not know."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.errors import DataError, ModelError, UnsupportedModel
from tests.models import DigitsModel


def test_torchscript_input(digits: DigitsModel, tmp_path: Path) -> None:
    path = tmp_path / "digits.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        traced = torch.jit.trace(digits.torch_model, torch.zeros(2, 1, 8, 8))
        torch.jit.save(traced, str(path))
    request = CompressRequest(model=path, precision="int8-dynamic",
                              example=digits.calibration, validation=digits.validation)  # fmt: skip
    report = compress(request)
    assert [s.name for s in report.steps] == ["export", "int8-dynamic"]
    v = report.validation
    assert v is not None and v.accuracy is not None and v.accuracy >= digits.accuracy - 0.01


def test_factory_with_input_shape(digits: DigitsModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(digits.folder)
    report = compress(CompressRequest(model=digits.factory, precision="fp32",
                                      input_shape=(1, 1, 8, 8)))  # fmt: skip
    model = onnx.load(str(report.artifact))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 8, 8]


def test_factory_without_example_is_a_clear_error(
    digits: DigitsModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(digits.folder)
    with pytest.raises(DataError, match="exporting a PyTorch model needs example inputs"):
        compress(CompressRequest(model=digits.factory))


def test_unknown_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="no_such_module:model: cannot import no_such_module"):
        compress(CompressRequest(model="no_such_module:model", input_shape=(1, 3)))


def test_pickled_module_is_refused(digits: DigitsModel, tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save(digits.torch_model, str(path))
    with pytest.raises(ModelError, match="pickled modules are not loaded: they run code"):
        compress(CompressRequest(model=path, example=digits.calibration))


def test_old_opset_is_converted_for_per_channel(digits: DigitsModel, tmp_path: Path) -> None:
    src = tmp_path / "opset11.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = digits.torch_model
        axes = {"image": {0: "batch"}}
        torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(src),  # type: ignore[arg-type]
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes=axes, opset_version=11, dynamo=False)  # fmt: skip
    report = compress(CompressRequest(model=src, precision="int8-dynamic",
                                      validation=digits.validation))  # fmt: skip
    assert report.before.opset == 11 and report.after.opset >= 13
    assert report.validation is not None and report.validation.top1_agreement is not None
    assert report.validation.top1_agreement >= 0.99


def test_operator_onnx_runtime_does_not_know(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedModel) as info:
        compress(CompressRequest(model=path, precision="int8-dynamic"))
    assert str(info.value).startswith("ONNX Runtime cannot load custom.onnx:")
    assert "Frobnicate" in str(info.value)
    assert np.array([]).size == 0
