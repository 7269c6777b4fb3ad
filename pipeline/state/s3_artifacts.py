"""Job and run files in S3 (``artifact_url`` ``s3://bucket/prefix``, or the SageMaker backend's bucket).

Imported only when an ``s3://`` URL is written or read (``pipeline.state.artifacts``): the local path never loads
boto3. boto3 finds the credentials as the AWS CLI does, honours ``AWS_ENDPOINT_URL``, and retries throttling
(standard retry mode). An AWS error is one line naming the object, the error code and the permission it needs;
it never carries a credential.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.errors import ExitCode, PipelineError


class ObjectMissing(Exception):
    """No object at that URL."""


_CLIENTS: dict[tuple[str | None, ...], Any] = {}
_LOCK = threading.Lock()
_MISSING = {"NoSuchKey", "404", "NotFound"}
_PERMISSIONS = {"put_object": "s3:PutObject", "get_object": "s3:GetObject", "list_objects_v2": "s3:ListBucket",
                "delete_objects": "s3:DeleteObject"}


def client(region: str | None) -> Any:
    """One client per region, endpoint and identity in a process (a client keeps what it was created with)."""
    key = (region, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_ACCESS_KEY_ID"),
           os.environ.get("AWS_PROFILE"))
    with _LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = boto3.session.Session(region_name=region).client(
                "s3", config=BotoConfig(retries={"mode": "standard"}, user_agent_extra="mlops-pipeline"))
        return _CLIENTS[key]


def split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def _error(err: Exception, operation: str, url: str) -> PipelineError:
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code") or "error")
        message = " ".join(str(err.response.get("Error", {}).get("Message") or "").split())[:200]
        if code == "NoSuchBucket":
            hint = f": bucket {split(url)[0]!r} does not exist; create it, or set artifact_url to one that does"
        elif code in ("AccessDenied", "403", "AllAccessDisabled"):
            hint = f": this machine's AWS identity lacks {_PERMISSIONS.get(operation, 's3 access')} on it"
        else:
            hint = f": {message}" if message else ""
        return PipelineError(f"artifact store: {operation} {url} failed ({code}){hint}", ExitCode.FAILURE)
    return PipelineError(f"artifact store: {operation} {url} failed: {type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]}", ExitCode.FAILURE)


def get(url: str, region: str | None = None) -> bytes:
    bucket, key = split(url)
    try:
        return client(region).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code")) in _MISSING:
            raise ObjectMissing(url) from None
        raise _error(err, "get_object", url) from None
    except BotoCoreError as err:
        raise _error(err, "get_object", url) from None


def delete_prefix(url: str, region: str | None = None) -> None:
    bucket, prefix = split(url)
    s3 = client(region)
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except (ClientError, BotoCoreError) as err:
        raise _error(err, "delete_objects", url) from None


class S3Artifacts:
    """Where a command writes job and run files (``pipeline.state.artifacts.Artifacts``, as S3 objects):
    ``s3://bucket/prefix``; a bucket of None is the SageMaker SDK's convention, ``sagemaker-<region>-<account>``
    (looked up once, when the first file is written)."""

    remote = True

    def __init__(self, bucket: str | None, prefix: str, region: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region

    def _bucket(self) -> str:
        if self.bucket is None:
            try:
                account = boto3.session.Session(region_name=self.region).client("sts").get_caller_identity()["Account"]
            except (ClientError, BotoCoreError) as err:
                raise PipelineError(f"artifact store: the AWS account (for the bucket sagemaker-{self.region}-"
                                    f"<account>) cannot be looked up: {type(err).__name__}; set s3_bucket or "
                                    f"artifact_url",
                                    ExitCode.FAILURE) from None
            self.bucket = f"sagemaker-{self.region}-{account}"
        return self.bucket

    def url(self, key: str) -> str:
        path = "/".join(part for part in (self.prefix, key) if part)
        return f"s3://{self._bucket()}/{path}"

    def describe(self) -> str:
        if self.bucket is None:
            return f"s3://sagemaker-{self.region}-<account>/{self.prefix}"
        return self.url("")

    def put(self, key: str, data: bytes) -> str:
        url = self.url(key)
        bucket, object_key = split(url)
        try:
            client(self.region).put_object(Bucket=bucket, Key=object_key, Body=data)
        except (ClientError, BotoCoreError) as err:
            raise _error(err, "put_object", url) from None
        return url
