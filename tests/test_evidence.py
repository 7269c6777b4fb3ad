"""The statistics behind the gate's decisions (pipeline/gate/statistics.py, rules.py, comparison.py and
pipeline/training/row_hashes.py): intervals, rows needed,
the gate policies, training-row hashes and the paired comparison with the champion.

Reference values are computed here independently of the module (hand formulas, numerical
likelihood maximisation) or taken from published results, never from the module itself.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binomtest, norm

from pipeline.errors import PipelineError
from pipeline.gate.comparison import NOT_PAIRED, champion_holds, compare_point_values, compare_with_champion
from pipeline.gate.decision import ChampionPolicy, ComparisonStatus, GatePolicy
from pipeline.gate.rules import judge
from pipeline.gate.statistics import (
    mcnemar_p_value,
    paired_difference_interval,
    rows_needed,
    tango_score,
    wilson_interval,
)
from pipeline.outcomes import Verdict
from pipeline.training.row_hashes import row_hashes, rows_not_trained_on

pytestmark = pytest.mark.unit

Z95 = norm.ppf(0.975)
VERSION = "iris-model-20260101-120000"


def wilson_lower_by_hand(correct: float, total: float, z: float = Z95) -> float:
    p = correct / total
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (p + z * z / (2 * total) - spread) / (1 + z * z / total)


def rows(both: int, candidate_only: int, champion_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row correctness of two models with the given 2x2 table of counts."""
    candidate = np.array([True] * both + [True] * candidate_only + [False] * champion_only + [False] * neither)
    champion = np.array([True] * both + [False] * candidate_only + [True] * champion_only + [False] * neither)
    return candidate, champion


# --------------------------------------------------------------------------- one accuracy
def test_wilson_interval_is_the_wilson_score_interval() -> None:
    low, high = wilson_interval(29, 30)
    assert low == pytest.approx(wilson_lower_by_hand(29, 30), abs=1e-12)
    assert high == pytest.approx(1 - wilson_lower_by_hand(1, 30), abs=1e-12)  # the interval is symmetric in k, n-k


def test_rows_needed_at_perfect_accuracy_is_where_n_over_n_plus_z_squared_reaches_the_threshold() -> None:
    # At 100% accuracy the Wilson lower end is n / (n + z^2): >= 0.95 from n = 73, >= 0.90 from n = 35.
    assert rows_needed(1.0, 0.95) == 73
    assert rows_needed(1.0, 0.90) == 35
    for threshold in (0.95, 0.90):
        needed = rows_needed(1.0, threshold)
        for n in range(1, 200):
            assert (wilson_interval(n, n)[0] >= threshold) == (n >= needed), n


def test_rows_needed_agrees_with_scipys_interval_on_whole_rows() -> None:
    # 96% accuracy is a whole number of rows at every multiple of 25 rows, so scipy can check each of them.
    assert rows_needed(0.96, 0.90) == 97  # 1.96^2 * 0.09 / 0.06^2 = 96.04
    assert rows_needed(0.96, 0.95) == 1825  # 1.96^2 * 0.0475 / 0.01^2 = 1824.7, itself a multiple of 25
    for threshold in (0.90, 0.95):
        needed = rows_needed(0.96, threshold)
        for n in range(25, 5001, 25):
            assert (wilson_interval(round(0.96 * n), n)[0] >= threshold) == (n >= needed), (threshold, n)


def test_rows_needed_is_none_at_or_below_the_threshold() -> None:
    assert rows_needed(0.95, 0.95) is None  # at equality the lower end never reaches the threshold
    assert rows_needed(0.90, 0.95) is None
    assert rows_needed(1.0, 1.0) is None


def test_rows_needed_is_none_beyond_the_cap() -> None:
    # 0.01 points above a 95% threshold: 1.959964^2 * 0.95 * 0.05 / 0.0001^2 = 18,246,929.4 rows.
    assert rows_needed(0.9501, 0.95, cap=10**9) == pytest.approx(18_246_930, abs=5)
    assert rows_needed(0.9501, 0.95) is None


def test_rows_needed_falls_as_accuracy_rises_and_rises_with_the_threshold() -> None:
    accuracies = np.linspace(0.9505, 1.0, 400)
    needed = [rows_needed(float(a), 0.95) for a in accuracies]
    assert all(x is not None for x in needed)
    assert all(later <= earlier for earlier, later in zip(needed, needed[1:]))
    thresholds = np.linspace(0.5, 0.97, 200)
    by_threshold = [rows_needed(0.98, float(t)) for t in thresholds]
    assert all(later >= earlier for earlier, later in zip(by_threshold, by_threshold[1:]))


