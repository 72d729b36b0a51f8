"""Host timings that do not disturb themselves: `compress --sweep --threads` against a lone session.

    python benchmarks/host_timing.py [--reps 5] [--rounds 20]      (or `make bench`)

`compress --sweep --threads 1,2` times every variant on this host, taking turns, so that a
slow spell of a shared machine hits them all alike (`edgeopt.host.compress.latency.measure_host`).
ONNX Runtime's intra-op thread pools spin for a while after each run; with several 2-thread
sessions alive, the idle ones spun on the CPUs the timed one needed, and the sweep's 2-thread
column read slower than its 1-thread one. measure_host now opens each model's session alone for
a block of runs, the models taking turns block by block.

For two mobile CNNs of the public corpus (PP-OCRv4's detector, a MobileNetV3 backbone with
depthwise convs, and YOLOv8n), at 1 and 2 threads, this measures in one run:
- lone: one session alone, ONNX Runtime's defaults (spinning on): what a board's runner does;
- turns, spinning: three sessions of the model alive, taken in turn run by run (the old sweep);
- turns, no spinning: the same with spinning turned off (the other cure, rejected by these
  figures: models of many small ops pay the threads' wake-up);
- blocks alone: three copies through measure_host (the sweep now).
Each is the median of `rounds` runs; the whole set is repeated `reps` times, the four ways
alternating, and the table gives the median of the repeats and the 2T/1T ratio of each way.
The ratio to trust is the blocks-alone one against the lone one (same run, same machine).
Writes its table into benchmarks/RESULTS.md between the host-timing markers.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress.latency import host_cpu, measure_host  # noqa: E402
from edgeopt.host.compress.runtime import session_options  # noqa: E402
from tests.corpus import CORPUS, fetch  # noqa: E402

MODELS = ("ppocr-det", "yolov8n-nudenet")
SESSIONS = 3
"""Sessions alive at once in a sweep: fp32 and two variants, say."""


def lone(path: Path, feed: dict[str, np.ndarray], threads: int, rounds: int) -> float:
    """Median ms of one session alone, ONNX Runtime's defaults."""
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(path), session_options(threads=threads),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def turns(path: Path, feed: dict[str, np.ndarray], threads: int, rounds: int, *,
          spinning: bool) -> float:  # fmt: skip
    """Median ms of the first of `SESSIONS` sessions alive at once, taken in turn run by run."""
    import onnxruntime as ort  # noqa: PLC0415

    sessions = []
    for _ in range(SESSIONS):
        options: Any = session_options(threads=threads)
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions.append(ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"]))  # fmt: skip
    for s in sessions:
        for _ in range(3):
            s.run(None, feed)
    times = []
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            start = time.perf_counter()
            s.run(None, feed)
            if i == 0:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def blocks_alone(path: Path, feed: dict[str, np.ndarray], threads: int, rounds: int) -> float:
    """Median ms of the first of `SESSIONS` copies through measure_host (the sweep now)."""
    results = measure_host([path] * SESSIONS, feed, threads=threads, rounds=rounds,
                           budget_s=1e9)  # fmt: skip
    return results[0].median_ms


WAYS: dict[str, Callable[[Path, dict[str, np.ndarray], int, int], float]] = {
    "lone": lone,
    "turns, spinning": functools.partial(turns, spinning=True),
    "turns, no spinning": functools.partial(turns, spinning=False),
    "blocks alone": blocks_alone,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    chosen = tuple(m for m in CORPUS if m.key in MODELS)
    paths = fetch(chosen)
    rng = np.random.default_rng(0)
    lines = [
        "## Host timings: sweep sessions against a lone session "
        "(`python benchmarks/host_timing.py`)",
        "",
        f"Machine: {host_cpu()}. Median of {args.rounds} runs, median of {args.reps} repeats "
        f"(the four ways alternating); {SESSIONS} sessions alive in the two 'turns' ways.",
        "",
        "| model | way | 1 thread ms | 2 threads ms | 2T/1T |",
        "|---|---|---|---|---|",
    ]
    for model in chosen:
        feed = {name: rng.random(shape).astype(np.float32)
                for name, (_, shape) in model.inputs.items()}  # fmt: skip
        figures: dict[tuple[str, int], list[float]] = {}
        for rep in range(args.reps):
            order = list(WAYS.items())
            if rep % 2:
                order.reverse()
            for threads in (1, 2):
                for name, way in order:
                    ms = way(paths[model.key], feed, threads, args.rounds)
                    figures.setdefault((name, threads), []).append(ms)
        ratios = {}
        for name in WAYS:
            one = statistics.median(figures[name, 1])
            two = statistics.median(figures[name, 2])
            ratios[name] = two / one
            lines.append(f"| {model.key} | {name} | {one:.2f} | {two:.2f} | {two / one:.2f} |")
        print(model.key, {k: round(v, 2) for k, v in ratios.items()}, flush=True)
        lines.append(
            f"| {model.key} | blocks alone / lone, 2T/1T | | | "
            f"{ratios['blocks alone'] / ratios['lone']:.2f} |"
        )
    print(write_section("host-timing", "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
