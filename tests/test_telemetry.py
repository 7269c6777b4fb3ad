"""The endpoint's metrics (GET /metrics) and data capture, through real servers deployed by the pipeline.

Counts are compared with the requests each test sent, read back through Prometheus' own text
parser; captured requests are read back with the monitor's reader (``iter_capture_records``).
Workers write their metrics at most a second late and their capture files within a second or
two, so every check on them polls (bounded) until it holds; none asserts a wall-clock time.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import boto3
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pipeline.monitoring.capture import capture_line, capture_record, decode_rows, iter_capture_records
from pipeline.serving.metrics import EndpointMetrics
from pipeline.serving.telemetry import (
    CaptureWriter,
    EndpointTelemetry,
    capture_line_of,
    prune_captures,
)
from tests.aws_fixtures import BUCKET, REGION, ROLE, sm
from tests.conftest import wait_for

ENDPOINT_DIR = Path(".mlops/endpoints/iris-model")
CAPTURE_DIR = ENDPOINT_DIR / "capture"
ROW = "5.1,3.5,1.4,0.2"
TOKEN = "tok-telemetry-3c9d1e"


# --------------------------------------------------------------------------- helpers
def _deploy(pipeline, *settings: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    result = pipeline(*settings, env=env)
    assert result.exit_code == 0, result.output
    summary = pipeline.results()["summary"]
    return summary["endpoint_url"], summary["endpoint_version"]


def _post(url: str, body: str | bytes = ROW, content_type: str = "text/csv",
          token: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{url}/invocations", data=body, headers=headers, timeout=10)


def _metrics(url: str, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}


def _settled_metrics(url: str, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    """The metrics once every worker has written what it counted (they write at most a second late)."""
    latest = _metrics(url, token)
    for _ in range(30):
        time.sleep(EndpointMetrics.FLUSH_SECONDS + 0.2)
        previous, latest = latest, _metrics(url, token)
        if latest == previous:
            return latest
    raise AssertionError("the endpoint's metrics kept changing with no traffic")


def _value(metrics: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def _captured(version: str | None = None) -> dict[str, dict]:
    records = iter_capture_records(CAPTURE_DIR, version=version)
    found = {record["eventMetadata"]["inferenceId"]: record for record in records}
    assert records.unreadable == 0 and records.truncated == 0
    return found


def _capture_bytes() -> int:
    return sum(path.stat().st_size for path in CAPTURE_DIR.rglob("*.jsonl") if path.is_file())


def _workers(master: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(b")", 1)[1].split()
            if int(fields[1]) == master and fields[0] not in (b"Z", b"X"):
                found.add(int(entry.name))
    return found


# --------------------------------------------------------------------------- metrics
def test_metrics_count_every_invocation_by_version_code_class_and_rows_summed_over_workers(pipeline):
    url, version = _deploy(pipeline)
    before = _settled_metrics(url)
    sent: dict[str, list] = {"single": [], "three": [], "bad": [], "unsupported": []}
    lock = threading.Lock()

    def client(index: int) -> None:  # a new connection per request: the workers share them out
        for n in range(15):
            if n % 5 == 1:
                kind, reply = "three", _post(url, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n5.7,2.8,4.1,1.3\n")
            elif n % 5 == 2 and index % 2:
                kind, reply = "bad", _post(url, "1,2,3")
            elif n % 5 == 3 and index % 2:
                kind, reply = "unsupported", _post(url, "x", "application/x-npy")
            else:
                kind, reply = "single", _post(url)
            with lock:
                sent[kind].append(reply)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    answered = sent["single"] + sent["three"]
    assert all(reply.status_code == 200 for reply in answered)
    assert {reply.status_code for reply in sent["bad"]} == {400}
    assert {reply.status_code for reply in sent["unsupported"]} == {415}
    predicted = [label for reply in answered for label in reply.json()["predictions"]]

    latest: dict[tuple[str, frozenset], float] = {}

    def delta(name: str, **labels: str) -> float:
        return _value(latest, name, **labels) - _value(before, name, **labels)

    def counted() -> bool:
        latest.update(_metrics(url))
        return delta("mlops_endpoint_requests_total", version=version, code="200") == len(answered) and \
            delta("mlops_endpoint_requests_total", version=version, code="400") == len(sent["bad"]) and \
            delta("mlops_endpoint_captured_total", version=version) == len(answered) + len(sent["bad"])

    wait_for(counted, seconds=30)
    after = dict(latest)
    assert delta("mlops_endpoint_requests_total", version=version, code="415") == len(sent["unsupported"])
    assert delta("mlops_endpoint_request_duration_seconds_count", version=version) == \
        len(answered) + len(sent["bad"]) + len(sent["unsupported"])
    assert delta("mlops_endpoint_request_rows_count", version=version) == len(answered)
    assert delta("mlops_endpoint_request_rows_sum", version=version) == len(sent["single"]) + 3 * len(sent["three"])
    assert delta("mlops_endpoint_request_rows_bucket", version=version, le="1.0") == len(sent["single"])
    for label in (0, 1, 2):
        assert delta("mlops_endpoint_predictions_total", version=version, **{"class": str(label)}) == \
            predicted.count(label)
    assert _value(after, "mlops_endpoint_workers", version=version) == 2
    assert _value(after, "mlops_endpoint_model_load_seconds", version=version) > 0
    # Only this endpoint's version, status codes and the model's classes label anything.
    assert {dict(labels).get("version") for _, labels in after} <= {None, version}
    assert {dict(labels)["class"] for name, labels in after if name.startswith("mlops_endpoint_predictions")} == \
        {"0", "1", "2"}

    # Whichever worker answers /metrics, it gives the same sums; and a worker that exits takes
    # nothing with it: its counts stay, and it no longer counts as a live worker.
    for _ in range(4):
        assert _metrics(url) == after
    master = int((ENDPOINT_DIR / "stable.pid").read_text())
    old_workers = _workers(master)
    assert len(old_workers) == 2
    os.kill(min(old_workers), signal.SIGTERM)
    wait_for(lambda: len(_workers(master)) == 2 and _workers(master) != old_workers, seconds=60)
    wait_for(lambda: _value(_metrics(url), "mlops_endpoint_workers", version=version) == 2, seconds=30)
    later = _metrics(url)
    for key, value in after.items():
        if key[0].startswith(("mlops_endpoint_requests", "mlops_endpoint_predictions", "mlops_endpoint_request_")):
            assert later[key] == value, key


def test_metrics_ask_for_the_endpoints_token_and_refused_invocations_are_counted(pipeline):
    url, version = _deploy(pipeline, env={"MLOPS_ENDPOINT_TOKEN": TOKEN})
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 401
    before = _settled_metrics(url, TOKEN)
    assert _post(url).status_code == 401
    assert _post(url, token=TOKEN).status_code == 200
    wait_for(lambda: _value(_metrics(url, TOKEN), "mlops_endpoint_requests_total", version=version, code="401") ==
             _value(before, "mlops_endpoint_requests_total", version=version, code="401") + 1, seconds=30)


def test_the_workers_own_408_is_counted(pipeline):
    url, version = _deploy(pipeline, "--set", "client_timeout_seconds=1")
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as connection:
        connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n")
        assert connection.recv(65536).startswith(b"HTTP/1.1 408 ")
    wait_for(lambda: _value(_metrics(url), "mlops_endpoint_requests_total", version=version, code="408") == 1,
             seconds=30)


# --------------------------------------------------------------------------- capture
def test_every_answer_has_a_unique_inference_id_and_its_request_is_captured_as_sent(pipeline):
    url, version = _deploy(pipeline)
    replies = [_post(url, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n") for _ in range(10)]
    replies += [_post(url, json.dumps([[5.7, 2.8, 4.1, 1.3]]), "application/json") for _ in range(10)]
    ids = [reply.headers["X-Inference-Id"] for reply in replies]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{32}", one) for one in ids)
    assert "X-Inference-Id" not in _post(url, "1,2,3").headers  # a refused request has nothing to label
    wait_for(lambda: set(ids) <= set(_captured(version)), seconds=30)
    captured = _captured(version)
    for reply, inference_id in zip(replies, ids):
        rows, predictions, decoded_id, _ = decode_rows(captured[inference_id])
        assert decoded_id == inference_id and predictions == reply.json()["predictions"]
        assert rows.shape[0] == len(predictions)
    files = {path.relative_to(CAPTURE_DIR).parts[:5] for path in CAPTURE_DIR.rglob("*.jsonl")}
    assert {parts[0] for parts in files} == {version}


def test_capture_percent_zero_writes_nothing(pipeline):
    Path("c.json").write_text(json.dumps({"capture_percent": 0}))
    url, version = _deploy(pipeline, "--config-file", "c.json")
    assert json.loads((ENDPOINT_DIR / "current.json").read_text())["capture_percent"] == 0
    replies = [_post(url) for _ in range(20)]
    assert all(reply.status_code == 200 and reply.headers["X-Inference-Id"] for reply in replies)
    wait_for(lambda: _value(_metrics(url), "mlops_endpoint_request_rows_count", version=version) >= 20, seconds=30)
    time.sleep(2 * CaptureWriter.FLUSH_SECONDS)  # what a writer would have written by now
    assert not CAPTURE_DIR.exists()


def test_capture_stays_under_capture_max_mb_and_the_oldest_files_go_first(pipeline):
    url, version = _deploy(pipeline, "--set", "capture_max_mb=0.05")
    limit = int(0.05 * 1024 * 1024)
    ids = [_post(url).headers["X-Inference-Id"] for _ in range(400)]  # about 170 KB of records
    wait_for(lambda: ids[-1] in _captured(version) and _capture_bytes() <= limit, seconds=60)
    captured = _captured(version)
    assert ids[0] not in captured
    assert len(captured) < len(ids)
    assert _value(_metrics(url), "mlops_endpoint_capture_deleted_files_total", version=version) > 0


def test_an_unwritable_capture_directory_costs_no_request(pipeline):
    url, version = _deploy(pipeline)
    blocked = CAPTURE_DIR / version
    # A live request captured and on disk, so the version's directory exists (the deployment's own
    # endpoint tests are never captured).
    first = _post(url).headers["X-Inference-Id"]
    wait_for(lambda: first in _captured(version) and blocked.is_dir(), seconds=30)
    shutil.rmtree(blocked)
    blocked.write_text("a file where the version's capture directory should be")
    replies = [_post(url) for _ in range(30)]
    assert all(reply.status_code == 200 for reply in replies)
    wait_for(lambda: _value(_metrics(url), "mlops_endpoint_capture_dropped_total", version=version,
                            reason="write_error") == 30, seconds=30)
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    blocked.unlink()  # writable again: capture resumes
    inference_id = _post(url).headers["X-Inference-Id"]
    wait_for(lambda: inference_id in _captured(version), seconds=30)


@pytest.mark.unit
@pytest.mark.parametrize("value, expected", [
    ("101", "capture_percent: expected a number between 0 and 100"),
    ("-1", "capture_percent: expected a number between 0 and 100"),
    ("50.5", "capture_percent: expected a whole number"),
    ("0", "capture_max_mb: expected a number greater than 0"),
    ('"Infinity"', "capture_max_mb: expected a number"),
])
def test_bad_capture_settings_are_refused_with_exit_2(pipeline, value, expected):
    key = expected.split(":")[0]
    result = pipeline("--set", f"{key}={value}")
    assert result.exit_code == 2
    assert expected in result.output
    assert not Path(".mlops/endpoints").exists()


@pytest.mark.unit
def test_capture_max_mb_nan_in_the_config_file_is_refused(pipeline):
    Path("c.json").write_text('{"capture_max_mb": NaN}')
    result = pipeline("--config-file", "c.json")
    assert result.exit_code == 2
    assert "capture_max_mb: expected a finite number" in result.output


# --------------------------------------------------------------------------- the writer, in this process
def _request(content_type: str = "text/csv", headers: dict[str, str] | None = None) -> SimpleNamespace:
    """What EndpointTelemetry reads of falcon's request."""
    given = {name.lower(): value for name, value in (headers or {}).items()}
    return SimpleNamespace(scope={}, content_type=content_type,
                           get_header=lambda name, default=None: given.get(name.lower(), default))


