"""``monitor`` on the SageMaker backend: the endpoint's captures are read back from S3, through the real CLI.

The emulation (``tests/sagemaker_emulation.py``) writes a capture file to S3 for each answered
``invoke_endpoint``, in SageMaker's ``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/`` layout;
``monitor --backend sagemaker`` must download them and give a verdict as it does locally.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner, Result

from pipeline.backends.sagemaker import SageMakerBackend
from pipeline.cli import cli
from pipeline.config import load_config
from pipeline.state.store import DeploymentStore
from tests.aws_fixtures import BUCKET, REGION, ROLE, sm

pytestmark = pytest.mark.usefixtures("sagemaker")  # moto with the container emulated, for every test

ENDPOINT = "iris-model"
CAPTURES = f"model-monitor/data-capture/{ENDPOINT}/"


def deploy(pipeline, *settings: str) -> dict:
    # The emulated endpoint writes each capture to moto's S3 in the request: its latency is moto's, not
    # the subject here (a loaded machine took a p95 over the default 1 s limit).
    result = pipeline("--role-arn", ROLE, "--set", "max_p95_latency_ms=null", *settings)
    assert result.exit_code == 0, result.output
    return pipeline.results()["summary"]


def heldout_rows(job: str) -> list[list[float]]:
    """The job's held-out features (the label is the last column of heldout.csv)."""
    lines = Path(f".mlops/jobs/{job}/heldout.csv").read_text().splitlines()[1:]
    return [[float(value) for value in line.split(",")[:-1]] for line in lines]


def replay(rows: list[list[float]], times: int, batch: int = 10) -> None:
    """Send ``rows`` ``times`` over, ``batch`` rows a request, through sagemaker-runtime as any client would."""
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    sent = [row for _ in range(times) for row in rows]
    for start in range(0, len(sent), batch):
        body = "\n".join(",".join(repr(value) for value in row) for row in sent[start:start + batch])
        answer = runtime.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=body)
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def monitor(*args: str) -> Result:
    return CliRunner().invoke(cli, ["--backend", "sagemaker", "monitor", "--endpoint-name", ENDPOINT, *args],
                              catch_exceptions=False)


def capture_keys(version: str) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{CAPTURES}{version}/")
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_replayed_heldout_rows_captured_in_s3_are_no_drift(pipeline, workdir):
    summary = deploy(pipeline, "--set", "capture_percent=100")
    since = datetime.now(UTC).isoformat()  # the deployment's own endpoint tests are not this traffic
    replay(heldout_rows(summary["training_job"]), times=4)
    result = monitor("--since", since, "--output-file", "monitor.json")
    assert result.exit_code == 0, result.output
    report = json.loads(Path("monitor.json").read_text())
    assert report["verdict"] == "no_drift" and report["version"] == summary["endpoint_version"]
    assert report["drift"]["rows"] == 4 * len(heldout_rows(summary["training_job"]))
    assert "drift: no_drift" in result.output


def test_a_shifted_feature_captured_in_s3_is_drift_that_names_it(pipeline, workdir):
    summary = deploy(pipeline, "--set", "capture_percent=100")
    since = datetime.now(UTC).isoformat()
    rows = heldout_rows(summary["training_job"])
    replay([[*row[:2], row[2] + 4.0, row[3]] for row in rows], times=4)  # petal length moved by 4 cm
    result = monitor("--since", since, "--output-file", "monitor.json")
    assert result.exit_code == 1, result.output
    report = json.loads(Path("monitor.json").read_text())
    assert report["verdict"] == "drift"
    assert report["drift"]["moved_features"] == ["petal length (cm)"]
    assert "petal length (cm)" in result.output


def test_the_deployments_own_endpoint_tests_are_not_live_traffic(pipeline, workdir):
    summary = deploy(pipeline, "--set", "capture_percent=100")
    assert capture_keys(summary["endpoint_version"])  # SageMaker captured the endpoint tests...
    result = monitor("--output-file", "monitor.json")
    assert result.exit_code == 2, result.output  # ...and the monitor, told by their inference ids, skips them
    assert "no captured requests for version" in result.output


