"""How much a variant differs from its fp32 reference, and the gate that turns it into a verdict.

Both models run with ONNX Runtime on the same validation inputs. The report gives, for the
output that says most (`comparable`: the first float tensor, else a classifier's ZipMap scores,
else the first output), the max and mean absolute error, the mean cosine similarity per sample,
top-1 agreement when the output is a score per class, and task accuracy of both when labels are
given. When the output is labels or counts (integers: a tagger's ArgMax, a detector's count),
the similarity is label agreement instead, the share of elements equal: label ids are names,
and a cosine of names means nothing (ids 5 and 3000 swapped cost more than 5 and 6). A `Gate`
(max accuracy drop and/or min similarity) raises `AccuracyGateFailed` naming the metric and
shortfall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.host.compress.data import Dataset
from edgeopt.host.compress.runtime import session_options
from edgeopt.host.errors import AccuracyGateFailed, BrokenVariant, CompressionError, DataError

__all__ = [
    "Gate",
    "ValidationReport",
    "check_finite",
    "comparable",
    "compare",
    "run_model",
    "stacked",
    "validate",
]


@dataclass(frozen=True)
class ValidationReport:
    """Differences between a variant's outputs and the reference's."""

    samples: int
    """How many validation samples were run."""
    max_abs_error: float
    """Largest absolute difference of any output element."""
    mean_abs_error: float
    """Mean absolute difference."""
    cosine: float
    """Mean over samples of the cosine similarity of the flattened outputs; for an integer
    output (labels, counts), of the share of its elements equal (see `similarity`)."""
    top1_agreement: float | None = None
    """Share of samples whose arg-max class is the same (classifier outputs only); for an
    integer output, the share of its elements equal."""
    reference_accuracy: float | None = None
    """Task accuracy of the reference (labels given)."""
    accuracy: float | None = None
    """Task accuracy of the variant (labels given)."""
    non_finite_samples: int = 0
    """Samples where the variant's output holds inf or NaN and the reference's does not."""
    similarity: str = "cosine"
    """What `cosine` holds: "cosine", or "label agreement" for an integer output."""

    @property
    def accuracy_drop(self) -> float | None:
        """Reference accuracy minus variant accuracy (labels), else top-1 disagreement."""
        if self.reference_accuracy is not None and self.accuracy is not None:
            return self.reference_accuracy - self.accuracy
        if self.top1_agreement is not None:
            return 1.0 - self.top1_agreement
        return None


def comparable(values: Sequence[Any]) -> np.ndarray:
    """The output of one run that a gate compares, as float64 with samples along the first axis.

    `values` are a run's outputs in the model's order, as ONNX Runtime (or the wire) gives them.
    The first float tensor (scores, embeddings, boxes); else a classifier's scores given as a
    sequence of maps (skl2onnx's ZipMap), one column per class in the maps' order; else the
    first numeric tensor (labels, counts), as int64.

    Raises:
        DataError: no output holds numbers (labels as strings alone).
    """
    tensors = [v for v in values if not isinstance(v, (list, dict))]
    for value in tensors:
        if np.asarray(value).dtype.kind == "f":
            return np.asarray(value, dtype=np.float64)
    for value in values:
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            keys = list(value[0])
            return np.asarray([[float(m.get(k, np.nan)) for k in keys] for m in value])
    for value in tensors:
        if np.asarray(value).dtype.kind in "iub":
            return np.asarray(value, dtype=np.int64)
    raise DataError(
        "the model's outputs hold no numbers to compare (labels as strings alone); a gate "
        "needs scores or numeric labels"
    )


def run_model(path: Path, data: Dataset, batch_size: int = 64) -> np.ndarray:
    """The `comparable` output of `path` on every sample, concatenated along the first axis."""
    import onnxruntime as ort  # noqa: PLC0415

    size = data.fixed_batch or batch_size  # a model exported with batch 1 takes exactly 1
    try:
        session = ort.InferenceSession(
            str(path), session_options(threads=2), providers=["CPUExecutionProvider"]
        )
        outputs = [comparable(session.run(None, feed)) for feed in data.batches(size)]
    except DataError:
        raise
    except Exception as exc:  # ONNX Runtime's own errors: one line, not its traceback
        message = (str(exc).strip().splitlines() or [""])[-1][:400]
        raise CompressionError(
            f"running {path.name} on the {data.path or 'validation'} data failed: {message}"
        ) from exc
    return stacked(outputs)


def stacked(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """`comparable` outputs of several batches as one array: float64, or int64 for labels."""
    whole = np.concatenate(outputs)
    return whole.astype(np.int64 if whole.dtype.kind in "iub" else np.float64)


def compare(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None
) -> ValidationReport:
    """Compare two models' outputs on the same samples."""
    if reference.shape != candidate.shape:
        raise DataError(f"outputs differ in shape: {reference.shape} vs {candidate.shape}")
    # Non-finite outputs are handled explicitly below (extreme inputs can make even fp32's
    # overflow); numpy's warnings about them would only be noise.
    if reference.dtype.kind in "iub" and candidate.dtype.kind in "iub":
        return _agreement(reference, candidate, labels)
    with np.errstate(all="ignore"):
        return _compare(reference, candidate, labels)


def _agreement(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None
) -> ValidationReport:
    """Integer outputs (labels, counts): equal or not, element by element."""
    ref = reference.reshape(len(reference), -1)
    cand = candidate.reshape(len(candidate), -1)
    agree = float((ref == cand).mean(axis=1).mean()) if ref.size else 1.0
    diff = np.abs(ref - cand)
    ref_acc = acc = None
    if labels is not None and ref.shape[1] == 1 and len(labels) == len(ref):
        ref_acc = float((ref[:, 0] == labels).mean())
        acc = float((cand[:, 0] == labels).mean())
    return ValidationReport(
        samples=len(reference),
        max_abs_error=float(diff.max()) if diff.size else 0.0,
        mean_abs_error=float(diff.mean()) if diff.size else 0.0,
        cosine=agree,
        top1_agreement=agree,
        reference_accuracy=ref_acc,
        accuracy=acc,
        similarity="label agreement",
    )


def _compare(
    reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None
) -> ValidationReport:
    # A variant that outputs inf/NaN is as wrong as can be: count those samples as cosine 0
    # and the error as infinite, so that no gate can pass them.
    candidate = np.where(np.isfinite(candidate), candidate, np.inf)
    diff = np.abs(reference - candidate)
    diff = np.where(np.isnan(diff), np.inf, diff)
    ref = reference.reshape(len(reference), -1)
    cand = candidate.reshape(len(candidate), -1)
    finite = np.isfinite(cand).all(axis=1)
    broken = int((~finite & np.isfinite(ref).all(axis=1)).sum())
    cand_safe = np.where(np.isfinite(cand), cand, 0.0)
    ref_norm = np.linalg.norm(ref, axis=1)
    cand_norm = np.linalg.norm(cand_safe, axis=1)
    dot = (ref * cand_safe).sum(axis=1)
    cosine = np.where((ref_norm > 0) & (cand_norm > 0), dot / (ref_norm * cand_norm), 0.0)
    both_zero = (ref_norm == 0) & (cand_norm == 0)
    cosine = np.where(both_zero, 1.0, cosine)
    cosine = np.where(finite, cosine, 0.0)
    # Scores per class have an arg-max that means something; an L2-normalized embedding
    # (unit rows with negative entries, like MiniLM's) does not.
    unit_rows = np.allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-3) and reference.min() < 0
    classifier = reference.ndim == 2 and reference.shape[1] > 1 and not unit_rows
    top1 = ref_acc = acc = None
    if classifier:
        ref_top, cand_top = reference.argmax(1), candidate.argmax(1)
        top1 = float((ref_top == cand_top).mean())
        if labels is not None:
            ref_acc = float((ref_top == labels).mean())
            acc = float((cand_top == labels).mean())
    return ValidationReport(
        samples=len(reference),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
        cosine=float(cosine.mean()),
        top1_agreement=top1,
        reference_accuracy=ref_acc,
        accuracy=acc,
        non_finite_samples=broken,
    )


