"""What an endpoint worker tells about its traffic: Prometheus metrics and captured requests.

``pipeline.serving.app.create_app`` builds one ``EndpointTelemetry`` per worker from the version's
pointer spec; ``Invocations`` hands it every answered request (``answered``), falcon's
error handlers every refused one (``count_http_error``, ``count_exception``), and the worker
(``pipeline.serving.worker``) its own 408s.

**Metrics**: ``pipeline.serving.metrics`` (this module hands them each request and refusal).

**Capture** records ``capture_percent`` of the answered requests (and of the bodies refused as
malformed, without an answer: ``refused``), each drawn at random, in
SageMaker's capture record shape (``pipeline.monitoring.capture``), one JSON line per
request under ``<capture dir>/<version>/YYYY/MM/DD/HH/<worker>-<part>.jsonl``. A request
never waits for the disk: ``answered`` appends to a bounded buffer in memory, and a thread
writes it out every second (sooner when a quarter full). A full buffer, a full disk or a
directory that cannot be written drops records and counts them
(``mlops_endpoint_capture_dropped_total``); the request is answered all the same.
The capture directory is held under ``capture_max_mb`` across every worker: a worker that
wrote a twentieth of the bound, or wrote anything in the last few seconds, deletes the
oldest files (by hour, then modification time) until the directory fits. Files are cut in
parts of at most a twentieth of the bound, so deleting the oldest file never takes much
more than what the bound requires. Two workers deleting at once is harmless: a file
already gone is skipped.
"""
from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import random
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import falcon
import numpy as np

from pipeline.monitoring.capture import SUFFIXES, capture_hour_directory, capture_line, capture_record
from pipeline.serving.contract import MODEL_ERROR_STATUS, SAGEMAKER_RUNTIME_ROUTE, TEST_TRAFFIC_HEADER
from pipeline.serving.metrics import DROP_REASONS, STARTED_KEY, EndpointMetrics, metrics_directory, metrics_exposition

log = logging.getLogger(__name__)

INVOCATION_ROUTES = frozenset({"/invocations", SAGEMAKER_RUNTIME_ROUTE})
DEFAULT_CAPTURE_PERCENT = 100
DEFAULT_CAPTURE_MAX_MB = 100.0


# --------------------------------------------------------------------------- capture
_quoted = json.encoder.encode_basestring_ascii  # a str exactly as json.dumps writes it (ensure_ascii)
_TEXT_ENCODINGS = {"text/csv": "CSV", "application/json": "JSON"}
_content_types: dict[str | None, tuple[str | None, str]] = {}  # content type -> (encoding, quoted), bounded
_second_texts: dict[int, str] = {}  # Unix second -> "YYYY-mm-ddTHH:MM:SS.", the last few only


def _content_type(content_type: str | None) -> tuple[str | None, str]:
    known = _content_types.get(content_type)
    if known is None:
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        known = (_TEXT_ENCODINGS.get(media_type), _quoted(content_type or ""))
        if len(_content_types) < 64:
            _content_types[content_type] = known
    return known


def _second_text(second: int) -> str:
    text = _second_texts.get(second)
    if text is None:
        if len(_second_texts) > 16:
            _second_texts.clear()
        text = _second_texts[second] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    return text


