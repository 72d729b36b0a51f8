"""The host's client against real agents, dead ports and a hung listener on loopback."""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import AgentTimeout, AgentUnavailable, InventoryError, Unauthenticated
from edgeopt.host.transport import fanout as fleet
from edgeopt.host.transport.client import AgentClient, ClientConfig
from tests.conftest import RunningAgent


def _run(coro):
    return asyncio.run(coro)


async def _caps(address: str, token: str | None, **kw: Any):
    async with AgentClient(address, token=token, device="dut", **kw) as client:
        return await client.capabilities()


def test_capabilities_and_health(shared_agent: RunningAgent) -> None:
    caps = _run(_caps(shared_agent.address, shared_agent.token))
    assert caps.arch == platform.machine()
    assert caps.onnxruntime.max_opset is not None

    async def health() -> str:
        async with AgentClient(shared_agent.address) as client:  # no token needed
            return await client.health()

    assert _run(health()) == "SERVING"


def test_wrong_token_is_translated(shared_agent: RunningAgent) -> None:
    with pytest.raises(Unauthenticated) as info:
        _run(_caps(shared_agent.address, "wrong"))
    err = info.value
    assert err.device == "dut" and err.status == "UNAUTHENTICATED"
    assert str(err) == (
        "dut: GetCapabilities: wrong token: check the device's token_file in the inventory "
        "(UNAUTHENTICATED)"
    )


def test_closed_port_is_unavailable_after_retries(free_port: int) -> None:
    config = ClientConfig(deadline=3.0, retries=3, backoff_initial=0.05)
    start = time.monotonic()
    with pytest.raises(AgentUnavailable) as info:
        _run(_caps(f"127.0.0.1:{free_port}", None, config=config))
    assert time.monotonic() - start < 3.0 + 2.0  # within the deadline, plus scheduling slack
    assert info.value.status == "UNAVAILABLE"
    assert f"cannot reach the agent at 127.0.0.1:{free_port}" in str(info.value)


def test_hung_agent_times_out_within_the_deadline(silent_listener: str) -> None:
    config = ClientConfig(deadline=1.5)
    start = time.monotonic()
    with pytest.raises(AgentTimeout) as info:
        _run(_caps(silent_listener, None, config=config))
    assert time.monotonic() - start < 1.5 + 2.0
    assert info.value.status == "DEADLINE_EXCEEDED"
    assert f"no answer from {silent_listener} within 1.5 s" in str(info.value)


def test_retry_reaches_an_agent_that_starts_late(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    """UNAVAILABLE is retried: a call made while the agent restarts succeeds once it is back."""
    agent = agent_factory()
    address, token = agent.address, agent.token
    port = address.rsplit(":", 1)[1]
    assert agent.stop() == 0

    async def call_then_restart() -> str:
        task = asyncio.ensure_future(
            _caps(address, token, config=ClientConfig(deadline=30, retries=50, backoff_max=0.3))
        )
        await asyncio.sleep(0.5)
        assert not task.done()  # still retrying against the dead port
        await asyncio.to_thread(
            agent_factory, "--listen", f"127.0.0.1:{port}", token=token, name="again"
        )
        return (await task).arch

    assert _run(call_then_restart()) == platform.machine()


def test_fleet_reports_every_device_and_dead_ones_do_not_block(
    agent_factory: Callable[..., RunningAgent], free_port: int, silent_listener: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    live = [agent_factory() for _ in range(3)]
    devices = [
        Device(f"live{i}", a.address, token_file=a.token_file) for i, a in enumerate(live)
    ] + [
        Device("refused", f"127.0.0.1:{free_port}"),
        Device("hung", silent_listener),
        Device("notoken", live[0].address, token_file=tmp_path / "missing-token"),
    ]
    # Generous: a fresh agent's first answer waits for its ONNX Runtime probe (a child process).
    reports = fleet.probe(devices, ClientConfig(deadline=8.0), parallel=8)
    assert [r.device.name for r in reports] == [d.name for d in devices]
    assert [r.reachable for r in reports] == [True, True, True, False, False, False]
    assert isinstance(reports[3].error, AgentUnavailable)
    assert isinstance(reports[4].error, AgentTimeout)
    assert isinstance(reports[5].error, InventoryError)
    assert all(r.capabilities is not None and r.error is None for r in reports[:3])
