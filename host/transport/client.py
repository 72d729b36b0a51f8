"""The host's gRPC client of one agent: deadlines, retries on UNAVAILABLE, errors translated.

Every call has a deadline (`ClientConfig.deadline`, the whole budget including retries). A call that
fails with UNAVAILABLE (agent restarting, connection refused) is retried with exponential backoff
and jitter while the budget lasts. Any `grpc.aio.AioRpcError` leaving this module is translated
once, through `edgeopt.host.errors.STATUS_TO_ERROR`, into an `AgentError` that keeps the device's
name and the status.

TLS (`tls=TlsSettings(...)`, from the inventory): the agent's certificate is checked against the
CA (`ca`) and the address's host (or `server_name`); with a pin (`tls_pin`), the certificate the
agent presents is fetched first and must hash to the pin, and then exactly it is trusted. A
certificate that does not match is refused with an `AgentUnavailable` that says why, at once
(no retries: a wrong certificate does not heal). Without TLS, a token sent beyond loopback is
logged as a warning: it crosses the network in cleartext.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeopt.host.config.inventory import TlsSettings
from edgeopt.host.errors import (
    AgentError,
    AgentTimeout,
    AgentUnavailable,
    TlsError,
    error_for_status,
)
from edgeopt.host.transport import tls as certs
from edgeopt.host.transport.ssh import tunnel
from edgeopt.host.transport.wire import (
    BenchmarkCall,
    ProfileCall,
    from_tensors,
    plan_message,
    to_tensors,
    write_tensor_file,
)
from edgeopt.proto import auth
from edgeopt.proto import tensors as tensor_format
from edgeopt.proto.capabilities import Capabilities, from_message
from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc

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

T = TypeVar("T")
log = logging.getLogger("edgeopt.host.transport.client")
_WARNED_CLEARTEXT: set[str] = set()
"""Addresses already warned about (once per process, not once per call)."""

MAX_MESSAGE_BYTES = 64 << 20
"""Largest message the host accepts from a board (agents send at most 4 MiB; older ones sent
whole Infer results in one message). A board cannot make the host hold more than this."""
CHUNK_SIZE = 1 << 20
"""Bytes per push or InferStream message: large enough for throughput, far below gRPC's 4 MiB
default and the agents' limit."""
INFER_CHUNK = 128 << 10
"""Bytes per InferStream message the host sends. Each is held two or three times over while
the agent takes it in, so small chunks keep a board's peak down: 16 calls of 15 MB took the
agent from 44 MiB to 73 MiB at its peak with 1 MiB chunks, to 66.7 with 256 KiB, 65.5 with
128 KiB (measured here, Intel Xeon, 2 CPUs); 120 messages for 15 MB cost the host nothing."""
INLINE_INPUTS_BYTES = 3 << 20
"""Inputs of a Benchmark, Profile or Activate larger than this travel as a pushed tensor file
(`inputs_sha256`): agents refuse messages over 4 MiB."""


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
        tls: TlsSettings | None = None,
    ) -> None:
        """Prepare a client; the channel opens lazily on the first call.

        Args:
            address: HOST:PORT of the agent.
            token: bearer token, sent with every call.
            device: inventory name, carried into errors.
            config: deadlines and retries.
            tls: TLS to the agent (`Device.tls`); None: plaintext. With a pin, the pin is
                checked on entering `async with`, which such a client needs.

        Raises:
            TlsError: a CA, client certificate or key file cannot be read.
        """
        self.address = address
        self.device = device
        self.config = config or ClientConfig()
        self.tls = tls
        self._metadata = (auth.bearer(token),) if token else ()
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = _PinPending(address)
        if tls is None:
            if token and not _is_loopback(address) and address not in _WARNED_CLEARTEXT:
                _WARNED_CLEARTEXT.add(address)
                log.warning(
                    "%sthe agent's token travels in cleartext to %s: anyone on the path can "
                    "read it; turn on TLS (README: TLS and mutual TLS) or reach it over SSH",
                    f"{device}: " if device else "", address,
                )  # fmt: skip
            self._open(None)
        elif tls.pin is None:
            self._open(self._read(tls.ca, "ca"))

    def _open(self, roots: bytes | None, name: str | None = None) -> None:
        """Create the channel: plaintext when `self.tls` is None, else TLS trusting `roots`."""
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=self._options)
        else:
            key = self._read(self.tls.client_key, "client_key")
            chain = self._read(self.tls.client_cert, "client_cert")
            credentials = grpc.ssl_channel_credentials(roots, key, chain)
            options = list(self._options)
            target = self.tls.server_name or name
            if target:
                options.append(("grpc.ssl_target_name_override", target))
            self._channel = grpc.aio.secure_channel(self.address, credentials, options=options)
        # The generated gRPC module has no annotations (grpcio-tools writes none for it).
        self._stub = agent_pb2_grpc.AgentStub(self._channel)  # type: ignore[no-untyped-call]

    def _read(self, path: Path | None, key: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            who = f" of device {self.device!r}" if self.device else ""
            raise TlsError(
                f"cannot read the TLS {key} file{who}, {path}: {exc.strerror or exc}"
            ) from exc

    async def _check_pin(self, tls: TlsSettings) -> None:
        """Fetch the agent's certificate, hold it against the pin, then trust exactly it."""
        # A client certificate that cannot be read is said as such, not as a failed handshake.
        self._read(tls.client_cert, "client_cert")
        self._read(tls.client_key, "client_key")
        host, _, port = self.address.rpartition(":")
        try:
            pem = await asyncio.wait_for(
                asyncio.to_thread(
                    certs.fetch_certificate, host.strip("[]"), int(port),
                    server_name=tls.server_name, client_cert=tls.client_cert,
                    client_key=tls.client_key, timeout=self.config.deadline,
                ),
                self.config.deadline + 1,
            )  # fmt: skip
        except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            what = "TLS handshake failed" if isinstance(exc, ssl.SSLError) else "no connection"
            raise AgentUnavailable(
                f"cannot check the certificate pin of the agent at {self.address}: {what}: "
                f"{exc or 'timed out'}",
                device=self.device, status="UNAVAILABLE",
            ) from exc  # fmt: skip
        presented = certs.fingerprint(pem)
        if presented != tls.pin:
            raise AgentUnavailable(
                f"the agent at {self.address} presents a certificate with {presented}, but the "
                f"inventory pins {tls.pin}: refusing to talk to it (if the board's certificate "
                "was renewed on purpose, update its tls_pin)",
                device=self.device, status="UNAVAILABLE",
            )  # fmt: skip
        if tls.ca is not None:
            self._open(self._read(tls.ca, "ca"))
            return
        if not certs.is_self_signed(pem):
            raise AgentUnavailable(
                f"the pinned certificate of the agent at {self.address} was issued by a CA: "
                "gRPC cannot trust it alone; give the device's `ca` too",
                device=self.device, status="UNAVAILABLE",
            )  # fmt: skip
        # The pin already proved who it is: the name to check is one the certificate carries.
        names = certs.names_in(pem)
        self._open(pem, names[0] if names else None)

    async def __aenter__(self) -> AgentClient:
        if self._channel is None and self.tls is not None:
            await self._check_pin(self.tls)
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
        if self._channel is not None:
            await self._channel.close()

    async def _call(
        self,
        what: str,
        attempt: Callable[[float], Awaitable[T]],
        deadline: float | None = None,
        *,
        idempotent: bool = True,
    ) -> T:
        """Run `attempt(timeout)` until it succeeds, fails for good, or the deadline passes.

        `deadline` overrides `config.deadline` for calls that do real work (activation loads a
        model, inference runs it).
        """
        cfg = self.config
        budget = deadline if deadline is not None else cfg.deadline
        end = time.monotonic() + budget
        delay = cfg.backoff_initial
        tries = 0
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout(
                    f"{what}: no answer from {self.address} within {budget:g} s",
                    device=self.device,
                    status="DEADLINE_EXCEEDED",
                )
            try:
                return await attempt(remaining)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                # A call that changes state differently when repeated (a rollback steps back
                # once more) is not retried: its first attempt may have been carried out.
                retry = code == grpc.StatusCode.UNAVAILABLE and tries < cfg.retries and idempotent
                retry = retry and not _tls_refusal(exc.details() or "")  # it will not heal
                wait = min(delay, cfg.backoff_max) * random.uniform(0.5, 1.0)
                if not retry or time.monotonic() + wait >= end:
                    raise self._translate(what, exc) from None
                tries += 1
                await asyncio.sleep(wait)
                delay *= 2

    def _translate(self, what: str, exc: grpc.aio.AioRpcError) -> AgentError:
        code = exc.code()
        details = exc.details() or code.name
        refusal = _tls_refusal(details) if code == grpc.StatusCode.UNAVAILABLE else ""
        if refusal:
            details = (
                f"{what}: refusing the agent at {self.address}: {refusal} (check the device's "
                f"ca, server_name and tls_pin in the inventory; gRPC said: {details})"
            )
        elif code == grpc.StatusCode.UNAVAILABLE:
            why = tunnel.explain(self.address)
            details = f"{what}: cannot reach the agent at {self.address}: {why or details}"
            if "Socket closed" in details:
                details += (
                    " (the agent may want TLS, or a client certificate: see the inventory's "
                    "ca, client_cert and client_key)"
                )
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
            # gRPC's own words for the client's deadline; an agent's time limit says more.
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

        async def attempt(timeout: float) -> str:
            stub = health_pb2_grpc.HealthStub(self._channel)
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

        return await self._call("Health.Check", attempt)

    # --- models ---------------------------------------------------------------------------

    async def upload_status(self, sha256: str) -> agent_pb2.UploadStatus:
        """How much of an artifact the agent holds."""
        request = agent_pb2.UploadStatusRequest(sha256=sha256)

        async def attempt(timeout: float) -> agent_pb2.UploadStatus:
            reply: agent_pb2.UploadStatus = await self._stub.GetUploadStatus(
                request, timeout=timeout, metadata=self._metadata
            )
            return reply

        return await self._call("GetUploadStatus", attempt)

    async def push(
        self,
        path: Path,
        name: str,
        *,
        version: str = "",
        plan: RunPlan | agent_pb2.Plan | None = None,
        chunk_size: int = CHUNK_SIZE,
        progress: Callable[[int, int], None] | None = None,
        resumes: int = 3,
    ) -> agent_pb2.PushResult:
        """Upload `path` as (name, version), sending only what the agent lacks.

        An artifact the agent has already costs one status call and a header. An interrupted
        upload (the agent restarted, the link dropped) resumes from the offset the agent
        holds, up to `resumes` times. `progress(sent, total)` is called as bytes go out. The
        deadline grows with the size: `config.deadline` plus one second per MiB.

        Raises:
            AgentError: the agent refused (quota, digest, name) or could not be reached.
        """
        size = path.stat().st_size
        sha256 = file_digest(path)
        budget = self.config.deadline + size / (1 << 20)
        for attempt_number in range(resumes + 1):
            status = await self.upload_status(sha256)
            offset = 0 if status.complete else status.offset
            header = agent_pb2.PushHeader(
                name=name, version=version, sha256=sha256, size=size, offset=offset,
                plan=plan_message(plan) or agent_pb2.Plan(),
            )  # fmt: skip
            try:
                return await self._stream_push(
                    path, header, complete=status.complete, chunk_size=chunk_size,
                    progress=progress, budget=budget,
                )  # fmt: skip
            except grpc.aio.AioRpcError as exc:
                # A connection cut mid-stream surfaces as UNAVAILABLE, CANCELLED or, from
                # grpc's core, INTERNAL ("Internal error from Core", seen here); the agent
                # kept what arrived, and the status call tells where to resume.
                resumable = exc.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.INTERNAL,
                ) or (
                    exc.code() == grpc.StatusCode.DATA_LOSS and "incomplete" in str(exc.details())
                )
                if not resumable or attempt_number == resumes:
                    raise self._translate("PushModel", exc) from None
                if exc.code() == grpc.StatusCode.INTERNAL:
                    # Also what gRPC's core reports when the agent refused the header (a full
                    # quota, say) while chunks were still on their way: the header alone carries
                    # no such race and brings the agent's own answer.
                    verdict = await self._header_alone(header, budget)
                    if verdict is not None:
                        return verdict
                await asyncio.sleep(self.config.backoff_initial * 2**attempt_number)
        raise AssertionError("unreachable")

    async def _header_alone(
        self, header: agent_pb2.PushHeader, budget: float
    ) -> agent_pb2.PushResult | None:
        """Send a push's header with no chunk: the agent's verdict on it, without a race.

        Returns the result when the agent has the artifact already; None when it would take
        the bytes (it answers that the upload is incomplete, and keeps what it held).

        Raises:
            AgentError: the agent refuses the header (quota, name, label, digest).
        """

        async def requests() -> AsyncIterator[agent_pb2.PushRequest]:
            yield agent_pb2.PushRequest(header=header)

        try:
            reply: agent_pb2.PushResult = await self._stub.PushModel(
                requests(), timeout=budget, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            incomplete = exc.code() == grpc.StatusCode.DATA_LOSS and "incomplete" in str(
                exc.details()
            )
            if incomplete or exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                return None
            raise self._translate("PushModel", exc) from None
        return reply

    async def _stream_push(
        self,
        path: Path,
        header: agent_pb2.PushHeader,
        *,
        complete: bool,
        chunk_size: int,
        progress: Callable[[int, int], None] | None,
        budget: float,
    ) -> agent_pb2.PushResult:
        async def requests() -> AsyncIterator[agent_pb2.PushRequest]:
            yield agent_pb2.PushRequest(header=header)
            if complete:
                return
            sent = header.offset
            with path.open("rb") as f:
                f.seek(header.offset)
                while chunk := f.read(chunk_size):
                    yield agent_pb2.PushRequest(chunk=chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, header.size)

        reply: agent_pb2.PushResult = await self._stub.PushModel(
            requests(), timeout=budget, metadata=self._metadata
        )
        return reply

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

    async def _inputs_aside(self, request: Any, field: str) -> None:
        """Move a request's large inputs into a pushed tensor file named by `inputs_sha256`.

        An agent takes no message over 4 MiB; a tensor file travels in chunks like a model
        (and is not sent again while the agent has it).
        """
        tensors = getattr(request, field)
        if sum(len(t.data) for t in tensors) <= INLINE_INPUTS_BYTES:
            return
        arrays = from_tensors(tensors)
        with tempfile.NamedTemporaryFile(prefix="edgeopt-inputs-", suffix=".tensors") as f:
            write_tensor_file(f, arrays)
            f.flush()
            pushed = await self.push(Path(f.name), "")
        del tensors[:]
        request.inputs_sha256 = pushed.sha256

    async def infer(
        self,
        name: str,
        inputs: dict[str, np.ndarray],
        version: str = "",
        timeout: float | None = None,
    ) -> tuple[dict[str, np.ndarray], agent_pb2.InferResult]:
        """Run the active (or a named) version; returns the outputs by name and the reply.

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
        inputs: dict[str, np.ndarray],
        version: str = "",
        timeout: float | None = None,
    ) -> tuple[dict[str, np.ndarray], agent_pb2.InferResult]:
        """`infer`, split along the batch axis into calls the board takes (`max_infer_bytes`).

        The outputs are joined along the batch axis again; the reply is the last call's, its
        latency the sum. A single sample over the board's limit, or inputs whose first axes
        differ, are refused before anything is sent.

        Raises:
            AgentError: RESOURCE_EXHAUSTED when no split fits, or what a call raised.
        """
        limit = (await self.capabilities()).max_infer_bytes
        total = sum(np.asarray(v).nbytes for v in inputs.values())
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
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}, reply

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


_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, hex.

    Remembered per (path, inode, size, mtime) for the life of the process: a fleet deploy
    pushes one artifact to many boards and hashes it once.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    known = _DIGESTS.get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if len(_DIGESTS) > 256:
        _DIGESTS.clear()
    _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


class _PinPending:
    """The stub of a pinned client until `async with` has checked the pin."""

    def __init__(self, address: str) -> None:
        self.address = address

    def __getattr__(self, name: str) -> Any:
        raise AgentUnavailable(
            f"the agent at {self.address} has a tls_pin: use `async with AgentClient(...)`, "
            "which checks the pin before the first call"
        )


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_refusal(details: str) -> str:
    """Why gRPC's TLS layer refused the agent's certificate, in words; "" when it did not."""
    if "Hostname Verification" in details or "No match found for server name" in details:
        return "its certificate does not carry the name dialled (set server_name to one it does)"
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return "its certificate is not signed by the CA the inventory trusts"
    if "WRONG_VERSION_NUMBER" in details or "handshake failed" in details.lower():
        return "the TLS handshake failed (does the agent serve TLS, with --tls-cert?)"
    return ""
