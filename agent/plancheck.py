"""A plan (`RunPlan`, agent.proto's `Plan`) checked before its options reach ONNX Runtime.

Provider options pass straight into the execution provider, and some providers load the
libraries or write the files an option names (QNN's `backend_path`, TensorRT's and OpenVINO's
cache folders, custom-op libraries). So only the keys listed in `PROVIDER_OPTIONS` pass, each
with a value of the form listed; a key that names a file or a library is never allowed. Thread
counts are capped: an absurd count makes ONNX Runtime start that many threads.
"""

from __future__ import annotations

import re
from typing import Pattern

from edgeopt.proto.plan import RunPlan

__all__ = ["LEVELS", "MAX_THREADS", "MODES", "PROVIDER_OPTIONS", "PlanRefused", "check_plan"]

MAX_THREADS = 1024
"""Most intra- or inter-op threads a plan may ask for."""
_INT = re.compile(r"[0-9]{1,12}")
_BOOL = re.compile(r"(?i)0|1|true|false")
_WORD = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

PROVIDER_OPTIONS: dict[str, dict[str, Pattern[str]]] = {
    "CPUExecutionProvider": {},
    "CUDAExecutionProvider": {
        "device_id": _INT,
        "gpu_mem_limit": _INT,
        "arena_extend_strategy": re.compile(r"kNextPowerOfTwo|kSameAsRequested"),
        "cudnn_conv_algo_search": re.compile(r"EXHAUSTIVE|HEURISTIC|DEFAULT"),
        "do_copy_in_default_stream": _BOOL,
        "cudnn_conv_use_max_workspace": _BOOL,
        "cudnn_conv1d_pad_to_nc1d": _BOOL,
        "enable_cuda_graph": _BOOL,
        "tunable_op_enable": _BOOL,
        "tunable_op_tuning_enable": _BOOL,
        "use_tf32": _BOOL,
        "prefer_nhwc": _BOOL,
    },
    "TensorrtExecutionProvider": {
        "device_id": _INT,
        "trt_max_workspace_size": _INT,
        "trt_fp16_enable": _BOOL,
        "trt_int8_enable": _BOOL,
        "trt_max_partition_iterations": _INT,
        "trt_min_subgraph_size": _INT,
        "trt_builder_optimization_level": _INT,
        "trt_dla_enable": _BOOL,
        "trt_dla_core": _INT,
    },
    "OpenVINOExecutionProvider": {
        "device_type": _WORD,
        "precision": re.compile(r"FP32|FP16|ACCURACY"),
        "num_of_threads": _INT,
        "num_streams": _INT,
        "enable_opencl_throttling": _BOOL,
    },
    "XnnpackExecutionProvider": {"intra_op_num_threads": _INT},
    "DnnlExecutionProvider": {"use_arena": _BOOL},
    "ACLExecutionProvider": {"enable_fast_math": _BOOL},
    "ArmNNExecutionProvider": {"use_arena": _BOOL},
    "ROCMExecutionProvider": {"device_id": _INT, "gpu_mem_limit": _INT},
    "MIGraphXExecutionProvider": {
        "device_id": _INT,
        "migraphx_fp16_enable": _BOOL,
        "migraphx_int8_enable": _BOOL,
    },
    "CoreMLExecutionProvider": {},
    "NnapiExecutionProvider": {},
    "RknpuExecutionProvider": {},
    "AzureExecutionProvider": {},
}
"""Per execution provider, the option keys a plan may set and the form of their values."""
LEVELS = ("", "disable", "basic", "extended", "all")
MODES = ("", "sequential", "parallel")


class PlanRefused(ValueError):
    """A plan the board will not apply; the message names the field and what is allowed."""


def check_plan(plan: RunPlan) -> RunPlan:
    """Refuse a plan whose options are outside what the board applies.

    Returns:
        The plan, unchanged, once it passed.

    Raises:
        PlanRefused: naming the field, the value and what is allowed.
    """
    for key, count in (
        ("intra_op_threads", plan.intra_op_threads),
        ("inter_op_threads", plan.inter_op_threads),
    ):
        if not 0 <= count <= MAX_THREADS:
            raise PlanRefused(f"plan {key} = {count}: use 0 (the default) to {MAX_THREADS}")
    level = plan.graph_optimization_level
    if level not in LEVELS:
        raise PlanRefused(f"unknown graph optimization level {str(level)[:40]!r}; use one of "
                          f"{', '.join(repr(x) for x in LEVELS if x)}")  # fmt: skip
    mode = plan.execution_mode
    if mode not in MODES:
        raise PlanRefused(f"unknown execution mode {str(mode)[:40]!r}; use sequential or parallel")
    provider = plan.execution_provider or "CPUExecutionProvider"
    allowed = PROVIDER_OPTIONS.get(provider)
    if allowed is None:
        raise PlanRefused(
            f"execution provider {provider[:64]!r} is not one this agent knows; use one of "
            f"{', '.join(sorted(PROVIDER_OPTIONS))}"
        )
    for key, value in plan.provider_options:
        pattern = allowed.get(key)
        if pattern is None:
            known = ", ".join(sorted(allowed)) or "none"
            raise PlanRefused(
                f"provider option {key[:64]!r} is not allowed for {provider} (allowed: {known}); "
                "options that name files or libraries are never passed on"
            )
        if not pattern.fullmatch(str(value)):
            raise PlanRefused(
                f"provider option {key} = {str(value)[:64]!r} for {provider} is not of the "
                f"allowed form {pattern.pattern}"
            )
    return plan
