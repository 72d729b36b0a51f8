"""The agent's gRPC server: the `edgeopt.v1.Agent` service, health, reflection and token auth.

`serve(config)` blocks until SIGTERM or SIGINT, then reports NOT_SERVING on the health service,
lets running calls finish (up to `grace` seconds) and returns. The bound address is printed as
`edgeopt-agent listening on HOST:PORT` and, when asked, written atomically to a ready file once
the health service says SERVING, so a supervisor or test can wait for the file instead of polling.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import hmac
import ipaddress
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgeopt.agent.models import Activation, Bounds, Models, chunks_of
from edgeopt.agent.plancheck import PlanRefused, check_plan
from edgeopt.agent.runner import TensorTuple
from edgeopt.agent.store import Limits, Refusal, check_digest
from edgeopt.agent.tls import ServerTls, TlsFiles, TokenHolder, reload_all
from edgeopt.boardfacts.capabilities import Sources, collect
from edgeopt.boardfacts.runtime import probe_in_subprocess
from edgeopt.proto import auth
from edgeopt.proto import tensors as wire
from edgeopt.proto.capabilities import OnnxRuntimeInfo, to_message
from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("edgeopt.agent")

STATUS_WAIT_SECONDS = 10.0
"""How long GetUploadStatus waits for an upload of the same artifact to end."""
ACCEPTED_KEY = "edgeopt-accepted"
"""Initial metadata InferStream sends once the request's header passed its checks."""
CHUNK_BYTES = 1 << 20
"""Bytes per InferStream chunk the agent sends."""
MESSAGE_OVERHEAD = 64 << 10
"""Room left in a message for everything but tensor bytes (names, shapes, framing)."""

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name


@dataclass(frozen=True)
class ServerConfig:
    """How to run the agent's server."""

    host: str
    """Address to listen on ("127.0.0.1", "0.0.0.0", "::")."""
    port: int
    """Port to listen on; 0 picks a free one."""
    store: Path
    """Directory of the model store (created if missing)."""
    token: str | None = None
    """Bearer token every Agent call must carry; None disables auth (loopback or --insecure)."""
    ready_file: Path | None = None
    """Where to write "HOST:PORT" once serving."""
    grace: float = 3.0
    """Seconds running calls get to finish on shutdown; then the runners are killed."""
    max_workers: int = 32
    """Threads serving calls concurrently (as many as calls admitted: none waits for a thread,
    so ListModels and Health answer while other calls wait on the runner)."""
    limits: Limits = field(default_factory=Limits)
    """Store quota and per-artifact limit."""
    bounds: Bounds = field(default_factory=Bounds)
    """Time limits and sizes of one request (messages, inference tensors, benchmarks)."""
    max_concurrent_rpcs: int = 32
    """Calls in progress at once, queued ones included; more get RESOURCE_EXHAUSTED at once."""
    token_file: Path | None = None
    """The file `token` came from, read again on SIGHUP (token rotation)."""
    tls: TlsFiles | None = None
    """Certificate and key to serve TLS with (and a client CA for mutual TLS); None: plaintext."""


