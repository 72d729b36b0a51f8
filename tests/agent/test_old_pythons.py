"""The agent runs on the Pythons boards ship: a real agent on Python 3.8 (Jetson JetPack 5) and
3.9 (Raspberry Pi OS bullseye), with what pip resolves there for the agent's requirements,
serving this host. The interpreters are pyenv's on this machine; a missing one is skipped with
its reason."""

from __future__ import annotations

import asyncio
import glob
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeopt.host.client import AgentClient, to_tensors
from edgeopt.proto.v1 import agent_pb2
from tests.conftest import start_agent
from tests.models import DigitsModel

ROOT = Path(__file__).resolve().parents[2]
# What pyproject's base dependencies ask, for a venv of an interpreter the package itself does
# not install on yet (requires-python >= 3.10 for the host).
AGENT_REQUIREMENTS = ("grpcio>=1.70.0", "grpcio-health-checking>=1.70.0",
                      "grpcio-reflection>=1.70.0", "protobuf>=5.29.0", "numpy>=1.21",
                      "onnxruntime>=1.16")  # fmt: skip

pytestmark = pytest.mark.slow


def agent_venv(version: str) -> Path:
    """A venv of pyenv's Python `version` with the agent's dependencies (cached)."""
    found = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python3")))
    if not found:
        pytest.skip(f"no Python {version} here (pyenv's ~/.pyenv/versions/{version}.*)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgeopt"
    venv = cache / f"agent-py{version}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == "\n".join(AGENT_REQUIREMENTS):
        return python
    subprocess.run([found[-1], "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--only-binary=:all:", *AGENT_REQUIREMENTS], check=True)  # fmt: skip
    stamp.write_text("\n".join(AGENT_REQUIREMENTS))
    return python


@pytest.mark.parametrize("version", ["3.8", "3.9"])
def test_the_agent_serves_on_an_old_python(
    version: str, digits: DigitsModel, tmp_path: Path
) -> None:
    python = agent_venv(version)
    shim = tmp_path / "shim" / "edgeopt"  # the source tree under the package's name
    shim.mkdir(parents=True)
    for part in ("agent", "proto"):
        (shim / part).symlink_to(ROOT / part)
    agent = start_agent(tmp_path / "agent", python=str(python),
                        env={"PYTHONPATH": str(shim.parent)})  # fmt: skip
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
