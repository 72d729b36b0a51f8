"""One call to many devices: bounded concurrency, an optional deadline, one outcome per device.

Every multi-device command goes through here: `each` runs any per-device work, `on_agents` opens
each device's agent client and makes one call on it, `gather_capabilities`/`probe` ask every
device for its report. At most `parallel` devices are worked on at once and the input order is
kept. A device's deliberate failure (an `EdgeoptError`: unreachable, timeout, wrong token) is that
device's outcome and never ends the others; with a `deadline`, the devices still at work when it
passes are cancelled and say so. Anything else (a bug) is raised once every device has finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import EdgeoptError
from edgeopt.host.transport.client import AgentClient, ClientConfig
from edgeopt.proto.capabilities import Capabilities

__all__ = [
    "DeviceReport",
    "Outcome",
    "each",
    "gather_capabilities",
    "on_agents",
    "open_client",
    "probe",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one device's work gave, or why it gave nothing."""

    device: Device
    value: T | None = None
    """What the work returned, when it finished without an error."""
    error: EdgeoptError | None = None
    """The deliberate failure that ended it."""
    seconds: float = 0.0
    """From the moment it got its turn until it ended."""
    finished: bool = True
    """False: the deadline passed before it ended, and it was cancelled."""

    @property
    def ok(self) -> bool:
        """Whether the work finished without an error."""
        return self.finished and self.error is None

    @property
    def reason(self) -> str:
        """The error as one line ("" when it went well)."""
        return "" if self.error is None else str(self.error)


async def each(
    devices: Sequence[Device],
    work: Callable[[Device], Awaitable[T]],
    *,
    parallel: int = 32,
    deadline: float | None = None,
) -> list[Outcome[T]]:
    """`work(device)` for every device, at most `parallel` at a time; see the module docstring."""
    limit = asyncio.Semaphore(max(1, parallel))

    async def one(device: Device) -> Outcome[T]:
        async with limit:
            start = time.monotonic()
            try:
                value = await work(device)
            except EdgeoptError as exc:
                return Outcome(device, error=exc, seconds=time.monotonic() - start)
            return Outcome(device, value, seconds=time.monotonic() - start)

    tasks = [asyncio.ensure_future(one(d)) for d in devices]
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [
        Outcome(device, finished=False, seconds=deadline or 0.0) if task in pending
        else task.result()  # a bug in edgeopt surfaces here rather than vanishing
        for device, task in zip(devices, tasks, strict=True)
    ]  # fmt: skip


def open_client(device: Device, config: ClientConfig) -> AgentClient:
    """A client for the device's agent, with its address, token and TLS settings."""
    return AgentClient(device.address, token=device.token(), device=device.name, config=config,
                       tls=device.tls)  # fmt: skip


async def on_agents(
    devices: Sequence[Device],
    call: Callable[[AgentClient], Awaitable[T]],
    config: ClientConfig,
    *,
    parallel: int = 32,
    deadline: float | None = None,
) -> list[Outcome[T]]:
    """`call(client)` on every device's agent, through `each`."""

    async def work(device: Device) -> T:
        async with open_client(device, config) as client:
            return await call(client)

    return await each(devices, work, parallel=parallel, deadline=deadline)


@dataclass(frozen=True)
class DeviceReport:
    """What one device answered when asked for its capabilities, or why it did not."""

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


async def gather_capabilities(
    devices: Sequence[Device], config: ClientConfig | None = None, parallel: int = 32
) -> list[DeviceReport]:
    """Ask every device for its capabilities, at most `parallel` at a time; keeps input order."""
    outcomes = await on_agents(devices, AgentClient.capabilities, config or ClientConfig(),
                               parallel=parallel)  # fmt: skip
    return [DeviceReport(o.device, o.value, o.error, o.seconds) for o in outcomes]


def probe(
    devices: Sequence[Device], config: ClientConfig | None = None, parallel: int = 32
) -> list[DeviceReport]:
    """`gather_capabilities` for synchronous callers (the CLI)."""
    return asyncio.run(gather_capabilities(devices, config, parallel))
