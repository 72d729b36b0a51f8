"""The host's gRPC client of one agent: deadlines, retries on UNAVAILABLE, errors translated.

Every call has a deadline (`ClientConfig.deadline`, the whole budget including retries). A call that
fails with UNAVAILABLE (agent restarting, connection refused) is retried with exponential backoff
and jitter while the budget lasts. Any `grpc.aio.AioRpcError` leaving this module is translated
once, through `edgeopt.proto.errors.STATUS_TO_ERROR`, into an `AgentError` that keeps the device's
name and the status.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeopt.proto import auth
from edgeopt.proto.capabilities import Capabilities, from_message
from edgeopt.proto.errors import AgentError, AgentTimeout, error_for_status
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc

T = TypeVar("T")


@dataclass(frozen=True)
class ClientConfig:
    """How the host talks to agents."""

    deadline: float = 10.0
    """Seconds one call may take in all, retries included."""
    retries: int = 4
    """Extra attempts after an UNAVAILABLE answer, while the deadline allows."""
    backoff_initial: float = 0.1
    """Seconds before the first retry; doubled each time."""
    backoff_max: float = 2.0
    """Longest wait between two attempts."""


class AgentClient:
    """A channel to one agent. Use as `async with AgentClient(...) as client:`."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        device: str | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        """Prepare a client; the channel opens lazily on the first call.

        Args:
            address: HOST:PORT of the agent.
            token: bearer token, sent with every call.
            device: inventory name, carried into errors.
            config: deadlines and retries.
        """
        self.address = address
        self.device = device
        self.config = config or ClientConfig()
        self._metadata = (auth.bearer(token),) if token else ()
        self._channel = grpc.aio.insecure_channel(address)
        # The generated gRPC module has no annotations (grpcio-tools writes none for it).
        self._stub = agent_pb2_grpc.AgentStub(self._channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def _call(self, what: str, attempt: Callable[[float], Awaitable[T]]) -> T:
        """Run `attempt(timeout)` until it succeeds, fails for good, or the deadline passes."""
        cfg = self.config
        end = time.monotonic() + cfg.deadline
        delay = cfg.backoff_initial
        tries = 0
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout(
                    f"{what}: no answer from {self.address} within {cfg.deadline:g} s",
                    device=self.device,
                    status="DEADLINE_EXCEEDED",
                )
            try:
                return await attempt(remaining)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                retry = code == grpc.StatusCode.UNAVAILABLE and tries < cfg.retries
                wait = min(delay, cfg.backoff_max) * random.uniform(0.5, 1.0)
                if not retry or time.monotonic() + wait >= end:
                    raise self._translate(what, exc) from None
                tries += 1
                await asyncio.sleep(wait)
                delay *= 2

    def _translate(self, what: str, exc: grpc.aio.AioRpcError) -> AgentError:
        code = exc.code()
        details = exc.details() or code.name
        if code == grpc.StatusCode.UNAVAILABLE:
            details = f"{what}: cannot reach the agent at {self.address}: {details}"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            details = f"{what}: no answer from {self.address} within {self.config.deadline:g} s"
        else:
            details = f"{what}: {details}"
        return error_for_status(code.name, details, device=self.device)

    async def capabilities(self, refresh: bool = False) -> Capabilities:
        """The agent's `GetCapabilities`."""
        request = agent_pb2.GetCapabilitiesRequest(refresh=refresh)

        async def attempt(timeout: float) -> Capabilities:
            reply = await self._stub.GetCapabilities(
                request, timeout=timeout, metadata=self._metadata
            )
            return from_message(reply)

        return await self._call("GetCapabilities", attempt)

    async def health(self, service: str = "") -> str:
        """The standard health check's status name ("SERVING"); needs no token."""
        stub = health_pb2_grpc.HealthStub(self._channel)

        async def attempt(timeout: float) -> str:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

        return await self._call("Health.Check", attempt)
