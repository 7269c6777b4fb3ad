"""The SageMaker backend end to end, through the real CLI, against moto with the container emulated.

``tests/sagemaker_emulation.py`` makes moto run what SageMaker's scikit-learn
container would: the training entry point from ``sourcedir.tar.gz`` and the
serving hooks behind ``invoke_endpoint``. No test reaches the internet; the
credentials are fake.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pipeline.backends.sagemaker import SageMakerBackend, aws_error
from pipeline.config import ENV_VARS
from pipeline.state.store import DeploymentStore
from tests.aws_fixtures import BUCKET, FAKE_AWS_ENV, REGION, ROLE, sm
from tests.conftest import FAST_SETTINGS, REPO, Pipeline

CONTAINER = REPO / "pipeline" / "container"


def s3_object(uri: str) -> bytes:
    bucket, key = uri[5:].split("/", 1)
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore


def tags(arn: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in sm().list_tags(ResourceArn=arn)["Tags"]}


@pytest.fixture
def pipeline(pipeline: Pipeline) -> Pipeline:
    """The emulated endpoint answers at the speed of moto in this process, which on a busy machine says nothing
    of an endpoint's: the endpoint tests judge no p95 latency here, as in the other SageMaker modules."""
    pipeline.settings += ["--set", "max_p95_latency_ms=null"]
    return pipeline


def deploy_again(pipeline, job: str, *extra: str):
    return pipeline("--role-arn", ROLE, "--mode", "deployment", "--training-job", job, *extra)


# --------------------------------------------------------------------------- the documented commands
def test_seed_command_trains_deploys_and_tests_a_live_sagemaker_endpoint(pipeline, sagemaker):
    result = pipeline("--role-arn", ROLE)
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    assert results["backend"] == "sagemaker"
    assert results["summary"]["deployment_occurred"] is True and results["summary"]["testing_passed"] is True
    version = results["summary"]["endpoint_version"]
    endpoint = sm().describe_endpoint(EndpointName="iris-model")
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == version
    assert results["phases"]["testing"]["checks"]["prediction_accuracy"]["versions_seen"] == [version]
    assert results["summary"]["endpoint_url"].endswith("/endpoints/iris-model/invocations")
    assert "Training Accuracy: 100.00%" in result.output
    assert "Testing:" in result.output and "Passed" in result.output.split("Testing:")[1].splitlines()[0]


def test_json_logs_show_each_sagemaker_wait_with_its_status_and_elapsed_time(pipeline, sagemaker, workdir):
    result = pipeline("--role-arn", ROLE, "--mode", "training", "--log-format", "json")
    assert result.exit_code == 0, result.output
    job = pipeline.results()["summary"]["training_job"]
    messages = [json.loads(line)["message"] for line in (workdir / "pipeline.log").read_text().splitlines()]
    waits = [message for message in messages if message.startswith(f"waiting for training job {job}")]
    assert waits[0] == f"waiting for training job {job}: InProgress (Training) (0.0s)"
    assert waits[-1].startswith(f"waiting for training job {job} done: Completed") and waits[-1].endswith("s)")


def test_training_runs_the_script_mode_entry_point_from_sourcedir_in_the_sklearn_image(pipeline, sagemaker):
    from sagemaker.core import image_uris

    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    name = pipeline.results()["summary"]["training_job"]
    job = sm().describe_training_job(TrainingJobName=name)
    hyperparameters = {key: json.loads(value) for key, value in job["HyperParameters"].items()}
    assert hyperparameters["sagemaker_program"] == "train.py"
    source = hyperparameters["sagemaker_submit_directory"]
    assert source == f"s3://{BUCKET}/{name}/source/sourcedir.tar.gz"
    assert tar_members(s3_object(source)) == {path.name: path.read_bytes() for path in CONTAINER.glob("*.py")}
    assert job["AlgorithmSpecification"]["TrainingImage"] == image_uris.retrieve("sklearn", region=REGION,
                                                                                 version="1.9-0")
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{name}/input/train/"
    assert job["RoleArn"] == ROLE
    run = sagemaker.training_runs[-1]
    assert run.argv[1:3] == ["train.py", "--cv_folds"] and run.env["SM_CHANNEL_TRAIN"].endswith("/input/data/train")


def test_hyperparameters_reach_the_script_as_one_json_argument(pipeline, sagemaker):
    result = pipeline("--role-arn", ROLE, "--mode", "training", "--set", 'hyperparameters={"C": 20.0, "max_iter": 500}')
    assert result.exit_code == 0, result.output
    argv = sagemaker.training_runs[-1].argv
    assert json.loads(argv[argv.index("--hyperparameters") + 1]) == {"C": 20.0, "max_iter": 500}


