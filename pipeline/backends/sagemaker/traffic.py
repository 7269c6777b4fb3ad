"""What a SHADOW bake saw on a SageMaker endpoint: CloudWatch per variant, agreement from the captures.

Counts and latency are SageMaker's own per-variant metrics (namespace ``AWS/SageMaker``, dimensions
``EndpointName`` and ``VariantName``; a shadow variant publishes them under its own name, which is how
SageMaker's shadow-test dashboard compares the two): ``Invocations``, ``Invocation4XXErrors`` and
``Invocation5XXErrors`` summed, ``ModelLatency`` (microseconds) at p95. CloudWatch keeps them per minute
and rounds a query's start down to the minute, and the minute of the mark holds the endpoint tests'
own requests to the candidate (they reached it under the same variant name): the interval starts at
the first whole minute after the mark. So on SageMaker a bake needs ``baking_seconds`` of a few minutes
to see anything, and a minute or two more for CloudWatch to publish the last one.

The pipeline's own requests (``InferenceId`` starting with ``TEST_INFERENCE_ID_PREFIX``) are counted
by CloudWatch like any other: those the captures hold within the interval are taken off each
variant's count (scaled up by ``capture_percent``, the captures' sampling).

Agreement: the captured records of both variants within the interval, the pipeline's own left out,
joined on the client's ``InferenceId`` (SageMaker replicates the request, id included, to the
shadow), or on ``eventId`` for a request sent without one; a row counts as compared when both
versions answered it, as agreeing when they predicted alike.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.base import IntervalTraffic, VersionTraffic
from pipeline.backends.sagemaker.captures import CaptureDownload
from pipeline.backends.sagemaker.session import AwsSession
from pipeline.monitoring.capture import decode_rows, iter_capture_records
from pipeline.serving.contract import TEST_INFERENCE_ID_PREFIX

NAMESPACE = "AWS/SageMaker"
MINUTE = timedelta(minutes=1)
USEFUL_BAKE_SECONDS = 180  # the mark's minute is skipped and the last one may not be published yet
# CloudWatch's metric -> the statistic read over the interval.
_STATISTICS = {"Invocations": "Sum", "Invocation4XXErrors": "Sum", "Invocation5XXErrors": "Sum", "ModelLatency": "p95"}


def now() -> datetime:
    """The clock the marks are read from (one place, so a test can set it)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class TrafficMark:
    """Where an analysis interval starts: a time (CloudWatch and the captures are both read by time)."""

    at: datetime


@dataclass(frozen=True)
class Interval:
    """Whole CloudWatch minutes: from the first after the mark, through the one in progress now."""

    start: datetime
    end: datetime

    @classmethod
    def since(cls, mark: TrafficMark, until: datetime) -> Interval | None:
        start = mark.at.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE
        if until <= start:
            return None
        minutes = math.ceil((until - start) / MINUTE)
        return cls(start, start + minutes * MINUTE)


class ShadowTraffic:
    """Both variants of one endpoint over one interval."""

    def __init__(self, aws: AwsSession, endpoint_name: str, serving: str, candidate: str) -> None:
        self.aws = aws
        self.endpoint_name = endpoint_name
        self.serving = serving
        self.candidate = candidate

    def since(self, mark: TrafficMark) -> IntervalTraffic:
        interval = Interval.since(mark, now())
        if interval is None:  # not one whole minute yet
            empty = VersionTraffic(0, 0, None)
            return IntervalTraffic(empty, empty)
        metrics = self._metrics(interval)
        with tempfile.TemporaryDirectory(prefix="mlops-shadow-") as scratch:
            records = {variant: self._records(variant, interval, Path(scratch))
                       for variant in (self.serving, self.candidate)}
        percent = self.aws.config.capture_percent
        traffic = {}
        for variant in (self.serving, self.candidate):
            own = sum(1 for key in records[variant] if key.startswith(TEST_INFERENCE_ID_PREFIX))
            own_requests = round(own * 100 / percent) if percent else 0
            requests, errors, p95 = metrics[variant]
            live = max(0, requests - own_requests)
            traffic[variant] = VersionTraffic(live, min(errors, live), p95)
        compared = agreeing = 0
        serving_rows = records[self.serving]
        for key, candidate_predictions in records[self.candidate].items():
            if key.startswith(TEST_INFERENCE_ID_PREFIX) or key not in serving_rows:
                continue
            serving_predictions = serving_rows[key]
            if not serving_predictions or len(serving_predictions) != len(candidate_predictions):
                continue
            compared += len(serving_predictions)
            agreeing += sum(1 for ours, theirs in zip(serving_predictions, candidate_predictions) if ours == theirs)
        return IntervalTraffic(traffic[self.serving], traffic[self.candidate], compared, agreeing)

    def _metrics(self, interval: Interval) -> dict[str, tuple[int, int, float | None]]:
        """Requests, errors and p95 latency (seconds) of each variant, one CloudWatch period over the interval."""
        period = int((interval.end - interval.start).total_seconds())
        queries = []
        for index, variant in enumerate((self.serving, self.candidate)):
            for metric, statistic in _STATISTICS.items():
                queries.append({"Id": f"v{index}_{metric.lower()}", "ReturnData": True, "MetricStat": {
                    "Metric": {"Namespace": NAMESPACE, "MetricName": metric,
                               "Dimensions": [{"Name": "EndpointName", "Value": self.endpoint_name},
                                              {"Name": "VariantName", "Value": variant}]},
                    "Period": period, "Stat": statistic}})
        values: dict[str, list[float]] = {}
        try:
            paginator = self.aws.client("cloudwatch").get_paginator("get_metric_data")
            for page in paginator.paginate(MetricDataQueries=queries, StartTime=interval.start,
                                           EndTime=interval.end):
                for result in page.get("MetricDataResults", []):
                    values.setdefault(result["Id"], []).extend(result.get("Values", []))
        except (ClientError, BotoCoreError) as err:
            raise self.aws.error(err, f"read the CloudWatch metrics of endpoint {self.endpoint_name}",
                                 "cloudwatch") from None
        found = {}
        for index, variant in enumerate((self.serving, self.candidate)):
            totals = {metric: sum(values.get(f"v{index}_{metric.lower()}", [])) for metric in _STATISTICS}
            latencies = values.get(f"v{index}_modellatency", [])
            requests = int(round(totals["Invocations"]))
            errors = int(round(totals["Invocation4XXErrors"] + totals["Invocation5XXErrors"]))
            # One period spans the interval: at most one p95; ModelLatency is in microseconds.
            p95 = max(latencies) / 1e6 if latencies and requests else None
            found[variant] = (requests, errors, p95)
        return found

    def _records(self, variant: str, interval: Interval, scratch: Path) -> dict[str, list[Any]]:
        """The variant's captured requests within the interval: join key -> predictions."""
        directory = CaptureDownload(self.aws, self.endpoint_name, variant).into(scratch, interval.start)
        if directory is None:
            return {}
        found: dict[str, list[Any]] = {}
        for record in iter_capture_records(directory, since=interval.start, version=variant):
            decoded = decode_rows(record)
            if decoded.time >= interval.end:
                continue
            found[decoded.inference_id] = decoded.predictions
        return found