class ConfigurationRefused(ValueError):
    """The server refuses to start as configured (the message says why and what to do)."""


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """Split "HOST:PORT" ("[::1]:50051" for IPv6) into host and port.

    Raises:
        ValueError: not of that form, or the port is outside 0..65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen wants HOST:PORT (port 0 picks a free one), got {value!r}")
    return host.strip("[]"), int(port)


def check_exposure(
    host: str, token: str | None, insecure: bool, tls: TlsFiles | None = None
) -> None:
    """Refuse to serve beyond loopback without authentication or without TLS, unless insecure.

    A client certificate (mutual TLS) authenticates as a token does. Without TLS, a token
    crosses the network in cleartext and anyone on the path can read it and the models.

    Raises:
        ConfigurationRefused: `host` is not loopback, not `insecure`, and either no token nor
            client CA, or no TLS.
    """
    if insecure or is_loopback(host):
        return
    if token is None and (tls is None or tls.client_ca is None):
        raise ConfigurationRefused(
            f"refusing to listen on {host} without authentication: anyone who can reach this "
            "board could push and run models. Give --token-file FILE (or --client-ca FILE), "
            "listen on 127.0.0.1, or pass --insecure if the network is trusted."
        )
    if tls is None:
        raise ConfigurationRefused(
            f"refusing to listen on {host} without TLS: the token and the models would cross "
            "the network in cleartext. Give --tls-cert FILE --tls-key FILE (`edgeopt tls "
            "issue` makes them), listen on 127.0.0.1 (reach it over SSH), or pass --insecure "
            "if the network is trusted."
        )


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Reject calls without the right bearer token, except health and reflection."""

    def __init__(self, token: str | TokenHolder) -> None:
        # A holder, so that SIGHUP can swap the token under running calls (rotation).
        self._token = token if isinstance(token, TokenHolder) else TokenHolder(token)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Pass the call on when its token matches; else answer UNAUTHENTICATED."""
        method = str(details.method)
        if method.startswith(auth.UNAUTHENTICATED_PATHS):
            return continuation(details)
        presented = None
        for key, value in details.invocation_metadata or ():
            if key == auth.METADATA_KEY:
                presented = auth.token_from_header(str(value))
        handler = continuation(details)
        if handler is None:
            return None
        expected = self._token.expected
        if presented is not None and hmac.compare_digest(presented.encode(), expected):
            return handler
        message = (
            "missing bearer token: send metadata 'authorization: Bearer <token>'"
            if presented is None
            else "wrong token: check the device's token_file in the inventory"
        )
        return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, message)


class DecodeGuard(grpc.ServerInterceptor):
    """Answer INVALID_ARGUMENT, not INTERNAL, for a request body that is not its message.

    gRPC turns an exception from a handler's deserializer into INTERNAL ("Exception
    deserializing request!"), which agent.proto reserves for the agent's own bugs. So the
    Agent's handlers take the raw bytes, and this parses them, aborting in words on garbage.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The method's handler, parsing its requests itself."""
        handler = continuation(details)
        if handler is None or not str(details.method).startswith(f"/{SERVICE_NAME}/"):
            return handler
        parse = handler.request_deserializer
        what = str(details.method).rsplit("/", 1)[-1]

        def decoded(data: bytes, context: grpc.ServicerContext) -> Any:
            try:
                return parse(data) if parse is not None else data
            except DecodeError:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the {what} request is not a valid edgeopt.v1 message (protobuf would not "
                    "parse it)",
                )

        kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
        if handler.request_streaming:
            behavior = handler.stream_stream or handler.stream_unary

            def streaming(requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
                return behavior(  # type: ignore[misc]
                    (decoded(r, context) for r in requests), context
                )

            if handler.response_streaming:
                return grpc.stream_stream_rpc_method_handler(streaming, **kwargs)
            return grpc.stream_unary_rpc_method_handler(streaming, **kwargs)
        unary = handler.unary_stream or handler.unary_unary

        def single(request: bytes, context: grpc.ServicerContext) -> Any:
            return unary(decoded(request, context), context)  # type: ignore[misc]

        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(single, **kwargs)
        return grpc.unary_unary_rpc_method_handler(single, **kwargs)


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler that aborts with `code` before it reads a byte of the request.

    It is request-streaming whatever the method's shape: gRPC reads a unary request's whole
    message before its handler runs, but hands a streaming handler an iterator it never
    pulls, so a refused caller costs at most what the transport buffered, not its body. On
    the wire both shapes are one stream, so the caller sees its status either way.
    """

    def abort(_requests: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    return grpc.stream_unary_rpc_method_handler(abort, **kwargs)


def _plan(message: agent_pb2.Plan) -> RunPlan:
    """A received plan, checked (plancheck) before it is stored or run."""
    try:
        return check_plan(RunPlan.from_message(message))
    except PlanRefused as exc:
        raise Refusal("INVALID_ARGUMENT", str(exc)) from None


def _cancel_event(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends for any reason (the client cancelled, its deadline)."""
    event = threading.Event()
    context.add_callback(event.set)
    if not context.is_active():
        event.set()
    return event


def _signatures(items: list[dict[str, Any]]) -> list[agent_pb2.TensorInfo]:
    return [agent_pb2.TensorInfo(**item) for item in items]


def _refused(context: grpc.ServicerContext, exc: Refusal) -> NoReturn:
    context.abort(getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL), str(exc))
    raise AssertionError("unreachable")  # abort raises


class AgentService(agent_pb2_grpc.AgentServicer):
    """The `edgeopt.v1.Agent` service."""

    def __init__(
        self, store: Path, limits: Limits | None = None, bounds: Bounds | None = None
    ) -> None:
        self._store = store
        self._runtime: OnnxRuntimeInfo | None = None
        self._runtime_lock = threading.Lock()
        self.models = Models(store, limits, bounds)
        self.bounds = self.models.bounds
        self._inflight = 0
        self._inflight_lock = threading.Lock()

    @contextlib.contextmanager
    def _budget(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` of the tensor memory calls may take at once (twice max_infer_bytes).

        One runner works at a time, so more tensors in the agent would only wait there; a call
        beyond the budget is RESOURCE_EXHAUSTED at once, before its bytes are read.
        """
        budget = 2 * self.bounds.max_infer_bytes
        with self._inflight_lock:
            if self._inflight and self._inflight + nbytes > budget:
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"{self._inflight} bytes of tensors are already in flight on this agent "
                    f"(at most {budget}); try again shortly",
                )
            self._inflight += nbytes
        try:
            yield
        finally:
            with self._inflight_lock:
                self._inflight -= nbytes

    def runtime(self, refresh: bool = False) -> OnnxRuntimeInfo:
        """ONNX Runtime facts, measured once (in a child process) and then cached."""
        with self._runtime_lock:
            if self._runtime is None or refresh:
                self._runtime = probe_in_subprocess()
            return self._runtime

    def GetCapabilities(
        self, request: agent_pb2.GetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> agent_pb2.Capabilities:
        """Report the board; see agent.proto."""
        caps = collect(Sources.live_system(), self._store, self.runtime(request.refresh))
        b = self.bounds
        return to_message(
            dataclasses.replace(
                caps,
                max_message_bytes=b.max_message_bytes,
                max_infer_bytes=b.max_infer_bytes,
                request_timeout_s=b.request_timeout,
                max_benchmark_seconds=b.max_benchmark_seconds,
            )
        )

    def PushModel(
        self, request_iterator: Iterator[agent_pb2.PushRequest], context: grpc.ServicerContext
    ) -> agent_pb2.PushResult:
        """Store an uploaded artifact; see agent.proto."""
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a push starts with a PushHeader")
        h = first.header
        try:
            header = {"name": h.name, "version": h.version, "sha256": h.sha256, "size": h.size,
                      "offset": h.offset, "plan": _plan(h.plan)}  # fmt: skip
            check_digest(h.sha256)
            outcome = self.models.push(header, chunks_of(request_iterator))
        except Refusal as exc:
            _refused(context, exc)
        v = outcome.version
        return agent_pb2.PushResult(
            name=h.name, version=v.version, sha256=v.sha256, size=v.size,
            bytes_received=outcome.bytes_received, already_present=outcome.already_present,
        )  # fmt: skip

    def GetUploadStatus(
        self, request: agent_pb2.UploadStatusRequest, context: grpc.ServicerContext
    ) -> agent_pb2.UploadStatus:
        """How much of an artifact the agent holds."""
        try:
            # An upload of this artifact still running (its stream was just cut, and its
            # handler has not noticed yet) may still grow the file: wait for it to end, up to a
            # limit, so that the offset reported is the one a resume must start from.
            check_digest(request.sha256)
            with self.models.store.digest_lock(request.sha256, timeout=STATUS_WAIT_SECONDS):
                complete, offset = self.models.store.upload_offset(request.sha256)
        except Refusal as exc:
            _refused(context, exc)
        return agent_pb2.UploadStatus(sha256=request.sha256, complete=complete, offset=offset)

    def _activation(self, a: Activation) -> agent_pb2.ActivateResult:
        return agent_pb2.ActivateResult(
            name=a.name, version=a.version, sha256=a.sha256, previous_version=a.previous,
            load_ms=a.load_ms, smoke_ms=a.smoke_ms, memory_bytes=a.loaded.memory_bytes,
            inputs=_signatures(a.loaded.inputs), outputs=_signatures(a.loaded.outputs),
        )  # fmt: skip

    def ActivateModel(
        self, request: agent_pb2.ActivateRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ActivateResult:
        """Load, smoke-test and switch to a version."""
        cancel = _cancel_event(context)
        try:
            plan = _plan(request.plan) if request.HasField("plan") else None
            smoke = self._tensors(request.smoke_inputs) or None
            return self._activation(
                self.models.activate(request.name, request.version, plan, smoke,
                                     inputs_sha256=request.inputs_sha256, cancel=cancel)
            )  # fmt: skip
        except Refusal as exc:
            _refused(context, exc)

    def RollbackModel(
        self, request: agent_pb2.RollbackRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ActivateResult:
        """Activate the previously active version again."""
        try:
            return self._activation(self.models.rollback(request.name))
        except Refusal as exc:
            _refused(context, exc)

    def DeleteModel(
        self, request: agent_pb2.DeleteRequest, context: grpc.ServicerContext
    ) -> agent_pb2.DeleteResult:
        """Remove versions of a name."""
        try:
            removed, freed = self.models.delete(request.name, request.version, request.force)
        except Refusal as exc:
            _refused(context, exc)
        return agent_pb2.DeleteResult(versions_removed=removed, bytes_freed=freed)

    def ListModels(
        self, request: agent_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ModelList:
        """Every stored name with its versions and the active one's memory (never waits)."""
        loaded = self.models.loaded()
        infos = []
        for name, entry in sorted(self.models.store.entries().items()):
            held = loaded.get(name)
            infos.append(
                agent_pb2.ModelInfo(
                    name=name,
                    active_version=entry.active,
                    versions=[
                        agent_pb2.ModelVersion(
                            version=v.version,
                            sha256=v.sha256,
                            size=v.size,
                            created_unix=v.created,
                            plan=v.plan.to_message(),
                            active=v.version == entry.active,
                        )
                        for v in entry.versions
                    ],
                    loaded=held is not None and held.version == entry.active,
                    memory_bytes=held.memory_bytes if held else 0,
                    inputs=_signatures(held.inputs) if held else [],
                    outputs=_signatures(held.outputs) if held else [],
                )
            )
        agent_rss, runner_rss = self.models.memory()
        quota = self.models.store.limits.max_store_bytes
        result = agent_pb2.ModelList(
            models=infos, store_bytes=self.models.store.used_bytes(),
            agent_rss_bytes=agent_rss, runner_rss_bytes=runner_rss,
        )  # fmt: skip
        if quota is not None:
            result.quota_bytes = quota
        return result

    def Benchmark(
        self, request: agent_pb2.BenchmarkRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.BenchmarkEvent]:
        """Measure a model; progress events, then the result (agent.proto)."""
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        cancel = _cancel_event(context)
        try:
            params = {
                **self._model_run(request),
                "warmup": request.warmup, "min_repeats": request.min_repeats,
                "max_repeats": request.max_repeats, "target_ci": request.target_ci,
                "max_seconds": request.max_seconds,
            }  # fmt: skip
        except Refusal as exc:
            _refused(context, exc)

        def work() -> None:
            try:
                answer = self.models.benchmark(
                    params, lambda p: events.put(("progress", p)), cancel
                )
                events.put(("result", answer))
            except Refusal as exc:
                events.put(("error", exc))
            except Exception as exc:  # a bug must answer, not hang the caller
                events.put(("error", Refusal("INTERNAL", f"{type(exc).__name__}: {exc}")))

        threading.Thread(target=work, name="benchmark", daemon=True).start()
        while True:
            kind, payload = events.get()
            if kind == "progress":
                yield agent_pb2.BenchmarkEvent(progress=agent_pb2.BenchmarkProgress(**payload))
            elif kind == "result":
                yield agent_pb2.BenchmarkEvent(result=_benchmark_result(payload))
                return
            else:
                _refused(context, payload)

    def Profile(
        self, request: agent_pb2.ProfileRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ProfileResult:
        """Profile a model with ONNX Runtime's profiler (agent.proto)."""
        cancel = _cancel_event(context)
        try:
            params = {
                **self._model_run(request),
                "runs": request.runs, "warmup": request.warmup,
                "include_trace": request.include_trace,
            }  # fmt: skip
            answer = self.models.profile(params, cancel)
        except Refusal as exc:
            _refused(context, exc)
        return agent_pb2.ProfileResult(
            sha256=answer["sha256"],
            plan=answer["plan"].to_message(),
            runs=answer["runs"], run_ms=answer["run_ms"], node_ms=answer["node_ms"],
            nodes=[agent_pb2.NodeProfile(**n) for n in answer["nodes"]],
            op_types=[agent_pb2.OpTypeProfile(**t) for t in answer["op_types"]],
            trace=answer["trace"], onnxruntime_version=answer["onnxruntime_version"],
        )  # fmt: skip

    def Infer(
        self, request: agent_pb2.InferRequest, context: grpc.ServicerContext
    ) -> agent_pb2.InferResult:
        """Run a model on the given tensors (one message each way)."""
        cancel = _cancel_event(context)
        try:
            answer = self.models.infer(
                request.name, request.version, self._tensors(request.inputs), cancel
            )
            room = self.bounds.max_message_bytes - MESSAGE_OVERHEAD
            size = sum(_nbytes(data) for _, _, _, data in answer["outputs"])
            if size > room:
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"the outputs take {size} bytes, more than one message carries ({room}): "
                    "call InferStream (edgeopt's host does)",
                )
        except Refusal as exc:
            _refused(context, exc)
        return agent_pb2.InferResult(
            version=answer["version"],
            outputs=[
                agent_pb2.Tensor(name=n, dtype=d, shape=list(s), data=bytes(_view(b)))
                for n, d, s, b in answer["outputs"]
            ],
            latency_ms=answer["latency_ms"],
        )

    def InferStream(
        self, request_iterator: Iterator[agent_pb2.InferPart], context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.InferPart]:
        """Run a model on tensors that arrive in chunks; the outputs leave in chunks."""
        cancel = _cancel_event(context)
        try:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("part") != "request":
                raise Refusal("INVALID_ARGUMENT", "an InferStream starts with its request")
            request = first.request
            headers = self._headers(request.inputs, streamed=True)
            with self._budget(sum(h[3] for h in headers)):
                # Accepted: the client waits for this before it sends a chunk, so a refusal
                # above reaches it before any tensor byte is on its way.
                context.send_initial_metadata(((ACCEPTED_KEY, "1"),))
                inputs = self._receive(headers, request_iterator)
                # The runner takes the inputs (and `inputs` is emptied), then its outputs pass
                # through in pieces: the agent holds neither whole (its memory stays flat).
                stream = self.models.infer_stream(request.name, request.version, inputs, cancel)
                answer = next(stream)
        except Refusal as exc:
            _refused(context, exc)
        try:
            yield agent_pb2.InferPart(
                result=agent_pb2.InferResult(
                    version=answer["version"], latency_ms=answer["latency_ms"],
                    outputs=[agent_pb2.Tensor(name=n, dtype=d, shape=list(s), byte_size=size)
                             for n, d, s, size in answer["outputs"]],
                )
            )  # fmt: skip
            for piece in stream:
                yield agent_pb2.InferPart(chunk=piece)
        except Refusal as exc:
            _refused(context, exc)
        finally:
            stream.close()  # a client that left mid-answer: the runner is stopped

    def _receive(
        self, headers: list[wire.Header], parts: Iterator[agent_pb2.InferPart]
    ) -> list[TensorTuple]:
        """The tensors of checked `headers`, filled from a stream's chunks."""
        buffers = [bytearray(size) for _, _, _, size in headers]
        total = sum(len(b) for b in buffers)
        index, at, received = 0, 0, 0
        for part in parts:
            if part.WhichOneof("part") != "chunk":
                raise Refusal("INVALID_ARGUMENT", "an InferStream has one request, then chunks")
            data = memoryview(part.chunk)
            if received + len(data) > total:
                raise Refusal(
                    "INVALID_ARGUMENT",
                    f"chunks past the tensors' size: {received + len(data)} bytes sent for "
                    f"{total} declared",
                )
            received += len(data)
            while data:
                while at == len(buffers[index]):
                    index, at = index + 1, 0
                take = min(len(data), len(buffers[index]) - at)
                buffers[index][at : at + take] = data[:take]
                at, data = at + take, data[take:]
        if received != total:
            raise Refusal(
                "INVALID_ARGUMENT",
                f"the stream ended after {received} of the {total} bytes its tensors declare",
            )
        return [(n, d, s, b) for (n, d, s, _), b in zip(headers, buffers)]

    def _headers(self, tensors: Any, streamed: bool) -> list[wire.Header]:
        """Tensor headers checked against the contract and max_infer_bytes."""
        headers = [
            (t.name, t.dtype, tuple(t.shape), t.byte_size if streamed else len(t.data))
            for t in tensors
        ]
        try:
            return wire.check_headers(headers, self.bounds.max_infer_bytes)
        except wire.TensorTooLarge as exc:
            raise Refusal("RESOURCE_EXHAUSTED", str(exc)) from None
        except wire.TensorError as exc:
            raise Refusal("INVALID_ARGUMENT", str(exc)) from None

    def _tensors(self, tensors: Any) -> list[TensorTuple]:
        """A unary request's tensors, checked (their data stays in the request message)."""
        checked = self._headers(tensors, streamed=False)
        return [(n, d, s, t.data) for (n, d, s, _), t in zip(checked, tensors)]

    def _model_run(
        self, request: agent_pb2.BenchmarkRequest | agent_pb2.ProfileRequest
    ) -> dict[str, Any]:
        """What Benchmark and Profile share: the model, the plan and the inputs."""
        shapes = {s.name: list(s.dims) for s in request.input_shapes}
        for name, dims in shapes.items():
            count = 1
            for d in dims:
                count *= max(d, 0)
            if len(dims) > wire.MAX_RANK or any(d < 0 for d in dims):
                raise Refusal("INVALID_ARGUMENT", f"input shape {dims[:20]} for {name[:64]!r} "
                              f"has a negative dimension or more than {wire.MAX_RANK}")  # fmt: skip
            if count > self.bounds.max_infer_bytes:
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"input shape {dims} for {name[:64]!r} has {count} elements, more than this "
                    f"agent's limit of {self.bounds.max_infer_bytes} bytes (max_infer_bytes)",
                )
        return {
            "name": request.name, "version": request.version, "sha256": request.sha256,
            "plan": _plan(request.plan) if request.HasField("plan") else None,
            "inputs": self._tensors(request.inputs) or None,
            "inputs_sha256": request.inputs_sha256,
            "shapes": shapes or None,
        }  # fmt: skip


def _view(data: Any) -> memoryview:
    return memoryview(data).cast("B")


def _nbytes(data: Any) -> int:
    return len(_view(data))


def _benchmark_result(answer: dict[str, Any]) -> agent_pb2.BenchmarkResult:
    c = answer["conditions"]
    return agent_pb2.BenchmarkResult(
        sha256=answer["sha256"],
        plan=answer["plan"].to_message(),
        latency=agent_pb2.LatencyStats(**answer["latency"]),
        throughput=answer["throughput"],
        session_load_ms=answer["session_load_ms"],
        first_inference_ms=answer["first_inference_ms"],
        peak_rss_bytes=answer["peak_rss_bytes"],
        stop_reason=answer["stop_reason"],
        input_shapes=[
            agent_pb2.InputShape(name=n, dims=d) for n, d in answer["input_shapes"].items()
        ],
        conditions=agent_pb2.Conditions(
            onnxruntime_version=c["onnxruntime_version"], cpu_governor=c["cpu_governor"],
            temperatures_before=[agent_pb2.Temperature(**t) for t in c["temperatures_before"]],
            temperatures_after=[agent_pb2.Temperature(**t) for t in c["temperatures_after"]],
            load_average=c["load_average"], usable_cores=c["usable_cores"],
            other_cpu_load=c["other_cpu_load"],
            throttled_before=c["throttled_before"], throttled_after=c["throttled_after"],
        ),
    )  # fmt: skip


def _reloaded(token: TokenHolder | None, tls: ServerTls | None) -> None:
    # Runs in the main thread between two of its 0.2 s waits: reading two small files there is
    # quick, and a reload racing another cannot happen.
    done = reload_all(token, tls)
    print(f"edgeopt-agent reloaded: {', '.join(done) or 'nothing'}", file=sys.stderr, flush=True)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_server(
    config: ServerConfig,
    secrets: tuple[TokenHolder | None, ServerTls | None] | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer, AgentService]:
    """Create (not start) the server with every service, and bind it.

    Args:
        config: how to serve.
        secrets: the token holder and TLS material to serve with (what SIGHUP reloads);
            None: made from `config`.

    Returns:
        The server, the bound port, its health servicer (still NOT_SERVING), and the service.

    Raises:
        OSError: the address cannot be bound.
        ValueError: the TLS files are unreadable or wrong.
    """
    token, tls = secrets if secrets is not None else load_secrets(config)
    # Auth first: a refused call never reaches the parsing (nor its body the agent's memory).
    interceptors: list[grpc.ServerInterceptor] = [TokenAuthInterceptor(token)] if token else []
    interceptors.append(DecodeGuard())
    limit = config.bounds.max_message_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 0),
            # gRPC's flow control window otherwise grows per stream with its BDP probe, and
            # 64 callers with 5 MiB bodies (wrong tokens, or over the limit) took the agent
            # from 43 to 157 MiB, kept afterwards; a fixed 1 MiB window per stream keeps that
            # at +5 MiB and still allows ~20 MB/s per stream at 50 ms of round trip.
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", 1 << 20),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
        # Beyond this many calls in progress gRPC answers RESOURCE_EXHAUSTED at once.
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    service = AgentService(config.store, config.limits, config.bounds)
    # The generated gRPC module has no annotations (grpcio-tools writes none for it).
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = (
        f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
    )
    try:
        if tls is not None:
            port = server.add_secure_port(address, tls.credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises RuntimeError when it cannot bind
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    # Measure ONNX Runtime in the background so the first GetCapabilities is fast.
    threading.Thread(target=service.runtime, name="ort-probe", daemon=True).start()
    return server, port, health_servicer, service


def tame_malloc() -> None:
    """Make glibc give large freed buffers back to the board at once.

    glibc raises its mmap threshold each time a large block is freed, so after a few
    inferences their tensors come from the heap, whose freed pages stay with the process: the
    agent grew from 49 MB to 148 MB over 16 calls of 15 MB and stayed there. A fixed threshold
    (1 MiB) keeps every tensor buffer in its own mapping, unmapped when freed; two arenas
    stop gRPC's threads from each keeping one. Nothing happens on a C library without mallopt.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is None or not hasattr(libc, "mallopt"):
            return
    except OSError:
        return
    m_mmap_threshold, m_arena_max = -3, -8
    libc.mallopt(m_mmap_threshold, 1 << 20)
    libc.mallopt(m_arena_max, 2)


def load_secrets(config: ServerConfig) -> tuple[TokenHolder | None, ServerTls | None]:
    """The token holder and TLS material `config` names, ready to be reloaded on SIGHUP.

    Raises:
        ValueError: the TLS files are unreadable or wrong.
    """
    token = TokenHolder(config.token, config.token_file) if config.token else None
    return token, ServerTls(config.tls) if config.tls is not None else None


def serve(config: ServerConfig, stop: threading.Event | None = None) -> None:
    """Run the agent until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly.

    Shutdown takes at most `grace` seconds and a little: calls get that long to finish, the
    runners are killed at its end (a runaway inference cannot be waited for), and the calls
    still waiting on them fail at once. SIGHUP re-reads the token file and the TLS files
    (rotation without a restart).
    """
    config.store.mkdir(parents=True, exist_ok=True, mode=0o700)
    tame_malloc()
    token, tls = load_secrets(config)
    server, port, health_servicer, service = build_server(config, (token, tls))
    for removed in service.models.store.recover():
        log.warning("store recovery removed %s", removed)
    # The active models load again in the background: the agent serves at once, and a call
    # that needs a model before it is back loads it on demand.
    threading.Thread(target=service.models.restore, name="restore", daemon=True).start()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, lambda *_: _reloaded(token, tls))
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    shown = f"[{config.host}]:{port}" if ":" in config.host else f"{config.host}:{port}"
    print(f"edgeopt-agent listening on {shown}", flush=True)
    if config.ready_file is not None:
        _write_atomically(config.ready_file, f"{shown}\n")
    # Wait in short slices: SIGTERM may be delivered to one of grpc's threads, and Python runs
    # the handler only when the main thread next executes bytecode; an unbounded wait could
    # then sleep through it (seen here: 1 shutdown in ~30 hung under CPU load).
    while not stop.wait(0.2):
        pass
    log.info("shutting down")
    health_servicer.enter_graceful_shutdown()
    stopped = server.stop(config.grace)
    deadline = time.monotonic() + config.grace
    while not stopped.wait(0.1):
        if time.monotonic() >= deadline:
            service.models.kill()  # a call stuck in the runner now fails, and its thread ends
            stopped.wait(2.0)
            break
    service.models.close()
    print("edgeopt-agent stopped", file=sys.stderr, flush=True)