def test_rows_needed_is_one_when_any_row_would_clear_the_threshold() -> None:
    assert rows_needed(0.5, 0.0) == 1


# --------------------------------------------------------------------------- the gate's verdict
@pytest.mark.parametrize(("value", "verdict"), [
    (0.96, Verdict.DEPLOY), (0.95, Verdict.DEPLOY), (0.949, Verdict.HELD), (0.90, Verdict.HELD),
    (0.899, Verdict.REJECTED),
])
def test_point_policy_compares_the_value_with_threshold_and_minimum(value: float, verdict: Verdict) -> None:
    assert judge("accuracy", value, 0.95, 0.90, policy="point").decision is verdict


@pytest.mark.parametrize(("interval", "verdict"), [
    ((0.95, 0.99), Verdict.DEPLOY),  # lower end exactly at the threshold reaches it
    ((0.96, 0.99), Verdict.DEPLOY),
    ((0.94, 0.99), Verdict.HELD),  # a point value of 97% is not enough on its own
    ((0.85, 0.90), Verdict.HELD),  # upper end exactly at the minimum is not below it
    ((0.80, 0.899), Verdict.REJECTED),
])
def test_confident_policy_decides_on_the_interval(interval: tuple[float, float], verdict: Verdict) -> None:
    value = (interval[0] + interval[1]) / 2
    result = judge("accuracy", value, 0.95, 0.90, policy=GatePolicy.CONFIDENT, interval=interval)
    assert result.decision is verdict
    if verdict is Verdict.HELD:
        assert result.reason.startswith("not enough evidence")


def test_confident_policy_holds_a_perfect_score_on_thirty_rows() -> None:
    result = judge("accuracy", 1.0, 0.95, 0.90, policy="confident", interval=wilson_interval(30, 30))
    assert result.decision is Verdict.HELD
    assert "about 73 rows" in result.reason
    point = judge("accuracy", 1.0, 0.95, 0.90, policy="point", interval=wilson_interval(30, 30))
    assert point.decision is Verdict.DEPLOY


def test_confident_policy_without_an_interval_is_refused_by_name() -> None:
    with pytest.raises(PipelineError, match="gate_policy 'confident'.*'f1_weighted'"):
        judge("f1_weighted", 0.97, 0.95, 0.90, policy="confident")


def test_warning_names_the_rows_that_would_settle_it_when_the_interval_straddles_the_threshold() -> None:
    result = judge("accuracy", 29 / 30, 0.95, 0.90, interval=wilson_interval(29, 30))
    assert result.rows_needed == rows_needed(29 / 30, 0.95) == 657
    assert result.warning.endswith("the test set is too small to be sure: about 657 rows would settle it")


def test_warning_has_no_number_when_the_accuracy_is_below_the_threshold() -> None:
    result = judge("accuracy", 28 / 30, 0.95, 0.90, interval=wilson_interval(28, 30))
    assert result.rows_needed is None
    assert result.warning.endswith("the test set is too small to be sure")


def test_no_warning_when_the_interval_clears_the_threshold() -> None:
    result = judge("accuracy", 1.0, 0.95, 0.90, interval=wilson_interval(100, 100))
    assert result.warning is None and result.rows_needed == 73


def test_gate_decision_is_json_ready() -> None:
    data = judge("accuracy", 1.0, 0.95, 0.90, policy="confident", interval=wilson_interval(30, 30)).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["decision"] == "held" and data["policy"] == "confident" and data["rows_needed"] == 73


# --------------------------------------------------------------------------- training-row hashes
IRIS_LIKE = pd.DataFrame({"sepal length (cm)": [5.1, 4.9, 6.3], "petal width (cm)": [0.2, 0.2, 1.8],
                          "target": [0, 0, 2]})
IRIS_COLUMNS = ["sepal length (cm)", "petal width (cm)", "target"]


def test_row_hashes_are_the_same_in_every_run() -> None:
    # Recorded once (pandas 3.1): stored training hashes must still match after a restart or upgrade.
    assert row_hashes(IRIS_LIKE, IRIS_COLUMNS).tolist() == [3112537332500502600, 10558046838260832857,
                                                           16136590711660848836]
    words = pd.DataFrame({"city": ["Oslo", "Lima"], "n": [3, 4], "label": ["yes", "no"]})
    assert row_hashes(words, ["city", "n", "label"]).tolist() == [15017598195529786693, 11506800658947800299]


