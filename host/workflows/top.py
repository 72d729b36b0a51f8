"""`edgeopt top`: how the fleet's models run, refreshed: one ListModels per board per refresh.

Each board answers with its active models and versions, what it served since its agent started
(requests, errors, a cumulative latency histogram), its temperatures and, on a Raspberry Pi,
what its firmware says holds now (under-voltage, throttling). Rates and the median latency are
those of the interval between two refreshes, from the differences of the counters; the median
is read off the histogram as Prometheus's `histogram_quantile` does (linear within a bucket). A
board that restarted (its counters went down) shows its counts since the restart.

Nothing a board says is trusted beyond its shape: counts that are not cumulative, bounds that
do not rise, or a histogram of another length give no median rather than a wrong one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from edgeopt.host.config.inventory import Device
from edgeopt.host.transport.client import AgentClient, ClientConfig
from edgeopt.host.transport.fanout import on_agents

__all__ = ["Board", "ModelRow", "Snapshot", "median_from", "take", "rows"]


@dataclass(frozen=True)
class ModelRow:
    """One model on one board between two refreshes."""

    device: str
    model: str
    version: str
    rate: float | None
    """Inferences per second over the interval (None on the first snapshot)."""
    p50_ms: float | None
    errors: int
    """Errors in the interval (since the agent started, on the first snapshot)."""


@dataclass(frozen=True)
class Board:
    """One board in one snapshot."""

    device: str
    reachable: bool
    error: str = ""
    listing: Any = None
    """The board's ModelList reply (read through its attributes); None when unreachable."""
    taken: float = 0.0

    @property
    def hottest(self) -> float | None:
        """The highest temperature the board reported, if any."""
        temps = [t.celsius for t in self.listing.temperatures] if self.listing else []
        return max(temps) if temps else None


@dataclass
class Snapshot:
    """Every selected board at one moment."""

    boards: dict[str, Board] = field(default_factory=dict)
    seconds: float = 0.0
    """How long this refresh took (wall clock)."""


async def take(devices: Sequence[Device], config: ClientConfig, parallel: int = 64) -> Snapshot:
    """Ask every board, concurrently; a silent one is unreachable and blocks nothing."""
    start = time.monotonic()
    answers = await on_agents(devices, AgentClient.list_models, config, parallel=parallel)
    snap = Snapshot()
    for answer in answers:
        name = answer.device.name
        if answer.value is None:
            snap.boards[name] = Board(name, False, answer.reason)
        else:
            snap.boards[name] = Board(name, True, "", answer.value, time.monotonic())
    snap.seconds = time.monotonic() - start
    return snap


def median_from(bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The median of a cumulative histogram (counts[i] at or below bounds[i], then the total).

    None for an empty or malformed one; the last finite bound when the median lies beyond it.
    """
    if len(counts) != len(bounds) + 1 or not counts or counts[-1] <= 0:
        return None
    if any(b <= a for a, b in pairwise(bounds)) or any(b < a for a, b in pairwise(counts)):
        return None
    if any(not math.isfinite(b) for b in bounds):
        return None
    rank = counts[-1] / 2
    below, low = 0, 0.0
    for bound, count in zip(bounds, counts[:-1], strict=True):
        if count >= rank:
            inside = count - below
            return low + (bound - low) * ((rank - below) / inside if inside else 1.0)
        below, low = count, bound
    return bounds[-1] if bounds else None


def _delta(now: Any, before: Any) -> tuple[
    int, list[int], int
]:  # fmt: skip
    """(requests, cumulative counts, errors) in the interval; all of `now` after a restart."""
    if before is None or before.requests > now.requests or list(before.bounds_ms) != list(
        now.bounds_ms
    ) or len(before.counts) != len(now.counts):  # fmt: skip
        return now.requests, list(now.counts), now.errors
    counts = [a - b for a, b in zip(now.counts, before.counts, strict=True)]
    return now.requests - before.requests, counts, now.errors - before.errors


def rows(now: Snapshot, before: Snapshot | None) -> list[ModelRow]:
    """Each board's active models, with the interval's rate, median and errors."""
    out = []
    for name, board in sorted(now.boards.items()):
        if board.listing is None:
            continue
        prior = before.boards.get(name) if before else None
        old = {m.name: m for m in prior.listing.models} if prior and prior.listing else {}
        span = board.taken - prior.taken if prior and prior.listing else 0.0
        for model in board.listing.models:
            if not model.active_version:
                continue
            was = old[model.name].infer if model.name in old else None
            requests, counts, errors = _delta(model.infer, was)
            rate = requests / span if span > 0 and was is not None else None
            median = median_from(list(model.infer.bounds_ms), counts) if requests else None
            out.append(ModelRow(name, model.name, model.active_version, rate, median, errors))
    return out
