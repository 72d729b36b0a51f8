"""ONNX Runtime as the compression passes use it: quiet sessions, load checks, quiet loggers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from edgeopt.host.errors import UnsupportedModel

__all__ = ["optimized_graph", "quiet_logger", "require_loadable", "session_options"]

OptimizationLevel = Literal["basic", "extended", "layout"]


def session_options(level: OptimizationLevel | None = None, threads: int = 1) -> object:
    """ONNX Runtime session options with quiet logs, `threads` intra-op threads and a level."""
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if level is not None:
        options.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "layout": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
    return options


def require_loadable(path: Path, options: object | None = None) -> None:
    """Raise `UnsupportedModel` unless ONNX Runtime here can load `path` (with `options`)."""
    import onnxruntime as ort  # noqa: PLC0415

    try:
        ort.InferenceSession(
            str(path), options or session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        message = str(exc).strip().splitlines()[-1][:400]
        raise UnsupportedModel(f"ONNX Runtime cannot load {path.name}: {message}") from exc


@contextlib.contextmanager
def quiet_logger(name: str = "") -> Iterator[None]:
    """Hold a logger (the root one by default) at ERROR for a while.

    ONNX Runtime's quantizer logs advice at WARNING on the root logger, and torch's exporter
    on "torch.onnx"; neither is for our users.
    """
    logger = logging.getLogger(name or None)
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def optimized_graph(model: Any) -> Any:
    """The graph ONNX Runtime runs for `model` (a ModelProto) here, after all its optimization.

    What it fused shows there: an int8 node runs as QLinearConv or MatMulIntegerToFloat, or
    stays a float node reading dequantized weights.
    """
    import tempfile  # noqa: PLC0415

    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.log_severity_level = 3
        with quiet_logger():
            ort.InferenceSession(model.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])  # fmt: skip
        return onnx.load(options.optimized_model_filepath).graph