def test_an_endpoint_that_captured_nothing_has_no_verdict(pipeline, workdir):
    deploy(pipeline, "--set", "capture_percent=0")
    replay([[5.1, 3.5, 1.4, 0.2]], times=5, batch=1)
    result = monitor("--output-file", "monitor.json")
    assert result.exit_code == 2, result.output
    assert "no captured requests for version" in result.output
    report = json.loads(Path("monitor.json").read_text())  # the report says why there is no verdict
    assert report["verdict"] == "error" and "no captured requests for version" in report["error"]


def test_only_the_versions_own_captures_are_read(pipeline, workdir):
    first = deploy(pipeline, "--set", "capture_percent=100")
    replay(heldout_rows(first["training_job"]), times=4)
    second = deploy(pipeline, "--set", "capture_percent=100")
    assert second["endpoint_version"] != first["endpoint_version"]
    assert capture_keys(second["endpoint_version"])  # the second deployment's endpoint tests were captured
    result = monitor("--version", first["endpoint_version"], "--output-file", "monitor.json")
    report = json.loads(Path("monitor.json").read_text())
    assert report["version"] == first["endpoint_version"], result.output
    sent = -(-4 * len(heldout_rows(first["training_job"])) // 10)  # the replay's requests, 10 rows each
    assert report["captured_requests"] == sent  # its own endpoint tests skipped, the second version's unread


def backend(**settings: object) -> SageMakerBackend:
    config, _ = load_config(env={}, flags={"backend": "sagemaker", "role_arn": ROLE, **settings},
                            search_default_file=False)
    return SageMakerBackend(config, DeploymentStore(".mlops"))


def copied_files(scratch: Path) -> list[str]:
    return sorted(str(path.relative_to(scratch)) for path in scratch.rglob("*") if path.is_file())


def test_captures_are_copied_as_they_are_into_the_readers_layout(pipeline, workdir):
    version = deploy(pipeline, "--set", "capture_percent=100")["endpoint_version"]
    scratch = workdir / "scratch"
    scratch.mkdir()
    assert backend().capture_directory(ENDPOINT, version, scratch) == scratch
    keys = capture_keys(version)
    assert keys and copied_files(scratch) == sorted(key[len(CAPTURES):] for key in keys)
    s3 = boto3.client("s3", region_name=REGION)
    for key in keys:
        assert (scratch / key[len(CAPTURES):]).read_bytes() == \
            s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_the_download_stops_at_capture_max_mb_keeping_the_newest_hours(pipeline, workdir, caplog, monkeypatch):
    version = deploy(pipeline, "--set", "capture_percent=100")["endpoint_version"]
    monkeypatch.setattr(logging.getLogger("pipeline"), "propagate", True)  # the CLI run stopped it, for its handlers
    newest = capture_keys(version)
    s3 = boto3.client("s3", region_name=REGION)
    line = s3.get_object(Bucket=BUCKET, Key=newest[0])["Body"].read()
    old = line * (600 * 1024 // len(line) + 1)  # over half of 1 MB: the two old hours do not both fit
    for hour in ("2020/01/01/00", "2020/01/01/01"):
        s3.put_object(Bucket=BUCKET, Key=f"{CAPTURES}{version}/{hour}/00-00-000-old.jsonl", Body=old)
    scratch = workdir / "scratch"
    scratch.mkdir()
    with caplog.at_level(logging.WARNING, logger="pipeline.backends.sagemaker"):
        assert backend(capture_max_mb=1.0).capture_directory(ENDPOINT, version, scratch) == scratch
    assert copied_files(scratch) == sorted([key[len(CAPTURES):] for key in newest] +
                                           [f"{version}/2020/01/01/01/00-00-000-old.jsonl"])
    assert "capture_max_mb=1 reached, older captures left out" in caplog.text


def test_files_that_are_not_captures_are_not_downloaded(pipeline, workdir):
    version = deploy(pipeline, "--set", "capture_percent=100")["endpoint_version"]
    s3 = boto3.client("s3", region_name=REGION)
    for key in ("notes.txt", "2026/11/30/10/readme.txt", "2026/11/30/10/../../escape.jsonl", "latest/x.jsonl"):
        s3.put_object(Bucket=BUCKET, Key=f"{CAPTURES}{version}/{key}", Body=b"{}\n")
    scratch = workdir / "scratch"
    scratch.mkdir()
    backend().capture_directory(ENDPOINT, version, scratch)
    assert copied_files(scratch) == sorted(key[len(CAPTURES):] for key in capture_keys(version)
                                           if key.endswith(".jsonl") and "/../" not in key and "/latest/" not in key)


def test_an_endpoint_that_never_captured_has_no_capture_directory(pipeline, workdir):
    version = deploy(pipeline, "--set", "capture_percent=100")["endpoint_version"]
    scratch = workdir / "scratch"
    scratch.mkdir()
    assert backend().capture_directory("other-endpoint", version, scratch) is None
    assert copied_files(scratch) == []


def test_a_deleted_endpoint_config_is_looked_for_where_the_pipeline_sends_captures(pipeline, workdir):
    version = deploy(pipeline, "--set", "capture_percent=100")["endpoint_version"]
    keys = capture_keys(version)
    sm().delete_endpoint(EndpointName=ENDPOINT)
    sm().delete_endpoint_config(EndpointConfigName=version)
    scratch = workdir / "scratch"
    scratch.mkdir()
    assert backend().capture_directory(ENDPOINT, version, scratch) == scratch
    assert copied_files(scratch) == sorted(key[len(CAPTURES):] for key in keys)


def test_access_denied_to_the_captures_is_a_one_line_usage_error_without_the_keys(pipeline, sagemaker,
                                                                                   monkeypatch):
    deploy(pipeline, "--set", "capture_percent=100")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    sagemaker.inject_error("describe_endpoint_config", "AccessDeniedException",
                           "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
                           "sagemaker:DescribeEndpointConfig (key AKIAIOSFODNN7EXAMPLE, "
                           "secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY)")
    result = monitor()
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "missing IAM permission sagemaker:DescribeEndpointConfig" in error[0]
    assert "AKIAIOSFODNN7EXAMPLE" not in result.output and "wJalrXUtnFEMI" not in result.output


def test_with_since_the_hours_that_end_before_it_are_not_downloaded(pipeline, workdir):
    version = deploy(pipeline, "--set", "capture_percent=100")["endpoint_version"]
    newest = capture_keys(version)
    s3 = boto3.client("s3", region_name=REGION)
    line = s3.get_object(Bucket=BUCKET, Key=newest[0])["Body"].read()
    for hour in ("2019/12/31/23", "2020/01/01/00", "2020/01/01/01", "2020/01/02/00"):
        s3.put_object(Bucket=BUCKET, Key=f"{CAPTURES}{version}/{hour}/00-00-000-old.jsonl", Body=line)
    scratch = workdir / "scratch"
    scratch.mkdir()
    since = datetime(2020, 1, 1, 1, 30, tzinfo=UTC)  # inside the 01 hour: that hour is read, the reader cuts it
    assert backend().capture_directory(ENDPOINT, version, scratch, since=since) == scratch
    assert copied_files(scratch) == sorted([key[len(CAPTURES):] for key in newest] +
                                           [f"{version}/{hour}/00-00-000-old.jsonl"
                                            for hour in ("2020/01/01/01", "2020/01/02/00")])


def test_a_newest_capture_file_over_capture_max_mb_is_a_usage_error_naming_the_setting(pipeline):
    version = deploy(pipeline, "--set", "capture_percent=100")["endpoint_version"]
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=f"{CAPTURES}{version}/2099/01/01/00/00-00-000-big.jsonl", Body=b"x" * 2000)
    result = CliRunner().invoke(cli, ["--backend", "sagemaker", "--set", "capture_max_mb=0.001", "monitor",
                                      "--endpoint-name", ENDPOINT], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"the newest capture file under s3://{BUCKET}/{CAPTURES}{version}/ is larger than capture_max_mb=0.001" \
        in result.output
