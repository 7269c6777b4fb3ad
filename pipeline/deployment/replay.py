"""Replay: the endpoint's own recent client requests, sent to a candidate before it takes any of them.

The endpoint tests use the candidate's own held-out rows, so they cannot notice that a candidate
refuses what clients actually send (another width, other column names, a payload shape the old
version took). Before the switch, the most recent ``replay_requests`` requests the serving version
answered 2xx -- read from its data capture; the pipeline's own test requests are never captured
locally and are skipped by their inference id on SageMaker -- are sent to the candidate, which must
answer each of them 2xx too (``pipeline.testing.EndpointTester.check_replay``).
"""
from __future__ import annotations

import base64
import binascii
import collections
import logging
import tempfile
from pathlib import Path
from typing import Any

from pipeline.monitoring.capture import iter_capture_records
from pipeline.serving.contract import TEST_INFERENCE_ID_PREFIX
from pipeline.testing import CapturedRequest, ReplaySample

log = logging.getLogger(__name__)


def sample_for_replay(backend: Any, store_dir: Path, endpoint_name: str, version: str | None,
                      limit: int) -> ReplaySample:
    """The ``limit`` most recent captured requests ``version`` answered 2xx, oldest first."""
    if limit <= 0:
        return ReplaySample([], "skipped: replay_requests is 0")
    if not version:
        return ReplaySample([], "skipped: nothing serves yet, so no client request was captured")
    (store_dir / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store_dir / "tmp", prefix="replay-") as scratch:
        directory = backend.capture_directory(endpoint_name, version, Path(scratch))
        if directory is None:
            return ReplaySample([], f"skipped: no captured requests of {version}")
        recent: collections.deque[CapturedRequest] = collections.deque(maxlen=limit)
        for record in iter_capture_records(directory, version=version):
            request = _answered_request(record)
            if request is not None:
                recent.append(request)
    if not recent:
        return ReplaySample([], f"skipped: no captured client request that {version} answered")
    return ReplaySample(list(recent))


def _answered_request(record: dict[str, Any]) -> CapturedRequest | None:
    """A captured client request with the serving version's answer; None for a refused one (captured without an
    answer), the pipeline's own test request, or a record that cannot be replayed as it was sent."""
    try:
        metadata = record["eventMetadata"]
        inference_id = str(metadata.get("inferenceId") or metadata.get("eventId") or "")
        capture = record["captureData"]
        payload, answer = capture["endpointInput"], capture.get("endpointOutput")
        if not isinstance(answer, dict) or inference_id.startswith(TEST_INFERENCE_ID_PREFIX):
            return None
        data, encoding = payload["data"], str(payload.get("encoding") or "").upper()
        body = base64.b64decode(data, validate=True) if encoding == "BASE64" else str(data).encode("utf-8")
        content_type = str(payload.get("observedContentType") or ("text/csv" if encoding == "CSV" else
                                                                  "application/json"))
        accept = str(answer.get("observedContentType") or "application/json")
        return CapturedRequest(inference_id, body, content_type, accept)
    except (KeyError, TypeError, AttributeError, ValueError, binascii.Error, UnicodeEncodeError):
        return None
