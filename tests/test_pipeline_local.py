"""The local pipeline end to end, through the real CLI, with real endpoint servers.

What a default run prints, writes and serves is read from the session's default run (``default_run``).
"""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig

from pipeline.config import load_config
from pipeline.run.orchestrator import Orchestrator
from pipeline.serving.app import ModelIntegrityError, create_app
from pipeline.state.store import DeploymentStore
from tests.conftest import SharedRun, processes_mentioning, train_job
from tests.served_models import ServedDifferentlyPipeline


def _url(results: dict) -> str:
    return results["summary"]["endpoint_url"]


def test_full_run_deploys_an_endpoint_that_keeps_serving_after_the_command(default_run: SharedRun):
    results = default_run.results  # the run exited 0
    assert results["pipeline_status"] == "success"
    assert results["summary"]["deployment_occurred"] is True
    reply = requests.post(f"{_url(results)}/invocations", data="5.1,3.5,1.4,0.2", headers={"Content-Type": "text/csv"})
    assert reply.status_code == 200
    assert reply.json() == {"predictions": [0]}
    assert reply.headers["X-Model-Version"] == results["summary"]["endpoint_version"]


def test_results_json_has_the_seed_shape(default_run: SharedRun):
    results = default_run.results
    assert set(results["summary"]) >= {"training_accuracy", "deployment_occurred", "endpoint_name", "testing_passed"}
    training = results["phases"]["training"]
    assert training["pipeline_status"] == "success"
    assert set(training["evaluation_results"]) >= {"accuracy", "cv_mean_accuracy", "classification_report",
                                                   "confusion_matrix", "accuracy_ci95", "f1_weighted"}
    deployment = results["phases"]["deployment"]["deployment_results"]
    assert deployment["status"] == "success" and deployment["deployment_duration"] > 0
    testing = results["phases"]["testing"]
    assert testing["overall_status"] == "passed"
    assert testing["test_summary"]["prediction_accuracy"] == 1.0
    assert testing["test_summary"]["performance_success_rate"] == 1.0
    assert results["config_sources"]["performance_requests"] == "set:performance_requests"
    assert results["gate"]["decision"] == "deploy"


def test_console_summary_follows_the_seed_example(default_run: SharedRun):
    for line in ("ENTERPRISE MLOPS PIPELINE COMPLETED", "Status: SUCCESS", "Training Accuracy: 100.00%",
                 "Deployment Occurred: Yes", "Testing: Passed", "Key Metrics:", "   Endpoint: iris-model",
                 "Detailed results saved to"):
        assert line in default_run.output


def test_gate_holds_a_model_between_minimum_and_threshold_with_exit_3(pipeline, workdir):
    result = pipeline("--accuracy-threshold", "1.0", "--minimum-accuracy", "0.5", "--model-type", "random_forest")
    assert result.exit_code == 3
    results = pipeline.results()
    assert results["gate"]["decision"] == "held"
    assert results["summary"]["deployment_occurred"] is False
    assert DeploymentStore(".mlops").endpoints() == []
    assert processes_mentioning(str(workdir)) == []  # the server prestarted during training was stopped


def test_gate_rejects_below_minimum_and_deployment_mode_refuses_it_too(pipeline):
    assert pipeline("--accuracy-threshold", "1.0", "--minimum-accuracy", "1.0", "--model-type",
                    "random_forest").exit_code == 3
    job = pipeline.results()["summary"]["training_job"]
    assert pipeline.results()["gate"]["decision"] == "rejected"
    result = pipeline("--mode", "deployment", "--training-job", job, "--accuracy-threshold", "1.0",
                      "--minimum-accuracy", "1.0")
    assert result.exit_code == 3
    assert DeploymentStore(".mlops").endpoints() == []


