"""`reproduce JOB`: a training job rebuilt from its manifest, through the real CLI.

The verdicts: identical (the same model file), equivalent (the same held-out predictions and metrics),
different (with the likely cause), cannot (data missing or changed); each recorded in the audit trail.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris

from pipeline.cli import cli
from pipeline.state.store import DeploymentStore
from pipeline.training.reproduce import DIFFERENT, ReproduceReport, _judge
from pipeline.training.reproduce_checks import DataCheck, ModelComparison, _not_in, version_differences
from tests.aws_fixtures import ROLE
from tests.conftest import train_job


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _events(workdir: Path) -> list[dict]:
    return [event for event in DeploymentStore(workdir / ".mlops").events() if event["kind"] == "job_reproduced"]


def iris_csv(path: Path) -> Path:
    load_iris(as_frame=True).frame.to_csv(path, index=False)
    return path


def test_a_default_iris_job_reproduces_identical_and_the_verdict_is_in_the_audit_trail(workdir):
    job = train_job(workdir)
    result = _invoke("reproduce", job)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"training job {job}: identical: the same model file, byte for byte (sha256)" in lines
    assert any(line.startswith("  data: iris: the same (sha256 ") and "150 rows, 5 columns" in line for line in lines)
    assert "  versions: the same as at training" in lines
    assert any("retrained here by the training pipeline with the recorded config (logistic_regression, seed 42, "
               "test_size 0.2, cv_folds 3)" in line for line in lines)
    [event] = _events(workdir)
    assert event["detail"]["verdict"] == "identical" and event["detail"]["training_job"] == job
    assert event["detail"]["recorded_model_sha256"] == event["detail"]["reproduced_model_sha256"]
    assert DeploymentStore(workdir / ".mlops").verify_events() == []
    report = json.loads(_invoke("reproduce", job, "--json").stdout)
    assert report["verdict"] == "identical" and report["exit_code"] == 0 and report["data"]["same"] is True


def test_a_changed_csv_is_refused_naming_the_data_and_retrained_only_when_allowed(workdir):
    data = iris_csv(workdir / "flowers.csv")
    job = train_job(workdir, dataset=str(data))
    lines = data.read_text().splitlines()
    lines[8] = "5.05," + lines[8].split(",", 1)[1]  # one value of one row changed
    data.write_text("\n".join([*lines, lines[3]]) + "\n")  # and a row added (a copy of another)

    refused = _invoke("reproduce", job)
    assert refused.exit_code == 2, refused.output
    [error] = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert error.startswith(f"Error: the data changed since training job {job}: '{data}' has sha256 ")
    assert "150 rows recorded, 151 now: 2 added, 1 removed or changed" in error
    assert "--allow-data-change" in error
    assert _events(workdir)[0]["detail"]["verdict"] == "cannot"

    allowed = _invoke("reproduce", job, "--allow-data-change", "--json")
    report = json.loads(allowed.stdout)
    assert report["verdict"] != "cannot" and report["data"]["same"] is False
    if report["verdict"] == "different":
        assert allowed.exit_code == 1 and report["causes"][0].startswith("data: ")
    else:
        assert allowed.exit_code == 0

    data.unlink()
    missing = _invoke("reproduce", job)
    assert missing.exit_code == 2 and f"'{data}', is missing (give its path with --data)" in missing.output
    moved = iris_csv(workdir / "moved.csv")
    assert _invoke("reproduce", job, "--data", str(moved)).exit_code == 0


def test_a_random_forest_with_another_n_jobs_is_identical_or_equivalent_never_different(workdir):
    job = train_job(workdir, model_type="random_forest", hyperparameters={"n_estimators": 30, "n_jobs": 1})
    for n_jobs in ("2", "-1"):
        result = _invoke("reproduce", job, "--hyperparameter", f"n_jobs={n_jobs}", "--json")
        report = json.loads(result.stdout)
        assert report["verdict"] in ("identical", "equivalent"), report
        assert result.exit_code == 0 and report["hyperparameters"] == {"n_jobs": int(n_jobs)}
        assert report["comparison"]["prediction_differences"] == 0 and report["comparison"]["metric_differences"] == []
    text = _invoke("reproduce", job, "--hyperparameter", "n_jobs=2").output
    assert f"training job {job}: equivalent: other bytes, the same predictions on all 30 held-out rows and the same " \
           f"metrics" in text and "  hyperparameters given here: n_jobs=2" in text


def test_a_changed_hyperparameter_that_changes_the_model_is_different_and_names_the_cause(workdir):
    job = train_job(workdir, model_type="random_forest", hyperparameters={"n_estimators": 30})
    result = _invoke("reproduce", job, "--hyperparameter", "max_depth=1")
    assert result.exit_code == 1, result.output
    assert f"training job {job}: different: " in result.output
    assert "likely cause: hyperparameters given here: max_depth=1" in result.output
    assert _invoke("reproduce", job, "--hyperparameter", "depth=1").exit_code == 2
    assert _invoke("reproduce", "no-such-job").exit_code == 2


def test_a_sagemaker_job_is_reproduced_here_with_the_container_code_sagemaker_ran(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    result = _invoke("reproduce", job)
    assert result.exit_code == 0, result.output
    assert f"training job {job}: identical" in result.output
    assert "retrained here with the same container code: pipeline/container/train.py (sha256 " in result.output
    assert "run as SageMaker's script mode runs it (the job ran in SageMaker's scikit-learn 1.9-0 image)" in \
        result.output
    assert len(sagemaker.training_runs) == 1  # nothing was sent to SageMaker again


@pytest.mark.unit
def test_rows_added_and_removed_are_counted_with_their_repeats():
    before = np.array([1, 2, 2, 3], dtype=np.uint64)
    after = np.array([2, 3, 3, 4], dtype=np.uint64)
    assert _not_in(after, before) == 2 and _not_in(before, after) == 2
    assert _not_in(before, np.array([], dtype=np.uint64)) == 4


@pytest.mark.unit
def test_versions_that_differ_are_listed_and_a_sagemaker_job_compares_its_image():
    manifest = {"library_versions": {"python": "3.11.7", "scikit-learn": "1.8.0", "numpy": "2.4.6"}}
    assert version_differences(manifest, {"python": "3.11.7", "scikit-learn": "1.9.1", "numpy": "2.4.6"}) == [
        {"package": "scikit-learn", "recorded": "1.8.0", "now": "1.9.1"}]
    image = {"backend": "sagemaker", "sklearn_framework_version": "1.9-0", "library_versions": {"numpy": "1.0"}}
    assert version_differences(image, {"scikit-learn": "1.9.1", "numpy": "2.4.6"}) == []
    assert version_differences(image, {"scikit-learn": "1.10.0"}) == [
        {"package": "scikit-learn", "recorded": "1.9-0 (SageMaker image)", "now": "1.10.0"}]


@pytest.mark.unit
def test_without_a_changed_input_a_different_model_is_put_down_to_nondeterminism():
    comparison = ModelComparison("a" * 64, "b" * 64, heldout_rows=30, prediction_differences=2,
                                 metric_differences=[{"metric": "accuracy", "recorded": 1.0, "reproduced": 0.9333}])
    report = ReproduceReport("job", "", "", DataCheck("iris", True, {}, {}), comparison=comparison)
    _judge(report)
    assert report.verdict == DIFFERENT and report.exit_code == 1
    assert report.reason == "2 of 30 held-out predictions differ; accuracy 1 -> 0.9333"
    assert report.causes == [report.causes[0]] and report.causes[0].startswith("nondeterminism: ")
    report = ReproduceReport("job", "", "", DataCheck("iris", True, {}, {}),
                             versions=[{"package": "numpy", "recorded": "1.0", "now": "2.0"}], comparison=comparison)
    _judge(report)
    assert report.causes == ["versions: numpy 1.0 -> 2.0"]
