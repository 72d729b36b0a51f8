"""fp16 keeps float32 where values pass float16's range: on graphs built here to overflow, and
on magika and PP-OCR's detector of the public corpus, which fp16 used to break (inf on every
sample; cosine 0.64 from a BatchNormalization variance of 9.8e7 clamped to 65504)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.host.compress import CompressRequest, Gate, compress
from edgeopt.host.compress.probe import FP16_LIMIT, fp16_overflow
from edgeopt.host.compress.sensitivity import search
from edgeopt.host.errors import AccuracyGateFailed
from tests.corpus import CORPUS, fetch, write_data


def _overflowing(tmp_path: Path) -> tuple[Path, Path]:
    """x [n, 4] in [1, 101) -> MatMul (x 1000: up to 1e5) -> Mul 1e-3 -> Add a weight of 1e6
    -> Mul 1e-6 -> Relu -> MatMul (x 0.5) -> y: the middle tensors and the weight pass
    float16's range; relu and head do not."""
    w = np.eye(4, dtype=np.float32) * 1000
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["big"], name="scale_up"),
        helper.make_node("Mul", ["big", "milli"], ["back"], name="scale_down"),
        helper.make_node("Add", ["back", "huge"], ["shifted"], name="shift"),
        helper.make_node("Mul", ["shifted", "micro"], ["small"], name="unshift"),
        helper.make_node("Relu", ["small"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array(1e-3, np.float32), "milli"),
         numpy_helper.from_array(np.full(4, 1e6, np.float32), "huge"),
         numpy_helper.from_array(np.array(1e-6, np.float32), "micro"),
         numpy_helper.from_array(np.eye(4, dtype=np.float32) / 2, "w2")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "overflow.onnx"
    onnx.save(model, str(path))
    data = tmp_path / "data.npz"
    x = np.random.default_rng(0).random((8, 4)).astype(np.float32) * 100 + 1
    np.savez(data, x=x)
    return path, data


def test_the_nodes_touching_a_tensor_past_the_range_are_named(tmp_path: Path) -> None:
    path, data = _overflowing(tmp_path)
    feeds = [{"x": x[None]} for x in np.load(data)["x"]]
    found = fp16_overflow(onnx.load(str(path)), feeds)
    # big (up to 4e5): its producer and reader; huge (the 1e6 weight) and shifted: their
    # readers and producers. relu reads `small` (about 1) and stays float16, as head does.
    assert found.nodes == ("scale_up", "scale_down", "shift", "unshift")
    assert [name for name, _ in found.tensors] == ["shifted", "huge", "big"]
    assert all(peak > FP16_LIMIT for _, peak in found.tensors)


def test_fp16_keeps_them_float32_and_passes_them_on_without_a_float16_round_trip(
    tmp_path: Path,
) -> None:
    path, data = _overflowing(tmp_path)
    report = compress(CompressRequest(model=path, precision="fp16", validation=data,
                                      gate=Gate(min_cosine=0.9999)))  # fmt: skip
    assert report.validation is not None and report.validation.cosine >= 0.9999
    assert (
        "kept float32 where values pass float16's range on the data (|x| > 32752; 'shifted' "
        "reaches 1e+06): 4 nodes: scale_up, scale_down, shift, unshift"
    ) in report.notes
    model = onnx.load(str(report.artifact))
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert weights["w"] == weights["huge"] == TensorProto.FLOAT  # not clamped to 65504
    assert weights["w2"] == TensorProto.FLOAT16
    # The four float32 nodes read each other's outputs directly: the only casts left are
    # float16's way into relu and float32's way out of head.
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2, [(n.name, list(n.input)) for n in casts]
    session = ort.InferenceSession(str(report.artifact), providers=["CPUExecutionProvider"])
    x = np.load(data)["x"]
    np.testing.assert_allclose(session.run(None, {"x": x})[0], (x + 1e6) * 1e-6 / 2, rtol=1e-3)


def test_without_the_rule_the_same_graph_gives_inf(tmp_path: Path) -> None:
    """What the rule prevents, shown with ONNX Runtime's converter alone."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path, data = _overflowing(tmp_path)
    converted = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    session = ort.InferenceSession(converted.SerializeToString(),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    out = session.run(None, {"x": np.load(data)["x"]})[0]
    assert not np.isfinite(out).all() or not np.allclose(out, 0.5, rtol=1e-2)


def _cancelling(tmp_path: Path) -> tuple[Path, Path]:
    """x @ wa + c1 - c2 @ wh, with c1 and c2 in [1000, 1001): float16 stores them 0.5 apart
    (its spacing at 1000), and their difference is about as large as the projection, so the
    Add and the Sub must keep them, and the tensor between them, in float32. (ONNX Runtime's
    CPU kernels compute such float16 nodes in float32; weights stay rounded.)"""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("MatMul", ["x", "wa"], ["a"], name="proj_a"),
        helper.make_node("Add", ["a", "c1"], ["a1"], name="offset_a"),
        helper.make_node("Sub", ["a1", "c2"], ["d"], name="diff"),
        helper.make_node("MatMul", ["d", "wh"], ["y"], name="head"),
    ]
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 8)).astype(np.float32), "wa"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 8)).astype(np.float32), "wh"),
        numpy_helper.from_array((1000 + rng.random(8)).astype(np.float32), "c1"),
        numpy_helper.from_array((1000 + rng.random(8)).astype(np.float32), "c2"),
    ]
    graph = helper.make_graph(
        nodes, "cancel",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        weights,
    )  # fmt: skip
    path = tmp_path / "cancel.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    data = tmp_path / "cancel.npz"
    np.savez(data, x=rng.random((16, 8)).astype(np.float32))
    return path, data


def test_fp16_auto_keeps_the_offsets_float32(tmp_path: Path) -> None:
    path, data = _cancelling(tmp_path)
    request = CompressRequest(model=path, precision="fp16", validation=data,
                              gate=Gate(min_cosine=0.999))  # fmt: skip
    with pytest.raises(AccuracyGateFailed):
        compress(request)
    found = search(request, "auto")
    assert set(found.kept) == {"offset_a", "diff"}
    assert found.ranking.top(2) == found.kept  # what float16 costs each alone, emulated
    assert found.report.validation is not None and found.report.validation.cosine >= 0.999
    model = onnx.load(str(found.report.artifact))
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert types["wa"] == types["wh"] == TensorProto.FLOAT16
    assert types["c1"] == types["c2"] == TensorProto.FLOAT


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "kept"),
    [("magika-v1", 17), ("ppocr-det", 1)],
)
def test_corpus_models_fp16_broke_now_pass(key: str, kept: int, tmp_path: Path) -> None:
    model = next(m for m in CORPUS if m.key == key)
    report = compress(CompressRequest(
        model=fetch((model,))[key], precision="fp16", validation=write_data(model, tmp_path, 4, 2),
        gate=Gate(min_cosine=0.99),
    ))  # fmt: skip
    assert report.validation is not None and report.validation.cosine >= 0.99
    note = next(n for n in report.notes if n.startswith("kept float32 where values pass"))
    assert f": {kept} node{'s' if kept > 1 else ''}: " in note
