"""An endpoint worker's Prometheus metrics (``pipeline.serving.telemetry`` hands them each request).

**Metrics** are prometheus_client's multiprocess mode: every worker writes its counters into
memory-mapped files of its own under ``PROMETHEUS_MULTIPROC_DIR`` (one directory per endpoint
and server role, set by ``pipeline.backends.local.servers``), and ``GET /metrics`` -- whichever
worker answers it -- sums the files of every worker, the dead ones' included, so a counter
never goes back when a version switch replaces the workers. gunicorn's master empties the
directory when it starts, removes the live gauges of a worker that exits and the directory
when it stops (``pipeline.serving.gunicorn_conf``). Without the variable there are no metrics (a
server started by hand): per-worker counts would be wrong, not merely partial. Labels are
bounded: the version this worker serves, HTTP status codes, and the model's own classes.

``mlops_endpoint_requests_total{code}`` counts every invocation under the status its client was
answered with, on the boto3 route a model's refusal as the 424 SageMaker's runtime answers (a
``ModelError``); and every request the worker refuses itself, whatever its path, which it refuses
before the app routes it (``pipeline.serving.worker``): 408 for a request too slow to arrive, 431
for a head over its bounds, 414 for a request target too long, 505 for an HTTP version other than
1.0 and 1.1, 400 for a request line without one or a request that cannot be parsed. The 424s
are counted once more by the status the model's hooks gave, in
``mlops_endpoint_model_errors_total{original_code}``: a counter of its own rather than a label on
the requests counter, whose label set its readers (a bake's analysis among them) rely on.
The pipeline's own endpoint tests are counted in the totals and once more apart
(``mlops_endpoint_test_*``), and a shadow candidate's predictions have counters of their own
(``mlops_endpoint_shadow_*``): a bake's analysis (``pipeline.backends.local.traffic``) reads both.
"""
from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import time
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it
# The worker's perf_counter() when a request began to arrive, in the request's ASGI scope.
STARTED_KEY = "mlops.started"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROWS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
# Status codes the endpoint answers; created at zero when a worker starts, so rate() works from the
# first scrape and the metric files have their pages before the disk could fill up.
KNOWN_STATUS_CODES = (200, 400, 401, 405, 406, 408, 413, 414, 415, 424, 431, 500, 505)
# The statuses the inference hooks refuse with (inference_errors.py), which a ModelError carries as its original.
KNOWN_ORIGINAL_CODES = (400, 406, 415, 500)
MAX_CLASS_LABELS = 1000  # a "classifier" with more classes than this gets no per-class counts
DROP_REASONS = ("buffer_full", "write_error")  # why a sampled request was not captured


def metrics_directory() -> Path | None:
    """The multiprocess directory this server was started with, if any."""
    value = os.environ.get(METRICS_DIR_ENV)
    return Path(value) if value else None


def prepare_metrics_directory() -> None:
    """At master start: an empty directory (files left by an earlier server would be counted)."""
    directory = metrics_directory()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)


def worker_exited(pid: int) -> None:
    """In the master, when a worker has exited: its live gauges (workers, model load time) go;
    its counters stay, so totals never go back."""
    directory = metrics_directory()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(directory))


def remove_metrics_directory() -> None:
    """When the master stops (its workers have exited): nothing is left to count."""
    directory = metrics_directory()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        try:
            directory.parent.rmdir()  # <endpoint>/metrics, when no other server of the endpoint runs
        except OSError:
            pass