@pytest.mark.unit
def test_sampling_is_random_per_request_not_every_nth(tmp_path):
    writer = CaptureWriter(tmp_path, "v1", 10 * 1024 * 1024, buffer_records=100_000)  # not started: it only buffers
    telemetry = EndpointTelemetry("v1", None, writer, 50)
    for _ in range(10_000):
        telemetry.answered(_request(), b"1,2,3,4", np.array([0]), '{"predictions": [0]}',
                           "application/json")
    kept = [item[0] for item in writer._pending]
    assert 4_600 <= len(kept) <= 5_400
    # Every second request would never keep two neighbours; a fair coin keeps about a quarter of the pairs.
    numbers = sorted(int(inference_id[16:], 16) for inference_id in kept)  # an id ends with the worker's count
    neighbours = sum(1 for a, b in zip(numbers, numbers[1:]) if b == a + 1)
    assert 2_000 <= neighbours <= 3_000


@pytest.mark.unit
def test_capture_percent_zero_has_no_writer_at_all(tmp_path):
    spec = {"version": "v1", "capture_dir": str(tmp_path / "capture"), "capture_percent": 0}
    telemetry = EndpointTelemetry.from_spec(spec, [0, 1], 0.1)
    assert telemetry.capture is None
    telemetry.answered(_request(), b"1,2,3,4", np.array([0]), "0\n", "text/csv")
    assert not (tmp_path / "capture").exists()


