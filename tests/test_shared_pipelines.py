"""Pipelines on several machines sharing one PostgreSQL store and one bucket, through the real CLI.

Three fresh directories, each its own host, share a real PostgreSQL database (``postgres_url``) and moto's S3 with
SageMaker's container emulated (``sagemaker``). What one machine trained and deployed, another compares against,
lists, rolls back to, monitors and deploys again, reading the job files and run files from the bucket (verified
against the sha256 the store recorded) and never from the first machine's directory. Local endpoints stay bound
to the host that runs them. ``artifact_url`` arrives from each of its sources.
"""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from pipeline.config import load_config
from pipeline.state.store import DeploymentStore
from tests.aws_fixtures import BUCKET, REGION, ROLE, sm
from tests.shared_machines import machines

PREFIX = "mlops-pipeline"
ENDPOINT = "iris-model"
# B trains on another split: some of its evaluation rows are rows A's model was trained on, and are left out.
OTHER_SPLIT = ["--random-seed", "7", "--set", "test_size=0.4", "--set", "champion_min_rows=10", "--set",
               "champion_margin=0.2", "--accuracy-threshold", "0.9", "--minimum-accuracy", "0.85"]


def s3_keys(prefix: str) -> set[str]:
    return s3_keys_in(BUCKET, prefix)


def s3_keys_in(bucket: str, prefix: str) -> set[str]:
    s3 = boto3.client("s3", region_name=REGION)
    return {item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])}


def s3_text(key: str) -> str:
    return boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def replay_heldout(job: str, times: int) -> None:
    """A's held-out rows, read from the bucket, sent to the endpoint as any client would."""
    lines = s3_text(f"{PREFIX}/jobs/{job}/heldout.csv").splitlines()[1:]
    rows = [line.rpartition(",")[0] for line in lines] * times
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    for start in range(0, len(rows), 10):
        runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body="\n".join(rows[start:start + 10]))


def test_three_machines_share_one_store_and_one_bucket(sagemaker, postgres_url, workdir, monkeypatch):
    a, b, c = machines(workdir, postgres_url, monkeypatch)

    # A trains on SageMaker and deploys: with a shared store, the job's files and the run's files go to the bucket.
    result = a.run("--role-arn", ROLE)
    assert result.exit_code == 0, result.output
    first = a.results()
    v1, job_a, run_a = first["summary"]["endpoint_version"], first["summary"]["training_job"], first["run_id"]
    store = DeploymentStore(workdir / "reader", postgres_url)
    row = store.training_job(job_a)
    assert row["directory"] == f"s3://{BUCKET}/{PREFIX}/jobs/{job_a}"
    recorded = json.loads(row["artifacts_json"])
    assert {"model/model.joblib", "metrics.json", "manifest.json", "heldout.csv", "training_rows.npy",
            "baseline.json", "constraints.json"} <= set(recorded)
    assert s3_keys(f"{PREFIX}/jobs/{job_a}/") == {f"{PREFIX}/jobs/{job_a}/{name}" for name in recorded}
    assert store.run(run_a)["results_url"] == f"s3://{BUCKET}/{PREFIX}/runs/{run_a}/results.json"
    assert store.run(run_a)["report_url"] == f"s3://{BUCKET}/{PREFIX}/runs/{run_a}/report.html"

    # B, another machine, trains on another split: judged against A's version, read back from S3 and verified,
    # on its evaluation rows that A's model was not trained on.
    result = b.run("--role-arn", ROLE, *OTHER_SPLIT)
    assert result.exit_code == 0, result.output
    second = b.results()
    champion = second["gate"]["champion"]
    assert champion["status"] == "compared" and champion["version"] == v1
    assert champion["rows_excluded"] > 0 and champion["rows_compared"] >= 10
    assert (b.root / ".mlops" / "jobs" / job_a / "training_rows.npy").is_file()  # fetched, by its sha256
    assert any((b.root / ".mlops" / "cache" / "sha256").iterdir())
    v2, job_b, run_b = second["summary"]["endpoint_version"], second["summary"]["training_job"], second["run_id"]

    # C has nothing of A's or B's files: the store and the bucket are all there is.
    shutil.rmtree(a.root)
    shutil.rmtree(b.root)

    result = c.command("history")
    assert result.exit_code == 0, result.output
    assert f"deployment  {ENDPOINT}  - -> {v1}  deployed" in result.output
    assert f"deployment  {ENDPOINT}  {v1} -> {v2}  deployed" in result.output
    result = c.command("jobs")
    assert result.exit_code == 0 and job_a in result.output and job_b in result.output
    listed = json.loads(c.command("runs", "--json").output)["runs"]
    assert {run["run_id"]: run["report_html"] for run in listed} == {
        run_b: f"s3://{BUCKET}/{PREFIX}/runs/{run_b}/report.html",
        run_a: f"s3://{BUCKET}/{PREFIX}/runs/{run_a}/report.html"}
    result = c.command("runs", "show", run_a)
    assert result.exit_code == 0, result.output
    page = c.root / ".mlops" / "runs" / run_a / "report.html"
    assert f"Run report: {page}" in result.output and run_a in page.read_text()
    assert "Warning" not in result.output  # verified against the sha256 the store recorded

    result = c.command("status")
    assert result.exit_code == 0, result.output
    assert f"{ENDPOINT}  " in result.output and f"{v2}  healthy" in result.output

    # C rolls back to the version A deployed.
    result = c.command("rollback", "--endpoint-name", ENDPOINT)
    assert result.exit_code == 0, result.output
    assert f"serves {v1}" in result.output
    assert sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == v1

    # C monitors what serves: A's version, judged against A's baseline from the bucket.
    since = datetime.now(UTC).isoformat()
    replay_heldout(job_a, times=4)
    result = c.command("monitor", "--endpoint-name", ENDPOINT, "--since", since, "--output-file", "monitor.json")
    assert result.exit_code == 0, result.output
    assert json.loads((c.root / "monitor.json").read_text())["version"] == v1

    # C deploys the job B trained, in another pipeline, by name.
    result = c.run("--mode", "deployment", "--training-job", job_b)
    assert result.exit_code == 0, result.output
    third = c.results()
    assert third["gate"]["champion"]["version"] == v1
    assert sm().describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == third["summary"]["endpoint_version"]

    result = c.command("runs", "show", run_b)
    assert result.exit_code == 0, result.output
    result = c.command("history", "--verify")
    assert result.exit_code == 0 and "audit trail intact" in result.output


