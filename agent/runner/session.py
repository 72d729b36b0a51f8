"""The child's ONNX Runtime sessions, built from a checked model and a checked `RunPlan`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from edgeopt.proto.plan import RunPlan

__all__ = ["LEVELS", "RequestError", "first_line", "load_session"]

LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
    "": "ORT_ENABLE_ALL",
}
"""A plan's graph optimization level (plancheck.LEVELS) → ONNX Runtime's enum member name."""


class RequestError(Exception):
    """A request the runner refuses; `code` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _default_threads() -> int:
    """Intra-op threads when the plan names none.

    ONNX Runtime's own default (0: one thread per physical core, each pinned to its core),
    unless this process may use fewer CPUs than the machine has: under taskset, a cpuset or an
    emulator the pins fail ("pthread_setaffinity_np failed") and the pool oversubscribes, so
    there it gets the CPUs it may use, unpinned.
    """
    usable = len(os.sched_getaffinity(0))
    return usable if usable < (os.cpu_count() or usable) else 0


def _session(
    path: str, plan: RunPlan, profile_prefix: str | None = None, *, spinning: bool = True
) -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    from edgeopt.agent import modelcheck, plancheck  # noqa: PLC0415

    try:
        plancheck.check_plan(plan)
    except (plancheck.PlanRefused, ValueError, TypeError) as exc:
        raise RequestError("INVALID_ARGUMENT", str(exc)) from None
    try:
        modelcheck.check_model(Path(path))
    except modelcheck.ModelRefused as exc:
        raise RequestError("FAILED_PRECONDITION", str(exc)) from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.intra_op_num_threads = plan.intra_op_threads or _default_threads()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = plan.inter_op_threads
    level = plan.graph_optimization_level
    if level not in LEVELS:
        raise RequestError("INVALID_ARGUMENT", f"unknown graph optimization level {level!r}")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    if plan.execution_mode == "parallel":
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    provider = plan.execution_provider or "CPUExecutionProvider"
    available = ort.get_available_providers()
    if provider not in available:
        raise RequestError(
            "INVALID_ARGUMENT",
            f"execution provider {provider} is not available on this board; it has "
            f"{', '.join(available)}",
        )
    providers = [(provider, dict(plan.provider_options))]
    if provider != "CPUExecutionProvider":
        providers.append(("CPUExecutionProvider", {}))
    return ort.InferenceSession(path, options, providers=providers)


def load_session(
    path: str, plan: RunPlan, profile_prefix: str | None = None, *, spinning: bool = True
) -> tuple[Any, float]:
    """A session with the plan's options, and how long loading took (ms).

    `spinning` False: the intra-op threads sleep as soon as a run ends instead of spinning
    for more work (for two sessions that take turns: see compare.py).
    """
    start = time.perf_counter()
    try:
        session = _session(path, plan, profile_prefix, spinning=spinning)
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError(
            "FAILED_PRECONDITION", f"ONNX Runtime cannot load it: {first_line(exc)}"
        ) from exc
    return session, (time.perf_counter() - start) * 1e3


def first_line(exc: BaseException) -> str:
    """The last non-empty line of an error's message (ONNX Runtime's say what went wrong)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:500]
