"""`--keep-float`: named nodes left float in fp16 and int8 models, and the names refused.

On the digits CNN trained here (3 Conv, 2 Gemm) and on a model with an If (tests/host/compress/
test_wild.py), through the library; the refusals through the CLI too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgeopt.host.cli import cli
from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.errors import ModelError
from tests.corpus import CORPUS, fetch, write_data
from tests.host.compress.test_wild import if_model, weight
from tests.models import DigitsModel


def _nodes(digits: DigitsModel, op_type: str) -> list[str]:
    reference = compress(CompressRequest(model=digits.onnx, precision="fp32")).artifact
    return [n.name for n in onnx.load(str(reference)).graph.node if n.op_type == op_type]


@pytest.mark.parametrize(
    ("precision", "op_type", "kept_as"),
    # ONNX Runtime's dynamic quantizer splits a Gemm into MatMul + Add: the kept one stays a
    # float MatMul named <name>_MatMul.
    [("int8-static", "Conv", "Conv"), ("int8-dynamic", "Gemm", "MatMul")],
)
def test_int8_keeps_the_named_node_float(
    digits: DigitsModel, precision: str, op_type: str, kept_as: str
) -> None:
    name = _nodes(digits, op_type)[0]
    request = CompressRequest(model=digits.onnx, precision=precision,  # type: ignore[arg-type]
                              calibration=digits.calibration)  # fmt: skip
    full = compress(request)
    kept = compress(replace(request, keep_float=(name,)))
    before = full.weights_after.kept_float_compute()  # dynamic int8 leaves the Conv float
    after = kept.weights_after.kept_float_compute()
    assert kept_as not in before
    assert after == {**before, kept_as: 1}
    assert f"kept float as asked (--keep-float): 1 node: {name}" in kept.notes
    assert kept.artifact != full.artifact  # a variant of its own in the cache
    names = {n.name: n.op_type for n in onnx.load(str(kept.artifact)).graph.node}
    assert names.get(name, names.get(f"{name}_MatMul")) == kept_as  # the float operator


def test_fp16_keeps_the_named_node_float32(digits: DigitsModel) -> None:
    first, *others = _nodes(digits, "Conv")
    report = compress(CompressRequest(model=digits.onnx, precision="fp16", keep_float=(first,)))
    model = onnx.load(str(report.artifact))
    weights = {t.name: t.data_type for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.name == first)
    assert weights[node.input[1]] == onnx.TensorProto.FLOAT
    for name in others:
        other = next(n for n in model.graph.node if n.name == name)
        assert weights[other.input[1]] == onnx.TensorProto.FLOAT16


def test_names_the_model_does_not_have_or_that_stay_float_anyway(
    digits: DigitsModel, tmp_path: Path
) -> None:
    conv = _nodes(digits, "Conv")[0]
    relu = _nodes(digits, "Relu")[0]
    out = tmp_path / "x.onnx"
    request = CompressRequest(model=digits.onnx, precision="int8-static",
                              calibration=digits.calibration, output=out)  # fmt: skip
    with pytest.raises(ModelError) as nowhere:
        compress(replace(request, keep_float=("nosuch",)))
    assert str(nowhere.value) == "--keep-float: the model has no node 'nosuch'"
    with pytest.raises(ModelError) as near:
        compress(replace(request, keep_float=(conv + "x",)))
    assert str(near.value).startswith(
        f"--keep-float: the model has no node '{conv}x'; did you mean {conv}"
    )
    with pytest.raises(ModelError) as relu_error:
        compress(replace(request, keep_float=(relu,)))
    assert str(relu_error.value) == (
        f"--keep-float: {relu} is a Relu node, which int8-static does not convert (it converts "
        "Conv, ConvTranspose, GRU, Gather, Gemm, LSTM, MatMul): it stays float anyway"
    )
    with pytest.raises(ModelError) as int4:
        compress(replace(request, precision="int4-weight", keep_float=(conv,)))
    assert str(int4.value) == (
        "--keep-float applies to fp16, int8-dynamic and int8-static; int4-weight has no nodes "
        "to leave out"
    )
    assert list(tmp_path.iterdir()) == []  # nothing written
    # The fp32 reference every precision starts from takes the list and keeps everything.
    reference = compress(replace(request, precision="fp32", keep_float=(conv,), output=None))
    assert reference.notes == () and reference.weights_after.share("float32") == 1.0


def test_nodes_inside_if_bodies_are_named_by_their_path(tmp_path: Path) -> None:
    # Its nodes are unnamed: they become If_0, MatMul_0 (else body) and MatMul_1 (then body).
    path = if_model(tmp_path)
    data = tmp_path / "if.npz"
    np.savez(data, x=weight(16, 32), flag=np.array(True))
    request = CompressRequest(model=path, precision="int8-dynamic", validation=data,
                              keep_float=("If_0/then_branch/MatMul_1",))  # fmt: skip
    report = compress(request)
    # The else body's MatMul is quantized, the then body's kept float.
    assert report.weights_after.kinds(("int8",), subgraph=True) == {"MatMul": 1}
    assert report.weights_after.kinds(("float32",), subgraph=True) == {"MatMul": 1}
    with pytest.raises(ModelError) as static:
        compress(replace(request, precision="int8-static", calibration=data))
    assert str(static.value) == (
        "--keep-float: If_0/then_branch/MatMul_1 is inside a control-flow body, which "
        "int8-static does not enter: it stays float anyway"
    )


def test_the_cli_refuses_an_unknown_node_in_one_line(digits: DigitsModel, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli, [
        "compress", str(digits.onnx), "--precision", "int8-static", "--calibration",
        str(digits.calibration), "--keep-float", "nosuch", "-o", str(out),
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 1
    assert result.output == "Error: --keep-float: the model has no node 'nosuch'\n"
    assert not out.exists()


def test_static_int8_keeps_a_named_lstm_float(tmp_path: Path) -> None:
    """Static int8 quantizes LSTMs dynamically after the QDQ pass: the kept one is left out of
    that pass too (openWakeWord's wake-word classifier, 2 LSTM, from the public corpus)."""
    model = next(m for m in CORPUS if m.key == "oww-mycroft-lstm")
    path = fetch((model,))[model.key]
    request = CompressRequest(model=path, precision="int8-static",
                              calibration=write_data(model, tmp_path, 8, 1))  # fmt: skip
    reference = compress(replace(request, precision="fp32")).artifact
    lstm = next(n.name for n in onnx.load(str(reference)).graph.node if n.op_type == "LSTM")
    assert "LSTM" not in compress(request).weights_after.kept_float_compute()
    kept = compress(replace(request, keep_float=(lstm,)))
    assert kept.weights_after.kept_float_compute().get("LSTM") == 1
    assert kept.weights_after.kinds(("int8",)).get("LSTM") == 1  # the other one


def _saved(graph: onnx.GraphProto, tmp_path: Path, x: np.ndarray) -> tuple[Path, Path]:
    """`graph` saved as an opset-17 model, and `x` (samples first) as its input data."""
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"{graph.name}.onnx"
    onnx.save(model, str(path))
    data = tmp_path / "x.npz"
    np.savez(data, x=x.astype(np.float32))
    return path, data


def test_a_node_the_optimizer_fuses_is_still_kept_float(tmp_path: Path) -> None:
    """ONNX Runtime's basic optimization, before quantizing, turns a MatMul and its Add into
    one Gemm named `<MatMul>/MatMulAddFusion`: keeping the MatMul float keeps that Gemm float."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("w1", (32, 16)), ("b1", (16,)), ("w2", (16, 8)))]  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm"),
         helper.make_node("Add", ["h", "b1"], ["hb"], name="bias"),
         helper.make_node("MatMul", ["hb", "w2"], ["y"], name="head")], "fusable",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])], initializer=inits,
    )  # fmt: skip
    path, data = _saved(graph, tmp_path, rng.normal(size=(16, 32)))
    request = CompressRequest(model=path, precision="int8-static", calibration=data)
    assert compress(request).weights_after.kept_float_compute() == {}
    kept = compress(replace(request, keep_float=("mm",)))
    nodes = {n.name: n.op_type for n in onnx.load(str(kept.artifact)).graph.node}
    assert nodes.get("mm/MatMulAddFusion") == "Gemm"  # fused, and left float
    assert kept.weights_after.kept_float_compute() == {"Gemm": 1}
    assert kept.weights_after.kinds(("int8",)) == {"MatMul": 1}
    # Dynamic int8 then splits that Gemm into `mm/MatMulAddFusion_MatMul` and an Add: it
    # stays float too (ALBERT's 35 MatMuls all quantize this way).
    dynamic = compress(replace(request, precision="int8-dynamic", keep_float=("mm",)))
    assert dynamic.weights_after.kinds(("int8",)) == {"MatMul": 1}
    assert dynamic.weights_after.kept_float_compute() == {"MatMul": 1}


def _residual_block(tmp_path: Path) -> tuple[Path, Path]:
    """A post-LN block: LayerNorm's output feeds two MatMuls and the residual Add; a third
    MatMul shares the first one's weight (as ALBERT's layers share theirs)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("g", (16,)), ("b", (16,)), ("w1", (16, 16)), ("w2", (16, 16)),
                          ("w3", (16, 4)))]  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], name="norm", axis=-1),
         helper.make_node("MatMul", ["ln", "w1"], ["a"], name="q"),
         helper.make_node("MatMul", ["ln", "w2"], ["c"], name="k"),
         helper.make_node("Add", ["a", "ln"], ["r"], name="residual"),
         helper.make_node("Add", ["r", "c"], ["s"], name="join"),
         helper.make_node("MatMul", ["s", "w3"], ["y"], name="head"),
         helper.make_node("MatMul", ["x", "w1"], ["z"], name="shared")], "block",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 4]),
         helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 8, 16])],
        initializer=inits,
    )  # fmt: skip
    return _saved(graph, tmp_path, rng.normal(size=(16, 8, 16)) * 3)


