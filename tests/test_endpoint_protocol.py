"""The endpoint's HTTP protocol at its edges: request lines and heads the worker refuses, the Accept rule for
probabilities, CSV header rows, the client's own inference id, and how refusals are counted in /metrics.

Against one real endpoint deployed by the pipeline's CLI (iris, logistic regression), shared by the module: no
test here changes it (each reads the counters it looks at before and after, and the module's tests run one
after another). Raw sockets where the request is one no HTTP library would send. The tests marked ``unit``
call the serving hooks in-process, without a server. No test asserts a wall-clock time.
"""
from __future__ import annotations

import csv
import json
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import numpy as np
import pytest
import requests
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli import cli
from pipeline.config import ENV_VARS
from pipeline.container import inference, payloads
from pipeline.monitoring.capture import capture_line, capture_record, iter_capture_records
from pipeline.serving.metrics import EndpointMetrics
from pipeline.serving.telemetry import capture_line_of
from pipeline.serving.worker import MAX_FIELD_BYTES, MAX_FIELDS, MAX_HEAD_BYTES, MAX_URL_BYTES
from tests.conftest import Pipeline, stop_servers_under, wait_for

NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
SETOSA, VIRGINICA = [5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]  # classes 0 and 2
ROW = b"5.1,3.5,1.4,0.2"
ENDPOINT = "iris-model"


@dataclass(frozen=True)
class Deployed:
    root: Path
    url: str
    version: str


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """An endpoint deployed by the real CLI, shared by the tests of this module (none changes it)."""
    root = tmp_path_factory.mktemp("protocol")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            for name in [*ENV_VARS, "SMTP_HOST", "MLOPS_ENDPOINT_TOKEN"]:
                patch.delenv(name, raising=False)
            run = Pipeline(root)
            result = run()
            assert result.exit_code == 0, result.output
        summary = run.results()["summary"]
        yield Deployed(root, summary["endpoint_url"], summary["endpoint_version"])
    finally:
        stop_servers_under(root)


