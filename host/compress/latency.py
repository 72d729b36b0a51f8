"""Latency of a model on this host, for choosing between variants before any board is involved.

Size and cosine do not say which variant is faster: static int8 ran 0.76x of fp32 on a 13 us CNN
and 1.3x on a detector on the same machine. `measure_host` runs every model of a set on the same
feed, interleaved round by round (so that a slow spell of this shared machine hits all of them
alike), discards warm-up runs, and reports medians; ratios between models of one call are the
figures to trust, absolute times only describe this host. The board's own measurement (the
agent's Benchmark) is what a deployment decides on.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.host.compress.runtime import session_options
from edgeopt.host.errors import CompressionError

__all__ = ["HostLatency", "host_cpu", "measure_host"]


@dataclass(frozen=True)
class HostLatency:
    """One model's latency on this host."""

    median_ms: float
    """Median of the timed runs, milliseconds."""
    runs: int
    """Timed runs (after warm-up)."""
    threads: int
    """Intra-op threads of the session."""


def measure_host(
    models: Sequence[Path],
    feed: dict[str, np.ndarray],
    *,
    threads: int = 1,
    warmup: int = 3,
    rounds: int = 30,
    budget_s: float = 20.0,
) -> list[HostLatency]:
    """Median latency of each model on `feed`, interleaved; stops early past `budget_s`.

    Raises:
        CompressionError: a model does not load or run on the feed.
    """
    import onnxruntime as ort  # noqa: PLC0415

    sessions = []
    for path in models:
        try:
            session = ort.InferenceSession(
                str(path), session_options(threads=threads), providers=["CPUExecutionProvider"]
            )
            for _ in range(warmup):
                session.run(None, feed)
        except Exception as exc:
            message = (str(exc).strip().splitlines() or [""])[-1][:300]
            raise CompressionError(f"timing {path.name} failed: {message}") from exc
        sessions.append(session)
    samples: list[list[float]] = [[] for _ in sessions]
    deadline = time.perf_counter() + budget_s
    for done in range(rounds):
        for session, times in zip(sessions, samples, strict=True):
            start = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - start) * 1e3)
        if done >= 4 and time.perf_counter() > deadline:
            break
    return [HostLatency(statistics.median(t), len(t), threads) for t in samples]


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
