"""Between agent.proto's messages and what `Models` takes and answers.

Plans become checked `RunPlan`s, tensors are checked against the contract and the agent's byte
limit (a streamed request's chunks filled into their buffers), and the runner's answers become
messages. Every refusal is a `Refusal` with its gRPC status name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from edgeopt.agent.plancheck import PlanRefused, check_plan
from edgeopt.agent.refusal import Refusal
from edgeopt.agent.runner import TensorTuple
from edgeopt.proto import tensors as wire
from edgeopt.proto.plan import RunPlan
from edgeopt.proto.v1 import agent_pb2

__all__ = [
    "benchmark_result",
    "checked_plan",
    "headers",
    "nbytes",
    "receive",
    "signatures",
    "tensors",
    "view",
]


def checked_plan(message: agent_pb2.Plan) -> RunPlan:
    """A received plan, checked (plancheck) before it is stored or run."""
    try:
        return check_plan(RunPlan.from_message(message))
    except PlanRefused as exc:
        raise Refusal("INVALID_ARGUMENT", str(exc)) from None


def signatures(items: list[dict[str, Any]]) -> list[agent_pb2.TensorInfo]:
    """Tensor signatures (the runner's dicts) as TensorInfo messages."""
    return [agent_pb2.TensorInfo(**item) for item in items]


def receive(headers: list[wire.Header], parts: Iterator[agent_pb2.InferPart]) -> list[TensorTuple]:
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


def headers(tensors: Any, limit: int, streamed: bool) -> list[wire.Header]:
    """Tensor headers checked against the contract and `limit` (max_infer_bytes)."""
    found = [
        (t.name, t.dtype, tuple(t.shape), t.byte_size if streamed else len(t.data)) for t in tensors
    ]
    try:
        return wire.check_headers(found, limit)
    except wire.TensorTooLarge as exc:
        raise Refusal("RESOURCE_EXHAUSTED", str(exc)) from None
    except wire.TensorError as exc:
        raise Refusal("INVALID_ARGUMENT", str(exc)) from None


def tensors(given: Any, limit: int) -> list[TensorTuple]:
    """A unary request's tensors, checked (their data stays in the request message)."""
    checked = headers(given, limit, streamed=False)
    return [(n, d, s, t.data) for (n, d, s, _), t in zip(checked, given)]


def view(data: Any) -> memoryview:
    """A tensor's buffer as bytes."""
    return memoryview(data).cast("B")


def nbytes(data: Any) -> int:
    """A tensor buffer's size in bytes."""
    return len(view(data))


def benchmark_result(answer: dict[str, Any]) -> agent_pb2.BenchmarkResult:
    """The runner's benchmark answer as a BenchmarkResult message."""
    c = answer["conditions"]
    versus = answer.get("versus")
    return agent_pb2.BenchmarkResult(
        block_ms=answer.get("block_ms", []),
        versus=agent_pb2.PairedBlocks(
            sha256=versus["sha256"], plan=versus["plan"].to_message(),
            latency=agent_pb2.LatencyStats(**versus["latency"]),
            block_runs=versus["block_runs"], a_ms=versus["a_ms"], b_ms=versus["b_ms"],
            b_first=versus["b_first"], ratio=versus["ratio"], ratio_low=versus["ratio_low"],
            ratio_high=versus["ratio_high"],
        ) if versus else None,
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
