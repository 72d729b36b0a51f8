"""Devices with `ssh = ...` are reached through an SSH tunnel to their agent's loopback port:
a real sshd, a real agent, the real CLI."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from tests import netns, sshd
from tests.conftest import RunningAgent, start_agent
from tests.models import DigitsModel


def setup(tmp_path: Path, sshd_server: sshd.Sshd, agent: RunningAgent, ssh: str = "board") -> Path:
    """A home whose ~/.ssh knows the board, and an inventory reaching the agent through SSH."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host board\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n  User root\n"
        f"  IdentityFile {sshd_server.client_key}\n"
    )
    (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line(sshd_server))
    inv = tmp_path / "edgeopt.toml"
    inv.write_text(
        f'[devices.pi]\nssh = "{ssh}"\naddress = "{agent.address}"\n'
        f'token_file = "{agent.token_file}"\n'
    )
    return home


def edgeopt(tmp_path: Path, home: Path, *args: str) -> Result:
    base = ["--inventory", str(tmp_path / "edgeopt.toml"), "--state", str(tmp_path / "s.db"),
            "--deadline", "10"]  # fmt: skip
    env = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    return CliRunner(env=env).invoke(cli, [*base, *args], catch_exceptions=False)


def test_every_command_works_through_the_tunnel(
    agent_factory: Callable[..., RunningAgent],
    sshd_server: sshd.Sshd,
    digits: DigitsModel,
    tmp_path: Path,
) -> None:
    agent = agent_factory()
    home = setup(tmp_path, sshd_server, agent)
    listed = edgeopt(tmp_path, home, "devices", "--device", "pi", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["reachable"] is True
    # The CLI talked to a local port of its own, not to the agent's address.
    assert row["address"].startswith("127.0.0.1:") and row["address"] != agent.address
    deployed = edgeopt(tmp_path, home, "deploy", str(digits.onnx), "--device", "pi",
                       "--precision", "fp32", "--name", "digits", "--json")  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    assert json.loads(deployed.stdout)["devices"][0]["outcome"] == "ok"
    models = json.loads(edgeopt(tmp_path, home, "models", "--device", "pi", "--json").stdout)
    assert models[0]["models"]["models"][0]["name"] == "digits"
    measured = edgeopt(tmp_path, home, "bench", str(digits.onnx), "--device", "pi",
                       "--precision", "fp32", "--threads", "1", "--max-seconds", "0.5",
                       "--json")  # fmt: skip
    assert measured.exit_code == 0, measured.output
    assert json.loads(measured.stdout)["cases"][0]["status"] == "ok"


def test_a_failed_ssh_login_is_the_reason_the_agent_cannot_be_reached(
    agent_factory: Callable[..., RunningAgent], sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    agent = agent_factory()
    home = setup(tmp_path, sshd_server, agent, ssh=f"nobody-here@127.0.0.1:{sshd_server.port}")
    result = edgeopt(tmp_path, home, "models", "--device", "pi", "--json")
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert "cannot reach the agent at 127.0.0.1:" in row["error"]
    target = f"nobody-here@127.0.0.1:{sshd_server.port}"
    assert (f"the SSH tunnel through {target} failed: {target}: no key to offer (no "
            "IdentityFile in ~/.ssh/config, no ssh-agent, no ~/.ssh/id_* file)"
            ) in row["error"]  # fmt: skip


def test_a_board_in_its_own_network_namespace_is_reached_only_through_ssh(
    digits: DigitsModel, tmp_path: Path
) -> None:
    reason = netns.unavailable_reason() or sshd.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with netns.Lab(1) as lab:
        board = lab.address(0)
        inside = ("ip", "netns", "exec", lab.namespaces[0])
        # The agent listens on the board's own loopback: nothing outside the namespace sees it.
        agent = start_agent(tmp_path / "agent", prefix=inside)
        port = int(agent.address.rsplit(":", 1)[1])
        try:
            with sshd.Sshd(tmp_path / "sshd", listen=board, port=22, prefix=inside) as sshd_server:
                with socket.socket() as s:
                    assert s.connect_ex((board, port)) != 0  # no way in but SSH
                home = tmp_path / "home"
                (home / ".ssh").mkdir(parents=True)
                (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts_line(sshd_server))
                (home / ".ssh" / "config").write_text(
                    f"Host pi-board\n  HostName {board}\n  User root\n"
                    f"  IdentityFile {sshd_server.client_key}\n"
                )
                (tmp_path / "edgeopt.toml").write_text(
                    f'[devices.pi]\nssh = "pi-board"\naddress = "127.0.0.1:{port}"\n'
                    f'token_file = "{agent.token_file}"\n'
                )
                deployed = edgeopt(tmp_path, home, "deploy", str(digits.onnx), "--device", "pi",
                                   "--precision", "fp32", "--name", "digits", "--json")  # fmt: skip
                assert deployed.exit_code == 0, deployed.output
                caps = json.loads(edgeopt(tmp_path, home, "devices", "show", "pi", "--json").stdout)
                assert caps["capabilities"]["arch"]
        finally:
            agent.stop()
