"""Progressive delivery on SageMaker, through the backend's methods against moto with the container emulated.

CANARY and LINEAR are SageMaker's own blue/green routing: what matters is the ``DeploymentConfig`` the
pipeline sends. SHADOW is baked by the pipeline: the candidate is tested beside the serving version,
attached as its shadow, read from CloudWatch and the captures, then promoted or discarded. The bake's
clock is set by the test (``traffic.now`` and the emulation's ``clock``), never read from the wall.
"""
from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from pipeline.backends.base import DeploymentError, Staged, TrafficStep
from pipeline.backends.sagemaker import SageMakerBackend, traffic
from pipeline.config import load_config
from pipeline.deployment.steps import DeploymentPipeline
from pipeline.serving.contract import TEST_INFERENCE_ID_PREFIX
from pipeline.state.store import DeploymentStore
from pipeline.training.jobs import TrainingJob
from tests.aws_fixtures import REGION, ROLE, sm
from tests.sagemaker_emulation import SageMakerEmulation, nearest_rank
from tests.test_sagemaker import deploy_again

ENDPOINT = "iris-model"
MARK = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)  # the bake starts half-way through a minute
# Each emulated request writes its capture to moto's S3 and its metrics to moto's CloudWatch: moto's latency is
# not what these tests judge.
NO_LATENCY_LIMIT = ("--set", "max_p95_latency_ms=null")


def runtime() -> Any:
    return boto3.client("sagemaker-runtime", region_name=REGION)


def updates_of(emulation: SageMakerEmulation) -> list[dict[str, Any]]:
    return [update for update in emulation.updates if update["endpoint"] == ENDPOINT]


# --------------------------------------------------------------------------- CANARY and LINEAR
@pytest.mark.parametrize("routing, size_key, percent_setting, percent", [
    ("CANARY", "CanarySize", "canary_percent", 25),
    ("LINEAR", "LinearStepSize", "linear_step_percent", 30),
])
def test_canary_and_linear_send_their_step_the_baking_interval_and_the_alarms(pipeline, sagemaker, routing, size_key,
                                                                             percent_setting, percent):
    assert pipeline("--role-arn", ROLE, *NO_LATENCY_LIMIT).exit_code == 0
    first = pipeline.results()["summary"]
    result = deploy_again(pipeline, first["training_job"], *NO_LATENCY_LIMIT, "--traffic-routing", routing,
                          "--set", f"{percent_setting}={percent}", "--set", "baking_seconds=120",
                          "--set", "baking_period_minutes=5", "--set", 'rollback_alarm_names=["iris-5xx", "iris-p99"]')
    assert result.exit_code == 0, result.output
    assert updates_of(sagemaker)[-1]["deployment_config"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": routing, "WaitIntervalInSeconds": 120,
                                            size_key: {"Type": "CAPACITY_PERCENT", "Value": percent}},
            "TerminationWaitInSeconds": 300},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "iris-5xx"}, {"AlarmName": "iris-p99"}]}}