def test_metrics_come_from_the_metrics_json_the_script_wrote(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    results = pipeline.results()
    name = results["summary"]["training_job"]
    described = sm().describe_training_job(TrainingJobName=name)
    written = tar_members(s3_object(described["ModelArtifacts"]["S3ModelArtifacts"].replace("model.tar.gz",
                                                                                             "output.tar.gz")))
    assert results["phases"]["training"]["evaluation_results"] == json.loads(written["metrics.json"])
    assert described["FinalMetricDataList"][0]["Value"] == 100.0  # moto's placeholder, never read
    manifest = json.loads(Path(f".mlops/jobs/{name}/manifest.json").read_text())
    assert manifest["model_data_url"] == described["ModelArtifacts"]["S3ModelArtifacts"]
    assert Path(f".mlops/jobs/{name}/heldout.csv").is_file()
    assert Path(f".mlops/jobs/{name}/model/model.joblib").read_bytes() == \
        tar_members(s3_object(manifest["model_data_url"]))["model.joblib"]


def test_failing_training_script_fails_the_run_with_its_last_error_line(pipeline, sagemaker, workdir, monkeypatch):
    broken = workdir / "container"
    broken.mkdir()
    for name in ("inference.py", "serve.py"):
        (broken / name).write_bytes((CONTAINER / name).read_bytes())
    (broken / "train.py").write_text("import sys\nprint('reading the train channel', file=sys.stderr)\n"
                                     "raise ValueError('the label column holds one class only')\n")
    monkeypatch.setattr(SageMakerBackend, "SOURCE_DIR", broken)
    result = pipeline("--role-arn", ROLE, "--mode", "training")
    assert result.exit_code == 1
    message = pipeline.results()["error"]["message"]
    assert "failed" in message and "ValueError: the label column holds one class only" in message
    name = sagemaker.training_runs[-1].job_name
    assert sm().describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Failed"
    assert not Path(f".mlops/jobs/{name}").exists()


def test_training_job_that_outlasts_the_timeout_is_stopped_and_fails_the_run(pipeline, sagemaker):
    sagemaker.hold_training_jobs()
    result = pipeline("--role-arn", ROLE, "--mode", "training", "--set", "sagemaker_timeout_minutes=0.002")
    assert result.exit_code == 1
    assert "did not finish within sagemaker_timeout_minutes=0.002 (last status: InProgress (Training)); stopped it" \
        in pipeline.results()["error"]["message"]
    name = sagemaker.training_runs[-1].job_name
    assert sagemaker.stopped_training_jobs == [name]
    assert sm().describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Stopped"


# --------------------------------------------------------------------------- deployments
def test_second_deployment_updates_the_endpoint_blue_green(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    first = pipeline.results()
    result = deploy_again(pipeline, first["summary"]["training_job"], "--set", "traffic_routing=CANARY",
                          "--set", "canary_percent=20", "--set", "baking_period_minutes=5",
                          "--set", 'rollback_alarm_names=["iris-model-5xx"]')
    assert result.exit_code == 0, result.output
    second = pipeline.results()
    version = second["summary"]["endpoint_version"]
    assert version != first["summary"]["endpoint_version"]
    assert second["phases"]["deployment"]["deployment_results"]["previous_version"] == \
        first["summary"]["endpoint_version"]
    assert second["summary"]["endpoint_url"] == first["summary"]["endpoint_url"]
    assert sm().describe_endpoint(EndpointName="iris-model")["EndpointConfigName"] == version
    assert sagemaker.updates == [{
        "endpoint": "iris-model", "endpoint_config": version,
        "from_endpoint_config": first["summary"]["endpoint_version"],
        "deployment_config": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 60,  # baking_seconds
                                                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20}},
                "TerminationWaitInSeconds": 300},  # baking_period_minutes: the old fleet kept after the last shift
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "iris-model-5xx"}]}}}]