def capture_line_of(inference_id: str, body: bytes, content_type: str | None, answer: str | None,
                    answer_type: str | None, when_us: int, event_id: str | None = None) -> bytes:
    """``capture_line(capture_record(...))`` of an answered request at ``when_us`` (Unix microseconds).

    The same bytes, built for the common case (CSV or JSON text in, our JSON or CSV out) at a
    fraction of the cost: a string template instead of a dict through ``json.dumps``, the time's
    text reused within a second. Anything else (a body to base64) goes the general way.
    tests/test_telemetry.py holds the two to byte equality. ``event_id``: the endpoint's own id of
    the request when ``inference_id`` is the client's (SageMaker's ``eventId`` beside the client's
    ``inferenceId``); without it both are ``inference_id``.
    """
    second, micro = divmod(when_us, 1_000_000)
    input_encoding, input_type = _content_type(content_type)
    output_encoding, output_type = _content_type(answer_type)
    if input_encoding is not None and output_encoding is not None and answer is not None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return (f'{{"captureData":{{"endpointInput":{{"observedContentType":{input_type},"mode":"INPUT",'
                    f'"data":{_quoted(text)},"encoding":"{input_encoding}"}},"endpointOutput":{{'
                    f'"observedContentType":{output_type},"mode":"OUTPUT","data":{_quoted(answer)},'
                    f'"encoding":"{output_encoding}"}}}},"eventMetadata":{{'
                    f'"eventId":{_quoted(event_id or inference_id)},"inferenceId":{_quoted(inference_id)},'
                    f'"inferenceTime":"{_second_text(second)}{micro // 1000:03d}Z"}},"eventVersion":"0"}}\n').encode()
    when = datetime.fromtimestamp(second, UTC).replace(microsecond=micro)
    record = capture_record(inference_id=inference_id, input_body=body, input_content_type=content_type,
                            output_body=answer, output_content_type=answer_type, inference_time=when)
    if event_id is not None:
        record["eventMetadata"]["eventId"] = event_id
    return capture_line(record)


def prune_captures(directory: Path, max_bytes: int) -> int:
    """Delete the oldest capture files under ``directory`` until the rest take at most ``max_bytes``.

    Oldest by the hour in their path, then by modification time. Safe beside writers and other
    pruners: a file or directory that is already gone is skipped. Returns the files deleted.
    """
    directory = Path(directory)
    files: list[tuple[str, int, str, int]] = []
    total = 0
    for root, _, names in os.walk(directory):
        relative = Path(root).relative_to(directory).parts  # (version, YYYY, MM, DD, HH) in the layout
        hour = "/".join(relative[1:]) if len(relative) == 5 else ""
        for name in names:
            if not name.endswith(SUFFIXES):
                continue
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            files.append((hour, stat.st_mtime_ns, path, stat.st_size))
            total += stat.st_size
    deleted = 0
    for _, _, path, size in sorted(files):
        if total <= max_bytes:
            break
        try:
            os.unlink(path)
            deleted += 1
        except FileNotFoundError:
            pass  # another worker got there first
        total -= size
        _remove_empty_parents(Path(path).parent, directory)
    return deleted


def _remove_empty_parents(path: Path, stop: Path) -> None:
    while path != stop and stop in path.parents:
        try:
            path.rmdir()
        except OSError:  # not empty (or already gone): its parents are not empty either
            return
        path = path.parent


