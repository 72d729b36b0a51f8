"""The `edgeopt.v1.Agent` service: each RPC of agent.proto, from its messages to `Models` and back.

The servicer checks what a request carries (plans through plancheck, tensors against the
contract and the agent's byte limits), calls `Models`, and turns its answers into messages and
its refusals into gRPC status codes. Serving it (the server, its interceptors, signals, shutdown)
is server.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import grpc

from edgeopt.agent import messages
from edgeopt.agent.hooks import ActivationHook, HookRun
from edgeopt.agent.manifest import NAME_PATTERN, VERSION_PATTERN, check_digest
from edgeopt.agent.metrics import BOUNDS_MS, InferCounts, Tally
from edgeopt.agent.models import Activation, Bounds, Models, chunks_of
from edgeopt.agent.refusal import Refusal
from edgeopt.agent.store import Limits
from edgeopt.boardfacts import thermal
from edgeopt.boardfacts.capabilities import Sources, collect, thermal_zones, throttle_flags
from edgeopt.boardfacts.runtime import probe_in_subprocess
from edgeopt.proto import tensors as wire
from edgeopt.proto.capabilities import OnnxRuntimeInfo, to_message
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc

__all__ = ["ACCEPTED_KEY", "CHUNK_BYTES", "MESSAGE_OVERHEAD", "STATUS_WAIT_SECONDS", "AgentService"]

STATUS_WAIT_SECONDS = 10.0
"""How long GetUploadStatus waits for an upload of the same artifact to end."""
ACCEPTED_KEY = "edgeopt-accepted"
"""Initial metadata InferStream sends once the request's header passed its checks."""
CHUNK_BYTES = 1 << 20
"""Bytes per InferStream chunk the agent sends."""
MESSAGE_OVERHEAD = 64 << 10
"""Room left in a message for everything but tensor bytes (names, shapes, framing)."""


