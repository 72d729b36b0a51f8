"""Paired comparisons (Benchmark with `versus`) on real agent processes: the blocks alternate in
a random order, the board's estimate is what the blocks give, and bad requests are refused with
the reason: models whose inputs differ, a budget too short for an interval, bounds, unknown B."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.host.errors import InvalidRequest, NotFound
from edgeopt.host.transport.client import AgentClient
from edgeopt.host.transport.wire import BenchmarkCall
from edgeopt.proto import paired
from edgeopt.proto.plan import RunPlan
from tests.agent.test_models import said
from tests.conftest import RunningAgent
from tests.models import DigitsModel, matmul_chain

ONE = RunPlan(intra_op_threads=1)


async def _push(agent: RunningAgent, *paths: Path) -> list[str]:
    async with AgentClient(agent.address, token=agent.token, device="test") as c:
        return [(await c.push(p, "")).sha256 for p in paths]


def _bench(agent: RunningAgent, call: BenchmarkCall) -> tuple[Any, list[Any]]:
    seen: list[Any] = []

    async def go() -> Any:
        async with AgentClient(agent.address, token=agent.token, device="test") as c:
            return await c.benchmark(call, seen.append)

    return asyncio.run(go()), seen


def test_an_a_a_comparison_alternates_blocks_in_a_random_order(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    (digest,) = asyncio.run(_push(agent, digits.onnx))
    x = np.load(digits.validation)["image"][:1]
    result, seen = _bench(agent, BenchmarkCall(
        sha256=digest, plan=ONE, inputs={"image": x}, versus=(digest, ONE), max_seconds=2,
        block_runs=5, seed=11,
    ))  # fmt: skip
    v = result.versus
    n = len(v.a_ms)
    assert n >= paired.MIN_PAIRS and len(v.b_ms) == len(v.b_first) == n
    assert v.block_runs == 5 and v.sha256 == digest and v.plan.intra_op_threads == 1
    assert result.latency.samples == v.latency.samples == 5 * n
    assert 0 < sum(v.b_first) < n  # both orders drawn
    assert result.stop_reason == "max_seconds"  # target_ci 0: runs out the budget
    mine = paired.estimate(list(v.a_ms), list(v.b_ms))  # what the host recomputes
    assert (v.ratio, v.ratio_low, v.ratio_high) == pytest.approx((mine.ratio, mine.low, mine.high))
    assert v.ratio_low <= v.ratio <= v.ratio_high
    assert list(result.block_ms) == list(v.a_ms)
    assert seen and seen[-1].pairs >= 1


def test_a_plain_benchmark_reports_its_block_medians(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    (digest,) = asyncio.run(_push(agent, digits.onnx))
    result, _ = _bench(agent, BenchmarkCall(sha256=digest, plan=ONE, max_seconds=1, target_ci=1e-9,
                                            min_repeats=200))  # fmt: skip
    blocks = list(result.block_ms)
    size = min(paired.block_runs(result.latency.p50_ms, smallest=1),
               max(1, result.latency.samples // 16))  # fmt: skip
    assert len(blocks) == result.latency.samples // size
    assert all(result.latency.min_ms <= b for b in blocks)
    assert not result.HasField("versus")


def test_models_whose_inputs_differ_are_refused(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel, tmp_path: Path
) -> None:
    agent = agent_factory()
    other = matmul_chain(tmp_path / "chain.onnx", np.eye(4), 1)
    a, b = asyncio.run(_push(agent, digits.onnx, other))
    with pytest.raises(InvalidRequest) as caught:
        _bench(agent, BenchmarkCall(sha256=a, versus=(b, None), max_seconds=2))
    assert said(caught.value).endswith(
        "a comparison feeds both models the same inputs: A takes image but B takes x"
    ), said(caught.value)


def test_a_budget_too_short_for_an_interval_is_refused(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    (digest,) = asyncio.run(_push(agent, digits.onnx))
    with pytest.raises(InvalidRequest) as caught:
        _bench(agent, BenchmarkCall(sha256=digest, versus=(digest, None), max_seconds=0.001,
                                    block_runs=1000))  # fmt: skip
    text = said(caught.value)
    assert "max_seconds 0.001 is too short for the 6 block pairs an interval needs" in text
    assert "give at least" in text


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"block_runs": 1001}, "block_runs = 1001 is out of range: use 0 to 1000"),
     ({"max_repeats": 1501}, "max_repeats = 1501 is out of range: use 0 to 1500")],
)  # fmt: skip
def test_paired_bounds_are_refused(
    agent_factory: Callable[..., RunningAgent],
    digits: DigitsModel,
    fields: dict[str, Any],
    words: str,
) -> None:
    agent = agent_factory()
    (digest,) = asyncio.run(_push(agent, digits.onnx))
    with pytest.raises(InvalidRequest) as caught:
        _bench(agent, BenchmarkCall(sha256=digest, versus=(digest, None), **fields))
    assert said(caught.value) == f"Benchmark: {words}"


def test_an_unknown_b_is_not_found(
    agent_factory: Callable[..., RunningAgent], digits: DigitsModel
) -> None:
    agent = agent_factory()
    (digest,) = asyncio.run(_push(agent, digits.onnx))
    with pytest.raises(NotFound) as caught:
        _bench(agent, BenchmarkCall(sha256=digest, versus=("f" * 64, None)))
    assert said(caught.value) == f"Benchmark: no artifact {'f' * 64} in this agent's store"