def test_auto_deploy_off_approves_and_deployment_mode_deploys_later(pipeline):
    assert pipeline("--disable-auto-deploy").exit_code == 0
    approved = pipeline.results()
    assert approved["gate"]["decision"] == "approved"
    assert approved["summary"]["deployment_occurred"] is False
    result = pipeline("--mode", "deployment", "--training-job", approved["summary"]["training_job"])
    assert result.exit_code == 0, result.output
    assert pipeline.results()["summary"]["deployment_occurred"] is True


@pytest.mark.unit
def test_training_mode_trains_and_judges_without_deploying(pipeline):
    assert pipeline("--mode", "training").exit_code == 0
    results = pipeline.results()
    assert results["gate"]["decision"] == "deploy"
    assert "deployment" not in results["phases"]
    assert DeploymentStore(".mlops").endpoints() == []


def test_second_deployment_switches_the_stable_url_to_the_new_version(pipeline):
    pipeline()
    first = pipeline.results()
    pipeline()
    second = pipeline.results()
    assert _url(first) == _url(second)
    assert second["phases"]["deployment"]["deployment_results"]["previous_version"] == \
        first["summary"]["endpoint_version"]
    reply = requests.get(f"{_url(second)}/ping")
    assert reply.headers["X-Model-Version"] == second["summary"]["endpoint_version"]


def test_version_whose_served_predictions_differ_is_not_kept(pipeline, workdir):
    pipeline()
    v1 = pipeline.results()["summary"]["endpoint_version"]
    job = train_job(workdir, ServedDifferentlyPipeline)
    # The champion comparison would hold this candidate before it is deployed: this test is about the endpoint's.
    result = pipeline("--mode", "deployment", "--training-job", job, "--set", "champion_policy=off")
    assert result.exit_code == 1
    results = pipeline.results()
    assert results["rollback"]["final_state"] == "kept_previous"
    assert "predictions differ from the offline model" in results["rollback"]["reason"]
    reply = requests.get(f"{_url(results)}/ping")
    assert reply.status_code == 200 and reply.headers["X-Model-Version"] == v1
    history = DeploymentStore(".mlops").deployments("iris-model")
    assert history[0]["status"] == "kept_previous" and history[1]["status"] == "deployed"


def test_a_model_changed_after_training_is_refused_before_deployment(pipeline, workdir):
    pipeline()
    first = pipeline.results()
    job = train_job(workdir)
    model = next(Path(".mlops/jobs").glob(f"{job}/model/model.joblib"))
    model.write_bytes(model.read_bytes() + b"tampered")
    result = pipeline("--mode", "deployment", "--training-job", job)
    assert result.exit_code == 1
    results = pipeline.results()
    assert "model.joblib" in results["error"]["message"] and "changed since training" in results["error"]["message"]
    assert "deployment" not in results["phases"]
    assert requests.get(f"{_url(first)}/ping").headers["X-Model-Version"] == first["summary"]["endpoint_version"]


@pytest.mark.unit
def test_a_server_refuses_a_model_whose_sha256_differs_from_its_version(workdir):
    job = train_job(workdir)
    spec = {"version": "v-test", "model_dir": str(Path(".mlops/jobs", job, "model").resolve()), "sha256": "0" * 64}
    Path("pointer.json").write_text(json.dumps(spec))
    with pytest.raises(ModelIntegrityError, match="refusing to load it"):
        create_app("pointer.json")


def test_failed_first_deployment_removes_its_endpoint(pipeline, workdir):
    job = train_job(workdir, ServedDifferentlyPipeline)
    assert pipeline("--mode", "deployment", "--training-job", job).exit_code == 1
    results = pipeline.results()
    assert results["rollback"]["final_state"] == "removed"
    assert DeploymentStore(".mlops").endpoints() == []


def test_rollback_off_leaves_the_failing_version_serving_and_fails_the_run(pipeline, workdir):
    pipeline()
    job = train_job(workdir, ServedDifferentlyPipeline)
    result = pipeline("--mode", "deployment", "--training-job", job, "--set", "rollback_on_failure=false",
                      "--set", "champion_policy=off")
    assert result.exit_code == 1
    results = pipeline.results()
    assert results["phases"]["deployment"]["deployment_results"]["final_state"] == "failed"
    assert requests.get(f"{_url(results)}/ping").headers["X-Model-Version"] == \
        results["phases"]["deployment"]["deployment_results"]["version"]


