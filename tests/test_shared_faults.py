"""A shared store's faults, through the real CLI: the PostgreSQL server stopped before a run and in the middle of a
deployment, a pipeline that stopped before its version was judged, a job file in the bucket changed or deleted,
and two machines deploying one endpoint at once.

The PostgreSQL server is the session's real one (``postgres_server``), stopped and started again by the test; AWS is
moto with SageMaker's container emulated, in this process or, for the processes of the concurrent deployments, as
a server they reach through ``AWS_ENDPOINT_URL``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3

from pipeline.backends.sagemaker import SageMakerBackend
from pipeline.config import ENV_VARS, load_config
from pipeline.container import inference
from pipeline.deployment.steps import DeploymentPipeline
from pipeline.state.store import DeploymentStore
from pipeline.training import job_files
from tests.aws_fixtures import BUCKET, FAKE_AWS_ENV, REGION, ROLE, sm
from tests.conftest import FAST_SETTINGS, REPO, run_script
from tests.postgres_fixtures import PASSWORD
from tests.shared_machines import machines

ENDPOINT = "iris-model"
PREFIX = "mlops-pipeline"


def _store(workdir: Path, url: str) -> DeploymentStore:
    return DeploymentStore(workdir / "reader", url)


# --------------------------------------------------------------------------- the PostgreSQL server stops
def test_a_stopped_server_before_a_run_is_exit_2_in_one_line_naming_it_and_nothing_is_done(
        workdir, postgres_server, postgres_url):
    _store(workdir, postgres_url)  # the shared store exists, and then its server stops
    postgres_server.stop()
    try:
        result = run_script(sys.executable, str(REPO / "run_pipeline.py"), "--store-url", postgres_url,
                            "--output-file", "out.json", cwd=workdir, timeout=300)
    finally:
        postgres_server.start()
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and f"{postgres_server.host}:{postgres_server.port}" in errors[0]
    assert "nothing was done" in errors[0] and PASSWORD not in result.stderr + result.stdout
    assert not (workdir / ".mlops" / "jobs").exists() and not (workdir / "out.json").exists()
    assert _store(workdir, postgres_url).runs() == []


def test_a_store_lost_after_a_verified_switch_leaves_the_new_version_serving_and_the_next_command_records_it(
        sagemaker, postgres_server, postgres_url, workdir, monkeypatch):
    a, b = machines(workdir, postgres_url, monkeypatch, names="ab")
    promote = SageMakerBackend.promote

    def promote_then_lose_the_store(self, staged):
        outcome = promote(self, staged)  # verified: AWS serves it
        postgres_server.stop()
        return outcome

    monkeypatch.setattr(SageMakerBackend, "promote", promote_then_lose_the_store)
    try:
        result = a.run("--role-arn", ROLE)
    finally:
        monkeypatch.setattr(SageMakerBackend, "promote", promote)
        postgres_server.start()
    assert result.exit_code == 1, result.output
    results = a.results()
    deployed = results["phases"]["deployment"]["deployment_results"]
    assert deployed["final_state"] == "deployed" and results["rollback"] is None  # never undone for a lost record
    assert "stopped answering" in results["error"]["message"] and PASSWORD not in result.output
    version = deployed["version"]
    assert sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == version
    store = _store(workdir, postgres_url)
    assert store.deployments(ENDPOINT)[0]["status"] == "in_progress"  # what the store missed

    result = b.command("status")  # the next command, on another machine
    assert result.exit_code == 0, result.output
    latest = store.deployments(ENDPOINT)[0]
    assert latest["status"] == "deployed" and "verified and judged good" in latest["reason"]
    assert store.endpoint(ENDPOINT)["serving_version"] == version and store.verify_events() == []


def test_a_version_a_dead_pipeline_left_serving_unjudged_is_rolled_back_by_the_next_command(
        sagemaker, postgres_url, workdir, monkeypatch):
    a, b = machines(workdir, postgres_url, monkeypatch, names="ab")
    assert a.run("--role-arn", ROLE).exit_code == 0
    v1, job = a.results()["summary"]["endpoint_version"], a.results()["summary"]["training_job"]
    # A pipeline that dies after its blue/green update, before its tests judged the version: AWS serves it.
    config, _ = load_config(None, {}, {"store_url": postgres_url, "role_arn": ROLE})
    store = DeploymentStore(workdir / "dying", postgres_url)
    backend = SageMakerBackend(config, store, "dying-run")
    store.start_run("dying-run", "deployment", "sagemaker")
    staged = DeploymentPipeline(config, store, backend, "dying-run").stage(
        job_files.load(store, store.training_job(job)), ENDPOINT).staged
    assert sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == staged.version

    result = b.command("status")
    assert result.exit_code == 0, result.output
    assert sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == v1  # AWS back on the judged one
    latest = store.deployments(ENDPOINT)[0]
    assert (latest["to_version"], latest["status"]) == (staged.version, "interrupted")
    assert "served without being judged" in latest["reason"]
    assert store.endpoint(ENDPOINT)["serving_version"] == v1 and store.run("dying-run")["status"] == "interrupted"


# --------------------------------------------------------------------------- the bucket
def test_a_job_file_changed_or_missing_in_the_bucket_is_refused_by_name_and_never_loaded(
        sagemaker, postgres_url, workdir, monkeypatch):
    a, b = machines(workdir, postgres_url, monkeypatch, names="ab")
    result = a.run("--role-arn", ROLE, "--mode", "training")
    assert result.exit_code == 0, result.output
    job = a.results()["summary"]["training_job"]
    key = f"{PREFIX}/jobs/{job}/model/model.joblib"
    s3 = boto3.client("s3", region_name=REGION)
    loaded = []
    load = inference.joblib.load
    monkeypatch.setattr(inference.joblib, "load", lambda *args, **kwargs: loaded.append(args) or load(*args, **kwargs))

    s3.put_object(Bucket=BUCKET, Key=key, Body=b"a model someone replaced")
    result = b.run("--mode", "deployment", "--training-job", job)
    assert result.exit_code == 1, result.output
    assert f"training job '{job}': s3://{BUCKET}/{key} is not the file the store recorded" in result.output
    assert "refused, never loaded" in result.output

    s3.delete_object(Bucket=BUCKET, Key=key)
    result = b.run("--mode", "deployment", "--training-job", job)
    assert result.exit_code == 1, result.output
    assert f"s3://{BUCKET}/{key} is missing from the artifact store: refused" in result.output

    assert loaded == [] and not (b.root / ".mlops" / "jobs" / job / "model" / "model.joblib").exists()
    assert sm().list_endpoints()["Endpoints"] == []


# --------------------------------------------------------------------------- two machines at once
def test_two_machines_deploying_one_endpoint_at_once_take_turns_and_the_second_is_judged_against_the_first(
        workdir, postgres_url, moto_server):
    url, _ = moto_server
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV, AWS_ENDPOINT_URL=url, MLOPS_STORE_URL=postgres_url, PYTHONPATH=str(REPO))

    def launch(name: str, *args: str) -> subprocess.Popen[str]:
        directory = workdir / name
        directory.mkdir()
        return subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), *args, "--output-file",
                                 str(directory / "results.json"), "--log-file", str(directory / "pipeline.log"),
                                 *FAST_SETTINGS, "--set", "max_p95_latency_ms=null"],
                                cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    trainer = launch("trainer", "--role-arn", ROLE, "--mode", "training")
    assert trainer.wait(timeout=600) == 0, trainer.communicate()[0]
    job = json.loads((workdir / "trainer" / "results.json").read_text())["summary"]["training_job"]

    both = [launch(name, "--mode", "deployment", "--training-job", job) for name in ("b", "c")]
    outputs = [process.communicate(timeout=900)[0] for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs

    first, second = reversed(_store(workdir, postgres_url).deployments(ENDPOINT))
    assert (first["status"], second["status"]) == ("deployed", "deployed")
    assert second["from_version"] == first["to_version"] and first["finished_at"] <= second["started_at"]
    results = {json.loads((workdir / name / "results.json").read_text())["summary"]["endpoint_version"]:
               json.loads((workdir / name / "results.json").read_text()) for name in ("b", "c")}
    champion = results[second["to_version"]]["gate"]["champion"]
    assert champion["status"] == "compared" and champion["version"] == first["to_version"]
    client = boto3.client("sagemaker", region_name=REGION, endpoint_url=url)
    assert client.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == second["to_version"]
