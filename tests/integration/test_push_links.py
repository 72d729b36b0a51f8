"""Pushes over links that misbehave, and what deploying leaves in the agent's own process.

- A connection dropped mid-push (a real TCP proxy closing it) is resumed and completes.
- A 10 mbit link (`tc tbf` on a veth pair into a network namespace) carries a push whole.
- With a model active, ONNX Runtime is mapped into the runner process, never into the agent's,
  and the agent stays under 70 MB.
Figures (throughput, re-sent bytes) are measured in benchmarks/deploy.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeopt.host.transport.client import AgentClient, file_digest
from edgeopt.proto.v1 import agent_pb2
from tests import netns
from tests.agent.test_models import runner_pid
from tests.conftest import RunningAgent
from tests.models import DigitsModel
from tests.proxy import CuttingProxy

pytestmark = pytest.mark.slow


def test_a_push_cut_by_a_dropped_connection_completes(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    agent = agent_factory()
    path = tmp_path / "artifact.bin"
    path.write_bytes(os.urandom(8 << 20))

    async def push() -> tuple[agent_pb2.PushResult, int]:
        proxy = CuttingProxy(agent.address, cut=3 << 20)
        await proxy.start()
        try:
            async with AgentClient(f"127.0.0.1:{proxy.port}", token=agent.token) as client:
                return await client.push(path, "m"), proxy.cuts
        finally:
            await proxy.close()

    result, cuts = asyncio.run(push())
    assert cuts == 1
    # How much reached the agent before the cut depends on the machine's load (the exact
    # resume offsets are tested in tests/agent/test_models.py); what counts is a whole blob.
    assert result.bytes_received <= path.stat().st_size
    assert (agent.store / "blobs" / file_digest(path)).read_bytes() == path.read_bytes()
    assert list((agent.store / "uploads").iterdir()) == []


REASON = netns.unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=f"network namespaces: {REASON}")
def test_a_push_through_a_10_mbit_link(tmp_path: Path) -> None:
    path = tmp_path / "artifact.bin"
    path.write_bytes(os.urandom(2 << 20))
    token = secrets.token_urlsafe(16)
    (tmp_path / "token").write_text(token)
    with netns.Lab(1) as lab:
        shape = ["root", "tbf", "rate", "10mbit", "burst", "32kbit", "latency", "400ms"]
        subprocess.run(["tc", "qdisc", "replace", "dev", f"eo{lab.tag}h0", *shape], check=True)
        subprocess.run(lab.run_in(0, ["tc", "qdisc", "replace", "dev", f"eo{lab.tag}n0",
                                      *shape]), check=True)  # fmt: skip
        ready = tmp_path / "ready"
        agent = subprocess.Popen(
            lab.run_in(0, [sys.executable, "-m", "edgeopt.agent", "serve", "--listen",
                           "0.0.0.0:50051", "--store", str(tmp_path / "store"), "--token-file",
                           str(tmp_path / "token"), "--ready-file", str(ready), "--insecure"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.1)

            async def push() -> agent_pb2.PushResult:
                async with AgentClient(f"{lab.address(0)}:50051", token=token) as client:
                    return await client.push(path, "m")

            result = asyncio.run(push())
        finally:
            agent.terminate()
            agent.wait(timeout=15)
    assert result.bytes_received == path.stat().st_size
    assert (tmp_path / "store" / "blobs" / file_digest(path)).read_bytes() == path.read_bytes()


def test_onnx_runtime_stays_out_of_the_agents_process(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()

    async def deploy() -> agent_pb2.ModelList:
        async with AgentClient(agent.address, token=agent.token) as client:
            pushed = await client.push(digits.onnx, "digits")
            await client.activate("digits", pushed.version)
            return await client.list_models()

    listing = asyncio.run(deploy())
    agent_maps = Path(f"/proc/{agent.process.pid}/maps").read_text()
    runner_maps = Path(f"/proc/{runner_pid(agent)}/maps").read_text()
    assert "onnxruntime" not in agent_maps
    assert "onnxruntime" in runner_maps
    assert listing.agent_rss_bytes <= 70_000_000