def _producers(path: Path, node: str) -> list[str]:
    graph = onnx.load(str(path)).graph
    made = {out: n.op_type for n in graph.node for out in n.output}
    made.update({t.name: "initializer" for t in graph.initializer})
    made.update({i.name: "input" for i in graph.input})
    target = next(n for n in graph.node if n.name == node)
    return [made[name] for name in target.input]


def test_float_readers_of_a_quantized_tensor_read_it_before_quantization(tmp_path: Path) -> None:
    """ONNX Runtime's QDQ quantizer points every reader of a quantized tensor at its
    DequantizeLinear: the residual Add (float) read the LayerNorm's output through int8, and
    so did a node kept float whose input another node quantized. Here they read the float
    tensor, a kept-float node sharing a quantized weight reads that weight in float, and the
    model's outputs are written by the nodes that compute them."""
    path, data = _residual_block(tmp_path)
    request = CompressRequest(model=path, precision="int8-static", calibration=data)
    full = compress(request)
    assert _producers(full.artifact, "q")[0] == "DequantizeLinear"  # converted: reads int8
    assert _producers(full.artifact, "residual") == ["MatMul", "LayerNormalization"]
    # The model's own output comes from the node that computes it, not rounded to 256 levels.
    writers = {o: n.name for n in onnx.load(str(full.artifact)).graph.node for o in n.output}
    assert writers["y"] == "head"
    kept = compress(replace(request, keep_float=("k", "shared")))
    assert _producers(kept.artifact, "q") == ["DequantizeLinear", "DequantizeLinear"]
    assert _producers(kept.artifact, "k") == ["LayerNormalization", "initializer"]
    assert _producers(kept.artifact, "shared") == ["input", "initializer"]
    weights = {t.name: t for t in onnx.load(str(kept.artifact)).graph.initializer}
    shared = next(n for n in onnx.load(str(kept.artifact)).graph.node if n.name == "shared")
    assert weights[shared.input[1]].data_type == onnx.TensorProto.FLOAT
    # So the kept-float node's output is the float model's, to float rounding.
    import onnxruntime as ort

    x = np.load(data)["x"][:1]
    want = ort.InferenceSession(str(path)).run(["z"], {"x": x})[0]
    got = ort.InferenceSession(str(kept.artifact)).run(["z"], {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_every_converted_node_still_runs_int8_once_float_readers_read_float(
    tmp_path: Path,
) -> None:
    """oww-melspec's mel MatMul (a 4-D input times a weight) feeds a float Clip: with the Clip
    reading the MatMul's float output, ONNX Runtime ran that MatMul in float on a weight
    dequantized every run (0.43x fp32 instead of 0.28x). Such a node keeps its output's round
    trip, and ONNX Runtime's optimized graph runs no converted node in float."""
    from edgeopt.host.compress.quantize import unfused

    model = next(m for m in CORPUS if m.key == "oww-melspec")
    report = compress(CompressRequest(model=fetch((model,))[model.key], precision="int8-static",
                                      calibration=write_data(model, tmp_path, 8, 1)))  # fmt: skip
    artifact = onnx.load(str(report.artifact))
    assert unfused(artifact) == set()
    writers = {o: n for n in artifact.graph.node for o in n.output}
    clip = next(n for n in artifact.graph.node if n.op_type == "Clip")
    assert writers[clip.input[0]].op_type == "DequantizeLinear"  # the round trip kept