def test_a_fractional_baking_interval_is_rounded_up_to_whole_seconds_and_said(pipeline, sagemaker, workdir):
    assert pipeline("--role-arn", ROLE, *NO_LATENCY_LIMIT).exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    result = deploy_again(pipeline, job, *NO_LATENCY_LIMIT, "--traffic-routing", "LINEAR",
                          "--set", "baking_seconds=90.25")
    assert result.exit_code == 0, result.output
    routing = updates_of(sagemaker)[-1]["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["WaitIntervalInSeconds"] == 91
    assert "baking_seconds=90.25 rounded up to 91: SageMaker's WaitIntervalInSeconds takes whole seconds" in \
        (workdir / "pipeline.log").read_text()


@pytest.mark.unit
def test_canary_and_linear_are_baked_by_sagemaker_not_on_the_endpoint_by_the_pipeline(pipeline, sagemaker):
    config, _ = load_config(env={}, flags={"role_arn": ROLE}, search_default_file=False)
    backend = SageMakerBackend(config, DeploymentStore(".mlops"))
    assert [backend.bakes_on_the_endpoint(routing) for routing in ("ALL_AT_ONCE", "CANARY", "LINEAR", "SHADOW")] == \
        [False, False, False, True]


# --------------------------------------------------------------------------- SHADOW
def train(pipeline, *settings: str) -> TrainingJob:
    result = pipeline("--role-arn", ROLE, "--mode", "training", *settings)
    assert result.exit_code == 0, result.output
    name = pipeline.results()["summary"]["training_job"]
    row = DeploymentStore(".mlops").training_job(name)
    return TrainingJob.load(Path(row["directory"]), row)


@pytest.fixture
def shadow(pipeline, sagemaker):
    """v1 serves (deployed by the CLI); a weaker model is staged beside it with traffic_routing=SHADOW."""
    assert pipeline("--role-arn", ROLE, *NO_LATENCY_LIMIT).exit_code == 0
    serving = pipeline.results()["summary"]["endpoint_version"]
    candidate_job = train(pipeline, "--set", 'hyperparameters={"C": 0.005}', "--set", "minimum_accuracy=0",
                          "--set", "accuracy_threshold=0",
                          "--set", "champion_policy=off")
    config, _ = load_config(env={}, flags={"role_arn": ROLE, "traffic_routing": "SHADOW"}, search_default_file=False)
    store = DeploymentStore(".mlops")
    backend = SageMakerBackend(config, store)
    deployments = DeploymentPipeline(config, store, backend, "manual")
    deployment = deployments.stage(candidate_job, ENDPOINT)
    assert deployment.staged.previous_version == serving
    return backend, deployments, deployment, candidate_job


def test_shadow_stage_tests_the_candidate_beside_the_serving_version_that_answers_every_client(shadow, sagemaker):
    backend, _, deployment, _ = shadow
    staged: Staged = deployment.staged
    assert staged.beside_stable
    trial = sm().describe_endpoint_config(EndpointConfigName=f"{staged.version}-trial")
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in trial["ProductionVariants"]] == \
        [(staged.previous_version, 1.0), (staged.version, 0.0)]
    assert sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{staged.version}-trial"
    tests = backend.client(ENDPOINT, staged.candidate)
    assert tests.ping().headers["X-Model-Version"] == staged.version
    assert {tests.invoke(b"5.1,3.5,1.4,0.2", "text/csv").headers["X-Model-Version"] for _ in range(5)} == \
        {staged.version}
    clients = {runtime().invoke_endpoint(EndpointName=ENDPOINT, Body=b"5.1,3.5,1.4,0.2",
                                         ContentType="text/csv")["InvokedProductionVariant"] for _ in range(20)}
    assert clients == {staged.previous_version}
    assert backend.describe(ENDPOINT)["serving_version"] == staged.previous_version


