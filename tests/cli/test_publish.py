"""`edgeopt publish`, `devices --registry`, `deployments --registry`, `rollback --registry`.

Through CliRunner, against Debian's docker-registry on loopback and real agents in pull mode
(no listening port): the host never dials a board. The model is the digits CNN, compressed for
real (int8-static, with its calibration data; the validation set's first sample is the smoke
input the boards pull with it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from edgeopt.host.transport.registry import FleetRegistry, registry_for
from tests.conftest import RunningAgent, start_agent
from tests.models import DigitsModel
from tests.registry import OciRegistry


@pytest.fixture
def setting(oci_registry: OciRegistry, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Names unique to the test, the host's login, the registry, agents to start."""
    started: list[RunningAgent] = []
    creds = oci_registry.credentials_file(tmp_path / "host.json")

    def agent(device: str, *args: str) -> RunningAgent:
        folder = tmp_path / device
        running = start_agent(
            folder, "--pull", oci_registry.url, "--device-name", device, "--pull-interval",
            "0.2s", "--registry-credentials", str(oci_registry.credentials_file(
                tmp_path / f"{device}.json")), *args, token=None, listen=False,
        )  # fmt: skip
        started.append(running)
        return running

    fleet = registry_for(oci_registry.url, creds)
    yield {"prefix": f"t{uuid.uuid4().hex[:6]}", "creds": creds, "url": oci_registry.url,
           "agent": agent, "fleet": fleet}  # fmt: skip
    fleet.close()
    for running in started:
        running.stop()


def inventory(tmp_path: Path, url: str, devices: list[str]) -> Path:
    lines = []
    for name in devices:
        lines += [f"[devices.{name}]", f'registry = "{url}"', 'tags = ["field"]']
    path = tmp_path / "edgeopt.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def edgeopt(tmp_path: Path, inv: Path | None, creds: Path, *args: str) -> Result:
    base = ["--state", str(tmp_path / "state.db")]
    base += ["--inventory", str(inv)] if inv else ["--inventory", str(tmp_path / "none.toml")]
    env = {"EDGEOPT_REGISTRY_CREDENTIALS": str(creds)}
    return CliRunner(env=env).invoke(cli, [*base, *args], catch_exceptions=False)


def publish(tmp_path: Path, inv: Path | None, s: dict[str, Any], digits: DigitsModel,
            *args: str) -> tuple[int, dict[str, Any]]:  # fmt: skip
    result = edgeopt(
        tmp_path, inv, s["creds"], "publish", str(digits.onnx), "--precision", "int8-static",
        "--calibration", str(digits.calibration), "--validate", str(digits.validation),
        "--name", "digits", "--json", *args,
    )  # fmt: skip
    return result.exit_code, json.loads(result.stdout)


def reported(fleet: FleetRegistry, devices: list[str], timeout: float = 30.0) -> None:
    """Wait until each device's agent pushed a first status (it has no desired state yet)."""
    deadline = time.monotonic() + timeout
    while any(fleet.view(d).status is None for d in devices):
        assert time.monotonic() < deadline, "no status from the agents"
        time.sleep(0.1)


