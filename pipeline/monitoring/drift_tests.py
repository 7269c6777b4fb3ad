"""The statistical tests of a drift check, each on one feature or on the predictions.

Pure functions over numpy/scipy/pandas. ``pipeline.monitoring.drift`` runs them over live traffic and
judges the answers as one Holm family; the reasons for each choice (effective sample size, the KS
p-value from Smirnov's distribution, effect-size floors) are in its docstring and in docs/MONITORING.md.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.monitoring.baseline import FeatureBaseline

PSI_EPSILON = 1e-4  # the share given to an empty bucket, so the PSI stays finite


@dataclass(frozen=True)
class Repeats:
    """How much independent evidence the rows hold once identical rows are recognised."""

    distinct_index: np.ndarray  # the index of one row of each set of identical rows
    effective: float  # Kish effective sample size, n^2 / sum of c^2 over the counts c

    @property
    def distinct(self) -> int:
        return int(self.distinct_index.size)


def repeated_rows(rows: np.ndarray) -> Repeats:
    """Identical rows, found by hashing each row (pandas' row hash; NaN equals NaN, -0.0
    equals 0.0): ``n`` effective rows when all differ, about the number of distinct rows
    when a few rows are replayed many times."""
    n = rows.shape[0]
    if n == 0:
        return Repeats(np.empty(0, dtype=np.intp), 0.0)
    clean = np.where(np.isnan(rows), np.nan, rows + 0.0)
    hashes = pd.util.hash_pandas_object(pd.DataFrame(clean), index=False).to_numpy()
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    counts = counts.astype(np.float64)
    return Repeats(np.sort(first), float(n * n / np.square(counts).sum()))


def psi(baseline_counts: Sequence[int] | np.ndarray, live_counts: Sequence[int] | np.ndarray) -> float:
    """Population stability index, sum of (live - baseline) * ln(live / baseline) over the
    buckets' shares, with an empty bucket's share taken as ``PSI_EPSILON``."""
    expected = np.asarray(baseline_counts, dtype=np.float64)
    actual = np.asarray(live_counts, dtype=np.float64)
    expected = np.maximum(expected / expected.sum(), PSI_EPSILON)
    actual = np.maximum(actual / actual.sum(), PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def holm_adjusted(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: reject where adjusted <= alpha, and the chance of
    any false rejection in the family stays at alpha, whatever the dependence between tests."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def ks_statistic(reference_sorted: np.ndarray, live: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic, the largest gap between the two
    empirical CDFs (the number scipy's ``ks_2samp`` returns; a test checks they agree).
    Computed here because ``ks_2samp`` also computes a p-value for the raw sample sizes,
    which costs more than the statistic and is not the one wanted (see ``ks_test``)."""
    live_sorted = np.sort(live)
    points = np.concatenate([reference_sorted, live_sorted])
    cdf_reference = np.searchsorted(reference_sorted, points, side="right") / reference_sorted.size
    cdf_live = np.searchsorted(live_sorted, points, side="right") / live_sorted.size
    return float(np.abs(cdf_reference - cdf_live).max())


def ks_test(reference_sorted: np.ndarray, live: np.ndarray, live_effective: float) -> tuple[float, float]:
    """KS statistic and p-value, from Smirnov's distribution as scipy's ``ks_2samp`` does
    for large samples (``kstwo.sf(D, round(m n / (m + n)))``), with the live sample counted
    at its effective size."""
    statistic = ks_statistic(reference_sorted, live)
    m, n = float(reference_sorted.size), max(1.0, live_effective)
    effective = max(1, round(m * n / (m + n)))
    return statistic, float(stats.kstwo.sf(statistic, effective))


# The KS distance between a normal distribution and itself moved by one standard deviation: 2 * Phi(1/2) - 1.
ONE_STD_SHIFT_DISTANCE = float(2 * stats.norm.cdf(0.5) - 1)  # 0.383


@functools.lru_cache(maxsize=256)
def rows_to_see_a_shift(reference_size: int, tests: int, alpha: float,
                        distance: float = ONE_STD_SHIFT_DISTANCE) -> int:
    """The smallest effective live sample at which ``ks_test`` against ``reference_size`` training rows
    rejects a KS distance of ``distance`` (a feature moved by one standard deviation) at the strictest
    level of a Holm family of ``tests`` tests, ``alpha / tests``: with fewer effective rows a run cannot
    see such a move, so it has no verdict. 20 for a 4-feature family (13 tests) on 2,000 reference rows,
    24 on iris' 120; 27 for 30 features. A reference sample too small to ever see it: 2**31 - 1."""
    level = alpha / max(1, tests)
    if stats.kstwo.sf(distance, max(1, reference_size)) > level:  # the most the live sample can add
        return 2**31 - 1
    # The effective size of the test is round(m n / (m + n)): find the smallest that rejects, then the
    # smallest live n that gives it.
    target = next(size for size in range(1, reference_size + 1) if stats.kstwo.sf(distance, size) <= level)
    m = reference_size
    n = max(1, math.floor((target - 0.5) * m / (m - target + 0.5)))
    while max(1, round(m * n / (m + n))) < target:
        n += 1
    return n


def out_of_range_p(outside: int, values: int, p0: float) -> float:
    """One-sided binomial test: more values outside the training range than the ``p0`` each
    new value from the training distribution has of landing there."""
    if outside == 0:
        return 1.0
    return float(stats.binomtest(outside, values, p0, alternative="greater").pvalue)


def missing_p(rate: float, effective: float, base: FeatureBaseline) -> float:
    trials = max(1, round(effective))
    missing = min(trials, round(rate * effective))
    if missing == 0 and base.missing == 0:
        return 1.0
    table = [[missing, trials - missing], [base.missing, base.present]]
    return float(stats.fisher_exact(table).pvalue)