# --------------------------------------------------------------------------- helpers
def _exchange(url: str, data: bytes, pieces: int = 1) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` raw (in ``pieces``, a pause between them), then read the answer until the server closes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            connection.sendall(data[start:start + size])
            if pieces > 1:
                time.sleep(0.05)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _post(url: str, body: Any, headers: dict[str, str] | None = None,
          path: str = "/invocations") -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(f"{url}{path}", data=data, timeout=30,
                         headers={"Content-Type": "application/json", **(headers or {})})


def _runtime(url: str) -> Any:
    return boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=url, aws_access_key_id="x",
                        aws_secret_access_key="x", config=BotoConfig(retries={"max_attempts": 1}))


def _metrics(url: str) -> dict[tuple[str, frozenset], float]:
    reply = requests.get(f"{url}/metrics", timeout=30)
    assert reply.status_code == 200, reply.text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.text) for sample in family.samples}


def _settled_metrics(url: str) -> dict[tuple[str, frozenset], float]:
    """The metrics once every worker has written what it counted (each writes at most a second late): the
    deployment's own endpoint tests, say, whose counts would otherwise land after a test's first reading."""
    latest = _metrics(url)
    for _ in range(30):
        time.sleep(EndpointMetrics.FLUSH_SECONDS + 0.2)
        previous, latest = latest, _metrics(url)
        if latest == previous:
            return latest
    raise AssertionError("the endpoint's metrics kept changing with no traffic")


def _value(metrics: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def _counted(url: str, before: dict[tuple[str, frozenset], float],
             expected: list[tuple[str, dict[str, str], float]]) -> None:
    """Poll /metrics (workers write their counts at most a second late) until each metric with its labels has grown
    by exactly the count expected over ``before``."""

    def reached() -> bool:
        latest = _metrics(url)
        return all(_value(latest, name, **labels) - _value(before, name, **labels) == count
                   for name, labels, count in expected)

    try:
        wait_for(reached, seconds=30)
    except AssertionError:
        latest = _metrics(url)
        raise AssertionError([(name, labels, count, _value(latest, name, **labels) - _value(before, name, **labels))
                              for name, labels, count in expected]) from None


def _healthy(url: str) -> bool:
    return requests.get(f"{url}/ping", timeout=30).status_code == 200


# --------------------------------------------------------------------------- request lines
@pytest.mark.parametrize("request_line", [b"GET /ping\r\n\r\n", b"POST /invocations\r\n\r\n"])
def test_a_request_line_without_a_version_is_400_saying_so(endpoint, request_line):
    status, headers, body = _exchange(endpoint.url, request_line)
    assert status == 400
    assert "HTTP/1.1" in json.loads(body)["title"]
    assert headers["connection"] == "close" and headers["x-model-version"] == endpoint.version
    assert _healthy(endpoint.url)


@pytest.mark.parametrize("raw", [
    pytest.param(b"GET /ping HTTP/2.0\r\nHost: endpoint\r\n\r\n", id="ping"),
    pytest.param(b"POST /invocations HTTP/2.0\r\nHost: endpoint\r\nContent-Type: text/csv\r\nContent-Length: 15\r\n\r\n"
                 + ROW, id="invocations"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="http2-preface"),
])
def test_an_http_2_request_line_is_505(endpoint, raw):
    status, _, body = _exchange(endpoint.url, raw)
    assert status == 505
    assert "HTTP/2" in json.loads(body)["title"] and "HTTP/1.1" in json.loads(body)["title"]
    assert _healthy(endpoint.url)


# --------------------------------------------------------------------------- the request head's bounds
def _head(*fields: bytes, target: bytes = b"/ping") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: endpoint\r\n" + b"".join(field + b"\r\n" for field in fields) + \
        b"Connection: close\r\n\r\n"


@pytest.mark.parametrize("raw, fragment", [
    pytest.param(_head(b"X-Big: " + b"a" * 100_000), None, id="100-KB-field"),
    pytest.param(_head(b"X-Big: " + b"a" * MAX_FIELD_BYTES), "X-Big", id="one-field-over-8-KB"),
    pytest.param(_head(*(b"X-Field-%d: v" % n for n in range(1000))), f"more than {MAX_FIELDS} header fields",
                 id="1000-fields"),
    pytest.param(_head(*(b"X-Field-%d: v" % n for n in range(MAX_FIELDS))), f"more than {MAX_FIELDS} header fields",
                 id="101-fields-with-host"),
    pytest.param(_head(*(b"X-Field-%d: %s" % (n, b"v" * 8000) for n in range(5))), f"over {MAX_HEAD_BYTES} bytes",
                 id="head-over-32-KB-in-fields-within-the-limit"),
])
def test_a_head_over_its_bounds_is_431_naming_the_bound(endpoint, raw, fragment):
    status, headers, body = _exchange(endpoint.url, raw)
    assert status == 431
    title = json.loads(body)["title"]
    assert "limit" in title or "over" in title
    if fragment:
        assert fragment in title
    assert headers["connection"] == "close"
    assert _healthy(endpoint.url)


def test_a_head_that_never_ends_is_refused_once_over_the_bound_not_held_until_the_deadline(endpoint):
    """A field that never completes, sent in pieces: the bytes held for a head are bounded too (a 408 would mean
    the worker held all of it until client_timeout_seconds)."""
    request = b"GET /ping HTTP/1.1\r\nHost: endpoint\r\nX-Endless: " + b"a" * (MAX_HEAD_BYTES + 8192)
    status, _, body = _exchange(endpoint.url, request, pieces=8)
    assert status == 431 and f"over {MAX_HEAD_BYTES} bytes" in json.loads(body)["title"]


def test_a_request_target_over_the_bound_is_414(endpoint):
    status, _, body = _exchange(endpoint.url, _head(target=b"/ping?" + b"a" * MAX_URL_BYTES))
    assert status == 414 and "request target" in json.loads(body)["title"]


def test_heads_within_the_bounds_are_served(endpoint):
    fields = [b"X-Field-%d: v" % n for n in range(MAX_FIELDS - 2)]  # with Host and Connection: the limit exactly
    assert _exchange(endpoint.url, _head(*fields))[0] == 200
    assert _exchange(endpoint.url, _head(b"X-Big: " + b"a" * (MAX_FIELD_BYTES - len("X-Big"))))[0] == 200
    reply = requests.post(f"{endpoint.url}/invocations", data=ROW, timeout=30,
                          headers={"Content-Type": "text/csv", "X-Big": "a" * 8000})
    assert reply.status_code == 200 and reply.json() == {"predictions": [0]}


def test_the_workers_refusals_are_counted_under_their_status(endpoint):
    before = _settled_metrics(endpoint.url)
    sent = {400: [b"GET /ping\r\n\r\n", b"\x00 garbage\r\n\r\n"],
            414: [_head(target=b"/invocations?" + b"a" * MAX_URL_BYTES)],
            431: [_head(b"X-Big: " + b"a" * 100_000), _head(*(b"X-Field-%d: v" % n for n in range(1000)))],
            505: [b"GET /ping HTTP/2.0\r\nHost: endpoint\r\n\r\n"]}
    for status, requests_ in sent.items():
        for request in requests_:
            assert _exchange(endpoint.url, request)[0] == status
    _counted(endpoint.url, before, [("mlops_endpoint_requests_total", {"version": endpoint.version, "code": str(code)},
                                     len(requests_)) for code, requests_ in sent.items()])


# --------------------------------------------------------------------------- probabilities and Accept
@pytest.mark.parametrize("accept", [
    "text/csv, application/json; probabilities=true",
    "text/csv;q=1, application/json;q=0.5;probabilities=true",
    "text/csv, */*; probabilities=true",
    "text/csv; probabilities=true, application/json",
])
def test_probabilities_asked_for_by_any_accepted_type_are_answered_in_json(endpoint, accept):
    for path in ("/invocations", f"/endpoints/{ENDPOINT}/invocations"):
        reply = _post(endpoint.url, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", {"Content-Type": "text/csv",
                                                                          "Accept": accept}, path=path)
        assert reply.status_code == 200, reply.text
        assert reply.headers["Content-Type"].startswith("application/json")
        answer = reply.json()
        assert answer["predictions"] == [0, 2] and answer["classes"] == [0, 1, 2]
        assert [sum(row) for row in answer["probabilities"]] == [pytest.approx(1.0)] * 2


@pytest.mark.parametrize("accept", ["text/csv; probabilities=true",
                                    "text/csv; probabilities=true, application/json; probabilities=false"])
def test_probabilities_asked_for_where_no_json_is_accepted_are_406_naming_the_accept(endpoint, accept):
    reply = _post(endpoint.url, ROW, {"Content-Type": "text/csv", "Accept": accept})
    assert reply.status_code == 406
    assert "JSON only" in reply.json()["title"] and repr(accept) in reply.json()["title"]


def test_the_switch_header_with_a_csv_first_accept_that_takes_json_answers_json(endpoint):
    reply = _post(endpoint.url, ROW, {"Content-Type": "text/csv", "Accept": "text/csv, application/json",
                                      "X-Probabilities": "true"})
    assert reply.status_code == 200 and set(reply.json()) == {"predictions", "probabilities", "classes"}
    reply = _post(endpoint.url, ROW, {"Content-Type": "text/csv", "Accept": "text/csv, application/json; "
                                      "probabilities=true", "X-Probabilities": "false"})
    assert reply.status_code == 400 and "contradicts" in reply.json()["title"]


def test_accept_without_probabilities_keeps_its_order(endpoint):
    reply = _post(endpoint.url, ROW, {"Content-Type": "text/csv", "Accept": "text/csv, application/json"})
    assert reply.headers["Content-Type"].startswith("text/csv") and reply.text == "0\n"


@pytest.mark.unit
@pytest.mark.parametrize("accept, switch, expected", [
    (None, False, ("application/json", False)),
    (None, True, ("application/json", True)),
    ("text/csv", False, ("text/csv", False)),
    ("text/csv", True, ("text/csv", True)),  # output_fn's 406
    ("text/csv, application/json", True, ("application/json", True)),
    ("text/csv, application/json; probabilities=true", False, ("application/json", True)),
    ("text/csv;q=0.9, application/json;q=0.1;probabilities=true", False, ("application/json", True)),
    ("text/csv, application/json;q=0;probabilities=true", False, ("text/csv", False)),  # q=0: not accepted
    ("text/csv; probabilities=true", False, ("text/csv", True)),
    ("text/csv; probabilities=true, application/json; probabilities=false", False, ("text/csv", True)),
    ("application/json; probabilities=false", False, ("application/json", False)),
])
def test_negotiate_never_drops_a_request_for_probabilities(accept, switch, expected):
    assert payloads.negotiate(accept, switch) == expected
    assert payloads.accept_asks_for_probabilities(accept) == (accept is not None and expected[1] and not switch)


# --------------------------------------------------------------------------- CSV with a header row
def _csv(names: list[str], rows: list[list[float]], line_end: str = "\n") -> str:
    lines = [",".join(f'"{name}"' if "," in name else name for name in names)] + \
        [",".join(map(repr, row)) for row in rows]
    return line_end.join(lines) + line_end


@pytest.mark.parametrize("order, line_end", [([0, 1, 2, 3], "\n"), ([0, 1, 2, 3], "\r\n"), ([2, 0, 3, 1], "\n")])
def test_a_csv_header_row_of_the_schemas_names_is_read_as_the_column_names(endpoint, order, line_end):
    names = [NAMES[i] for i in order]
    rows = [[row[i] for i in order] for row in (SETOSA, VIRGINICA)]
    reply = _post(endpoint.url, _csv(names, rows, line_end), {"Content-Type": "text/csv"})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [0, 2]}


def test_a_big_csv_body_with_a_header_row_is_read_too(endpoint):
    rows = [SETOSA, VIRGINICA] * 1000  # over payloads' threshold for pandas' parser
    reply = _post(endpoint.url, _csv(NAMES, rows), {"Content-Type": "text/csv"})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [0, 2] * 1000}


@pytest.mark.parametrize("body, fragments", [
    pytest.param("a,b,c,d\n5.1,3.5,1.4,0.2\n", ["unexpected 'a'", "missing 'sepal length (cm)'"], id="other-names"),
    pytest.param(_csv(NAMES[:3], [SETOSA[:3]]), ["missing 'petal width (cm)'"], id="a-name-short"),
    pytest.param(_csv(NAMES + ["colour"], [SETOSA + [1.0]]), ["unexpected 'colour'"], id="a-name-over"),
    pytest.param(_csv(NAMES, [SETOSA[:3]]), ["header row names 4 columns", "3 values"], id="rows-narrower"),
    pytest.param(_csv(NAMES[:3] + NAMES[:1], [SETOSA]), ["'sepal length (cm)' appears twice"], id="a-name-twice"),
    pytest.param("a,b,c,d", ["rows must be numbers only"], id="text-alone"),
    pytest.param("5.1,b,1.4,0.2\n5.1,3.5,1.4,0.2\n", ["rows must be numbers only"], id="text-in-a-first-row"),
])
def test_a_csv_first_row_that_is_not_the_schemas_names_stays_a_400_saying_what_is_wrong(endpoint, body, fragments):
    reply = _post(endpoint.url, body, {"Content-Type": "text/csv"})
    assert reply.status_code == 400
    for fragment in fragments:
        assert fragment in reply.json()["title"]


@pytest.mark.unit
def test_decode_body_reads_a_csv_header_row_only_when_it_is_names():
    named = payloads.decode_body(b"x,y\n1,2\n3,4\n", "text/csv")
    assert isinstance(named, payloads.NamedRows) and named.columns == ("x", "y")
    assert named.rows.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    quoted = payloads.decode_body('"a, b",c\r\n1,2\r\n', "text/csv")
    assert quoted.columns == ("a, b", "c")
    assert payloads.decode_body(b"1,2\n3,4\n", "text/csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    for body in (b"nan,1\n1,2\n", b"x,1\n1,2\n", b",y\n1,2\n"):  # a number, or an empty name: not a header row
        with pytest.raises(inference.BadRequestError):
            payloads.decode_body(body, "text/csv")


# --------------------------------------------------------------------------- the client's inference id
def _records(root: Path, version: str) -> dict[str, dict]:
    directory = root / ".mlops" / "endpoints" / ENDPOINT / "capture"
    if not directory.is_dir():
        return {}
    return {record["eventMetadata"]["inferenceId"]: record for record in iter_capture_records(directory,
                                                                                              version=version)}


@pytest.mark.parametrize("inference_id", [
    pytest.param("client-8c1f6a2e-4d3b-4f7a-9e55-0b6f3c2d1a90", id="uuid"),
    pytest.param('a "quoted", spaced id/with:punctuation', id="punctuation"),
    pytest.param("x" * 64, id="64-characters"),
])
def test_a_boto3_inference_id_is_the_answers_id_and_its_captured_records(endpoint, inference_id):
    answer = _runtime(endpoint.url).invoke_endpoint(EndpointName=ENDPOINT, Body=ROW, ContentType="text/csv",
                                                    InferenceId=inference_id)
    assert json.loads(answer["Body"].read()) == {"predictions": [0]}
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-inference-id"] == inference_id
    wait_for(lambda: inference_id in _records(endpoint.root, endpoint.version), seconds=30)
    metadata = _records(endpoint.root, endpoint.version)[inference_id]["eventMetadata"]
    assert metadata["eventId"] != inference_id and len(metadata["eventId"]) == 32  # the endpoint's own, as SageMaker's


def test_a_refused_body_is_captured_under_the_clients_id(endpoint):
    inference_id = "refused-" + uuid.uuid4().hex
    with pytest.raises(ClientError) as caught:
        _runtime(endpoint.url).invoke_endpoint(EndpointName=ENDPOINT, Body=b"1,2,3", ContentType="text/csv",
                                               InferenceId=inference_id)
    assert caught.value.response["OriginalStatusCode"] == 400
    wait_for(lambda: inference_id in _records(endpoint.root, endpoint.version), seconds=30)
    assert "endpointOutput" not in _records(endpoint.root, endpoint.version)[inference_id]["captureData"]


def test_an_inference_id_on_the_plain_route_is_honoured_too(endpoint):
    reply = _post(endpoint.url, ROW, {"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "plain-42"})
    assert reply.status_code == 200 and reply.headers["X-Inference-Id"] == "plain-42"


@pytest.mark.parametrize("inference_id, shown", [("x" * 65, "65 characters"), ("caf\u00e9-1", "'caf\u00e9-1'")])
def test_a_malformed_inference_id_is_400_naming_the_rule(endpoint, inference_id, shown):
    with pytest.raises(ClientError) as caught:
        _runtime(endpoint.url).invoke_endpoint(EndpointName=ENDPOINT, Body=ROW, ContentType="text/csv",
                                               InferenceId=inference_id)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400 and response["Error"]["Code"] == "ValidationError"
    message = response["Error"]["Message"]
    assert "1 to 64 printable ASCII characters" in message and shown in message
    reply = _post(endpoint.url, ROW, {"Content-Type": "text/csv",
                                      "X-Amzn-SageMaker-Inference-Id": inference_id.encode().decode("latin-1")})
    assert reply.status_code == 400 and "InferenceId" in reply.json()["title"]


@pytest.mark.unit
@pytest.mark.parametrize("body, content_type", [(b"5.1,3.5,1.4,0.2", "text/csv"), (b"\xff\xfe", "text/csv")])
def test_a_record_under_the_clients_id_keeps_the_endpoints_as_its_event_id(body, content_type):
    """The writer's line (its fast path for text, the general one for a body to base64) is the monitor's record with
    the client's id as inferenceId and the endpoint's as eventId."""
    when_us = 1_780_000_000_123_456
    client_id, event_id = 'an "id", with / punctuation', "0123456789abcdef0123456789abcdef"
    line = capture_line_of(client_id, body, content_type, '{"predictions": [0]}', "application/json", when_us, event_id)
    record = capture_record(inference_id=client_id, input_body=body, input_content_type=content_type,
                            output_body='{"predictions": [0]}', output_content_type="application/json",
                            inference_time=datetime.fromtimestamp(when_us // 10**6, UTC).replace(
                                microsecond=when_us % 10**6))
    record["eventMetadata"]["eventId"] = event_id
    assert line == capture_line(record)
    assert json.loads(line)["eventMetadata"]["inferenceId"] == client_id


def test_monitor_labels_keyed_by_the_clients_inference_ids_are_matched(endpoint, monkeypatch):
    """What the ids are for: `monitor --labels` joins labels to captured predictions by the client's own ids."""
    monkeypatch.chdir(endpoint.root)
    since = datetime.now(UTC).isoformat()
    runtime = _runtime(endpoint.url)
    rows = [SETOSA, VIRGINICA, [5.7, 2.8, 4.1, 1.3]] * 12  # 36: over monitor_min_labels (30)
    labelled = []
    for index, row in enumerate(rows):
        inference_id = f"order-{index}-{uuid.uuid4().hex[:8]}"
        answer = runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=",".join(map(repr, row)).encode(),
                                         ContentType="text/csv", InferenceId=inference_id)
        labelled.append((inference_id, json.loads(answer["Body"].read())["predictions"][0]))
    wait_for(lambda: {key for key, _ in labelled} <= set(_records(endpoint.root, endpoint.version)), seconds=30)
    with open("labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["inference_id", "label"])
        writer.writerows(labelled)
    result = CliRunner().invoke(cli, ["monitor", "--endpoint-name", ENDPOINT, "--since", since, "--labels",
                                      "labels.csv", "--output-file", "monitor.json"], catch_exceptions=False)
    quality = json.loads(Path("monitor.json").read_text())["quality"]
    assert quality["matched"] == len(labelled) and quality["unmatched_labels"] == 0, result.output
    assert quality["status"] == "no_breach", result.output


# --------------------------------------------------------------------------- ModelErrors in /metrics
def test_a_model_error_on_the_boto3_route_is_counted_as_the_424_the_client_saw_with_its_original_status(endpoint):
    before = _settled_metrics(endpoint.url)
    runtime = _runtime(endpoint.url)
    for body, content_type in ((b"1,2,3", "text/csv"), (b"1,2,3", "text/csv"), (ROW, "application/xml")):
        with pytest.raises(ClientError) as caught:
            runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=body, ContentType=content_type)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert _post(endpoint.url, "1,2,3", {"Content-Type": "text/csv"}).status_code == 400  # the plain route: a 400
    version = endpoint.version
    _counted(endpoint.url, before, [
        ("mlops_endpoint_requests_total", {"version": version, "code": "424"}, 3),
        ("mlops_endpoint_requests_total", {"version": version, "code": "400"}, 1),  # the plain route's
        ("mlops_endpoint_requests_total", {"version": version, "code": "415"}, 0),
        ("mlops_endpoint_model_errors_total", {"version": version, "original_code": "400"}, 2),
        ("mlops_endpoint_model_errors_total", {"version": version, "original_code": "415"}, 1),
    ])


# --------------------------------------------------------------------------- warnings
@pytest.mark.unit
def test_the_feature_names_warning_is_silenced_where_scikit_learn_predicts_not_process_wide(tmp_path):
    """model_fn once called warnings.filterwarnings for the whole process; now the filters are as they were, and
    scikit-learn's own predict (a model without a fast path) still warns nothing about bare rows."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from pipeline.container import train

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns=["target"])
    model = LogisticRegression(max_iter=500).fit(features, frame["target"])  # named columns; no fast path for it
    train.save_model(model, tmp_path, features)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = inference.model_fn(str(tmp_path))
        assert inference._FAST_PREDICT.get(loaded) is None
        prediction = inference.predict_fn(np.array([SETOSA, VIRGINICA]), loaded)
        assert prediction.labels.tolist() == [0, 2]
        text, _ = inference.output_fn(prediction, "application/json; probabilities=true")
        assert json.loads(text)["classes"] == [0, 1, 2]
        assert [str(warning.message) for warning in caught] == []
        warnings.warn(f"{inference.FEATURE_NAMES_WARNING}, but another library's model was fitted with them",
                      UserWarning, stacklevel=1)  # anyone else's warning of the same text still shows
        assert len(caught) == 1
    assert warnings.filters == filters
