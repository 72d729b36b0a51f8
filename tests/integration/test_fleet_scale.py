"""Dozens of real agents on loopback, asked at once with a bound on concurrency."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edgeopt.host.config.inventory import Device
from edgeopt.host.transport import fanout as fleet
from edgeopt.host.transport.client import ClientConfig
from tests.conftest import RunningAgent

AGENTS = 24


@pytest.mark.slow
def test_two_dozen_agents(agent_factory: Callable[..., RunningAgent]) -> None:
    agents = [agent_factory() for _ in range(AGENTS)]
    devices = [
        Device(f"board{i:02d}", a.address, token_file=a.token_file) for i, a in enumerate(agents)
    ]
    # Generous deadline: two dozen fresh agents measure ONNX Runtime at once on two cores.
    reports = fleet.probe(devices, ClientConfig(deadline=60), parallel=8)
    assert [r.error for r in reports] == [None] * AGENTS
    assert len({r.device.address for r in reports}) == AGENTS
    fingerprints = {r.capabilities.fingerprint for r in reports if r.capabilities}
    assert len(fingerprints) == 1  # one machine: one hardware kind
    assert all(a.stop() == 0 for a in agents)