@pytest.mark.unit
def test_a_full_buffer_drops_and_counts_instead_of_waiting(tmp_path):
    writer = CaptureWriter(tmp_path, "v1", 10 * 1024 * 1024, buffer_records=5)
    offered = [writer.offer(f"{n:032x}", b"1,2,3,4", "text/csv", "0\n", "text/csv", time.time_ns() // 1000)
               for n in range(8)]
    assert offered == [True] * 5 + [False] * 3 and writer.dropped["buffer_full"] == 3
    writer.flush()
    assert writer.written == 5
    assert len(list(iter_capture_records(tmp_path, version="v1"))) == 5


@pytest.mark.unit
@pytest.mark.parametrize("body, content_type, answer, answer_type", [
    (b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", "text/csv", '{"predictions": [0, 2]}', "application/json"),
    (b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', "application/json; charset=utf-8", "0\n", "text/csv"),
    ('[["caf\u00e9 \\"quoted\\"\\\\ \u2603", 1, 2, 3]]'.encode(), "application/json", '{"predictions": ["a\\nb"]}',
     "application/json"),
    (b"\xff\xfe not utf-8", "text/csv", '{"predictions": []}', "application/json"),
    (b"\x00\x01binary", "application/x-npy", '{"predictions": [1]}', "application/json"),
    (b"1,2,3,4", None, "1\n", "text/csv"),
    (b"1,2,3,4", "TEXT/CSV", '{"predictions": [1]}', "application/json"),
])
def test_the_writers_line_is_exactly_the_monitors_record(body, content_type, answer, answer_type):
    when_us = 1_764_504_000_999_999  # the last microsecond of a second
    inference_id = "0123456789abcdef0123456789abcdef"
    when = datetime.fromtimestamp(when_us // 10**6, UTC).replace(microsecond=when_us % 10**6)
    expected = capture_line(capture_record(inference_id=inference_id, input_body=body, input_content_type=content_type,
                                           output_body=answer, output_content_type=answer_type, inference_time=when))
    assert capture_line_of(inference_id, body, content_type, answer, answer_type, when_us) == expected


@pytest.mark.unit
def test_prune_deletes_the_oldest_hours_first_and_keeps_what_fits(tmp_path):
    for hour in ("2026/11/30/09", "2026/11/30/10", "2026/11/30/11"):
        for worker in ("a", "b"):
            path = tmp_path / "v1" / hour / f"{worker}-0000.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * 1000)
    assert prune_captures(tmp_path, 2500) == 4
    left = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.jsonl"))
    assert left == ["v1/2026/11/30/11/a-0000.jsonl", "v1/2026/11/30/11/b-0000.jsonl"]
    assert not (tmp_path / "v1" / "2026" / "11" / "30" / "09").exists()  # emptied hours go too
    assert prune_captures(tmp_path, 2500) == 0


# --------------------------------------------------------------------------- SageMaker
def test_every_sagemaker_endpoint_config_samples_at_capture_percent(pipeline, sagemaker):
    result = pipeline("--role-arn", ROLE, "--set", "capture_percent=0", "--set", "max_p95_latency_ms=null")
    assert result.exit_code == 0, result.output
    version = pipeline.results()["summary"]["endpoint_version"]
    capture = sm().describe_endpoint_config(EndpointConfigName=version)["DataCaptureConfig"]
    assert capture["EnableCapture"] is False and capture["InitialSamplingPercentage"] == 0
    assert capture["DestinationS3Uri"] == f"s3://{BUCKET}/model-monitor/data-capture"
    objects = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix="model-monitor/")
    assert objects.get("KeyCount", 0) == 0  # the pipeline's own tests invoked it: nothing was captured


def test_sagemaker_captures_land_in_its_s3_layout_and_read_back_as_sent(pipeline, sagemaker, tmp_path):
    result = pipeline("--role-arn", ROLE, "--set", "capture_percent=100", "--set", "max_p95_latency_ms=null")
    assert result.exit_code == 0, result.output
    version = pipeline.results()["summary"]["endpoint_version"]
    capture = sm().describe_endpoint_config(EndpointConfigName=version)["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 100
    assert {option["CaptureMode"] for option in capture["CaptureOptions"]} == {"Input", "Output"}
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    answer = runtime.invoke_endpoint(EndpointName="iris-model", ContentType="text/csv", Body=ROW,
                                     InferenceId="label-me-1")
    assert json.loads(answer["Body"].read()) == {"predictions": [0]}
    s3 = boto3.client("s3", region_name=REGION)
    prefix = f"model-monitor/data-capture/iris-model/{version}/"
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    pattern = re.compile(re.escape(prefix) + r"\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl")
    assert keys and all(pattern.fullmatch(key) for key in keys)
    for key in keys:  # as `aws s3 sync s3://.../iris-model/ DIR` would
        target = tmp_path / key[len("model-monitor/data-capture/iris-model/"):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    records = list(iter_capture_records(tmp_path, version=version))
    assert len(records) == len(keys)
    mine = [record for record in records if record["eventMetadata"].get("inferenceId") == "label-me-1"]
    assert len(mine) == 1
    rows, predictions, _, _ = decode_rows(mine[0])
    assert rows.tolist() == [[5.1, 3.5, 1.4, 0.2]] and predictions == [0]
