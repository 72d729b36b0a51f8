"""What changed between benchmark runs, beyond the run-to-run noise.

Runs that stored their block medians (every run since paired comparisons came; see
edgeopt.proto.paired) are compared block by block: the ratio of the two runs with a 95 %
interval (Hodges-Lehmann shift, Mann-Whitney interval), a change called only when the interval
excludes 1 and the ratio is beyond the threshold, "no change" only when the whole interval lies
within it, and "undecided: too noisy" otherwise, with the smallest change the two runs could
have shown. Older rows (medians alone) keep the older rule: a change is called only when both
tests agree: the 95 % confidence intervals of the two medians do not overlap (the measurements
really differ), and the change is larger than a threshold. The threshold is 5 % or, when the
history holds at least three earlier runs of the case, three times the median change between
its consecutive runs, whichever is larger (both rules): a run's interval only covers the noise
within one session, and a shared or thermally busy board moves more than that between sessions
(benchmarks/fleet.py measured it). Anything else is "no change", and the words say which test
held it back. Cases are matched by device, model (its digest: another model is never "the
previous run"), variant, threads and provider. Two runs stay two sessions: drift between them
is not in either's blocks, which is what the threshold's history noise and, better, `bench
compare-models` (both in one session, interleaved) are for.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edgeopt.proto import paired

__all__ = [
    "NOISE_RUNS",
    "THRESHOLD",
    "Change",
    "case_key",
    "compare",
    "judge",
    "measured",
    "name",
    "noise",
    "timeline",
]

THRESHOLD = 0.05
"""Smallest relative change of the median that is called a change."""
CaseKey = tuple[str, str, str, int, str]
"""How a case is matched across runs: device, model digest, variant, threads, provider."""


@dataclass(frozen=True)
class Change:
    """One case in two runs."""

    key: CaseKey
    """(device, model digest, variant, threads, provider)."""
    before: dict[str, Any]
    after: dict[str, Any]
    verdict: str
    """"slower", "faster" or "no change"."""
    words: str

    @property
    def ratio(self) -> float:
        """p50 after / p50 before."""
        return float(_lat(self.after)["p50_ms"]) / float(_lat(self.before)["p50_ms"])


def _lat(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row["result"]["latency"])


def measured(row: dict[str, Any]) -> bool:
    """The row holds a latency (an ok run)."""
    return bool(row.get("status", "ok") == "ok" and row["result"].get("latency"))


def case_key(row: dict[str, Any]) -> CaseKey:
    """How a state row is matched across runs."""
    return (row["device"], row.get("model_digest") or "", row["precision"],
            int(row.get("threads") or 0), row.get("provider") or "")  # fmt: skip


NOISE_RUNS = 3
"""Earlier consecutive-run changes needed before the history's own noise sets the threshold."""


def noise(rows: Sequence[dict[str, Any]]) -> tuple[float, int]:
    """3 x the median relative change between consecutive runs, and how many changes it saw."""
    p50s = [float(_lat(r)["p50_ms"]) for r in sorted(rows, key=lambda r: r["id"])]
    changes = [abs(b / a - 1) for a, b in itertools.pairwise(p50s) if a > 0]
    if len(changes) < NOISE_RUNS:
        return 0.0, len(changes)
    return 3 * statistics.median(changes), len(changes)


def judge(
    before: dict[str, Any],
    after: dict[str, Any],
    threshold: float = THRESHOLD,
    earlier: Sequence[dict[str, Any]] = (),
) -> tuple[str, str]:
    """(verdict, words) for two measurements of the same case (state rows).

    `earlier`: other runs of the case, whose run-to-run noise may raise the threshold.
    """
    spread, seen = noise(earlier)
    if spread > threshold:
        threshold = spread
        why = f"the {threshold:.0%} run-to-run noise of {seen + 1} earlier runs"
    else:
        why = f"the {threshold:.0%} threshold"
    a, b = _lat(before), _lat(after)
    ratio = b["p50_ms"] / a["p50_ms"]
    change = f"{ratio - 1:+.1%} ({a['p50_ms']:.3g} ms -> {b['p50_ms']:.3g} ms)"
    blocks = _blocks(before), _blocks(after)
    if min(len(blocks[0]), len(blocks[1])) >= paired.MIN_PAIRS:
        return _by_blocks(blocks, change, threshold, why)
    apart = b["ci_low_ms"] > a["ci_high_ms"] or b["ci_high_ms"] < a["ci_low_ms"]
    big = abs(ratio - 1) > threshold
    if apart and big:
        verdict = "slower" if ratio > 1 else "faster"
        return verdict, f"{verdict}: {change}; the 95 % intervals do not overlap"
    if not apart:
        return "no change", f"no change: {change} is within the noise (the intervals overlap)"
    return "no change", f"no change: {change} is real but under {why}"


