"""The accuracy gate's table, row by row and at each boundary (no process, no file)."""
from __future__ import annotations

import pytest

from pipeline.config import MODEL_TYPES, PipelineConfig
from pipeline.container.train import ESTIMATORS
from pipeline.errors import PipelineError
from pipeline.gate.rules import Gate
from pipeline.outcomes import Verdict

pytestmark = pytest.mark.unit


def _decide(metrics: dict, explicit_request: bool = False, **settings) -> Verdict:
    config = PipelineConfig.model_validate({"accuracy_threshold": 0.95, "minimum_accuracy": 0.90, **settings})
    return Gate(config, explicit_request=explicit_request).decide(metrics).decision


@pytest.mark.parametrize(("accuracy", "verdict"), [
    (0.8999, Verdict.REJECTED),
    (0.90, Verdict.HELD),  # at the minimum: held, not rejected
    (0.9499, Verdict.HELD),
    (0.95, Verdict.DEPLOY),  # at the threshold: deployed
    (1.0, Verdict.DEPLOY),
])
def test_the_metric_against_the_minimum_and_the_threshold(accuracy, verdict):
    assert _decide({"accuracy": accuracy}) == verdict


def test_a_passing_model_is_approved_not_deployed_when_auto_deploy_is_off():
    assert _decide({"accuracy": 0.97}, auto_deploy_enabled=False) == Verdict.APPROVED


def test_an_explicit_deployment_deploys_a_passing_model_whatever_auto_deploy_says():
    assert _decide({"accuracy": 0.97}, explicit_request=True, auto_deploy_enabled=False) == Verdict.DEPLOY


def test_an_explicit_deployment_still_holds_and_rejects():
    assert _decide({"accuracy": 0.92}, explicit_request=True) == Verdict.HELD
    assert _decide({"accuracy": 0.5}, explicit_request=True) == Verdict.REJECTED


@pytest.mark.parametrize(("accuracy", "no_skill", "verdict"), [
    (0.99, 0.99, Verdict.HELD),  # no better than always guessing the most frequent class
    (0.99, 0.995, Verdict.HELD),
    (0.99, 0.98, Verdict.DEPLOY),
])
def test_a_model_must_beat_the_no_skill_baseline(accuracy, no_skill, verdict):
    assert _decide({"accuracy": accuracy, "no_skill_accuracy": no_skill}) == verdict


def test_below_the_minimum_is_rejected_even_when_it_also_fails_the_no_skill_baseline():
    assert _decide({"accuracy": 0.5, "no_skill_accuracy": 0.6}) == Verdict.REJECTED


def test_another_gate_metric_is_compared_and_the_no_skill_rule_still_reads_accuracy():
    assert _decide({"accuracy": 0.99, "f1_weighted": 0.93}, gate_metric="f1_weighted") == Verdict.HELD
    assert _decide({"accuracy": 0.99, "no_skill_accuracy": 0.99, "f1_weighted": 0.99},
                   gate_metric="f1_weighted") == Verdict.HELD


@pytest.mark.parametrize("metrics", [{"accuracy": 0.97}, {"accuracy": 0.97, "f1_weighted": "high"},
                                     {"accuracy": 0.97, "f1_weighted": 1.5}, {"accuracy": 0.97, "f1_weighted": True}])
def test_a_gate_metric_that_is_not_an_evaluated_score_is_refused_naming_the_available_ones(metrics):
    with pytest.raises(PipelineError, match=r"'f1_weighted' is not an evaluated score.*available: accuracy"):
        Gate(PipelineConfig(gate_metric="f1_weighted")).decide(metrics)


@pytest.mark.parametrize("name", ["cv_std", "test_size", "train_size", "no_skill_accuracy"])
def test_numbers_that_are_not_scores_of_the_model_cannot_be_gated_on(name):
    with pytest.raises(PipelineError, match="is not an evaluated score"):
        Gate(PipelineConfig(gate_metric=name)).decide({"accuracy": 0.97, name: 0.5})


def test_an_interval_that_straddles_the_threshold_warns_that_the_test_set_is_too_small():
    config = PipelineConfig(accuracy_threshold=0.95, minimum_accuracy=0.9)
    decision = Gate(config).decide({"accuracy": 0.9667, "accuracy_ci95": [0.83, 0.99]})
    assert decision.decision == Verdict.DEPLOY and "test set is too small to be sure" in decision.warning
    assert Gate(config).decide({"accuracy": 0.99, "accuracy_ci95": [0.96, 1.0]}).warning is None


def test_the_reason_names_the_metric_and_the_numbers():
    decision = Gate(PipelineConfig()).decide({"accuracy": 0.92})
    assert decision.reason == "accuracy 92.00% is below the deploy threshold 95.00% (minimum 90.00%)"


def test_the_model_types_the_config_accepts_are_the_ones_training_builds():
    assert tuple(ESTIMATORS) == MODEL_TYPES
