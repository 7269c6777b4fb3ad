"""The champion comparison's rule: does the serving version hold the candidate back?

Two models on the same evaluation rows (the rows the champion trained on already dropped): paired,
row by row, for accuracy (exact one-sided McNemar test, Tango's interval of the difference), or by
the point values for metrics that are not decided row by row. ``champion_policy`` ``not_worse``
holds a candidate that is worse by more than ``champion_margin``; ``better`` holds one that is not
significantly better by more than it. Loading the champion is ``pipeline.gate.champion``'s job.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.gate.decision import ChampionComparison, ChampionPolicy, ComparisonStatus
from pipeline.gate.statistics import mcnemar_p_value, paired_difference_interval

# Counts of rows are integers; a margin times a row count is compared with this much slack so that
# "exactly at the margin" stays exactly at the margin despite binary floating point (0.29 * 100 < 29).
_ROW_SLACK = 1e-9
_VALUE_SLACK = 1e-12  # the same for metric values compared directly
# Gate metrics whose value is the share of rows a model got right, so each row is decided on its own
# and two models can be compared row by row. Weighted recall is sum_c (n_c / N) * (TP_c / n_c) = accuracy.
PAIRED_METRICS = frozenset({"accuracy", "recall_weighted"})
NOT_PAIRED = "skipped: not paired"
MCNEMAR_TEST = "exact one-sided McNemar (binomial test on the discordant rows)"


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
            status=ComparisonStatus.SKIPPED, policy=policy, version=version, metric=metric, rows_excluded=excluded,
            test=MCNEMAR_TEST, margin=margin, alpha=alpha, reason=_skip_reason(policy, version, 0, excluded, min_rows))
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
    return ChampionComparison(status=ComparisonStatus.SKIPPED, policy=ChampionPolicy(policy), version=version,
                              metric=metric, test="none", margin=margin, alpha=alpha, reason=f"skipped: {reason}")


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
