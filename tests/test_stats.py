"""The study's statistics on hand-made numbers worked out by hand."""

import math

import numpy as np
import pytest

from sirst_synth.stats import (
    compare,
    iqm,
    mean_std,
    paired_bootstrap_iou,
    probability_of_improvement,
    sign_flip_p,
    t_interval,
    verdict,
)


def test_mean_std_of_one_value_is_undefined():
    assert mean_std([0.5]) == (0.5, None)
    m, s = mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)


def test_t_interval_by_hand():
    # diffs 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t(0.975, 2) = 4.302653
    lo, hi = t_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert t_interval([1.0]) is None


def test_sign_flip_p_by_hand():
    # 6 positive diffs: only all-plus and all-minus reach |mean| = the observed: 2 / 64
    assert sign_flip_p([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64)
    # 5 pairs can never go below 2 / 32 = 0.0625
    assert sign_flip_p([1, 1, 1, 1, 1]) == pytest.approx(2 / 32)
    # diffs 1, -1: means over signs are 0, 1, -1, 0 -> |mean| >= 0 always: p = 1
    assert sign_flip_p([1.0, -1.0]) == 1.0
    # diffs 3, 1: |means| 2, 1, 1, 2 -> two of four >= 2: p = 0.5
    assert sign_flip_p([3.0, 1.0]) == 0.5


def test_t_quantiles_match_scipy():
    from sirst_synth.stats import t975

    stats = pytest.importorskip("scipy.stats")
    for df in (*range(1, 40), 50, 100, 1000):
        assert t975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=1e-5), df
    assert [round(t975(d), 3) for d in (1, 5, 30)] == [12.706, 2.571, 2.042]  # the tables


def test_iqm_by_hand():
    # 8 values: drop the lowest 2 and highest 2, mean of 3, 4, 5, 6 = 4.5
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(4.5)
    # 6 values: int(1.5) = 1 cut at each end: mean of 2, 3, 4, 5
    assert iqm([6, 1, 5, 2, 4, 3]) == pytest.approx(3.5)
    stats = pytest.importorskip("scipy.stats")
    for n in range(1, 13):
        x = np.random.default_rng(n).normal(size=n)
        assert iqm(list(x)) == pytest.approx(float(stats.trim_mean(x, 0.25)))


def test_probability_of_improvement_by_hand():
    # pairs (a, b): 3>1, 3>2, 2>1, 2=2 -> (1 + 1 + 1 + 0.5) / 4
    assert probability_of_improvement([3, 2], [1, 2]) == pytest.approx(0.875)
    # lower is better (Fa): 1<3 wins, 1<2 wins, 2<3 wins, 2=2 half
    assert probability_of_improvement([1, 2], [3, 2], higher=False) == pytest.approx(0.875)


def test_verdicts():
    six_up = {s: 0.5 + 0.01 * (s + 1) for s in range(6)}
    ref = {s: 0.5 for s in range(6)}
    c = compare("IoU", six_up, ref)
    assert c.pairs == 6 and c.p == pytest.approx(2 / 64) and c.ci[0] > 0
    assert c.verdict == "better" and c.prob_improvement == 1.0
    # the same numbers as false-alarm rates: higher Fa is worse
    assert compare("Fa", six_up, ref).verdict == "worse"
    # five seeds, all better: the interval excludes 0 but p = 0.0625 -> no verdict
    five = compare("IoU", {s: six_up[s] for s in range(5)}, ref)
    assert five.ci[0] > 0 and five.p == pytest.approx(0.0625)
    assert five.verdict.startswith("no detectable difference (95% CI [")
    assert five.verdict.endswith("; 5 pairs cannot reach p < 0.05)")
    # six pairs could reach it: a mixed six-seed arm whose interval excludes 0 says nothing more
    six_mixed = {0: 0.52, 1: 0.53, 2: 0.51, 3: 0.54, 4: 0.52, 5: 0.498}
    m = compare("IoU", six_mixed, ref)
    assert m.ci[0] > 0 and m.p == pytest.approx(4 / 64) and m.verdict.endswith("])")
    # a noisy arm
    noisy = compare("IoU", {0: 0.6, 1: 0.4, 2: 0.55, 3: 0.45}, {s: 0.5 for s in range(4)})
    assert noisy.mean_diff == pytest.approx(0.0) and "no detectable" in noisy.verdict
    assert verdict("IoU", None, None) == "too few seeds to tell"
    # seeds present in one arm only are not paired
    assert compare("IoU", {0: 0.6, 7: 0.9}, {0: 0.5, 1: 0.4}).pairs == 1


def test_paired_bootstrap_iou():
    ia, ua = np.array([5, 5, 5, 5]), np.array([10, 10, 10, 10])  # IoU 0.5
    ib, ub = np.array([4, 4, 4, 4]), np.array([10, 10, 10, 10])  # IoU 0.4
    diff, (lo, hi) = paired_bootstrap_iou(ia, ua, ib, ub, np.random.default_rng(0), 500)
    assert diff == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    # summed, not averaged: image 1 dominates by its union
    ia, ua = np.array([1, 90]), np.array([10, 100])
    ib, ub = np.array([9, 10]), np.array([10, 100])
    diff, (lo, hi) = paired_bootstrap_iou(ia, ua, ib, ub, np.random.default_rng(0), 2000)
    assert diff == pytest.approx(91 / 110 - 19 / 110)
    assert lo < diff < hi or lo == pytest.approx(hi)
    with pytest.raises(ValueError):
        paired_bootstrap_iou(ia, ua, ib[:1], ub, np.random.default_rng(0))
