"""The statistics behind the gate: how sure a test set lets us be, and which rows a model trained on.

Pure functions over numpy/scipy/pandas; no I/O, no config, no logging. Numbers are proportions in
[0, 1]. ``docs/DECISIONS.md`` shows what the rules built on them do at 30..3,000 rows
(``python -m bench.decisions``).

- ``wilson_interval``: the 95% interval of an accuracy (``pipeline/container/wilson.py``, shipped with
  the training code, which records it with every job).
- ``rows_needed``: how many evaluation rows would make the interval's lower end clear the threshold.
- ``mcnemar_p_value``, ``tango_score``, ``paired_difference_interval``: two models on the same rows.
"""
from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.stats import binom, norm

from pipeline.container.wilson import CONFIDENCE, wilson_interval

__all__ = ["CONFIDENCE", "ROWS_NEEDED_CAP", "mcnemar_p_value", "paired_difference_interval", "rows_needed",
           "tango_score", "wilson_interval"]

ROWS_NEEDED_CAP = 10_000_000


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r}: expected a number between 0 and 1")
    return float(norm.ppf(0.5 + confidence / 2))


def rows_needed(accuracy: float, threshold: float, *, confidence: float = CONFIDENCE,
                cap: int = ROWS_NEEDED_CAP) -> int | None:
    """The number of evaluation rows at which ``accuracy``'s Wilson lower bound would reach ``threshold``.

    Why a closed form: Wilson's interval is the set of p the score test does not reject,
    ``(p_hat - p)^2 <= z^2 p (1 - p) / n``, so its lower end reaches t (for p_hat > t) exactly when
    ``n >= z^2 t (1 - t) / (p_hat - t)^2``. The answer is the ceiling of that, computed at the observed
    accuracy held fixed (``k = p_hat * n`` correct rows, not rounded to a whole row; rounding to whole
    rows moves it by a row or two either way, well inside the "about" of the warning).

    None when the accuracy is at or below the threshold (at equality the lower end approaches the
    threshold but never reaches it, whatever n), or when more than ``cap`` rows would be needed.
    """
    if not (0.0 <= accuracy <= 1.0 and 0.0 <= threshold <= 1.0):
        raise ValueError(f"rows_needed({accuracy!r}, {threshold!r}): expected proportions between 0 and 1")
    if accuracy <= threshold:
        return None
    needed = max(1, math.ceil(_z(confidence) ** 2 * threshold * (1.0 - threshold) / (accuracy - threshold) ** 2))
    return needed if needed <= cap else None


# --------------------------------------------------------------------------- paired statistics
def mcnemar_p_value(candidate_only: npt.ArrayLike, champion_only: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """One-sided exact McNemar p-value that the candidate is better (vectorised).

    Only the discordant rows carry evidence: if the models were equally good, each of the
    ``b + c`` rows exactly one of them got right would be the candidate's with probability 1/2. The
    p-value is ``P(X >= b)``, ``X ~ Binomial(b + c, 1/2)``: scipy's ``binomtest(b, b + c,
    alternative="greater").pvalue`` is this same ``binom.sf(b - 1, b + c, 0.5)``, which works on arrays.
    No discordant rows: 1.0 (no evidence either way).
    """
    b = np.asarray(candidate_only)
    c = np.asarray(champion_only)
    return np.asarray(binom.sf(b - 1, b + c, 0.5), dtype=np.float64)


def tango_score(candidate_only: npt.ArrayLike, champion_only: npt.ArrayLike, rows: npt.ArrayLike,
                delta: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Tango's score statistic for "candidate accuracy - champion accuracy = delta" on paired rows (vectorised).

    ``(b - c - n delta) / sqrt(n (2 q + delta (1 - delta)))`` with ``q`` the maximum-likelihood estimate
    of P(only the champion right) under the hypothesis, in closed form (Tango 1998, Stat Med 17:891-908).
    At ``delta = 0`` it is McNemar's ``(b - c) / sqrt(b + c)``. It falls as ``delta`` rises, so
    ``{delta : |score| < z}`` is an interval and a one-sided test at any margin is ``score(-margin) > z``.
    """
    b = np.asarray(candidate_only, dtype=np.float64)
    c = np.asarray(champion_only, dtype=np.float64)
    n = np.asarray(rows, dtype=np.float64)
    d = np.asarray(delta, dtype=np.float64)
    a2 = 2.0 * n
    b1 = -b - c + (2.0 * n - b + c) * d
    c0 = -c * d * (1.0 - d)
    q = (-b1 + np.sqrt(np.maximum(b1 * b1 - 4.0 * a2 * c0, 0.0))) / (2.0 * a2)
    variance = n * (2.0 * q + d * (1.0 - d))
    numerator = b - c - n * d
    with np.errstate(divide="ignore", invalid="ignore"):
        score = numerator / np.sqrt(np.maximum(variance, 0.0))
    # A vanishing variance is the edge of the parameter space: the score is infinite towards the data.
    return np.where(numerator == 0, 0.0, np.where(variance > 0, score, np.copysign(np.inf, numerator)))


def paired_difference_interval(candidate_only: int, champion_only: int, rows: int,
                               confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Confidence interval of (candidate accuracy - champion accuracy) on the same rows: Tango's score interval.

    Why Tango: the two accuracies are measured on the same rows, so their errors are correlated and an
    interval for two independent proportions would be far too wide. Tango's interval inverts the score
    test above; Fagerland, Lydersen & Laake (2014, Stat Med 33:2850-2875) recommend it for paired
    proportions (coverage close to nominal down to small samples, unlike the Wald interval). Like the
    McNemar test it depends only on the discordant counts and the number of rows, so the interval and
    the test never read different evidence. Endpoints by Brent's root finding, to 1e-12.
    """
    b, c, n = int(candidate_only), int(champion_only), int(rows)
    if n < 1 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"paired_difference_interval({b}, {c}, {n}): expected 0 <= b, c and b + c <= rows, rows >= 1")
    z = _z(confidence)
    estimate = (b - c) / n
    edge = 1e-12

    def score(delta: float) -> float:
        return float(tango_score(b, c, n, delta))

    low = -1.0 if estimate <= -1.0 or score(-1.0 + edge) <= z else \
        brentq(lambda d: score(d) - z, -1.0 + edge, estimate, xtol=1e-13)
    high = 1.0 if estimate >= 1.0 or score(1.0 - edge) >= -z else \
        brentq(lambda d: score(d) + z, estimate, 1.0 - edge, xtol=1e-13)
    return float(low), float(high)
