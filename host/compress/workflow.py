"""Compress one model: passes for a precision, run through the cache, validated, gated, written.

`sweep` does it for every precision and keeps going past failures.

    report = compress(CompressRequest(model=Path("m.onnx"), precision="int8-dynamic",
                                      output=Path("m.int8.onnx")))
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import onnx

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress import torch_model
from edgeopt.host.compress.cache import ArtifactCache
from edgeopt.host.compress.export import Export
from edgeopt.host.compress.normalize import Normalize
from edgeopt.host.compress.onnxfile import ModelFacts
from edgeopt.host.compress.optimize import GraphOptimize
from edgeopt.host.compress.passes import Pass, StepResult, run_pipeline
from edgeopt.host.compress.prune import Importance, PruneStructured, PruneUnstructured
from edgeopt.host.compress.quantize import (
    CalibrationMethodName,
    DynamicInt8,
    Fp16,
    InputDims,
    Int4Weight,
    StaticInt8,
)
from edgeopt.host.compress.quiet import OutputLog, captured
from edgeopt.host.compress.runtime import OptimizationLevel, require_loadable
from edgeopt.host.compress.target import Target
from edgeopt.host.compress.validate import (
    Gate,
    ValidationReport,
    check_finite,
    compare,
    run_model,
    validate,
)
from edgeopt.host.compress.weights import WeightCensus, census
from edgeopt.host.errors import (
    CompressionError,
    DataError,
    ModelError,
    NothingQuantized,
    OutputError,
    UnsupportedModel,
)
from edgeopt.proto.plan import Precision

__all__ = [
    "MIN_CONVERTED_SHARE",
    "CompressRequest",
    "CompressionReport",
    "compress",
    "passes_for",
    "prune_passes",
    "reference_passes",
    "write_output",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompressRequest:
    """What to make of a model."""

    model: Path | str
    """An ONNX file, a PyTorch file (.pt2 ExportedProgram, TorchScript), or a factory reference
    `package.module:function`."""
    precision: Precision = "int8-dynamic"
    """Target precision."""
    output: Path | None = None
    """Where to write the artifact; None keeps it in the cache only."""
    calibration: Path | None = None
    """`.npz` of representative inputs (static int8)."""
    calibration_method: CalibrationMethodName = "minmax"
    """How static int8 picks activation ranges."""
    per_channel: bool = True
    """Per-channel weight scales for int8."""
    activations: Literal["uint8", "int8"] = "uint8"
    """Static int8 activation type (uint8 suits ONNX Runtime's x86 kernels)."""
    int4_block_size: int = 32
    """Block size of int4 weight-only quantization."""
    optimize: OptimizationLevel | None = None
    """Offline graph optimization before quantizing (None: leave it to the board's session)."""
    validation: Path | None = None
    """`.npz` of held-out inputs (and optional labels) to compare against the fp32 reference."""
    gate: Gate = field(default_factory=Gate)
    """Accuracy limits; checked only when validation data is given."""
    example: Path | None = None
    """`.npz` of example inputs for exporting a PyTorch model."""
    input_shape: tuple[int, ...] | None = None
    """Shape of a single float32 input for exporting, when there is no example file."""
    opset: int = 17
    """ai.onnx opset of the export."""
    target_ort: str | None = None
    """The board's ONNX Runtime version: lower the artifact so that it loads there."""
    prune: float | None = None
    """Prune this share of weights (or, structured, of channels) before export (PyTorch only)."""
    structured: bool = False
    """Remove whole channels/neurons instead of single weights."""
    importance: Importance = "l1"
    """How structured pruning ranks channels."""
    finetune: Path | None = None
    """Labelled `.npz` to fine-tune on after pruning."""
    epochs: int = 3
    """Fine-tuning epochs."""
    lr: float = 1e-3
    """Fine-tuning learning rate (Adam); transformers want ~5e-5."""
    keep_float: tuple[str, ...] = ()
    """Nodes the precision leaves float (`--keep-float`; edgeopt.host.compress.keep_float)."""
    keep_float_search: str = ""
    """`--keep-float N` or `auto`: the nodes are found by edgeopt.host.compress.sensitivity
    (`compress` itself ignores this; the CLI runs the search)."""


@dataclass(frozen=True)
class CompressionReport:
    """What a compression did and what it cost."""

    input: Path | str
    """The input model."""
    precision: Precision
    """The precision made."""
    artifact: Path
    """The result in the cache."""
    output: Path | None
    """Where it was written, when asked."""
    before: ModelFacts
    """The fp32 reference's facts (the input, or its ONNX export)."""
    after: ModelFacts
    """The result's facts."""
    steps: tuple[StepResult, ...]
    """Each pass run (or served from the cache)."""
    validation: ValidationReport | None
    """Comparison with the reference, when validation data was given."""
    seconds: float
    """Wall time of the whole request."""
    weights_before: WeightCensus = field(default_factory=WeightCensus)
    """The reference's weights by storage and operator kind."""
    weights_after: WeightCensus = field(default_factory=WeightCensus)
    """The result's weights: what was really quantized, what stayed float."""
    notes: tuple[str, ...] = ()
    """What the passes worked around or left as it was, in words."""
    input_dims: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """The concrete input dims the user's data or --input-shape gave (empty: none given)."""

    @property
    def cached(self) -> bool:
        """Whether every pass was served from the cache."""
        return all(s.cached for s in self.steps)


def reference_passes(request: CompressRequest, source: Path) -> list[Pass]:
    """The passes that make the fp32 ONNX reference.

    An export for PyTorch inputs, else the normalization every ONNX file from the wild goes
    through (see `normalize`).
    """
    if not torch_model.is_torch_input(source):
        return [Normalize()]
    return [Export(example=request.example, input_shape=request.input_shape, opset=request.opset)]


def prune_passes(request: CompressRequest) -> list[Pass]:
    """The pruning pass a request asks for (empty without --prune)."""
    if request.prune is None:
        return []
    common = {
        "ratio": request.prune,
        "example": request.example,
        "input_shape": request.input_shape,
        "finetune": request.finetune,
        "epochs": request.epochs,
        "lr": request.lr,
    }
    if request.structured:
        return [PruneStructured(importance=request.importance, **common)]  # type: ignore[arg-type]
    return [PruneUnstructured(**common)]  # type: ignore[arg-type]


def passes_for(request: CompressRequest, dims: InputDims | None = None) -> list[Pass]:
    """The passes that make `request.precision` from the fp32 ONNX reference.

    `dims` (concrete input dims from the user's data) serve shape inference where ONNX
    Runtime's symbolic inference gives up.
    """
    steps: list[Pass] = []
    if request.optimize is not None:
        steps.append(GraphOptimize(level=request.optimize))
    kept = request.keep_float
    # fp32 is the reference every other precision is made from: nothing to keep, no error.
    if kept and request.precision not in ("fp32", "fp16", "int8-dynamic", "int8-static"):
        raise ModelError(
            f"--keep-float applies to fp16, int8-dynamic and int8-static; {request.precision} "
            "has no nodes to leave out"
        )
    if request.precision == "fp16":
        steps.append(
            Fp16(keep_float=kept, data=request.calibration or request.validation, input_dims=dims)
        )
    elif request.precision == "int8-dynamic":
        steps.append(DynamicInt8(per_channel=request.per_channel, input_dims=dims, keep_float=kept))
    elif request.precision == "int8-static":
        steps.append(
            StaticInt8(
                calibration=request.calibration,
                method=request.calibration_method,
                per_channel=request.per_channel,
                activations=request.activations,
                input_dims=dims,
                keep_float=kept,
            )
        )
    elif request.precision == "int4-weight":
        steps.append(Int4Weight(block_size=request.int4_block_size))
    if request.target_ort is not None:
        steps.append(Target(ort_version=request.target_ort))
    return steps


def _source(model: Path | str, scratch: Path) -> Path:
    """The file the pipeline starts from (a factory reference becomes a small JSON file)."""
    if isinstance(model, str) and not Path(model).exists():
        if torch_model.is_factory_reference(model):
            torch_model.ensure_importable(Path.cwd())
            return torch_model.write_factory_reference(model, scratch)
        raise ModelError(f"{model}: no such file (nor a package.module:function reference)")
    return Path(model)


def write_output(artifact: Path, output: Path) -> None:
    """Copy the artifact to `output` atomically: all of it, or nothing.

    Raises:
        OutputError: the folder is missing, read-only or full; no partial file is left.
    """
    folder = output.parent if str(output.parent) else Path(".")
    tmp = folder / f".{output.name}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(artifact, tmp)
        os.replace(tmp, output)
    except OSError as exc:
        with contextlib.suppress(OSError):  # on a read-only folder even this fails: fine
            tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write {output}: {reason}") from exc


def _input_dims(
    request: CompressRequest,
    reference: onnx.ModelProto,
    validation: datasets.Dataset | None,
    torch_input: bool,
) -> InputDims | None:
    """Concrete input dims from what the user gave: --input-shape, calibration or validation."""
    specs = datasets.input_specs(reference)
    if request.input_shape is not None and not torch_input:
        if len(specs) != 1:
            names = [s.name for s in specs]
            raise DataError(
                f"--input-shape gives one input's shape, and this model has {len(specs)} inputs "
                f"{names}; give data (--calibration or --validate) instead"
            )
        spec = specs[0]
        if len(request.input_shape) != len(spec.dims) or any(
            want is not None and got != want
            for got, want in zip(request.input_shape, spec.dims, strict=False)
        ):
            raise DataError(
                f"--input-shape {list(request.input_shape)} does not fit input {spec.name!r} "
                f"{datasets.show_dims(spec.dims)}"
            )
        return ((spec.name, request.input_shape),)
    data = validation
    if (
        request.calibration is not None
        and request.precision == "int8-static"
        and request.calibration.is_file()  # else the pass says it is missing
    ):
        data = datasets.load(request.calibration, reference, purpose="calibration")
    if data is None:
        return None
    return tuple(sorted(datasets.dims_from(data).items()))


def _check_not_quantized_yet(request: CompressRequest, before: WeightCensus) -> None:
    """Refuse to quantize a model whose weights are all int8/int4 already.

    ONNX Runtime's quantizers would run on a QDQ model and write one that does not load (two
    nodes named alike); the answer is known before any pass runs.
    """
    if request.precision in ("fp32", "fp16") or before.quantized_share < 0.99:
        return
    raise NothingQuantized(
        f"{request.precision} changed nothing: every weight of this model is already "
        f"{'/'.join(s for s in ('int8', 'int4') if before.elements[s])} "
        f"({before.summary()}); there is nothing left to quantize"
    )


MIN_CONVERTED_SHARE = 0.01
"""A variant converting less of the weight bytes than this is a no-op in all but name (the one
tiny MatMul of an otherwise convolutional or recurrent model)."""


def _check_quantized(request: CompressRequest, before: WeightCensus, after: WeightCensus) -> None:
    """Refuse a variant whose weights did not change: it would only cost time and Q/DQ nodes.

    Raises:
        NothingQuantized: with the reason and what would work instead.
    """
    precision = request.precision
    if precision == "fp32":
        return
    storages: tuple[str, ...] = ("float16",) if precision == "fp16" else ("int8", "int4")
    gained = after.share(*storages) - before.share(*storages)
    if gained >= MIN_CONVERTED_SHARE:
        return
    if before.total == 0:
        classic = (
            f" (its work is in {', '.join(before.classic_ops)}, ai.onnx.ml operators whose "
            "parameters are attributes that no precision reaches: run it as fp32)"
            if before.classic_ops else ""
        )  # fmt: skip
        raise NothingQuantized(
            f"{precision} changed nothing: the model has no weight tensors to convert{classic}"
        )
    _check_not_quantized_yet(request, before)
    kinds = before.kinds(("float32",))
    where = ", ".join(f"{n} {k}" for k, n in kinds.items())

    def share_of(*names: str) -> float:
        elements = sum(n for (k, _), n in before.kind_elements.items() if k in names)
        return elements / max(1, before.total)

    inside = before.subgraph_elements["float32"] / max(1, before.elements["float32"])
    if precision == "int8-dynamic" and share_of("Conv", "ConvTranspose") > 0.5:
        advice = (
            "dynamic int8 leaves Conv float (ONNX Runtime's ConvInteger has no fast kernels); "
            "this model's weights are mostly in convolutions: use --precision int8-static "
            "with --calibration DATA.npz"
        )
    elif precision == "int8-static" and inside > 0.5:
        advice = (
            f"ONNX Runtime's static quantizer does not enter If/Loop/Scan bodies, which hold "
            f"{inside:.0%} of this model's weights: use --precision int8-dynamic (it quantizes "
            "MatMul, Gemm and LSTM weights there)"
        )
    elif precision == "int8-static" and share_of("LSTM", "GRU", "RNN") > 0.5:
        advice = (
            "static (QDQ) int8 leaves recurrent layers float: use --precision int8-dynamic, "
            "which quantizes LSTM and GRU weights"
        )
    else:
        advice = f"{precision} does not quantize the operators holding them"
    done = (
        "no weight was quantized"
        if gained <= 0
        else f"only {gained:.1%} of the weight bytes were quantized"
    )
    raise NothingQuantized(
        f"{precision} changed nothing: {done} (the weights sit in {where}); {advice}"
    )


def _smoke(
    reference_path: Path,
    artifact: Path,
    reference: onnx.ModelProto,
    dims: InputDims | None,
    precision: str,
) -> None:
    """Without validation data, one made-up sample still catches a variant that overflows.

    Skipped when the reference itself does not run on made-up values (a model that wants a
    particular sample rate, say): only the user's data can tell then.
    """
    sample = datasets.synthesize(reference, dict(dims or ()), samples=1, seed=0)
    try:
        expected = run_model(reference_path, sample)
    except CompressionError:
        log.info("no smoke check: the reference does not run on made-up inputs")
        return
    check_finite(compare(expected, run_model(artifact, sample), None), precision)


def compress(
    request: CompressRequest,
    cache: ArtifactCache | None = None,
    log: OutputLog | None = None,
) -> CompressionReport:
    """Make `request.precision` of the model, validate it, gate it, and write it.

    What the libraries print goes to `log` (see `quiet`), never to the terminal.

    Raises:
        ModelError, DataError, UnsupportedModel, CompressionError: the model or data do not
            allow it; nothing is written.
        NothingQuantized: the variant would hold the same weights as the input.
        AccuracyGateFailed: the variant lost more than the gate allows; nothing is written.
        OutputError: the output cannot be written; nothing partial is left.
    """
    with captured(log or OutputLog(), f"compress {request.model} -> {request.precision}"):
        return _compress(request, cache or ArtifactCache())


def _compress(request: CompressRequest, cache: ArtifactCache) -> CompressionReport:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeopt-source-") as scratch:
        source = _source(request.model, Path(scratch))
        prepared = run_pipeline(source, reference_passes(request, source), cache)
        reference_path = prepared[-1].output
        reference = onnx_model.load(reference_path)
        require_loadable(reference_path)
        validation_data = (
            datasets.load(request.validation, reference, purpose="validation")
            if request.validation is not None
            else None
        )
        dims = _input_dims(request, reference, validation_data, torch_model.is_torch_input(source))
        weights_before = census(reference)
        _check_not_quantized_yet(request, weights_before)
        before = onnx_model.facts(reference_path, reference, dict(dims or ()))
        if request.prune is not None:
            # Pruning works on the PyTorch model; its export then feeds the other passes.
            if not torch_model.is_torch_input(source):
                raise UnsupportedModel(
                    "pruning works on PyTorch models (a .pt2 file or a package.module:function "
                    "factory), before export; this input is already ONNX"
                )
            variant = [*prune_passes(request), *reference_passes(request, source)]
            start_at = source
        else:
            variant, start_at = [], reference_path
        steps = prepared + run_pipeline(start_at, [*variant, *passes_for(request, dims)], cache)
    artifact = steps[-1].output
    weights_after = census(onnx_model.load(artifact, check=False))
    _check_quantized(request, weights_before, weights_after)
    report = None
    if validation_data is not None:
        report = validate(reference_path, artifact, validation_data)
        check_finite(report, request.precision)
        request.gate.check(report, request.precision)
    elif request.precision != "fp32":
        _smoke(reference_path, artifact, reference, dims, request.precision)
    if request.output is not None:
        write_output(artifact, request.output)
    return CompressionReport(
        input=request.model,
        precision=request.precision,
        artifact=artifact,
        output=request.output,
        before=before,
        after=onnx_model.facts(artifact, dims=dict(dims or ())),
        steps=tuple(steps),
        validation=report,
        seconds=time.perf_counter() - start,
        weights_before=weights_before,
        weights_after=weights_after,
        notes=(*(note for step in steps for note in step.notes), *_kept_note(request)),
        input_dims=dims or (),
    )


def _kept_note(request: CompressRequest) -> tuple[str, ...]:
    kept = request.keep_float
    if not kept or request.precision == "fp32":
        return ()
    shown = ", ".join(kept[:8]) + (f" and {len(kept) - 8} more" if len(kept) > 8 else "")
    nodes = "1 node" if len(kept) == 1 else f"{len(kept)} nodes"
    return (f"kept float as asked (--keep-float): {nodes}: {shown}",)
