"""What tuning measured on a kind of board, as evidence for the next plan on that kind.

Tuning (`deploy --tune`) measures the planner's candidates on a board and stores every trial
under the board's fingerprint (its kind: CPU model, cores, ISA, runtime). The rules are a
prior; a measurement on the same kind of board beats them. For a new model the planner looks
for measured models that are alike in what decides int8's worth (measured in this model's
int8 flavour, an int8 intensity, MACs per quantized value, within `ALIKE` of this model's,
and multiply-adds within `ALIKE_SIZE`) and:

- precision: where int8 ran slower than fp32 on them (the median ratio of their best p50s at
  or above `SLOWER`), fp32 goes first; where it ran clearly faster (at or below `FASTER`),
  int8 goes first; the reason names the measured models and the ratio;
- threads: where more threads did not pay on a model with at least as much work per weighted
  node (the higher count's p50 at or above `NO_GAIN` of the lower's), a plan of at least
  the higher count stops at the lower one; where more threads paid (`GAIN`) on a model with no
  more work per node than this one's, a count the rules had cut is raised back to it.

Pure: the caller reads the tunings of the board's fingerprint from the state database
(edgeopt.host.workflows.plans.experience) and passes them in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "ALIKE", "ALIKE_SIZE", "FASTER", "GAIN", "NO_GAIN", "SLOWER", "Measured",
    "precision_evidence", "thread_evidence",
]  # fmt: skip

ALIKE = 1.6
"""Two models are alike for int8 when their intensities are within this factor..."""
ALIKE_SIZE = 8.0
"""... and their multiply-adds within this one: a tiny model's int8 says nothing of a big one's
(the digits CNN's int8 ran 1.4x slower than fp32, the CRNN's 1.5x faster, at alike
intensities)."""
SLOWER = 1.0
"""int8/fp32 p50 ratio at or above which int8 is taken as slower on that kind of board."""
FASTER = 0.9
"""Ratio at or below which int8 is taken as faster."""
NO_GAIN = 1.0
"""p50(more threads) / p50(fewer threads) at or above which more threads did not pay (ran no
faster: a 4 % gain is still a gain)."""
GAIN = 0.95
"""The ratio at or below which more threads paid enough to raise a count the rules cut."""


@dataclass(frozen=True)
class Measured:
    """One model tuned on a board of the kind being planned for."""

    model: str
    """Its name, for the reasons."""
    traits: Any
    """Its `ModelTraits` (typed Any: this module does not import the planner)."""
    p50_ms: Mapping[tuple[str, int], float]
    """(precision, threads) → the p50 tuning measured (passing candidates only)."""

    @classmethod
    def from_tuning(cls, row: Mapping[str, Any], traits_type: type) -> Measured | None:
        """From a stored tuning (edgeopt.host.store.tunings); None when it has no traits."""
        stored = row.get("traits") or {}
        known = {f.name for f in fields(traits_type)}
        values = {k: v for k, v in (stored.get("model") or {}).items() if k in known}
        if not values:
            return None  # written before tunings kept the model's traits
        timings: dict[tuple[str, int], float] = {}
        for trial in row.get("trials") or ():
            plan, p50 = trial.get("plan") or {}, trial.get("p50_ms")
            if plan.get("keep_float"):
                continue  # a mixed variant says nothing of its precision whole
            if trial.get("passed") and isinstance(p50, (int, float)) and p50 > 0:
                key = (str(plan.get("precision")), int(plan.get("intra_op_threads") or 0))
                timings[key] = min(float(p50), timings.get(key, math.inf))
        if not timings:
            return None
        return cls(str(stored.get("name") or row.get("model_digest", "")[:12]),
                   traits_type(**values), timings)  # fmt: skip


def _best(m: Measured, precision: str) -> float | None:
    found = [p50 for (p, _), p50 in m.p50_ms.items() if p == precision]
    return min(found) if found else None


def _alike(a: Any, b: Any) -> bool:
    if min(a.int8_intensity, b.int8_intensity, a.macs, b.macs) <= 0:
        return False  # what decides is unknown for one of them
    return (abs(math.log(a.int8_intensity / b.int8_intensity)) <= math.log(ALIKE)
            and abs(math.log(a.macs / b.macs)) <= math.log(ALIKE_SIZE))  # fmt: skip


def precision_evidence(
    model: Any, int8: str, experience: Sequence[Measured]
) -> tuple[float, str] | None:
    """(int8/fp32 ratio, reason) from alike models measured on this kind of board, or None."""
    ratios, names = [], []
    for m in experience:
        if not _alike(model, m.traits):
            continue
        q, f = _best(m, int8), _best(m, "fp32")
        if q is not None and f is not None:
            ratios.append(q / f)
            names.append(f"{m.model} ({m.traits.int8_intensity:.0f} MACs per value)")
    if not ratios:
        return None
    ratio = statistics.median(ratios)
    if FASTER < ratio < SLOWER:
        return None
    how = f"{ratio:.2f}x the time of fp32" if ratio >= 1 else f"{1 / ratio:.2f}x faster than fp32"
    return ratio, (
        f"measured on this kind of board: {int8} ran {how} on {', '.join(names)}, alike to this "
        f"model ({model.int8_intensity:.0f} MACs per value)"
    )


def thread_evidence(
    model: Any, threads: int, ceiling: int, experience: Sequence[Measured]
) -> tuple[int, str] | None:
    """(threads, reason) where measurements on this kind say otherwise than `threads`.

    `ceiling` is the most the board allows (its cores, or what the user allows).
    """
    if not model.parallel_macs or not model.weighted_nodes:
        return None
    work = model.parallel_macs / model.weighted_nodes
    stop: tuple[int, str] | None = None
    raise_to: tuple[int, str] | None = None
    for m in experience:
        t = m.traits
        if not t.parallel_macs or not t.weighted_nodes:
            continue
        their = t.parallel_macs / t.weighted_nodes
        for (precision, low), p_low in m.p50_ms.items():
            for (other, high), p_high in m.p50_ms.items():
                if other != precision or high <= low:
                    continue
                ratio = p_high / p_low
                why = (f"on this kind of board {m.model} ({their / 1e6:.1f} M MACs per node, this "
                       f"model {work / 1e6:.1f} M) ran {ratio:.2f}x the time on {high} threads as "
                       f"on {low} ({precision}), measured")  # fmt: skip
                stops = ratio >= NO_GAIN and their >= work and low < threads and high <= threads
                if stops and (stop is None or low < stop[0]):
                    stop = (low, f"{low} threads: {why}")
                raises = ratio <= GAIN and their <= work and threads < high <= ceiling
                if raises and (raise_to is None or high > raise_to[0]):
                    raise_to = (high, f"{high} threads: {why}")
    return stop or raise_to
