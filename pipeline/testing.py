"""Testing a live endpoint: health, prediction parity and accuracy, latency and throughput, robustness.

The tester talks to an ``EndpointClient``: plain HTTP for the local endpoint
(``HttpEndpointClient``), ``sagemaker-runtime`` for SageMaker (the backend
supplies it). The checks are the same for both, so a model passes or fails
for the same reasons wherever it runs. ``HttpEndpointClient`` marks every request
with ``TEST_TRAFFIC_HEADER``: the endpoint counts the tests but never captures
them, so ``monitor`` never judges the tester's own held-out rows as live traffic.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.container import inference
from pipeline.errors import ExitCode, PipelineError
from pipeline.progress import progress
from pipeline.serving.client import VERSION_HEADER, EndpointClient, EndpointDown, Reply, poll_ping
from pipeline.training.datasets import python_scalar

if TYPE_CHECKING:
    from pipeline.training.jobs import TrainingJob

log = logging.getLogger(__name__)

LATENCY_HISTOGRAM_BINS = 24  # the run report's chart: bin edges and counts, never every sample


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class CapturedRequest:
    inference_id: str
    body: bytes
    content_type: str
    accept: str  # what the serving version answered with (JSON or CSV)


@dataclass(frozen=True)
class ReplaySample:
    requests: list[CapturedRequest]
    skipped: str | None = None  # why there is nothing to replay


@dataclass
class TestReport:
    """Everything the endpoint tests found; ``passed`` only if every check passed."""

    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    started_at: str | None = None  # when the first check began and the last one ended (the run's timeline)
    finished_at: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not self.failures

    @property
    def failure_reason(self) -> str | None:
        return "; ".join(self.failures) if self.failures else None

    def to_dict(self) -> dict[str, Any]:
        accuracy = self.checks.get("prediction_accuracy", {})
        performance = self.checks.get("performance", {})
        return {
            "overall_status": "passed" if self.passed else "failed",
            "test_summary": {
                "health_passed": self.checks.get("health", {}).get("passed", False),
                "prediction_accuracy": accuracy.get("accuracy"),
                "parity_mismatches": accuracy.get("mismatches"),
                "avg_latency_ms": performance.get("avg_latency_ms"),
                "p50_latency_ms": performance.get("p50_latency_ms"),
                "p95_latency_ms": performance.get("p95_latency_ms"),
                "p99_latency_ms": performance.get("p99_latency_ms"),
                "throughput_rps": performance.get("throughput_rps"),
                "performance_success_rate": performance.get("success_rate"),
                "robustness_passed": self.checks.get("robustness", {}).get("passed"),
            },
            "checks": self.checks,
            "failures": self.failures,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def latency_histogram(latencies_ms: np.ndarray, bins: int = LATENCY_HISTOGRAM_BINS) -> dict[str, list[Any]]:
    """Bin edges (ms) and counts of the latencies, on log-spaced bins: latencies have a long tail,
    and equal-width bins would put nearly every request in the first one."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return {"edges_ms": [], "counts": []}
    low, high = float(values.min()), float(values.max())
    edges = np.geomspace(low, high, bins + 1) if high > low else np.array([low * 0.9, high * 1.1])
    counts, edges = np.histogram(values, bins=edges)
    return {"edges_ms": [round(float(edge), 3) for edge in edges], "counts": [int(count) for count in counts]}


def to_csv(rows: np.ndarray) -> bytes:
    """Rows as CSV with the shortest text that reads back as the same float (``repr``).

    Exact like ``%.17g`` but shorter (``0.1``, not ``0.10000000000000001``) and 4x faster
    to produce than pandas' ``to_csv``.
    """
    return ("\n".join(",".join(map(repr, row)) for row in np.asarray(rows, dtype=np.float64).tolist()) +
            "\n").encode()


