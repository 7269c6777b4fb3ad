"""The statistics behind the gate's decisions: how sure a test set lets us be.

The accuracy gate compares one number with a threshold, and a candidate is
compared with the version the endpoint serves (the champion). On a small test
set both comparisons are mostly noise; this module says how much, so the gate
can act on evidence instead of on a point value. Pure functions and frozen
dataclasses over numpy/scipy/pandas; no I/O, no config, no logging: the gate
decides what to do with the answers.

- ``wilson_interval``: the 95% interval of an accuracy (scipy's Wilson score
  interval, the one ``pipeline/container/train.py`` records with every job).
- ``rows_needed``: how many evaluation rows would make the interval's lower end
  clear the threshold at the observed accuracy (closed form, see there).
- ``judge``: the gate's verdict under ``gate_policy`` ``point`` or ``confident``.
- ``row_hashes`` / ``rows_not_trained_on``: which evaluation rows the champion
  never saw, so the comparison is not rigged in the champion's favour.
- ``compare_with_champion``: paired comparison on shared rows (exact one-sided
  McNemar test, Tango's score interval for the paired difference);
  ``compare_point_values`` for metrics that are not decidable per row.

Numbers are proportions in [0, 1]; a "point" in reasons is a percentage point.
``docs/DECISIONS.md`` shows what these rules do at 30..3,000 rows
(``python -m bench.decisions``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.util import hash_pandas_object
from scipy.optimize import brentq
from scipy.stats import binom, binomtest, norm

from pipeline.errors import PipelineError
from pipeline.outcomes import Verdict

CONFIDENCE = 0.95
ROWS_NEEDED_CAP = 10_000_000
# Counts of rows are integers; a margin times a row count is compared with this much slack so that
# "exactly at the margin" stays exactly at the margin despite binary floating point (0.29 * 100 < 29).
_ROW_SLACK = 1e-9
_VALUE_SLACK = 1e-12  # the same for metric values compared directly
# Gate metrics whose value is the share of rows a model got right, so each row is decided on its own
# and two models can be compared row by row. Weighted recall is sum_c (n_c / N) * (TP_c / n_c) = accuracy.
PAIRED_METRICS = frozenset({"accuracy", "recall_weighted"})
NOT_PAIRED = "skipped: not paired"
MCNEMAR_TEST = "exact one-sided McNemar (binomial test on the discordant rows)"


class GatePolicy(StrEnum):
    POINT = "point"  # metric >= threshold deploys, below minimum rejected, between held
    CONFIDENT = "confident"  # the whole 95% interval decides; the rest is "not enough evidence"


class ChampionPolicy(StrEnum):
    NOT_WORSE = "not_worse"  # held when the candidate is below the champion by more than the margin
    BETTER = "better"  # deploy only when the candidate beats the champion by more than the margin, significantly
    OFF = "off"  # no comparison


class ComparisonStatus(StrEnum):
    COMPARED = "compared"
    SKIPPED = "skipped"


# --------------------------------------------------------------------------- one accuracy
def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r}: expected a number between 0 and 1")
    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Where the true accuracy plausibly lies, given how small the test set is.

    Wilson's score interval rather than the textbook p +- z*se: it stays inside [0, 1] and keeps its
    coverage near 100% accuracy, which is exactly where a gate's threshold sits.
    """
    if total < 1 or not 0 <= correct <= total:
        raise ValueError(f"wilson_interval({correct!r}, {total!r}): expected 0 <= correct <= total and total >= 1")
    interval = binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


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


# --------------------------------------------------------------------------- the gate's verdict
@dataclass(frozen=True)
class GateEvidence:
    """The verdict of one gate policy and the evidence it rests on (JSON-ready through ``to_dict``)."""

    policy: GatePolicy
    verdict: Verdict
    metric: str
    value: float
    threshold: float
    minimum: float
    interval: tuple[float, float] | None
    rows_needed: int | None
    reason: str
    warning: str | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["policy"], data["verdict"] = str(self.policy), str(self.verdict)
        data["interval"] = list(self.interval) if self.interval else None
        return data


