"""Quantization passes on ONNX models, with ONNX Runtime's quantization tools.

- `DynamicInt8`: int8 weights (per channel by default), activations quantized at run time.
- `StaticInt8`: int8 weights and activations in QDQ format, ranges from calibration data
  (MinMax, Percentile or Entropy).
- `Int4Weight`: 4-bit block-quantized weights for MatMul (`MatMulNBits`), activations float.
- `Fp16`: float16 weights and compute, float32 inputs and outputs kept.

Traps met on real models and handled here rather than left to users: symbolic shape inference
fails on exported transformers (pre-processing falls back without it); per-channel quantization
needs opset 13 or later (older models are converted first); ONNX Runtime's calibrator and
pre-processor write scratch files (they go to a private temporary folder, never beside the
output); results are always saved as one file. For static int8, transformer attention masks
carry -inf (MiniLM: 18 tensors), which wrecks MinMax ranges and crashes the histogram
calibrators, so nodes touching non-finite activations stay float; histogram calibrators also
need equal batch shapes, so calibration batches are cut to one size; and by default only the
compute-heavy ops (Conv, MatMul, Gemm) and embedding tables (Gather) are quantized (on MiniLM
quantizing every op gave cosine 0.37 against 0.94 for these), with uint8 activations.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import numpy as np
import onnx
from onnx import shape_inference, version_converter

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import keep_float, probe
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.normalize import with_input_dims
from edgeopt.host.compress.passes import Pass
from edgeopt.host.compress.runtime import optimized_graph, quiet_logger
from edgeopt.host.compress.target import drop_unused_opsets
from edgeopt.host.compress.tidy import (
    float_readers,
    share_identical_constants,
    unshare_weight_dequantize,
)
from edgeopt.host.errors import CompressionError, DataError, UnsupportedModel

__all__ = [
    "DYNAMIC_OP_TYPES",
    "MIN_PER_CHANNEL_OPSET",
    "DynamicInt8",
    "Fp16",
    "Int4Weight",
    "StaticInt8",
    "optimize_basic",
    "unfused",
]

log = logging.getLogger(__name__)

MIN_PER_CHANNEL_OPSET = 13
UNTYPED = {"DefaultTensorType": onnx.TensorProto.FLOAT}
"""The type ONNX Runtime's quantizer assumes for a tensor shape inference cannot type: what
comes out of ai.onnx.ml operators (a scikit-learn pipeline's Scaler before its MLP) has no
inferred type, and without this the quantizer stops ("Unable to find data type")."""
DYNAMIC_OP_TYPES = (
    "MatMul",
    "Gemm",
    "Attention",
    "LSTM",
    "GRU",
    "Gather",
    "EmbedLayerNormalization",
)
"""What dynamic int8 quantizes by default: ops whose int8 kernels pay off, and embedding tables
(Gather), which are stored in 8 bits and dequantized as rows are read."""

CalibrationMethodName = Literal["minmax", "percentile", "entropy"]


def _tidy(path: Path) -> None:
    """Drop what the quantizer leaves that a board's runtime does not want.

    Opset imports no node uses (older ONNX Runtimes refuse them), and the intermediate shapes of
    pre-processing, which may hold the calibration data's concrete dims: ONNX Runtime infers
    shapes again at load time, and stale ones would clash with other input sizes. Then the
    clean-ups of `tidy` (weights quantized once per control-flow body, shared DequantizeLinear).
    """
    model = onnx.load(str(path))
    drop_unused_opsets(model)
    for graph in onnx_model.graphs(model.graph):
        del graph.value_info[:]
    share_identical_constants(model)
    unshare_weight_dequantize(model)
    onnx_model.save(model, path)


def _float_readers(prepared: Path, path: Path, kinds: frozenset[str], left: set[str]) -> None:
    """Nodes left float in the QDQ model at `path` read float values (`tidy.float_readers`).

    Converted: nodes of `kinds` not in `left` that read a DequantizeLinear. Which round trips
    ONNX Runtime needs to fuse a converted node into an int8 kernel differs by operator and
    shape (a MatMul of a 4-D input and a weight ran in float without its output's round trip,
    oww-melspec 0.43x fp32 instead of 0.28x; MiniLM's did not): the nodes that ONNX Runtime's
    optimized graph leaves unfused on a dequantized weight, and did not before (`unfused`),
    keep their output's round trip, and the rewiring is made again (at most 3 times, then
    not applied).
    """
    model = onnx.load(str(path))
    producer = {out: n.op_type for n in model.graph.node for out in n.output}
    converted = frozenset(
        n.name for n in model.graph.node
        if n.op_type in kinds and n.name not in left
        and any(producer.get(i) == "DequantizeLinear" for i in n.input)
    )  # fmt: skip
    weights = {t.name: t for t in onnx.load(str(prepared)).graph.initializer}
    before: set[str] | None = None
    keep: frozenset[str] = frozenset()
    for _ in range(3):
        candidate = onnx.ModelProto()
        candidate.CopyFrom(model)
        if not float_readers(candidate, converted, weights, keep):
            return
        if before is None:
            before = unfused(model)
        lost = {keep_float.original(n, set(converted)) for n in unfused(candidate) - before}
        if not lost:
            onnx_model.save(candidate, path)
            return
        if None in lost or lost <= keep:
            return
        keep |= {n for n in lost if n is not None}


UNFUSED = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "FusedMatMul"})
"""Float operators that, reading a dequantized weight, mean an int8 node was not fused."""


def unfused(model: onnx.ModelProto) -> set[str]:
    """Nodes ONNX Runtime runs in float on a dequantized weight, after its optimization here."""
    graph = optimized_graph(model)
    weights = {t.name for t in graph.initializer}
    dequantized = {n.output[0] for n in graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in weights}  # fmt: skip
    return {n.name for n in graph.node if n.op_type in UNFUSED and set(n.input) & dequantized}


def _at_least_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    current = onnx_model.ai_onnx_opset(model)
    if current >= opset:
        return model
    log.info("converting opset %s to %s for per-channel quantization", current, opset)
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:
        raise UnsupportedModel(
            f"per-channel quantization needs opset >= {opset}; converting from opset {current} "
            f"failed: {exc}. Re-export the model at opset {opset} or pass per_channel=False."
        ) from exc


InputDims = tuple[tuple[str, tuple[int, ...]], ...]
"""Concrete dims per graph input (from the user's data or --input-shape), hashable for the cache."""


def _infer_shapes(
    model: onnx.ModelProto, dims: InputDims | None, notes: list[str]
) -> onnx.ModelProto:
    """Shapes for the quantizer: symbolic inference, else onnx's with the data's dims.

    ONNX Runtime's symbolic shape inference follows transformers' shape arithmetic, and gives up
    on other graphs (a YOLOv8 head, Paddle's detectors: "Incomplete symbolic shape inference").
    Then onnx's inference runs on a copy whose inputs have the dims of the user's data, and the
    original (symbolic) input dims are put back: the artifact keeps its dynamic axes.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference  # noqa: PLC0415

    try:
        with quiet_logger():
            inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        if inferred is not None:
            return cast(onnx.ModelProto, inferred)
    except Exception as exc:
        log.info("symbolic shape inference failed: %s", exc)
    concrete = with_input_dims(model, dict(dims)) if dims else model
    source = "the data's dims " + ", ".join(f"{n}={list(d)}" for n, d in dims) if dims else ""
    try:
        inferred = shape_inference.infer_shapes(concrete, data_prop=True)
    except Exception as exc:
        log.info("onnx shape inference failed too: %s", exc)
        notes.append("shape inference failed; tensors of unknown shape stay float")
        return model
    notes.append(
        "symbolic shape inference failed; shapes were inferred "
        + (f"with {source}" if source else "by onnx")
    )
    del inferred.graph.input[:]
    inferred.graph.input.extend(model.graph.input)
    # Inside control flow the data's dims may belong to one branch only (silero's 8 kHz and
    # 16 kHz paths): shapes made from them would be wrong in the other, and ONNX Runtime
    # refuses a model whose recorded shapes contradict each other.
    for graph in list(onnx_model.graphs(inferred.graph))[1:]:
        del graph.value_info[:]
    return inferred


def optimize_basic(model: onnx.ModelProto, scratch: Path, notes: list[str]) -> onnx.ModelProto:
    """ONNX Runtime's basic graph optimization (constant folding, Conv+BN fusion), in memory."""
    import onnxruntime as ort  # noqa: PLC0415

    out = scratch / "optimized.onnx"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(out))
    except Exception as exc:
        log.info("ONNX Runtime's basic optimization failed: %s", exc)
        notes.append("ONNX Runtime's graph optimization failed before quantizing; skipped it")
        return model
    return optimized


def _preprocess(
    src: onnx.ModelProto, scratch: Path, dims: InputDims | None = None
) -> tuple[Path, list[str]]:
    """What ONNX Runtime's `quant_pre_process` does, done so that no step can sink the rest.

    Its own version fails as a whole when one step fails (YOLOv8 exports by PyTorch 2.3: symbolic
    inference gives up, then its external-data round trip fails on a temporary folder) and prints
    tracebacks. Here: basic optimization, then shapes (symbolic, else from the data's dims); a
    step that fails is skipped and named in the notes.
    """
    from onnxruntime.quantization.quant_utils import add_pre_process_metadata  # noqa: PLC0415

    notes: list[str] = []
    model = optimize_basic(src, scratch, notes)
    model = _infer_shapes(model, dims, notes)
    add_pre_process_metadata(model)
    out = scratch / "preprocessed.onnx"
    onnx_model.save(model, out)
    return out, notes


@dataclass(frozen=True)
class DynamicInt8(Pass):
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized at run time."""

    name: ClassVar[str] = "int8-dynamic"
    per_channel: bool = True
    """One scale per output channel of each weight (better accuracy; needs opset >= 13)."""
    reduce_range: bool = False
    """7-bit weights, for CPUs without VNNI whose int8 dot products may saturate."""
    conv: bool = False
    """Also quantize Conv (as ConvInteger). Off by default: ConvInteger has no fast kernels
    (a Conv-heavy model ran ~5x slower than fp32 here) and ONNX Runtime before 1.24 has no
    int8-weight ConvInteger at all; static int8 is the way for convolutions."""

    input_dims: InputDims | None = None
    """Concrete input dims for shape inference when symbolic inference fails."""
    keep_float: tuple[str, ...] = ()
    """Nodes to leave float (edgeopt.host.compress.keep_float: names, or paths in bodies)."""

    def run(self, src: Path, dst: Path) -> list[str]:
        """Quantize `src` into `dst`; returns notes on what had to be worked around."""
        from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

        model = onnx_model.load(src)
        kept = keep_float.resolve(model, self.keep_float, self.name)
        if self.per_channel:
            model = _at_least_opset(model, MIN_PER_CHANNEL_OPSET)
        with tempfile.TemporaryDirectory() as scratch:
            prepared, notes = _preprocess(model, Path(scratch), self.input_dims)
            if kept:
                kept = keep_float.fused(
                    onnx.load(str(prepared), load_external_data=False), kept, dynamic=True
                )
            with quiet_logger():
                quantize_dynamic(
                    prepared,
                    dst,
                    per_channel=self.per_channel,
                    reduce_range=self.reduce_range,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=[*DYNAMIC_OP_TYPES, *(["Conv"] if self.conv else [])],
                    nodes_to_exclude=kept,
                    use_external_data_format=False,
                    # Weights inside If/Loop/Scan bodies too (streaming audio models keep
                    # theirs there); ORT supports this for dynamic quantization only.
                    extra_options={"EnableSubgraph": True, **UNTYPED},
                )
        _tidy(dst)
        return notes


def _recurrent_dynamic(path: Path, keep: Sequence[str] = ()) -> list[str]:
    """Quantize the float LSTM/GRU weights of a static-int8 artifact dynamically, in place.

    The nodes named in `keep` (--keep-float) stay float.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    from edgeopt.host.compress.weights import census  # noqa: PLC0415

    model = onnx.load(str(path))
    kept = census(model).kept_float_compute()
    recurrent = {k: n for k, n in kept.items() if k in ("LSTM", "GRU")}
    if keep and all(n.name in keep for n in model.graph.node if n.op_type in ("LSTM", "GRU")):
        return []  # every one of them kept float as asked
    if not recurrent:
        return []
    layers = ", ".join(f"{n} {k}" for k, n in recurrent.items())
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "hybrid.onnx"
        try:
            with quiet_logger():
                quantize_dynamic(
                    path, out, op_types_to_quantize=list(recurrent), nodes_to_exclude=list(keep),
                    weight_type=QuantType.QInt8, per_channel=False,
                    use_external_data_format=False,
                    extra_options={"EnableSubgraph": True, **UNTYPED},
                )  # fmt: skip
        except Exception as exc:  # weights computed in the graph (sliced, inside an If)
            log.info("dynamic quantization of %s failed: %s", layers, exc)
            return [f"{layers} kept float: ONNX Runtime's quantizer cannot reach their weights"]
        out.replace(path)
    _tidy(path)
    return [f"{layers} quantized dynamically (static QDQ has no recurrent kernels)"]


@dataclass(frozen=True)
class StaticInt8(Pass):
    """ONNX Runtime static quantization in QDQ format with calibration data."""

    name: ClassVar[str] = "int8-static"
    calibration: Path | None = None
    """`.npz` of representative inputs (see `data.py`); required."""
    method: CalibrationMethodName = "minmax"
    """How activation ranges are chosen from the calibration data."""
    per_channel: bool = True
    """One scale per output channel of each weight (needs opset >= 13)."""
    batch_size: int = 16
    """Samples per calibration run (fewer samples than this: one batch of all of them)."""
    max_samples: int = 512
    """Calibrate on at most this many samples (Entropy and Percentile keep histograms)."""
    op_types: tuple[str, ...] = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Gather")
    """Operator types to quantize (Gather: embedding tables); the others stay float."""
    recurrent: bool = True
    """Also quantize LSTM/GRU weights, dynamically: QDQ has no recurrent kernels, and a CRNN's
    LSTM holds most of its weights (ddddocr's: 25 % of the size instead of 49 %)."""
    activations: Literal["uint8", "int8"] = "uint8"
    """Activation type. uint8 with int8 weights (U8S8) is what ONNX Runtime's x86 kernels are
    fast at: on MiniLM here it ran 2.4x faster than fp32, while int8 activations (S8S8) ran
    1.8x slower than fp32, at the same accuracy."""

    input_dims: InputDims | None = None
    """Concrete input dims for shape inference when symbolic inference fails (default: the
    calibration data's)."""
    keep_float: tuple[str, ...] = ()
    """Nodes to leave float (edgeopt.host.compress.keep_float: names, or paths in bodies)."""

    def run(self, src: Path, dst: Path) -> list[str]:
        """Calibrate on the data and quantize `src` into `dst`; returns notes."""
        from onnxruntime.quantization import (  # noqa: PLC0415
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        if self.calibration is None:
            raise DataError(
                "static int8 needs calibration data: pass --calibration FILE.npz "
                "(representative inputs, see README)"
            )
        model = onnx_model.load(src)
        kept = keep_float.resolve(model, self.keep_float, self.name)
        data = datasets.load(self.calibration, model, purpose="calibration")
        if self.per_channel:
            model = _at_least_opset(model, MIN_PER_CHANNEL_OPSET)
        size = data.fixed_batch or min(self.batch_size, len(data))
        # Equal batch shapes: the histogram calibrators stack what they collect.
        feeds = [f for f in data.batches(size) if all(len(f[k]) == size for k in data.arrays)]
        feeds = feeds[: max(1, self.max_samples // size)]
        excluded = probe.non_finite_nodes(model, feeds[:4])
        if excluded:
            log.info("keeping %d nodes float: they touch non-finite activations", len(excluded))

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self._it = iter(feeds)

            def get_next(self) -> dict[str, Any] | None:
                return next(self._it, None)

            def rewind(self) -> None:
                self._it = iter(feeds)

        method = {
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[self.method]
        with tempfile.TemporaryDirectory() as scratch:
            dims = self.input_dims or tuple(datasets.dims_from(data).items())
            prepared, notes = _preprocess(model, Path(scratch), dims)
            if kept:
                kept = keep_float.fused(onnx.load(str(prepared), load_external_data=False), kept)
            try:
                with quiet_logger(), np.errstate(divide="ignore", invalid="ignore"):
                    quantize_static(
                        prepared,
                        dst,
                        Reader(),
                        quant_format=QuantFormat.QDQ,
                        per_channel=self.per_channel,
                        activation_type=(
                            QuantType.QUInt8 if self.activations == "uint8" else QuantType.QInt8
                        ),
                        weight_type=QuantType.QInt8,
                        calibrate_method=method,
                        op_types_to_quantize=list(self.op_types),
                        nodes_to_exclude=[*excluded, *kept],
                        use_external_data_format=False,
                        extra_options={
                            "ActivationSymmetric": False,
                            "WeightSymmetric": True,
                            **UNTYPED,
                        },
                    )
            except (ValueError, RuntimeError) as exc:
                raise CompressionError(f"static int8 calibration failed: {exc}") from exc
            _float_readers(prepared, dst, frozenset(self.op_types), {*excluded, *kept})
        _tidy(dst)
        if self.recurrent:
            notes += _recurrent_dynamic(dst, kept)
        return notes


@dataclass(frozen=True)
class Int4Weight(Pass):
    """4-bit block-wise weight-only quantization of MatMul (`com.microsoft.MatMulNBits`)."""

    name: ClassVar[str] = "int4-weight"
    block_size: int = 32
    """Weights per quantization block along the reduction axis (16, 32, 64, 128)."""
    symmetric: bool = True
    """Symmetric blocks (no zero point)."""
    accuracy_level: int | None = None
    """MatMulNBits compute type: 4 = int8 activations (fastest on ARM/x86), None = float."""

    def run(self, src: Path, dst: Path) -> None:
        """Quantize the MatMul weights of `src` into `dst`."""
        from onnxruntime.quantization.matmul_nbits_quantizer import (  # noqa: PLC0415
            MatMulNBitsQuantizer,
        )

        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            raise DataError(f"int4 block size must be a power of two >= 16, got {self.block_size}")
        model = onnx_model.load(src)
        constants = {i.name for i in model.graph.initializer}
        candidates = [
            n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants
        ]
        if not candidates:
            ops = sorted({n.op_type for n in model.graph.node})
            classic = any(n.domain == "ai.onnx.ml" for n in model.graph.node)
            raise UnsupportedModel(
                "int4 weight-only quantization applies to MatMul with constant weights, and this "
                f"model has none (its ops: {', '.join(ops)}); "
                + ("its ai.onnx.ml operators keep their parameters in attributes, which no "
                   "precision reaches: run it as fp32" if classic else "use int8 instead")
            )  # fmt: skip
        with quiet_logger():
            quantizer = MatMulNBitsQuantizer(
                model,
                bits=4,
                block_size=self.block_size,
                is_symmetric=self.symmetric,
                accuracy_level=self.accuracy_level,
            )
            quantizer.process()
        model = quantizer.model.model
        drop_unused_opsets(model)
        onnx_model.save(model, dst)


@dataclass(frozen=True)
class Fp16(Pass):
    """Convert weights and compute to float16, keeping float32 inputs and outputs.

    Where values pass float16's range on the data (`probe.fp16_overflow`: calibration or
    validation samples, else one made-up sample), the nodes touching them stay float32.
    """

    name: ClassVar[str] = "fp16"
    keep_io_types: bool = True
    """Inputs and outputs stay float32 (callers need not change)."""
    keep_float: tuple[str, ...] = ()
    """Nodes to leave float32 (edgeopt.host.compress.keep_float: names, or paths in bodies)."""
    data: Path | None = None
    """`.npz` of inputs whose activations show where float16 would overflow."""
    input_dims: InputDims | None = None
    """Concrete input dims for made-up samples, when there is no data."""

    def run(self, src: Path, dst: Path) -> list[str]:
        """Convert `src` into `dst`; returns the note on what stayed float32 for range."""
        from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

        model = onnx_model.load(src)
        keep_float.name_unnamed(model)
        notes = []
        try:
            overflow = probe.fp16_overflow(model, self._feeds(model))
        except Exception as exc:  # ONNX Runtime's own errors: the model did not run on them
            if self.data is not None:
                raise DataError(f"fp16: the model does not run on {self.data}: {exc}") from exc
            overflow = probe.Overflow((), ())
            notes.append(
                "float16's range was not checked: the model does not run on made-up inputs "
                "(give --validate DATA.npz)"
            )
        kept = keep_float.resolve(model, (*self.keep_float, *overflow.nodes), self.name)
        with quiet_logger():
            converted = convert_float_to_float16(
                model, keep_io_types=self.keep_io_types, node_block_list=kept or None
            )
        _drop_round_trips(converted.graph)
        onnx_model.save(converted, dst)
        return [*notes, *([overflow.describe()] if overflow.nodes else [])]

    def _feeds(self, model: onnx.ModelProto) -> list[dict[str, Any]]:
        if self.data is not None:
            data = datasets.load(self.data, model, purpose="range")
        else:
            data = datasets.synthesize(model, dict(self.input_dims or ()), samples=1, seed=0)
        return list(data.batches(data.fixed_batch or 1))[:RANGE_SAMPLES]


RANGE_SAMPLES = 16
"""Samples float16's range check runs at most."""


TO_FP16 = ("_cast_to_fp16_node", "graph_input_cast")
"""How ONNX Runtime's converter names the casts to float16 it inserts (after a float32 node,
after a float32 graph input)."""


def _drop_round_trips(graph: onnx.GraphProto) -> None:
    """Let float32 nodes pass float32 tensors to each other directly, in place.

    ONNX Runtime's converter casts every output of a kept-float32 node to float16 and back to
    float32 in front of the next kept node (and a float32 graph input on its way to a kept
    node): a tensor past float16's range became inf between two float32 nodes (magika: 17
    nodes kept, and still inf on every sample). A reader of such
    a round trip reads the float32 tensor instead; casts left without readers go.
    """
    producer = {out: n for n in graph.node for out in n.output}
    outputs = {o.name for o in graph.output}

    def made(node: onnx.NodeProto | None, *marks: str) -> bool:
        """A cast the converter inserted (its names end or begin with these marks)."""
        if node is None or node.op_type != "Cast":
            return False
        return any(node.name.endswith(m) or node.name.startswith(m) for m in marks)

    direct: dict[str, str] = {}
    for node in graph.node:
        inner = producer.get(node.input[0]) if node.input else None
        if made(node, "_cast_to_fp32_node") and made(inner, *TO_FP16):
            assert inner is not None
            direct[node.output[0]] = inner.input[0]
    if not direct:
        return
    for node in graph.node:
        node.input[:] = [direct.get(name, name) for name in node.input]
    while True:  # drop casts nobody reads any more (a round trip's two halves)
        read = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.output[0] not in read
                and made(n, "_cast_to_fp32_node", *TO_FP16)]  # fmt: skip
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