def _blocks(row: dict[str, Any]) -> list[float]:
    """A row's stored block medians, when they are all usable numbers (else none)."""
    values = row["result"].get("block_ms") or []
    ok = all(isinstance(v, (int, float)) and 0 < v < float("inf") for v in values)
    return [float(v) for v in values] if ok else []


def _by_blocks(
    blocks: tuple[list[float], list[float]], change: str, threshold: float, why: str
) -> tuple[str, str]:
    """(verdict, words) from two runs' block medians (see the module docstring)."""
    found = paired.two_sample(*blocks)
    verdict = paired.verdict(found, threshold)
    interval = (f"ratio {found.ratio:.3f}, 95 % interval {found.low:.3f}-{found.high:.3f} "
                f"from {len(blocks[0])} and {len(blocks[1])} blocks")  # fmt: skip
    if verdict in ("slower", "faster"):
        return verdict, f"{verdict}: {change}; {interval}, beyond {why}"
    if verdict == "no change":
        return verdict, f"no change: {change}; {interval}, within {why}"
    return "undecided", (f"undecided: {change}; too noisy for {why}: {interval}; these runs "
                         f"could show a change of {found.detectable:.1%}")  # fmt: skip


def _ok(rows: Iterable[dict[str, Any]]) -> dict[CaseKey, dict[str, Any]]:
    """The newest ok row per case."""
    out: dict[CaseKey, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        if measured(row):
            out[case_key(row)] = row
    return out


def compare(
    before: Sequence[dict[str, Any]],
    after: Sequence[dict[str, Any]],
    threshold: float = THRESHOLD,
    history: Sequence[dict[str, Any]] = (),
) -> tuple[list[Change], list[str]]:
    """Changes between two runs' rows, and the cases only one of them measured (in words).

    `history`: rows of other runs (any), whose same cases measured before the first run give
    the run-to-run noise.
    """
    a, b = _ok(before), _ok(after)
    changes = []
    for key in sorted(a.keys() & b.keys()):
        earlier = [r for r in history
                   if case_key(r) == key and r["id"] < a[key]["id"] and measured(r)]  # fmt: skip
        verdict, words = judge(a[key], b[key], threshold, [*earlier, a[key]])
        changes.append(Change(key, a[key], b[key], verdict, words))
    alone = [f"{name(k)}: measured only in the first run" for k in sorted(a.keys() - b.keys())]
    alone += [f"{name(k)}: measured only in the second run" for k in sorted(b.keys() - a.keys())]
    return changes, alone


def timeline(
    rows: Sequence[dict[str, Any]], threshold: float = THRESHOLD
) -> list[tuple[dict[str, Any], str]]:
    """Each ok row oldest first, with what changed since the previous run of the same case."""
    seen: dict[CaseKey, list[dict[str, Any]]] = {}
    out = []
    for row in sorted(rows, key=lambda r: r["id"]):
        if not measured(row):
            continue
        key = case_key(row)
        earlier = seen.setdefault(key, [])
        words = "first run" if not earlier else judge(earlier[-1], row, threshold, earlier)[1]
        out.append((row, words))
        earlier.append(row)
    return out


def name(key: CaseKey) -> str:
    """A case key in words: "pi4 int8-static 2T CPU" (the model is a column of its own)."""
    device, _model, variant, threads, provider = key
    ep = provider.removesuffix("ExecutionProvider") or "CPU"
    return f"{device} {variant} {threads}T {ep}"