def judge(metric: str, value: float, threshold: float, minimum: float, *,
          policy: GatePolicy | str = GatePolicy.POINT,
          interval: tuple[float, float] | None = None) -> GateEvidence:
    """The gate's verdict on one metric value.

    ``point`` acts on the value alone (the table in ``pipeline/run/orchestrator.py``). ``confident`` acts on
    the 95% interval: deploy only when its lower end reaches the threshold, reject only when its upper
    end is below the minimum, otherwise hold for "not enough evidence". At the threshold the point rule
    deploys about half the models that are truly no better than the threshold; the interval rule about
    2% (``docs/DECISIONS.md``). ``interval`` is the metric's 95% interval, known for accuracy; without
    one the confident policy cannot judge and says so.

    ``rows_needed`` is filled whenever there is an interval, and the warning (the interval straddles the
    threshold) names it.
    """
    policy = GatePolicy(policy)
    if not minimum <= threshold:
        raise ValueError(f"minimum {minimum!r} is above threshold {threshold!r}")
    shown = f"{metric} {value:.2%}"
    needed = rows_needed(value, threshold) if interval is not None else None
    warning = None
    if interval is not None and interval[0] < threshold <= interval[1]:
        warning = (f"the 95% interval of {metric} [{interval[0]:.2%}, {interval[1]:.2%}] straddles the threshold "
                   f"{threshold:.2%}: the test set is too small to be sure")
        if needed is not None:
            warning += f": about {needed:,} rows would settle it"
    if policy is GatePolicy.POINT:
        if value < minimum:
            verdict, reason = Verdict.REJECTED, f"{shown} is below the minimum threshold {minimum:.2%}"
        elif value < threshold:
            verdict, reason = Verdict.HELD, (f"{shown} is below the deploy threshold {threshold:.2%} "
                                             f"(minimum {minimum:.2%})")
        else:
            verdict, reason = Verdict.DEPLOY, f"{shown} meets the deploy threshold {threshold:.2%}"
        return GateEvidence(policy, verdict, metric, float(value), threshold, minimum, interval, needed, reason,
                            warning)
    if interval is None:
        raise PipelineError(f"gate_policy 'confident' needs the 95% interval of {metric!r}, which is known only "
                            f"for accuracy: set gate_metric=accuracy or gate_policy=point")
    low, high = interval
    span = f"95% interval [{low:.2%}, {high:.2%}]"
    if low >= threshold:
        verdict, reason = Verdict.DEPLOY, (f"{shown}: the lower end of its {span} reaches the deploy threshold "
                                           f"{threshold:.2%}")
    elif high < minimum:
        verdict, reason = Verdict.REJECTED, (f"{shown}: the upper end of its {span} is below the minimum threshold "
                                             f"{minimum:.2%}")
    else:
        verdict = Verdict.HELD
        reason = (f"not enough evidence: {shown} with {span}; deploying needs the lower end to reach "
                  f"{threshold:.2%}, rejecting needs the upper end below {minimum:.2%}")
        if needed is not None:
            reason += f" (about {needed:,} rows at this {metric} would settle it)"
    return GateEvidence(policy, verdict, metric, float(value), threshold, minimum, interval, needed, reason, warning)


