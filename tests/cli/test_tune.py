"""`edgeopt deploy --tune` and `edgeopt tune ls` against real agents on loopback.

The candidates are the planner's for this machine's own report, each compressed for real,
checked on the board (its Infer outputs against the host's fp32 reference) and measured with
the agent's Benchmark.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from edgeopt.host.compress import CompressRequest, Gate, compress
from edgeopt.host.compress.latency import host_cpu
from edgeopt.host.config.inventory import Device
from edgeopt.host.planning import planner
from edgeopt.host.store.state import State
from edgeopt.host.transport.client import AgentClient, ClientConfig
from edgeopt.host.workflows.deploy import Deployer, DeviceResult
from edgeopt.host.workflows.plans import DeployOptions, TuneSettings, experience, traits_of
from edgeopt.host.workflows.tune import candidates
from tests.cli.test_deploy import edgeopt, inventory
from tests.conftest import RunningAgent
from tests.mobile import LAYOUTS, images
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


def tuned_on_a(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> tuple[dict[str, RunningAgent], Path, dict[str, Any]]:
    """Two boards of one kind, a and b; the digits CNN tuned and deployed on a."""
    agents = {"a": agent_factory(name="a"), "b": agent_factory(name="b")}
    inv = inventory(tmp_path, agents)
    code, first = tune_deploy(tmp_path, inv, digits, "--device", "a", "--max-accuracy-drop",
                              "0.02")  # fmt: skip
    assert code == 0, first
    return agents, inv, first


def test_tuning_measures_once_per_kind_of_board(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    _, inv, first = tuned_on_a(agent_factory, digits, tmp_path)
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


async def _capabilities(agent: RunningAgent) -> Any:
    async with AgentClient(agent.address, token=agent.token) as client:
        return await client.capabilities()


def test_what_tuning_measured_plans_the_next_board_of_the_kind(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents, inv, first = tuned_on_a(agent_factory, digits, tmp_path)
    passed = [t for t in first["devices"][0]["tuning"]["trials"] if t["passed"]]
    request = CompressRequest(model=digits.onnx, calibration=digits.calibration)
    traits = traits_of(request)
    caps = asyncio.run(_capabilities(agents["b"]))
    with State(str(tmp_path / "state.db")) as state:
        (learned,) = experience(state, caps)  # board b is of a's kind: a's tuning counts
        assert learned.model == "digits" and learned.traits == traits
        assert dict(learned.p50_ms) == {
            (t["plan"]["precision"], t["plan"]["intra_op_threads"]): t["p50_ms"] for t in passed
        }
        # Two more models alike to this one, tuned on this kind of board, where int8 (either
        # flavour) took twice fp32's time (rows as tuning writes them; the figures are set so
        # that the evidence is unambiguous, the digits CNN's own ratio being close to 1).
        for n in (1, 2):
            trials = [
                {"plan": {"precision": p, "intra_op_threads": 1}, "p50_ms": ms, "passed": True}
                for p, ms in (("fp32", 1.0), ("int8-static", 2.0), ("int8-dynamic", 2.0))
            ]
            state.record_tuning(f"twin-{n}", "a", caps.fingerprint, caps.onnxruntime.version,
                                f"d{n}", {}, {}, trials, 1.0,
                                {"name": f"twin-{n}", "model": asdict(traits)})  # fmt: skip
        everything = experience(state, caps)
    board = planner.Board.from_capabilities("b", caps)
    expected = planner.plan(board, traits, planner.Constraints(calibration=True), everything)
    result = edgeopt(tmp_path, inv, "plan", str(digits.onnx), "--device", "b",
                     "--calibration", str(digits.calibration), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["chosen"]
    assert shown["reasons"] == list(expected.chosen.reasons)
    assert shown["precision"] == "fp32"
    assert shown["reasons"][0].startswith("fp32: measured on this kind of board: int8-")
    assert " ran 2.00x the time of fp32 on " in shown["reasons"][0]
    assert "twin-1 (" in shown["reasons"][0] and "twin-2 (" in shown["reasons"][0]
    # The rules alone would have said it differently: the evidence is what changed the reason.
    alone = planner.plan(board, traits, planner.Constraints(calibration=True))
    assert alone.chosen.reasons[0].startswith("fp32: the model is tiny")


@pytest.mark.slow
def test_a_planned_precision_that_fails_the_gate_falls_back_to_the_next(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    """No --precision: the planner's int8 choice for the ConvNeXt layout loses more than the
    gate allows (cosine must be 0.99999), so deploy makes its next choice, fp32, and says so."""
    agents = {"a": agent_factory(name="a")}
    inv = inventory(tmp_path, agents)
    sample = images(tmp_path / "images.npz", 4, 0)
    request = CompressRequest(model=LAYOUTS["convnext-style"], example=sample,
                              calibration=sample)  # fmt: skip
    caps = asyncio.run(_capabilities(agents["a"]))
    first = planner.plan(planner.Board.from_capabilities("a", caps), traits_of(request),
                         planner.Constraints(calibration=True)).chosen.precision  # fmt: skip
    if first == "fp32":
        pytest.skip(f"this CPU ({host_cpu()}) is planned fp32 first: nothing to fall back from")
    result = edgeopt(
        tmp_path, inv, "deploy", LAYOUTS["convnext-style"], "--example", str(sample),
        "--calibration", str(sample), "--validate", str(sample), "--min-cosine", "0.99999",
        "--name", "convnext", "--device", "a", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (device,) = json.loads(result.stdout)["devices"]
    assert device["outcome"] == "ok"
    assert device["plan"]["precision"] == "fp32"
    fell = [r for r in device["plan"]["reasons"] if r.startswith("fell back from ")]
    assert len(fell) == 1 and fell[0].startswith(
        f"fell back from {first} to fp32, the planner's next choice: {first} fails the gate: "
        "cosine similarity "
    )
    listing = json.loads(edgeopt(tmp_path, inv, "models", "--device", "a", "--json").stdout)
    (model,) = listing[0]["models"]["models"]
    assert model["name"] == "convnext"


def test_tuning_adds_a_mixed_candidate_when_int8_fails_the_gate_on_the_board(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    """The gate lies halfway between the planner's int8 candidate's cosine and 1: the whole
    variant fails on the board, tuning searches the nodes to keep float on the host, and the
    mixed variant is pushed, checked on the board and measured like the planner's candidates.
    (On the tiny digits CNN the planner proposes fp32 and int8-dynamic here.)"""
    agents = {"a": agent_factory(name="a"), "b": agent_factory(name="b")}
    inv = inventory(tmp_path, agents)
    request = CompressRequest(model=digits.onnx, calibration=digits.calibration,
                              validation=digits.validation)  # fmt: skip
    caps = asyncio.run(_capabilities(agents["a"]))
    decision = planner.plan(planner.Board.from_capabilities("a", caps), traits_of(request),
                            planner.Constraints(calibration=True))  # fmt: skip
    int8 = [c.precision for c in candidates(decision, 4) if c.precision.startswith("int8")]
    if not int8:
        pytest.skip(f"the planner on this CPU ({host_cpu()}) proposes no int8 candidate")
    precision = int8[0]
    full = compress(CompressRequest(model=digits.onnx, precision=precision,
                                    calibration=digits.calibration,
                                    validation=digits.validation)).validation  # fmt: skip
    assert full is not None and full.cosine < 1.0
    halfway = 1 - (1 - full.cosine) / 2
    code, report = tune_deploy(tmp_path, inv, digits, "--device", "a", "--min-cosine",
                               f"{halfway:.10f}")  # fmt: skip
    assert code == 0, report
    (device,) = report["devices"]
    trials = device["tuning"]["trials"]
    whole = [t for t in trials if t["plan"]["precision"] == precision
             and not t["plan"].get("keep_float")]  # fmt: skip
    assert whole[0]["gate_failed"] and not whole[0]["passed"]
    (mixed,) = [t for t in trials if t["plan"].get("keep_float")]
    kept = mixed["plan"]["keep_float"]
    assert mixed["plan"]["precision"] == precision and len(kept) >= 1
    assert mixed["passed"] and mixed["cosine"] >= halfway and mixed["p50_ms"] > 0
    assert mixed["plan"]["reasons"][0].startswith(
        f"tuned: {precision} failed the gate on the board; {len(kept)} of "
    )
    if device["plan"].get("keep_float"):  # the mixed one won: the board runs that artifact
        assert device["plan"]["keep_float"] == kept
    # A tuning asked to keep other nodes float is a different question: measured again.
    code, again = tune_deploy(tmp_path, inv, digits, "--device", "b", "--min-cosine",
                              f"{halfway:.10f}", "--keep-float", kept[0])  # fmt: skip
    assert code == 0, again
    assert not again["devices"][0]["tuning"]["reused"]
