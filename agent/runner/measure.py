"""What the child measures: timed runs, the median's confidence interval, the conditions.

A benchmark's conditions (governor, temperatures, load, usable CPUs, a Raspberry Pi's throttle
flags) are read through `edgeopt.boardfacts`, as the agent's capabilities are: one reader of
/proc and /sys for both.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "CpuClock",
    "block_medians",
    "conditions",
    "conditions_record",
    "latency_stats",
    "median_ci",
    "rss_bytes",
    "timed_runs",
]


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process, from /proc (0 where unreadable).

    Called every 16 timed runs, and by the agent for ListModels: it reads the one file itself
    (boardfacts reads board facts, not a process's memory).
    """
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def timed_runs(
    session: Any,
    feeds: dict[str, Any],
    limits: tuple[int, int, float, float],
    emit: Callable[[dict[str, Any]], None],
) -> tuple[list[float], int, str]:
    """Run until the median's CI is tight enough, or the budget or count runs out.

    Returns the latencies (ms), the peak RSS seen, and why it stopped.
    """
    min_repeats, max_repeats, target, budget = limits
    samples: list[float] = []
    peak = rss_bytes()
    began = last_emit = time.perf_counter()
    while len(samples) < max_repeats:
        t0 = time.perf_counter()
        session.run(None, feeds)
        now = time.perf_counter()
        samples.append((now - t0) * 1e3)
        n = len(samples)
        if n % 16 == 0:
            peak = max(peak, rss_bytes())
        if n >= min_repeats and (n < 200 or n % 10 == 0):
            low, high, median = median_ci(samples)
            if median > 0 and (high - low) / 2 / median <= target:
                return samples, peak, "target_ci"
        if now - began >= budget and n >= min(min_repeats, 3):
            return samples, peak, "max_seconds"
        if now - last_emit >= 0.5:
            low, high, median = median_ci(samples)
            emit({"repeats": n, "elapsed_s": now - began, "p50_ms": median,
                  "ci_relative": (high - low) / 2 / median if median else 0.0})  # fmt: skip
            last_emit = now
    return samples, peak, "max_repeats"


def median_ci(samples: list[float]) -> tuple[float, float, float]:
    """(low, high, median): the 95 % confidence interval of the median.

    From order statistics (ranks n/2 -+ 1.96 sqrt(n)/2): distribution-free, which latency
    samples (skewed, with a long tail) need.
    """
    ordered = sorted(samples)
    n = len(ordered)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    half = 1.96 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half) - 1)
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return ordered[low], ordered[high], median


def latency_stats(samples: list[float]) -> dict[str, Any]:
    """agent.proto's LatencyStats of timed runs (ms)."""
    import numpy as np  # noqa: PLC0415

    array = np.asarray(samples)
    low, high, median = median_ci(samples)
    return {
        "samples": len(samples), "min_ms": float(array.min()), "p50_ms": median,
        "p90_ms": float(np.percentile(array, 90)), "p99_ms": float(np.percentile(array, 99)),
        "mean_ms": float(array.mean()),
        "std_ms": float(array.std(ddof=1)) if len(samples) > 1 else 0.0,
        "ci_low_ms": low, "ci_high_ms": high,
    }  # fmt: skip


def block_medians(samples: list[float]) -> list[float]:
    """The medians of consecutive blocks of about `paired.BLOCK_SECONDS` of timed runs.

    What a later two-run comparison reads. A partial last block is dropped; blocks are shorter
    where that would leave fewer than 16 (a run stopped early by its interval target), down to
    one run each.
    """
    import statistics  # noqa: PLC0415

    from edgeopt.proto import paired  # noqa: PLC0415

    if not samples:
        return []
    size = min(paired.block_runs(statistics.median(samples), smallest=1),
               max(1, len(samples) // 16))  # fmt: skip
    return [statistics.median(samples[i:i + size])
            for i in range(0, len(samples) - size + 1, size)]  # fmt: skip


def conditions_record(
    before: dict[str, Any], after: dict[str, Any], others: float
) -> dict[str, Any]:
    """agent.proto's Conditions of a run, from `conditions()` before and after it."""
    import onnxruntime as ort  # noqa: PLC0415

    return {
        "onnxruntime_version": ort.__version__, "cpu_governor": before["governor"],
        "temperatures_before": before["temperatures"],
        "temperatures_after": after["temperatures"],
        "load_average": before["load_average"], "usable_cores": before["usable_cores"],
        "other_cpu_load": others,
        "throttled_before": before["throttled"], "throttled_after": after["throttled"],
    }  # fmt: skip


def conditions() -> dict[str, Any]:
    """What may skew a measurement: governor, temperatures, load, usable CPUs, throttling."""
    from edgeopt.boardfacts import capabilities, thermal  # noqa: PLC0415

    live = capabilities.Sources.live_system()
    governor = thermal.governor(live.read("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))
    load = live.read("proc/loadavg")
    return {
        "governor": governor,
        "temperatures": [
            {"zone": t.zone, "type": t.type, "celsius": t.celsius}
            for t in thermal.temperatures(capabilities.thermal_zones(live))
        ],
        "load_average": float(load.split()[0]) if load else 0.0,
        "usable_cores": len(os.sched_getaffinity(0)),
        "throttled": capabilities.throttle_flags(live),
    }


class CpuClock:
    """CPU time other processes use from now on, as a share of the whole machine."""

    def __init__(self) -> None:
        self.start = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        """(wall s, busy s of all CPUs, this process's CPU s), or None without /proc/stat."""
        from edgeopt.boardfacts.capabilities import Sources  # noqa: PLC0415

        text = Sources.live_system().read("proc/stat")
        if not text or not text.startswith("cpu "):
            return None
        ticks = [int(v) for v in text.splitlines()[0].split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        hz = os.sysconf("SC_CLK_TCK")
        own = os.times()
        return time.monotonic(), (sum(ticks[:8]) - idle) / hz, own.user + own.system

    def others(self) -> float:
        """Share (0 to 1) of all CPUs' time used by other processes since creation."""
        end = self._now()
        if self.start is None or end is None:
            return 0.0
        wall = end[0] - self.start[0]
        cpus = os.cpu_count() or 1
        if wall <= 0:
            return 0.0
        other = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return min(1.0, max(0.0, other / (wall * cpus)))
