"""Compress one model: passes for a precision, run through the cache, validated, gated, written.

`sweep` does it for every precision and keeps going past failures.

    report = compress(CompressRequest(model=Path("m.onnx"), precision="int8-dynamic",
                                      output=Path("m.int8.onnx")))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import model as onnx_model
from edgeopt.host.compress import torch_model
from edgeopt.host.compress.cache import ArtifactCache
from edgeopt.host.compress.export import Export
from edgeopt.host.compress.model import ModelFacts
from edgeopt.host.compress.optimize import GraphOptimize, OptimizationLevel, require_loadable
from edgeopt.host.compress.passes import Pass, StepResult, run_pipeline
from edgeopt.host.compress.prune import Importance, PruneStructured, PruneUnstructured
from edgeopt.host.compress.quantize import (
    CalibrationMethodName,
    DynamicInt8,
    Fp16,
    Int4Weight,
    StaticInt8,
)
from edgeopt.host.compress.target import Target
from edgeopt.host.compress.validate import Gate, ValidationReport, validate
from edgeopt.proto.errors import (
    AccuracyGateFailed,
    DataError,
    EdgeoptError,
    ModelError,
    OutputError,
    UnsupportedModel,
)

Precision = Literal["fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight")


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

    @property
    def cached(self) -> bool:
        """Whether every pass was served from the cache."""
        return all(s.cached for s in self.steps)


def reference_passes(request: CompressRequest, source: Path) -> list[Pass]:
    """The passes that make the fp32 ONNX reference: an export for PyTorch inputs, else none."""
    if not torch_model.is_torch_input(source):
        return []
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


def passes_for(request: CompressRequest) -> list[Pass]:
    """The passes that make `request.precision` from the fp32 ONNX reference."""
    steps: list[Pass] = []
    if request.optimize is not None:
        steps.append(GraphOptimize(level=request.optimize))
    if request.precision == "fp16":
        steps.append(Fp16())
    elif request.precision == "int8-dynamic":
        steps.append(DynamicInt8(per_channel=request.per_channel))
    elif request.precision == "int8-static":
        steps.append(
            StaticInt8(
                calibration=request.calibration,
                method=request.calibration_method,
                per_channel=request.per_channel,
                activations=request.activations,
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


def compress(request: CompressRequest, cache: ArtifactCache | None = None) -> CompressionReport:
    """Make `request.precision` of the model, validate it, gate it, and write it.

    Raises:
        ModelError, DataError, UnsupportedModel, CompressionError: the model or data do not
            allow it; nothing is written.
        AccuracyGateFailed: the variant lost more than the gate allows; nothing is written.
        OutputError: the output cannot be written; nothing partial is left.
    """
    start = time.perf_counter()
    cache = cache or ArtifactCache()
    with tempfile.TemporaryDirectory(prefix="edgeopt-source-") as scratch:
        source = _source(request.model, Path(scratch))
        prepared = run_pipeline(source, reference_passes(request, source), cache)
        reference_path = prepared[-1].output if prepared else source
        reference = onnx_model.load(reference_path)
        before = onnx_model.facts(reference_path, reference)
        require_loadable(reference_path)
        validation_data = (
            datasets.load(request.validation, reference, purpose="validation")
            if request.validation is not None
            else None
        )
        if request.prune is not None:
            # Pruning works on the PyTorch model; its export then feeds the other passes.
            if not prepared:
                raise UnsupportedModel(
                    "pruning works on PyTorch models (a .pt2 file or a package.module:function "
                    "factory), before export; this input is already ONNX"
                )
            variant = [*prune_passes(request), *reference_passes(request, source)]
            start_at = source
        else:
            variant, start_at = [], reference_path
        steps = prepared + run_pipeline(start_at, [*variant, *passes_for(request)], cache)
    artifact = steps[-1].output if steps else reference_path
    report = None
    if validation_data is not None:
        report = validate(reference_path, artifact, validation_data)
        request.gate.check(report, request.precision)
    if request.output is not None:
        write_output(artifact, request.output)
    return CompressionReport(
        input=request.model,
        precision=request.precision,
        artifact=artifact,
        output=request.output,
        before=before,
        after=onnx_model.facts(artifact),
        steps=tuple(steps),
        validation=report,
        seconds=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class SweepRow:
    """One precision of a sweep: its report, or why it was not made or was rejected."""

    precision: Precision
    """The precision tried."""
    report: CompressionReport | None
    """Its report, when it was made (a gate failure still has one)."""
    rejected: str | None = None
    """Why it failed or was rejected."""


def sweep(request: CompressRequest, cache: ArtifactCache | None = None) -> list[SweepRow]:
    """Try every precision; a precision that cannot be made or fails the gate is noted, not fatal.

    Writes no output file; the artifacts stay in the cache.
    """
    rows = []
    for precision in PRECISIONS:
        if precision == "int8-static" and request.calibration is None:
            rows.append(SweepRow(precision, None, "needs --calibration data"))
            continue
        attempt = CompressRequest(
            **{**request.__dict__, "precision": precision, "output": None, "gate": Gate()}
        )
        try:
            report = compress(attempt, cache)
        except EdgeoptError as exc:
            rows.append(SweepRow(precision, None, str(exc)))
            continue
        except Exception as exc:  # one precision's failure must not end the sweep
            rows.append(SweepRow(precision, None, f"{type(exc).__name__}: {exc}"))
            continue
        rejected = None
        if report.validation is not None:
            try:
                request.gate.check(report.validation, precision)
            except (AccuracyGateFailed, DataError) as exc:
                rejected = str(exc)
        rows.append(SweepRow(precision, report, rejected))
    return rows