def test_shadow_split_attaches_the_candidate_as_the_serving_versions_shadow_variant(shadow, sagemaker, caplog):
    backend, _, deployment, _ = shadow
    staged = deployment.staged
    backend.split_traffic(staged, TrafficStep("shadow", 100))
    assert "baking_seconds=60: a SHADOW bake on SageMaker reads whole CloudWatch minutes" in caplog.text
    name = f"{staged.version}-shadow"
    config = sm().describe_endpoint_config(EndpointConfigName=name)
    assert [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"]) for v in config["ProductionVariants"]] == \
        [(staged.previous_version, staged.previous_version, 1.0)]
    assert [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"])
            for v in config["ShadowProductionVariants"]] == [(staged.version, staged.version, 1.0)]
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    endpoint = sm().describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == name
    assert updates_of(sagemaker)[-1]["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] \
        == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    described = backend.describe(ENDPOINT)
    assert (described["serving_version"], described["shadow_version"], described["endpoint_config"]) == \
        (staged.previous_version, staged.version, name)
    answered = {runtime().invoke_endpoint(EndpointName=ENDPOINT, Body=b"5.1,3.5,1.4,0.2",
                                          ContentType="text/csv")["InvokedProductionVariant"] for _ in range(5)}
    assert answered == {staged.previous_version}  # the shadow's answers are never returned


def test_shadow_split_of_a_first_deployment_is_refused(pipeline, sagemaker):
    config, _ = load_config(env={}, flags={"role_arn": ROLE, "traffic_routing": "SHADOW"}, search_default_file=False)
    backend = SageMakerBackend(config, DeploymentStore(".mlops"))
    job = train(pipeline)
    deployment = DeploymentPipeline(config, DeploymentStore(".mlops"), backend, "manual").stage(job, ENDPOINT)
    assert not deployment.staged.beside_stable  # nothing serves yet: created with the version alone
    with pytest.raises(DeploymentError, match="first version of iris-model: no serving version to shadow"):
        backend.split_traffic(deployment.staged, TrafficStep("shadow", 100))


def _send(rows: np.ndarray, inference_id: str | None = None) -> None:
    body = "\n".join(",".join(f"{value:g}" for value in row) for row in rows).encode()
    extra = {"InferenceId": inference_id} if inference_id else {}
    runtime().invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType="text/csv", Accept="application/json",
                              **extra)


def _bake(backend: SageMakerBackend, staged: Staged, sagemaker: SageMakerEmulation,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[np.ndarray]]:
    """Split, then live traffic inside the interval and the pipeline's own requests in and before it."""
    backend.split_traffic(staged, TrafficStep("shadow", 100))
    monkeypatch.setattr(traffic, "now", lambda: MARK)
    mark = backend.traffic_mark(staged)
    rows = load_iris().data
    sagemaker.clock = lambda: MARK + timedelta(seconds=10)  # the mark's minute: outside the interval
    _send(rows[:7])
    _send(rows[7:9])
    sagemaker.clock = lambda: MARK + timedelta(seconds=45)  # 12:01:15, inside it
    sent = [rows[i:i + 3] for i in range(0, 60, 3)] + [rows[100:101], rows[140:150]]
    for index, batch in enumerate(sent):
        _send(batch, f"live-{index}" if index % 2 else None)
    for index in range(4):  # the pipeline's own, during the bake
        _send(rows[60 + index:61 + index], f"{TEST_INFERENCE_ID_PREFIX}{index}")
    with pytest.raises(Exception, match="ModelError"):  # a malformed live request: an error on both variants
        runtime().invoke_endpoint(EndpointName=ENDPOINT, Body=b"not,a,row", ContentType="text/csv")
    monkeypatch.setattr(traffic, "now", lambda: MARK + timedelta(seconds=100))
    return mark, sent


def test_a_shadow_bake_counts_the_live_requests_of_both_variants_and_not_the_pipelines_own(
        shadow, sagemaker, monkeypatch):
    backend, _, deployment, _ = shadow
    staged = deployment.staged
    mark, sent = _bake(backend, staged, sagemaker, monkeypatch)
    seen = backend.traffic_since(staged, mark)
    live = len(sent) + 1  # the malformed request too
    assert (seen.serving.requests, seen.serving.errors) == (live, 1)
    assert (seen.candidate.requests, seen.candidate.errors) == (live, 1)
    start = MARK.replace(second=0) + timedelta(minutes=1)  # whole minutes after the mark, through "now"'s
    for version, found in ((staged.previous_version, seen.serving), (staged.version, seen.candidate)):
        latencies = [answer.latency_microseconds for answer in sagemaker.answered
                     if answer.variant == version and start <= answer.at < start + timedelta(minutes=2)]
        assert found.p95_seconds == pytest.approx(nearest_rank(latencies, 95) / 1e6)


def test_a_shadow_bakes_agreement_is_the_offline_models_agreement_on_the_same_rows(shadow, sagemaker, monkeypatch):
    backend, deployments, deployment, candidate_job = shadow
    staged = deployment.staged
    mark, sent = _bake(backend, staged, sagemaker, monkeypatch)
    seen = backend.traffic_since(staged, mark)
    serving_model = joblib.load(deployments.job_of_version(staged.previous_version).model_path)
    candidate_model = joblib.load(candidate_job.model_path)
    rows = pd.DataFrame(np.vstack(sent), columns=serving_model.feature_names_in_)  # named, as the endpoint predicts
    agreeing = int(np.sum(serving_model.predict(rows) == candidate_model.predict(rows)))
    assert (seen.compared_rows, seen.agreeing_rows) == (len(rows), agreeing)
    assert 0 < agreeing < len(rows)  # the weaker candidate disagrees somewhere: the comparison can fail


def test_traffic_before_the_first_whole_minute_after_the_mark_is_nothing_yet(shadow, sagemaker, monkeypatch):
    backend, _, deployment, _ = shadow
    backend.split_traffic(deployment.staged, TrafficStep("shadow", 100))
    monkeypatch.setattr(traffic, "now", lambda: MARK)
    mark = backend.traffic_mark(deployment.staged)
    seen = backend.traffic_since(deployment.staged, mark)
    assert (seen.serving.requests, seen.candidate.requests, seen.compared_rows) == (0, 0, 0)


def _variants(endpoint: dict[str, Any]) -> tuple[list[str], list[str]]:
    return ([v["VariantName"] for v in endpoint["ProductionVariants"]],
            [v["VariantName"] for v in endpoint.get("ShadowProductionVariants", [])])


def _configs() -> set[str]:
    return {item["EndpointConfigName"] for item in sm().list_endpoint_configs()["EndpointConfigs"]}


def test_promote_after_a_shadow_bake_leaves_the_candidate_serving_alone(shadow, sagemaker):
    backend, deployments, deployment, _ = shadow
    staged: Staged = deployment.staged
    backend.split_traffic(staged, TrafficStep("shadow", 100))
    outcome = deployments.promote(deployment)
    assert (outcome.status, outcome.serving_version) == ("deployed", staged.version)
    endpoint = sm().describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == staged.version and endpoint["EndpointStatus"] == "InService"
    assert _variants(endpoint) == ([staged.version], [])
    assert updates_of(sagemaker)[-1]["endpoint_config"] == staged.version
    assert updates_of(sagemaker)[-1]["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] \
        == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}  # baking_period_minutes, 0 by default
    assert DeploymentStore(".mlops").endpoint(ENDPOINT)["serving_version"] == staged.version
    assert not {f"{staged.version}-trial", f"{staged.version}-shadow"} & _configs()
    assert {staged.version, staged.previous_version} <= _configs()
    assert "shadow_version" not in backend.describe(ENDPOINT)


def test_discard_after_a_shadow_bake_leaves_the_serving_version_alone(shadow, sagemaker):
    backend, deployments, deployment, _ = shadow
    staged: Staged = deployment.staged
    backend.split_traffic(staged, TrafficStep("shadow", 100))
    outcome = deployments.discard(deployment, "the candidate disagreed")
    assert (outcome.status, outcome.serving_version) == ("rolled_back", staged.previous_version)
    endpoint = sm().describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == staged.previous_version and endpoint["EndpointStatus"] == "InService"
    assert _variants(endpoint) == ([staged.previous_version], [])
    assert DeploymentStore(".mlops").endpoint(ENDPOINT)["serving_version"] == staged.previous_version
    assert not {f"{staged.version}-trial", f"{staged.version}-shadow"} & _configs()


def test_a_shadow_deployment_through_the_cli_tests_the_candidate_and_ends_with_it_alone(pipeline, sagemaker):
    assert pipeline("--role-arn", ROLE, *NO_LATENCY_LIMIT).exit_code == 0
    first = pipeline.results()["summary"]
    result = deploy_again(pipeline, first["training_job"], *NO_LATENCY_LIMIT, "--traffic-routing", "SHADOW",
                          "--set", "insufficient_traffic=promote", "--set", "baking_seconds=0.2")
    assert result.exit_code == 0, result.output
    second = pipeline.results()
    version = second["summary"]["endpoint_version"]
    assert second["phases"]["testing"]["checks"]["prediction_accuracy"]["versions_seen"] == [version]
    assert updates_of(sagemaker)[0]["endpoint_config"] == f"{version}-trial"
    assert updates_of(sagemaker)[-1]["endpoint_config"] == version
    assert _variants(sm().describe_endpoint(EndpointName=ENDPOINT)) == ([version], [])


def test_remove_deletes_the_trial_and_shadow_configs_with_the_versions(shadow, sagemaker):
    backend, _, deployment, _ = shadow
    backend.split_traffic(deployment.staged, TrafficStep("shadow", 100))
    backend.remove(ENDPOINT)
    assert _configs() == set()
    assert sm().list_models()["Models"] == []


def test_capture_rows_are_the_ones_sent(shadow, sagemaker, monkeypatch):
    """The emulation's shadow captures carry the request's ids: the join the bake relies on."""
    backend, _, deployment, _ = shadow
    staged = deployment.staged
    backend.split_traffic(staged, TrafficStep("shadow", 100))
    _send(load_iris().data[:2], "live-join")
    bucket = f"sagemaker-{REGION}-123456789012"
    s3 = boto3.client("s3", region_name=REGION)
    found = {}
    for version in (staged.previous_version, staged.version):
        keys = [item["Key"] for item in s3.list_objects_v2(
            Bucket=bucket, Prefix=f"model-monitor/data-capture/{ENDPOINT}/{version}/").get("Contents", [])]
        lines = [json.loads(line) for key in keys
                 for line in io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())]
        found[version] = {line["eventMetadata"].get("inferenceId"): line["eventMetadata"]["eventId"] for line in lines}
    assert found[staged.version]["live-join"] == found[staged.previous_version]["live-join"]


def test_a_pipeline_that_died_during_a_shadow_bake_is_reconciled_to_the_serving_version_alone(shadow, sagemaker):
    backend, deployments, deployment, _ = shadow
    staged: Staged = deployment.staged
    backend.split_traffic(staged, TrafficStep("shadow", 100))
    repaired = deployments.reconcile(ENDPOINT)  # the deployment is still in progress: its pipeline is gone
    assert [(row["version"], row["status"], row["serving_version"]) for row in repaired] == \
        [(staged.version, "interrupted", staged.previous_version)]
    endpoint = sm().describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == staged.previous_version
    assert _variants(endpoint) == ([staged.previous_version], [])
    assert not {f"{staged.version}-trial", f"{staged.version}-shadow"} & _configs()
