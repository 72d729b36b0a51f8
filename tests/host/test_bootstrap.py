"""`edgeopt ssh bootstrap` / `ssh remove` against a real sshd: the agent installed offline from
wheels the host fetched, started, reached through the tunnel, upgraded in place, removed; and
the boards that cannot take it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgeopt.host.cli import cli
from edgeopt.host.errors import SshError
from edgeopt.host.transport.ssh import bootstrap
from edgeopt.host.transport.ssh import connection as ssh
from tests import sshd
from tests.models import DigitsModel
from tests.ports import free_port

pytestmark = pytest.mark.slow


def edgeopt(tmp_path: Path, home: Path, *args: str) -> Result:
    base = ["--inventory", str(tmp_path / "edgeopt.toml"), "--state", str(tmp_path / "s.db"),
            "--deadline", "20"]  # fmt: skip
    # The wheels the host fetches for the board are cached across tests (and CI steps).
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    env = {"HOME": str(home), "SSH_AUTH_SOCK": "", "XDG_CACHE_HOME": str(cache)}
    return CliRunner(env=env).invoke(cli, [*base, *args], catch_exceptions=False)


def alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def test_bootstrap_deploy_upgrade_and_remove(
    sshd_server: sshd.Sshd, digits: DigitsModel, tmp_path: Path
) -> None:
    home = sshd.client_home(tmp_path, sshd_server)
    folder, port = tmp_path / "board-agent", free_port()
    target = f"root@127.0.0.1:{sshd_server.port}"
    args = ("ssh", "bootstrap", target, "--name", "board", "--offline", "--folder", str(folder),
            "--port", str(port), "--json")  # fmt: skip
    first = edgeopt(tmp_path, home, *args)
    assert first.exit_code == 0, first.output
    done = json.loads(first.stdout)
    assert done["upgraded"] is False and done["manager"] in ("supervisor", "systemd")
    assert done["address"] == f"127.0.0.1:{port}" and done["folder"] == str(folder)
    inventory = (tmp_path / "edgeopt.toml").read_text()
    assert inventory == (
        f'[devices.board]\nssh = "{target}"\naddress = "127.0.0.1:{port}"\n'
        f'token_file = ".edgeopt-tokens/board.token"\nagent_folder = "{folder}"\n'
    )
    token = tmp_path / ".edgeopt-tokens" / "board.token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.read_text().strip() == (folder / "token").read_text().strip()
    # The agent's promise: its venv holds the agent's dependencies and nothing of the host's.
    pip = [str(folder / "venv/bin/python"), "-m", "pip", "list", "--format=json"]
    listed = subprocess.run(pip, capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"edgeopt", "grpcio", "protobuf", "numpy", "onnxruntime"} <= names
    assert not names & {"torch", "onnx", "click", "paramiko", "sqlalchemy", "matplotlib"}
    if done["manager"] == "supervisor":
        # Supervised: an agent killed for real comes back on its own.
        child = int((folder / "agent.child").read_text())
        os.kill(child, 9)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = (folder / "agent.child").read_text().strip()
            if again and int(again) != child:
                break
            time.sleep(0.2)
        assert int((folder / "agent.child").read_text()) != child
        assert "supervisor: the agent exited with status 137" in (folder / "agent.log").read_text()
    # Through the tunnel (the client retries while the agent comes back): deploy a real model.
    deployed = edgeopt(tmp_path, home, "deploy", str(digits.onnx), "--device", "board",
                       "--precision", "fp32", "--name", "digits", "--json")  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    # Again: an upgrade in place that keeps the store and the token.
    pid_before = (folder / "agent.pid").read_text() if done["manager"] == "supervisor" else ""
    second = edgeopt(tmp_path, home, *args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["upgraded"] is True
    assert token.read_text().strip() == (folder / "token").read_text().strip()
    if pid_before:
        assert (folder / "agent.pid").read_text() != pid_before  # restarted on the new code
    models = json.loads(edgeopt(tmp_path, home, "models", "--device", "board", "--json").stdout)
    assert models[0]["models"]["models"][0]["name"] == "digits"
    # Remove: stopped, its files gone, the store kept, the device dropped.
    removed = edgeopt(tmp_path, home, "ssh", "remove", "board")
    assert removed.exit_code == 0, removed.output
    assert removed.output.splitlines()[0] == (
        "board: agent stopped, venv, wheels, token, ready, agent.log, supervise.sh removed; the "
        f"store {folder}/store is kept (--purge deletes it)"
    )
    assert not (folder / "venv").exists() and (folder / "store").is_dir()
    assert "[devices.board]" not in (tmp_path / "edgeopt.toml").read_text()
    assert not token.exists()
    with socket.socket() as s:  # nothing listens on the agent's port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_an_agent_that_cannot_start_shows_its_log(sshd_server: sshd.Sshd, tmp_path: Path) -> None:
    home = sshd.client_home(tmp_path, sshd_server)
    folder = tmp_path / "board-agent"
    with socket.socket() as taken:  # the agent's port is held by something else on the board
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = edgeopt(tmp_path, home, "ssh", "bootstrap", f"root@127.0.0.1:{sshd_server.port}",
                         "--name", "board", "--offline", "--folder", str(folder), "--port",
                         str(port), "--start-timeout", "30")  # fmt: skip
    assert result.exit_code == 1
    assert (f"Error: root@127.0.0.1:{sshd_server.port}: the agent did not start; the end of its "
            f"log ({folder}/agent.log):") in result.output  # fmt: skip
    assert f"127.0.0.1:{port}" in result.output.split("agent.log):", 1)[1]
    assert not (tmp_path / "edgeopt.toml").exists()  # nothing written for a failed install


def fake_board(tmp_path: Path, python: str | None, machine: str | None = None) -> Path:
    """A PATH folder: the tools bootstrap's check uses, a python3 that is old or absent, and a
    `uname` that says `machine` (a 32-bit Raspberry Pi OS says armv7l) when given."""
    bin_dir = Path(tempfile.mkdtemp(prefix="edgeopt-fakebin-"))
    bin_dir.chmod(0o755)
    for tool in ("sh", "uname", "getconf", "mkdir", "df", "tail", "cat", "pwd"):
        found = shutil.which(tool)
        if found and not (tool == "uname" and machine):
            (bin_dir / tool).symlink_to(found)
    if machine:
        (bin_dir / "uname").write_text(f"#!/bin/sh\necho {machine}\n")
        (bin_dir / "uname").chmod(0o755)
    if python is not None:
        (bin_dir / "python3").write_text(f"#!/bin/sh\necho {python}\n")
        (bin_dir / "python3").chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("python", "machine", "message"),
    [
        ("3.7.3", None, "python3 on the board is 3.7.3; the agent needs Python >= 3.8"),
        (None, None, "the board has no python3 on the PATH: install Python >= 3.8"),
        ("3.9.2", "armv7l", "the board runs a 32-bit ARM userland (armv7l) that ONNX Runtime "
         "publishes no wheels for; the agent runs on aarch64 and x86_64: install a 64-bit OS "
         "(Raspberry Pi OS 64-bit, for one)"),
        ("3.11.2", "riscv64", "the board runs an architecture (riscv64) that ONNX Runtime "
         "publishes no wheels for; the agent runs on aarch64 and x86_64"),
        # The 32-bit Raspberry Pi OS boots a 64-bit kernel: uname says aarch64, python3 is 32-bit.
        ("3.11.2 32", "aarch64", "the board's python3 is 32-bit (an armhf userland on its "
         "aarch64 kernel, as the 32-bit Raspberry Pi OS has) and ONNX Runtime publishes no "
         "wheels for it: install a 64-bit OS (Raspberry Pi OS 64-bit, for one)"),
    ],
)  # fmt: skip
def test_a_board_the_agent_cannot_run_on_is_refused(
    python: str | None, machine: str | None, message: str, tmp_path: Path
) -> None:
    reason = sshd.unavailable_reason() or sshd.ensure_user()
    if reason:
        pytest.skip(reason)
    bin_dir = fake_board(tmp_path, python, machine)
    # The board's user: a plain account whose shell (sh) reads no rc file that would put
    # another python3 first on the PATH.
    folder = Path(tempfile.mkdtemp(prefix="edgeopt-sshd-"))
    folder.chmod(0o755)
    target = ""
    try:
        with sshd.Sshd(folder, user=sshd.UNPRIVILEGED, extra=f"SetEnv PATH={bin_dir}\n") as board:
            home = sshd.client_home(tmp_path, board)
            target = f"{sshd.UNPRIVILEGED}@127.0.0.1:{board.port}"
            result = edgeopt(tmp_path, home, "ssh", "bootstrap", target, "--name", "old",
                             "-i", str(board.client_key))  # fmt: skip
    finally:
        shutil.rmtree(bin_dir)
        shutil.rmtree(folder, ignore_errors=True)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"Error: {target}: {message}")
    assert not (Path(f"~{sshd.UNPRIVILEGED}").expanduser() / ".edgeopt" / "venv").exists()


def test_a_full_disk_is_refused(sshd_server: sshd.Sshd, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        home = sshd.client_home(tmp_path, sshd_server)
        result = edgeopt(tmp_path, home, "ssh", "bootstrap", f"root@127.0.0.1:{sshd_server.port}",
                         "--name", "full", "--folder", str(small / "agent"))  # fmt: skip
    finally:
        subprocess.run(["umount", str(small)], check=False)
    assert result.exit_code == 1
    assert (f"Error: root@127.0.0.1:{sshd_server.port}: only 2 MiB free in {small}/agent; the "
            "agent needs about 400 MiB") in result.output  # fmt: skip


def test_a_connection_dropped_mid_bootstrap_then_a_rerun_completes(
    sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    home = sshd.client_home(tmp_path, sshd_server)
    os.environ["HOME"], old_home = str(home), os.environ.get("HOME", "")
    folder, port = tmp_path / "board-agent", free_port()
    try:
        conn = ssh.connect(f"root@127.0.0.1:{sshd_server.port}", key_file=sshd_server.client_key)

        def cut(text: str) -> None:
            if text.startswith("installing"):
                conn.client.close()  # the link goes down while the board installs

        cache = Path(old_home or "/root") / ".cache" / "edgeopt" / "bootstrap"
        with pytest.raises(SshError) as dropped:
            bootstrap.bootstrap(conn, folder=str(folder), port=port, offline=True, cache=cache,
                                say=cut)  # fmt: skip
        assert "the connection dropped" in str(dropped.value) or "closed" in str(dropped.value)
        with ssh.connect(
            f"root@127.0.0.1:{sshd_server.port}", key_file=sshd_server.client_key
        ) as again:
            done = bootstrap.bootstrap(again, folder=str(folder), port=port, offline=True,
                                       cache=cache)  # fmt: skip
            assert done.address == f"127.0.0.1:{port}"
            bootstrap.remove(again, folder=str(folder), purge=True)
        assert not folder.exists()
    finally:
        os.environ["HOME"] = old_home


def test_bootstrap_online_installs_from_the_boards_index(
    sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    # The board (this machine, as root over SSH) resolves the agent's dependencies from its own
    # package index; its pip cache makes repeated runs cheap.
    home = sshd.client_home(tmp_path, sshd_server)
    folder, port = tmp_path / "online-agent", free_port()
    result = edgeopt(tmp_path, home, "ssh", "bootstrap", f"root@127.0.0.1:{sshd_server.port}",
                     "--name", "online", "--folder", str(folder), "--port", str(port),
                     "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["upgraded"] is False
    listed = edgeopt(tmp_path, home, "devices", "--device", "online", "--json")
    assert json.loads(listed.stdout)[0]["reachable"] is True
    removed = edgeopt(tmp_path, home, "ssh", "remove", "online", "--purge")
    assert removed.exit_code == 0, removed.output
    assert not folder.exists()


def fake_agent_wheel(folder: Path, ready: str) -> Path:
    """An "edgeopt" wheel whose agent (`python -m edgeopt.agent serve`) writes `ready` to its
    ready file and waits: a board whose agent (or whose user) answers what it likes."""
    wheel = folder / "edgeopt-0.0.1-py3-none-any.whl"
    program = (
        "import sys, time\n\n\ndef main():\n    args = sys.argv[1:]\n"
        "    with open(args[args.index('--ready-file') + 1], 'w') as out:\n"
        f"        out.write({ready!r})\n"
        "    while True:\n        time.sleep(60)\n"
    )
    info = "edgeopt-0.0.1.dist-info"
    files = {
        "edgeopt/agent/__init__.py": program,
        "edgeopt/agent/__main__.py": "from edgeopt.agent import main\n\nmain()\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: edgeopt\nVersion: 0.0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\nedgeopt-agent = edgeopt.agent:main\n",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"]))
    return wheel


def stop_supervised(folder: Path) -> None:
    """Kill what bootstrap started in `folder` (the supervisor leads its process group)."""
    with contextlib.suppress(OSError, ValueError):
        os.killpg(int((folder / "agent.pid").read_text()), signal.SIGKILL)


INVENTORY = '# the lab\n[devices.other]\naddress = "10.0.0.2:50051"  # by hand\n'


@pytest.mark.parametrize(
    ("ready", "token", "message"),
    [
        pytest.param(
            '127.0.0.1:{port}"\n[devices.evil]\naddress = "127.0.0.1:1"\n'
            'token_file = ".edgeopt-tokens/other.token', None,
            "the agent's ready file ({folder}/ready) holds '127.0.0.1:{port}\" [devices.evil] "
            "address = \"127.0.0.1:1\" token_file = \".edgeopt-tokens/other.token', not "
            "127.0.0.1:{port}: refused, nothing was added to the inventory", id="injection"),
        pytest.param("127.0.0.1:{other}\n", None,
                     "the agent's ready file ({folder}/ready) holds '127.0.0.1:{other}', not "
                     "127.0.0.1:{port}: refused, nothing was added to the inventory",
                     id="another-port"),
        pytest.param("10.0.0.7:{port}\x1b[2J\n", None,
                     "the agent's ready file ({folder}/ready) holds '10.0.0.7:{port}', not "
                     "127.0.0.1:{port}: refused, nothing was added to the inventory",
                     id="not-loopback"),
        pytest.param("127.0.0.1:{port}\n", "short\n[devices.evil]\n",
                     "the board's token file ({folder}/token) is not one line of 16 to 4096 "
                     "printable ASCII characters without spaces: refused (remove it and "
                     "bootstrap again to make a new one)", id="token"),
    ],
)  # fmt: skip
def test_a_board_answering_what_it_likes_adds_nothing_to_the_inventory(
    ready: str, token: str | None, message: str, sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    home = sshd.client_home(tmp_path, sshd_server)
    folder, port, other = tmp_path / "board-agent", free_port(), free_port()
    if token is not None:
        folder.mkdir()
        (folder / "token").write_text(token)
    wheel = fake_agent_wheel(tmp_path, ready.format(port=port, other=other))
    inventory = tmp_path / "edgeopt.toml"
    inventory.write_text(INVENTORY)
    target = f"root@127.0.0.1:{sshd_server.port}"
    try:
        result = edgeopt(tmp_path, home, "ssh", "bootstrap", target, "--name", "board",
                         "--wheel", str(wheel), "--folder", str(folder), "--port", str(port),
                         "--start-timeout", "30")  # fmt: skip
    finally:
        stop_supervised(folder)
    assert result.exit_code == 1, result.output
    expected = message.format(folder=folder, port=port, other=other)
    assert result.output.splitlines()[-1] == f"Error: {target}: {expected}"
    assert inventory.read_text() == INVENTORY
    assert not (tmp_path / ".edgeopt-tokens").exists()


def test_a_folder_with_a_space_a_dollar_and_a_percent_a_stale_wheel_and_an_open_store(
    sshd_server: sshd.Sshd, tmp_path: Path
) -> None:
    home = sshd.client_home(tmp_path, sshd_server)
    folder, port = tmp_path / "my agent $HOME %h", free_port()
    # What an older bootstrap left: a store readable by everybody, a log too, and an edgeopt
    # wheel of the same name and size as today's but other bytes (an upgrade's stale wheel).
    (folder / "store").mkdir(parents=True)
    (folder / "wheels").mkdir()
    folder.chmod(0o755)
    (folder / "store").chmod(0o755)
    (folder / "agent.log").write_text("an older run\n")
    (folder / "agent.log").chmod(0o644)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeopt/bootstrap"
    wheel = bootstrap.build_wheel(cache)
    (folder / "wheels" / wheel.name).write_bytes(b"\0" * wheel.stat().st_size)
    target = f"root@127.0.0.1:{sshd_server.port}"
    try:
        result = edgeopt(tmp_path, home, "ssh", "bootstrap", target, "--name", "board",
                         "--offline", "--folder", str(folder), "--port", str(port),
                         "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        done = json.loads(result.stdout)
        assert done["folder"] == str(folder) and done["address"] == f"127.0.0.1:{port}"
        listed = edgeopt(tmp_path, home, "devices", "--device", "board", "--json")
        assert json.loads(listed.stdout)[0]["reachable"] is True, listed.output
        assert (folder / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
        for path, mode in [(folder, 0o700), (folder / "store", 0o700), (folder / "token", 0o600),
                           (folder / "agent.log", 0o600)]:  # fmt: skip
            assert path.stat().st_mode & 0o777 == mode, path
        assert "edgeopt-agent listening on" in (folder / "agent.log").read_text()
        if done["manager"] == "supervisor":
            assert (folder / "agent.child").read_text().strip().isdigit()
    finally:
        removed = edgeopt(tmp_path, home, "ssh", "remove", "board", "--purge")
    assert removed.exit_code == 0, removed.output
    assert not folder.exists()


def test_bootstrap_with_mutual_tls_serves_only_clients_the_fleet_ca_signed(
    sshd_server: sshd.Sshd, digits: DigitsModel, tmp_path: Path
) -> None:
    from edgeopt.host.transport import tls

    home = sshd.client_home(tmp_path, sshd_server)
    ca_dir = tmp_path / "fleet-ca"
    tls.init_ca(ca_dir)
    folder, port = tmp_path / "board-agent", free_port()
    target = f"root@127.0.0.1:{sshd_server.port}"
    done = edgeopt(tmp_path, home, "ssh", "bootstrap", target, "--name", "board", "--offline",
                   "--folder", str(folder), "--port", str(port), "--mtls", "--ca-dir",
                   str(ca_dir), "--json")  # fmt: skip
    assert done.exit_code == 0, done.output
    inventory = (tmp_path / "edgeopt.toml").read_text()
    client_dir = tmp_path / ".edgeopt-tls"
    assert inventory.endswith(
        f'ca = "{ca_dir}/ca.pem"\nclient_cert = "{client_dir}/board-host.pem"\n'
        f'client_key = "{client_dir}/board-host.key"\n'
    )
    # The board keeps its key to itself.
    assert (folder / "tls").stat().st_mode & 0o777 == 0o700
    assert (folder / "tls" / "agent.key").stat().st_mode & 0o777 == 0o600
    assert (client_dir / "board-host.key").stat().st_mode & 0o777 == 0o600
    # Through the tunnel, with the inventory's certificates: a real deploy.
    deployed = edgeopt(tmp_path, home, "deploy", str(digits.onnx), "--device", "board",
                       "--precision", "fp32", "--name", "digits", "--json")  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    # A plaintext client on the board's loopback gets nowhere: the agent speaks TLS only.
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    removed = edgeopt(tmp_path, home, "ssh", "remove", "board", "--purge")
    assert removed.exit_code == 0, removed.output
    assert not (folder / "tls").exists()