def test_publish_once_per_plan_then_boards_converge_and_roll_back(
    setting: dict[str, Any], digits: DigitsModel, tmp_path: Path
) -> None:
    s = setting
    names = [f"{s['prefix']}-a", f"{s['prefix']}-b"]
    for name in names:
        s["agent"](name)
    reported(s["fleet"], names)
    inv = inventory(tmp_path, s["url"], names)
    code, report = publish(tmp_path, inv, s, digits, "--device", "field", "--version", "v1",
                           "--wait", "60")  # fmt: skip
    assert code == 0, report
    assert report["compressions"] == 1 and report["artifacts"] == 1
    outcomes = {d["device"]: d for d in report["devices"]}
    assert {d["outcome"] for d in outcomes.values()} == {"ok"}
    # One upload for the two boards: the model, its plan and smoke input, once.
    sent = [d["bytes_sent"] for d in outcomes.values()]
    assert sorted(sent)[0] == 0 and report["bytes_uploaded"] == max(sent) > 0
    for name in names:
        view = s["fleet"].view(name)
        assert view.state == "converged"
        assert view.status is not None
        assert [(m.name, m.version) for m in view.status.models] == [("digits", "v1")]

    # The same bytes again under another label: the registry has the blobs, nothing large goes.
    code, again = publish(tmp_path, inv, s, digits, "--device", "field", "--version", "v2",
                          "--wait", "60")  # fmt: skip
    assert code == 0, again
    assert again["bytes_uploaded"] < 4096

    listing = edgeopt(tmp_path, inv, s["creds"], "devices", "--registry", s["url"],
                      "--device", "field", "--json")  # fmt: skip
    assert listing.exit_code == 0, listing.output
    views = {v["device"]: v for v in json.loads(listing.stdout)}
    assert {v["state"] for v in views.values()} == {"converged"}
    assert views[names[0]]["reported"] == [
        {"name": "digits", "version": "v2", "state": "active", "error": ""}
    ]

    back = edgeopt(tmp_path, inv, s["creds"], "rollback", "digits", "--registry", s["url"],
                   "--device", names[0])  # fmt: skip
    assert back.exit_code == 0, back.output
    assert "v2" in back.output and "v1" in back.output
    watched = edgeopt(tmp_path, inv, s["creds"], "deployments", "--registry", s["url"],
                      "--device", names[0], "--device", names[1],
                      "--watch", "--every", "0.2", "--timeout", "60")  # fmt: skip
    assert watched.exit_code == 0, watched.output
    view = s["fleet"].view(names[0])
    assert view.status is not None and view.status.models[0].version == "v1"


def test_a_failing_canary_halts_the_publish_and_is_taken_back(
    setting: dict[str, Any], digits: DigitsModel, tmp_path: Path
) -> None:
    s = setting
    small, fine = f"{s['prefix']}-small", f"{s['prefix']}-fine"
    s["agent"](small, "--max-store-bytes", "10K")  # cannot hold the model
    s["agent"](fine)
    reported(s["fleet"], [small, fine])
    inv = inventory(tmp_path, s["url"], [small, fine])
    code, report = publish(tmp_path, inv, s, digits, "--device", "field", "--canary", "1",
                           "--canary-wait", "60")  # fmt: skip
    assert code == 1
    outcomes = {d["device"]: d for d in report["devices"]}
    assert outcomes[small]["outcome"] == "rolled back"
    assert "the board refused it" in outcomes[small]["error"]
    assert "quota" in outcomes[small]["error"]
    assert outcomes[fine]["outcome"] == "skipped"
    assert "rollout halted: canary" in outcomes[fine]["error"]
    desired, _ = s["fleet"].desired(small)
    assert desired is not None and desired.models == ()  # taken back out
    assert s["fleet"].desired(fine) == (None, "")  # never touched


def test_a_board_nothing_is_known_of_needs_a_profile(
    setting: dict[str, Any], digits: DigitsModel, tmp_path: Path
) -> None:
    s = setting
    ghost = f"{s['prefix']}-ghost"
    code, report = publish(tmp_path, None, s, digits, "--device", ghost, "--registry", s["url"])
    assert code == 1
    (only,) = report["devices"]
    assert only["outcome"] == "failed"
    assert f"nothing is known of {ghost}" in only["error"] and "--profile" in only["error"]
    assert s["fleet"].desired(ghost) == (None, "")
    code, report = publish(tmp_path, None, s, digits, "--device", ghost, "--registry", s["url"],
                           "--profile", "pi4")  # fmt: skip
    assert code == 0, report
    desired, _ = s["fleet"].desired(ghost)
    assert desired is not None and desired.models[0].precision == "int8-static"
    assert report["devices"][0]["outcome"] == "ok"  # written; no --wait, so not waited for


def test_a_malformed_registry_url_is_a_clear_error(
    setting: dict[str, Any], digits: DigitsModel, tmp_path: Path
) -> None:
    result = edgeopt(tmp_path, None, setting["creds"], "devices", "--registry",
                     "http://127.0.0.1:1/x")  # fmt: skip
    assert result.exit_code == 1
    assert "a registry is oci://HOST[:PORT]/REPOSITORY" in result.output
