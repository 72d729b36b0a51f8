"""`bench` and `profile` on every public model of the corpus (tests/corpus.py: Paddle2ONNX,
tf2onnx, spox, old and new PyTorch exporters), through a real agent, as users run them.

With the model's own inputs (`--inputs`) each one is measured and profiled. Without them the
agent makes inputs up from the signature; where a model needs sizes or values that made-up
inputs lack, the failure says which inputs were made up and how, and what to pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from tests.cli.test_deploy import inventory
from tests.conftest import RunningAgent
from tests.corpus import CORPUS, CorpusModel, fetch, write_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    return fetch(CORPUS)


def edgeopt(tmp_path: Path, *args: str) -> Result:
    base = ["--inventory", str(tmp_path / "edgeopt.toml"), "--state", str(tmp_path / "s.db")]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


@pytest.mark.parametrize("model", CORPUS, ids=lambda m: m.key)
def test_bench_and_profile_a_model_from_the_wild(
    model: CorpusModel, models: dict[str, Path], shared_agent: RunningAgent, tmp_path: Path
) -> None:
    inventory(tmp_path, {"board": shared_agent})
    path = str(models[model.key])
    feed = str(write_data(model, tmp_path, 1, seed=3))
    bench = edgeopt(tmp_path, "bench", path, "--device", "board", "--variants", "fp32",
                    "--threads", "1", "--warmup", "1", "--max-seconds", "1", "--inputs", feed,
                    "--json")  # fmt: skip
    assert bench.exit_code == 0, bench.output
    [case] = json.loads(bench.stdout)["cases"]
    assert case["status"] == "ok", case["error"]
    assert case["p50_ms"] > 0 and case["samples"] > 0
    profiled = edgeopt(tmp_path, "profile", path, "--device", "board", "--runs", "2",
                       "--warmup", "1", "--inputs", feed, "--json")  # fmt: skip
    assert profiled.exit_code == 0, profiled.output
    out = json.loads(profiled.stdout)
    assert out["runs"] == 2 and out["nodes"] and out["op_types"]
    assert sum(n["share"] for n in out["nodes"]) == pytest.approx(1.0)


def test_made_up_inputs_that_a_model_cannot_take_are_explained(
    models: dict[str, Path], shared_agent: RunningAgent, tmp_path: Path
) -> None:
    """PP-OCR's recognizer (Paddle2ONNX) takes x[?, 3, ?, ?] and needs a height of 48: the
    made-up 224x224 image breaks its Concat."""
    inventory(tmp_path, {"board": shared_agent})
    path = str(models["ppocr-rec"])
    made_up = (
        "the inputs were made up from the model's signature: x float32[?, 3, ?, ?] fed random "
        "in [0, 1) as [1, 3, 224, 224]. This model needs real ones: "
    )
    hint = made_up + (
        "pass --inputs FILE.npz (an array per input name), or for a single input its dims with "
        "--input-shape"
    )
    bench = edgeopt(tmp_path, "bench", path, "--device", "board", "--variants", "fp32",
                    "--threads", "1", "--warmup", "1", "--json")  # fmt: skip
    [case] = json.loads(bench.stdout)["cases"]
    assert case["status"] == "failed"
    assert "Benchmark: inference failed: [ONNXRuntimeError]" in case["error"]
    assert case["error"].endswith(f"; {hint} (INVALID_ARGUMENT)")
    profiled = edgeopt(tmp_path, "profile", path, "--device", "board", "--runs", "2")
    assert profiled.exit_code == 1
    assert "Profile: inference failed: [ONNXRuntimeError]" in profiled.output
    assert f"; {hint} (INVALID_ARGUMENT)" in profiled.output
    # Its dims given: the same model is profiled.
    sized = edgeopt(tmp_path, "profile", path, "--device", "board", "--runs", "2",
                    "--input-shape", "1,3,48,320")  # fmt: skip
    assert sized.exit_code == 0, sized.output
    # deploy's smoke inference: refused on made-up inputs, with what to pass; then passed.
    deploy = edgeopt(tmp_path, "deploy", path, "--device", "board", "--precision", "fp32",
                     "--name", "rec", "--json")  # fmt: skip
    [result] = json.loads(deploy.stdout)["devices"]
    assert result["outcome"] == "failed"
    assert "smoke inference failed: [ONNXRuntimeError]" in result["error"]
    assert result["error"].endswith(
        f"; {made_up}pass --smoke FILE.npz (its first sample is the smoke input), or --validate "
        "(FAILED_PRECONDITION)"
    )
    model = next(m for m in CORPUS if m.key == "ppocr-rec")
    smoke = str(write_data(model, tmp_path, 1, seed=4))
    deploy = edgeopt(tmp_path, "deploy", path, "--device", "board", "--precision", "fp32",
                     "--name", "rec", "--smoke", smoke, "--json")  # fmt: skip
    [result] = json.loads(deploy.stdout)["devices"]
    assert result["outcome"] == "ok", result["error"]
