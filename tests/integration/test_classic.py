"""Classic ML models end to end against real agents: scikit-learn and LightGBM converted to
ONNX with their converters' defaults (ai.onnx.ml operators, ZipMap, string labels and inputs)
go through compress, deploy, infer, bench, profile and tune, and a board answers what the
library itself predicts on the host.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from edgeopt.host.compress import CompressRequest, Gate, compress
from edgeopt.host.errors import AgentError, DataError, NothingQuantized, UnsupportedModel
from edgeopt.host.transport.client import AgentClient
from edgeopt.proto.plan import Precision
from tests import classic
from tests.conftest import RunningAgent, start_agent

ROOT = Path(__file__).resolve().parents[2]
OLD_ORT_AGENT = ROOT / ".venv" / "grpc-1.70" / "bin" / "python"

pytestmark = pytest.mark.slow


def edgeopt(tmp_path: Path, agent: RunningAgent, *args: str) -> Result:
    inv = tmp_path / "edgeopt.toml"
    inv.write_text(f'[devices.b]\naddress = "{agent.address}"\ntoken_file = "{agent.token_file}"\n')
    base = ["--inventory", str(inv), "--state", str(tmp_path / "state.db"), "--deadline", "10"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def probabilities(maps: list[dict[Any, Any]], classes: list[Any]) -> np.ndarray:
    """ZipMap's maps as the [samples, classes] matrix predict_proba gives."""
    return np.asarray([[m[c] for c in classes] for m in maps], dtype=np.float64)


@pytest.mark.parametrize("make", [classic.forest, classic.mlp_pipeline, classic.lightgbm,
                                  classic.tabular_pipeline], ids=lambda f: f.__name__)  # fmt: skip
def test_a_board_predicts_what_the_library_predicts(
    make: Callable[[Path], classic.ClassicModel],
    agent_factory: Callable[..., RunningAgent],
    tmp_path: Path,
) -> None:
    model = make(tmp_path)
    agent = agent_factory()
    np.savez(tmp_path / "x.npz", **model.inputs)  # type: ignore[arg-type]
    deployed = edgeopt(tmp_path, agent, "deploy", str(model.onnx), "--device", "b",
                       "--name", "classic")  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    out = tmp_path / "y.npz"
    infer = edgeopt(tmp_path, agent, "infer", "classic", "--device", "b", "--input",
                    str(tmp_path / "x.npz"), "-o", str(out))  # fmt: skip
    assert infer.exit_code == 0, infer.output
    assert f"written {out}, {out.with_suffix('.json')}" in infer.output
    assert "top class per element" in infer.output  # the ZipMap, summarized

    # The tensors in an .npz numpy reads without pickle; the maps in JSON beside it.
    with np.load(out, allow_pickle=False) as saved:
        ((label_name, labels),) = list(saved.items())
    side = json.loads(out.with_suffix(".json").read_text())
    ((maps_name, maps),) = list(side.items())
    assert maps["type"].startswith("seq(map(") and maps["type"].endswith(",float32))")
    assert labels.tolist() == [str(c) if labels.dtype.kind == "U" else c
                               for c in model.predict().tolist()]  # fmt: skip
    keys = [str(c) for c in model.classes]  # JSON's keys are strings; the type says int64 or str
    np.testing.assert_allclose(probabilities(maps["value"], keys), model.predict_proba(),
                               atol=1e-5)  # fmt: skip

    # --json carries the same, typed.
    as_json = edgeopt(tmp_path, agent, "infer", "classic", "--device", "b", "--input",
                      str(tmp_path / "x.npz"), "--json")  # fmt: skip
    outputs = json.loads(as_json.stdout)["outputs"]
    assert outputs[maps_name]["length"] == len(labels)
    assert outputs[label_name]["shape"] == [len(labels)]


