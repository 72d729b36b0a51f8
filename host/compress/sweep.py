"""`sweep`: every precision of a model made, checked against the gate, and timed on this host.

A precision that cannot be made, changes nothing or fails the gate is a row that says why, not
the end of the sweep. With `--keep-float auto` (the request's `keep_float_search`), a precision
that fails the gate gets a mixed row after it: the fewest nodes kept float that pass
(`sensitivity.search`); with `--keep-float N`, every precision that can keep nodes float gets
one with its top N. With threads, the variants made are timed on this host, interleaved, and
compared with fp32 measured in the same run (`edgeopt compress --sweep`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.cache import ArtifactCache
from edgeopt.host.compress.latency import HostLatency, measure_host
from edgeopt.host.compress.quiet import OutputLog, captured
from edgeopt.host.compress.sensitivity import SEARCHED, search
from edgeopt.host.compress.validate import (
    Gate,
)
from edgeopt.host.compress.workflow import CompressionReport, CompressRequest, compress
from edgeopt.host.errors import (
    AccuracyGateFailed,
    DataError,
    EdgeoptError,
    NothingQuantized,
)
from edgeopt.proto.plan import PRECISIONS, Precision

__all__ = ["SweepRow", "SweepStatus", "sweep"]


SweepStatus = Literal["ok", "rejected", "no change", "not made"]


@dataclass(frozen=True)
class SweepRow:
    """One precision of a sweep: its report, or why it was not made or was rejected."""

    precision: Precision
    """The precision tried."""
    report: CompressionReport | None
    """Its report, when it was made (a gate failure still has one)."""
    rejected: str | None = None
    """Why it failed, was rejected, or changed nothing."""
    status: SweepStatus = "ok"
    """ok; rejected (the gate); no change (no weight quantized); not made (an error)."""
    host_latency: dict[int, HostLatency] = field(default_factory=dict)
    """Threads → latency on this host, when measured."""
    host_ratio: dict[int, float] = field(default_factory=dict)
    """Threads → latency over fp32's, measured in the same interleaved run."""
    kept: tuple[str, ...] | None = None
    """A mixed row: the nodes kept float (None: the precision whole)."""

    @property
    def label(self) -> str:
        """The precision, and for a mixed row how many nodes stayed float."""
        if self.kept is None:
            return self.precision
        return f"{self.precision} +{len(self.kept)} float"


def sweep(
    request: CompressRequest,
    cache: ArtifactCache | None = None,
    log: OutputLog | None = None,
    threads: tuple[int, ...] = (),
) -> list[SweepRow]:
    """Try every precision; a precision that cannot be made or fails the gate is noted, not fatal.

    With `threads`, every variant made (fp32 included) is also timed on this host at each
    thread count, interleaved, on one sample of the validation data (else made-up inputs of the
    data's or default dims); ratios to fp32 come from the same run. Writes no output file; the
    artifacts stay in the cache.
    """
    cache = cache or ArtifactCache()
    log = log or OutputLog()
    rows = []
    for precision in PRECISIONS:
        if precision == "int8-static" and request.calibration is None:
            rows.append(SweepRow(precision, None, "needs --calibration data", "not made"))
            continue
        attempt = CompressRequest(
            **{**request.__dict__, "precision": precision, "output": None, "gate": Gate()}
        )
        try:
            report = compress(attempt, cache, log)
        except NothingQuantized as exc:
            rows.append(SweepRow(precision, None, str(exc), "no change"))
            continue
        except EdgeoptError as exc:
            rows.append(SweepRow(precision, None, str(exc), "not made"))
            continue
        except Exception as exc:  # one precision's failure must not end the sweep
            rows.append(SweepRow(precision, None, f"{type(exc).__name__}: {exc}", "not made"))
            continue
        rejected = None
        if report.validation is not None:
            try:
                request.gate.check(report.validation, precision)
            except (AccuracyGateFailed, DataError) as exc:
                rejected = str(exc)
        rows.append(SweepRow(precision, report, rejected, "rejected" if rejected else "ok"))
        count = request.keep_float_search
        if precision in SEARCHED and (count not in ("", "auto") or (count == "auto" and rejected)):
            rows.append(_mixed_row(dataclasses.replace(attempt, gate=request.gate), count, log))
    if threads:
        with captured(log, f"sweep latency {request.model}"):
            rows = _time_rows(request, rows, threads)
    return rows


def _mixed_row(request: CompressRequest, count: str, log: OutputLog) -> SweepRow:
    """The precision with nodes kept float (`--keep-float N|auto`), or why there is none."""
    try:
        found = search(request, count, log)
    except AccuracyGateFailed as exc:
        return SweepRow(request.precision, None, str(exc), "rejected", kept=())
    except EdgeoptError as exc:
        return SweepRow(request.precision, None, str(exc), "not made", kept=())
    report = found.report
    rejected = None
    if report.validation is not None:
        try:
            request.gate.check(report.validation, request.precision)
        except (AccuracyGateFailed, DataError) as exc:
            rejected = str(exc)
    return SweepRow(request.precision, report, rejected, "rejected" if rejected else "ok",
                    kept=found.kept)  # fmt: skip


def _time_rows(
    request: CompressRequest, rows: list[SweepRow], threads: tuple[int, ...]
) -> list[SweepRow]:
    made = [r for r in rows if r.report is not None]
    reference = next((r for r in made if r.precision == "fp32"), None)
    if reference is None or reference.report is None:
        return rows
    model = onnx_model.load(reference.report.artifact, check=False)
    data = (
        datasets.load(request.validation, model, purpose="validation")
        if request.validation is not None
        else datasets.synthesize(model, dict(reference.report.input_dims))
    )
    feed = next(data.batches(data.fixed_batch or 1))
    timed: dict[int, dict[int, HostLatency]] = {id(r): {} for r in made}
    for count in threads:
        results = measure_host([r.report.artifact for r in made if r.report], feed, threads=count)
        for row, result in zip(made, results, strict=True):
            timed[id(row)][count] = result
    out = []
    for row in rows:
        if id(row) not in timed:
            out.append(row)
            continue
        latency = timed[id(row)]
        ratio = {
            t: latency[t].median_ms / timed[id(reference)][t].median_ms
            for t in latency
            if timed[id(reference)][t].median_ms > 0
        }
        out.append(dataclasses.replace(row, host_latency=latency, host_ratio=ratio))
    return out
