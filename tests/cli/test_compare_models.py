"""`edgeopt bench compare-models` against real agents: a real slowdown called with exit status
1, an A/A comparison that calls nothing, both sides in the history by model digest, and bad
input: models whose inputs differ (refused before anything is pushed), a board that dies
mid-comparison (partial, no verdict, exit status 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeopt.host.config.inventory import Device
from edgeopt.host.store.state import State
from edgeopt.host.transport.client import ClientConfig, file_digest
from edgeopt.host.workflows import compare
from tests.cli.test_bench import matmul_model
from tests.cli.test_deploy import edgeopt, inventory
from tests.conftest import RunningAgent
from tests.models import DigitsModel


def test_a_model_twice_as_deep_is_called_slower_and_fails_the_gate(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    a = matmul_model(tmp_path / "a.onnx", n=256, depth=2)
    b = matmul_model(tmp_path / "b.onnx", n=256, depth=4)  # twice the multiply-adds
    inv = inventory(tmp_path, {"pi": agent_factory()})
    result = edgeopt(tmp_path, inv, "bench", "compare-models", str(a), str(b), "--device", "pi",
                     "--threads", "1", "--max-seconds", "2", "--seed", "3", "--json")  # fmt: skip
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    (board,) = out["devices"]
    assert board["verdict"] == "slower" and board["words"].startswith("slower: B/A ")
    est = board["estimate"]
    assert est["low"] > 1.02 and est["low"] <= est["ratio"] <= est["high"]
    assert est["pairs"] >= 6 and est["detectable"] < est["ratio"] - 1
    # Both sides are in the history, each under its own model's digest.
    with State(str(tmp_path / "state.db")) as state:
        rows = state.benchmarks(run=out["run"])
    assert sorted(r["model_digest"] for r in rows) == sorted([file_digest(a), file_digest(b)])
    assert all(r["status"] == "ok" and r["flags"] == ["paired"] for r in rows)
    assert all(len(r["result"]["block_ms"]) == est["pairs"] for r in rows)


def test_an_a_a_comparison_calls_no_change(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    a = matmul_model(tmp_path / "a.onnx", n=256, depth=2)
    inv = inventory(tmp_path, {"pi": agent_factory()})
    result = edgeopt(tmp_path, inv, "bench", "compare-models", str(a), str(a), "--device", "pi",
                     "--threads", "1", "--max-seconds", "2", "--threshold", "0.05")  # fmt: skip
    # The same artifact on both sides: never slower or faster; "undecided" (exit status 2)
    # only if this machine was too noisy to bound the ratio within 5 % in 2 s.
    assert result.exit_code in (0, 2), result.output
    assert ("no change: B/A" in result.output) == (result.exit_code == 0)
    assert "slower" not in result.output and "faster" not in result.output


def test_models_whose_inputs_differ_are_refused_before_anything_is_pushed(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agent = agent_factory()
    inv = inventory(tmp_path, {"pi": agent})
    other = matmul_model(tmp_path / "mm.onnx")
    result = edgeopt(tmp_path, inv, "bench", "compare-models", str(digits.onnx), str(other),
                     "--device", "pi")  # fmt: skip
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        "a comparison feeds both models the same inputs: digits.onnx takes image but mm.onnx "
        "takes x"
    ), result.output
    assert not any((agent.store / "blobs").glob("*"))


def test_a_board_that_dies_mid_comparison_gives_no_verdict(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    dying = agent_factory(name="dying")
    a = matmul_model(tmp_path / "a.onnx", n=256, depth=2)
    device = Device(name="dying", address=dying.address, token_file=dying.token_file)

    def progress(_device: str, _text: str) -> None:
        # The board loses power mid-run: a real process killed for real, at its first report.
        if dying.process.poll() is None:
            dying.process.kill()
            dying.process.wait()

    # A threshold no run reaches in 5 s: the board is still measuring when it dies.
    options = compare.CompareOptions(a=a, b=a, threads=1, max_seconds=5, threshold=1e-5)
    with State(str(tmp_path / "state.db")) as state:
        run, (answer,) = compare.compare_models([device], options, state, progress=progress,
                                                config=ClientConfig(deadline=3))  # fmt: skip
        (record,) = state.bench_runs(run=run)
    assert answer.verdict == "failed" and answer.found is None
    assert answer.words.startswith("partial, no verdict: the board stopped answering after ")
    assert answer.pairs_seen >= 1
    assert record["status"] == "failed"
    assert compare.exit_status([answer]) == 2


@pytest.mark.parametrize(
    ("verdicts", "status"),
    [(("no change", "faster"), 0), (("no change", "undecided"), 2), (("failed",), 2),
     (("undecided", "slower"), 1)],
)  # fmt: skip
def test_exit_status_for_ci(verdicts: tuple[str, ...], status: int) -> None:
    answers = [compare.Comparison(f"d{i}", v) for i, v in enumerate(verdicts)]
    assert compare.exit_status(answers) == status
