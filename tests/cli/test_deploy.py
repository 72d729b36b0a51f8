"""`edgeopt deploy` and its companions through CliRunner, against real agents on loopback.

The state database is a private SQLite file per test (`--state`); the model is the digits CNN
trained in a fixture, compressed for real.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from edgeopt.host.errors import StateError
from edgeopt.host.store.state import SCHEMA_VERSION, State, meta_table
from tests.conftest import RunningAgent
from tests.models import DigitsModel


def inventory(tmp_path: Path, agents: dict[str, RunningAgent], dead: tuple[str, ...] = ()) -> Path:
    lines = []
    for name, agent in agents.items():
        lines += [f"[devices.{name}]", f'address = "{agent.address}"',
                  f'token_file = "{agent.token_file}"', 'tags = ["shelf"]']  # fmt: skip
    for name in dead:
        lines += [f"[devices.{name}]", 'address = "127.0.0.1:1"', 'tags = ["shelf"]']
    path = tmp_path / "edgeopt.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def edgeopt(tmp_path: Path, inv: Path, *args: str) -> Result:
    base = ["--inventory", str(inv), "--state", str(tmp_path / "state.db"), "--deadline", "3"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def deploy_json(
    tmp_path: Path, inv: Path, digits: DigitsModel, *args: str
) -> tuple[int, dict[str, Any]]:
    result = edgeopt(
        tmp_path, inv, "deploy", str(digits.onnx), "--precision", "int8-static",
        "--calibration", str(digits.calibration), "--validate", str(digits.validation),
        "--name", "digits", "--json", *args,
    )  # fmt: skip
    return result.exit_code, json.loads(result.stdout)


def test_fleet_deploy_with_a_dead_board(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = {"a": agent_factory(name="a"), "b": agent_factory(name="b")}
    inv = inventory(tmp_path, agents, dead=("gone",))
    code, report = deploy_json(tmp_path, inv, digits, "--device", "shelf")
    assert code == 1  # one board did not succeed
    outcomes = {d["device"]: d for d in report["devices"]}
    assert outcomes["a"]["outcome"] == outcomes["b"]["outcome"] == "ok"
    assert outcomes["gone"]["outcome"] == "failed"
    assert "cannot reach the agent at 127.0.0.1:1" in outcomes["gone"]["error"]
    assert report["compressions"] == 1 and report["artifacts"] == 1  # two boards, one plan
    assert outcomes["a"]["sha256"] == outcomes["b"]["sha256"]
    assert outcomes["a"]["plan"]["precision"] == "int8-static"
    assert set(outcomes["a"]["phases"]) == {"connect", "compress", "push", "activate"}

    # It answers like the compressed model does on this host.
    x = np.load(digits.validation)["image"][:4]
    np.savez(tmp_path / "x.npz", image=x)
    infer = edgeopt(tmp_path, inv, "infer", "digits", "--device", "a", "--input",
                    str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"))  # fmt: skip
    assert infer.exit_code == 0, infer.output
    assert "argmax per row" in infer.output
    y = np.load(tmp_path / "y.npz")
    ((_, got),) = list(y.items())
    session = ort.InferenceSession(str(digits.onnx), providers=["CPUExecutionProvider"])
    assert (got.argmax(1) == session.run(None, {"image": x})[0].argmax(1)).mean() >= 0.75

    # A second deploy of the same model sends nothing and compresses nothing.
    code, again = deploy_json(tmp_path, inv, digits, "--device", "a", "--device", "b")
    assert code == 0
    assert again["compressions"] == 0
    assert all(d["bytes_sent"] == 0 and d["already_present"] for d in again["devices"])

    history = json.loads(edgeopt(tmp_path, inv, "deployments", "--json").stdout)
    assert [d["outcome"] for d in history] == ["ok", "failed"]
    assert {d["device"]: d["outcome"] for d in history[1]["devices"]} == {
        "a": "ok",
        "b": "ok",
        "gone": "failed",
    }


def test_models_rollback_and_remove(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = {"a": agent_factory(name="a")}
    inv = inventory(tmp_path, agents)
    assert deploy_json(tmp_path, inv, digits, "--device", "a")[0] == 0
    code, second = deploy_json(tmp_path, inv, digits, "--device", "a", "--version", "fp",
                               "--threads", "1")  # fmt: skip
    assert code == 0 and second["devices"][0]["plan"]["intra_op_threads"] == 1

    listing = json.loads(edgeopt(tmp_path, inv, "models", "--device", "a", "--json").stdout)
    (model,) = listing[0]["models"]["models"]
    assert model["active_version"] == "fp"
    assert [v["version"] for v in model["versions"]] == ["v1", "fp"]

    back = edgeopt(tmp_path, inv, "rollback", "digits", "--device", "a")
    assert back.exit_code == 0 and back.output.splitlines()[1].split() == ["a", "fp", "v1"]

    refused = edgeopt(tmp_path, inv, "remove", "digits@v1", "--device", "a")
    assert refused.exit_code == 1
    assert "digits v1 is the active version; activate another first, or pass force" in (
        refused.output
    )
    removed = edgeopt(tmp_path, inv, "remove", "digits@fp", "--device", "a", "--json")
    assert json.loads(removed.stdout)[0]["removed"] == "fp"
    forced = edgeopt(tmp_path, inv, "remove", "digits", "--device", "a", "--force")
    assert forced.exit_code == 0
    assert (agents["a"].store / "blobs").is_dir() and not list(
        (agents["a"].store / "blobs").iterdir()
    )


def test_a_failing_canary_halts_and_the_canaries_roll_back(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    # c1 takes the model; c2's store is too small for it (a real quota refusal); d waits.
    agents = {
        "c1": agent_factory(name="c1"),
        "c2": agent_factory("--max-store-bytes", "2048", name="c2"),
        "d": agent_factory(name="d"),
    }
    inv = inventory(tmp_path, agents)
    # c1 already runs an earlier version: the rollback must bring it back.
    before = edgeopt(tmp_path, inv, "deploy", str(digits.onnx), "--precision", "fp32",
                     "--name", "digits", "--device", "c1")  # fmt: skip
    assert before.exit_code == 0, before.output
    code, report = deploy_json(tmp_path, inv, digits, "--device", "c1", "--device", "c2",
                               "--device", "d", "--canary", "2")  # fmt: skip
    assert code == 1
    outcomes = {d["device"]: d for d in report["devices"]}
    assert report["outcome"] == "halted"
    assert (
        outcomes["c2"]["outcome"] == "failed" and "store quota exceeded" in outcomes["c2"]["error"]
    )
    assert outcomes["c1"]["outcome"] == "rolled back"
    assert outcomes["d"]["outcome"] == "skipped"
    assert outcomes["d"]["error"].startswith("rollout halted: canary c2 failed: ")
    listing = json.loads(edgeopt(tmp_path, inv, "models", "--fleet", "--json").stdout)
    active = {
        row["device"]: [m["active_version"] for m in row["models"].get("models", [])]
        for row in listing
    }
    assert active == {"c1": ["v1"], "c2": [], "d": []}


def test_deploy_needs_a_selection(tmp_path: Path, digits: DigitsModel) -> None:
    inv = tmp_path / "edgeopt.toml"
    inv.write_text('[devices.x]\naddress = "127.0.0.1:1"\n')
    result = edgeopt(tmp_path, inv, "deploy", str(digits.onnx))
    assert result.exit_code == 2
    assert "say which devices: --device NAME|GROUP|TAG|PROFILE, or --fleet" in result.output


def test_a_state_database_from_a_newer_edgeopt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with State(str(path)) as state:
        assert state.schema_version() == SCHEMA_VERSION
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as c:
        c.execute(sa.update(meta_table).values(value=str(SCHEMA_VERSION + 1)))
    engine.dispose()
    with pytest.raises(StateError) as caught:
        State(str(path))
    assert str(caught.value) == (
        f"{path}: written by a newer edgeopt (schema version {SCHEMA_VERSION + 1}; this "
        f"edgeopt knows up to {SCHEMA_VERSION}): upgrade edgeopt, or use another --state"
    )


def test_a_version_1_state_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    State(str(path)).close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as c:  # what edgeopt's first schema looked like
        c.execute(sa.text("DROP TABLE bench_cases"))
        c.execute(sa.update(meta_table).values(value="1"))
    engine.dispose()
    with State(str(path)) as state:
        assert state.schema_version() == SCHEMA_VERSION == 6
        assert state.benchmarks() == []


def test_deploy_without_a_precision_follows_the_planner(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agents = {"a": agent_factory(name="a")}
    inv = inventory(tmp_path, agents)
    result = edgeopt(
        tmp_path, inv, "deploy", str(digits.onnx), "--calibration", str(digits.calibration),
        "--name", "digits", "--device", "a", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (device,) = json.loads(result.stdout)["devices"]
    plan = device["plan"]
    # What the planner says for this machine's own report, read from the same agent.
    planned = json.loads(
        edgeopt(tmp_path, inv, "plan", str(digits.onnx), "--device", "a", "--calibration",
                str(digits.calibration), "--json").stdout
    )  # fmt: skip
    assert plan["precision"] == planned["chosen"]["precision"]
    assert plan["intra_op_threads"] == planned["chosen"]["intra_op_threads"]
    assert plan["reasons"][0].startswith("planned: ")
    assert plan["alternatives"]
