"""The runner child (`python -m edgeopt.agent.runner`): holds the ONNX Runtime sessions.

It serves requests from its stdin and answers on its stdout (framing.py) until stdin closes;
see the package docstring for the requests and their answers.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeopt.agent.runner.compare import compare
from edgeopt.agent.runner.feeds import (
    join_outputs,
    request_feeds,
    signature,
    smoke_inputs,
    split_samples,
    tensor_file,
    to_arrays,
    to_tuples,
)
from edgeopt.agent.runner.framing import OUTPUT_LIMIT, TensorTuple, receive, send
from edgeopt.agent.runner.measure import (
    CpuClock,
    block_medians,
    conditions,
    conditions_record,
    latency_stats,
    median_ci,
    rss_bytes,
    timed_runs,
)
from edgeopt.agent.runner.session import RequestError, first_line, load_session
from edgeopt.proto.plan import RunPlan

__all__ = ["Child", "Loaded", "main"]


@dataclass
class Loaded:
    """A session and what it cost."""

    session: Any
    memory_bytes: int


class Child:
    """The runner's side: sessions by key."""

    def __init__(self) -> None:
        self.loaded: dict[str, Loaded] = {}

    def handle(
        self, request: dict[str, Any], emit: Callable[[dict[str, Any]], None] = lambda _: None
    ) -> dict[str, Any]:
        """Answer one request; `emit` sends interim progress frames."""
        op = request.get("op")
        if op == "load":
            smoke = request.get("smoke")
            if smoke is None and request.get("inputs_path"):
                smoke = tensor_file(request["inputs_path"], int(request.get("max_bytes") or 0))
            return self.load(request["key"], request["path"], request.get("plan") or RunPlan(),
                             smoke, int(request.get("max_bytes") or OUTPUT_LIMIT))  # fmt: skip
        if op == "unload":
            self.loaded.pop(request["key"], None)
            return {"ok": True}
        if op == "infer":
            return self.infer(request["key"], request["inputs"],
                              int(request.get("max_bytes") or OUTPUT_LIMIT))  # fmt: skip
        if op == "bench":
            return self.bench(request, emit)
        if op == "profile":
            return self.profile(request)
        if op == "stats":
            return {"ok": True, "rss_bytes": rss_bytes(),
                    "loaded": {k: v.memory_bytes for k, v in self.loaded.items()}}  # fmt: skip
        raise RequestError("INVALID_ARGUMENT", f"unknown runner request {op!r}")

    def load(
        self,
        key: str,
        path: str,
        plan: RunPlan,
        smoke: list[TensorTuple] | bool | None,
        max_bytes: int = OUTPUT_LIMIT,
    ) -> dict[str, Any]:
        """Load a model, run the smoke inference, keep the session under `key`.

        `smoke` False skips the smoke inference: a version that passed it when activated is
        loaded again after a restart, or for one inference, without made-up inputs (which
        may not suit a model that wants particular sizes).
        """
        import numpy as np  # noqa: PLC0415

        before = rss_bytes()
        session, load_ms = load_session(path, plan)
        if smoke is False:
            memory = max(0, rss_bytes() - before)
            self.loaded[key] = Loaded(session, memory)
            return {
                "ok": True, "load_ms": load_ms, "smoke_ms": 0.0, "memory_bytes": memory,
                "inputs": signature(session.get_inputs()),
                "outputs": signature(session.get_outputs()),
            }  # fmt: skip
        feeds = (
            split_samples(to_arrays(smoke, session), session)[0]
            if isinstance(smoke, list) and smoke
            else smoke_inputs(session, None, max_bytes)
        )
        start = time.perf_counter()
        try:
            outputs = session.run(None, feeds)
        except Exception as exc:
            raise RequestError(
                "FAILED_PRECONDITION", f"smoke inference failed: {first_line(exc)}"
            ) from exc
        smoke_ms = (time.perf_counter() - start) * 1e3
        names = [o.name for o in session.get_outputs()]
        types = [o.type for o in session.get_outputs()]
        to_tuples(names, outputs, max_bytes, types)  # an output the wire cannot carry fails here
        for name, value in zip(names, outputs):
            array = np.asarray(value)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise RequestError(
                    "FAILED_PRECONDITION",
                    f"smoke inference gave non-finite values (inf/NaN) in output {name!r}",
                )
        memory = max(0, rss_bytes() - before)
        self.loaded[key] = Loaded(session, memory)
        return {
            "ok": True, "load_ms": load_ms, "smoke_ms": smoke_ms, "memory_bytes": memory,
            "inputs": signature(session.get_inputs()),
            "outputs": signature(session.get_outputs()),
        }  # fmt: skip

    def bench(
        self, request: dict[str, Any], emit: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Measure a model; see agent.proto, Benchmark. Emits progress twice a second."""
        if request.get("path_b"):
            return compare(request, emit)

        plan = request.get("plan") or RunPlan()
        warmup = int(request.get("warmup") or 5)
        min_repeats = int(request.get("min_repeats") or 10)
        max_repeats = int(request.get("max_repeats") or 100_000)
        target = float(request.get("target_ci") or 0.02)
        budget = float(request.get("max_seconds") or 10.0)
        before = conditions()
        session, load_ms = load_session(request["path"], plan)
        feeds = request_feeds(request, session)
        try:
            start = time.perf_counter()
            session.run(None, feeds)
            first_ms = (time.perf_counter() - start) * 1e3
            for _ in range(warmup):
                session.run(None, feeds)
            busy = CpuClock()
            samples, peak, reason = timed_runs(
                session, feeds, (min_repeats, max_repeats, target, budget), emit
            )
            others = busy.others()
        except Exception as exc:
            raise RequestError("INVALID_ARGUMENT", f"inference failed: {first_line(exc)}") from exc
        peak = max(peak, rss_bytes())
        after = conditions()
        median = median_ci(samples)[2]
        first = next(iter(feeds.values()), None)
        batch = first.shape[0] if first is not None and first.ndim else 1
        return {
            "ok": True,
            "latency": latency_stats(samples),
            "throughput": batch * 1000.0 / median if median else 0.0,
            "session_load_ms": load_ms, "first_inference_ms": first_ms,
            "peak_rss_bytes": peak, "stop_reason": reason,
            "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
            "block_ms": block_medians(samples),
            "conditions": conditions_record(before, after, others),
        }  # fmt: skip

    def profile(self, request: dict[str, Any]) -> dict[str, Any]:
        """Profile a model with ONNX Runtime's profiler; see agent.proto, Profile."""
        import tempfile  # noqa: PLC0415

        import onnxruntime as ort  # noqa: PLC0415

        from edgeopt.proto import profiling  # noqa: PLC0415

        plan = request.get("plan") or RunPlan()
        runs = int(request.get("runs") or 20)
        warmup = int(request.get("warmup") or 3)
        with tempfile.TemporaryDirectory(prefix="edgeopt-profile-") as folder:
            session, _ = load_session(request["path"], plan,
                                       profile_prefix=f"{folder}/trace")  # fmt: skip
            feeds = request_feeds(request, session)
            try:
                for _ in range(warmup + runs):
                    session.run(None, feeds)
            except Exception as exc:
                raise RequestError(
                    "INVALID_ARGUMENT", f"inference failed: {first_line(exc)}"
                ) from exc
            trace_path = session.end_profiling()
            trace = Path(trace_path).read_bytes()
        limit = int(request.get("max_trace_bytes") or OUTPUT_LIMIT)
        if request.get("include_trace") and len(trace) > limit:
            raise RequestError(
                "RESOURCE_EXHAUSTED",
                f"the trace is {len(trace)} bytes, over this agent's message limit of {limit}: "
                "ask without the trace, or for fewer runs",
            )
        figures = profiling.aggregate(json.loads(trace), skip_runs=warmup)
        return {"ok": True, **figures, "onnxruntime_version": ort.__version__,
                "trace": trace if request.get("include_trace") else b""}  # fmt: skip

    def infer(
        self, key: str, inputs: list[TensorTuple], max_bytes: int = OUTPUT_LIMIT
    ) -> dict[str, Any]:
        """Run a loaded model; its outputs may take at most `max_bytes`.

        Inputs holding several of the model's fixed batches run batch by batch, the outputs
        joined (`split_samples`, `join_outputs`); the latency is the sum of the runs.
        """
        loaded = self.loaded.get(key)
        if loaded is None:
            raise RequestError("FAILED_PRECONDITION", f"{key} is not loaded")
        runs = split_samples(to_arrays(inputs, loaded.session), loaded.session)
        results = []
        start = time.perf_counter()
        try:
            for feeds in runs:
                results.append(loaded.session.run(None, feeds))
        except Exception as exc:
            where = f" (batch {len(results) + 1} of {len(runs)})" if len(runs) > 1 else ""
            raise RequestError(
                "INVALID_ARGUMENT", f"inference failed{where}: {first_line(exc)}"
            ) from exc
        latency = (time.perf_counter() - start) * 1e3
        outputs = join_outputs(results)
        names = [o.name for o in loaded.session.get_outputs()]
        types = [o.type for o in loaded.session.get_outputs()]
        return {"ok": True, "outputs": to_tuples(names, outputs, max_bytes, types),
                "latency_ms": latency}  # fmt: skip


def main() -> int:
    """Serve requests from stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    # Whatever a library prints to fd 1 (ONNX Runtime's C++ logs) must not corrupt the
    # protocol: the protocol gets its own descriptor, and fd 1 becomes a second stderr.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    child = Child()
    while (request := receive(stdin)) is not None:
        try:
            answer = child.handle(request, lambda p: send(stdout, {"progress": p}))
        except RequestError as exc:
            answer = {"ok": False, "code": exc.code, "error": str(exc)}
        except Exception as exc:  # a bug here must not kill the runner
            answer = {"ok": False, "code": "INTERNAL", "error": f"{type(exc).__name__}: {exc}"}
        send(stdout, answer)
    return 0