class CaptureWriter:
    """One worker's capture files: a bounded buffer filled by requests, written by a thread.

    ``offer`` never touches the disk and never blocks on it (a lock held for a few
    instructions guards the buffer). The writer thread builds the records, appends them
    whole to the worker's own file of the hour (one ``write`` per batch and file; a write
    that fails is cut back to the file's previous end) and keeps the directory under its
    bound. ``written``, ``dropped`` and ``deleted_files`` count what happened, also without
    metrics.
    """

    FLUSH_SECONDS = 1.0
    SWEEP_SECONDS = 3.0  # a worker that wrote since its last sweep sweeps again within this
    BUFFER_BYTES = 16 * 1024 * 1024  # room for a request at max_payload_mb (6 MB) and its answer
    BUFFER_RECORDS = 50_000
    CLOSE_SECONDS = 5.0

    def __init__(self, directory: Path, version: str, max_bytes: int, metrics: EndpointMetrics | None = None,
                 *, flush_seconds: float = FLUSH_SECONDS, buffer_bytes: int = BUFFER_BYTES,
                 buffer_records: int = BUFFER_RECORDS) -> None:
        capture_hour_directory(directory, version, datetime.now(UTC))  # refuses a version that is no name
        self.directory = Path(directory)
        self.version = version
        self.max_bytes = max(1, int(max_bytes))
        self.part_bytes = max(4096, self.max_bytes // 20)
        self.metrics = metrics
        self.flush_seconds = flush_seconds
        self.buffer_bytes = buffer_bytes
        self.buffer_records = buffer_records
        # Unique across workers and restarts: a worker never appends to another's file.
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.written = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.deleted_files = 0
        self._pending: deque[tuple[str, bytes, str | None, str | None, str | None, int, str | None]] = deque()
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        # The writer thread's own state.
        self._hour: tuple[int, Path] | None = None
        self._part = 0
        self._part_size = 0
        self._since_sweep = 0
        self._last_sweep = time.monotonic()
        self._last_warning = -float("inf")

    def start(self) -> CaptureWriter:
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a worker that stops writes what it holds
        return self

    def offer(self, inference_id: str, body: bytes, content_type: str | None, answer: str | None,
              answer_type: str | None, when_us: int, event_id: str | None = None) -> bool:
        """Queue one request (``when_us``: its Unix time in microseconds; ``answer`` None: refused, recorded
        without ``endpointOutput``; ``event_id``: the endpoint's own id when ``inference_id`` is the
        client's); False when dropped."""
        size = len(body) + len(answer or "")
        with self._lock:
            full = self._pending_bytes + size > self.buffer_bytes or len(self._pending) >= self.buffer_records
            if not full:
                self._pending.append((inference_id, body, content_type, answer, answer_type, when_us, event_id))
                self._pending_bytes += size
                hurry = self._pending_bytes * 4 >= self.buffer_bytes or len(self._pending) * 4 >= self.buffer_records
        if full:
            self._drop("buffer_full", 1)
            return False
        if hurry and not self._wake.is_set():
            self._wake.set()
        return True

    def close(self) -> None:
        """Write what is buffered and stop the thread (bounded: at most ``CLOSE_SECONDS``)."""
        thread = self._thread
        if thread is None:
            return
        self._closing = True
        self._wake.set()
        thread.join(self.CLOSE_SECONDS)
        self._thread = None

    # --- the writer thread ---
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closing
            try:
                self.flush()
                self._sweep_if_due()
            except Exception:  # the thread must outlive any one bad batch, or the buffer fills for good
                log.error("capture writer: %s", traceback.format_exc())
            if closing:
                return

    def flush(self) -> None:
        """Write out what is buffered now (the writer thread does this; tests may call it)."""
        with self._lock:
            if not self._pending:
                return
            batch = list(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
        by_hour: dict[int, list[bytes]] = {}
        for item in batch:
            by_hour.setdefault(item[5] // 3_600_000_000, []).append(capture_line_of(*item))
        for hour, lines in sorted(by_hour.items()):
            try:
                self._append(hour, lines)
            except OSError as err:
                self._drop("write_error", len(lines))
                self._warn(f"capture records dropped: cannot write under {self.directory}: {err}")
                continue
            self.written += len(lines)
            if self.metrics is not None:
                self.metrics.captured.inc(len(lines))

    def _append(self, hour: int, lines: list[bytes]) -> None:
        if self._hour is None or self._hour[0] != hour:
            when = datetime.fromtimestamp(hour * 3600, UTC)
            self._hour = (hour, capture_hour_directory(self.directory, self.version, when))
            self._part, self._part_size = 0, 0
        directory = self._hour[1]
        chunk: list[bytes] = []
        chunk_size = 0
        for line in lines:
            if self._part_size + chunk_size >= self.part_bytes:  # this part is full: the rest goes in the next
                if chunk:
                    self._write(directory, b"".join(chunk))
                    chunk, chunk_size = [], 0
                self._part, self._part_size = self._part + 1, 0
            chunk.append(line)
            chunk_size += len(line)
        if chunk:
            self._write(directory, b"".join(chunk))

    def _write(self, directory: Path, data: bytes) -> None:
        path = directory / f"{self.name}-{self._part:04d}.jsonl"
        for attempt in range(3):  # a pruner may remove the empty directory between mkdir and open
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = None
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            if start is not None:  # no half line left for the next batch to follow
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass
            raise
        finally:
            os.close(fd)
        self._part_size += len(data)
        self._since_sweep += len(data)

    def _sweep_if_due(self) -> None:
        if not self._since_sweep:
            return
        if self._since_sweep < self.part_bytes and time.monotonic() - self._last_sweep < self.SWEEP_SECONDS:
            return
        self._since_sweep, self._last_sweep = 0, time.monotonic()
        try:
            deleted = prune_captures(self.directory, self.max_bytes)
        except OSError as err:
            self._warn(f"cannot prune capture files under {self.directory}: {err}")
            return
        if deleted:
            self.deleted_files += deleted
            if self.metrics is not None:
                self.metrics.deleted_files.inc(deleted)

    def _drop(self, reason: str, count: int) -> None:
        self.dropped[reason] += count
        if self.metrics is not None:
            self.metrics.dropped[reason].inc(count)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:  # once a minute at most: a full disk must not fill the log too
            self._last_warning = now
            log.warning("%s", message)


# --------------------------------------------------------------------------- the worker's telemetry
def answered_status(req: falcon.asgi.Request, status: int, by_model: bool) -> tuple[int, int | None]:
    """The status an invocation refused with ``status`` is answered with, and the original it stands for when the
    two differ. On the boto3 route the model's refusals (``by_model``) and every server error are a ``ModelError``:
    424, carrying the original as ``OriginalStatusCode``, as SageMaker's runtime answers them
    (``pipeline.serving.app``'s error bodies follow this too); anything else is answered as it is."""
    if req.uri_template == SAGEMAKER_RUNTIME_ROUTE and (by_model or status >= 500):
        return MODEL_ERROR_STATUS, status
    return status, None


class EndpointTelemetry:
    """Metrics and capture of one worker, and the inference ids it hands out."""

    def __init__(self, version: str, metrics: EndpointMetrics | None, capture: CaptureWriter | None,
                 capture_percent: int) -> None:
        self.version = version
        self.metrics = metrics
        self.capture = capture if capture_percent > 0 else None
        self.capture_percent = capture_percent
        # Ids unique across workers and restarts: 64 random bits per worker, then a counter.
        prefix = uuid.uuid4().hex[:16]
        self._ids = (f"{prefix}{n:016x}" for n in itertools.count(1))
        self._random = random.Random().random  # seeded from the OS in every worker

    @classmethod
    def from_spec(cls, spec: dict[str, Any], classes: Sequence[Any], load_seconds: float) -> EndpointTelemetry:
        """From the version's pointer spec: ``capture_dir``, ``capture_percent``, ``capture_max_mb``."""
        version = spec["version"]
        metrics = EndpointMetrics(version, classes, load_seconds) if metrics_directory() is not None else None
        percent = int(spec.get("capture_percent", DEFAULT_CAPTURE_PERCENT))
        max_mb = float(spec.get("capture_max_mb", DEFAULT_CAPTURE_MAX_MB))
        if not 0 <= percent <= 100:
            raise ValueError(f"pointer key capture_percent: expected 0 to 100, got {percent}")
        if not 0 < max_mb < float("inf"):
            raise ValueError(f"pointer key capture_max_mb: expected a finite number greater than 0, got {max_mb}")
        capture = None
        if spec.get("capture_dir") and percent > 0:
            capture = CaptureWriter(Path(spec["capture_dir"]), version, int(max_mb * 1024 * 1024), metrics).start()
        return cls(version, metrics, capture, percent if capture else 0)

    def answered(self, req: falcon.asgi.Request, body: bytes, labels: np.ndarray, answer: str,
                 answer_type: str, client_id: str | None = None) -> str:
        """Count an answered invocation (one predicted label per row) and maybe capture it; returns its
        inference id: the client's own (``client_id``, boto3's ``InferenceId``) when it sent one, else one of
        the endpoint's. The record's ``eventId`` is always the endpoint's. The pipeline's own endpoint tests
        (``TEST_TRAFFIC_HEADER``) are counted, never captured: they are not live traffic."""
        return self.answered_as(req.scope.get(STARTED_KEY), req.get_header(TEST_TRAFFIC_HEADER) is not None, body,
                                req.content_type, labels, answer, answer_type, client_id)

    def answered_as(self, started: float | None, test: bool, body: bytes, content_type: str | None,
                    labels: np.ndarray, answer: str, answer_type: str, client_id: str | None = None) -> str:
        """``answered`` for a request known by its parts (the worker's hot path: no falcon request): when it began
        to arrive (``STARTED_KEY``), whether it is test traffic, its body and content type."""
        event_id = next(self._ids)
        if self.metrics is not None:
            self.metrics.answered(started, len(labels), labels, test)
        capture = self.capture
        if capture is not None and not test and \
                (self.capture_percent >= 100 or self._random() * 100 < self.capture_percent):
            if client_id is None:
                capture.offer(event_id, body, content_type, answer, answer_type, time.time_ns() // 1000)
            else:
                capture.offer(client_id, body, content_type, answer, answer_type, time.time_ns() // 1000,
                              event_id)
        return event_id if client_id is None else client_id

    def refused(self, req: falcon.asgi.Request, body: bytes, client_id: str | None = None) -> None:
        """A body refused as malformed (400: a row of the wrong width, an empty or non-numeric value): maybe
        captured without an answer, so ``monitor`` counts its rows of the wrong width and its missing values --
        the drift a client's changed schema causes, which answered requests alone would never show."""
        capture = self.capture
        if capture is not None and (self.capture_percent >= 100 or self._random() * 100 < self.capture_percent) \
                and req.get_header(TEST_TRAFFIC_HEADER) is None:
            event_id = next(self._ids)
            capture.offer(client_id or event_id, body, req.content_type, None, None, time.time_ns() // 1000,
                          None if client_id is None else event_id)

    def exposition(self) -> tuple[bytes, str] | None:
        """``/metrics``: every worker's metrics, this one's up to now; None when metrics are off."""
        if self.metrics is None:
            return None
        self.metrics.flush()
        return metrics_exposition()

    def failed(self, code: int, started: float | None, test: bool = False, original: int | None = None) -> None:
        """An invocation refused with ``code`` (by the app, or by the worker: 408, a refused head); ``original``:
        the status a ModelError (424) stands for."""
        if self.metrics is not None:
            self.metrics.request(code, started, test, original)

    def shadowed(self, code: int, seconds: float | None, same: int, different: int) -> None:
        """A shadow version's prediction of a live request's copy: the status it would have answered, the
        client's wait had it answered, and how many rows it predicted as the serving version did."""
        if self.metrics is not None:
            self.metrics.shadowed(code, seconds, same, different)

    # falcon error handlers (``app.add_error_handler``): count, then let falcon answer as it would.
    async def count_http_error(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, error: falcon.HTTPError,
                               params: dict[str, Any]) -> None:
        if req.uri_template in INVOCATION_ROUTES:
            code, original = answered_status(req, error.status_code, getattr(error, "by_model", False))
            self.failed(code, req.scope.get(STARTED_KEY), req.get_header(TEST_TRAFFIC_HEADER) is not None, original)
        raise error

    async def count_exception(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception,
                              params: dict[str, Any]) -> None:
        log.error("unhandled error answering %s %s", req.method, req.path, exc_info=error)  # as falcon's own handler
        if req.uri_template in INVOCATION_ROUTES:
            code, original = answered_status(req, 500, False)
            self.failed(code, req.scope.get(STARTED_KEY), req.get_header(TEST_TRAFFIC_HEADER) is not None, original)
        raise falcon.HTTPInternalServerError()

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()