def validate(reference: Path, candidate: Path, data: Dataset) -> ValidationReport:
    """Run both models on `data` and compare."""
    return compare(run_model(reference, data), run_model(candidate, data), data.labels)


def check_finite(report: ValidationReport, variant: str) -> None:
    """Refuse a variant that computes inf or NaN where the reference does not.

    No gate is needed for that: float16 overflow (activations past 65504) makes a variant
    useless whatever the limits, and it must not be shipped quietly.

    Raises:
        BrokenVariant: naming how many samples broke.
    """
    if not report.non_finite_samples:
        return
    advice = (
        "activations overflow float16's range (65504); keep fp32 or use int8"
        if variant == "fp16"
        else "keep fp32 or try another precision"
    )
    raise BrokenVariant(
        f"{variant} computes inf/NaN on {report.non_finite_samples} of {report.samples} "
        f"samples where fp32 does not: {advice}"
    )


@dataclass(frozen=True)
class Gate:
    """What a variant must keep to pass."""

    max_accuracy_drop: float | None = None
    """Largest allowed accuracy drop (labels) or top-1 disagreement (no labels), as a fraction."""
    min_cosine: float | None = None
    """Smallest allowed mean cosine similarity to the reference."""

    def check(self, report: ValidationReport, variant: str = "variant") -> None:
        """Raise `AccuracyGateFailed` when `report` breaks a limit."""
        if self.min_cosine is not None and not report.cosine >= self.min_cosine:  # NaN fails
            raise AccuracyGateFailed(
                "cosine" if report.similarity == "cosine" else "label_agreement",
                report.cosine,
                self.min_cosine,
                f"{variant} fails the gate: {_similarity(report)} {report.cosine:.4f} is below "
                f"the required {self.min_cosine:.4f} "
                f"(short by {self.min_cosine - report.cosine:.4f})",
            )
        if self.max_accuracy_drop is not None:
            drop = report.accuracy_drop
            if drop is None:
                raise DataError(
                    "--max-accuracy-drop needs labels in the validation data or a classifier "
                    "output; for other models use --min-cosine"
                )
            metric = (
                "accuracy_drop" if report.accuracy is not None
                else "top1_disagreement" if report.similarity == "cosine"
                else "label_disagreement"
            )  # fmt: skip
            if drop > self.max_accuracy_drop:
                raise AccuracyGateFailed(
                    metric,
                    drop,
                    self.max_accuracy_drop,
                    f"{variant} fails the gate: {metric.replace('_', ' ')} {drop * 100:.2f} pt "
                    f"exceeds the allowed {self.max_accuracy_drop * 100:.2f} pt "
                    f"(over by {(drop - self.max_accuracy_drop) * 100:.2f} pt)",
                )


def _similarity(report: ValidationReport) -> str:
    if report.similarity == "cosine":
        return "cosine similarity"
    return f"{report.similarity} (labels have no cosine: --min-cosine holds the share equal)"