class EndpointTester:
    """Runs the checks in order; a failed health check skips the rest (nothing to test)."""

    def __init__(self, client: EndpointClient, config: PipelineConfig, expected_version: str | None = None) -> None:
        self.client = client
        self.config = config
        self.expected_version = expected_version

    def run_for(self, job: TrainingJob, replay: ReplaySample | None = None) -> TestReport:
        """Test the endpoint with the job's held-out rows, against the job's own model (sha256-verified).

        The reference is scikit-learn's own ``predict``, not the serving hooks' fast path, so the
        parity check also checks that path.
        """
        features, labels = job.heldout()
        try:
            model = inference.model_fn(str(job.model_dir), job.model_sha256)
        except inference.ModelIntegrityError as err:
            raise PipelineError(f"training job {job.name!r}: {err}", ExitCode.FAILURE) from None
        with inference.BareRows():  # the rows as the endpoint gets them: no column names
            offline = model.predict(features.to_numpy(dtype=float))
        return self.run(features, labels, offline, feature_lines=job.heldout_feature_lines(),
                        recorded_accuracy=job.metrics.get("accuracy"), replay=replay)

    def run(self, features: pd.DataFrame, labels: pd.Series, offline_predictions: np.ndarray,
            feature_lines: list[str] | None = None, recorded_accuracy: float | None = None,
            replay: ReplaySample | None = None) -> TestReport:
        report = TestReport(started_at=_now())
        rows = features.to_numpy(dtype=np.float64)
        try:
            self._record(report, "health", self.check_health())
            if not report.checks["health"]["passed"]:
                return report
            self._record(report, "prediction_accuracy",
                         self.check_predictions(rows, np.asarray(labels), np.asarray(offline_predictions),
                                                feature_lines, recorded_accuracy))
            self._record(report, "performance", self.check_performance(rows))
            self._record(report, "robustness", self.check_robustness(rows.shape[1]))
            if replay is not None:
                self._record(report, "replay", self.check_replay(replay))
            return report
        finally:
            report.finished_at = _now()

    @staticmethod
    def _record(report: TestReport, name: str, result: dict[str, Any]) -> None:
        report.checks[name] = result
        if result.get("skipped"):
            log.info("endpoint test %s: %s", name, result["skipped"])
        elif result["passed"]:
            log.info("endpoint test %s: passed", name)
        else:
            report.failures.append(f"{name}: {result['reason']}")
            log.warning("endpoint test %s: FAILED (%s)", name, result["reason"])

    def check_health(self) -> dict[str, Any]:
        """Poll /ping until it answers 200 (and names the expected version) or the timeout passes."""
        def judge(reply: Reply) -> str | None:
            version = reply.headers.get(VERSION_HEADER)
            if reply.ok and (self.expected_version is None or version in (None, self.expected_version)):
                return None
            return f"/ping answered {reply.status}" + (f" from version {version}" if version else "")

        started = time.monotonic()
        try:
            poll = poll_ping(self.client, self.config.health_timeout_seconds, judge)
        except EndpointDown as err:
            return {"passed": False, "attempts": 1, "seconds": round(time.monotonic() - started, 3),
                    "reason": str(err)}
        if poll.ok:
            return {"passed": True, "attempts": poll.attempts, "seconds": poll.seconds,
                    "version": poll.reply.headers.get(VERSION_HEADER) if poll.reply else None}
        return {"passed": False, "attempts": poll.attempts, "seconds": poll.seconds,
                "reason": f"not healthy within {self.config.health_timeout_seconds:g}s: {poll.last}"}

    def check_predictions(self, rows: np.ndarray, labels: np.ndarray, offline: np.ndarray,
                          feature_lines: list[str] | None = None,
                          recorded_accuracy: float | None = None) -> dict[str, Any]:
        """Send the held-out rows in batches; each answer must equal the offline model's, and the
        accuracy they add up to must be the one recorded at training and reach minimum_accuracy.

        Batch bodies are cut from ``feature_lines`` (the held-out file's text) when given,
        else formatted here. Batches go out two at a time (the endpoint has a worker per
        core), and each is kept under half of max_payload_mb.
        """
        if feature_lines is not None and len(feature_lines) != len(rows):
            feature_lines = None
        sample = feature_lines[:200] if feature_lines is not None else None
        row_bytes = (sum(map(len, sample)) + len(sample)) / len(sample) if sample else \
            len(to_csv(rows[:200])) / max(1, min(200, len(rows)))
        budget = int(self.config.max_payload_mb * 1024 * 1024 / 2 / max(row_bytes, 1.0))
        batch = max(1, min(self.config.test_batch_size, budget))
        starts = list(range(0, len(rows), batch))

        def body(start: int) -> bytes:
            if feature_lines is not None:
                return ("\n".join(feature_lines[start:start + batch]) + "\n").encode()
            return to_csv(rows[start:start + batch])

        def send(start: int) -> tuple[int, Reply | None, str | None]:
            try:
                return start, self.client.invoke(body(start), "text/csv", "application/json"), None
            except Exception as err:
                return start, None, f"{type(err).__name__}: {err}"

        predictions: list[Any] = []
        versions: set[str] = set()
        with ThreadPoolExecutor(max_workers=2) as pool:
            for sent, (start, reply, error) in enumerate(pool.map(send, starts), start=1):
                progress().report("endpoint tests: held-out batches", sent, len(starts), f"{batch:,} rows each")
                chunk_rows = min(batch, len(rows) - start)
                if reply is None:
                    return {"passed": False, "reason": f"batch at row {start} failed: {error}"}
                if not reply.ok:
                    return {"passed": False, "reason": f"batch at row {start} answered {reply.status}: "
                                                       f"{reply.body[:200].decode(errors='replace')}"}
                answer = json.loads(reply.body)["predictions"]
                if len(answer) != chunk_rows:
                    return {"passed": False, "reason": f"batch at row {start}: {len(answer)} predictions for "
                                                       f"{chunk_rows} rows"}
                predictions.extend(answer)
                if reply.headers.get(VERSION_HEADER):
                    versions.add(reply.headers[VERSION_HEADER])
        progress().done("endpoint tests: held-out batches")
        served = np.asarray(predictions)
        accuracy = float(np.mean(served == labels)) if len(labels) else 0.0
        differs = np.flatnonzero(served != offline)
        result: dict[str, Any] = {"accuracy": accuracy, "rows": int(len(rows)), "mismatches": int(len(differs)),
                                  "versions_seen": sorted(versions)}
        if len(differs):
            first = [{"row": int(i), "endpoint": python_scalar(served[i]), "offline": python_scalar(offline[i])}
                     for i in differs[:5]]
            result["first_mismatches"] = first
            shown = ", ".join(f"row {item['row']}: endpoint {item['endpoint']!r} != offline {item['offline']!r}"
                              for item in first)
            return {**result, "passed": False,
                    "reason": f"{len(differs)} of {len(rows)} predictions differ from the offline model ({shown})"}
        if self.expected_version and versions and versions != {self.expected_version}:
            return {**result, "passed": False,
                    "reason": f"served by {sorted(versions)}, expected {self.expected_version}"}
        correct = int(np.sum(served == labels))
        if recorded_accuracy is not None:
            result["recorded_accuracy"] = recorded_accuracy
            if correct != round(recorded_accuracy * len(labels)):
                return {**result, "passed": False,
                        "reason": f"accuracy on the held-out rows is {accuracy:.4f} ({correct} of {len(labels)}), "
                                  f"but {recorded_accuracy:.4f} was recorded at training"}
        if accuracy < self.config.minimum_accuracy:
            return {**result, "passed": False,
                    "reason": f"accuracy on the held-out rows is {accuracy:.4f}, below minimum_accuracy "
                              f"{self.config.minimum_accuracy}"}
        return {**result, "passed": True}

    def check_performance(self, rows: np.ndarray) -> dict[str, Any]:
        """N single-row requests at concurrency C: latency percentiles, throughput, success rate."""
        total = self.config.performance_requests
        bodies = [to_csv(rows[i % len(rows)][None, :]) for i in range(min(total, len(rows)))]

        def one(index: int) -> tuple[bool, float]:
            began = time.perf_counter()
            try:
                ok = self.client.invoke(bodies[index % len(bodies)], "text/csv").ok
            except Exception:
                ok = False
            return ok, (time.perf_counter() - began) * 1000.0

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.config.performance_concurrency) as pool:
            outcomes = []
            for outcome in pool.map(one, range(total)):
                outcomes.append(outcome)
                progress().report("endpoint tests: performance requests", len(outcomes), total)
        progress().done("endpoint tests: performance requests")
        elapsed = time.perf_counter() - started
        latencies = np.array([latency for _, latency in outcomes])
        success_rate = sum(ok for ok, _ in outcomes) / total
        result = {
            "requests": total,
            "concurrency": self.config.performance_concurrency,
            "success_rate": success_rate,
            "avg_latency_ms": round(float(latencies.mean()), 3),
            "p50_latency_ms": round(float(np.percentile(latencies, 50)), 3),
            "p95_latency_ms": round(float(np.percentile(latencies, 95)), 3),
            "p99_latency_ms": round(float(np.percentile(latencies, 99)), 3),
            "throughput_rps": round(total / elapsed, 1) if elapsed > 0 else None,
            "latency_histogram": latency_histogram(latencies),
        }
        if success_rate < self.config.min_success_rate:
            return {**result, "passed": False,
                    "reason": f"success rate {success_rate:.3f} below min_success_rate {self.config.min_success_rate}"}
        limit = self.config.max_p95_latency_ms
        if limit is not None and result["p95_latency_ms"] > limit:
            return {**result, "passed": False,
                    "reason": f"p95 latency {result['p95_latency_ms']} ms above max_p95_latency_ms {limit}"}
        return {**result, "passed": True}

    def check_robustness(self, width: int) -> dict[str, Any]:
        """Malformed requests get a 4xx, and the endpoint is still healthy afterwards."""
        probes = {
            "non-numeric CSV": (b"a,b,c\n", "text/csv"),
            "wrong feature count": (",".join(["1"] * (width + 1)).encode(), "text/csv"),
            "broken JSON": (b"[[1, 2", "application/json"),
        }
        answers: dict[str, int] = {}
        for name, (body, content_type) in probes.items():
            try:
                answers[name] = self.client.invoke(body, content_type).status
            except Exception as err:
                return {"passed": False, "reason": f"{name}: {type(err).__name__}: {err}", "answers": answers}
        bad = {name: status for name, status in answers.items() if not 400 <= status < 500}
        if bad:
            return {"passed": False, "answers": answers,
                    "reason": "malformed requests did not get a 4xx: " +
                              ", ".join(f"{name} -> {status}" for name, status in bad.items())}
        try:
            healthy = self.client.ping().ok
        except Exception:
            healthy = False
        if not healthy:
            return {"passed": False, "answers": answers, "reason": "endpoint unhealthy after malformed requests"}
        return {"passed": True, "answers": answers}

    def check_replay(self, sample: ReplaySample) -> dict[str, Any]:
        """Every captured client request the serving version answered 2xx must be answered 2xx here too: a
        candidate that refuses what clients send today would break them the moment it takes their traffic."""
        if sample.skipped is not None:
            return {"passed": True, "skipped": sample.skipped, "requests": 0}
        refused: list[str] = []
        for request in sample.requests:
            try:
                reply = self.client.invoke(request.body, request.content_type, request.accept)
                status = reply.status
                problem = None if reply.ok else reply.body[:200].decode("utf-8", "replace")
            except Exception as err:  # no answer at all (refused connection, a backend client's error)
                status, problem = 0, f"no answer: {type(err).__name__}"
            if problem is not None:
                refused.append(f"{request.inference_id}: {status} {' '.join(problem.split())}")
        result: dict[str, Any] = {"passed": not refused, "requests": len(sample.requests), "refused": len(refused),
                                  "examples": refused[:3]}
        if refused:
            result["reason"] = (f"{len(refused)} of {len(sample.requests)} captured client requests the serving "
                                f"version answered were refused (first: {refused[0]})")
        return result
