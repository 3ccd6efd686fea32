"""Statistics that tell an effect from seed noise: paired intervals, exact sign-flip tests, IQM
and the probability of improvement (Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice", NeurIPS 2021, the paper behind rliable).

Arms share seeds (the same seed gives the same initial weights and, where the data allow, the
same crops), so an arm is compared with the reference seed by seed: the differences are paired.
Pure functions on lists of floats.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Metrics where lower is better (false alarms).
LOWER_IS_BETTER = frozenset({"Fa", "images_with_false_alarm"})


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation; the std of a single value is undefined (None)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


#: Student's t, 0.975 quantile, for 1..30 degrees of freedom (standard tables; the tests check
#: them against scipy.stats.t.ppf). Written out so the study needs no scipy.
T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
    2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922,
    2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
    2.048407, 2.04523, 2.042272,
)  # fmt: skip


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t: the table, then the Cornish-Fisher expansion around
    the normal quantile (error below 1e-5 beyond 30 degrees of freedom)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959963984540054
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def t_interval(diffs: list[float]) -> tuple[float, float] | None:
    """The 95% paired t-interval of the mean difference; None below 2 pairs."""
    n = len(diffs)
    if n < 2:
        return None
    mean, sd = mean_std(diffs)
    half = t975(n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def sign_flip_p(diffs: list[float]) -> float | None:
    """Exact two-sided p-value of the mean paired difference under sign flips (every one of
    the 2^n assignments). Its smallest possible value is 2 / 2^n: 5 pairs never reach 0.05."""
    n = len(diffs)
    if n == 0:
        return None
    if n > 20:
        raise ValueError("an exact sign-flip test enumerates 2^n signs; n <= 20")
    d = np.asarray(diffs, dtype=np.float64)
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    means = np.abs(signs @ d / n)
    return float(np.mean(means >= observed - 1e-12 * max(observed, 1.0)))


def iqm(values: list[float]) -> float:
    """Interquartile mean: the mean of the middle 50%, cutting ``int(0.25 n)`` values at each
    end (rliable's IQM; scipy.stats.trim_mean(x, 0.25))."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if not x.size:
        raise ValueError("no values")
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def probability_of_improvement(arm: list[float], ref: list[float], higher: bool = True) -> float:
    """P(a run of ``arm`` beats a run of ``ref``), ties counting half, over all pairs of runs
    (Mann-Whitney U / (n m)): unpaired by definition."""
    if not arm or not ref:
        raise ValueError("no values")
    wins = 0.0
    for a in arm:
        for b in ref:
            wins += 0.5 if a == b else float((a > b) == higher)
    return wins / (len(arm) * len(ref))


@dataclass(frozen=True)
class Comparison:
    """An arm against the reference on one metric, seed by seed."""

    metric: str
    pairs: int
    diffs: tuple[float, ...]
    mean_diff: float | None
    ci: tuple[float, float] | None
    p: float | None
    prob_improvement: float | None
    verdict: str


def verdict(
    metric: str,
    ci: tuple[float, float] | None,
    p: float | None,
    fmt: Callable[[float], str] = str,
    pairs: int | None = None,
) -> str:
    """ "better" or "worse" when the interval excludes zero and p < 0.05, else no detectable
    difference with the interval (``fmt`` prints its ends in the metric's unit). With
    ``pairs``, an interval that excludes zero beside a p the sign-flip test could never bring
    under 0.05 (its smallest two-sided value is 2 / 2**pairs) says so, so that a reader does
    not take the missing verdict for an effect of zero."""
    if ci is None or p is None:
        return "too few seeds to tell"
    lo, hi = ci
    if p < 0.05 and (lo > 0 or hi < 0):
        up = lo > 0
        return "better" if up != (metric in LOWER_IS_BETTER) else "worse"
    text = f"no detectable difference (95% CI [{fmt(lo)}, {fmt(hi)}]"
    if pairs is not None and (lo > 0 or hi < 0) and 2 / 2**pairs >= 0.05:
        text += f"; {pairs} pairs cannot reach p < 0.05"
    return text + ")"


def compare(
    metric: str, arm: dict[int, float], ref: dict[int, float], fmt: Callable[[float], str] = str
) -> Comparison:
    """Pair an arm's runs with the reference's by seed (seeds missing from either are left
    out of the pairs, not of the probability of improvement)."""
    seeds = sorted(set(arm) & set(ref))
    diffs = [arm[s] - ref[s] for s in seeds]
    ci, p = t_interval(diffs), sign_flip_p(diffs)
    higher = metric not in LOWER_IS_BETTER
    poi = (
        probability_of_improvement(list(arm.values()), list(ref.values()), higher)
        if arm and ref
        else None
    )
    return Comparison(
        metric,
        len(diffs),
        tuple(diffs),
        sum(diffs) / len(diffs) if diffs else None,
        ci,
        p,
        poi,
        verdict(metric, ci, p, fmt, len(diffs)),
    )


def paired_bootstrap_iou(
    inter_a: np.ndarray,
    union_a: np.ndarray,
    inter_b: np.ndarray,
    union_b: np.ndarray,
    rng: np.random.Generator,
    resamples: int = 10000,
    level: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """IoU(a) - IoU(b) on one test split and its percentile interval, resampling test images
    (the same images for both): IoU recomputed from summed intersections and unions.

    This measures how much the difference depends on which test images were drawn, not how
    much it varies from one training seed to another.
    """
    arrays = [np.asarray(v, dtype=np.float64) for v in (inter_a, union_a, inter_b, union_b)]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError("per-image counts of equal, non-zero length are needed")
    ia, ua, ib, ub = arrays

    def diff(idx: np.ndarray) -> np.ndarray:
        sa, sb = ua[idx].sum(-1), ub[idx].sum(-1)
        return np.where(sa > 0, ia[idx].sum(-1) / np.maximum(sa, 1), 0.0) - np.where(
            sb > 0, ib[idx].sum(-1) / np.maximum(sb, 1), 0.0
        )

    observed = float(diff(np.arange(n)[None])[0])
    draws = diff(rng.integers(0, n, size=(resamples, n)))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return observed, (float(lo), float(hi))
