"""`predict --backend sagemaker`: an S3 file scored by a SageMaker Batch Transform job, through the real CLI,
against moto with the container emulated (``tests/transform_emulation.py``)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.aws_fixtures import BUCKET, REGION, ROLE
from tests.conftest import train_job
from tests.sagemaker_emulation import SageMakerEmulation
from tests.test_predict import iris_rows
from tests.transform_emulation import TransformEmulation

DATA = "data-bucket"


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def transforms(sagemaker: SageMakerEmulation) -> Iterator[TransformEmulation]:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=DATA)
    with TransformEmulation(sagemaker) as emulation:
        yield emulation


def s3() -> object:
    return boto3.client("s3", region_name=REGION)


def put(key: str, path: Path) -> str:
    s3().put_object(Bucket=DATA, Key=key, Body=path.read_bytes())  # type: ignore[attr-defined]
    return f"s3://{DATA}/{key}"


def get(key: str) -> bytes:
    return s3().get_object(Bucket=DATA, Key=key)["Body"].read()  # type: ignore[attr-defined]


def test_a_batch_transform_job_scores_an_s3_file_as_predict_does_here(pipeline, transforms, workdir):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    iris_rows(workdir / "rows.csv", 3000)
    source = put("in/rows.csv", workdir / "rows.csv")

    result = _invoke("predict", "--training-job", job, "--backend", "sagemaker", "--input", source,
                     "--output", f"s3://{DATA}/out/predictions.csv", "--id-column", "customer", "--probabilities",
                     "--json")
    assert result.exit_code == 0, result.output
    assert "SageMaker Batch Transform job iris-classifier-bt-" in result.stdout
    here = _invoke("predict", "--training-job", job, "--input", "rows.csv", "--output", "here.csv",
                   "--id-column", "customer", "--probabilities")
    assert here.exit_code == 0, here.output
    assert get("out/predictions.csv") == (workdir / "here.csv").read_bytes()

    [transform] = transforms.jobs
    assert transform["input"]["ContentType"] == "text/csv" and transform["input"]["SplitType"] == "Line"
    assert transform["batch_strategy"] == "MultiRecord" and transform["max_payload_mb"] == 6
    assert transform["output"]["Accept"] == "application/json; probabilities=true"
    assert transform["output"]["AssembleWith"] == "Line"
    assert transform["environment"]["SAGEMAKER_PROGRAM"] == "serve.py"  # the same transform_fn as every endpoint
    assert transform["environment"]["MLOPS_MODEL_SHA256"] and sum(transforms.batches) == 3000
    # the scratch objects and the model are gone; the job stays in SageMaker's history
    listed = s3().list_objects_v2(Bucket=BUCKET, Prefix=transform["name"])  # type: ignore[attr-defined]
    assert listed.get("KeyCount", 0) == 0
    assert not boto3.client("sagemaker", region_name=REGION).list_models(NameContains=transform["name"])["Models"]


def test_predict_through_a_sagemaker_endpoint_gives_what_the_job_gives_here(pipeline, sagemaker, workdir):
    # moto's latency on a busy machine is not the subject here, as in the other SageMaker modules
    assert pipeline("--role-arn", ROLE, "--set", "max_p95_latency_ms=null").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    iris_rows(workdir / "rows.csv", 2000)
    served = _invoke("predict", "--endpoint-name", "iris-model", "--input", "rows.csv", "--output", "served.csv",
                     "--id-column", "customer", "--probabilities")
    assert served.exit_code == 0, served.output
    assert "(endpoint iris-model, version iris-model-" in served.output
    assert _invoke("predict", "--training-job", job, "--input", "rows.csv", "--output", "here.csv", "--id-column",
                   "customer", "--probabilities").exit_code == 0
    assert (workdir / "served.csv").read_bytes() == (workdir / "here.csv").read_bytes()


def test_a_local_job_is_uploaded_and_rows_numbered_when_there_is_no_id_column(transforms, workdir):
    job = train_job(workdir)
    iris_rows(workdir / "rows.csv", 40)
    source = put("rows.csv", workdir / "rows.csv")
    result = _invoke("--role-arn", ROLE, "predict", "--training-job", job, "--backend", "sagemaker",
                     "--input", source, "--output", f"s3://{DATA}/p.csv")
    assert result.exit_code == 0, result.output
    lines = get("p.csv").decode().splitlines()
    assert lines[0] == "row,prediction" and len(lines) == 41 and lines[40].startswith("40,")


def test_a_row_the_model_cannot_score_stops_before_any_job_starts(pipeline, transforms, workdir):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    data = iris_rows(workdir / "rows.csv", 100).astype({"petal length (cm)": object})
    data.loc[41, "petal length (cm)"] = "4,1"  # a field too many on row 42
    data.to_csv(workdir / "rows.csv", index=False)
    source = put("rows.csv", workdir / "rows.csv")
    result = _invoke("predict", "--training-job", job, "--backend", "sagemaker", "--input", source,
                     "--output", f"s3://{DATA}/p.csv")
    assert result.exit_code == 2, result.output
    assert "row 42 cannot be scored" in result.output and "nothing was written" in result.output
    assert transforms.jobs == []
    missing = _invoke("predict", "--training-job", job, "--backend", "sagemaker", "--input", source,
                      "--output", "s3://no-such-bucket/p.csv")
    assert missing.exit_code == 2 and "the bucket 'no-such-bucket' does not exist" in missing.output


def test_a_failed_transform_job_is_exit_1_with_its_reason_and_writes_nothing(pipeline, transforms, sagemaker,
                                                                             workdir):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    iris_rows(workdir / "rows.csv", 50)
    source = put("rows.csv", workdir / "rows.csv")
    sagemaker.break_next_model("ModuleNotFoundError: No module named 'sklearn.linear_model._base'")
    result = _invoke("predict", "--training-job", job, "--backend", "sagemaker", "--input", source,
                     "--output", f"s3://{DATA}/p.csv")
    assert result.exit_code == 1, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "transform job iris-classifier-bt-" in error and "failed: ClientError" in error
    assert "log group /aws/sagemaker/TransformJobs" in result.output
    assert s3().list_objects_v2(Bucket=DATA, Prefix="p.csv").get("KeyCount", 0) == 0  # type: ignore[attr-defined]


def test_a_transform_job_that_outlasts_the_timeout_is_stopped(pipeline, transforms, workdir):
    assert pipeline("--role-arn", ROLE, "--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    iris_rows(workdir / "rows.csv", 20)
    source = put("rows.csv", workdir / "rows.csv")
    transforms.hold = True
    result = _invoke("--set", "sagemaker_timeout_minutes=0.002", "predict", "--training-job", job, "--backend",
                     "sagemaker", "--input", source, "--output", f"s3://{DATA}/p.csv")
    assert result.exit_code == 1, result.output
    assert "did not finish within sagemaker_timeout_minutes=0.002" in result.output and "stopped it" in result.output
    assert transforms.stopped == [transforms.jobs[0]["name"]]
