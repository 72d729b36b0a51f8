"""Latency of a model on this host, for choosing between variants before any board is involved.

Size and cosine do not say which variant is faster: static int8 ran 0.76x of fp32 on a 13 us CNN
and 1.3x on a detector on the same machine. `measure_host` runs every model of a set on the same
feed, each alone in its turn, block by block (so that a slow spell of this shared machine hits
all of them alike), discards warm-up runs, and reports medians; ratios between models of one
call are the figures to trust, absolute times only describe this host. The board's own
measurement (the agent's Benchmark) is what a deployment decides on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.host.compress.runtime import session_options
from edgeopt.host.errors import CompressionError

__all__ = ["BLOCKS", "HostLatency", "host_cpu", "measure_host"]


@dataclass(frozen=True)
class HostLatency:
    """One model's latency on this host."""

    median_ms: float
    """Median of the timed runs, milliseconds."""
    runs: int
    """Timed runs (after warm-up)."""
    threads: int
    """Intra-op threads of the session."""


BLOCKS = 5
"""Blocks a measurement is cut into: each model is timed alone for a block, in turn."""


def measure_host(
    models: Sequence[Path],
    feed: dict[str, np.ndarray],
    *,
    threads: int = 1,
    warmup: int = 3,
    rounds: int = 30,
    budget_s: float = 20.0,
) -> list[HostLatency]:
    """Median latency of each model on `feed`, in interleaved blocks; stops early past `budget_s`.

    The `rounds` runs of each model are cut into `BLOCKS` blocks, and the models take turns
    block by block (the order reversed every other block), so that a slow spell of this shared
    machine hits them all alike. Each block opens its model's session alone and closes it
    after: ONNX Runtime's intra-op threads spin for a while after every run, and with several
    multi-threaded sessions alive the idle ones' spinning took the CPUs from the one being
    timed (a 2-thread sweep read YOLOv8n 1.93x slower than 1 thread where a lone session ran
    0.64x; turning spinning off instead left PP-OCR's detector 1.31x off, its many small ops
    paying the threads' wake-up; benchmarks/host_timing.py has the figures). The first block
    warms each session up `warmup` times, later ones once.

    Raises:
        CompressionError: a model does not load or run on the feed.
    """
    import onnxruntime as ort  # noqa: PLC0415

    def opened(path: Path) -> object:
        try:
            return ort.InferenceSession(
                str(path), session_options(threads=threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise _failed(path, exc) from exc

    per_block = max(1, -(-rounds // BLOCKS))
    samples: list[list[float]] = [[] for _ in models]
    deadline = time.perf_counter() + budget_s
    block = 0
    while min(len(t) for t in samples) < rounds:
        order = list(enumerate(models))
        for index, path in order[::-1] if block % 2 else order:
            session: Any = opened(path)
            try:
                for _ in range(warmup if block == 0 else 1):
                    session.run(None, feed)
                for _ in range(min(per_block, rounds - len(samples[index]))):
                    start = time.perf_counter()
                    session.run(None, feed)
                    samples[index].append((time.perf_counter() - start) * 1e3)
            except Exception as exc:
                raise _failed(path, exc) from exc
            del session
        block += 1
        if block >= 2 and time.perf_counter() > deadline:
            break
    return [HostLatency(statistics.median(t), len(t), threads) for t in samples]


def _failed(path: Path, exc: Exception) -> CompressionError:
    message = (str(exc).strip().splitlines() or [""])[-1][:300]
    return CompressionError(f"timing {path.name} failed: {message}")


def host_cpu() -> str:
    """This host's CPU in a few words, for labelling figures: "AMD EPYC, 2 CPUs, AVX-512 VNNI".

    The machine a figure came from changes between runs (AVX2 one day, AVX-512 VNNI the next),
    and int8 speed depends on it, so every latency printed says where it was measured.
    """
    import os  # noqa: PLC0415
    import platform  # noqa: PLC0415

    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and value.strip():
                    name = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    isa = (
        "AVX-512 VNNI" if "avx512_vnni" in flags
        else "AVX-VNNI" if "avx_vnni" in flags
        else "AVX2, no VNNI" if "avx2" in flags
        else "dotprod" if "asimddp" in flags
        else "NEON, no dotprod" if "asimd" in flags
        else platform.machine()
    )  # fmt: skip
    return f"{name}, {usable} CPUs, {isa}"
