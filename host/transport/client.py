"""The host's gRPC client of one agent: every RPC of the contract, typed on the host's side.

    AgentClient(Uploads(Channel))
      channel.Channel   the channel, TLS and pin, the token, deadlines, retries, error translation
      upload.Uploads    pushes resumed where they broke off, large inputs pushed aside
      AgentClient       capabilities, health, activate, rollback, list, delete, benchmark,
                        profile, infer (InferStream in chunks, unary for old agents)

Plans go in as `RunPlan`s and measurements as `BenchmarkCall`/`ProfileCall` (wire.py); replies
come back as the contract's messages, read by attribute or turned into records by `wire`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeopt.host.errors import (
    AgentError,
)
from edgeopt.host.transport.channel import MAX_MESSAGE_BYTES, ClientConfig
from edgeopt.host.transport.upload import CHUNK_SIZE, INLINE_INPUTS_BYTES, Uploads, file_digest
from edgeopt.host.transport.wire import (
    BenchmarkCall,
    ProfileCall,
    from_tensors,
    plan_message,
    to_tensors,
)
from edgeopt.proto import tensors as tensor_format
from edgeopt.proto.capabilities import Capabilities, from_message
from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2

__all__ = [
    "CHUNK_SIZE",
    "INFER_CHUNK",
    "INLINE_INPUTS_BYTES",
    "MAX_MESSAGE_BYTES",
    "AgentClient",
    "ClientConfig",
    "file_digest",
    "from_tensors",
    "to_tensors",
]

INFER_CHUNK = 128 << 10
"""Bytes per InferStream message the host sends. Each is held two or three times over while
the agent takes it in, so small chunks keep a board's peak down: 16 calls of 15 MB took the
agent from 44 MiB to 73 MiB at its peak with 1 MiB chunks, to 66.7 with 256 KiB, 65.5 with
128 KiB (measured here, Intel Xeon, 2 CPUs); 120 messages for 15 MB cost the host nothing."""


class AgentClient(Uploads):
    """A client of one agent: every RPC of the contract. Use as `async with AgentClient(...)`."""

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

        async def attempt(timeout: float) -> str:
            stub = health_pb2_grpc.HealthStub(self._channel)
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

        return await self._call("Health.Check", attempt)

    # --- models ---------------------------------------------------------------------------

    async def activate(
        self,
        name: str,
        version: str = "",
        plan: RunPlan | agent_pb2.Plan | None = None,
        smoke_inputs: dict[str, np.ndarray] | None = None,
        timeout: float | None = None,
    ) -> agent_pb2.ActivateResult:
        """Load, smoke-test and switch to a version (the previous one stays on failure)."""
        request = agent_pb2.ActivateRequest(
            name=name, version=version, smoke_inputs=to_tensors(smoke_inputs or {})
        )
        message = plan_message(plan)
        if message is not None:
            request.plan.CopyFrom(message)
        await self._inputs_aside(request, "smoke_inputs")

        async def attempt(remaining: float) -> agent_pb2.ActivateResult:
            reply: agent_pb2.ActivateResult = await self._stub.ActivateModel(
                request, timeout=remaining, metadata=self._metadata
            )
            return reply

        return await self._call("ActivateModel", attempt, timeout)

    async def rollback(self, name: str, timeout: float | None = None) -> agent_pb2.ActivateResult:
        """Activate the previously active version again."""
        request = agent_pb2.RollbackRequest(name=name)

        async def attempt(remaining: float) -> agent_pb2.ActivateResult:
            reply: agent_pb2.ActivateResult = await self._stub.RollbackModel(
                request, timeout=remaining, metadata=self._metadata
            )
            return reply

        return await self._call("RollbackModel", attempt, timeout, idempotent=False)

    async def list_models(self) -> agent_pb2.ModelList:
        """Every stored name, its versions and the active one."""

        async def attempt(remaining: float) -> agent_pb2.ModelList:
            reply: agent_pb2.ModelList = await self._stub.ListModels(
                agent_pb2.ListModelsRequest(), timeout=remaining, metadata=self._metadata
            )
            return reply

        return await self._call("ListModels", attempt)

    async def delete(
        self, name: str, version: str = "", force: bool = False
    ) -> agent_pb2.DeleteResult:
        """Remove a version ("" = every version) of a name."""
        request = agent_pb2.DeleteRequest(name=name, version=version, force=force)

        async def attempt(remaining: float) -> agent_pb2.DeleteResult:
            reply: agent_pb2.DeleteResult = await self._stub.DeleteModel(
                request, timeout=remaining, metadata=self._metadata
            )
            return reply

        return await self._call("DeleteModel", attempt)

    async def benchmark(
        self,
        call: BenchmarkCall | agent_pb2.BenchmarkRequest,
        progress: Callable[[agent_pb2.BenchmarkProgress], None] | None = None,
        timeout: float | None = None,
    ) -> agent_pb2.BenchmarkResult:
        """Run the agent's Benchmark; `progress` sees its interim events.

        `call` is what to measure (a `BenchmarkCall`; a request message as it is, for tests that
        send what no host would). The deadline covers the queue, the run and the session load:
        by default the run's `max_seconds` (10 when unset) plus a minute.
        """
        request = call.message() if isinstance(call, BenchmarkCall) else call
        budget = timeout or (request.max_seconds or 10.0) + 60.0
        await self._inputs_aside(request, "inputs")

        async def attempt(remaining: float) -> agent_pb2.BenchmarkResult:
            call = self._stub.Benchmark(request, timeout=remaining, metadata=self._metadata)
            async for event in call:
                if event.HasField("progress"):
                    if progress is not None:
                        progress(event.progress)
                else:
                    result: agent_pb2.BenchmarkResult = event.result
                    return result
            raise AgentError("Benchmark: the agent ended the stream without a result",
                             device=self.device, status="INTERNAL")  # fmt: skip

        return await self._call("Benchmark", attempt, budget)

    async def profile(
        self, call: ProfileCall | agent_pb2.ProfileRequest, timeout: float = 600.0
    ) -> agent_pb2.ProfileResult:
        """Run the agent's Profile (it waits in the Benchmark queue)."""
        request = call.message() if isinstance(call, ProfileCall) else call
        await self._inputs_aside(request, "inputs")

        async def attempt(remaining: float) -> agent_pb2.ProfileResult:
            reply: agent_pb2.ProfileResult = await self._stub.Profile(
                request, timeout=remaining, metadata=self._metadata
            )
            return reply

        return await self._call("Profile", attempt, timeout)

    async def infer(
        self,
        name: str,
        inputs: dict[str, Any],
        version: str = "",
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], agent_pb2.InferResult]:
        """Run the active (or a named) version; returns the outputs by name and the reply.

        Inputs and outputs are numpy arrays, or lists (sequences) and dicts (maps) where the
        model takes or gives those (edgeopt.proto.tensors).

        The tensors travel in chunks (InferStream); an agent too old for that gets one
        message (Infer). A batch larger than the board's `max_infer_bytes` is refused by the
        board (RESOURCE_EXHAUSTED): `infer_batches` splits it.
        """
        parts = [(n, *tensor_format.to_wire(v)) for n, v in inputs.items()]

        async def attempt(remaining: float) -> agent_pb2.InferResult:
            return await self._infer_stream(name, version, parts, remaining)

        try:
            reply = await self._call("Infer", attempt, timeout)
        except AgentError as exc:
            if exc.status != "UNIMPLEMENTED":
                raise
            request = agent_pb2.InferRequest(name=name, version=version, inputs=to_tensors(inputs))

            async def unary(remaining: float) -> agent_pb2.InferResult:
                answer: agent_pb2.InferResult = await self._stub.Infer(
                    request, timeout=remaining, metadata=self._metadata
                )
                return answer

            reply = await self._call("Infer", unary, timeout)
        return from_tensors(reply.outputs), reply

    async def infer_batches(
        self,
        name: str,
        inputs: dict[str, Any],
        version: str = "",
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], agent_pb2.InferResult]:
        """`infer`, split along the batch axis into calls the board takes (`max_infer_bytes`).

        The outputs are joined along the batch axis again; the reply is the last call's, its
        latency the sum. A single sample over the board's limit, or inputs whose first axes
        differ, are refused before anything is sent.

        Raises:
            AgentError: RESOURCE_EXHAUSTED when no split fits, or what a call raised.
        """
        limit = (await self.capabilities()).max_infer_bytes
        total = sum(len(memoryview(tensor_format.to_wire(v)[2]).cast("B"))
                    for v in inputs.values())  # fmt: skip
        if limit is None or total <= limit:
            return await self.infer(name, inputs, version, timeout)
        batches = {np.asarray(v).shape[0] if np.ndim(v) else 0 for v in inputs.values()}
        batch = batches.pop() if len(batches) == 1 else 0
        per_sample = total / batch if batch else total
        step = int(limit // per_sample) if batch else 0
        if step < 1:
            raise AgentError(
                f"Infer: the inputs take {total} bytes and the board takes at most {limit} per "
                "call (max_infer_bytes); they cannot be split along a common batch axis "
                "small enough", device=self.device, status="RESOURCE_EXHAUSTED",
            )  # fmt: skip
        pieces: list[dict[str, np.ndarray]] = []
        latency, reply = 0.0, agent_pb2.InferResult()
        for start in range(0, batch, step):
            part = {k: np.asarray(v)[start : start + step] for k, v in inputs.items()}
            outputs, reply = await self.infer(name, part, version, timeout)
            latency += reply.latency_ms
            pieces.append(outputs)
        reply.latency_ms = latency
        return {k: tensor_format.join_values([p[k] for p in pieces]) for k in pieces[0]}, reply

    async def _infer_stream(
        self, name: str, version: str, parts: list[tuple[str, str, tuple[int, ...], Any]],
        timeout: float,
    ) -> agent_pb2.InferResult:  # fmt: skip
        """One InferStream call: the outputs' bytes are put back into the reply's tensors."""

        async def requests() -> AsyncIterator[agent_pb2.InferPart]:
            yield agent_pb2.InferPart(
                request=agent_pb2.InferRequest(
                    name=name, version=version,
                    inputs=[agent_pb2.Tensor(name=n, dtype=d, shape=list(s),
                                             byte_size=memoryview(b).nbytes)
                            for n, d, s, b in parts],
                )
            )  # fmt: skip
            # The agent answers its initial metadata once it accepted the header (or ends the
            # call refusing it): no tensor byte is sent to an agent that will not take it.
            await call.initial_metadata()
            if call.done():
                return
            for _, _, _, data in parts:
                view = memoryview(data).cast("B")
                for at in range(0, len(view), INFER_CHUNK):
                    yield agent_pb2.InferPart(chunk=bytes(view[at : at + INFER_CHUNK]))

        call = self._stub.InferStream(requests(), timeout=timeout, metadata=self._metadata)
        reply: agent_pb2.InferResult | None = None
        buffers: list[bytearray] = []
        index = at = 0
        async for part in call:
            kind = part.WhichOneof("part")
            if reply is None:
                if kind != "result":
                    raise AgentError("InferStream: the agent's answer did not start with its "
                                     "result", device=self.device, status="INTERNAL")  # fmt: skip
                reply = part.result
                total = sum(t.byte_size for t in reply.outputs)
                if total > MAX_MESSAGE_BYTES * 16:
                    raise AgentError(f"InferStream: the board announced {total} bytes of "
                                     "outputs; refused", device=self.device,
                                     status="RESOURCE_EXHAUSTED")  # fmt: skip
                buffers = [bytearray(t.byte_size) for t in reply.outputs]
                continue
            data = memoryview(part.chunk)
            while len(data) > 0:
                while index < len(buffers) and at == len(buffers[index]):
                    index, at = index + 1, 0
                if index == len(buffers):
                    raise AgentError("InferStream: the board sent more bytes than its outputs "
                                     "declare", device=self.device, status="DATA_LOSS")  # fmt: skip
                take = min(len(data), len(buffers[index]) - at)
                buffers[index][at : at + take] = data[:take]
                at, data = at + take, data[take:]
        if reply is None or sum(len(b) for b in buffers[:index]) + at != sum(
            len(b) for b in buffers
        ):
            raise AgentError("InferStream: the answer ended before its outputs' bytes",
                             device=self.device, status="DATA_LOSS")  # fmt: skip
        for tensor, filled in zip(reply.outputs, buffers, strict=True):
            tensor.data = bytes(filled)
        return reply
