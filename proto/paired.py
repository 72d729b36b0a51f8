"""Paired latency comparisons: two models measured in alternating blocks, and what the blocks say.

A comparison measures model A and model B on one board in one runner, in short blocks that
alternate (A B, B A, ... the order of each pair drawn at random), so that a slow spell of the
board (a thermal step, another process, a frequency change) hits both sides of the pairs it
falls in: randomized multiple interleaved trials (Abedi and Brecht, ICPE 2017), duet
benchmarking (Bulej et al., 2020). Each block gives its median; each pair gives the log-ratio
log(B / A) of its two medians.

The estimate is the Hodges-Lehmann estimator of those log-ratios (the median of their Walsh
averages) with the Wilcoxon signed-rank 95 % interval: distribution-free for pair differences
that are symmetric (as any A/A comparison's are), robust to a pair hit by a hiccup where a
mean would not be, and nearly as tight as a t interval when the noise is normal. It is exp'd
back to a ratio B/A.

The verdict needs two things, as criterion.rs's noise threshold does: a change is called
only when the interval excludes 1 and the estimate is beyond the threshold; "no change" is
said only when the whole interval lies within the threshold (an equivalence test), so that a
run too noisy to see a change of the threshold's size says "undecided" instead. Every result
carries the minimum detectable change: the change this run would have found 80 % of the time
(2.8 standard errors, from the interval's width).

Shared by the agent's runner (its stopping rule) and the host, which recomputes everything
from the blocks the board sent and trusts no estimate a board prints. Python 3.8 and numpy:
the agent's install has nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "MAX_PAIRS",
    "MIN_PAIRS",
    "Estimate",
    "block_runs",
    "estimate",
    "two_sample",
    "verdict",
]

Z95 = 1.959963984540054
"""Two-sided 95 % normal quantile."""
Z80 = 0.8416212335729143
"""One-sided 80 % power quantile."""
MIN_PAIRS = 6
"""Fewer pairs than this have no 95 % signed-rank interval narrower than their whole range."""
MAX_PAIRS = 1500
"""Block pairs of one comparison at most: the interval holds n(n+1)/2 Walsh averages (9 MB)."""
BLOCK_SECONDS = 0.05
"""A block lasts about this long: short enough to alternate faster than a board's slow spells
(seconds: thermal steps, other processes' bursts), long enough for its median to mean something."""


def block_runs(run_ms: float, smallest: int = 3, largest: int = 1000) -> int:
    """Runs per block for a model whose one run takes `run_ms` (about `BLOCK_SECONDS` a block)."""
    if not run_ms > 0:
        return largest
    return int(min(largest, max(smallest, math.ceil(BLOCK_SECONDS * 1e3 / run_ms))))


@dataclass(frozen=True)
class Estimate:
    """B/A from paired (or two runs') blocks."""

    ratio: float
    """B / A (1.10: B 10 % slower)."""
    low: float
    high: float
    """The ratio's 95 % interval (nan with too few blocks)."""
    pairs: int
    """Block pairs (paired), or the smaller side's blocks (two runs)."""

    @property
    def half_width(self) -> float:
        """Half the interval's width, relative to the ratio (inf when unknown)."""
        if not (self.low > 0 and self.high > 0):
            return math.inf
        return (math.log(self.high) - math.log(self.low)) / 2

    @property
    def detectable(self) -> float:
        """The smallest change this run would detect 80 % of the time (0.03: 3 %; inf unknown).

        2.8 standard errors (1.96 for the 95 % interval + 0.84 for 80 % power), the standard
        error read from the interval's width in log space.
        """
        half = self.half_width
        if not math.isfinite(half):
            return math.inf
        return math.exp((Z95 + Z80) * half / Z95) - 1

    def to_dict(self) -> dict[str, float]:
        """JSON for reports and the history."""
        return {"ratio": self.ratio, "low": self.low, "high": self.high, "pairs": self.pairs,
                "detectable": self.detectable}  # fmt: skip


def _logs(values: Sequence[float]) -> list[float]:
    return [math.log(v) for v in values]


def estimate(a_ms: Sequence[float], b_ms: Sequence[float]) -> Estimate:
    """B/A from paired block medians (`a_ms[i]` and `b_ms[i]` measured side by side).

    Raises:
        ValueError: the two differ in length, or hold a value that is not a positive finite
            number (a board's answer is checked before it is believed).
    """
    import numpy as np  # noqa: PLC0415

    if len(a_ms) != len(b_ms):
        raise ValueError(f"{len(a_ms)} A blocks but {len(b_ms)} B blocks")
    _check(a_ms, "A")
    _check(b_ms, "B")
    n = len(a_ms)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    d = np.asarray(_logs(b_ms)) - np.asarray(_logs(a_ms))
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    m = len(walsh)
    center = float(np.median(walsh))
    if n < MIN_PAIRS:
        return Estimate(math.exp(center), math.nan, math.nan, n)
    # Signed-rank statistic's normal approximation: the k-th smallest and largest averages.
    spread = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    k = max(0, math.floor(m / 2 - Z95 * spread))
    return Estimate(math.exp(center), math.exp(float(walsh[k])), math.exp(float(walsh[m - 1 - k])),
                    n)  # fmt: skip


def two_sample(a_ms: Sequence[float], b_ms: Sequence[float]) -> Estimate:
    """B/A from the blocks of two separate runs (no pairing): Hodges-Lehmann shift of the logs.

    The median of all differences log(b) - log(a), with the Mann-Whitney 95 % interval. The
    blocks of one run see only that run's noise: drift between the runs is not in it, which
    is why the history also widens its threshold by the runs' own run-to-run noise.
    """
    import numpy as np  # noqa: PLC0415

    _check(a_ms, "A")
    _check(b_ms, "B")
    n, m = len(a_ms), len(b_ms)
    if not n or not m:
        return Estimate(math.nan, math.nan, math.nan, 0)
    d = np.sort((np.asarray(_logs(b_ms))[None, :] - np.asarray(_logs(a_ms))[:, None]).ravel())
    center = float(np.median(d))
    if min(n, m) < MIN_PAIRS:
        return Estimate(math.exp(center), math.nan, math.nan, min(n, m))
    spread = math.sqrt(n * m * (n + m + 1) / 12)
    k = max(0, math.floor(n * m / 2 - Z95 * spread))
    return Estimate(math.exp(center), math.exp(float(d[k])), math.exp(float(d[n * m - 1 - k])),
                    min(n, m))  # fmt: skip


def verdict(found: Estimate, threshold: float) -> str:
    """The verdict: "slower", "faster", "no change" or "undecided" (see the module docstring).

    slower/faster: the interval excludes 1 and the ratio is beyond 1 + threshold (or its
    inverse); no change: the interval lies within [1 / (1 + threshold), 1 + threshold];
    undecided: neither, the run too noisy for the threshold.
    """
    if not (found.low > 0 and found.high > 0):
        return "undecided"
    bound = math.log1p(threshold)
    center = math.log(found.ratio)
    if found.low > 1 and center > bound:
        return "slower"
    if found.high < 1 and center < -bound:
        return "faster"
    if math.log(found.high) <= bound and math.log(found.low) >= -bound:
        return "no change"
    return "undecided"


def _check(values: Sequence[float], side: str) -> None:
    for v in values:
        if not (isinstance(v, (int, float)) and 0 < v < math.inf):
            raise ValueError(f"{side} block median {v!r} is not a positive finite number")