def test_row_hashes_are_64_bit_one_per_row_and_ignore_the_index() -> None:
    hashes = row_hashes(IRIS_LIKE, IRIS_COLUMNS)
    assert hashes.dtype == np.uint64 and hashes.shape == (3,)
    assert row_hashes(IRIS_LIKE.set_axis([10, 20, 30]), IRIS_COLUMNS).tolist() == hashes.tolist()


def test_row_hashes_follow_pandas_dtypes_integers_of_any_width_alike_floats_apart() -> None:
    as_int64 = row_hashes(pd.DataFrame({"x": np.array([1, 2], dtype=np.int64)}), ["x"])
    as_int32 = row_hashes(pd.DataFrame({"x": np.array([1, 2], dtype=np.int32)}), ["x"])
    as_float = row_hashes(pd.DataFrame({"x": np.array([1.0, 2.0])}), ["x"])
    assert as_int64.tolist() == as_int32.tolist()
    assert not set(as_int64.tolist()) & set(as_float.tolist())


def test_row_hashes_depend_on_column_order() -> None:
    reordered = row_hashes(IRIS_LIKE, list(reversed(IRIS_COLUMNS)))
    assert not set(reordered.tolist()) & set(row_hashes(IRIS_LIKE, IRIS_COLUMNS).tolist())


def test_row_hashes_of_a_missing_column_name_the_column() -> None:
    with pytest.raises(PipelineError, match="'petal length \\(cm\\)' not in the data"):
        row_hashes(IRIS_LIKE, ["petal length (cm)", "target"])


def test_rows_the_champion_trained_on_are_excluded_also_when_repeated() -> None:
    training = row_hashes(IRIS_LIKE.iloc[:2], IRIS_COLUMNS)
    evaluation = pd.concat([IRIS_LIKE, IRIS_LIKE.iloc[[0]]], ignore_index=True)  # row 0 twice, row 1 a duplicate of it
    keep = rows_not_trained_on(row_hashes(evaluation, IRIS_COLUMNS), training)
    assert keep.tolist() == [False, False, True, False]


# --------------------------------------------------------------------------- paired statistics
def test_mcnemar_p_value_is_scipys_one_sided_exact_binomial_test() -> None:
    for b in range(0, 26):
        for c in range(0, 26):
            expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="greater").pvalue
            assert float(mcnemar_p_value(b, c)) == pytest.approx(expected, rel=1e-12, abs=1e-300), (b, c)


def test_tango_interval_matches_the_published_value() -> None:
    # Cavo et al. 2012 in Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables", ch. 8:
    # 6 and 16 discordant of 161 pairs, Tango asymptotic score CI -0.1240 to -0.0054.
    low, high = paired_difference_interval(6, 16, 161)
    assert (round(low, 4), round(high, 4)) == (-0.1240, -0.0054)


