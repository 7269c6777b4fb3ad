"""Has live traffic moved away from what the model was trained on, and which feature moved?

Every feature gets three tests against the baseline, and the predictions one:

- distribution: the two-sample Kolmogorov-Smirnov test against the baseline's reference
  sample of training rows, with the PSI on the baseline's decile buckets as the size of
  the move;
- missing values: Fisher's exact test on the missing-value rate, live against training;
- out of range: values below the training minimum or above its maximum, against the
  ``2 / (N + 1)`` a new value from the training distribution has of landing there
  (one-sided binomial test);
- predictions: the chi-square test of homogeneity of the predicted classes against the
  training class distribution, with the largest difference in a class's share as the size.

False alarms are the complaint about monitors, so they are controlled, not hoped away:

1. One run is one family of tests: Holm's step-down procedure over all of them keeps the
   chance that an undrifted run reports *anything* at ``drift_alpha``.
2. A test that rejects counts only when its effect clears a floor (PSI, a rate change,
   a share of out-of-range values): on a large sample a tiny, harmless shift is
   "significant", and that is not worth an alarm.
3. Repeated rows are not new evidence. Clients retry, load tests replay the same rows: a
   sample of 500 requests drawn from 30 distinct rows carries the information of about
   30 rows, not 500. Every test uses the Kish effective sample size of the traffic
   (``n^2 / sum of c^2`` over the counts ``c`` of identical rows): ``n`` when all rows
   differ, about the number of distinct rows when they are replayed. Without this, replayed
   held-out rows -- the most common "undrifted traffic" there is -- alarm on every run.

Too little traffic is ``insufficient_data``, never ``no_drift``: fewer than ``monitor_min_rows``
captured rows, or an effective sample too small for the tests to see a feature move by one
standard deviation (``rows_to_see_a_shift``; ``monitor_min_rows`` if that is smaller). 120
requests replaying one row are one row of evidence, whatever their number.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats

from pipeline.monitoring.baseline import Baseline, FeatureBaseline, class_key
from pipeline.monitoring.drift_tests import (
    Repeats,
    holm_adjusted,
    ks_test,
    missing_p,
    out_of_range_p,
    psi,
    repeated_rows,
    rows_to_see_a_shift,
)
from pipeline.monitoring.thresholds import DriftThresholds

NO_DRIFT = "no_drift"
DRIFT = "drift"
INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    moved: bool
    reasons: tuple[str, ...]  # "distribution", "missing_values", "out_of_range"
    present: int  # live values that were not missing
    psi: float | None
    ks_statistic: float | None
    ks_p_value: float | None
    ks_p_adjusted: float | None  # Holm-adjusted over the whole run
    missing_rate: float
    baseline_missing_rate: float
    missing_p_value: float
    missing_p_adjusted: float
    out_of_range_rate: float | None
    out_of_range_p_value: float | None
    out_of_range_p_adjusted: float | None
    mean: float | None
    baseline_mean: float | None
    mean_shift_std: float | None  # (live mean - training mean) / training std


@dataclass(frozen=True)
class PredictionDrift:
    compared: bool
    predictions: int
    moved: bool = False
    distribution: dict[str, float] = field(default_factory=dict)
    baseline_distribution: dict[str, float] = field(default_factory=dict)
    linf_distance: float | None = None
    chi2_statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    unknown_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftReport:
    verdict: str  # no_drift, drift or insufficient_data
    reason: str
    rows: int  # captured rows, of any width
    rows_compared: int  # rows of the baseline's width
    wrong_width_rows: int
    distinct_rows: int
    effective_rows: float  # Kish effective sample size of the compared rows
    tests: int  # size of the Holm family
    features: tuple[FeatureDrift, ...]  # worst first
    prediction: PredictionDrift
    violations: tuple[dict[str, str], ...]  # SageMaker's constraint_violations shape
    thresholds: DriftThresholds
    wrong_widths: dict[int, int] = field(default_factory=dict)  # width -> rows of it, when known
    min_effective_rows: int = 0  # the effective sample this run needed for a verdict (0: not reached)

    @property
    def moved_features(self) -> list[str]:
        return [feature.name for feature in self.features if feature.moved]

    def to_dict(self) -> dict[str, Any]:
        data = {
            "verdict": self.verdict,
            "reason": self.reason,
            "moved_features": self.moved_features,
            "rows": self.rows,
            "rows_compared": self.rows_compared,
            "wrong_width_rows": self.wrong_width_rows,
            "wrong_widths": {str(width): count for width, count in sorted(self.wrong_widths.items())},
            "distinct_rows": self.distinct_rows,
            "effective_rows": self.effective_rows,
            "min_effective_rows": self.min_effective_rows,
            "tests": self.tests,
            "features": [asdict(feature) for feature in self.features],
            "prediction": asdict(self.prediction),
            "violations": [dict(v) for v in self.violations],
            "thresholds": self.thresholds.to_dict(),
        }
        return _json_ready(data)

    def summary_table(self, moved_only: bool = False) -> str:
        """The features, worst first, as a fixed-width text table for a terminal."""
        header = ("feature", "moved", "PSI", "KS p (Holm)", "missing", "out of range", "mean shift")
        lines = []
        for feature in self.features:
            if moved_only and not feature.moved:
                continue
            lines.append((
                feature.name,
                ",".join(feature.reasons) if feature.moved else "-",
                _fmt(feature.psi, "{:.3f}"),
                _fmt(feature.ks_p_adjusted, "{:.2g}"),
                f"{feature.missing_rate:.1%}",
                _fmt(feature.out_of_range_rate, "{:.1%}"),
                _fmt(feature.mean_shift_std, "{:+.2f} std"),
            ))
        widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(header)]
        text = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
        text += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in lines]
        return "\n".join(line.rstrip() for line in text)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    return value


class LiveTraffic:
    """Rows and predictions gathered from many decoded records, kept in a few large blocks
    (a million one-row records are not a million small arrays) and split by width."""

    _FLUSH = 4096

    def __init__(self, width: int) -> None:
        self.width = width
        self.wrong_widths: Counter[int] = Counter()  # width -> rows of that width that is not ``width``
        self.predictions: list[Any] = []
        self._blocks: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []

    @property
    def wrong_width_rows(self) -> int:
        return sum(self.wrong_widths.values())

    def add(self, rows: np.ndarray | Sequence[Sequence[float]], predictions: Sequence[Any] = ()) -> None:
        good, wrong = _split_by_width(rows, self.width)
        self.wrong_widths.update(wrong)
        if good.shape[0]:
            self._pending.append(good)
            if len(self._pending) >= self._FLUSH:
                self._flush()
        self.predictions.extend(predictions)

    def _flush(self) -> None:
        if self._pending:
            self._blocks.append(np.concatenate(self._pending))
            self._pending = []

    @property
    def rows(self) -> np.ndarray:
        self._flush()
        if len(self._blocks) > 1:
            self._blocks = [np.concatenate(self._blocks)]
        return self._blocks[0] if self._blocks else np.empty((0, self.width))


def _split_by_width(rows: np.ndarray | Sequence[Sequence[float]], width: int) -> tuple[np.ndarray, Counter[int]]:
    """The rows of ``width`` as a float matrix, and how many rows had each other width."""
    if isinstance(rows, np.ndarray) and rows.ndim != 2 and rows.dtype != object:
        raise ValueError(f"rows must be a matrix (rows x features), got an array of shape {rows.shape}")
    if isinstance(rows, np.ndarray) and rows.ndim == 2 and rows.dtype != object:
        if rows.shape[1] == width:
            return rows.astype(np.float64, copy=False), Counter()
        return np.empty((0, width)), Counter({rows.shape[1]: rows.shape[0]} if rows.shape[0] else {})
    good = [row for row in rows if len(row) == width]
    wrong = Counter(len(row) for row in rows if len(row) != width)
    matrix = np.array(good, dtype=np.float64).reshape(len(good), width)
    return matrix, wrong


def _wrong_width_story(wrong: int, total: int, widths: Mapping[int, int], width: int) -> str:
    """What rows of the wrong width mean: clients send rows the model cannot take."""
    sent = " and ".join(f"{w} values ({count:,})" if len(widths) > 1 else f"{w} values"
                        for w, count in sorted(widths.items(), key=lambda item: (-item[1], item[0]))[:3])
    return (f"{wrong:,} of {total:,} captured rows ({wrong / total:.1%}) have the wrong width: clients send rows of "
            f"{sent or 'another width'} where the model takes {width} features")


@dataclass
class _FeatureTests:
    base: FeatureBaseline
    present: int
    missing_rate: float
    missing_p: float
    psi: float | None = None
    ks_statistic: float | None = None
    ks_p: float | None = None
    out_of_range_rate: float | None = None
    out_of_range_p: float | None = None
    mean: float | None = None


def _test_feature(base: FeatureBaseline, reference: np.ndarray, column: np.ndarray, repeats: Repeats) -> _FeatureTests:
    n = column.size
    effective = repeats.effective
    missing_mask = np.isnan(column)
    values = column[~missing_mask]
    missing_rate = float(missing_mask.mean())
    tests = _FeatureTests(base, int(values.size), missing_rate, missing_p(missing_rate, effective, base))
    if values.size == 0 or base.present == 0:
        return tests
    live_effective = effective * values.size / n
    counts = np.bincount(np.searchsorted(np.asarray(base.bin_edges), values, side="right"),
                         minlength=len(base.bin_counts))
    tests.psi = psi(base.bin_counts, counts)
    reference = np.sort(reference[~np.isnan(reference)])
    if reference.size:
        tests.ks_statistic, tests.ks_p = ks_test(reference, values, live_effective)
    tests.out_of_range_rate = float(((values < base.min) | (values > base.max)).mean())
    # A rare-event test: a replayed out-of-range row is one event, not one per replay, so it
    # counts distinct rows (the Kish average cannot say *which* rows were replayed).
    distinct = column[repeats.distinct_index]
    distinct = distinct[~np.isnan(distinct)]
    outside = int(((distinct < base.min) | (distinct > base.max)).sum())
    tests.out_of_range_p = out_of_range_p(outside, distinct.size, min(1.0, 2.0 / (base.present + 1)))
    tests.mean = float(values.mean())
    return tests


def _test_predictions(baseline: Baseline, predictions: Sequence[Any],
                      scale: float) -> tuple[PredictionDrift, float | None]:
    if not predictions or not baseline.class_counts:
        return PredictionDrift(compared=False, predictions=len(predictions)), None
    live = Counter(class_key(p) for p in predictions)
    classes = list(baseline.class_counts) + sorted(set(live) - set(baseline.class_counts))
    base_counts = np.array([baseline.class_counts.get(c, 0) for c in classes], dtype=np.float64)
    live_counts = np.array([live.get(c, 0) for c in classes], dtype=np.float64)
    base_share = base_counts / base_counts.sum()
    live_share = live_counts / live_counts.sum()
    table = np.vstack([live_counts * scale, base_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        statistic, p_value = 0.0, 1.0
    else:
        result = stats.chi2_contingency(table)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    drift = PredictionDrift(
        compared=True,
        predictions=len(predictions),
        distribution={c: float(s) for c, s in zip(classes, live_share)},
        baseline_distribution={c: float(s) for c, s in zip(classes, base_share)},
        linf_distance=float(np.abs(live_share - base_share).max()),
        chi2_statistic=statistic,
        p_value=p_value,
        unknown_classes=tuple(c for c in classes if c not in baseline.class_counts),
    )
    return drift, p_value


def detect_drift(
    baseline: Baseline,
    rows: np.ndarray | Sequence[Sequence[float]],
    predictions: Sequence[Any],
    thresholds: DriftThresholds,
    wrong_width_rows: int | Mapping[int, int] = 0,
) -> DriftReport:
    """Compare live rows (and the predictions made for them) with the baseline.

    ``rows``: a float matrix, or a sequence of rows of any widths; rows whose width is not
    the baseline's are counted (plus ``wrong_width_rows`` counted earlier: a count, or rows by
    width as ``LiveTraffic.wrong_widths`` has them) and left out of the comparison. NaN is a
    missing value.
    """
    good, widths = _split_by_width(rows, baseline.width)
    if isinstance(wrong_width_rows, Mapping):
        widths.update(wrong_width_rows)
        unknown_widths = 0
    else:
        unknown_widths = wrong_width_rows
    wrong = sum(widths.values()) + unknown_widths
    total = good.shape[0] + wrong
    wrong_rate = wrong / total if total else 0.0
    violations: list[dict[str, str]] = []
    wrong_width_story = _wrong_width_story(wrong, total, {} if unknown_widths else widths, baseline.width) \
        if wrong else ""
    wide = wrong_rate > thresholds.drift_wrong_width_threshold
    if wide:
        violations.append({
            "feature_name": "",
            "constraint_check_type": "column_count_check",
            "description": f"{wrong_width_story} (threshold {thresholds.drift_wrong_width_threshold:.1%})",
        })
    common = dict(rows=total, rows_compared=good.shape[0], wrong_width_rows=wrong, thresholds=thresholds,
                  wrong_widths=dict(widths), prediction=PredictionDrift(compared=False, predictions=len(predictions)))
    if total < thresholds.monitor_min_rows or good.shape[0] < thresholds.monitor_min_rows:
        if total < thresholds.monitor_min_rows:
            verdict, reason = INSUFFICIENT_DATA, (f"only {total} captured rows; monitor_min_rows is "
                                                  f"{thresholds.monitor_min_rows}")
        elif wide:  # the rows that could be compared are too few *because* clients send the wrong width
            verdict, reason = DRIFT, wrong_width_story + (
                f"; the {good.shape[0]:,} rows of the right width are too few to compare feature by feature"
                if good.shape[0] else "; no row has the model's width")
        else:
            verdict, reason = INSUFFICIENT_DATA, (f"only {good.shape[0]} of {total} captured rows have the baseline's "
                                                  f"{baseline.width} features; monitor_min_rows is "
                                                  f"{thresholds.monitor_min_rows}")
        return DriftReport(verdict=verdict, reason=reason, distinct_rows=0, effective_rows=0.0, tests=0, features=(),
                           violations=tuple(violations), **common)

    repeats = repeated_rows(good)
    per_feature = [
        _test_feature(base, baseline.reference_sample[:, index], good[:, index], repeats)
        for index, base in enumerate(baseline.features)
    ]
    prediction, prediction_p = _test_predictions(baseline, predictions, repeats.effective / good.shape[0])

    # One Holm family: every test of every feature, and the predictions.
    family: list[float] = []
    slots: list[tuple[int, str]] = []
    for index, tests in enumerate(per_feature):
        for kind, p in (("ks", tests.ks_p), ("missing", tests.missing_p), ("range", tests.out_of_range_p)):
            if p is not None:
                family.append(p)
                slots.append((index, kind))
    if prediction_p is not None:
        family.append(prediction_p)
        slots.append((-1, "prediction"))
    # Too little evidence for a verdict: the effective sample (replays counted once) must be large enough for the
    # run's KS tests to see a feature move by one standard deviation, or reach monitor_min_rows if that is smaller.
    to_see = rows_to_see_a_shift(baseline.reference_sample.shape[0], len(family), thresholds.drift_alpha)
    needed = min(thresholds.monitor_min_rows, to_see)
    if repeats.effective < needed - 1e-9:
        reason = (f"{good.shape[0]:,} captured rows but only {repeats.effective:.0f} effective, from "
                  f"{repeats.distinct:,} distinct (a repeated row is not new evidence); " +
                  (f"the tests need {needed} effective rows to see a feature move by one standard deviation"
                   if needed == to_see else f"monitor_min_rows is {needed}"))
        verdict = DRIFT if wide else INSUFFICIENT_DATA
        if wide:
            reason = f"{wrong_width_story}; {reason}"
        return DriftReport(verdict=verdict, reason=reason, distinct_rows=repeats.distinct,
                           effective_rows=repeats.effective, tests=0, features=(), violations=tuple(violations),
                           min_effective_rows=needed, **{**common, "prediction": prediction})
    adjusted_values = holm_adjusted(family)
    adjusted: dict[tuple[int, str], float] = dict(zip(slots, adjusted_values.tolist()))
    alpha = thresholds.drift_alpha

    features = []
    for index, tests in enumerate(per_feature):
        base = tests.base
        reasons = []
        ks_adj = adjusted.get((index, "ks"))
        if ks_adj is not None and ks_adj <= alpha and tests.psi is not None \
                and tests.psi >= thresholds.drift_psi_threshold:
            reasons.append("distribution")
        missing_adj = adjusted[(index, "missing")]
        missing_change = abs(tests.missing_rate - base.missing_rate)
        if missing_adj <= alpha and missing_change >= thresholds.drift_missing_rate_threshold:
            reasons.append("missing_values")
        range_adj = adjusted.get((index, "range"))
        if range_adj is not None and range_adj <= alpha and tests.out_of_range_rate is not None \
                and tests.out_of_range_rate >= thresholds.drift_out_of_range_threshold:
            reasons.append("out_of_range")
        shift = None
        if tests.mean is not None and base.mean is not None and base.std:
            shift = (tests.mean - base.mean) / base.std
        features.append(FeatureDrift(
            name=base.name, moved=bool(reasons), reasons=tuple(reasons), present=tests.present,
            psi=tests.psi, ks_statistic=tests.ks_statistic, ks_p_value=tests.ks_p, ks_p_adjusted=ks_adj,
            missing_rate=tests.missing_rate, baseline_missing_rate=base.missing_rate,
            missing_p_value=tests.missing_p, missing_p_adjusted=missing_adj,
            out_of_range_rate=tests.out_of_range_rate, out_of_range_p_value=tests.out_of_range_p,
            out_of_range_p_adjusted=range_adj, mean=tests.mean, baseline_mean=base.mean, mean_shift_std=shift,
        ))
        violations.extend(_feature_violations(features[-1], thresholds))
    # Worst first: moved features by the size of the move; the others by the evidence against
    # them (the PSI of an unmoved feature is mostly noise when the effective sample is small).
    features.sort(key=lambda f: (0, -(f.psi or 0.0), f.name) if f.moved else
                  (1, 1.0 if f.ks_p_value is None else f.ks_p_value, f.name))

    if prediction.compared:
        prediction_adj = adjusted[(-1, "prediction")]
        moved = prediction_adj <= alpha and (prediction.linf_distance or 0.0) >= thresholds.drift_prediction_threshold
        prediction = replace(prediction, p_adjusted=prediction_adj, moved=moved)
        if moved:
            violations.append({
                "feature_name": "",
                "constraint_check_type": "prediction_drift_check",
                "description": f"predicted classes moved: largest change of a class's share "
                               f"{prediction.linf_distance:.3f} (threshold {thresholds.drift_prediction_threshold}), "
                               f"chi-square p={prediction_adj:.2g} after Holm",
            })

    moved_names = [f.name for f in features if f.moved]
    verdict = DRIFT if violations else NO_DRIFT
    if verdict == NO_DRIFT:
        reason = (f"no feature moved ({len(family)} tests on {good.shape[0]} rows, {repeats.effective:.0f} "
                  f"effective; family-wise alpha {alpha})")
    else:
        parts = []
        if moved_names:
            parts.append(f"{len(moved_names)} of {len(features)} features moved: {', '.join(moved_names)}")
        if prediction.moved:
            parts.append("predicted classes moved")
        if wide:
            parts.append(wrong_width_story)
        reason = "; ".join(parts)
    return DriftReport(verdict=verdict, reason=reason, distinct_rows=repeats.distinct, effective_rows=repeats.effective,
                       tests=len(family), features=tuple(features), violations=tuple(violations),
                       min_effective_rows=needed, **{**common, "prediction": prediction})


def _feature_violations(feature: FeatureDrift, thresholds: DriftThresholds) -> list[dict[str, str]]:
    found = []
    if "distribution" in feature.reasons:
        found.append({"feature_name": feature.name, "constraint_check_type": "baseline_drift_check",
                      "description": f"distribution moved: PSI {feature.psi:.3f} (threshold "
                                     f"{thresholds.drift_psi_threshold}), KS p={feature.ks_p_adjusted:.2g} after Holm"})
    if "missing_values" in feature.reasons:
        found.append({"feature_name": feature.name, "constraint_check_type": "completeness_check",
                      "description": f"missing values {feature.missing_rate:.1%} against "
                                     f"{feature.baseline_missing_rate:.1%} at training"})
    if "out_of_range" in feature.reasons:
        found.append({"feature_name": feature.name, "constraint_check_type": "out_of_range_check",
                      "description": f"{feature.out_of_range_rate:.1%} of the values outside the training range"})
    return found
