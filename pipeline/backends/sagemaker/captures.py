"""Captured requests of a SageMaker endpoint, brought from S3 into the layout ``monitor`` reads.

SageMaker writes them to ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl``, and a
version's production variant is named after the version, so below the endpoint the layout is the
local endpoint's capture directory's (``pipeline.monitoring.capture``): the files are copied as they
are. The destination and the variant are read from the version's endpoint config, where SageMaker
took them from; a config already deleted (retention) falls back to where the pipeline sends captures.

Bounded: the hours are walked newest first (S3 lists ``CommonPrefixes`` one level at a time) and the
download stops at ``capture_max_mb``, so a year of captures costs what the newest hundred MB cost,
and what ``monitor`` judges is the latest traffic. What was left out is logged.
"""
from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.sagemaker import artifacts
from pipeline.backends.sagemaker.errors import not_found
from pipeline.backends.sagemaker.session import AwsSession
from pipeline.backends.sagemaker.versions import CAPTURE_PREFIX
from pipeline.errors import PipelineError
from pipeline.monitoring.capture import SUFFIXES

log = logging.getLogger(__package__)  # one logger for the whole backend

# yyyy/, mm/, dd/, hh/: the levels below the variant, each a number of this many digits.
_LEVELS = (re.compile(r"\d{4}"), re.compile(r"\d{2}"), re.compile(r"\d{2}"), re.compile(r"\d{2}"))
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class CaptureDownload:
    """The captures of one version of one endpoint, newest hours first, into a scratch directory."""

    def __init__(self, aws: AwsSession, endpoint_name: str, version: str) -> None:
        self.aws = aws
        self.endpoint_name = endpoint_name
        self.version = version
        self.budget_bytes = int(aws.config.capture_max_mb * 1024 * 1024)

    def source(self) -> tuple[str, str] | None:
        """Bucket and key prefix (ending in ``/``) of the version's captures; None when its endpoint config
        captures nothing."""
        try:
            config = self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=self.version)
        except ClientError as err:
            if not not_found(err):
                raise self.aws.error(err, f"describe endpoint config {self.version}") from None
            config = None
        except BotoCoreError as err:
            raise self.aws.error(err, f"describe endpoint config {self.version}") from None
        if config is None:
            log.info("endpoint config %s no longer exists: looking for its captures where the pipeline sends them",
                     self.version)
            bucket, prefix, variant = self.aws.bucket_name(), CAPTURE_PREFIX, self.version
        else:
            capture = config.get("DataCaptureConfig") or {}
            if not capture.get("DestinationS3Uri"):
                return None
            bucket, prefix = artifacts.split_s3_uri(capture["DestinationS3Uri"])
            variants = config.get("ProductionVariants") or [{}]
            variant = variants[0].get("VariantName") or self.version
        parts = [part for part in (prefix.strip("/"), self.endpoint_name, variant) if part]
        return bucket, "/".join(parts) + "/"

    def into(self, scratch: Path, since: datetime | None = None) -> Path | None:
        """Download into ``scratch/<version>/yyyy/mm/dd/hh/``; ``scratch``, or None when nothing was captured.
        With ``since``, hours that end before it are not listed (the reader would skip them anyway)."""
        source = self.source()
        if source is None:
            return None
        bucket, prefix = source
        where = f"s3://{bucket}/{prefix}"
        target = scratch / self.version
        files = size = 0
        full = False  # the budget is reached: older hours are neither listed nor downloaded
        first = None if since is None else (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
        oldest = () if first is None else (first.year, first.month, first.day, first.hour)
        try:
            for hour in self._hours(bucket, prefix, 0, oldest):
                objects = sorted(self._objects(bucket, hour), key=lambda item: item["Key"], reverse=True)
                for item in objects:
                    name = item["Key"][len(hour):]
                    if not (_FILE_NAME.fullmatch(name) and name.endswith(SUFFIXES)):
                        continue  # not a capture file (a folder marker, something else put there)
                    if size + int(item.get("Size", 0)) > self.budget_bytes:
                        full = True
                        break
                    path = target / hour[len(prefix):] / name
                    if self._download(bucket, item["Key"], path):
                        files += 1
                        size += int(item.get("Size", 0))
                if full:
                    break
        except ClientError as err:
            if not_found(err):  # no such bucket: nothing was ever captured there
                return None
            raise self.aws.error(err, f"read the captures under {where}", "s3") from None
        except BotoCoreError as err:
            raise self.aws.error(err, f"read the captures under {where}", "s3") from None
        if full and not files:
            raise PipelineError(f"the newest capture file under {where} is larger than capture_max_mb="
                                f"{self.aws.config.capture_max_mb:g}: raise capture_max_mb to read it")
        if full:
            log.warning("read the newest %d capture file(s) of %s (%.1f MB): capture_max_mb=%g reached, older "
                        "captures left out (raise capture_max_mb to read more)", files, where, size / 1e6,
                        self.aws.config.capture_max_mb)
        else:
            log.info("downloaded %d capture file(s) (%.1f MB) from %s", files, size / 1e6, where)
        return scratch if files else None

    def _hours(self, bucket: str, prefix: str, level: int, oldest: tuple[int, ...],
               above: tuple[int, ...] = ()) -> Iterator[str]:
        """The ``yyyy/mm/dd/hh/`` prefixes under ``prefix``, newest first, listed one level at a time; none
        older than ``oldest`` (year, month, day, hour; empty for all)."""
        if level == len(_LEVELS):
            yield prefix
            return
        children = []
        for page in self.aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                                          Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                child = common["Prefix"]
                if _LEVELS[level].fullmatch(child[len(prefix):-1]):
                    children.append(((*above, int(child[len(prefix):-1])), child))
        for when, child in sorted(children, reverse=True):
            if when < oldest[:len(when)]:
                break  # this one and every older one end before `since`
            yield from self._hours(bucket, child, level + 1, oldest, when)

    def _download(self, bucket: str, key: str, path: Path) -> bool:
        """One capture file to ``path``; False when it was deleted since it was listed (a lifecycle rule)."""
        try:
            answer = self.aws.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if not_found(err):
                return False
            raise self.aws.error(err, f"download s3://{bucket}/{key}", "s3") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            shutil.copyfileobj(answer["Body"], handle)
        return True

    def _objects(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                                          Delimiter="/"):
            yield from page.get("Contents", [])