def test_a_local_endpoint_is_bound_to_the_host_that_runs_it(workdir, postgres_url, monkeypatch):
    a, b = machines(workdir, postgres_url, monkeypatch, names="ab")
    result = a.run()
    assert result.exit_code == 0, result.output
    version = a.results()["summary"]["endpoint_version"]
    assert DeploymentStore(workdir / "reader", postgres_url).endpoint(ENDPOINT)["machine"] == "machine-a"

    result = b.command("status")
    assert result.exit_code == 0, result.output  # not checked from here: neither healthy nor not
    assert f"{version}  on host machine-a" in result.output
    for args, command in ((["rollback", "--endpoint-name", ENDPOINT], "rollback"),
                          (["cleanup", "--endpoint-name", ENDPOINT], "cleanup"),
                          (["monitor", "--endpoint-name", ENDPOINT], "monitor")):
        result = b.command(*args)
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert errors == [f"Error: endpoint '{ENDPOINT}' is a local endpoint on host machine-a: run {command} there "
                          f"(this is machine-b)"]
    result = b.run("--mode", "testing", "--endpoint-name", ENDPOINT)
    assert result.exit_code == 2 and "is a local endpoint on host machine-a: run --mode testing there" in result.output
    result = b.command("cleanup", "--all")
    assert result.exit_code == 0 and "left endpoint iris-model: a local endpoint on host machine-a" in result.output

    result = a.command("status")
    assert result.exit_code == 0 and f"{version}  healthy" in result.output
    assert a.command("cleanup", "--all").exit_code == 0


@pytest.mark.unit
@pytest.mark.parametrize("how, source", [("file", "file:config.json"), ("env", "env:MLOPS_ARTIFACT_URL"),
                                         ("flag", "flag:--artifact-url"), ("set", "set:artifact_url")])
def test_artifact_url_arrives_from_each_source(tmp_path, monkeypatch, how, source):
    monkeypatch.chdir(tmp_path)
    url = "s3://team-bucket/mlops"
    Path("config.json").write_text(json.dumps({"artifact_url": url} if how == "file" else {}))
    config, sources = load_config("config.json", {"MLOPS_ARTIFACT_URL": url} if how == "env" else {},
                                  {"artifact_url": url} if how == "flag" else {},
                                  settings=[f"artifact_url={url}"] if how == "set" else [])
    assert config.artifact_url == url and sources["artifact_url"] == source


@pytest.mark.unit
@pytest.mark.parametrize("value", ["http://bucket/x", "s3://Upper/x", "s3://", ""])
def test_an_artifact_url_that_is_neither_s3_nor_a_directory_is_refused(value):
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError, match="artifact_url: expected s3://bucket/prefix or a directory"):
        load_config(None, {}, {"artifact_url": value})


