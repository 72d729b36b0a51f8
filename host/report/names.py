"""Short names of ONNX Runtime's execution providers, as every report shows them.

One table for the bench report (table, plots, page) and the operator profile alike, so that
a provider reads the same everywhere: "TensorrtExecutionProvider" is "TensorRT".
"""

from __future__ import annotations

__all__ = ["PROVIDER_SHORT_NAMES", "short_provider"]

PROVIDER_SHORT_NAMES = {
    "CPUExecutionProvider": "CPU",
    "CUDAExecutionProvider": "CUDA",
    "TensorrtExecutionProvider": "TensorRT",
    "OpenVINOExecutionProvider": "OpenVINO",
    "CoreMLExecutionProvider": "CoreML",
    "DmlExecutionProvider": "DirectML",
    "QNNExecutionProvider": "QNN",
    "XnnpackExecutionProvider": "XNNPACK",
    "NnapiExecutionProvider": "NNAPI",
    "ACLExecutionProvider": "ACL",
    "ArmNNExecutionProvider": "ArmNN",
    "RknpuExecutionProvider": "RKNPU",
    "ROCMExecutionProvider": "ROCm",
    "MIGraphXExecutionProvider": "MIGraphX",
    "VitisAIExecutionProvider": "VitisAI",
    "WebGpuExecutionProvider": "WebGPU",
}
"""The providers' names as their makers write them; others lose the "ExecutionProvider" suffix."""


def short_provider(name: str) -> str:
    """The short name of an execution provider: CPU, CUDA, TensorRT, ... ("" stays "")."""
    return PROVIDER_SHORT_NAMES.get(name) or name.removesuffix("ExecutionProvider")
