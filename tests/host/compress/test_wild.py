"""Models shaped the way other exporters shape them, built op by op where one detail matters.

The corpus test (tests/integration/test_corpus.py) runs the same code on real public models;
here each case isolates one trait: weights in Constant nodes (dense, sparse, attribute lists),
weights inside If bodies, initializers listed as graph inputs (IR 3), external data whose file
is missing, an unknown operator inside a subgraph, data that does not fit a fixed input, a
model already in int8, and the terminal staying quiet.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.compress import data as datasets
from edgeopt.host.compress.quiet import OutputLog, captured
from edgeopt.host.errors import DataError, ModelError, NothingQuantized, UnsupportedModel
from tests.models import DigitsModel

RNG = np.random.default_rng(0)
F = onnx.TensorProto.FLOAT


def weight(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.3).astype(np.float32)


def constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array))


def sparse_constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    flat = array.reshape(-1)
    nz = np.flatnonzero(flat)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(flat[nz], f"{name}_values"),
        numpy_helper.from_array(nz.astype(np.int64), f"{name}_indices"),
        list(array.shape),
    )
    return helper.make_node("Constant", [], [name], sparse_value=sparse)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feed)[0])


def mlp_in_constants(tmp_path: Path) -> Path:
    """x[N, 64] -> MatMul(dense Constant) -> Add(value_floats) -> Relu -> MatMul(sparse)."""
    w1, w2 = weight(64, 128), weight(128, 10)
    w2[np.abs(w2) < 0.2] = 0.0  # sparse enough to be worth storing sparse
    nodes = [
        constant("w1", w1),
        helper.make_node("Constant", [], ["b1"], value_floats=list(weight(128).tolist())),
        sparse_constant("w2", w2),
        helper.make_node("Constant", [], ["label"], value_string="kept as it is"),
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "constants",
        [helper.make_tensor_value_info("x", F, ["N", 64])],
        [helper.make_tensor_value_info("y", F, ["N", 10])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return save(model, tmp_path / "constants.onnx")


def data_for(path: Path, tmp_path: Path, samples: int = 32, name: str = "data") -> Path:
    dataset = datasets.synthesize(onnx.load(str(path)), samples=samples, seed=3)
    out = tmp_path / f"{name}.npz"
    np.savez(out, **dataset.arrays, **dataset.constants)  # type: ignore[arg-type]
    return out


def test_weights_in_constant_nodes_are_quantized(tmp_path: Path) -> None:
    path = mlp_in_constants(tmp_path)
    validation = data_for(path, tmp_path)
    reference = compress(CompressRequest(model=path, precision="fp32"))
    # Normalizing changes where the weights live, not what the model computes.
    feed = {"x": weight(4, 64)}
    np.testing.assert_array_equal(run(reference.artifact, feed), run(path, feed))
    assert reference.before.parameters == 64 * 128 + 128 + 128 * 10
    assert reference.notes == (
        "3 Constant nodes (0.04 MiB) became initializers, 1 sparse made dense",
    )
    kept = onnx.load(str(reference.artifact))
    assert [n.op_type for n in kept.graph.node].count("Constant") == 1  # the string stays

    report = compress(CompressRequest(model=path, precision="int8-dynamic", validation=validation))
    assert report.weights_after.quantized_share == pytest.approx(1.0)
    assert report.weights_after.summary() == "int8: 100.0% of weight bytes (2 MatMul)"
    assert report.validation is not None and report.validation.cosine > 0.99


def if_model(tmp_path: Path, *, unknown_op: bool = False) -> Path:
    """y = If(flag, then: x @ W1 (a Constant), else: x @ W2 (an initializer of the body))."""
    then_nodes = [
        constant("w_then", weight(32, 16)),
        helper.make_node("MatMul", ["x", "w_then"], ["t"]),
    ]
    if unknown_op:
        then_nodes.append(helper.make_node("Frobnicate", ["t"], ["t2"], domain="com.example"))
    then_out = "t2" if unknown_op else "t"
    then_branch = helper.make_graph(
        then_nodes, "then", [], [helper.make_tensor_value_info(then_out, F, ["N", 16])]
    )
    else_branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_else"], ["e"])], "else", [],
        [helper.make_tensor_value_info("e", F, ["N", 16])],
        initializer=[numpy_helper.from_array(weight(32, 16), "w_else")],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        "control-flow",
        [helper.make_tensor_value_info("x", F, ["N", 32]),
         helper.make_tensor_value_info("flag", onnx.TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", F, ["N", 16])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17)]
    if unknown_op:
        opsets.append(helper.make_opsetid("com.example", 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    path = tmp_path / ("if-unknown.onnx" if unknown_op else "if.onnx")
    if unknown_op:
        onnx.save(model, str(path))  # the checker would refuse the unknown domain
        return path
    return save(model, path)


def test_weights_inside_if_bodies(tmp_path: Path) -> None:
    path = if_model(tmp_path)
    data = tmp_path / "if.npz"
    np.savez(data, x=weight(16, 32), flag=np.array(True))
    report = compress(CompressRequest(model=path, precision="int8-dynamic", validation=data))
    assert report.notes[0] == (
        "1 Constant nodes (0.00 MiB) became initializers, 1 inside control-flow bodies"
    )
    after = report.weights_after
    assert after.quantized_share == pytest.approx(1.0)
    assert after.subgraph_elements["int8"] == 2 * 32 * 16
    assert report.validation is not None and report.validation.cosine > 0.99
    # The flag is a scalar: fed whole to every batch, not cut into samples.
    for flag in (True, False):
        feed = {"x": weight(3, 32), "flag": np.array(flag)}
        np.testing.assert_allclose(run(report.artifact, feed), run(path, feed), rtol=0.1, atol=0.1)

    with pytest.raises(NothingQuantized) as caught:
        compress(CompressRequest(model=path, precision="int8-static", calibration=data))
    assert str(caught.value) == (
        "int8-static changed nothing: no weight was quantized (the weights sit in 2 MatMul); "
        "ONNX Runtime's static quantizer does not enter If/Loop/Scan bodies, which hold 100% of "
        "this model's weights: use --precision int8-dynamic (it quantizes MatMul, Gemm and LSTM "
        "weights there)"
    )


def test_an_unknown_operator_inside_a_subgraph(tmp_path: Path) -> None:
    path = if_model(tmp_path, unknown_op=True)
    with pytest.raises(UnsupportedModel) as caught:
        compress(CompressRequest(model=path, precision="int8-dynamic"))
    assert str(caught.value).startswith("ONNX Runtime cannot load if-unknown.onnx:")
    assert "com.example:Frobnicate(-1) is not a registered function/op" in str(caught.value)


def test_initializers_listed_as_inputs_in_an_ir3_model(tmp_path: Path) -> None:
    w = weight(16, 8)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "ir3",
        [helper.make_tensor_value_info("x", F, ["N", 16]),
         helper.make_tensor_value_info("w", F, [16, 8])],
        [helper.make_tensor_value_info("y", F, ["N", 8])],
        initializer=[numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3
    path = save(model, tmp_path / "ir3.onnx")
    report = compress(CompressRequest(model=path, precision="int8-dynamic"))
    assert (
        "1 initializers were also listed as graph inputs and are now constants; IR version 3 -> 4"
        in report.notes
    )
    assert report.weights_after.quantized_share == pytest.approx(1.0)
    inputs = [i.name for i in onnx.load(str(report.artifact)).graph.input]
    assert inputs == ["x"]


def test_external_data_whose_file_is_missing(tmp_path: Path) -> None:
    path = mlp_in_constants(tmp_path)
    model = onnx.load(str(path))
    normalized = compress(CompressRequest(model=path, precision="fp32")).artifact
    model = onnx.load(str(normalized))
    folder = tmp_path / "external"
    folder.mkdir()
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True,
                    location="m.weights", size_threshold=0)  # fmt: skip
    ok = compress(CompressRequest(model=folder / "m.onnx", precision="int8-dynamic"))
    assert "external data loaded from m.weights" in ok.notes
    (folder / "m.weights").unlink()
    with pytest.raises(ModelError) as caught:
        compress(CompressRequest(model=folder / "m.onnx", precision="int8-dynamic"))
    assert str(caught.value).startswith(
        f"{folder / 'm.onnx'}: external data file 'm.weights' (holding tensor "
    )
    assert str(caught.value).endswith(
        f"is missing; it must sit beside the model at {folder / 'm.weights'}"
    )


def test_calibration_that_does_not_fit_a_fixed_input(digits: DigitsModel, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, image=np.zeros((4, 1, 9, 8), np.float32))
    with pytest.raises(DataError) as caught:
        compress(CompressRequest(model=digits.onnx, precision="int8-static", calibration=bad))
    assert str(caught.value) == (
        f"calibration data {bad}: 'image' has 9 on axis 2, the model wants 8 "
        "(model input [?, 1, 8, 8], data [4, 1, 9, 8])"
    )


def test_dynamic_int8_of_an_all_conv_model_is_refused_with_advice(tmp_path: Path) -> None:
    nodes = [
        constant("k1", weight(8, 3, 3, 3)), constant("k2", weight(4, 8, 3, 3)),
        helper.make_node("Conv", ["x", "k1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Conv", ["b", "k2"], ["y"], pads=[1, 1, 1, 1]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", F, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", F, ["N", 4, 16, 16])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = save(model, tmp_path / "convs.onnx")
    out = tmp_path / "out.onnx"
    with pytest.raises(NothingQuantized) as caught:
        compress(CompressRequest(model=path, precision="int8-dynamic", output=out))
    assert str(caught.value) == (
        "int8-dynamic changed nothing: no weight was quantized (the weights sit in 2 Conv); "
        "dynamic int8 leaves Conv float (ONNX Runtime's ConvInteger has no fast kernels); this "
        "model's weights are mostly in convolutions: use --precision int8-static with "
        "--calibration DATA.npz"
    )
    assert not out.exists()
    calibration = data_for(path, tmp_path, name="calib")
    report = compress(CompressRequest(model=path, precision="int8-static", calibration=calibration))
    assert report.weights_after.summary() == "int8: 100.0% of weight bytes (2 Conv)"


def test_quantizing_an_int8_model_again_is_refused(digits: DigitsModel, tmp_path: Path) -> None:
    first = tmp_path / "int8.onnx"
    compress(CompressRequest(model=digits.onnx, precision="int8-static",
                             calibration=digits.calibration, output=first))  # fmt: skip
    with pytest.raises(NothingQuantized) as caught:
        compress(CompressRequest(model=first, precision="int8-static",
                                 calibration=digits.calibration))  # fmt: skip
    assert str(caught.value).startswith(
        "int8-static changed nothing: every weight of this model is already int8 (int8: 100.0% "
    )


def test_library_output_goes_to_the_log_not_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = OutputLog(tmp_path / "logs" / "compress.log")
    with captured(log, "a test"):
        os.write(1, b"C++ says hello on fd 1\n")
        os.write(2, b"Traceback (most recent call last): on fd 2\n")
        print("python print")
    assert capfd.readouterr() == ("", "")
    text = log.file.read_text()
    assert "=== " in text and "a test" in text
    for line in ("C++ says hello on fd 1", "Traceback (most recent call last)", "python print"):
        assert line in text
    with captured(OutputLog(passthrough=True), "verbose"):
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


def test_sharing_constants_keeps_sibling_bodies_apart() -> None:
    """Two If branches may each name a tensor W; only the identical one may be shared."""
    from edgeopt.host.compress.tidy import share_identical_constants

    ones, twos = np.ones((16, 16), np.float32), np.full((16, 16), 2.0, np.float32)

    def branch(name: str, value: np.ndarray) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], [f"{name}_y"])], name, [],
            [helper.make_tensor_value_info(f"{name}_y", F, [1, 16])],
            initializer=[numpy_helper.from_array(value, "W")],
        )  # fmt: skip

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "T"], ["t"]),
         helper.make_node("If", ["flag"], ["y"], then_branch=branch("then", ones),
                          else_branch=branch("else", twos)),
         helper.make_node("Add", ["t", "y"], ["z"])],
        "siblings",
        [helper.make_tensor_value_info("x", F, [1, 16]),
         helper.make_tensor_value_info("flag", onnx.TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("z", F, [1, 16])],
        initializer=[numpy_helper.from_array(ones, "T")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    before = model.SerializeToString()
    assert share_identical_constants(model) == 1  # then's W is T; else's W stays its own
    x = weight(1, 16)
    for flag in (True, False):
        feed = {"x": x, "flag": np.array(flag)}
        expected = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, feed)
        got = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, feed)  # fmt: skip
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)


def test_an_ir3_model_with_weights_in_constants(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [constant("w", weight(16, 8)), helper.make_node("MatMul", ["x", "w"], ["y"])], "ir3c",
        [helper.make_tensor_value_info("x", F, ["N", 16])],
        [helper.make_tensor_value_info("y", F, ["N", 8])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3
    path = save(model, tmp_path / "ir3c.onnx")
    report = compress(CompressRequest(model=path, precision="int8-dynamic"))
    assert "IR version 3 -> 4: initializers that are not graph inputs need it" in report.notes
    assert report.weights_after.quantized_share == pytest.approx(1.0)


@pytest.mark.parametrize("location", ["../secret.weights", "/etc/hostname"])
def test_external_data_outside_the_models_folder_is_refused(tmp_path: Path, location: str) -> None:
    """A model from elsewhere must not have the host read any file it names into a model."""
    path = mlp_in_constants(tmp_path)
    normalized = compress(CompressRequest(model=path, precision="fp32")).artifact
    folder = tmp_path / "external"
    folder.mkdir()
    onnx.save_model(onnx.load(str(normalized)), str(folder / "m.onnx"),
                    save_as_external_data=True, location="m.weights",
                    size_threshold=0)  # fmt: skip
    (folder / "m.weights").rename(tmp_path / "secret.weights")
    model = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(folder / "m.onnx"))
    with pytest.raises(ModelError) as caught:
        compress(CompressRequest(model=folder / "m.onnx", precision="int8-dynamic"))
    assert str(caught.value).startswith(
        f"{folder / 'm.onnx'}: external data file {location!r} (holding tensor "
    )
    assert str(caught.value).endswith(
        "is outside the model's folder; refused: external data must sit beside the model"
    )
