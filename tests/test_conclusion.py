"""Keep the tested version or roll back (pipeline/run/conclusion.py), row by row of its table."""
from __future__ import annotations

import pytest

from pipeline.deployment.rollout import BakeOutcome, BakeReport
from pipeline.outcomes import FinalState
from pipeline.run.conclusion import conclude
from pipeline.testing import TestReport as Report

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit

PASSED = Report(checks={"health": {"passed": True}})
FAILED = Report(checks={"health": {"passed": False}}, failures=["health: no answer"])


def bake(outcome: BakeOutcome, reason: str | None = None) -> BakeReport:
    return BakeReport("CANARY", 60.0, outcome=outcome, reason=reason)


def test_a_version_that_passed_and_took_all_traffic_at_once_is_kept():
    conclusion = conclude(PASSED, None, rollback_on_failure=True)
    assert conclusion.keep and not conclusion.failed and conclusion.reason is None


@pytest.mark.parametrize("outcome", [BakeOutcome.PROMOTE, BakeOutcome.SKIPPED])
def test_a_bake_that_promotes_keeps_the_version_with_its_verdict_as_the_reason(outcome):
    conclusion = conclude(PASSED, bake(outcome, "every interval passed"), rollback_on_failure=True)
    assert conclusion.keep and conclusion.reason == "every interval passed"


def test_a_breached_bake_rolls_back_as_a_failed_check():
    conclusion = conclude(PASSED, bake(BakeOutcome.BREACH, "error rate: 5% against 0%"), rollback_on_failure=True)
    assert not conclusion.keep and conclusion.tests_failed and conclusion.final_state is None
    assert conclusion.reason == "error rate: 5% against 0%"


def test_too_little_traffic_is_never_a_pass_the_serving_version_is_kept():
    conclusion = conclude(PASSED, bake(BakeOutcome.INSUFFICIENT_TRAFFIC, "insufficient traffic: 3 requests"),
                          rollback_on_failure=False)
    assert not conclusion.keep and not conclusion.tests_failed
    assert conclusion.final_state == FinalState.KEPT_PREVIOUS and conclusion.reason.startswith("insufficient")


def test_failed_tests_roll_back_with_their_reason():
    conclusion = conclude(FAILED, None, rollback_on_failure=True)
    assert not conclusion.keep and conclusion.tests_failed and conclusion.reason == "health: no answer"


def test_failed_tests_with_rollback_off_keep_the_version_marked_failed():
    conclusion = conclude(FAILED, None, rollback_on_failure=False)
    assert conclusion.keep and conclusion.failed and conclusion.reason == "health: no answer"


def test_an_empty_test_report_is_a_failure_never_a_pass():
    conclusion = conclude(Report(), None, rollback_on_failure=True)
    assert not conclusion.keep and conclusion.reason == "endpoint tests failed"
