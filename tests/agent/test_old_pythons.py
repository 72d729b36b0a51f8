"""The agent installs and runs on the Pythons boards ship: Python 3.8 (Jetson JetPack 5) and 3.9
(Raspberry Pi OS bullseye). Edgeopt's wheel, built from this tree, is installed the ordinary way
(`pip install edgeopt-*.whl`, binary wheels only, as on a board without a compiler: pip checks its
Requires-Python and resolves the agent's requirements for that Python); there `edgeopt-agent`
answers, `edgeopt` (the host, Python 3.10 and newer) refuses in one line, every module of the
agent and of the contract compiles, and a real agent serves this host. The interpreters are
pyenv's on this machine; a missing one is skipped with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from packaging.utils import parse_wheel_filename

from edgeopt.host.transport.client import AgentClient, to_tensors
from edgeopt.host.transport.registry import registry_for
from edgeopt.proto import fleetstate as fs
from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2
from tests.conftest import start_agent
from tests.models import DigitsModel
from tests.registry import OciRegistry

pytestmark = pytest.mark.slow


def agent_venv(version: str, wheel: Path) -> Path:
    """A venv of pyenv's Python `version` with `wheel` installed as a board installs it.

    The venv and the dependencies pip chose for it are kept between runs (~/.cache/edgeopt);
    edgeopt itself is installed afresh from `wheel` each time.
    """
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python3")))
    if not found:
        pytest.skip(f"no Python {version} here (pyenv's ~/.pyenv/versions/{version}.*)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeopt"
    venv = cache / f"agent-py{version}"
    python = venv / "bin" / "python"
    made = venv / ".made"
    if not made.exists():
        subprocess.run([found[-1], "-m", "venv", "--clear", str(venv)], check=True)
        made.touch()
    pip = [str(python), "-m", "pip", "--quiet", "--disable-pip-version-check"]
    # An earlier run's build has the same version number, which pip would keep.
    subprocess.run([*pip, "uninstall", "--yes", "edgeopt"], check=True, capture_output=True)
    subprocess.run([*pip, "install", "--only-binary=:all:", str(wheel)], check=True)
    return python


@pytest.fixture(scope="module")
def old_python(agent_wheel: Path) -> Callable[[str], Path]:
    """The venv's python for a version, made (or refreshed) once per module."""
    made: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in made:
            made[version] = agent_venv(version, agent_wheel)
        return made[version]

    return get


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_the_wheel_installs_with_its_two_commands(
    version: str, old_python: Callable[[str], Path], agent_wheel: Path
) -> None:
    python = old_python(version)
    bin_dir = python.parent
    full = run(python, "-c", "import platform; print(platform.python_version())").stdout.strip()
    assert full.startswith(f"{version}.")

    agent = run(bin_dir / "edgeopt-agent", "--version")
    wheel_version = parse_wheel_filename(agent_wheel.name)[1]
    assert (agent.returncode, agent.stdout) == (0, f"edgeopt-agent {wheel_version}\n")
    host = run(bin_dir / "edgeopt", "devices")
    assert (host.returncode, host.stdout) == (2, "")
    assert host.stderr == (f"edgeopt (the host) needs Python 3.10 or newer; this is Python "
                           f"{full}. On a board, run edgeopt-agent.\n")  # fmt: skip

    # From here (the agent below starts in this folder too), edgeopt is the installed wheel's.
    where = run(python, "-c", "import edgeopt.agent as a; print(a.__file__)").stdout.strip()
    package = Path(where).resolve().parent.parent
    assert package.is_relative_to(python.parent.parent.resolve()), where
    # Every module of the agent and of the contract, not only those the agent below imports.
    compiled = run(python, "-m", "compileall", "-q", "-f", package / "agent", package / "proto")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_the_agent_serves_on_an_old_python(
    version: str, old_python: Callable[[str], Path], digits: DigitsModel, tmp_path: Path
) -> None:
    agent = start_agent(tmp_path / "agent", python=str(old_python(version)))
    try:

        async def go() -> tuple[object, agent_pb2.InferResult, agent_pb2.BenchmarkResult]:
            async with AgentClient(agent.address, token=agent.token) as client:
                caps = await client.capabilities()
                await client.push(digits.onnx, "digits")
                await client.activate("digits")
                x = np.load(digits.validation)["image"][:2]
                _, reply = await client.infer("digits", {"image": x})
                sha = (await client.push(digits.onnx, "")).sha256
                bench = await client.benchmark(agent_pb2.BenchmarkRequest(
                    sha256=sha, inputs=to_tensors({"image": x[:1]}), max_seconds=1))  # fmt: skip
                return caps, reply, bench

        caps, reply, bench = asyncio.run(go())
    finally:
        agent.stop()
    assert caps.python_version.startswith(f"{version}.")  # type: ignore[attr-defined]
    assert reply.outputs and bench.latency.samples >= 10


