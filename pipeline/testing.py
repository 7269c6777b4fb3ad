"""Testing a live endpoint: health, prediction parity and accuracy, latency and throughput, robustness.

The tester talks to an ``EndpointClient``: plain HTTP for the local endpoint
(``HttpEndpointClient``), ``sagemaker-runtime`` for SageMaker (the backend
supplies it). The checks are the same for both, so a model passes or fails
for the same reasons wherever it runs.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import requests

from pipeline.config import PipelineConfig

log = logging.getLogger(__name__)

VERSION_HEADER = "X-Model-Version"


class EndpointDown(ConnectionError):
    """The endpoint is gone for good (its process exited): waiting longer cannot make it healthy."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class EndpointClient(Protocol):
    """What the tester needs from an endpoint, whatever serves it."""

    url: str

    def ping(self) -> Reply: ...

    def invoke(self, body: bytes, content_type: str, accept: str = "application/json") -> Reply: ...


class HttpEndpointClient:
    """HTTP to a server speaking the SageMaker serving contract (``/ping``, ``/invocations``)."""

    def __init__(self, url: str, timeout: float = 10.0, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _reply(self, response: requests.Response) -> Reply:
        return Reply(response.status_code, response.headers, response.content)  # case-insensitive

    def ping(self) -> Reply:
        return self._reply(self._session().get(f"{self.url}/ping", timeout=self.timeout, headers=self._headers))

    def invoke(self, body: bytes, content_type: str, accept: str = "application/json") -> Reply:
        headers = {**self._headers, "Content-Type": content_type, "Accept": accept}
        return self._reply(self._session().post(f"{self.url}/invocations", data=body, headers=headers,
                                                timeout=self.timeout))


@dataclass
class TestReport:
    """Everything the endpoint tests found; ``passed`` only if every check passed."""

    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

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
        }


def to_csv(rows: np.ndarray) -> bytes:
    frame = pd.DataFrame(rows)
    return frame.to_csv(header=False, index=False, float_format="%.17g").encode()


class EndpointTester:
    """Runs the checks in order; a failed health check skips the rest (nothing to test)."""

    def __init__(self, client: EndpointClient, config: PipelineConfig, expected_version: str | None = None) -> None:
        self.client = client
        self.config = config
        self.expected_version = expected_version

    def run(self, features: pd.DataFrame, labels: pd.Series, offline_predictions: np.ndarray) -> TestReport:
        report = TestReport()
        rows = features.to_numpy(dtype=np.float64)
        self._record(report, "health", self.check_health())
        if not report.checks["health"]["passed"]:
            return report
        self._record(report, "prediction_accuracy",
                     self.check_predictions(rows, np.asarray(labels), np.asarray(offline_predictions)))
        self._record(report, "performance", self.check_performance(rows))
        self._record(report, "robustness", self.check_robustness(rows.shape[1]))
        return report

    @staticmethod
    def _record(report: TestReport, name: str, result: dict[str, Any]) -> None:
        report.checks[name] = result
        if not result["passed"]:
            report.failures.append(f"{name}: {result['reason']}")
        log.info("endpoint test %s: %s%s", name, "passed" if result["passed"] else "FAILED",
                 "" if result["passed"] else f" ({result['reason']})")

    def check_health(self) -> dict[str, Any]:
        """Poll /ping until it answers 200 (and names the expected version) or the timeout passes."""
        started = time.monotonic()
        deadline = started + self.config.health_timeout_seconds
        attempts = 0
        last_problem = "no answer"
        delay = 0.05
        while True:
            attempts += 1
            try:
                reply = self.client.ping()
                version = reply.headers.get(VERSION_HEADER)
                if reply.ok and (self.expected_version is None or version in (None, self.expected_version)):
                    return {"passed": True, "attempts": attempts, "seconds": round(time.monotonic() - started, 3),
                            "version": version}
                last_problem = f"/ping answered {reply.status}" + (f" from version {version}" if version else "")
            except EndpointDown as err:
                return {"passed": False, "attempts": attempts, "seconds": round(time.monotonic() - started, 3),
                        "reason": str(err)}
            except requests.RequestException as err:
                last_problem = f"cannot reach {self.client.url}: {type(err).__name__}"
            except Exception as err:  # a backend client's own error (e.g. botocore)
                last_problem = f"{type(err).__name__}: {err}"
            if time.monotonic() + delay > deadline:
                return {"passed": False, "attempts": attempts, "seconds": round(time.monotonic() - started, 3),
                        "reason": f"not healthy within {self.config.health_timeout_seconds:g}s: {last_problem}"}
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def check_predictions(self, rows: np.ndarray, labels: np.ndarray, offline: np.ndarray) -> dict[str, Any]:
        """Send the held-out rows in batches; each answer must equal the offline model's."""
        predictions: list[Any] = []
        versions: set[str] = set()
        batch = self.config.test_batch_size
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            try:
                reply = self.client.invoke(to_csv(chunk), "text/csv", "application/json")
            except Exception as err:
                return {"passed": False, "reason": f"batch at row {start} failed: {type(err).__name__}: {err}"}
            if not reply.ok:
                return {"passed": False, "reason": f"batch at row {start} answered {reply.status}: "
                                                   f"{reply.body[:200].decode(errors='replace')}"}
            answer = json.loads(reply.body)["predictions"]
            if len(answer) != len(chunk):
                return {"passed": False, "reason": f"batch at row {start}: {len(answer)} predictions for "
                                                   f"{len(chunk)} rows"}
            predictions.extend(answer)
            if reply.headers.get(VERSION_HEADER):
                versions.add(reply.headers[VERSION_HEADER])
        served = np.asarray(predictions)
        accuracy = float(np.mean(served == labels)) if len(labels) else 0.0
        differs = np.flatnonzero(served != offline)
        result: dict[str, Any] = {"accuracy": accuracy, "rows": int(len(rows)), "mismatches": int(len(differs)),
                                  "versions_seen": sorted(versions)}
        if len(differs):
            first = [{"row": int(i), "endpoint": _plain(served[i]), "offline": _plain(offline[i])}
                     for i in differs[:5]]
            result["first_mismatches"] = first
            shown = ", ".join(f"row {item['row']}: endpoint {item['endpoint']!r} != offline {item['offline']!r}"
                              for item in first)
            return {**result, "passed": False,
                    "reason": f"{len(differs)} of {len(rows)} predictions differ from the offline model ({shown})"}
        if self.expected_version and versions and versions != {self.expected_version}:
            return {**result, "passed": False,
                    "reason": f"served by {sorted(versions)}, expected {self.expected_version}"}
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
            outcomes = list(pool.map(one, range(total)))
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


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