def test_compress_converts_the_linear_parts_and_refuses_the_trees_with_the_reason(
    tmp_path: Path,
) -> None:
    mlp = classic.mlp_pipeline(tmp_path)
    np.savez(tmp_path / "iris.npz", **mlp.inputs)  # type: ignore[arg-type]
    precisions: tuple[Precision, ...] = ("fp16", "int8-dynamic", "int8-static")
    for precision in precisions:
        report = compress(CompressRequest(
            model=mlp.onnx, precision=precision, calibration=tmp_path / "iris.npz",
            validation=tmp_path / "iris.npz", gate=Gate(min_cosine=0.99)))  # fmt: skip
        # The gate compared the ZipMap's class scores, not the string labels.
        assert report.validation is not None and report.validation.cosine >= 0.99
        assert report.validation.top1_agreement == 1.0
        assert report.after.size_bytes < report.before.size_bytes
    forest = classic.forest(tmp_path)
    for precision in precisions[:2]:
        with pytest.raises(NothingQuantized) as refused:
            compress(CompressRequest(model=forest.onnx, precision=precision))
        assert str(refused.value) == (
            f"{precision} changed nothing: the model has no weight tensors to convert (its work "
            "is in TreeEnsembleClassifier, ZipMap, ai.onnx.ml operators whose parameters are "
            "attributes that no precision reaches: run it as fp32)"
        )
    with pytest.raises(UnsupportedModel, match="no precision reaches: run it as fp32"):
        compress(CompressRequest(model=forest.onnx, precision="int4-weight"))


