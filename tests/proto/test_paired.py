"""The paired statistics (edgeopt.proto.paired): the estimators against brute force, the
intervals' coverage and the minimum detectable change's power by simulation (fixed seeds: the
same numbers every run), the verdicts, and board values that are refused."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgeopt.proto import paired


def _walsh_median(d: np.ndarray) -> float:
    return float(np.median([(d[i] + d[j]) / 2 for i, j in itertools.combinations_with_replacement(
        range(len(d)), 2)]))  # fmt: skip


def test_the_paired_estimate_is_the_hodges_lehmann_of_the_log_ratios() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(0, 0.05, 25) * 10
    b = a * rng.lognormal(0.1, 0.05, 25)
    found = paired.estimate(list(a), list(b))
    assert math.log(found.ratio) == pytest.approx(_walsh_median(np.log(b) - np.log(a)))
    assert found.low < found.ratio < found.high and found.pairs == 25


def test_the_two_run_estimate_is_the_hodges_lehmann_shift() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.lognormal(0, 0.05, 20), rng.lognormal(0.2, 0.05, 30)
    found = paired.two_sample(list(a), list(b))
    diffs = np.log(b)[None, :] - np.log(a)[:, None]
    assert math.log(found.ratio) == pytest.approx(float(np.median(diffs)))
    assert found.low < found.ratio < found.high and found.pairs == 20


@pytest.mark.parametrize("how", ["paired", "two runs"])
def test_the_intervals_cover_the_true_ratio_95_percent_of_the_time(how: str) -> None:
    rng = np.random.default_rng(3)
    covered = 0
    trials = 1000
    for _ in range(trials):
        a = rng.lognormal(0, 0.04, 30)
        b = rng.lognormal(0, 0.04, 30) * 1.07
        found = paired.estimate(list(a), list(b)) if how == "paired" else \
            paired.two_sample(list(a), list(b))  # fmt: skip
        covered += found.low <= 1.07 <= found.high
    assert 0.93 <= covered / trials <= 0.975, covered


def test_a_change_the_size_of_the_detectable_change_is_found_80_percent_of_the_time() -> None:
    rng = np.random.default_rng(4)
    noise = 0.03
    typical = np.median([paired.estimate(list(rng.lognormal(0, noise, 40)),
                                         list(rng.lognormal(0, noise, 40))).detectable
                         for _ in range(200)])  # fmt: skip
    found = 0
    trials = 1000
    for _ in range(trials):
        a = rng.lognormal(0, noise, 40)
        b = rng.lognormal(0, noise, 40) * (1 + typical)
        found += paired.estimate(list(a), list(b)).low > 1
    assert 0.72 <= found / trials <= 0.88, (typical, found)


@pytest.mark.parametrize(
    ("ratio", "low", "high", "verdict"),
    [(1.10, 1.08, 1.12, "slower"), (0.90, 0.88, 0.92, "faster"),
     (1.01, 0.99, 1.03, "no change"),    # the whole interval within +-5 %
     (1.03, 1.02, 1.04, "no change"),    # real, but all of it under the threshold
     (1.045, 1.03, 1.06, "undecided"),   # real, and it may pass the threshold or not
     (1.06, 0.98, 1.14, "undecided"),    # too noisy to tell
     (1.0, math.nan, math.nan, "undecided")],
)  # fmt: skip
def test_verdicts(ratio: float, low: float, high: float, verdict: str) -> None:
    assert paired.verdict(paired.Estimate(ratio, low, high, 30), 0.05) == verdict


def test_too_few_pairs_have_no_interval() -> None:
    found = paired.estimate([1.0] * 5, [1.1] * 5)
    assert found.ratio == pytest.approx(1.1)
    assert math.isnan(found.low) and found.detectable == math.inf
    assert paired.verdict(found, 0.05) == "undecided"


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan, "3"])
def test_a_block_median_that_is_not_a_positive_number_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"B block median .* is not a positive finite number"):
        paired.estimate([1.0, 1.0], [1.0, bad])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="2 A blocks but 1 B blocks"):
        paired.estimate([1.0, 1.0], [1.0])


def test_blocks_last_about_50_ms() -> None:
    assert paired.block_runs(10.0) == 5
    assert paired.block_runs(100.0) == 3  # at least 3 runs a block
    assert paired.block_runs(100.0, smallest=1) == 1
    assert paired.block_runs(0.01) == 1000  # at most 1000
