"""`edgeopt bench`: a model measured on the boards themselves, with honest statistics.

For each selected device: its capabilities, the variant its plan calls for (compressed once per
distinct plan, as `deploy` does), a push of the bare artifact (only the bytes the board lacks;
nothing is activated, nothing shows in `models`), then the agent's Benchmark RPC: session load,
first inference, warm-up, and timed runs until the median's 95 % confidence interval is within
the target or the time budget is spent. Devices run concurrently (`parallel`); each board runs
its own benchmarks one at a time (the agent queues them). Every run goes into the state database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from edgeopt.host.client import AgentClient, ClientConfig, file_digest, to_tensors
from edgeopt.host.compress import CompressionReport, CompressRequest, compress
from edgeopt.host.deploy import DeployOptions, capabilities_of, first_sample, plan_for
from edgeopt.host.inventory import Device
from edgeopt.host.state import State
from edgeopt.proto.capabilities import Capabilities
from edgeopt.proto.errors import EdgeoptError
from edgeopt.proto.v1 import agent_pb2


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how."""

    deploy: DeployOptions
    """The model, its compression and the run plan (threads, provider), as for deploy."""
    inputs: Path | None = None
    """`.npz` whose first sample is fed (default: --validate, else --calibration, else made up)."""
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Dims for made-up inputs."""
    max_seconds: float = 10.0
    """Time budget of the timed runs per device."""
    target_ci: float = 0.02
    """Stop when the median's 95 % CI is within this share of it."""
    warmup: int = 5
    """Discarded runs."""


@dataclass
class BenchResult:
    """One device's measurement, or why there is none."""

    device: str
    plan: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    """The agent's BenchmarkResult as a dict."""
    error: str = ""
    run_id: int | None = None


async def _measure(
    device: Device,
    artifact: CompressionReport,
    plan: dict[str, Any],
    options: BenchOptions,
    *,
    config: ClientConfig,
    progress: Callable[[str, agent_pb2.BenchmarkProgress], None] | None,
) -> dict[str, Any]:
    async with AgentClient(
        device.address, token=device.token(), device=device.name, config=config
    ) as client:
        pushed = await client.push(artifact.artifact, "")
        request_ = options.deploy.request
        request = agent_pb2.BenchmarkRequest(
            sha256=pushed.sha256,
            plan=agent_pb2.Plan(
                precision=plan["precision"],
                intra_op_threads=int(plan["intra_op_threads"]),
                inter_op_threads=int(plan["inter_op_threads"]),
                execution_provider=plan["execution_provider"],
                graph_optimization_level=plan["graph_optimization_level"],
            ),
            inputs=to_tensors(
                first_sample(
                    options.inputs or request_.validation or request_.calibration,
                    artifact.artifact,
                )
                or {}
            ),
            input_shapes=[
                agent_pb2.InputShape(name=n, dims=list(d)) for n, d in options.input_shapes.items()
            ],
            warmup=options.warmup,
            target_ci=options.target_ci,
            max_seconds=options.max_seconds,
        )
        reply = await client.benchmark(
            request, (lambda p: progress(device.name, p)) if progress else None
        )
        return json_format.MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )


def bench(
    devices: Sequence[Device],
    options: BenchOptions,
    state: State,
    *,
    config: ClientConfig | None = None,
    progress: Callable[[str, agent_pb2.BenchmarkProgress], None] | None = None,
    compress_fn: Callable[[CompressRequest], CompressionReport] = compress,
) -> list[BenchResult]:
    """Measure on every device; see the module docstring. A failing device is its own row."""
    return asyncio.run(
        _bench(devices, options, state, config=config or ClientConfig(), progress=progress,
               compress_fn=compress_fn)
    )  # fmt: skip


async def _bench(
    devices: Sequence[Device],
    options: BenchOptions,
    state: State,
    *,
    config: ClientConfig,
    progress: Callable[[str, agent_pb2.BenchmarkProgress], None] | None,
    compress_fn: Callable[[CompressRequest], CompressionReport],
) -> list[BenchResult]:
    results = {d.name: BenchResult(d.name) for d in devices}
    limit = asyncio.Semaphore(max(1, options.deploy.parallel))

    async def ask(device: Device) -> Capabilities | None:
        caps, error, _ = await capabilities_of(device, config, limit)
        results[device.name].error = error
        return caps

    caps_list = await asyncio.gather(*(ask(d) for d in devices))
    artifacts: dict[str, CompressionReport | str] = {}
    work = []
    for device, caps in zip(devices, caps_list, strict=True):
        if caps is None:
            continue
        request, plan = plan_for(options.deploy, caps)
        results[device.name].plan = plan
        key = repr(request)
        if key not in artifacts:
            try:
                artifacts[key] = await asyncio.to_thread(compress_fn, request)
            except EdgeoptError as exc:
                artifacts[key] = str(exc)
        made = artifacts[key]
        if isinstance(made, str):
            results[device.name].error = made
            continue
        work.append((device, caps, made, plan))

    source = Path(options.deploy.request.model)
    model_digest = file_digest(source) if source.is_file() else str(source)

    async def one(
        device: Device, caps: Capabilities, artifact: CompressionReport, plan: dict[str, Any]
    ) -> None:
        async with limit:
            try:
                result = await _measure(
                    device, artifact, plan, options, config=config, progress=progress
                )
            except EdgeoptError as exc:
                results[device.name].error = str(exc)
                return
        results[device.name].result = result
        results[device.name].run_id = state.record_benchmark(
            {
                "device": device.name, "fingerprint": caps.fingerprint,
                "model": str(options.deploy.request.model), "model_digest": model_digest,
                "artifact_digest": result["sha256"], "precision": plan["precision"],
                "plan": plan, "result": result,
                "onnxruntime_version": result["conditions"]["onnxruntime_version"],
            }
        )  # fmt: skip

    await asyncio.gather(*(one(*w) for w in work))
    return [results[d.name] for d in devices]