def test_bench_profile_and_tune_take_classic_models(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    model = classic.tabular_pipeline(tmp_path)  # a string input: made-up text must fit it
    agent = agent_factory()
    bench = edgeopt(tmp_path, agent, "bench", "run", str(model.onnx), "--device", "b",
                    "--threads", "1", "--max-seconds", "1", "--json")  # fmt: skip
    assert bench.exit_code == 0, bench.output
    cases = json.loads(bench.stdout)["cases"]
    assert [c["status"] for c in cases] == ["ok"] and cases[0]["p50_ms"] > 0
    profile = edgeopt(tmp_path, agent, "profile", str(model.onnx), "--device", "b", "--json")
    assert profile.exit_code == 0, profile.output
    ops = {o["op_type"] for o in json.loads(profile.stdout)["op_types"]}
    assert {"LinearClassifier", "OneHotEncoder", "ZipMap"} <= ops

    mlp = classic.mlp_pipeline(tmp_path)
    np.savez(tmp_path / "iris.npz", **mlp.inputs)  # type: ignore[arg-type]
    tuned = edgeopt(tmp_path, agent, "deploy", str(mlp.onnx), "--device", "b", "--name", "iris",
                    "--tune", "--calibration", str(tmp_path / "iris.npz"), "--validate",
                    str(tmp_path / "iris.npz"), "--min-cosine", "0.99", "--json")  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    (device,) = json.loads(tuned.stdout)["devices"]
    assert device["outcome"] == "ok"
    trials = device["tuning"]["trials"]
    checked = [t for t in trials if t["cosine"] is not None]
    assert checked and all(t["cosine"] >= 0.99 for t in checked if t["passed"])


def test_samples_along_the_first_axis_run_batch_by_batch(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    """A model exported for exactly one sample takes a file of 32: 32 runs, outputs joined."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(x, y)
    one = to_onnx(forest, initial_types=[("X", FloatTensorType([1, 64]))],
                  target_opset={"": 17, "ai.onnx.ml": 3})  # fmt: skip
    (tmp_path / "one.onnx").write_bytes(one.SerializeToString())
    agent = agent_factory()
    assert edgeopt(tmp_path, agent, "deploy", str(tmp_path / "one.onnx"), "--device", "b",
                   "--name", "one").exit_code == 0  # fmt: skip
    np.savez(tmp_path / "x.npz", X=x[:32])
    infer = edgeopt(tmp_path, agent, "infer", "one", "--device", "b", "--input",
                    str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"))  # fmt: skip
    assert infer.exit_code == 0, infer.output
    with np.load(tmp_path / "y.npz", allow_pickle=False) as saved:
        assert saved["output_label"].tolist() == forest.predict(x[:32]).tolist()
    maps = json.loads((tmp_path / "y.json").read_text())["output_probability"]["value"]
    assert len(maps) == 32
    np.testing.assert_allclose(probabilities(maps, [str(c) for c in range(10)]),
                               forest.predict_proba(x[:32]), atol=1e-5)  # fmt: skip

    # 32 samples and an input the model takes whole would be ambiguous: refused in words.
    np.savez(tmp_path / "odd.npz", X=x[:3, :32])
    odd = edgeopt(tmp_path, agent, "infer", "one", "--device", "b", "--input",
                  str(tmp_path / "odd.npz"))  # fmt: skip
    assert odd.exit_code == 1
    assert "input 'X' has shape [3, 32], the model wants [1, 64]" in odd.output


def test_maps_and_strings_both_ways_and_a_string_input_fed_numbers(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    """A DictVectorizer takes a map; a model whose outputs are sequences of maps with int64 keys
    and with string keys gives both; numbers for a text input are refused naming the input."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DictionaryType, FloatTensorType, StringTensorType
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows = [{"temp": 20.0 + i % 7, "vibration": float(i % 3), "load": float(i % 5)}
            for i in range(60)]  # fmt: skip
    labels = [int(r["vibration"] > 1 or r["temp"] > 24) for r in rows]
    pipeline = make_pipeline(DictVectorizer(sparse=False), LogisticRegression()).fit(rows, labels)
    onnx_model = to_onnx(pipeline, initial_types=[
        ("reading", DictionaryType(StringTensorType([]), FloatTensorType([])))],
        target_opset={"": 17, "ai.onnx.ml": 3})  # fmt: skip
    (tmp_path / "dv.onnx").write_bytes(onnx_model.SerializeToString())
    words = classic.tabular_pipeline(tmp_path)
    two_zipmaps = tmp_path / "zip.onnx"
    onnx.save(_two_zipmaps(), str(two_zipmaps))
    scores = np.asarray([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]], np.float32)
    agent = agent_factory()

    async def go() -> tuple[dict[str, Any], str]:
        async with AgentClient(agent.address, token=agent.token) as client:
            await client.push(tmp_path / "dv.onnx", "dv")
            activated = await client.activate("dv")
            assert [(i.dtype, i.value_type) for i in activated.inputs] == [
                ("map", "map(str,float32)")
            ]
            outputs, _ = await client.infer("dv", {"reading": rows[13]})
            await client.push(two_zipmaps, "zip")
            await client.activate("zip")
            both, _ = await client.infer("zip", {"X": scores})
            assert both["by_index"] == [{0: 0.5, 1: 0.25, 2: 0.25}, {0: 0.0, 1: 1.0, 2: 0.0}]
            assert both["by_name"] == [{"low": 0.5, "mid": 0.25, "high": 0.25},
                                       {"low": 0.0, "mid": 1.0, "high": 0.0}]  # fmt: skip
            await client.push(words.onnx, "words")
            await client.activate("words")
            with pytest.raises(AgentError) as refused:
                await client.infer("words", {"words": np.zeros((2, 3), np.float32)})
            return outputs, str(refused.value)

    outputs, refusal = asyncio.run(go())
    assert outputs["output_label"].tolist() == pipeline.predict([rows[13]]).tolist()
    np.testing.assert_allclose(probabilities(outputs["output_probability"], [0, 1]),
                               pipeline.predict_proba([rows[13]]), atol=1e-5)  # fmt: skip
    assert "INVALID_ARGUMENT" in refusal
    assert ("input 'words' is float32, the model wants str (a string input takes text: an "
            "array of str)") in refusal  # fmt: skip

    # The same mistake on the host is caught before anything is sent.
    np.savez(tmp_path / "numbers.npz", words=np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match=r"'words' is float32, the model wants text \(an array "
                       r"of str\) \(string\)"):  # fmt: skip
        compress(CompressRequest(model=words.onnx, validation=tmp_path / "numbers.npz"))


def test_an_ml_opset_the_board_lacks_is_refused_at_activation_and_the_old_version_serves(
    tmp_path: Path,
) -> None:
    """ONNX Runtime 1.19 (the oldest runtime the agent supports, Python 3.8's) has no
    TreeEnsemble of ai.onnx.ml opset 5; the forest of opset 3 keeps serving."""
    if not OLD_ORT_AGENT.exists():
        pytest.fail(f"{OLD_ORT_AGENT} missing: `make test` builds it (Makefile target GRPC_OLD)")
    shim = tmp_path / "shim" / "edgeopt"
    shim.mkdir(parents=True)
    for part in ("agent", "boardfacts", "proto"):
        (shim / part).symlink_to(ROOT / part)
    agent = start_agent(tmp_path / "agent", python=str(OLD_ORT_AGENT),
                        env={"PYTHONPATH": str(shim.parent)})  # fmt: skip
    forest = classic.forest(tmp_path)
    newer = tmp_path / "tree5.onnx"
    onnx.save(_tree_ensemble_opset5(), str(newer))
    try:
        first = edgeopt(tmp_path, agent, "deploy", str(forest.onnx), "--device", "b",
                        "--name", "sensor")  # fmt: skip
        assert first.exit_code == 0, first.output
        second = edgeopt(tmp_path, agent, "deploy", str(newer), "--device", "b",
                         "--name", "sensor", "--json")  # fmt: skip
        assert second.exit_code == 1
        (device,) = json.loads(second.stdout)["devices"]
        assert device["outcome"] == "failed"
        assert "Could not find an implementation for TreeEnsemble(5)" in device["error"]
        models = edgeopt(tmp_path, agent, "models", "--device", "b", "--json")
        (entry,) = json.loads(models.stdout)[0]["models"]["models"]
        assert entry["active_version"] == "v1"  # v2 is stored, refused, never active
        assert [v["version"] for v in entry["versions"]] == ["v1", "v2"]
        np.savez(tmp_path / "x.npz", **forest.inputs)  # type: ignore[arg-type]
        infer = edgeopt(tmp_path, agent, "infer", "sensor", "--device", "b", "--input",
                        str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"))  # fmt: skip
        assert infer.exit_code == 0, infer.output
        with np.load(tmp_path / "y.npz", allow_pickle=False) as saved:
            assert saved["output_label"].tolist() == forest.predict().tolist()
    finally:
        agent.stop()
    code = "import onnxruntime; print(onnxruntime.__version__)"
    version = subprocess.run([str(OLD_ORT_AGENT), "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    assert version == "1.19.2"


def _tree_ensemble_opset5() -> onnx.ModelProto:
    """A one-split regression tree as ai.onnx.ml opset 5's TreeEnsemble (ONNX 1.16)."""
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, aggregate_function=1,
        post_transform=0, tree_roots=[0],
        nodes_modes=numpy_helper.from_array(np.array([0], np.uint8)), nodes_featureids=[0],
        nodes_splits=numpy_helper.from_array(np.array([0.5], np.float32)),
        nodes_truenodeids=[0], nodes_trueleafs=[1], nodes_falsenodeids=[1], nodes_falseleafs=[1],
        leaf_targetids=[0, 0], leaf_weights=numpy_helper.from_array(np.array([1, 2], np.float32)),
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "tree", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 5)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _two_zipmaps() -> onnx.ModelProto:
    """Scores [N, 3] out as two sequences of maps: keyed by class index and by class name."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ZipMap", ["X"], ["by_index"], domain="ai.onnx.ml",
                         classlabels_int64s=[0, 1, 2]),
        helper.make_node("ZipMap", ["X"], ["by_name"], domain="ai.onnx.ml",
                         classlabels_strings=["low", "mid", "high"]),
    ]  # fmt: skip
    seq = helper.make_sequence_type_proto
    out_int = seq(
        helper.make_map_type_proto(
            TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
        )
    )
    out_str = seq(
        helper.make_map_type_proto(
            TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
        )
    )
    graph = helper.make_graph(
        nodes, "zipmaps", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_value_info("by_index", out_int), helper.make_value_info("by_name", out_str)],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
