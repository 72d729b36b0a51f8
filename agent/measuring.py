"""Benchmarks and profiles: run one at a time, in a runner of their own, in a bounded queue.

They run apart from serving so that Infer never waits behind a measurement and a measurement
killed for its time never unloads the served models; two at once would skew both, so they
queue (at most `MAX_BENCH_QUEUE` waiting, more are RESOURCE_EXHAUSTED). Their runner ends after
`HEAVY_IDLE_SECONDS` without work, its memory going back to the board. Parameters outside their
bounds are INVALID_ARGUMENT, never clamped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt.agent import calls
from edgeopt.agent.manifest import check_digest
from edgeopt.agent.refusal import Refusal
from edgeopt.agent.runner import Runner
from edgeopt.agent.store import ModelStore
from edgeopt.proto import paired
from edgeopt.proto.plan import RunPlan

if TYPE_CHECKING:
    from edgeopt.agent.models import Bounds

__all__ = [
    "HEAVY_IDLE_SECONDS",
    "MAX_BLOCK_RUNS",
    "MAX_BENCH_QUEUE",
    "MAX_PROFILE_RUNS",
    "MAX_REPEATS",
    "MAX_WARMUP",
    "Measurements",
    "number",
]

MAX_BENCH_QUEUE = 4
"""Benchmarks that may wait behind the running one; more are refused (RESOURCE_EXHAUSTED)."""
HEAVY_IDLE_SECONDS = 30.0
"""The benchmark runner ends after this long without work (its memory goes back to the board)."""
MAX_WARMUP = 10_000
MAX_REPEATS = 10_000_000
MAX_PROFILE_RUNS = 10_000
MAX_BLOCK_RUNS = 1000
"""Runs per block of a paired comparison at most."""


def number(request: dict[str, Any], key: str, low: float, high: float) -> float:
    """A Benchmark/Profile parameter within [low, high]; INVALID_ARGUMENT outside, never clamped."""
    value = float(request.get(key) or 0)
    if not (low <= value <= high):  # also false for NaN
        raise Refusal(
            "INVALID_ARGUMENT", f"{key} = {value:g} is out of range: use {low:g} to {high:g}"
        )
    return value


class Measurements:
    """The benchmark runner and its queue."""

    def __init__(self, store: ModelStore, bounds: Bounds, log: Path) -> None:
        self.store = store
        self.bounds = bounds
        self.runner = Runner(log=log)
        """Benchmarks and profiles: a child of their own (see the module docstring)."""
        self._idle: threading.Timer | None = None
        self._bench_lock = threading.Lock()  # one benchmark at a time: two would skew both
        self._queue_lock = threading.Lock()
        self._waiting = 0

    def benchmark(
        self,
        request: dict[str, Any],
        progress: Callable[[dict[str, Any]], None],
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Measure a stored model in the runner (agent.proto, Benchmark); one at a time.

        Raises:
            Refusal: RESOURCE_EXHAUSTED when `MAX_BENCH_QUEUE` callers already wait, NOT_FOUND
                for an unknown model, and what the runner refuses.
        """
        number(request, "warmup", 0, MAX_WARMUP)
        low = number(request, "min_repeats", 0, MAX_REPEATS)
        high = number(request, "max_repeats", 0, MAX_REPEATS)
        if high and low > high:
            raise Refusal(
                "INVALID_ARGUMENT", f"min_repeats {low:g} is more than max_repeats {high:g}"
            )
        if request.get("versus") is not None:
            number(request, "min_repeats", 0, paired.MAX_PAIRS)
            number(request, "max_repeats", 0, paired.MAX_PAIRS)
            number(request, "block_runs", 0, MAX_BLOCK_RUNS)
        number(request, "target_ci", 0, 1)
        seconds = number(request, "max_seconds", 0, self.bounds.max_benchmark_seconds)
        timeout = (seconds or 10.0) + self.bounds.request_timeout
        return self._run(request, "bench", "benchmarking", progress, cancel=cancel, timeout=timeout)

    def profile(
        self, request: dict[str, Any], cancel: threading.Event | None = None
    ) -> dict[str, Any]:
        """Profile a stored model in the runner (agent.proto, Profile); in the Benchmark queue."""
        number(request, "runs", 0, MAX_PROFILE_RUNS)
        number(request, "warmup", 0, MAX_WARMUP)
        request = {**request, "max_trace_bytes": self.bounds.max_message_bytes - (64 << 10)}
        return self._run(
            request, "profile", "profiling", lambda _: None, cancel=cancel,
            timeout=self.bounds.request_timeout,
        )  # fmt: skip

    def _run(
        self,
        request: dict[str, Any],
        op: str,
        doing: str,
        progress: Callable[[dict[str, Any]], None],
        *,
        cancel: threading.Event | None,
        timeout: float,
    ) -> dict[str, Any]:
        """A benchmark or profile: the model resolved, then run alone in the heavy runner."""
        inputs_path = calls.inputs_path(self.store, request.get("inputs_sha256") or "")
        sha256, what, plan = self._resolve(request)
        extra: dict[str, Any] = {}
        versus = request.get("versus")
        if versus is not None:  # a paired comparison: B resolved as A is
            sha256_b, what_b, plan_b = self._resolve(versus)
            what = f"{what} against {what_b}"
            extra = {"path_b": str(self.store.blob(sha256_b)), "plan_b": plan_b,
                     "sha256_b": sha256_b}  # fmt: skip
        with self._queue_lock:
            if self._waiting >= MAX_BENCH_QUEUE:
                raise Refusal(
                    "RESOURCE_EXHAUSTED",
                    f"{self._waiting} benchmarks are already waiting on this agent (at most "
                    f"{MAX_BENCH_QUEUE}); try again when they are done",
                )
            self._waiting += 1
        try:
            while not self._bench_lock.acquire(timeout=0.1):
                if cancel is not None and cancel.is_set():
                    raise Refusal("CANCELLED", f"{doing} {what}: cancelled while queued")
        finally:  # running now (or never will): no longer waiting
            with self._queue_lock:
                self._waiting -= 1
        try:
            if self._idle is not None:
                self._idle.cancel()
            with calls.runner_refusals(f"{doing} {what}"):
                answer = self.runner.call(
                    {
                        **request,
                        "op": op,
                        "path": str(self.store.blob(sha256)),
                        "plan": plan,
                        "inputs": calls.wrapped(request.get("inputs")),
                        "inputs_path": inputs_path,
                        "max_bytes": self.bounds.max_infer_bytes,
                        **extra,
                    },
                    timeout or self.bounds.request_timeout,
                    progress,
                    cancel,
                )
            calls.answered(answer)
        finally:
            self._idle = threading.Timer(HEAVY_IDLE_SECONDS, self.runner.stop)
            self._idle.daemon = True
            self._idle.start()
            self._bench_lock.release()
        if extra:
            answer["versus"] = {**answer["versus"], "sha256": extra["sha256_b"],
                                "plan": extra["plan_b"]}  # fmt: skip
        return {**answer, "sha256": sha256, "plan": plan}

    def _resolve(self, ref: dict[str, Any]) -> tuple[str, str, RunPlan]:
        """A model reference (a stored name and version, or a digest): digest, words, plan.

        The reference's own plan, when it has one, wins over the version's.
        """
        if ref.get("sha256"):
            sha256 = ref["sha256"]
            check_digest(sha256)  # before it names a file: a digest is never a path
            if not self.store.blob(sha256).is_file():
                raise Refusal("NOT_FOUND", f"no artifact {sha256} in this agent's store")
            what, plan = sha256[:12], RunPlan()
        else:
            entry = self.store.entry(ref.get("name", ""))
            version = self.store.version(ref["name"], ref.get("version") or entry.active)
            sha256, what, plan = version.sha256, f"{ref['name']} {version.version}", version.plan
        if ref.get("plan") is not None:
            plan = ref["plan"]
        return sha256, what, plan

    def close(self) -> None:
        """Stop the runner; a busy one is killed rather than waited for."""
        if self._idle is not None:
            self._idle.cancel()
        self.runner.kill() if self.runner.busy else self.runner.stop()
