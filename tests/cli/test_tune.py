"""`edgeopt deploy --tune` and `edgeopt tune ls` against real agents on loopback.

The candidates are the planner's for this machine's own report, each compressed for real,
checked on the board (its Infer outputs against the host's fp32 reference) and measured with
the agent's Benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.host.compress import CompressRequest, Gate
from edgeopt.host.config.inventory import Device
from edgeopt.host.store.state import State
from edgeopt.host.transport.client import ClientConfig
from edgeopt.host.workflows.deploy import Deployer, DeviceResult
from edgeopt.host.workflows.plans import DeployOptions, TuneSettings, traits_of
from tests.cli.test_deploy import edgeopt, inventory
from tests.conftest import RunningAgent
from tests.models import DigitsModel


def tune_deploy(
    tmp_path: Path, inv: Path, digits: DigitsModel, *args: str
) -> tuple[int, dict[str, Any]]:
    result = edgeopt(
        tmp_path, inv, "deploy", str(digits.onnx), "--calibration", str(digits.calibration),
        "--validate", str(digits.validation), "--name", "digits", "--tune", "--tune-budget",
        "20", "--json", *args,
    )  # fmt: skip
    return result.exit_code, json.loads(result.stdout)


def test_tuning_measures_once_per_kind_of_board(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = {"a": agent_factory(name="a"), "b": agent_factory(name="b")}
    inv = inventory(tmp_path, agents)
    code, first = tune_deploy(tmp_path, inv, digits, "--device", "a", "--max-accuracy-drop",
                              "0.02")  # fmt: skip
    assert code == 0, first
    (device,) = first["devices"]
    assert device["outcome"] == "ok"
    assert device["plan"]["reasons"][0].startswith("tuned: ")
    tuning = device["tuning"]
    assert not tuning["reused"] and tuning["best"]["precision"] == device["plan"]["precision"]
    measured = [t for t in tuning["trials"] if t["passed"]]
    assert measured and all(t["p50_ms"] > 0 and t["accuracy_drop"] <= 0.02 for t in measured)
    fastest = min(measured, key=lambda t: t["p50_ms"])
    assert fastest["plan"]["precision"] == device["plan"]["precision"]
    # The scratch versions are gone from the board.
    listing = json.loads(edgeopt(tmp_path, inv, "models", "--device", "a", "--json").stdout)
    assert [m["name"] for m in listing[0]["models"]["models"]] == ["digits"]

    # Board b is of the same kind (same machine): nothing is measured again.
    code, second = tune_deploy(tmp_path, inv, digits, "--device", "b", "--max-accuracy-drop",
                               "0.02")  # fmt: skip
    assert code == 0
    (device_b,) = second["devices"]
    assert device_b["tuning"]["reused"]
    assert device_b["plan"]["precision"] == device["plan"]["precision"]

    listed = json.loads(edgeopt(tmp_path, inv, "tune", "ls", "--json").stdout)
    assert len(listed) == 1 and listed[0]["best"]["precision"] == device["plan"]["precision"]


def test_every_candidate_failing_the_gate_is_refused_with_what_each_lost(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = {"a": agent_factory(name="a")}
    inv = inventory(tmp_path, agents)
    # No variant can reach a cosine above 1: every candidate fails, fp32 included.
    code, report = tune_deploy(tmp_path, inv, digits, "--device", "a", "--min-cosine", "1.5")
    assert code == 1
    (device,) = report["devices"]
    assert device["outcome"] == "failed"
    assert device["error"].startswith("tuning found no candidate that passes the gate: ")
    trials = device["tuning"]["trials"]
    assert all(t["error"] and not t["passed"] for t in trials)
    assert any("fails the gate: cosine similarity" in t["error"] for t in trials)
    listing = json.loads(edgeopt(tmp_path, inv, "models", "--device", "a", "--json").stdout)
    assert listing[0]["models"].get("models", []) == []


def test_a_board_that_dies_while_tuning_fails_alone_and_keeps_what_it_measured(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    """Board b is killed (SIGKILL, for real) when its tuning reaches the second candidate."""
    agents = {"b": agent_factory(name="b"), "a": agent_factory(name="a")}
    devices = [
        Device(name=name, address=agent.address, token_file=agent.token_file)
        for name, agent in agents.items()
    ]

    class KillAtSecondCandidate:
        def phase(self, device: str, phase: str) -> None:
            if device == "b" and phase.startswith("tune: candidate 2/"):
                agents["b"].process.kill()
                agents["b"].process.wait()

        def sent(self, device: str, done: int, total: int) -> None:
            pass

        def finished(self, result: DeviceResult) -> None:
            pass

    request = CompressRequest(
        model=digits.onnx, calibration=digits.calibration, validation=digits.validation,
        gate=Gate(max_accuracy_drop=0.02),
    )  # fmt: skip
    options = DeployOptions(
        request=request, name="digits", traits=traits_of(request),
        tune=TuneSettings(budget_s=20, retune=True),
    )  # fmt: skip
    with State(str(tmp_path / "state.db")) as state:
        report = Deployer(devices, options, state, config=ClientConfig(deadline=3),
                          progress=KillAtSecondCandidate()).run("test")  # fmt: skip
    results = {r.device: r for r in report.results}
    assert results["a"].outcome == "ok"
    assert results["b"].outcome == "failed"
    assert "cannot reach the agent" in results["b"].error
    trials = (results["b"].tuning or {}).get("trials", [])
    assert trials and trials[0]["passed"] and trials[0]["p50_ms"] > 0  # measured before it died
    assert all(not t["passed"] for t in trials[1:])
    assert report.outcome == "failed"
