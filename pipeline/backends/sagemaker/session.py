"""One AWS session for a backend: its boto3 clients and what both training and endpoints read.

Training jobs and endpoints share it, so a run creates each client once, looks
up the bucket and the framework image once, and polls and reports AWS errors
the same way everywhere.
"""
from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.sagemaker import artifacts
from pipeline.backends.sagemaker.errors import WaitTimeout, aws_error, not_found
from pipeline.errors import PipelineError
from pipeline.progress import progress

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.training.jobs import TrainingJob

log = logging.getLogger(__package__)  # one logger for the whole backend

TAG_TRAINING_JOB = "mlops:training-job"
TAG_ACCURACY = "mlops:accuracy"
TAG_RUN_ID = "mlops:run-id"


@dataclass(frozen=True)
class Polling:
    """First wait, growth factor, longest wait (seconds). Training and endpoint updates take minutes."""

    initial_seconds: float
    factor: float
    max_seconds: float


class AwsSession:
    def __init__(self, config: PipelineConfig, run_id: str | None, source_dir: Path, polling: Polling) -> None:
        self.config = config
        self.run_id = run_id  # tagged on what the run creates
        self.region = config.aws_region
        self.source_dir = source_dir  # the files shipped as sourcedir.tar.gz
        self.polling = polling
        self._session = boto3.session.Session(region_name=self.region)
        self._clients: dict[str, Any] = {}
        self._bucket_name: str | None = None
        self._image: str | None = None

    # ----------------------------------------------------------------- clients and errors
    def client(self, service: str) -> Any:
        if service not in self._clients:
            options: dict[str, Any] = {"retries": {"mode": "standard"}, "user_agent_extra": "mlops-pipeline"}
            if service == "sagemaker-runtime":
                options.update(read_timeout=self.config.request_timeout_seconds,
                               connect_timeout=self.config.request_timeout_seconds,
                               max_pool_connections=max(10, self.config.performance_concurrency))
            # AWS_ENDPOINT_URL (e.g. a moto server) is honoured by boto3 itself.
            self._clients[service] = self._session.client(service, config=BotoConfig(**options))
        return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @property
    def runtime(self) -> Any:
        return self.client("sagemaker-runtime")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    def error(self, err: Exception, action: str, service: str = "sagemaker") -> PipelineError:
        return aws_error(err, action, service, self.region)

    def call(self, client: Any, operation: str, action: str, **params: Any) -> Any:
        try:
            return getattr(client, operation)(**params)
        except (ClientError, BotoCoreError) as err:
            raise self.error(err, action, client.meta.service_model.signing_name) from None

    def try_delete(self, operation: str, action: str, **params: Any) -> bool:
        """Delete one resource; a resource that is already gone is not an error."""
        try:
            getattr(self.sagemaker, operation)(**params)
            return True
        except ClientError as err:
            if not_found(err):
                return False
            raise self.error(err, action) from None
        except BotoCoreError as err:
            raise self.error(err, action) from None

    # ----------------------------------------------------------------- settings
    def role(self, job: TrainingJob | None = None) -> str:
        role = self.config.role_arn or (job.manifest.get("role_arn") if job else None)
        if not role:
            raise PipelineError("the SageMaker backend needs an IAM role for SageMaker: pass "
                                "--role-arn arn:aws:iam::<account>:role/<name>")
        return role

    def image_uri(self) -> str:
        """The scikit-learn framework image, from the SageMaker SDK's bundled table (no AWS call)."""
        if self._image is None:
            from sagemaker.core import image_uris

            try:
                self._image = image_uris.retrieve("sklearn", region=self.region,
                                                  version=self.config.sklearn_framework_version, py_version="py3",
                                                  instance_type=self.config.training_instance_type)
            except ValueError as err:
                problem = str(err).split(". You may need")[0]
                supported = re.search(r"Supported [^:]+: .*", str(err))
                raise PipelineError(f"no SageMaker scikit-learn image for sklearn_framework_version "
                                    f"{self.config.sklearn_framework_version!r} in aws_region {self.region!r}: "
                                    f"{problem}" + (f"; {supported.group(0)}" if supported else "")) from None
        return self._image

    def bucket(self) -> str:
        """``s3_bucket``, or the SDK's convention ``sagemaker-<region>-<account>`` (created when missing)."""
        if self._bucket_name:
            return self._bucket_name
        name = self.bucket_name()
        try:
            self.s3.head_bucket(Bucket=name)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code"))
            if code in ("404", "NoSuchBucket", "NotFound"):
                if self.config.s3_bucket:
                    raise PipelineError(f"s3_bucket {name!r} does not exist: create it (aws s3 mb s3://{name} "
                                        f"--region {self.region}) or unset s3_bucket to use "
                                        f"sagemaker-{self.region}-<account>") from None
                log.info("creating S3 bucket %s", name)
                params: dict[str, Any] = {"Bucket": name}
                if self.region != "us-east-1":
                    params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                self.call(self.s3, "create_bucket", f"create the S3 bucket {name}", **params)
            elif code in ("403", "AccessDenied"):
                raise PipelineError(f"S3 bucket {name!r} exists but cannot be used (403): it belongs to another "
                                    f"account or denies s3:ListBucket; set s3_bucket to a bucket you own") from None
            else:
                raise self.error(err, f"check the S3 bucket {name}", "s3") from None
        except BotoCoreError as err:
            raise self.error(err, f"check the S3 bucket {name}", "s3") from None
        self._bucket_name = name
        return name

    def bucket_name(self) -> str:
        """The bucket ``bucket`` uses, without checking or creating it (for reading what may be there)."""
        if self._bucket_name:
            return self._bucket_name
        if self.config.s3_bucket:
            return self.config.s3_bucket
        account = self.call(self.client("sts"), "get_caller_identity", "look up the AWS account")["Account"]
        return f"sagemaker-{self.region}-{account}"

    def tags(self, training_job: str, accuracy: Any) -> list[dict[str, str]]:
        numeric = isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool)
        shown = f"{accuracy:.4f}" if numeric else "unknown"
        return [{"Key": TAG_TRAINING_JOB, "Value": training_job}, {"Key": TAG_ACCURACY, "Value": shown},
                {"Key": TAG_RUN_ID, "Value": self.run_id or "none"}]

    def url(self, endpoint_name: str) -> str:
        return f"{self.runtime.meta.endpoint_url}/endpoints/{endpoint_name}/invocations"

    # ----------------------------------------------------------------- S3
    def put(self, bucket: str, key: str, body: Any) -> str:
        self.call(self.s3, "put_object", f"upload s3://{bucket}/{key}", Bucket=bucket, Key=key, Body=body)
        return f"s3://{bucket}/{key}"

    def get(self, uri: str, path: Path) -> str:
        """Download an object to ``path``; returns its ETag."""
        bucket, key = artifacts.split_s3_uri(uri)
        answer = self.call(self.s3, "get_object", f"download {uri}", Bucket=bucket, Key=key)
        with open(path, "wb") as handle:
            shutil.copyfileobj(answer["Body"], handle)
        return str(answer.get("ETag", ""))

    def sourcedir(self) -> bytes:
        return artifacts.sourcedir(self.source_dir)

    # ----------------------------------------------------------------- waiting
    def wait_for_job(self, what: str, fetch: Callable[[], Any], done: Callable[[Any], bool],
                     show: Callable[[Any], str], stop: Callable[[], Any]) -> Any:
        """``wait`` for a training or transform job; one that outlasts the timeout is stopped, since a job
        nobody watches goes on running (and billing). The timeout's line says whether it could be stopped."""
        try:
            return self.wait(what, fetch, done, show)
        except WaitTimeout as err:
            try:
                stop()
                stopped = "stopped it"
            except (ClientError, BotoCoreError):
                stopped = "could not stop it: stop it in the SageMaker console"
            raise WaitTimeout(f"{err.message}; {stopped}") from None

    def wait(self, what: str, fetch: Callable[[], Any], done: Callable[[Any], bool],
             show: Callable[[Any], str]) -> Any:
        """Poll ``fetch`` with growing pauses until ``done``, at most ``sagemaker_timeout_minutes``."""
        minutes = self.config.sagemaker_timeout_minutes
        deadline = time.monotonic() + minutes * 60
        delay = self.polling.initial_seconds
        shown = None
        while True:
            state = fetch()
            text = show(state)
            if text != shown:
                log.info("%s: %s", what, text)
                shown = text
            if done(state):
                progress().done(f"waiting for {what}", text)
                return state
            progress().report(f"waiting for {what}", detail=text)
            if time.monotonic() + delay > deadline:
                raise WaitTimeout(f"{what} did not finish within sagemaker_timeout_minutes={minutes:g} "
                                  f"(last status: {text})")
            time.sleep(delay)
            delay = min(delay * self.polling.factor, self.polling.max_seconds)