def tango_score_by_likelihood(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic with the restricted MLE found numerically (not the closed form)."""
    a_d = n - b - c  # both right or both wrong: their split does not enter the constrained fit of q

    def minus_loglik(q: float) -> float:
        p12, p21 = q + delta, q
        rest = 1 - p12 - p21
        return -(b * math.log(p12) if b else 0) - (c * math.log(p21) if c else 0) - (a_d * math.log(rest) if a_d else 0)

    low, high = max(0.0, -delta) + 1e-15, (1 - delta) / 2 - 1e-15
    q = minimize_scalar(minus_loglik, bounds=(low, high), method="bounded", options={"xatol": 1e-14}).x
    return (b - c - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


def interval_by_bisection(b: int, c: int, n: int) -> tuple[float, float]:
    estimate = (b - c) / n

    def solve(lo: float, hi: float, target: float) -> float:  # the score falls as delta rises
        for _ in range(60):
            mid = (lo + hi) / 2
            if tango_score_by_likelihood(b, c, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    return solve(-1 + 1e-9, estimate, Z95), solve(estimate, 1 - 1e-9, -Z95)


@pytest.mark.parametrize(("b", "c", "n"), [(6, 16, 161), (1, 7, 21), (12, 3, 40), (0, 4, 30), (25, 25, 300)])
def test_tango_interval_matches_an_independent_likelihood_computation(b: int, c: int, n: int) -> None:
    for delta in (-0.3, -0.05, 0.0001, 0.1):
        assert float(tango_score(b, c, n, delta)) == pytest.approx(tango_score_by_likelihood(b, c, n, delta), rel=1e-6)
    expected = interval_by_bisection(b, c, n)
    assert paired_difference_interval(b, c, n) == pytest.approx(expected, abs=1e-6)


def test_tango_score_at_no_difference_is_mcnemars_statistic() -> None:
    assert float(tango_score(12, 3, 40, 0.0)) == pytest.approx((12 - 3) / math.sqrt(15))


def test_interval_without_discordant_rows_is_symmetric_around_zero() -> None:
    low, high = paired_difference_interval(0, 0, 30)
    assert (low, high) == pytest.approx((-Z95 ** 2 / (30 + Z95 ** 2), Z95 ** 2 / (30 + Z95 ** 2)), abs=1e-9)


def test_interval_reaches_the_edge_when_every_row_is_discordant_one_way() -> None:
    assert paired_difference_interval(0, 30, 30)[0] == -1.0
    assert paired_difference_interval(30, 0, 30)[1] == 1.0


# --------------------------------------------------------------------------- the champion comparison
@pytest.mark.parametrize(("table", "margin", "holds"), [
    ((60, 2, 9, 29), 0.0, True),  # candidate 7 points worse: held
    ((60, 5, 5, 30), 0.0, False),  # tie: not held
    ((70, 0, 0, 30), 0.0, False),  # no discordant rows: not held
    ((60, 9, 2, 29), 0.0, False),  # candidate better: not held
    ((60, 4, 5, 31), 0.0, True),  # one row worse with no margin: held
    ((60, 4, 5, 31), 0.01, False),  # one row of 100 worse, exactly at a 1-point margin: not held
    ((71, 0, 29, 0), 0.29, False),  # exactly at 0.29 (which is 28.999...96 rows in binary floating point)
    ((70, 0, 30, 0), 0.29, True),  # one row past the margin
])
def test_not_worse_holds_a_candidate_below_the_champion_by_more_than_the_margin(
        table: tuple[int, int, int, int], margin: float, holds: bool) -> None:
    result = compare_with_champion(*rows(*table), version=VERSION, policy="not_worse", margin=margin)
    assert result.status is ComparisonStatus.COMPARED
    assert result.holds is holds
    assert (result.candidate_only_correct, result.champion_only_correct) == (table[1], table[2])


def test_held_reason_names_the_champion_and_both_numbers() -> None:
    result = compare_with_champion(*rows(60, 2, 9, 29), version=VERSION, policy="not_worse")
    assert result.reason == (f"held: the candidate's accuracy 62.00% against champion {VERSION}'s 69.00% on 100 "
                             f"shared rows: 7.00 points worse, more than the margin of 0.00 points")
    better = compare_with_champion(*rows(60, 6, 4, 30), version=VERSION, policy="better")
    assert better.holds and VERSION in better.reason and "66.00%" in better.reason and "64.00%" in better.reason


@pytest.mark.parametrize(("table", "margin", "alpha", "holds"), [
    ((60, 15, 2, 23), 0.0, 0.05, False),  # ahead by 13 points, p = 0.0012: deploys
    ((60, 6, 4, 30), 0.0, 0.05, True),  # ahead but p = 0.38: held
    ((60, 5, 5, 30), 0.0, 0.05, True),  # tie: held
    ((70, 0, 0, 30), 0.0, 0.05, True),  # no discordant rows, p = 1: held
    ((60, 2, 9, 29), 0.0, 0.05, True),  # worse: held
    ((60, 5, 0, 35), 0.0, 1 / 32, True),  # p = 1/32 exactly at alpha: held
    ((60, 5, 0, 35), 0.0, 0.0313, False),  # p = 1/32 just below alpha: deploys
    ((60, 20, 0, 20), 0.2, 0.05, True),  # ahead by exactly the 20-point margin: held
    ((60, 20, 0, 20), 0.19, 0.05, False),  # past a 19-point margin, p ~ 1e-6: deploys
])
def test_better_deploys_only_when_ahead_by_more_than_the_margin_and_significant(
        table: tuple[int, int, int, int], margin: float, alpha: float, holds: bool) -> None:
    result = compare_with_champion(*rows(*table), version=VERSION, policy="better", margin=margin, alpha=alpha)
    assert result.holds is holds
    assert result.p_value == pytest.approx(
        1.0 if table[1] + table[2] == 0 else binomtest(table[1], table[1] + table[2], alternative="greater").pvalue)


def test_better_says_why_it_held_an_insignificant_lead() -> None:
    result = compare_with_champion(*rows(60, 6, 4, 30), version=VERSION, policy="better")
    assert "ahead by 2.00 points but not significantly" in result.reason
    assert "6 rows only the candidate got right, 4 only the champion" in result.reason


def test_every_rows_excluded_skips_the_comparison() -> None:
    result = compare_with_champion(np.array([], dtype=bool), np.array([], dtype=bool), version=VERSION, excluded=30)
    assert result.status is ComparisonStatus.SKIPPED and result.holds is False
    assert (result.rows_compared, result.rows_excluded) == (0, 30)
    assert result.candidate_value is None and result.p_value is None and result.difference_interval is None
    assert result.reason == (f"skipped: 0 comparable rows, fewer than champion_min_rows 30 "
                             f"(30 evaluation rows excluded: champion {VERSION} was trained on them)")


def test_fewer_than_min_rows_skips_but_still_reports_the_numbers() -> None:
    result = compare_with_champion(*rows(10, 0, 19, 0), version=VERSION, policy="not_worse", excluded=120)
    assert result.status is ComparisonStatus.SKIPPED and result.holds is False
    assert result.rows_compared == 29 and result.rows_excluded == 120
    assert result.champion_only_correct == 19 and result.difference == pytest.approx(-19 / 29)
    assert "fewer than champion_min_rows 30" in result.reason


def test_exactly_min_rows_is_compared() -> None:
    result = compare_with_champion(*rows(10, 0, 20, 0), version=VERSION, policy="not_worse", min_rows=30)
    assert result.status is ComparisonStatus.COMPARED and result.holds is True


def test_policy_off_never_holds() -> None:
    result = compare_with_champion(*rows(10, 0, 90, 0), version=VERSION, policy=ChampionPolicy.OFF)
    assert result.status is ComparisonStatus.SKIPPED and result.holds is False
    assert "champion_policy is off" in result.reason


def test_comparison_reports_difference_with_its_interval_and_is_json_ready() -> None:
    result = compare_with_champion(*rows(120, 6, 16, 19), version=VERSION)
    assert result.difference == pytest.approx(-10 / 161)
    assert result.difference_interval == pytest.approx((-0.1240, -0.0054), abs=5e-5)
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["status"] == "compared" and data["policy"] == "not_worse"
    assert set(data) >= {"version", "metric", "champion_value", "candidate_value", "rows_compared", "rows_excluded",
                         "candidate_only_correct", "champion_only_correct", "p_value", "difference",
                         "difference_interval", "holds", "reason"}


def test_vectorised_rule_agrees_with_the_comparison_of_rows() -> None:
    for b in range(0, 12):
        for c in range(0, 12):
            for policy in ("not_worse", "better"):
                one = compare_with_champion(*rows(40, b, c, 40 - b - c + 20), version=VERSION, policy=policy,
                                            margin=0.02)
                many = champion_holds(np.array([b]), np.array([c]), np.array([100]), policy=policy, margin=0.02,
                                      alpha=0.05)
                assert one.holds is bool(many[0])


def test_rows_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same evaluation rows"):
        compare_with_champion(np.ones(40, dtype=bool), np.ones(39, dtype=bool), version=VERSION)


def test_correctness_must_be_true_or_false() -> None:
    with pytest.raises(ValueError, match="candidate_correct: expected True/False"):
        compare_with_champion(np.full(40, 2), np.ones(40, dtype=bool), version=VERSION)


def test_metrics_not_decided_per_row_are_not_paired_and_compare_point_values() -> None:
    with pytest.raises(ValueError, match="compare_point_values"):
        compare_with_champion(*rows(60, 2, 9, 29), version=VERSION, metric="f1_weighted")
    worse = compare_point_values(0.91, 0.93, version=VERSION, metric="f1_weighted", rows_compared=100)
    assert worse.test == NOT_PAIRED and worse.holds is True and worse.p_value is None
    assert "skipped: not paired" in worse.reason and "91.00%" in worse.reason and "93.00%" in worse.reason
    at_margin = compare_point_values(0.92, 0.93, version=VERSION, metric="f1_weighted", rows_compared=100, margin=0.01)
    assert at_margin.holds is False
    assert compare_point_values(0.94, 0.93, version=VERSION, metric="f1_weighted", rows_compared=100,
                                policy="better").holds is False
    assert compare_point_values(0.935, 0.93, version=VERSION, metric="f1_weighted", rows_compared=100,
                                policy="better", margin=0.01).holds is True
    few = compare_point_values(0.5, 0.93, version=VERSION, metric="f1_weighted", rows_compared=12)
    assert few.status is ComparisonStatus.SKIPPED and few.holds is False


def test_weighted_recall_is_paired_because_it_equals_accuracy() -> None:
    result = compare_with_champion(*rows(60, 2, 9, 29), version=VERSION, metric="recall_weighted")
    assert result.test != NOT_PAIRED and result.holds is True