@pytest.mark.unit
def test_a_job_trained_locally_is_uploaded_and_deployed_to_sagemaker(pipeline, sagemaker):
    assert pipeline("--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    result = deploy_again(pipeline, job)
    assert result.exit_code == 0, result.output
    version = pipeline.results()["summary"]["endpoint_version"]
    model = sm().describe_model(ModelName=version)["PrimaryContainer"]
    assert model["ModelDataUrl"] == f"s3://{BUCKET}/{job}/output/model.tar.gz"
    assert tar_members(s3_object(model["ModelDataUrl"]))["model.joblib"] == \
        Path(f".mlops/jobs/{job}/model/model.joblib").read_bytes()


IRIS_NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _named_rows_with_probabilities() -> dict[str, Any]:
    """Named columns in reverse order and probabilities, through boto3 as any SageMaker client calls."""
    rows = [[5.1, 3.5, 1.4, 0.2][::-1], [6.7, 3.0, 5.2, 2.3][::-1]]
    answer = boto3.client("sagemaker-runtime", region_name=REGION).invoke_endpoint(
        EndpointName="iris-model", ContentType="application/json", Accept="application/json; probabilities=true",
        Body=json.dumps({"dataframe_split": {"columns": IRIS_NAMES[::-1], "data": rows}}))
    return json.loads(answer["Body"].read())


@pytest.mark.parametrize("where", ["sagemaker", "local"])
def test_named_columns_and_probabilities_are_served_on_sagemaker(pipeline, sagemaker, where):
    """The input schema reaches model.tar.gz whether SageMaker trained the model or this machine did."""
    if where == "sagemaker":
        assert pipeline("--role-arn", ROLE).exit_code == 0
    else:
        assert pipeline("--mode", "training").exit_code == 0
        assert deploy_again(pipeline, pipeline.results()["summary"]["training_job"]).exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    model = sm().describe_model(ModelName=pipeline.results()["summary"]["endpoint_version"])["PrimaryContainer"]
    assert tar_members(s3_object(model["ModelDataUrl"]))["input_schema.json"] == \
        Path(f".mlops/jobs/{job}/model/input_schema.json").read_bytes()
    answer = _named_rows_with_probabilities()
    assert answer["predictions"] == [0, 2] and answer["classes"] == [0, 1, 2]
    assert [sum(row) for row in answer["probabilities"]] == [pytest.approx(1.0)] * 2


def test_failing_second_deployment_is_rolled_back_to_the_first_config(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    first, first_run = pipeline.results()["summary"], pipeline.results()["run_id"]
    sagemaker.break_next_model()
    result = deploy_again(pipeline, first["training_job"])
    assert result.exit_code == 1
    results = pipeline.results()
    assert results["rollback"]["final_state"] == "rolled_back"
    assert "answered 500" in results["rollback"]["reason"]
    assert results["rollback"]["serving_version"] == first["endpoint_version"]
    assert sm().describe_endpoint(EndpointName="iris-model")["EndpointConfigName"] == first["endpoint_version"]
    rollback = sagemaker.updates[-1]
    assert rollback["endpoint_config"] == first["endpoint_version"]
    assert rollback["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == \
        "ALL_AT_ONCE"
    store = DeploymentStore(".mlops")
    assert store.endpoint("iris-model")["serving_version"] == first["endpoint_version"]
    assert [row["status"] for row in store.deployments("iris-model")] == ["rolled_back", "deployed"]
    endpoint_arn = sm().describe_endpoint(EndpointName="iris-model")["EndpointArn"]
    assert tags(endpoint_arn)["mlops:run-id"] == first_run  # the tags describe what serves


@pytest.mark.parametrize("keep_new_config", [False, True], ids=["rolled-back-by-aws", "new-config-with-reason"])
def test_endpoint_in_service_with_a_failure_reason_is_a_failed_deployment(pipeline, sagemaker, keep_new_config):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    first = pipeline.results()["summary"]
    sagemaker.fail_next_update("Alarm iris-model-5xx went into ALARM during the baking period",
                               keep_new_config=keep_new_config)
    result = deploy_again(pipeline, first["training_job"])
    assert result.exit_code == 1
    results = pipeline.results()
    assert "Alarm iris-model-5xx went into ALARM" in results["error"]["message"]
    assert results["summary"]["deployment_occurred"] is False
    store = DeploymentStore(".mlops")
    assert store.deployments("iris-model")[0]["status"] == "failed"
    if not keep_new_config:
        assert "AWS rolled the update back" in results["error"]["message"]
    assert store.endpoint("iris-model")["serving_version"] == first["endpoint_version"]
    assert sm().describe_endpoint(EndpointName="iris-model")["EndpointConfigName"] == first["endpoint_version"]


def test_manual_rollback_updates_the_endpoint_back_to_the_earlier_config(pipeline, sagemaker):
    from pipeline.config import load_config
    from pipeline.deployment.steps import DeploymentPipeline

    assert pipeline("--role-arn", ROLE).exit_code == 0
    first = pipeline.results()["summary"]
    assert deploy_again(pipeline, first["training_job"]).exit_code == 0
    config, _ = load_config(env={}, flags={"role_arn": ROLE}, search_default_file=False)
    store = DeploymentStore(".mlops")
    backend = SageMakerBackend(config, store)
    outcome = DeploymentPipeline(config, store, backend, "manual").rollback("iris-model")
    assert outcome.status == "rolled_back" and outcome.serving_version == first["endpoint_version"]
    assert sm().describe_endpoint(EndpointName="iris-model")["EndpointConfigName"] == first["endpoint_version"]
    assert backend.describe("iris-model") | {"url": None} == {
        "name": "iris-model", "backend": "sagemaker", "region": REGION, "url": None, "exists": True,
        "status": "InService", "serving_version": first["endpoint_version"], "version": first["endpoint_version"],
        "recorded_version": first["endpoint_version"], "failure_reason": None, "healthy": True}


def test_endpoint_that_fails_to_be_created_is_a_failed_deployment_and_is_deleted(pipeline, sagemaker):
    sagemaker.fail_next_creation("The primary container for production variant did not pass the ping health check")
    result = pipeline("--role-arn", ROLE)
    assert result.exit_code == 1
    message = pipeline.results()["error"]["message"]
    assert "is Failed instead of InService" in message and "did not pass the ping health check" in message
    assert message.endswith("the endpoint was deleted")
    assert sm().list_endpoints()["Endpoints"] == []
    assert DeploymentStore(".mlops").endpoints() == []


def test_testing_mode_tests_the_live_endpoint_with_its_held_out_data(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    result = pipeline("--role-arn", ROLE, "--mode", "testing", "--endpoint-name", "iris-model")
    assert result.exit_code == 0, result.output
    testing = pipeline.results()["phases"]["testing"]
    assert testing["overall_status"] == "passed" and testing["checks"]["prediction_accuracy"]["rows"] == 30


def test_testing_mode_on_an_endpoint_deleted_outside_the_pipeline_is_a_clear_error(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    sm().delete_endpoint(EndpointName="iris-model")
    result = pipeline("--role-arn", ROLE, "--mode", "testing", "--endpoint-name", "iris-model")
    assert result.exit_code == 1
    assert "Error: SageMaker endpoint 'iris-model' does not exist in us-east-1" in result.output


def test_cleanup_mode_deletes_the_endpoint_its_configs_and_models(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    assert deploy_again(pipeline, pipeline.results()["summary"]["training_job"]).exit_code == 0
    assert len(sm().list_endpoint_configs()["EndpointConfigs"]) == 2
    result = pipeline("--role-arn", ROLE, "--mode", "cleanup", "--endpoint-name", "iris-model")
    assert result.exit_code == 0, result.output
    assert sm().list_endpoints()["Endpoints"] == []
    assert sm().list_endpoint_configs()["EndpointConfigs"] == []
    assert sm().list_models()["Models"] == []
    assert DeploymentStore(".mlops").endpoints() == []


def test_cleanup_prefix_deletes_what_the_seed_cleanup_script_did_and_spares_other_endpoints(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    assert pipeline("--role-arn", ROLE, "--endpoint-name", "fraud-model").exit_code == 0
    from pipeline.config import load_config

    config, _ = load_config(env={}, flags={"role_arn": ROLE}, search_default_file=False)
    removed = SageMakerBackend(config, DeploymentStore(".mlops")).remove_by_prefix("iris-model")
    assert removed["endpoints"] == ["iris-model"]
    remaining = sm().describe_endpoint(EndpointName="fraud-model")["EndpointConfigName"]
    assert [c["EndpointConfigName"] for c in sm().list_endpoint_configs()["EndpointConfigs"]] == [remaining]
    assert [m["ModelName"] for m in sm().list_models()["Models"]] == [remaining]


def test_seed_deployment_and_testing_commands_without_role_arn_use_the_recorded_backend(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    # the documented "deploy a training job" example (README's commands, docs/SAGEMAKER.md)
    assert pipeline("--mode", "deployment", "--training-job", job).exit_code == 0
    assert pipeline.results()["backend"] == "sagemaker"
    assert sm().describe_endpoint(EndpointName="iris-model")["EndpointStatus"] == "InService"
    assert pipeline("--mode", "testing", "--endpoint-name", "iris-model").exit_code == 0  # example 4


# --------------------------------------------------------------------------- serving: statuses the container keeps
# The scikit-learn container answers 500 to any exception a hook raises (sagemaker_containers wraps the hooks and
# re-raises as its own ClientError); only a response object returned by transform_fn keeps its status. serve.py is
# the program that does this; the emulation answers as the container does.
@pytest.fixture(scope="module")
def iris_model():
    from sklearn.datasets import load_iris

    from pipeline.container import train

    features, labels = load_iris(return_X_y=True)
    return train.build_estimator("logistic_regression", {}, 0).fit(features, labels)


@pytest.mark.unit
@pytest.mark.parametrize("body, content_type, accept, status, error", [
    pytest.param(b"a,b,c\n", "text/csv", "application/json", 400, "BadRequestError", id="non-numeric-csv"),
    pytest.param("1,2,3,4,5", "text/csv", "application/json", 400, "BadRequestError", id="wrong-feature-count"),
    pytest.param("[[1, 2", "application/json", "application/json", 400, "BadRequestError", id="broken-json"),
    pytest.param(b"\xff\xfe1,2,3,4", "text/csv; charset=utf-8", "application/json", 400, "BadRequestError",
                 id="not-utf8"),
    pytest.param(b"<rows/>", "application/xml", "application/json", 415, "UnsupportedContentTypeError",
                 id="unsupported-content-type"),
    pytest.param("5.1,3.5,1.4,0.2", "text/csv", "application/xml", 406, "UnsupportedAcceptError",
                 id="unsupported-accept"),
])
def test_serve_answers_a_clients_mistake_with_a_response_of_its_status(iris_model, body, content_type, accept,
                                                                       status, error):
    from pipeline.container import serve

    response = serve.transform_fn(iris_model, body, content_type, accept)
    assert response.status_code == status and response.mimetype == "application/json"
    answer = json.loads(response.get_data())
    assert answer["error"] == error and answer["status"] == status and answer["message"]


@pytest.mark.unit
def test_serve_answers_predictions_as_a_body_and_content_type_and_lets_its_own_faults_be_500s(iris_model):
    from pipeline.container import inference, serve

    body, content_type = serve.transform_fn(iris_model, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3", "text/csv",
                                            "application/json")
    assert content_type == "application/json" and json.loads(body) == {"predictions": [0, 2]}
    assert serve.transform_fn(iris_model, b"[[5.1, 3.5, 1.4, 0.2]]", "application/json", "text/csv") == \
        ("0\n", "text/csv")

    class Broken:
        def predict(self, rows):
            raise MemoryError("out of memory")

    with pytest.raises(MemoryError):  # not the client's fault: the container answers 500
        serve.transform_fn(Broken(), "1,2,3,4", "text/csv", "application/json")
    # The container refuses a program with transform_fn and any of these; model_fn is the hooks' own.
    assert not [hook for hook in ("input_fn", "predict_fn", "output_fn") if hasattr(serve, hook)]
    assert serve.model_fn is inference.model_fn


@pytest.mark.unit
def test_serve_answers_probabilities_and_named_columns_through_the_same_hooks(tmp_path):
    """The container hands transform_fn the Content-Type and the Accept header only: the switch for probabilities is
    a parameter of the Accept header, and the input schema comes with the model (input_schema.json)."""
    from sklearn.datasets import load_iris

    from pipeline.container import serve, train

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns=["target"])
    train.save_model(train.build_estimator("logistic_regression", {}, 0).fit(features, frame["target"]), tmp_path,
                     features)
    model = serve.model_fn(str(tmp_path))
    names = list(features.columns)
    rows = [[0.2, 1.4, 3.5, 5.1], [2.3, 5.2, 3.0, 6.7]]  # classes 0 and 2, columns reversed
    body = json.dumps({"dataframe_split": {"columns": names[::-1], "data": rows}})
    text, content_type = serve.transform_fn(model, body, "application/json", "application/json; probabilities=true")
    answer = json.loads(text)
    assert content_type == "application/json" and answer["predictions"] == [0, 2] and answer["classes"] == [0, 1, 2]
    assert [sum(row) for row in answer["probabilities"]] == [pytest.approx(1.0)] * 2
    refused = serve.transform_fn(model, body, "application/json", "text/csv; probabilities=true")
    assert refused.status_code == 406 and "JSON only" in json.loads(refused.get_data())["message"]


@pytest.mark.unit
def test_serve_quotes_csv_answers_so_a_label_with_a_comma_or_a_quote_stays_one_field(tmp_path):
    from sklearn.datasets import load_iris

    from pipeline.container import serve, train

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns=["target"])
    labels = frame["target"].map({0: "Barolo, DOCG", 1: 'Grignolino "classico"', 2: "Barbera"})
    train.save_model(train.build_estimator("logistic_regression", {}, 0).fit(features, labels), tmp_path, features)
    model = serve.model_fn(str(tmp_path))
    text, content_type = serve.transform_fn(model, "5.1,3.5,1.4,0.2\n6.0,2.2,4.0,1.0\n6.7,3.0,5.2,2.3", "text/csv",
                                            "text/csv")
    assert content_type == "text/csv"
    assert list(csv.reader(io.StringIO(text))) == [["Barolo, DOCG"], ['Grignolino "classico"'], ["Barbera"]]


def test_serve_runs_as_a_top_level_module_without_the_pipeline_package_or_flask(tmp_path):
    """As in the container: the sourcedir's files are top-level modules. Flask is imported only to answer an error,
    and werkzeug's response does where Flask is missing."""
    for path in CONTAINER.glob("*.py"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    script = (
        "import json, sys\n"
        "sys.modules['pipeline'] = None\n"
        "sys.modules['flask'] = None\n"
        "from sklearn.datasets import load_iris\n"
        "import serve, train\n"
        "model = train.build_estimator('logistic_regression', {}, 0).fit(*load_iris(return_X_y=True))\n"
        "good = serve.transform_fn(model, '5.1,3.5,1.4,0.2', 'text/csv', 'application/json')\n"
        "bad = serve.transform_fn(model, 'a,b', 'text/csv', 'application/json')\n"
        "print(json.dumps({'good': list(good), 'status': bad.status_code, 'class': type(bad).__module__,\n"
        "                  'inference': serve.inference.__file__}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["good"] == ['{"predictions": [0]}', "application/json"]
    assert answer["status"] == 400 and answer["class"].startswith("werkzeug")
    assert answer["inference"] == str(tmp_path / "inference.py")


def test_malformed_requests_to_the_endpoint_are_model_errors_with_the_containers_4xx(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    results = pipeline.results()
    robustness = results["phases"]["testing"]["checks"]["robustness"]
    assert robustness == {"passed": True, "answers": {"non-numeric CSV": 400, "wrong feature count": 400,
                                                      "broken JSON": 400}}
    version, job = results["summary"]["endpoint_version"], results["summary"]["training_job"]
    environment = sm().describe_model(ModelName=version)["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "serve.py"
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"] == f"s3://{BUCKET}/{job}/source/sourcedir.tar.gz"
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    for body, content_type, accept, status in [(b"a,b,c\n", "text/csv", "application/json", 400),
                                               (b"[[1, 2", "application/json", "application/json", 400),
                                               (b"<rows/>", "application/xml", "application/json", 415),
                                               (b"5.1,3.5,1.4,0.2", "text/csv", "application/xml", 406)]:
        with pytest.raises(ClientError) as caught:
            runtime.invoke_endpoint(EndpointName="iris-model", Body=body, ContentType=content_type, Accept=accept)
        error = caught.value.response
        assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == status, content_type
        assert f"Received client error ({status}) from primary" in error["Error"]["Message"]
        assert json.loads(error["OriginalMessage"])["status"] == status
    answer = runtime.invoke_endpoint(EndpointName="iris-model", Body=b"5.1,3.5,1.4,0.2", ContentType="text/csv")
    assert json.loads(answer["Body"].read()) == {"predictions": [0]}
    assert answer["InvokedProductionVariant"] == version


def test_serving_the_hooks_directly_answers_500_to_malformed_requests_and_fails_the_deployment(pipeline, sagemaker,
                                                                                             monkeypatch):
    """Why serve.py exists: with inference.py as the program, the container turns every hook error into a 500."""
    monkeypatch.setattr("pipeline.backends.sagemaker.artifacts.SERVE_PROGRAM", "inference.py")
    result = pipeline("--role-arn", ROLE)
    assert result.exit_code == 1
    results = pipeline.results()
    robustness = results["phases"]["testing"]["checks"]["robustness"]
    assert robustness["passed"] is False
    assert robustness["answers"] == {"non-numeric CSV": 500, "wrong feature count": 500, "broken JSON": 500}
    assert sm().list_endpoints()["Endpoints"] == []  # a first endpoint that failed its tests is deleted


def test_a_program_with_transform_fn_and_the_hooks_is_refused_as_the_container_refuses_it(pipeline, sagemaker,
                                                                                           workdir, monkeypatch):
    source = workdir / "container"
    source.mkdir()
    for path in CONTAINER.glob("*.py"):
        (source / path.name).write_bytes(path.read_bytes())
    with open(source / "serve.py", "a") as handle:
        handle.write("from inference import input_fn  # noqa: E402\n")
    monkeypatch.setattr(SageMakerBackend, "SOURCE_DIR", source)
    result = pipeline("--role-arn", ROLE)
    assert result.exit_code == 1
    assert "answered 500" in pipeline.results()["rollback"]["reason"]


def test_a_job_trained_before_serve_py_is_deployed_with_the_current_serving_code(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    manifest_path = Path(f".mlops/jobs/{job}/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["serve_program"] == "serve.py"
    # What the backend recorded before serve.py: no serve_program, a sourcedir of train.py and inference.py
    # (and, in the store, no hashes of the job's files but the model's).
    del manifest["serve_program"]
    manifest_path.write_text(json.dumps(manifest))
    with sqlite3.connect(".mlops/state.db") as connection:
        connection.execute("UPDATE training_jobs SET artifacts_json = NULL WHERE name = ?", (job,))
    old = {name: data for name, data in tar_members(s3_object(manifest["sourcedir_url"])).items() if name != "serve.py"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in old.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    bucket, key = manifest["sourcedir_url"][5:].split("/", 1)
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())

    result = deploy_again(pipeline, job)
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    assert results["phases"]["testing"]["checks"]["robustness"]["passed"] is True
    environment = sm().describe_model(ModelName=results["summary"]["endpoint_version"])["PrimaryContainer"][
        "Environment"]
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"] == f"s3://{BUCKET}/{job}/source/serving/sourcedir.tar.gz"
    assert tar_members(s3_object(environment["SAGEMAKER_SUBMIT_DIRECTORY"])) == \
        {path.name: path.read_bytes() for path in CONTAINER.glob("*.py")}
    assert sorted(tar_members(s3_object(manifest["sourcedir_url"]))) == sorted(old)  # left alone


# --------------------------------------------------------------------------- tags, settings, errors
def test_every_resource_is_tagged_with_training_job_accuracy_and_run_id(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    results = pipeline.results()
    version, job = results["summary"]["endpoint_version"], results["summary"]["training_job"]
    expected = {"mlops:training-job": job, "mlops:accuracy": f"{results['summary']['training_accuracy']:.4f}",
                "mlops:run-id": results["run_id"]}
    client = sm()
    for arn in (client.describe_training_job(TrainingJobName=job)["TrainingJobArn"],
                client.describe_model(ModelName=version)["ModelArn"],
                client.describe_endpoint_config(EndpointConfigName=version)["EndpointConfigArn"]):
        assert tags(arn) == expected, arn
    # the endpoint also says which version a deployment verified and judged good (for the next reconciliation)
    endpoint = client.describe_endpoint(EndpointName="iris-model")["EndpointArn"]
    assert tags(endpoint) == {**expected, "mlops:verified-version": version}


def test_region_instance_type_and_bucket_come_from_flags_and_environment(pipeline, sagemaker):
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="team-ml-artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    result = pipeline("--role-arn", ROLE, "--instance-type", "ml.t2.medium", "--set", "s3_bucket=team-ml-artifacts",
                      env={"AWS_REGION": "eu-west-1"})
    assert result.exit_code == 0, result.output
    client = boto3.client("sagemaker", region_name="eu-west-1")
    version = pipeline.results()["summary"]["endpoint_version"]
    variant = client.describe_endpoint_config(EndpointConfigName=version)["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.t2.medium"
    model = client.describe_model(ModelName=version)["PrimaryContainer"]
    assert model["ModelDataUrl"].startswith("s3://team-ml-artifacts/")
    assert model["Image"].startswith("141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.9-0")
    assert sm().list_endpoints()["Endpoints"] == []  # nothing in the default region


@pytest.mark.unit
def test_malformed_role_arn_is_a_usage_error_before_any_aws_call(pipeline, sagemaker):
    result = pipeline("--role-arn", "arn:aws:iam::12345:role/SageMakerRole")
    assert result.exit_code == 2
    assert "expected an IAM role ARN like arn:aws:iam::123456789012:role/SageMakerRole" in result.output
    assert boto3.client("s3", region_name=REGION).list_buckets()["Buckets"] == []
    assert sm().list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.unit
def test_access_denied_names_the_missing_permission_with_exit_2(pipeline, sagemaker):
    sagemaker.inject_error("create_training_job", "AccessDeniedException",
                           "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
                           "sagemaker:CreateTrainingJob on resource: arn:aws:sagemaker:us-east-1:123456789012:"
                           "training-job/iris-classifier-20250823-120000 because no identity-based policy allows it")
    result = pipeline("--role-arn", ROLE, "--mode", "training")
    assert result.exit_code == 2
    line = next(line for line in result.output.splitlines() if line.startswith("Error: "))
    assert "access denied, missing IAM permission sagemaker:CreateTrainingJob" in line
    assert "arn:aws:iam::123456789012:user/ci" in line
    assert list(Path(".mlops/jobs").iterdir()) == []


def test_throttling_is_retried_by_botocores_standard_retry_mode(pipeline, sagemaker):
    sagemaker.inject_error("describe_training_job", "ThrottlingException", "Rate exceeded")
    result = pipeline("--role-arn", ROLE, "--mode", "training")
    assert result.exit_code == 0, result.output


@pytest.mark.unit
@pytest.mark.parametrize("code, operation, message, expected", [
    pytest.param("AccessDenied", "PutObject", "Access Denied", "missing IAM permission s3:PutObject",
                 id="access-denied-s3"),
    pytest.param("ResourceLimitExceeded", "CreateEndpoint",
                 "The account-level service limit 'ml.m5.large for endpoint usage' is 0 Instances",
                 "lower instance_count, choose another instance type (--instance-type, training_instance_type)",
                 id="resource-limit"),
    pytest.param("ValidationException", "CreateTrainingJob",
                 "1 validation error detected: Value 'ml.m5.nano' at 'resourceConfig.instanceType' failed to satisfy "
                 "constraint", "choose an instance type SageMaker offers in us-east-1", id="validation-instance-type"),
    pytest.param("ValidationException", "CreateTrainingJob",
                 "Could not assume role arn:aws:iam::123456789012:role/SageMakerRole",
                 "check --role-arn: the role must exist in this account, trust sagemaker.amazonaws.com",
                 id="validation-role"),
])
def test_aws_errors_become_one_line_messages_that_say_what_to_change(code, operation, message, expected):
    service = "s3" if operation == "PutObject" else "sagemaker"
    problem = aws_error(ClientError({"Error": {"Code": code, "Message": message}}, operation), "do it", service,
                        REGION)
    assert problem.exit_code == 2
    assert expected in problem.message and "\n" not in problem.message


@pytest.mark.unit
def test_aws_error_messages_never_contain_access_keys(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    problem = aws_error(ClientError({"Error": {"Code": "SignatureDoesNotMatch", "Message":
                                               "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
                                    "CreateModel"), "create model")
    assert "AKIAIOSFODNN7EXAMPLE" not in problem.message and "wJalrXUtnFEMI" not in problem.message
    throttled = aws_error(ClientError({"Error": {"Code": "ThrottlingException",
                                                 "Message": "key AKIAIOSFODNN7EXAMPLE"}}, "CreateModel"), "x")
    assert "AKIAIOSFODNN7EXAMPLE" not in throttled.message


# --------------------------------------------------------------------------- the documented commands, out of process
def test_seed_commands_run_in_a_subprocess_against_a_moto_server(workdir, moto_server):
    url, emulation = moto_server
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV, AWS_ENDPOINT_URL=url)
    runs = iter(range(1, 100))

    def run_pipeline(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        output = workdir / f"results-{next(runs)}.json"
        done = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), *args, "--output-file", str(output),
                               "--log-file", str(workdir / "pipeline.log"), *FAST_SETTINGS],
                              cwd=workdir, env=env, capture_output=True, text=True, timeout=180)
        return done, json.loads(output.read_text()) if output.is_file() else {}

    client = boto3.client("sagemaker", region_name=REGION, endpoint_url=url)
    done, first = run_pipeline("--role-arn", ROLE)
    assert done.returncode == 0, done.stderr
    v1, job = first["summary"]["endpoint_version"], first["summary"]["training_job"]
    assert first["summary"]["testing_passed"] is True
    assert emulation.training_runs[-1].job_name == job

    emulation.break_next_model()
    done, failed = run_pipeline("--role-arn", ROLE, "--mode", "deployment", "--training-job", job)
    assert done.returncode == 1
    assert failed["rollback"]["final_state"] == "rolled_back" and failed["rollback"]["serving_version"] == v1
    assert client.describe_endpoint(EndpointName="iris-model")["EndpointConfigName"] == v1

    done, second = run_pipeline("--role-arn", ROLE, "--mode", "deployment", "--training-job", job)
    assert done.returncode == 0, done.stderr
    v2 = second["summary"]["endpoint_version"]
    assert client.describe_endpoint(EndpointName="iris-model")["EndpointConfigName"] == v2
    assert [update["endpoint_config"] for update in emulation.updates] == \
        [failed["phases"]["deployment"]["deployment_results"]["version"], v1, v2]

    done, _ = run_pipeline("--role-arn", ROLE, "--mode", "cleanup", "--endpoint-name", "iris-model")
    assert done.returncode == 0, done.stderr
    assert client.list_endpoints()["Endpoints"] == [] and client.list_models()["Models"] == []
    assert client.list_endpoint_configs()["EndpointConfigs"] == []


def test_the_champion_is_read_back_from_s3_and_compared_on_the_same_rows(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE).exit_code == 0
    first = pipeline.results()
    assert first["gate"]["champion"]["reason"] == "skipped: no serving version"
    assert deploy_again(pipeline, first["summary"]["training_job"]).exit_code == 0
    champion = pipeline.results()["gate"]["champion"]
    assert champion["status"] == "compared" and champion["version"] == first["summary"]["endpoint_version"]
    assert champion["rows_compared"] == 30 and champion["difference"] == 0