@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_runners_started_while_grpc_is_busy_never_abort(
    version: str, old_python: Callable[[str], Path], tmp_path: Path
) -> None:
    """Python 3.8 and 3.9 fork() (not vfork()) to start a runner, and gRPC's fork handlers
    aborted that child now and then (7 of 30 starts under load on 3.9) until the agent turned
    gRPC's fork support off. Each cancelled Benchmark kills the benchmark runner, so each of
    these starts a new one while other calls keep gRPC's pollers busy."""
    import threading

    import grpc

    from edgeopt.proto import auth
    from edgeopt.proto.v1 import agent_pb2_grpc
    from tests.models import matmul_chain

    agent = start_agent(tmp_path / "agent", python=str(old_python(version)))
    model = matmul_chain(tmp_path / "m.onnx", np.eye(256), 4)
    md = (auth.bearer(agent.token or ""),)
    outcomes: list[str] = []
    stop = threading.Event()

    def busy() -> None:
        with grpc.insecure_channel(agent.address) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)
            while not stop.is_set():
                with contextlib.suppress(grpc.RpcError):
                    stub.ListModels(agent_pb2.ListModelsRequest(), metadata=md, timeout=5)

    async def push() -> str:
        async with AgentClient(agent.address, token=agent.token) as client:
            return (await client.push(model, "")).sha256

    try:
        sha = asyncio.run(push())
        workers = [threading.Thread(target=busy) for _ in range(4)]
        for w in workers:
            w.start()
        with grpc.insecure_channel(agent.address) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)
            for _ in range(20):
                request = agent_pb2.BenchmarkRequest(sha256=sha, max_seconds=5,
                                                     min_repeats=10**6)  # fmt: skip
                try:
                    list(stub.Benchmark(request, metadata=md, timeout=0.6))
                    outcomes.append("OK")
                except grpc.RpcError as exc:
                    outcomes.append(f"{exc.code().name}: {exc.details()}")
        stop.set()
        for w in workers:
            w.join()
    finally:
        stop.set()
        agent.stop()
    assert not [o for o in outcomes if "SIGABRT" in o or "crashed" in o], outcomes
    assert "Epoll1Poller" not in (agent.store / "runner.log").read_text()


@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_the_agent_pulls_on_an_old_python(
    version: str, old_python: Callable[[str], Path], digits: DigitsModel, tmp_path: Path,
    oci_registry: OciRegistry,
) -> None:  # fmt: skip
    """Pull mode is stdlib HTTP only: the same convergence on the boards' Pythons."""
    fleet = registry_for(oci_registry.url, oci_registry.credentials_file(tmp_path / "host.json"))
    device = f"py{version.replace('.', '')}"
    published = fleet.publish_artifact(Path(digits.onnx), RunPlan(precision="fp32"), "digits",
                                       "v1")  # fmt: skip
    fleet.set_desired(device, [fs.DesiredModel("digits", "v1", published.artifact, "fp32")])
    creds = oci_registry.credentials_file(tmp_path / "agent.json")
    agent = start_agent(
        tmp_path / "agent", "--pull", oci_registry.url, "--device-name", device,
        "--pull-interval", "0.2s", "--registry-credentials", str(creds),
        python=str(old_python(version)), token=None, listen=False,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        view = fleet.view(device)
        while view.state != "converged" and time.monotonic() < deadline:
            time.sleep(0.2)
            view = fleet.view(device)
    finally:
        agent.stop()
        fleet.close()
    assert view.state == "converged", view
    assert view.status is not None
    assert view.status.capabilities["python_version"].startswith(f"{version}.")
