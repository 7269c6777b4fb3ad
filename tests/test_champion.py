"""Every candidate is compared with the version it would replace, on the same rows, through the real CLI."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import requests
from sklearn.datasets import load_breast_cancer, make_classification

from pipeline.config import PipelineConfig
from pipeline.gate.comparison import skipped_comparison
from pipeline.gate.decision import ChampionComparison, ComparisonStatus
from pipeline.gate.rules import Gate
from pipeline.outcomes import Verdict
from pipeline.state.store import DeploymentStore

LOW_BAR = ["--accuracy-threshold", "0.7", "--minimum-accuracy", "0.6"]


@pytest.fixture
def cancer(workdir: Path) -> list[str]:
    """scikit-learn's breast-cancer data as a CSV with a `diagnosis` label (114 held-out rows)."""
    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    frame.to_csv("cancer.csv", index=False)
    return ["--dataset", "cancer.csv", "--label-column", "diagnosis", *LOW_BAR]


@pytest.fixture
def synthetic(workdir: Path) -> list[str]:
    """2,000 rows a random forest learns much better than a logistic regression (400 held out)."""
    features, labels = make_classification(n_samples=2000, n_features=8, n_informative=5, random_state=0)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(8)]).assign(target=labels)
    frame.to_csv("synthetic.csv", index=False)
    return ["--dataset", "synthetic.csv", *LOW_BAR]


def _champion(pipeline) -> dict:
    return pipeline.results()["gate"]["champion"]


def _serving(pipeline_results: dict) -> str:
    return requests.get(f"{pipeline_results['summary']['endpoint_url']}/ping", timeout=5).headers["X-Model-Version"]


