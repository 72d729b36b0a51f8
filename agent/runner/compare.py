"""A paired comparison in the runner: two sessions measured in alternating blocks.

Both models are loaded, checked to take the same inputs, warmed up in turn, then measured in
block pairs: A's block and B's block, `block_runs` runs each, the order of the two drawn at
random for every pair, with no round trip to the agent in between. It stops when the interval
of the ratio B/A is as tight as asked, when the pairs or the time budget run out.
See edgeopt.proto.paired for the statistics.

Both sessions run with intra-op spinning off. With it on (ONNX Runtime's default), the idle
session's threads spin for more work while the other one runs and take its CPUs: on YOLOv8n
int8 at 2 threads on a 2-CPU machine the log-ratio of A/A block pairs spread 0.21 (sd), and
0.047 with spinning off (one session alone, spinning: 0.076). That is a 20x difference in the
pairs a given interval needs; the price is that a paired run's absolute latencies are those of
sessions that do not spin (YOLOv8n: 9.6 ms against 8.3 ms alone), which the ratio, the
measured quantity, is far less sensitive to. Plain benchmarks keep the plan's spinning.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeopt.agent.runner.feeds import request_feeds, signature
from edgeopt.agent.runner.measure import (
    CpuClock,
    conditions,
    conditions_record,
    latency_stats,
    rss_bytes,
)
from edgeopt.agent.runner.session import RequestError, first_line, load_session
from edgeopt.proto import paired
from edgeopt.proto.plan import RunPlan

__all__ = ["compare", "same_inputs"]


def same_inputs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """Why two models cannot be fed the same inputs ("" when they can): names, types, dims."""
    by_name = {x["name"]: x for x in b}
    if sorted(by_name) != sorted(x["name"] for x in a):
        return (f"A takes {', '.join(sorted(x['name'] for x in a))} but B takes "
                f"{', '.join(sorted(by_name))}")  # fmt: skip
    for x in a:
        y = by_name[x["name"]]
        if x["dtype"] != y["dtype"]:
            return f"input {x['name']!r} is {x['dtype']} in A but {y['dtype']} in B"
        fixed = [(p, q) for p, q in zip(x["shape"], y["shape"]) if p > 0 and q > 0]
        if len(x["shape"]) != len(y["shape"]) or any(p != q for p, q in fixed):
            return f"input {x['name']!r} has shape {x['shape']} in A but {y['shape']} in B"
    return ""


def _block(session: Any, feeds: dict[str, Any], runs: int, into: list[float]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    into.extend(times)
    return statistics.median(times)


@dataclass
class _Pairs:
    """The blocks measured so far."""

    a_ms: list[float] = field(default_factory=list)
    b_ms: list[float] = field(default_factory=list)
    b_first: list[bool] = field(default_factory=list)
    runs_a: list[float] = field(default_factory=list)
    runs_b: list[float] = field(default_factory=list)
    peak: int = 0


def _loaded(request: dict[str, Any]) -> tuple[Any, Any, float, float]:
    """Both sessions and their load times; INVALID_ARGUMENT when their inputs differ."""
    session_a, load_a = load_session(request["path"], request.get("plan") or RunPlan(),
                                     spinning=False)  # fmt: skip
    session_b, load_b = load_session(request["path_b"], request.get("plan_b") or RunPlan(),
                                     spinning=False)  # fmt: skip
    differ = same_inputs(signature(session_a.get_inputs()), signature(session_b.get_inputs()))
    if differ:
        raise RequestError(
            "INVALID_ARGUMENT", f"a comparison feeds both models the same inputs: {differ}"
        )
    return session_a, session_b, load_a, load_b


def _block_size(request: dict[str, Any], slower: float, min_pairs: int, budget: float) -> int:
    """Runs per block; INVALID_ARGUMENT when the budget cannot hold the pairs an interval needs."""
    block = int(request.get("block_runs") or paired.block_runs(slower))
    pair_s = 2 * block * slower / 1e3
    if pair_s * min_pairs > budget:
        raise RequestError(
            "INVALID_ARGUMENT",
            f"max_seconds {budget:g} is too short for the {min_pairs} block pairs an "
            f"interval needs: one pair of {block} runs each takes about {pair_s:.2g} s "
            f"(the slower model runs in {slower:.3g} ms); give at least "
            f"{pair_s * min_pairs * 1.2:.2g} s",
        )
    return block


def _measure(
    sessions: tuple[Any, Any],
    feeds: dict[str, Any],
    request: dict[str, Any],
    block: int,
    emit: Callable[[dict[str, Any]], None],
) -> tuple[_Pairs, str]:
    """Block pairs until the interval is tight enough, or the pairs or the budget run out."""
    min_pairs = max(paired.MIN_PAIRS, int(request.get("min_repeats") or 0))
    max_pairs = int(request.get("max_repeats") or paired.MAX_PAIRS)
    target = float(request.get("target_ci") or 0.0)
    budget = float(request.get("max_seconds") or 10.0)
    rng = random.Random(int(request.get("seed") or 0) or None)
    done = _Pairs(peak=rss_bytes())
    began = last_emit = time.perf_counter()
    while len(done.a_ms) < max_pairs:
        first = rng.random() < 0.5
        order = (1, 0) if first else (0, 1)
        medians = [0.0, 0.0]
        for side in order:
            medians[side] = _block(sessions[side], feeds, block,
                                   done.runs_b if side else done.runs_a)  # fmt: skip
        done.a_ms.append(medians[0])
        done.b_ms.append(medians[1])
        done.b_first.append(first)
        n = len(done.a_ms)
        now = time.perf_counter()
        if n % 16 == 0:
            done.peak = max(done.peak, rss_bytes())
        check = n >= min_pairs and (n < 100 or n % 10 == 0)
        if check or now - last_emit >= 0.5:
            found = paired.estimate(done.a_ms, done.b_ms)
            if check and target > 0 and found.half_width <= target:
                return done, "target_ci"
            if now - last_emit >= 0.5:
                half = found.half_width
                emit({"repeats": n, "elapsed_s": now - began, "p50_ms": medians[0],
                      "ci_relative": half if math.isfinite(half) else 0.0, "pairs": n,
                      "ratio": found.ratio if math.isfinite(found.ratio) else 0.0})  # fmt: skip
                last_emit = now
        if now - began >= budget and n >= min_pairs:
            return done, "max_seconds"
    return done, "max_repeats"


def compare(request: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Measure A (`path`) against B (`path_b`); see agent.proto, BenchmarkRequest.versus."""
    warmup = max(1, int(request.get("warmup") or 5))
    before = conditions()
    session_a, session_b, load_a, load_b = _loaded(request)
    feeds = request_feeds(request, session_a)
    try:
        firsts: list[float] = []
        for session in (session_a, session_b):
            _block(session, feeds, 1, firsts)
        warm: tuple[list[float], list[float]] = ([], [])
        for _ in range(warmup):
            _block(session_a, feeds, 1, warm[0])
            _block(session_b, feeds, 1, warm[1])
        slower = max(statistics.median(warm[0]), statistics.median(warm[1]))
        min_pairs = max(paired.MIN_PAIRS, int(request.get("min_repeats") or 0))
        block = _block_size(request, slower, min_pairs, float(request.get("max_seconds") or 10.0))
        busy = CpuClock()
        done, reason = _measure((session_a, session_b), feeds, request, block, emit)
        others = busy.others()
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError("INVALID_ARGUMENT", f"inference failed: {first_line(exc)}") from exc
    found = paired.estimate(done.a_ms, done.b_ms)
    after = conditions()
    return {
        "ok": True,
        "latency": latency_stats(done.runs_a),
        "throughput": 0.0,
        "session_load_ms": load_a, "first_inference_ms": firsts[0],
        "peak_rss_bytes": max(done.peak, rss_bytes()), "stop_reason": reason,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "block_ms": done.a_ms,
        "versus": {
            "latency": latency_stats(done.runs_b), "block_runs": block, "a_ms": done.a_ms,
            "b_ms": done.b_ms, "b_first": done.b_first, "ratio": found.ratio,
            "ratio_low": found.low, "ratio_high": found.high, "session_load_ms": load_b,
        },
        "conditions": conditions_record(before, after, others),
    }  # fmt: skip