def metrics_exposition() -> tuple[bytes, str]:
    """The metrics of every worker of this server, summed, in Prometheus' text format."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_directory()))
    # Format 0.0.4: every Prometheus server reads it, and these metric names need nothing newer.
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4


class _Histogram:
    """Observations added up in the worker and handed to prometheus_client's histogram in one go.

    prometheus_client has no "observe many": its ``Histogram`` child keeps one value per bucket
    (``_buckets``, not cumulative, the last one +Inf) and ``_sum``, which ``flush`` adds to.
    """

    __slots__ = ("bounds", "child", "counts", "total", "observed")

    def __init__(self, child: Any, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(bound) for bound in bounds)
        self.child = child
        if len(getattr(child, "_buckets", ())) != len(self.bounds) + 1 or not hasattr(child, "_sum"):
            raise RuntimeError("prometheus_client's Histogram no longer keeps _buckets and _sum: "
                               "pipeline/serving/telemetry.py needs updating for this version")
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.observed = False

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        self.total += value
        self.observed = True

    def flush(self) -> None:
        if not self.observed:
            return
        self.child._sum.inc(self.total)
        for index, count in enumerate(self.counts):
            if count:
                self.child._buckets[index].inc(count)
                self.counts[index] = 0
        self.total, self.observed = 0.0, False


class EndpointMetrics:
    """The worker's metrics: counted in plain Python per request, written to the shared files
    at most a second later.

    An increment of a multiprocess metric costs microseconds (a lock and a write into the
    memory-mapped file); a request would pay for a dozen of them. Here a request adds to a few
    integers, and ``flush`` -- scheduled on the worker's event loop, so nothing races it, and
    run before this worker answers ``/metrics`` -- writes the sums. Another worker's counts
    are at most ``FLUSH_SECONDS`` behind.
    """

    FLUSH_SECONDS = 1.0

    def __init__(self, version: str, classes: Sequence[Any], load_seconds: float) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        # registry=None: MultiProcessCollector reads the files; nothing is registered in this process.
        self._requests = Counter("mlops_endpoint_requests", "Invocations answered, by version and HTTP status code",
                                 ["version", "code"], registry=None)
        self._version = version
        self._by_code = {code: self._requests.labels(version, str(code)) for code in KNOWN_STATUS_CODES}
        self._codes: dict[int, int] = {}
        self._model_errors = Counter("mlops_endpoint_model_errors",
                                     "Invocations answered 424 (ModelError) on the boto3 route, by version and the "
                                     "status the model's hooks gave (OriginalStatusCode)",
                                     ["version", "original_code"], registry=None)
        self._by_original = {code: self._model_errors.labels(version, str(code)) for code in KNOWN_ORIGINAL_CODES}
        self._originals: dict[int, int] = {}
        self._latency = _Histogram(
            Histogram("mlops_endpoint_request_duration_seconds",
                      "Seconds from the first byte of an invocation to its answer, by version",
                      ["version"], buckets=LATENCY_BUCKETS, registry=None).labels(version), LATENCY_BUCKETS)
        self._rows = _Histogram(
            Histogram("mlops_endpoint_request_rows", "Rows per answered invocation, by version",
                      ["version"], buckets=ROWS_BUCKETS, registry=None).labels(version), ROWS_BUCKETS)
        predictions = Counter("mlops_endpoint_predictions", "Predicted rows, by version and predicted class",
                              ["version", "class"], registry=None)
        labels = np.asarray(classes).tolist() if len(classes) <= MAX_CLASS_LABELS else []
        self._class_children = [predictions.labels(version, str(value)) for value in labels]
        self._class_index = {value: index for index, value in enumerate(labels)}
        self._class_counts = [0] * len(labels)
        Gauge("mlops_endpoint_model_load_seconds", "Seconds the slowest live worker took to load its model",
              ["version"], multiprocess_mode="livemax", registry=None).labels(version).set(load_seconds)
        Gauge("mlops_endpoint_workers", "Live workers, by the version they serve", ["version"],
              multiprocess_mode="livesum", registry=None).labels(version).set(1)
        # Counted by the capture writer's thread, a few times a second at most: written at once.
        self.captured = Counter("mlops_endpoint_captured", "Requests written to the capture files, by version",
                                ["version"], registry=None).labels(version)
        dropped = Counter("mlops_endpoint_capture_dropped",
                          "Sampled requests not captured (buffer full, or the disk refused them), by version",
                          ["version", "reason"], registry=None)
        self.dropped = {reason: dropped.labels(version, reason) for reason in DROP_REASONS}
        self.deleted_files = Counter("mlops_endpoint_capture_deleted_files",
                                     "Capture files deleted to keep the capture directory under capture_max_mb",
                                     ["version"], registry=None).labels(version)
        # The pipeline's own endpoint tests, counted again here (they are in the totals above too): a bake's
        # analysis takes them out, counters and latency buckets alike, so it judges clients' requests alone.
        self._test_requests = Counter("mlops_endpoint_test_requests",
                                      "The pipeline's own test invocations among the answered ones, by version and "
                                      "HTTP status code", ["version", "code"], registry=None)
        self._test_codes: dict[int, int] = {}
        self._test_latency = _Histogram(
            Histogram("mlops_endpoint_test_request_duration_seconds",
                      "Seconds from the first byte to the answer of the pipeline's own test invocations, by version",
                      ["version"], buckets=LATENCY_BUCKETS, registry=None).labels(version), LATENCY_BUCKETS)
        # A shadow candidate (pipeline/serving/app.py): its predictions of copies of live requests, never returned.
        self._shadow_requests = Counter("mlops_endpoint_shadow_requests",
                                        "Copies of live invocations a shadow version predicted, by version and the "
                                        "HTTP status code it would have answered", ["version", "code"], registry=None)
        self._shadow_codes: dict[int, int] = {}
        self._shadow_latency = _Histogram(
            Histogram("mlops_endpoint_shadow_request_duration_seconds",
                      "Seconds a client would have waited had the shadow version answered, by version",
                      ["version"], buckets=LATENCY_BUCKETS, registry=None).labels(version), LATENCY_BUCKETS)
        shadow_rows = Counter("mlops_endpoint_shadow_rows", "Rows a shadow version predicted, by version and whether "
                              "it agreed with the serving version", ["version", "agreement"], registry=None)
        self._shadow_rows = {"same": shadow_rows.labels(version, "same"),
                             "different": shadow_rows.labels(version, "different")}
        self._shadow_row_counts = {"same": 0, "different": 0}
        self._scheduled = False
        atexit.register(self.flush)  # a worker that stops leaves its last counts in the files

    def request(self, code: int, started: float | None, test: bool = False, original: int | None = None) -> None:
        """An invocation answered ``code``; ``original``: the status a ModelError (424) stands for."""
        self._codes[code] = self._codes.get(code, 0) + 1
        if original is not None:
            self._originals[original] = self._originals.get(original, 0) + 1
        if started is not None:
            seconds = time.perf_counter() - started
            self._latency.observe(seconds)
            if test:
                self._test_latency.observe(seconds)
        if test:
            self._test_codes[code] = self._test_codes.get(code, 0) + 1
        if not self._scheduled:
            self._schedule()

    def shadowed(self, code: int, seconds: float | None, same: int, different: int) -> None:
        self._shadow_codes[code] = self._shadow_codes.get(code, 0) + 1
        if seconds is not None:
            self._shadow_latency.observe(seconds)
        self._shadow_row_counts["same"] += same
        self._shadow_row_counts["different"] += different
        if not self._scheduled:
            self._schedule()

    def answered(self, started: float | None, rows: int, prediction: Any, test: bool = False) -> None:
        """An invocation answered 200: ``request(200, ...)`` and its rows, inlined (once per answer)."""
        codes = self._codes
        codes[200] = codes.get(200, 0) + 1
        if started is not None:
            seconds = time.perf_counter() - started
            latency = self._latency
            latency.counts[bisect_left(latency.bounds, seconds)] += 1
            latency.total += seconds
            latency.observed = True
            if test:
                self._test_latency.observe(seconds)
        if test:
            self._test_codes[200] = self._test_codes.get(200, 0) + 1
        if not self._scheduled:
            self._schedule()
        self._rows.observe(rows)
        index_of = self._class_index
        if not index_of:
            return
        if rows == 1:
            index = index_of.get(prediction[0])
            if index is not None:
                self._class_counts[index] += 1
            return
        values, counts = np.unique(np.asarray(prediction), return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            index = index_of.get(value)
            if index is not None:
                self._class_counts[index] += count

    def _schedule(self) -> None:
        self._scheduled = True
        try:
            asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
        except RuntimeError:  # not on an event loop: nothing to batch with
            self.flush()

    def flush(self) -> None:
        """Write what this worker counted since the last flush into its metric files."""
        self._scheduled = False
        codes, self._codes = self._codes, {}
        for code, count in codes.items():
            child = self._by_code.get(code)
            if child is None:  # an HTTP status code (100..599): bounded
                child = self._by_code[code] = self._requests.labels(self._version, str(code))
            child.inc(count)
        if self._originals:
            originals, self._originals = self._originals, {}
            for code, count in originals.items():
                child = self._by_original.get(code)
                if child is None:  # an HTTP status code (100..599): bounded
                    child = self._by_original[code] = self._model_errors.labels(self._version, str(code))
                child.inc(count)
        self._latency.flush()
        self._rows.flush()
        for counter, counted in ((self._test_requests, self._test_codes), (self._shadow_requests, self._shadow_codes)):
            if counted:
                for code, count in counted.items():
                    counter.labels(self._version, str(code)).inc(count)
                counted.clear()
        self._test_latency.flush()
        self._shadow_latency.flush()
        for agreement, count in self._shadow_row_counts.items():
            if count:
                self._shadow_rows[agreement].inc(count)
                self._shadow_row_counts[agreement] = 0
        for index, count in enumerate(self._class_counts):
            if count:
                self._class_children[index].inc(count)
                self._class_counts[index] = 0
