"""Edge cases a careful review found: each asserts the behaviour that is now promised."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeopt.host.compress import CompressRequest, Gate, compress
from edgeopt.host.compress.validate import compare
from edgeopt.host.errors import (
    AccuracyGateFailed,
    CompressionError,
    DataError,
    TargetError,
)
from tests.models import DigitsModel


@pytest.mark.parametrize("broken", [np.zeros((4, 10)), np.full((4, 10), np.nan)])
def test_dead_outputs_never_pass_a_gate(broken: np.ndarray) -> None:
    reference = np.random.default_rng(0).standard_normal((4, 10))
    report = compare(reference, broken, None)
    assert report.cosine == 0.0
    with pytest.raises(AccuracyGateFailed):
        Gate(min_cosine=0.5).check(report)


def test_identical_zero_outputs_agree() -> None:
    assert compare(np.zeros((3, 4)), np.zeros((3, 4)), None).cosine == 1.0


def test_labels_are_compared_by_agreement_not_by_a_cosine_of_their_ids() -> None:
    """Label ids are names: one label changed of three costs a third, whether the new id is
    next to the old one or far from it (a cosine of the ids said 0.99999 for 7 -> 8 among
    large ids and 0.05 for 7 -> 3000 among small ones)."""
    reference = np.array([[5, 7, 3000], [1, 2, 3]])
    near = compare(reference, np.array([[5, 8, 3000], [1, 2, 3]]), None)
    far = compare(reference, np.array([[5, 7, 3000], [1, 3000, 3]]), None)
    for report in (near, far):
        assert report.similarity == "label agreement"
        assert report.cosine == report.top1_agreement == pytest.approx(5 / 6)
        assert report.accuracy_drop == pytest.approx(1 / 6)
    with pytest.raises(AccuracyGateFailed) as caught:
        Gate(min_cosine=0.9).check(near, "int8-static")
    assert caught.value.metric == "label_agreement"
    assert str(caught.value) == (
        "int8-static fails the gate: label agreement (labels have no cosine: --min-cosine holds "
        "the share equal) 0.8333 is below the required 0.9000 (short by 0.0667)"
    )
    with pytest.raises(AccuracyGateFailed) as caught:
        Gate(max_accuracy_drop=0.1).check(far, "int8-static")
    assert caught.value.metric == "label_disagreement"


def test_a_model_that_outputs_labels_is_gated_on_how_many_it_keeps(
    digits: DigitsModel, tmp_path: Path
) -> None:
    """The digits CNN outputting only the ArgMax of its logits: the report's similarity is the
    share of validation labels the variant gives as fp32 does, and its accuracies are against
    the data's labels."""
    import onnxruntime as ort

    from edgeopt.host.compress import data as datasets
    from tests.models import labels_only

    fp32 = compress(CompressRequest(model=digits.onnx, precision="fp32")).artifact
    labelled = labels_only(onnx.load(str(fp32)), tmp_path / "labels.onnx")
    request = CompressRequest(
        model=labelled,
        precision="int8-static",
        calibration=digits.calibration,
        validation=digits.validation,
    )
    report = compress(request).validation
    assert report is not None and report.similarity == "label agreement"
    data = datasets.load(digits.validation, onnx.load(str(labelled)), purpose="test")
    feed = next(data.batches(len(data)))
    ours = ort.InferenceSession(str(labelled)).run(None, feed)[0]
    variant = compress(request).artifact
    theirs = ort.InferenceSession(str(variant)).run(None, feed)[0]
    assert report.samples == len(data)
    assert report.cosine == pytest.approx(float((ours == theirs).mean()))
    assert data.labels is not None
    assert report.reference_accuracy == pytest.approx(float((ours == data.labels).mean()))
    assert report.accuracy == pytest.approx(float((theirs == data.labels).mean()))
    assert report.reference_accuracy is not None and report.reference_accuracy > 0.9


def test_macs_count_linear_layers_right(digits: DigitsModel) -> None:
    # conv 9,216 + 294,912 + 294,912, linear 32,768 + 1,280 (Gemm with transB=1)
    report = compress(CompressRequest(model=digits.onnx, precision="fp32"))
    assert report.before.macs == 633_088