# --------------------------------------------------------------------------- rows the champion trained on
def row_hashes(frame: pd.DataFrame, columns: Sequence[str]) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per row of ``frame[columns]`` (pandas' ``hash_pandas_object``, index ignored).

    Why hashes: a training job stores 8 bytes per row instead of the rows, and any later evaluation can
    tell which of its rows a model was trained on. The hash covers the values and their kinds, not the
    column names: pass the feature columns in training order and the label last, with the dtypes the
    model was trained on (pandas hashes 1 and 1.0 differently; int32 and int64 alike). It is stable
    across processes and machines for a given pandas version (fixed hash key).
    """
    if not columns:
        raise PipelineError("row hashes: no columns given (expected the training features and label)")
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise PipelineError(f"row hashes: column(s) {', '.join(map(repr, missing))} not in the data "
                            f"(expected the training features and label: {', '.join(map(str, columns))})")
    return hash_pandas_object(frame[list(columns)], index=False).to_numpy(dtype=np.uint64)


def labelled_row_hashes(features: pd.DataFrame, labels: pd.Series) -> npt.NDArray[np.uint64]:
    """``row_hashes`` of features and label with their kinds made uniform (features as 64-bit floats,
    labels as text), so the rows a job trained on and the same rows read back from a CSV file hash
    alike: a CSV round trip can turn ``1.0`` into ``1`` and a label column's dtype with it."""
    frame = features.astype(np.float64)
    frame = frame.assign(**{"\x00label": labels.astype(str).to_numpy()})
    return row_hashes(frame, list(frame.columns))


def rows_not_trained_on(evaluation_hashes: npt.ArrayLike, training_hashes: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Mask of evaluation rows whose hash is not among a model's training rows (duplicates included)."""
    return ~np.isin(np.asarray(evaluation_hashes, dtype=np.uint64), np.asarray(training_hashes, dtype=np.uint64))


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


def champion_holds(candidate_only: npt.ArrayLike, champion_only: npt.ArrayLike, rows: npt.ArrayLike, *,
                   policy: ChampionPolicy | str, margin: float, alpha: float) -> npt.NDArray[np.bool_]:
    """Does the comparison hold the candidate back? From the discordant counts alone (vectorised).

    ``not_worse``: held when the candidate's accuracy is below the champion's by more than ``margin``,
    that is ``c - b > margin * n``; exactly at the margin is not held. ``better``: held unless the
    candidate is ahead by more than ``margin`` (``b - c > margin * n``) and the one-sided exact McNemar
    p-value is below ``alpha`` (p exactly at alpha is held). ``off``: never held.
    This is the one place the rule lives; ``compare_with_champion`` and the benchmark both use it.
    """
    policy = ChampionPolicy(policy)
    b = np.asarray(candidate_only)
    c = np.asarray(champion_only)
    allowance = float(margin) * np.asarray(rows, dtype=np.float64) + _ROW_SLACK
    if policy is ChampionPolicy.OFF:
        return np.zeros(np.broadcast(b, c).shape, dtype=bool)
    if policy is ChampionPolicy.NOT_WORSE:
        return np.asarray(c - b > allowance)
    return np.asarray(~((b - c > allowance) & (mcnemar_p_value(b, c) < alpha)))


# --------------------------------------------------------------------------- the champion comparison
@dataclass(frozen=True)
class ChampionComparison:
    """The candidate against the serving version, on the evaluation rows the champion never trained on."""

    status: ComparisonStatus
    policy: ChampionPolicy
    version: str | None  # None: nothing serves, so there is no champion
    metric: str
    champion_value: float | None
    candidate_value: float | None
    rows_compared: int
    rows_excluded: int
    candidate_only_correct: int | None  # rows the candidate got right and the champion wrong
    champion_only_correct: int | None  # and the reverse
    p_value: float | None  # one-sided exact McNemar: the candidate is better
    difference: float | None  # candidate - champion
    difference_interval: tuple[float, float] | None  # 95%, Tango's score interval
    test: str  # which paired test ran, or "skipped: not paired"
    margin: float
    alpha: float
    holds: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"], data["policy"] = str(self.status), str(self.policy)
        data["difference_interval"] = list(self.difference_interval) if self.difference_interval else None
        return data


def compare_with_champion(candidate_correct: npt.ArrayLike, champion_correct: npt.ArrayLike, *, version: str,
                          policy: ChampionPolicy | str = ChampionPolicy.NOT_WORSE, margin: float = 0.0,
                          alpha: float = 0.05, min_rows: int = 30, excluded: int = 0,
                          metric: str = "accuracy") -> ChampionComparison:
    """Paired comparison of two models on the same rows (True where a model got the row right).

    The arrays hold only the shared rows: the caller has dropped the rows the champion trained on
    (``rows_not_trained_on``) and passes how many it dropped as ``excluded``. Fewer than ``min_rows``
    shared rows: ``skipped`` and not held, with the numbers still reported. Everything follows from the
    counts; see ``champion_holds`` for the rule.
    """
    policy = ChampionPolicy(policy)
    _check_settings(margin, alpha, min_rows, excluded)
    if metric not in PAIRED_METRICS:
        raise ValueError(f"metric {metric!r} is not decided row by row (paired: {', '.join(sorted(PAIRED_METRICS))}): "
                         f"use compare_point_values")
    candidate = _correctness(candidate_correct, "candidate_correct")
    champion = _correctness(champion_correct, "champion_correct")
    if candidate.shape != champion.shape:
        raise ValueError(f"candidate_correct has {candidate.size} rows, champion_correct {champion.size}: "
                         f"expected the same evaluation rows")
    n = int(candidate.size)
    if n == 0:
        return ChampionComparison(
            ComparisonStatus.SKIPPED, policy, version, metric, None, None, 0, excluded, None, None, None, None, None,
            MCNEMAR_TEST, margin, alpha, False,
            _skip_reason(policy, version, 0, excluded, min_rows))
    b = int(np.count_nonzero(candidate & ~champion))
    c = int(np.count_nonzero(champion & ~candidate))
    candidate_value, champion_value = float(candidate.mean()), float(champion.mean())
    difference = (b - c) / n
    p_value = float(mcnemar_p_value(b, c))
    interval = paired_difference_interval(b, c, n)
    common = dict(policy=policy, version=version, metric=metric, champion_value=champion_value,
                  candidate_value=candidate_value, rows_compared=n, rows_excluded=excluded,
                  candidate_only_correct=b, champion_only_correct=c, p_value=p_value, difference=difference,
                  difference_interval=interval, test=MCNEMAR_TEST, margin=margin, alpha=alpha)
    if policy is ChampionPolicy.OFF or n < min_rows:
        return ChampionComparison(status=ComparisonStatus.SKIPPED, holds=False,
                                  reason=_skip_reason(policy, version, n, excluded, min_rows), **common)
    holds = bool(champion_holds(b, c, n, policy=policy, margin=margin, alpha=alpha))
    shown = _shown(metric, candidate_value, champion_value, version, n)
    if policy is ChampionPolicy.NOT_WORSE:
        reason = _not_worse_reason(holds, shown, difference, margin)
    else:
        evidence = (f"exact one-sided McNemar p = {p_value:.4g} (alpha {alpha:g}; {b} rows only the candidate "
                    f"got right, {c} only the champion)")
        if not holds:
            reason = f"{shown}: ahead by {difference * 100:.2f} points, more than the margin of " \
                     f"{margin * 100:.2f}, and significant: {evidence}"
        elif b - c <= margin * n + _ROW_SLACK:
            reason = f"held: {shown}: not ahead by more than the margin of {margin * 100:.2f} points ({evidence})"
        else:
            reason = f"held: {shown}: ahead by {difference * 100:.2f} points but not significantly: {evidence}"
    return ChampionComparison(status=ComparisonStatus.COMPARED, holds=holds, reason=reason, **common)


def skipped_comparison(reason: str, *, metric: str, policy: ChampionPolicy | str = ChampionPolicy.NOT_WORSE,
                       version: str | None = None, margin: float = 0.0, alpha: float = 0.05) -> ChampionComparison:
    """No comparison was possible (no champion, a champion that cannot be loaded or reads other
    features): ``skipped`` with the reason, never holding the candidate; the absolute gate decides."""
    return ChampionComparison(ComparisonStatus.SKIPPED, ChampionPolicy(policy), version, metric, None, None, 0, 0,
                              None, None, None, None, None, "none", margin, alpha, False, f"skipped: {reason}")


def compare_point_values(candidate_value: float, champion_value: float, *, version: str, metric: str,
                         rows_compared: int, policy: ChampionPolicy | str = ChampionPolicy.NOT_WORSE,
                         margin: float = 0.0, alpha: float = 0.05, min_rows: int = 30,
                         excluded: int = 0) -> ChampionComparison:
    """The comparison for a metric that is not decided row by row (weighted F1, precision, CV mean...).

    There is no paired test for such a metric here, so it is marked ``skipped: not paired`` and the
    point values decide: ``not_worse`` holds when the candidate is below the champion by more than the
    margin, ``better`` when it is not above it by more than the margin. The values must be measured on
    the same shared rows by the caller.
    """
    policy = ChampionPolicy(policy)
    _check_settings(margin, alpha, min_rows, excluded)
    common = dict(policy=policy, version=version, metric=metric, champion_value=float(champion_value),
                  candidate_value=float(candidate_value), rows_compared=int(rows_compared), rows_excluded=excluded,
                  candidate_only_correct=None, champion_only_correct=None, p_value=None,
                  difference=float(candidate_value) - float(champion_value), difference_interval=None,
                  test=NOT_PAIRED, margin=margin, alpha=alpha)
    if policy is ChampionPolicy.OFF or rows_compared < max(min_rows, 1):
        return ChampionComparison(status=ComparisonStatus.SKIPPED, holds=False,
                                  reason=_skip_reason(policy, version, rows_compared, excluded, min_rows), **common)
    difference = common["difference"]
    shown = _shown(metric, candidate_value, champion_value, version, rows_compared)
    if policy is ChampionPolicy.NOT_WORSE:
        holds = -difference > margin + _VALUE_SLACK
        reason = _not_worse_reason(holds, shown, difference, margin)
    else:
        holds = not difference > margin + _VALUE_SLACK
        reason = (f"{'held: ' if holds else ''}{shown}: {'not ' if holds else ''}ahead by more than the margin of "
                  f"{margin * 100:.2f} points")
    return ChampionComparison(status=ComparisonStatus.COMPARED, holds=holds,
                              reason=f"{reason} (paired test {NOT_PAIRED}; point values compared)", **common)


def _correctness(values: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected one value per row, got shape {array.shape}")
    if array.dtype != np.bool_:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name}: expected True/False (or 1/0) per row")
        array = array.astype(bool)
    return array


def _check_settings(margin: float, alpha: float, min_rows: int, excluded: int) -> None:
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"champion_margin {margin!r}: expected a proportion in [0, 1)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"champion_alpha {alpha!r}: expected a number between 0 and 1")
    if min_rows < 1 or excluded < 0:
        raise ValueError(f"champion_min_rows {min_rows!r} / excluded {excluded!r}: expected >= 1 and >= 0")


def _shown(metric: str, candidate: float, champion: float, version: str, rows: int) -> str:
    return (f"the candidate's {metric} {candidate:.2%} against champion {version}'s {champion:.2%} "
            f"on {rows:,} shared rows")


def _not_worse_reason(holds: bool, shown: str, difference: float, margin: float) -> str:
    if holds:
        return (f"held: {shown}: {-difference * 100:.2f} points worse, more than the margin of "
                f"{margin * 100:.2f} points")
    return f"{shown}: not worse by more than the margin of {margin * 100:.2f} points"


def _skip_reason(policy: ChampionPolicy, version: str, rows: int, excluded: int, min_rows: int) -> str:
    if policy is ChampionPolicy.OFF:
        return f"skipped: champion_policy is off (champion {version} not compared)"
    excluded_text = (f"{excluded:,} evaluation rows excluded: champion {version} was trained on them" if excluded
                     else f"no evaluation row was in champion {version}'s training data")
    return f"skipped: {rows:,} comparable rows, fewer than champion_min_rows {min_rows:,} ({excluded_text})"