def test_a_local_run_writes_its_files_to_an_s3_artifact_url_and_reads_them_back_from_there(sagemaker, pipeline,
                                                                                            workdir):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="team-bucket")
    result = pipeline("--mode", "training", "--artifact-url", "s3://team-bucket/ml/")
    assert result.exit_code == 0, result.output
    job = pipeline.results()["summary"]["training_job"]
    row = DeploymentStore(workdir / ".mlops").training_job(job)
    assert row["directory"] == f"s3://team-bucket/ml/jobs/{job}"
    shutil.rmtree(workdir / ".mlops" / "jobs" / job)  # this machine's copy gone: read back from the bucket
    result = pipeline("--mode", "deployment", "--training-job", job)
    assert result.exit_code == 0, result.output
    assert (workdir / ".mlops" / "jobs" / job / "model" / "model.joblib").is_file()

    # Retention deletes a pruned job's files from the bucket too.
    assert pipeline("--artifact-url", "s3://team-bucket/ml").exit_code == 0
    assert s3_keys_in("team-bucket", f"ml/jobs/{job}/")
    result = pipeline("cleanup", "--prune", "--keep", "1")
    assert result.exit_code == 0, result.output
    assert s3_keys_in("team-bucket", f"ml/jobs/{job}/") == set()
    assert not (workdir / ".mlops" / "jobs" / job).exists()
    pipeline("cleanup", "--all")


@pytest.mark.unit
def test_fetched_files_are_cached_by_sha256_and_a_cached_copy_is_used_only_while_it_has_that_hash(tmp_path):
    from pipeline.container.verified_files import sha256_of
    from pipeline.state.artifacts import ArtifactCache, ArtifactRefused

    source = tmp_path / "artifacts" / "model.joblib"
    source.parent.mkdir()
    source.write_bytes(b"the model")
    digest = sha256_of(b"the model")
    cache = ArtifactCache(tmp_path / "cache")
    blob = cache.fetch(str(source), digest, "job x")
    assert blob == tmp_path / "cache" / "sha256" / digest and blob.read_bytes() == b"the model"
    source.unlink()
    assert cache.read(str(source), digest, "job x") == b"the model"  # from the cache: the source is not read
    blob.write_bytes(b"edited in the cache")
    with pytest.raises(ArtifactRefused, match=f"job x: {source} is missing from the artifact store: refused"):
        cache.fetch(str(source), digest, "job x")
    assert not blob.exists()  # the edited copy is gone, never used
    source.write_bytes(b"another model")
    with pytest.raises(ArtifactRefused, match="is not the file the store recorded .* refused, never loaded"):
        cache.fetch(str(source), digest, "job x")
    assert not blob.exists()


@pytest.mark.unit
def test_db_upgrade_creates_a_sqlite_store_in_a_fresh_directory_and_revision_reads_without_creating(tmp_path,
                                                                                                     monkeypatch):
    from click.testing import CliRunner

    from pipeline.cli import cli
    from pipeline.state import database

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--store-dir", "fresh", "db", "revision"])
    assert result.exit_code == 0 and "revision none (empty)" in result.output and not Path("fresh").exists()
    result = CliRunner().invoke(cli, ["--store-dir", "fresh", "db", "upgrade"])
    assert result.exit_code == 0 and f"upgraded from revision none (empty) to {database.HEAD}" in result.output
    assert DeploymentStore("fresh").runs() == []


def test_predict_and_reproduce_on_another_machine_read_the_job_from_the_artifact_store(sagemaker, workdir,
                                                                                        postgres_url, monkeypatch):
    from sklearn.datasets import load_iris

    a, b = machines(workdir, postgres_url, monkeypatch, names="ab")
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="team-bucket")
    result = a.run("--mode", "training", "--artifact-url", "s3://team-bucket/ml")
    assert result.exit_code == 0, result.output
    job = a.results()["summary"]["training_job"]
    shutil.rmtree(a.root)  # what A trained is only in the store and the artifact store now

    load_iris(as_frame=True).data.head(30).to_csv(b.root / "rows.csv", index=False)
    result = b.command("predict", "--training-job", job, "--input", "rows.csv", "--output", "predictions.csv")
    assert result.exit_code == 0, result.output
    assert len((b.root / "predictions.csv").read_text().splitlines()) == 31  # a header and every row
    result = b.command("reproduce", job)
    assert result.exit_code == 0, result.output
    assert f"training job {job}: identical" in result.output