def test_relative_cache_dir(
    digits: DigitsModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", "relcache")
    report = compress(CompressRequest(model=digits.onnx, precision="int8-dynamic",
                                      target_ort="1.16"))  # fmt: skip
    assert report.artifact.is_relative_to(tmp_path / "relcache")


def test_external_data_is_part_of_the_key(digits: DigitsModel, tmp_path: Path) -> None:
    model = onnx.load(str(digits.onnx))
    src = tmp_path / "ext.onnx"
    onnx.save_model(model, str(src), save_as_external_data=True, location="ext.data",
                    size_threshold=0)  # fmt: skip
    first = compress(CompressRequest(model=src, precision="fp16"))
    data = tmp_path / "ext.data"
    weights = np.frombuffer(data.read_bytes(), dtype=np.float32) * 3
    data.write_bytes(weights.astype(np.float32).tobytes())
    second = compress(CompressRequest(model=src, precision="fp16"))
    assert not second.steps[-1].cached
    assert second.artifact != first.artifact


def test_factory_weights_are_part_of_the_key(
    digits: DigitsModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    weights = folder / "w.pt"
    torch.save(digits.torch_model.state_dict(), weights)  # type: ignore[attr-defined]
    (folder / "fac.py").write_text(
        "import torch\nfrom tests.models import build_digits_cnn\n\n\ndef model():\n"
        "    net = build_digits_cnn()\n"
        f"    net.load_state_dict(torch.load({str(weights)!r}, weights_only=True))\n"
        "    return net\n"
    )
    monkeypatch.chdir(folder)
    request = CompressRequest(model="fac:model", precision="fp32", input_shape=(1, 1, 8, 8))
    first = compress(request)
    assert compress(request).cached
    state = {k: v * 0.5 for k, v in torch.load(weights, weights_only=True).items()}
    torch.save(state, weights)
    third = compress(request)
    assert not third.cached and third.artifact != first.artifact


def test_model_with_a_fixed_batch_of_one(digits: DigitsModel, tmp_path: Path) -> None:
    src = tmp_path / "batch1.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(digits.torch_model, (torch.zeros(1, 1, 8, 8),), str(src),  # type: ignore[arg-type]
                          input_names=["image"], output_names=["logits"], dynamo=False)  # fmt: skip
    report = compress(CompressRequest(model=src, precision="int8-static",
                                      calibration=digits.calibration,
                                      validation=digits.validation))  # fmt: skip
    assert report.validation is not None and report.validation.samples == 397


def test_pruning_from_a_batch_of_one(digits: DigitsModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(digits.folder)
    report = compress(CompressRequest(model=digits.factory, prune=0.5, structured=True,
                                      input_shape=(1, 1, 8, 8)))  # fmt: skip
    assert report.after.parameters < report.before.parameters


def test_float64_example_data(digits: DigitsModel, tmp_path: Path) -> None:
    example = tmp_path / "f64.npz"
    np.savez(example, image=np.load(digits.calibration)["image"].astype(np.float64))
    report = compress(CompressRequest(model=digits.pt2, precision="fp32", example=example))
    assert report.steps[0].name == "export"


def test_an_op_the_exporter_cannot_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "inv.py").write_text(
        "import torch\n\n\nclass Inv(torch.nn.Module):\n"
        "    def forward(self, x):\n        return torch.linalg.inv(x)\n\n\n"
        "def model():\n    return Inv()\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompressionError) as info:
        compress(CompressRequest(model="inv:model", input_shape=(2, 3, 3)))
    assert str(info.value).startswith("export failed on inv.model.factory.json: ")
    assert {p.name for p in tmp_path.iterdir()} - {"__pycache__"} == {"inv.py"}


def test_missing_calibration_file(digits: DigitsModel, tmp_path: Path) -> None:
    missing = tmp_path / "nope.npz"
    with pytest.raises(DataError, match=f"int8-static: calibration file {missing}: no such file"):
        compress(CompressRequest(model=digits.onnx, precision="int8-static", calibration=missing))


def test_two_dimensional_labels(digits: DigitsModel, tmp_path: Path) -> None:
    data = np.load(digits.validation)
    bad = tmp_path / "val2d.npz"
    np.savez(bad, image=data["image"], labels=data["labels"][:, None])
    with pytest.raises(DataError, match=r"'labels' must hold one class per sample \(shape \[N\]\)"):
        compress(CompressRequest(model=digits.onnx, precision="fp16", validation=bad))


def test_fused_ops_are_refused_for_an_old_target(digits: DigitsModel) -> None:
    with pytest.raises(
        TargetError, match=r"com\.microsoft\.\w+ \(from ONNX Runtime's graph optimizer\)"
    ):
        compress(CompressRequest(model=digits.onnx, precision="fp32", optimize="extended",
                                 target_ort="1.16"))  # fmt: skip
    basic = compress(CompressRequest(model=digits.onnx, precision="fp32", optimize="basic",
                                     target_ort="1.16"))  # fmt: skip
    assert basic.steps[-1].name == "target"
