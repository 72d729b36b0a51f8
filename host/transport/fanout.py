"""Talk to many agents at once: bounded concurrency, one outcome per device, no device blocks.

Each device gets its own client and its own deadline; a dead or slow board shows up as an error
in its `DeviceReport` while the others answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import EdgeoptError
from edgeopt.host.transport.client import AgentClient, ClientConfig
from edgeopt.proto.capabilities import Capabilities


@dataclass(frozen=True)
class DeviceReport:
    """What one device answered, or why it did not."""

    device: Device
    """The device asked."""
    capabilities: Capabilities | None = None
    """Its report, when it answered."""
    error: EdgeoptError | None = None
    """Why it did not (unreachable, timeout, wrong token, unreadable token file)."""
    seconds: float = 0.0
    """How long it took, retries included."""

    @property
    def reachable(self) -> bool:
        """Whether the device answered."""
        return self.capabilities is not None


async def _one(device: Device, config: ClientConfig, limit: asyncio.Semaphore) -> DeviceReport:
    async with limit:
        start = time.monotonic()
        try:
            token = device.token()
            async with AgentClient(
                device.address, token=token, device=device.name, config=config, tls=device.tls
            ) as client:
                caps = await client.capabilities()
        except EdgeoptError as exc:
            return DeviceReport(device, error=exc, seconds=time.monotonic() - start)
        return DeviceReport(device, capabilities=caps, seconds=time.monotonic() - start)


async def gather_capabilities(
    devices: Sequence[Device], config: ClientConfig | None = None, parallel: int = 32
) -> list[DeviceReport]:
    """Ask every device for its capabilities, at most `parallel` at a time; keeps input order."""
    limit = asyncio.Semaphore(max(1, parallel))
    cfg = config or ClientConfig()
    return list(await asyncio.gather(*(_one(d, cfg, limit) for d in devices)))


def probe(
    devices: Sequence[Device], config: ClientConfig | None = None, parallel: int = 32
) -> list[DeviceReport]:
    """`gather_capabilities` for synchronous callers (the CLI)."""
    return asyncio.run(gather_capabilities(devices, config, parallel))