def test_testing_mode_tests_the_live_endpoint_with_its_held_out_data(pipeline):
    pipeline()
    result = pipeline("--mode", "testing", "--endpoint-name", "iris-model")
    assert result.exit_code == 0, result.output
    testing = pipeline.results()["phases"]["testing"]
    assert testing["overall_status"] == "passed"
    assert testing["checks"]["prediction_accuracy"]["rows"] == 30


@pytest.mark.unit
def test_testing_mode_on_an_unknown_endpoint_is_a_usage_error(pipeline):
    result = pipeline("--mode", "testing", "--endpoint-name", "nope")
    assert result.exit_code == 2
    assert "Error: endpoint 'nope' not found" in result.output


def test_cleanup_mode_stops_and_removes_the_endpoint(pipeline):
    pipeline()
    url = _url(pipeline.results())
    assert pipeline("--mode", "cleanup", "--endpoint-name", "iris-model").exit_code == 0
    assert DeploymentStore(".mlops").endpoints() == []
    try:
        requests.get(f"{url}/ping", timeout=2)
        reachable = True
    except requests.ConnectionError:
        reachable = False
    assert not reachable


@pytest.mark.unit
def test_two_runs_with_the_same_config_give_the_same_metrics(pipeline):
    pipeline("--mode", "training", "--model-type", "random_forest")
    first = pipeline.results()["phases"]["training"]["evaluation_results"]
    pipeline("--mode", "training", "--model-type", "random_forest")
    second = pipeline.results()["phases"]["training"]["evaluation_results"]
    assert first == second


@pytest.mark.unit
def test_training_job_names_are_unique_within_one_second(workdir):
    names = {train_job(workdir) for _ in range(3)}
    assert len(names) == 3


@pytest.mark.unit
def test_training_job_stores_model_hash_metrics_config_fingerprint_and_versions(pipeline):
    pipeline("--mode", "training")
    job = pipeline.results()["summary"]["training_job"]
    manifest = json.loads(Path(f".mlops/jobs/{job}/manifest.json").read_text())
    assert len(manifest["model_sha256"]) == 64
    assert manifest["data_fingerprint"]["rows"] == 150
    assert "scikit-learn" in manifest["library_versions"]
    assert manifest["config"]["model_type"] == "logistic_regression"
    assert Path(f".mlops/jobs/{job}/metrics.json").is_file()


@pytest.mark.unit
def test_custom_training_pipeline_and_evaluation_are_used(workdir):
    from sklearn.metrics import f1_score

    def custom_evaluation(model, X_test, y_test):
        return {"f1_macro": float(f1_score(y_test, model.predict(X_test), average="macro"))}

    config, sources = load_config(env={}, flags={"cv_folds": 3, "gate_metric": "f1_macro"},
                                  search_default_file=False)
    training = ServedDifferentlyPipeline(config, custom_evaluations=[custom_evaluation])
    results = Orchestrator(config, sources, mode="training", training_pipeline=training).run().to_json()
    assert results["phases"]["training"]["evaluation_results"]["f1_macro"] > 0.9
    assert results["gate"]["metric"] == "f1_macro"


def test_boto3_sagemaker_runtime_client_invokes_the_local_endpoint(default_run: SharedRun):
    runtime = boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=default_run.url,
                           aws_access_key_id="x", aws_secret_access_key="x",
                           config=BotoConfig(retries={"max_attempts": 1}))
    answer = runtime.invoke_endpoint(EndpointName="iris-model", Body=b"6.7,3.0,5.2,2.3", ContentType="text/csv",
                                     Accept="application/json")
    assert json.loads(answer["Body"].read()) == {"predictions": [2]}
