"""`edgeopt` through click's CliRunner, against real agents on loopback."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from tests.conftest import RunningAgent


def _inventory(tmp_path: Path, agent: RunningAgent, extra: str = "") -> Path:
    assert agent.token_file is not None
    path = tmp_path / "edgeopt.toml"
    path.write_text(
        f'[devices.local]\naddress = "{agent.address}"\nprofile = "x86-avx2"\n'
        f'token_file = "{agent.token_file}"\ntags = ["bench"]\n{extra}'
    )
    return path


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_devices_table(shared_agent: RunningAgent, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, shared_agent)
    result = _run("--inventory", str(inv), "devices")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split() == ["NAME", "ADDRESS", "REACHABLE", "ARCH", "CORES", "MEMORY", "ORT",
                              "EPS", "ERROR"]  # fmt: skip
    assert row.split()[:4] == ["local", shared_agent.address, "yes", platform.machine()]


def test_devices_with_a_dead_one(
    shared_agent: RunningAgent, tmp_path: Path, free_port: int
) -> None:
    dead = f'[devices.dead]\naddress = "127.0.0.1:{free_port}"\n'
    inv = _inventory(tmp_path, shared_agent, dead)
    result = _run("--inventory", str(inv), "--deadline", "2", "devices", "--json")
    assert result.exit_code == 1
    data = {d["name"]: d for d in json.loads(result.output)}
    assert data["local"]["reachable"] is True
    assert data["local"]["capabilities"]["arch"] == platform.machine()
    assert data["dead"]["reachable"] is False
    assert data["dead"]["error_status"] == "UNAVAILABLE"
    assert data["dead"]["capabilities"] is None
    table = _run("--inventory", str(inv), "--deadline", "2", "devices", "--device", "dead")
    assert table.exit_code == 1
    assert "dead: GetCapabilities: cannot reach the agent" in table.output


def test_devices_show_json_and_text(shared_agent: RunningAgent, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, shared_agent)
    result = _run("--inventory", str(inv), "devices", "show", "local", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["capabilities"]["python_version"] == platform.python_version()
    assert "CPUExecutionProvider" in data["capabilities"]["onnxruntime"]["execution_providers"]
    text = _run("--inventory", str(inv), "devices", "show", "local")
    assert text.output.startswith(f"local ({shared_agent.address}, profile x86-avx2)\n")
    assert "onnxruntime " in text.output


def test_devices_check(shared_agent: RunningAgent, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, shared_agent)
    result = _run("--inventory", str(inv), "devices", "check", "local", "--json")
    findings = {f["field"]: f for f in json.loads(result.output)["findings"]}
    assert findings["arch"]["level"] == ("ok" if platform.machine() == "x86_64" else "mismatch")
    pi = _run("--inventory", str(inv), "devices", "check", "local", "--profile", "pi4")
    assert pi.exit_code == 1  # an x86 box is not a Raspberry Pi
    assert "MISMATCH  arch" in pi.output


def test_unknown_device_lists_known(shared_agent: RunningAgent, tmp_path: Path) -> None:
    inv = _inventory(tmp_path, shared_agent)
    for args in (["devices", "--device", "pi9"], ["devices", "show", "pi9"]):
        result = _run("--inventory", str(inv), *args)
        assert result.exit_code == 1
        assert "Error: no device, group, tag or profile named 'pi9'; known devices: local" in (
            result.output
        )


def test_wrong_token_in_inventory(shared_agent: RunningAgent, tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("nope\n")
    inv = tmp_path / "inv.toml"
    inv.write_text(f'[devices.x]\naddress = "{shared_agent.address}"\ntoken_file = "bad"\n')
    result = _run("--inventory", str(inv), "devices", "show", "x")
    assert result.exit_code == 1
    assert "Error: x: GetCapabilities: wrong token" in result.output
    assert "(UNAUTHENTICATED)" in result.output


def test_malformed_and_missing_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "inv.toml"
    inv.write_text("[devices.x]\naddress = \n")
    result = _run("--inventory", str(inv), "devices")
    assert result.exit_code == 1
    assert f"Error: {inv}: not valid TOML: Invalid value (at line 2, column 11)" in result.output
    missing = _run("--inventory", str(tmp_path / "none.toml"), "devices")
    assert missing.exit_code == 1
    assert f"no inventory at {tmp_path / 'none.toml'}" in missing.output


def test_inventory_from_environment(
    shared_agent: RunningAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEOPT_INVENTORY", str(_inventory(tmp_path, shared_agent)))
    result = _run("devices", "--device", "bench", "--json")
    assert [d["name"] for d in json.loads(result.output)] == ["local"]


def test_profiles(tmp_path: Path) -> None:
    result = _run("profiles", "--json")
    names = {p["name"] for p in json.loads(result.output)}
    assert {"pi4", "pi5", "rk3588", "jetson-orin-nano", "x86-avx2", "x86-avx512-vnni"} <= names
    table = _run("profiles")
    assert table.output.splitlines()[0].split()[:3] == ["NAME", "ARCH", "CORES"]
    show = _run("profiles", "show", "pi4")
    assert "No dot-product" in show.output
    bad = tmp_path / "p"
    bad.mkdir()
    (bad / "pi4.toml").write_text('name = "pi4"\n')
    broken = _run("--profiles-dir", str(bad), "profiles")
    assert broken.exit_code == 1
    assert f"Error: {bad / 'pi4.toml'}: arch: missing required key 'arch'" in broken.output
    unknown = _run("profiles", "show", "pi9")
    assert unknown.exit_code == 1 and "no such profile; known: jetson-orin-nano" in unknown.output


def test_devices_check_without_profile(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    inv = tmp_path / "inv.toml"
    inv.write_text('[devices.x]\naddress = "127.0.0.1:1"\n')
    result = _run("--inventory", str(inv), "devices", "check", "x")
    assert result.exit_code == 1
    assert "device 'x' declares no profile" in result.output
