"""The committed contract loads on the oldest runtimes boards ship: a real agent running on
grpcio 1.70.0 and protobuf 5.29.6 (what Python 3.8 gets at most) serves this host, which runs
the newest (tests/proto/test_generated.py checks the code is what grpcio-tools 1.70.0 makes)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeopt.host.transport.client import AgentClient, to_tensors
from edgeopt.proto.v1 import agent_pb2
from tests.conftest import start_agent
from tests.models import DigitsModel

ROOT = Path(__file__).resolve().parents[2]
OLD = ROOT / ".venv" / "grpc-1.70" / "bin" / "python"


def test_an_agent_on_the_oldest_runtimes_serves_the_newest_host(
    digits: DigitsModel, tmp_path: Path
) -> None:
    if not OLD.exists():
        pytest.fail(f"{OLD} missing: `make test` builds it (Makefile target GRPC_OLD)")
    code = "import grpc, google.protobuf as p; print(grpc.__version__, p.__version__)"
    versions = subprocess.run([str(OLD), "-c", code], capture_output=True, text=True,
                              check=True).stdout.split()  # fmt: skip
    assert versions == ["1.70.0", "5.29.6"]
    # edgeopt is not installed there: the source tree is put on its path under the package name.
    shim = tmp_path / "shim" / "edgeopt"
    shim.mkdir(parents=True)
    for part in ("agent", "boardfacts", "proto"):
        (shim / part).symlink_to(ROOT / part)
    agent = start_agent(tmp_path / "agent", python=str(OLD),
                        env={"PYTHONPATH": str(shim.parent)})  # fmt: skip
    try:

        async def go() -> tuple[object, agent_pb2.BenchmarkResult]:
            async with AgentClient(agent.address, token=agent.token) as client:
                caps = await client.capabilities()
                sha = (await client.push(digits.onnx, "")).sha256
                x = np.load(digits.validation)["image"][:1]
                result = await client.benchmark(agent_pb2.BenchmarkRequest(
                    sha256=sha, inputs=to_tensors({"image": x}), max_seconds=1))  # fmt: skip
                return caps, result

        caps, result = asyncio.run(go())
    finally:
        agent.stop()
    assert caps.onnxruntime.version == "1.19.2"  # type: ignore[attr-defined]
    assert result.latency.samples >= 10 and result.latency.p50_ms > 0
