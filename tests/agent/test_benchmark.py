"""The agent's Benchmark RPC on real agent processes: statistics that hang together, progress,
the stop rules, one benchmark at a time with a bounded queue, and bad requests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from edgeopt.agent.runner import median_ci
from edgeopt.host.errors import NotFound, ResourceExhausted
from edgeopt.host.transport.client import AgentClient, to_tensors
from edgeopt.proto import auth
from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.agent.test_models import _push_activate, said, slow_model, stub
from tests.conftest import RunningAgent
from tests.models import DigitsModel


def run_bench(
    agent: RunningAgent, request: agent_pb2.BenchmarkRequest
) -> tuple[agent_pb2.BenchmarkResult, list[agent_pb2.BenchmarkProgress]]:
    seen: list[agent_pb2.BenchmarkProgress] = []

    async def go() -> agent_pb2.BenchmarkResult:
        async with AgentClient(agent.address, token=agent.token, device="test") as client:
            return await client.benchmark(request, seen.append)

    return asyncio.run(go()), seen


def test_median_ci_brackets_the_median() -> None:
    rng = np.random.default_rng(0)
    samples = list(rng.lognormal(0, 0.3, 400))
    low, high, median = median_ci(samples)
    assert low < median < high
    assert median == pytest.approx(float(np.median(samples)))
    # Ranks n/2 -+ 1.96 sqrt(n)/2 for n = 400: the 180th and 220th smallest.
    ordered = sorted(samples)
    assert (low, high) == (ordered[179], ordered[219])


def test_a_benchmark_of_the_active_model(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    asyncio.run(_push_activate(agent, digits.onnx))
    x = np.load(digits.validation)["image"][:1]
    result, _ = run_bench(
        agent,
        agent_pb2.BenchmarkRequest(
            name="digits", inputs=to_tensors({"image": x}), min_repeats=30, max_seconds=5,
            plan=agent_pb2.Plan(intra_op_threads=1),
        ),
    )  # fmt: skip
    lat = result.latency
    assert lat.samples >= 30
    assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms
    assert lat.ci_low_ms <= lat.p50_ms <= lat.ci_high_ms
    assert result.stop_reason in ("target_ci", "max_seconds")
    if result.stop_reason == "target_ci":
        assert (lat.ci_high_ms - lat.ci_low_ms) / 2 <= 0.02 * lat.p50_ms
    assert result.throughput == pytest.approx(1000 / lat.p50_ms)
    assert result.session_load_ms > 0 and result.first_inference_ms > 0
    assert result.peak_rss_bytes > 0
    assert result.plan.intra_op_threads == 1
    assert [(s.name, list(s.dims)) for s in result.input_shapes] == [("image", [1, 1, 8, 8])]
    c = result.conditions
    assert c.onnxruntime_version and c.usable_cores >= 1 and c.load_average >= 0
    assert 0 <= c.other_cpu_load <= 1


def test_other_processes_busy_during_the_run_show_in_the_conditions(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    asyncio.run(_push_activate(agent, digits.onnx))
    x = np.load(digits.validation)["image"][:1]
    request = agent_pb2.BenchmarkRequest(
        name="digits", inputs=to_tensors({"image": x}), min_repeats=100_000, max_repeats=100_000,
        max_seconds=2, plan=agent_pb2.Plan(intra_op_threads=1),
    )  # fmt: skip
    # A real busy process (a spinning Python) on the same machine during the whole run: one
    # CPU of os.cpu_count() kept busy is 1/cpu_count of the machine, less what others leave.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result, _ = run_bench(agent, request)
    finally:
        spinner.kill()
        spinner.wait()
    share = 1 / (os.cpu_count() or 1)
    assert result.conditions.other_cpu_load >= 0.6 * share


def test_progress_then_a_stop_on_the_time_budget(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    agent = agent_factory()
    asyncio.run(_push_activate(agent, slow_model(tmp_path / "slow.onnx"), name="slow"))
    result, progress = run_bench(
        agent,
        agent_pb2.BenchmarkRequest(name="slow", warmup=1, min_repeats=1000, max_seconds=1.5,
                                   input_shapes=[agent_pb2.InputShape(name="x",
                                                                      dims=[1024, 1024])]),
    )  # fmt: skip
    assert result.stop_reason == "max_seconds"
    assert len(progress) >= 1
    assert all(p.repeats >= 1 and p.p50_ms > 0 for p in progress)
    assert [p.repeats for p in progress] == sorted(p.repeats for p in progress)


def test_one_benchmark_at_a_time_and_a_bounded_queue(
    agent_factory: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    agent = agent_factory()
    asyncio.run(_push_activate(agent, slow_model(tmp_path / "slow.onnx"), name="slow"))
    request = agent_pb2.BenchmarkRequest(
        name="slow", warmup=0, min_repeats=1000, max_seconds=1.0,
        input_shapes=[agent_pb2.InputShape(name="x", dims=[1024, 1024])],
    )  # fmt: skip
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            run_bench(agent, request)
            outcome = "ok"
        except ResourceExhausted as exc:
            outcome = said(exc)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(outcomes).count("ok") == 5
    assert (
        "Benchmark: 4 benchmarks are already waiting on this agent (at most 4); try again when "
        "they are done"
    ) in outcomes


def test_bad_benchmark_requests(shared_agent: RunningAgent) -> None:
    with pytest.raises(NotFound) as caught:
        run_bench(shared_agent, agent_pb2.BenchmarkRequest(sha256="a" * 64))
    assert said(caught.value) == f"Benchmark: no artifact {'a' * 64} in this agent's store"
    channel, s, md = stub(shared_agent)
    with channel, pytest.raises(grpc.RpcError) as refused:
        list(s.Benchmark(agent_pb2.BenchmarkRequest(name="nope"), metadata=md, timeout=30))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert str(refused.value.details()).startswith("no model named 'nope'")


def test_a_wrong_input_shape_is_invalid_argument(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    asyncio.run(_push_activate(agent, digits.onnx))
    channel = grpc.insecure_channel(agent.address)
    stub_ = agent_pb2_grpc.AgentStub(channel)
    request = agent_pb2.BenchmarkRequest(
        name="digits", input_shapes=[agent_pb2.InputShape(name="image", dims=[1, 8, 8])]
    )
    with channel, pytest.raises(grpc.RpcError) as caught:
        list(stub_.Benchmark(request, metadata=(auth.bearer(agent.token or ""),), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "input shape for 'image' has rank 3, the model's input has rank 4"
    )
