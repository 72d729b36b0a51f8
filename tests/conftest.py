"""Shared fixtures: real agent processes on loopback, tokens, captured board trees."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import pg, pki, registry, sshd
from tests.pg import Postgres

BOARDS = Path(__file__).parent / "boardfacts" / "data" / "boards"


@dataclass
class RunningAgent:
    """A real edgeopt-agent process serving on 127.0.0.1."""

    process: subprocess.Popen[str]
    address: str
    token: str | None
    token_file: Path | None
    store: Path
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text()


def start_agent(
    tmp: Path,
    *args: str,
    token: str | None = "",
    ready_timeout: float = 30.0,
    prefix: tuple[str, ...] = (),
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    listen: bool = True,
) -> RunningAgent:
    """Start `python -m edgeopt.agent serve` and wait for its ready file.

    token: "" makes a fresh random token, None runs without one. prefix: a command the agent
    runs under, such as ("taskset", "-c", "0") for a board that gives the agent one CPU.
    python and env: another interpreter (a board's old runtimes) and what its environment adds.
    listen: False leaves --listen out (pull mode with no port: the address is then "pull").
    """
    tmp.mkdir(parents=True, exist_ok=True)
    token_file = None
    if token is not None:
        token = token or secrets.token_urlsafe(24)
        token_file = tmp / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
    ready = tmp / "ready"
    log = tmp / "agent.log"
    store = tmp / "store"
    cmd = [*prefix, python, "-m", "edgeopt.agent", "serve"]
    cmd += ["--listen", "127.0.0.1:0"] if listen else []
    cmd += ["--store", str(store), "--ready-file", str(ready), *args]
    if token_file is not None:
        cmd += ["--token-file", str(token_file)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **env} if env else None)  # fmt: skip
    deadline = time.monotonic() + ready_timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"agent not ready within {ready_timeout} s:\n{log.read_text()}")
        time.sleep(0.02)
    address = ready.read_text().strip()
    return RunningAgent(proc, address, token, token_file, store, log)


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., RunningAgent]]:
    """Start as many real agents as a test needs; all are stopped afterwards."""
    started: list[RunningAgent] = []

    def factory(
        *args: str, token: str | None = "", name: str = "agent", prefix: tuple[str, ...] = ()
    ) -> RunningAgent:
        agent = start_agent(tmp_path / f"{name}{len(started)}", *args, token=token, prefix=prefix)
        started.append(agent)
        return agent

    yield factory
    for agent in started:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(timeout=15)


@pytest.fixture(scope="session")
def fleet_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    """A fleet CA, a board's server certificate (127.0.0.1, board.test), the host's client one."""
    return pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def shared_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    """One agent for the read-only tests of a session (starting one costs ~0.5 s)."""
    agent = start_agent(tmp_path_factory.mktemp("shared-agent"))
    yield agent
    agent.stop()


@pytest.fixture
def free_port() -> Iterator[int]:
    """A loopback port nobody listens on (bound then closed; connecting is refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A loopback address that accepts TCP connections but never speaks HTTP/2: a hung agent."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"127.0.0.1:{s.getsockname()[1]}"
    s.close()


def board(name: str) -> Path:
    """The captured tree of a real board (see tests/boardfacts/data/boards/SOURCES.md)."""
    path = BOARDS / name
    assert path.is_dir(), path
    return path


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own artifact cache, never the user's."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory):
    """A CNN trained on scikit-learn's digits, exported to ONNX (see tests/models.py)."""
    from tests.models import train_digits_cnn

    return train_digits_cnn(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on loopback for the session (tests/pg.py), or a skip saying why."""
    reason = pg.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with Postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres: Postgres) -> str:
    """`postgresql://edgeopt:PASSWORD@127.0.0.1:PORT/edgeopt` on the session's server."""
    return postgres.url()


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Sshd]:
    """A real OpenSSH sshd on a loopback port, key-only, for root (tests/sshd.py)."""
    reason = sshd.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with sshd.Sshd(tmp_path_factory.mktemp("sshd")) as running:
        yield running


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry.OciRegistry]:
    """Debian's docker-registry on loopback: plain HTTP, htpasswd login (tests/registry.py)."""
    reason = registry.unavailable_reason()
    if reason:
        pytest.skip(reason)
    running = registry.OciRegistry(tmp_path_factory.mktemp("registry")).start()
    yield running
    running.stop()