def _cancel_event(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends for any reason (the client cancelled, its deadline)."""
    event = threading.Event()
    context.add_callback(event.set)
    if not context.is_active():
        event.set()
    return event


def _refused(context: grpc.ServicerContext, exc: Refusal) -> NoReturn:
    context.abort(getattr(grpc.StatusCode, exc.code, grpc.StatusCode.INTERNAL), str(exc))
    raise AssertionError("unreachable")  # abort raises


def _infer_stats(tally: Tally) -> agent_pb2.InferStats:
    return agent_pb2.InferStats(
        requests=tally.requests, errors=sum(tally.errors.values()), bounds_ms=list(BOUNDS_MS),
        counts=tally.cumulative(), sum_ms=tally.sum_ms,
    )  # fmt: skip


def _hook_run(run: HookRun | None) -> agent_pb2.HookRun | None:
    if run is None:
        return None
    return agent_pb2.HookRun(version=run.version, ok=run.ok, error=run.error,
                             seconds=run.seconds, finished_unix=run.finished)  # fmt: skip


class AgentService(agent_pb2_grpc.AgentServicer):
    """The `edgeopt.v1.Agent` service."""

    def __init__(
        self,
        store: Path,
        limits: Limits | None = None,
        bounds: Bounds | None = None,
        hook: ActivationHook | None = None,
    ) -> None:
        self._store = store
        self._runtime: OnnxRuntimeInfo | None = None
        self._runtime_lock = threading.Lock()
        self.models = Models(store, limits, bounds, hook)
        self.counts = InferCounts()
        """Inference served per model and version (ListModels, --metrics)."""
        self.sources = Sources.live_system()
        """Where the board's temperatures and throttle flags are read (--sysfs)."""
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
                      "offset": h.offset, "plan": messages.checked_plan(h.plan)}  # fmt: skip
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
            inputs=messages.signatures(a.loaded.inputs),
            outputs=messages.signatures(a.loaded.outputs),
        )  # fmt: skip

    def ActivateModel(
        self, request: agent_pb2.ActivateRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ActivateResult:
        """Load, smoke-test and switch to a version."""
        cancel = _cancel_event(context)
        try:
            plan = messages.checked_plan(request.plan) if request.HasField("plan") else None
            smoke = messages.tensors(request.smoke_inputs, self.bounds.max_infer_bytes) or None
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
        hooked = self.models.hook.runs if self.models.hook is not None else {}
        served = self.counts.by_model()
        infos = []
        for name, entry in sorted(self.models.store.entries().items()):
            held = loaded.get(name)
            run = hooked.get(name)
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
                    inputs=messages.signatures(held.inputs) if held else [],
                    outputs=messages.signatures(held.outputs) if held else [],
                    hook=_hook_run(run),
                    infer=_infer_stats(served.get(name) or Tally()),
                )
            )
        agent_rss, runner_rss = self.models.memory()
        quota = self.models.store.limits.max_store_bytes
        flags = throttle_flags(self.sources) or 0
        result = agent_pb2.ModelList(
            models=infos, store_bytes=self.models.store.used_bytes(),
            agent_rss_bytes=agent_rss, runner_rss_bytes=runner_rss,
            temperatures=[agent_pb2.Temperature(zone=t.zone, type=t.type, celsius=t.celsius)
                          for t in thermal.temperatures(thermal_zones(self.sources))],
            throttled=[name for bit, name in thermal.THROTTLE_NOW.items() if flags & (1 << bit)],
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
            if request.HasField("versus"):
                v = request.versus
                params.update(
                    versus={"name": v.name, "version": v.version, "sha256": v.sha256,
                            "plan": messages.checked_plan(v.plan) if v.HasField("plan")
                            else None},
                    block_runs=request.block_runs, seed=request.seed,
                )  # fmt: skip
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
                yield agent_pb2.BenchmarkEvent(result=messages.benchmark_result(payload))
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
                request.name,
                request.version,
                messages.tensors(request.inputs, self.bounds.max_infer_bytes),
                cancel,
            )
            room = self.bounds.max_message_bytes - MESSAGE_OVERHEAD
            size = sum(messages.nbytes(data) for _, _, _, data in answer["outputs"])
            if size > room:
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"the outputs take {size} bytes, more than one message carries ({room}): "
                    "call InferStream (edgeopt's host does)",
                )
        except Refusal as exc:
            self._failed(request.name, request.version, exc.code)
            _refused(context, exc)
        self.counts.served(request.name, answer["version"], answer["latency_ms"])
        return agent_pb2.InferResult(
            version=answer["version"],
            outputs=[
                agent_pb2.Tensor(name=n, dtype=d, shape=list(s), data=bytes(messages.view(b)))
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
            headers = messages.headers(request.inputs, self.bounds.max_infer_bytes, streamed=True)
            with self._budget(sum(h[3] for h in headers)):
                # Accepted: the client waits for this before it sends a chunk, so a refusal
                # above reaches it before any tensor byte is on its way.
                context.send_initial_metadata(((ACCEPTED_KEY, "1"),))
                inputs = messages.receive(headers, request_iterator)
                # The runner takes the inputs (and `inputs` is emptied), then its outputs pass
                # through in pieces: the agent holds neither whole (its memory stays flat).
                stream = self.models.infer_stream(request.name, request.version, inputs, cancel)
                answer = next(stream)
        except Refusal as exc:
            if first is not None and first.WhichOneof("part") == "request":
                self._failed(first.request.name, first.request.version, exc.code)
            _refused(context, exc)
        self.counts.served(request.name, answer["version"], answer["latency_ms"])
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

    def _failed(self, name: str, version: str, code: str) -> None:
        """Count a refused inference, under the version it asked for (else the active one)."""
        if not NAME_PATTERN.fullmatch(name):
            name = "(invalid)"  # a label must not grow with whatever a caller sends
        entry = self.models.store.entries().get(name) if not version else None
        label = version if VERSION_PATTERN.fullmatch(version) else (
            entry.active if entry is not None else ""
        )  # fmt: skip
        self.counts.failed(name, label, code)

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
            "plan": messages.checked_plan(request.plan) if request.HasField("plan") else None,
            "inputs": messages.tensors(request.inputs, self.bounds.max_infer_bytes) or None,
            "inputs_sha256": request.inputs_sha256,
            "shapes": shapes or None,
        }  # fmt: skip