def test_the_first_deployment_has_no_champion(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    champion = _champion(pipeline)
    assert champion["status"] == "skipped" and champion["reason"] == "skipped: no serving version"


def test_a_worse_candidate_is_held_and_the_champion_keeps_serving(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    first = pipeline.results()
    result = pipeline(*cancer, "--set", 'hyperparameters={"C": 0.003}')
    assert result.exit_code == 3
    champion, gate = _champion(pipeline), pipeline.results()["gate"]
    assert gate["decision"] == "held" and champion["status"] == "compared" and champion["holds"] is True
    version = first["summary"]["endpoint_version"]
    assert champion["version"] == version and version in gate["reason"]
    for value in (champion["candidate_value"], champion["champion_value"]):
        assert f"{value:.2%}" in gate["reason"]
    assert champion["rows_compared"] == 114 and champion["rows_excluded"] == 0
    assert champion["champion_only_correct"] > champion["candidate_only_correct"]
    low, high = champion["difference_interval"]
    assert low <= champion["difference"] <= high < 0.05 and 0 < champion["p_value"] <= 1
    assert _serving(first) == version
    assert "Champion comparison: held" in result.output


def test_an_identical_retrain_deploys(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    assert pipeline(*cancer).exit_code == 0
    champion = _champion(pipeline)
    assert champion["status"] == "compared" and champion["difference"] == 0 and champion["holds"] is False


def test_better_needs_a_significant_improvement(pipeline, synthetic):
    assert pipeline(*synthetic).exit_code == 0  # logistic regression
    assert pipeline(*synthetic, "--set", "champion_policy=better").exit_code == 3  # the same again: not better
    assert "not ahead by more than the margin" in _champion(pipeline)["reason"]
    assert pipeline(*synthetic, "--model-type", "random_forest", "--set", "champion_policy=better").exit_code == 0
    champion = _champion(pipeline)
    assert champion["holds"] is False and champion["p_value"] < 0.05 and champion["difference"] > 0


def test_champion_policy_off_lets_a_worse_model_replace_the_champion(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    assert pipeline(*cancer, "--set", 'hyperparameters={"C": 0.003}', "--set", "champion_policy=off").exit_code == 0
    assert _champion(pipeline)["reason"] == "skipped: champion_policy is off"


def test_rows_the_champion_trained_on_are_excluded(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    assert pipeline(*cancer, "--random-seed", "7").exit_code in (0, 3)  # another split: it shares training rows
    champion = _champion(pipeline)
    assert champion["rows_excluded"] > 0 and champion["rows_compared"] + champion["rows_excluded"] == 114


def test_too_few_comparable_rows_skip_the_comparison(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    assert pipeline(*cancer, "--set", "champion_min_rows=200").exit_code == 0
    champion = _champion(pipeline)
    assert champion["status"] == "skipped" and "fewer than champion_min_rows" in champion["reason"]
    assert champion["rows_compared"] == 114


def test_a_champion_with_other_features_is_skipped_with_a_warning(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    pd.read_csv("cancer.csv").drop(columns=["mean_radius"]).to_csv("fewer.csv", index=False)
    # Allowed to change the endpoint's inputs (else the contract check holds it): the absolute gate decides alone.
    result = pipeline(*cancer, "--dataset", "fewer.csv", "--endpoint-name", "cancer-model", "--allow-contract-change")
    assert result.exit_code == 0
    champion, gate = _champion(pipeline), pipeline.results()["gate"]
    assert champion["status"] == "skipped" and "features differ" in champion["reason"]
    assert "not compared" in gate["warning"]


def test_a_champion_that_cannot_be_loaded_is_skipped_with_a_warning(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    model = Path(f".mlops/jobs/{job}/model/model.joblib")
    model.write_bytes(model.read_bytes() + b"changed")
    assert pipeline(*cancer, "--mode", "training").exit_code == 0
    champion, gate = _champion(pipeline), pipeline.results()["gate"]
    assert champion["status"] == "skipped" and "cannot be loaded" in champion["reason"]
    assert "not compared" in gate["warning"] and gate["decision"] == "deploy"


def test_deployment_mode_compares_with_the_champion_serving_at_deployment_time(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    assert pipeline(*cancer, "--mode", "training").exit_code == 0
    candidate = pipeline.results()["summary"]["training_job"]
    assert pipeline(*cancer).exit_code == 0
    now_serving = pipeline.results()["summary"]["endpoint_version"]
    assert pipeline("--mode", "deployment", "--training-job", candidate, "--endpoint-name", "cancer-model",
                    *LOW_BAR).exit_code == 0
    assert _champion(pipeline)["version"] == now_serving


def test_a_rollback_is_never_gated(pipeline, cancer):
    assert pipeline(*cancer).exit_code == 0
    assert pipeline(*cancer, "--set", 'hyperparameters={"C": 0.003}', "--set", "champion_policy=off").exit_code == 0
    from click.testing import CliRunner

    from pipeline.cli import cli

    assert CliRunner().invoke(cli, ["rollback", "--endpoint-name", "cancer-model"]).exit_code == 0
    assert DeploymentStore(".mlops").deployments("cancer-model")[0]["status"] == "deployed"


def test_the_comparison_reaches_the_ci_reports(pipeline, cancer, workdir):
    assert pipeline(*cancer).exit_code == 0
    assert pipeline(*cancer, "--set", 'hyperparameters={"C": 0.003}', "--junit-xml", "junit.xml",
                    "--dotenv-file", "ci.env", "--metrics-file", "metrics.txt").exit_code == 3
    junit = Path("junit.xml").read_text()
    assert 'name="champion comparison"' in junit and "held: the candidate" in junit
    dotenv = dict(line.split("=", 1) for line in Path("ci.env").read_text().splitlines())
    assert dotenv["MLOPS_CHAMPION_STATUS"] == "compared" and dotenv["MLOPS_CHAMPION_VERSION"]
    assert "mlops_champion_difference" in Path("metrics.txt").read_text()


# --------------------------------------------------------------------------- the gate's table, with a champion
def _comparison(holds: bool) -> ChampionComparison:
    return ChampionComparison(status=ComparisonStatus.COMPARED, policy="not_worse", version="v1", metric="accuracy",
                              champion_value=0.97, candidate_value=0.95, rows_compared=100, rows_excluded=0,
                              candidate_only_correct=1, champion_only_correct=3, p_value=0.9, difference=-0.02,
                              difference_interval=(-0.06, 0.02), test="mcnemar", margin=0.0, alpha=0.05, holds=holds,
                              reason="held: worse" if holds else "not worse")


@pytest.mark.parametrize(("accuracy", "holds", "verdict"), [
    (0.96, True, Verdict.HELD),  # clears the bar, the champion holds it
    (0.96, False, Verdict.DEPLOY),
    (0.92, False, Verdict.HELD),  # below the bar: the bar's reason, not the champion's
    (0.80, True, Verdict.REJECTED),
])
def test_the_champion_holds_only_a_candidate_that_clears_the_bar(accuracy, holds, verdict):
    decision = Gate(PipelineConfig()).decide({"accuracy": accuracy}, _comparison(holds))
    assert decision.decision == verdict
    assert (decision.reason == "worse") == (verdict == Verdict.HELD and accuracy >= 0.95)


def test_a_decision_held_by_the_champion_says_held_once():
    decision = Gate(PipelineConfig()).decide({"accuracy": 0.96}, _comparison(True))
    shown = f"Gate: {decision.decision} ({decision.reason})"
    assert shown.count("held") == 1 and decision.champion.reason == "held: worse"


@pytest.mark.unit
def test_a_skipped_comparison_never_holds_the_candidate():
    skipped = skipped_comparison("no serving version", metric="accuracy", policy="better")
    assert Gate(PipelineConfig()).decide({"accuracy": 0.97}, skipped).decision == Verdict.DEPLOY


@pytest.mark.unit
@pytest.mark.parametrize(("interval", "verdict"), [
    ((0.955, 0.99), Verdict.DEPLOY),  # the lower end reaches the threshold
    ((0.93, 0.99), Verdict.HELD),  # not enough evidence
    ((0.80, 0.899), Verdict.REJECTED),  # the upper end is below the minimum
])
def test_the_confident_policy_acts_on_the_interval(interval, verdict):
    config = PipelineConfig(gate_policy="confident")
    decision = Gate(config).decide({"accuracy": 0.97 if verdict != Verdict.REJECTED else 0.85,
                                    "accuracy_ci95": list(interval)})
    assert decision.decision == verdict and decision.policy == "confident"


@pytest.mark.unit
def test_every_gate_result_says_how_many_rows_would_settle_it():
    decision = Gate(PipelineConfig()).decide({"accuracy": 0.9667, "accuracy_ci95": [0.83, 0.99]})
    assert decision.rows_needed and decision.rows_needed > 30
    assert f"about {decision.rows_needed:,} rows would settle it" in decision.warning
