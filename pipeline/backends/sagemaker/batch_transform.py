"""``predict --backend sagemaker``: an S3 file scored by a SageMaker Batch Transform job of a training job's model.

A transform job reads header-less CSV lines and knows no column names, so the input is read here first, as
``predict`` reads a local file (``pipeline.scoring.reading``): the header matched to the model's input schema by
name, a row the model cannot score found by its row number -- before any job starts (exit 2), or left out with
``--on-bad-row skip``. The model's columns, in its order and as the file spells them, go to
``s3://<bucket>/<job>/input/rows.csv``, the ids to a scratch file here. The transform job runs the model with the
program every endpoint of the pipeline serves with (``serve.py``: its ``transform_fn`` over the hooks of
``inference.py``), the CSV split by line (``SplitType=Line``, ``MultiRecord`` batches under ``max_payload_mb``),
the answers JSON, assembled by line. They are read back, joined with the ids and written, with a header, to
``--output`` (``pipeline.scoring.writing``: the same columns as a local ``predict``). Waiting, the timeout
(``sagemaker_timeout_minutes``; a job that outlasts it is stopped) and AWS errors are as for training jobs. The
scratch objects and the model are deleted once the output is written.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.base import DeploymentError
from pipeline.backends.sagemaker import artifacts, versions
from pipeline.backends.sagemaker.errors import shorten
from pipeline.backends.sagemaker.session import AwsSession
from pipeline.container.model_files import MODEL_SHA256_ENV
from pipeline.errors import ExitCode, PipelineError
from pipeline.scoring.offline import model_columns
from pipeline.scoring.predict import BadRows, PredictReport
from pipeline.scoring.reading import CsvBlocks, ids_of, match_columns, model_text, parse_block
from pipeline.scoring.writing import PredictionWriter
from pipeline.training.jobs import TrainingJob, timestamp_name

if TYPE_CHECKING:
    from pipeline.state.store import DeploymentStore

log = logging.getLogger(__package__)  # one logger for the whole backend

TRANSFORM_DONE = frozenset({"Completed", "Failed", "Stopped"})
ROWS_FILE = "rows.csv"


class BatchTransform:
    def __init__(self, aws: AwsSession, store: DeploymentStore) -> None:
        self.aws = aws
        self.config = aws.config
        self.store = store

    def run(self, job: TrainingJob, request: Any) -> PredictReport:
        """Score ``request.input`` (s3://) into ``request.output`` (s3://) with ``job``'s model."""
        started = time.monotonic()
        role = self.aws.role(job)
        name = timestamp_name(f"{self.config.model_name_prefix}-bt")
        report = PredictReport(request.input, request.output, f"SageMaker Batch Transform job {name}")
        self._check_output_bucket(request.output)
        bucket = self.aws.bucket()
        with tempfile.TemporaryDirectory(prefix="mlops-transform-") as scratch:
            rows_file, ids_file = Path(scratch) / ROWS_FILE, Path(scratch) / "ids.txt"
            self._prepare(job, request, rows_file, ids_file, report)
            if report.rows_read - report.skipped:
                self._upload(rows_file, bucket, f"{name}/input/{ROWS_FILE}")
                self._create(job, role, name, bucket, request.probabilities)
                try:
                    self._wait(name)
                finally:
                    self.aws.try_delete("delete_model", f"delete model {name}", ModelName=name)
            output = Path(scratch) / "predictions.csv"
            self._assemble(f"s3://{bucket}/{name}/output/{ROWS_FILE}.out", ids_file, output, request, report)
            self._upload(output, *artifacts.split_s3_uri(request.output))
        for key in (f"{name}/input/{ROWS_FILE}", f"{name}/output/{ROWS_FILE}.out"):
            try:
                self.aws.s3.delete_object(Bucket=bucket, Key=key)
            except (ClientError, BotoCoreError):
                log.warning("could not delete the scratch object s3://%s/%s", bucket, key)
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _check_output_bucket(self, output: str) -> None:
        """An output bucket that does not exist is said before the input is read and a job is paid for."""
        bucket, _ = artifacts.split_s3_uri(output)
        try:
            self.aws.s3.head_bucket(Bucket=bucket)
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket", "NotFound"):
                raise PipelineError(f"--output {output!r}: the bucket {bucket!r} does not exist") from None
            raise self.aws.error(err, f"check the output bucket {bucket}", "s3") from None
        except BotoCoreError as err:
            raise self.aws.error(err, f"check the output bucket {bucket}", "s3") from None

    # ----------------------------------------------------------------- the input, read here
    def _prepare(self, job: TrainingJob, request: Any, rows_file: Path, ids_file: Path, report: PredictReport) -> None:
        bucket, key = artifacts.split_s3_uri(request.input)
        body = self.aws.call(self.aws.s3, "get_object", f"read {request.input}", Bucket=bucket, Key=key)["Body"]
        bad = BadRows(request.on_bad_row, request.input, report)
        with open(rows_file, "wb") as rows, open(ids_file, "w", encoding="utf-8") as ids:
            try:
                blocks = CsvBlocks(body, request.input)
                columns = match_columns(blocks.header, model_columns(job), request.id_column, request.input)
                for block in blocks:
                    parsed = parse_block(block, columns)
                    keep = None
                    if parsed.bad.any():
                        bad.found(block, parsed)  # raises under --on-bad-row fail: no job is started
                        keep = ~parsed.bad
                    values = ids_of(block, columns)
                    kept = values if keep is None else [value for value, ok in zip(values, keep) if ok]
                    rows.write(model_text(block, columns, keep))
                    ids.write("".join(f"{value}\n" for value in kept))
            except (ClientError, BotoCoreError) as err:
                raise self.aws.error(err, f"read {request.input}", "s3") from None
            report.rows_read = blocks.rows

    def _upload(self, path: Path, bucket: str, key: str) -> None:
        try:
            self.aws.s3.upload_file(str(path), bucket, key)
        except (ClientError, BotoCoreError) as err:
            raise self.aws.error(err, f"upload s3://{bucket}/{key}", "s3") from None
        except S3UploadFailedError as err:
            raise DeploymentError(f"cannot upload s3://{bucket}/{key}: {shorten(str(err))}") from None

    # ----------------------------------------------------------------- the job
    def _create(self, job: TrainingJob, role: str, name: str, bucket: str, probabilities: bool) -> None:
        model_uri, source_uri = versions.model_artifacts(self.aws, job)
        image = job.manifest.get("training_image") or self.aws.image_uri()
        tags = self.aws.tags(job.name, job.metrics.get("accuracy"))
        self.aws.call(self.aws.sagemaker, "create_model", f"create model {name}", ModelName=name,
                      ExecutionRoleArn=role, Tags=tags,
                      PrimaryContainer={"Image": image, "ModelDataUrl": model_uri, "Environment": {
                          "SAGEMAKER_PROGRAM": artifacts.SERVE_PROGRAM, "SAGEMAKER_SUBMIT_DIRECTORY": source_uri,
                          "SAGEMAKER_REGION": self.aws.region, "SAGEMAKER_CONTAINER_LOG_LEVEL": str(logging.INFO),
                          MODEL_SHA256_ENV: job.model_sha256}})
        accept = "application/json; probabilities=true" if probabilities else "application/json"
        log.info("creating SageMaker transform job %s (training job %s on %s)", name, job.name,
                 self.config.instance_type)
        self.aws.call(
            self.aws.sagemaker, "create_transform_job", f"create transform job {name}", TransformJobName=name,
            ModelName=name, BatchStrategy="MultiRecord", MaxConcurrentTransforms=1,
            MaxPayloadInMB=max(1, min(100, int(self.config.max_payload_mb))), Tags=tags,
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                            "S3Uri": f"s3://{bucket}/{name}/input/"}},
                            "ContentType": "text/csv", "SplitType": "Line", "CompressionType": "None"},
            TransformOutput={"S3OutputPath": f"s3://{bucket}/{name}/output/", "Accept": accept, "AssembleWith": "Line"},
            TransformResources={"InstanceType": self.config.instance_type, "InstanceCount": 1})

    def _wait(self, name: str) -> None:
        description = self.aws.wait_for_job(
            f"transform job {name}",
            lambda: self.aws.call(self.aws.sagemaker, "describe_transform_job", f"describe transform job {name}",
                                  TransformJobName=name),
            lambda d: d["TransformJobStatus"] in TRANSFORM_DONE, lambda d: d["TransformJobStatus"],
            lambda: self.aws.sagemaker.stop_transform_job(TransformJobName=name))
        status = description["TransformJobStatus"]
        if status != "Completed":
            reason = shorten(description.get("FailureReason") or "no reason given", 500)
            raise DeploymentError(f"transform job {name} {status.lower()}: {reason}; nothing was written",
                                  hint=f"The job's log is in CloudWatch, log group /aws/sagemaker/TransformJobs, "
                                       f"stream {name}/...")

    # ----------------------------------------------------------------- the answers, joined with the ids
    def _assemble(self, answers_uri: str, ids_file: Path, output: Path, request: Any, report: PredictReport) -> None:
        expected = report.rows_read - report.skipped
        with open(ids_file, encoding="utf-8") as ids, PredictionWriter(output, request.id_column) as writer:
            if expected:
                bucket, key = artifacts.split_s3_uri(answers_uri)
                body = self.aws.call(self.aws.s3, "get_object", f"read {answers_uri}", Bucket=bucket, Key=key)["Body"]
                for line in body.iter_lines(chunk_size=1 << 20):
                    if not line.strip():
                        continue
                    answer = self._answer(line, answers_uri)
                    labels = answer["predictions"]
                    if writer.rows + len(labels) > expected:
                        raise DeploymentError(f"{answers_uri} holds more predictions than the {expected:,} rows sent")
                    if not writer.header_written:
                        writer.header(answer.get("classes") if request.probabilities else None)
                    writer.write([ids.readline()[:-1] for _ in labels], labels,
                                 answer.get("probabilities") if request.probabilities else None)
            if writer.rows != expected:
                raise DeploymentError(f"{answers_uri} holds {writer.rows:,} predictions for {expected:,} rows")
            if not writer.header_written:
                writer.header(None)
            report.rows_written = writer.rows

    @staticmethod
    def _answer(line: bytes, where: str) -> dict[str, Any]:
        try:
            answer = json.loads(line)
            if isinstance(answer, dict) and isinstance(answer.get("predictions"), list):
                return answer
        except ValueError:
            pass
        raise PipelineError(f"{where}: a line is not the JSON predictions serve.py answers ({line[:80]!r})",
                            ExitCode.FAILURE)
