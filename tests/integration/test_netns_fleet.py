"""A fleet of boards with their own addresses (network namespaces), seen through `edgeopt`.

Each namespace runs a real agent listening on all its interfaces with a token; the host reaches
it at its namespace address over a bridge, as it would reach boards on a LAN.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeopt.host.cli import cli
from tests import netns

REASON = netns.unavailable_reason()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=f"network namespaces: {REASON}"),
]


def _start(lab: netns.Lab, i: int, tmp: Path, *args: str) -> subprocess.Popen[str]:
    ready = tmp / f"ready{i}"
    cmd = lab.run_in(
        i,
        [sys.executable, "-m", "edgeopt.agent", "serve", "--store", str(tmp / f"store{i}"),
         "--ready-file", str(ready), *args],
    )  # fmt: skip
    log = tmp / f"agent{i}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "agent not ready"
        time.sleep(0.02)
    return proc


def test_fleet_on_its_own_addresses(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token)
    procs: list[subprocess.Popen[str]] = []
    with netns.Lab(4) as lab:
        try:
            for i in range(3):
                procs.append(
                    _start(lab, i, tmp_path, "--listen", "0.0.0.0:50051",
                           "--token-file", str(tmp_path / "token"), "--insecure")
                )  # fmt: skip
            # Board 3 exists on the network but its agent is down: connection refused.
            lines = [
                f'[devices.board{i}]\naddress = "{lab.address(i)}:50051"\n'
                f'token_file = "token"\ntags = ["lan"]\n'
                for i in range(4)
            ]
            inv = tmp_path / "edgeopt.toml"
            inv.write_text("\n".join(lines))
            # board1's agent dies hard, as a board losing power would.
            procs[1].send_signal(signal.SIGKILL)
            procs[1].wait(timeout=10)
            result = CliRunner().invoke(
                cli, ["--inventory", str(inv), "--deadline", "3", "devices", "--device", "lan",
                      "--json"],
            )  # fmt: skip
            assert result.exit_code == 1, result.output
            data = {d["name"]: d for d in json.loads(result.output)}
            assert [data[f"board{i}"]["reachable"] for i in range(4)] == [True, False, True, False]
            assert data["board1"]["error_status"] == "UNAVAILABLE"
            assert data["board3"]["error_status"] == "UNAVAILABLE"
            ids = {data[f"board{i}"]["capabilities"]["hostname"] for i in (0, 2)}
            assert len(ids) == 1  # namespaces share the UTS namespace: same host, two boards
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=15)


def test_lan_address_without_token_is_refused(tmp_path: Path) -> None:
    with netns.Lab(1) as lab:
        done = subprocess.run(
            lab.run_in(0, [sys.executable, "-m", "edgeopt.agent", "serve",
                           "--listen", f"{lab.address(0)}:50051", "--store", str(tmp_path / "s")]),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"refusing to listen on {lab.address(0)} without authentication" in done.stderr
