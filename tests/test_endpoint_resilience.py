"""Slow, idle and lying clients cannot take the endpoint down; client_timeout_seconds cuts them off.

Real sockets against a real server deployed by the pipeline on 127.0.0.1. No test asserts a
wall-clock time: a stalled server shows up as a well-behaved request that fails or never gets an
answer within its (generous) timeout, while the misbehaving connections are still open. The tests
that only call an endpoint share one per client timeout (``patient``: 30 s, ``impatient``: 1 s).
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import shared_endpoint

ROW = b"5.1,3.5,1.4,0.2\n"
BODY_HEADERS = (b"POST /invocations HTTP/1.1\r\nHost: endpoint\r\nContent-Type: text/csv\r\n"
                b"Content-Length: %d\r\n\r\n" % len(ROW))


def _deploy(pipeline, *settings: str) -> str:
    result = pipeline(*settings)
    assert result.exit_code == 0, result.output
    return pipeline.results()["summary"]["endpoint_url"]


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An endpoint with client_timeout_seconds=30, for tests that only call it."""
    with shared_endpoint(tmp_path_factory.mktemp("patient"), "--set", "client_timeout_seconds=30") as url:
        yield url


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An endpoint with client_timeout_seconds=1, for tests that only call it."""
    with shared_endpoint(tmp_path_factory.mktemp("impatient"), "--set", "client_timeout_seconds=1") as url:
        yield url


def _connect(url: str, timeout: float = 20.0) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def _answer(connection: socket.socket) -> bytes:
    """What the server sends before closing (b"" for a plain close), read until it closes."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


class _Trickler:
    """Connections that send one byte a second and never finish their request."""

    def __init__(self, url: str, count: int, prefix: bytes, payload: bytes) -> None:
        self.connections = []
        for _ in range(count):
            connection = _connect(url)
            connection.sendall(prefix)
            self.connections.append(connection)
        self.payload = payload
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sent = 0
        while not self.stop.wait(1.0) and sent < len(self.payload) - 1:  # never the last byte
            for connection in self.connections:
                try:
                    connection.sendall(self.payload[sent:sent + 1])
                except OSError as err:
                    self.failures.append(type(err).__name__)
            sent += 1

    def __enter__(self) -> _Trickler:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for connection in self.connections:
            connection.close()


def _still_open(connection: socket.socket) -> bool:
    """Nothing was answered on it and the server has not closed it."""
    connection.setblocking(False)
    try:
        connection.recv(1, socket.MSG_PEEK)  # an answer, or b"" for a close
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        connection.setblocking(True)


def test_idle_and_trickling_clients_do_not_stall_a_well_behaved_one(patient):
    url = patient
    idle = [_connect(url) for _ in range(100)]
    partial_headers = _Trickler(url, 10, b"POST /invocations HTTP/1.1\r\nHost: endpoint\r\n",
                                b"Content-Type: text/csv\r\n" * 4)
    partial_bodies = _Trickler(url, 20, BODY_HEADERS, ROW)
    try:
        with partial_headers, partial_bodies:
            session = requests.Session()
            answers = [session.post(f"{url}/invocations", data=ROW, headers={"Content-Type": "text/csv"},
                                    timeout=5) for _ in range(300)]
            answers += [requests.post(f"{url}/invocations", data=ROW, headers={"Content-Type": "text/csv"},
                                      timeout=5) for _ in range(50)]  # a new connection each
            # Every misbehaving connection is still open: the answers above did not wait them out.
            open_now = [_still_open(c) for c in idle + partial_headers.connections + partial_bodies.connections]
        assert [a.status_code for a in answers] == [200] * len(answers)
        assert all(a.json() == {"predictions": [0]} for a in answers)
        assert all(open_now)
        assert partial_bodies.failures == [] and partial_headers.failures == []
    finally:
        for connection in idle:
            connection.close()


def test_a_request_whose_headers_stop_coming_is_cut_off(impatient):
    connection = _connect(impatient)
    connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: endpoint\r\nContent-")
    answer = _answer(connection)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"client_timeout_seconds" in answer


def test_a_body_shorter_than_its_content_length_is_408_not_500(impatient):
    connection = _connect(impatient)
    connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: endpoint\r\nContent-Type: text/csv\r\n"
                       b"Content-Length: 100\r\n\r\n" + ROW)
    answer = _answer(connection)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"x-model-version: " in answer.lower()
    assert requests.get(f"{impatient}/ping", timeout=5).status_code == 200


def test_a_connection_that_sends_nothing_is_closed(impatient):
    assert _answer(_connect(impatient)) == b""


def test_a_kept_alive_connection_is_reused_within_the_client_timeout(patient):
    parts = urlsplit(patient)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.connect()
    first_socket = connection.sock
    for _ in range(3):
        connection.request("POST", "/invocations", body=ROW, headers={"Content-Type": "text/csv"})
        reply = connection.getresponse()
        assert (reply.status, reply.read()) == (200, b'{"predictions": [0]}')
    assert connection.sock is first_socket
    connection.close()


def test_client_timeout_reaches_every_worker_of_a_later_version(pipeline):
    """A later deployment's client_timeout_seconds applies to the running endpoint after the switch."""
    url = _deploy(pipeline, "--set", "client_timeout_seconds=30")
    _deploy(pipeline, "--set", "client_timeout_seconds=1")
    pointer = json.loads(Path(".mlops/endpoints/iris-model/current.json").read_text())
    assert pointer["client_timeout_seconds"] == 1
    for _ in range(4):  # whichever worker accepts it
        connection = _connect(url)
        connection.sendall(b"POST /invocations HTTP/1.1\r\n")
        assert _answer(connection).startswith(b"HTTP/1.1 408 ")


@pytest.mark.unit
@pytest.mark.parametrize("value, expected", [
    ("0", "client_timeout_seconds: expected a number greater than 0"),
    ("-1", "client_timeout_seconds: expected a number greater than 0"),
    ('"Infinity"', "client_timeout_seconds: expected a number"),
])
def test_a_bad_client_timeout_is_refused_with_exit_2(pipeline, value, expected):
    result = pipeline("--set", f"client_timeout_seconds={value}")
    assert result.exit_code == 2
    assert expected in result.output


@pytest.mark.unit
def test_an_infinite_client_timeout_in_the_config_file_is_refused(pipeline):
    Path("c.json").write_text('{"client_timeout_seconds": Infinity}')
    result = pipeline("--config-file", "c.json")
    assert result.exit_code == 2
    assert "client_timeout_seconds: expected a finite number" in result.output and "got Infinity" in result.output


def test_a_model_without_a_fast_predict_path_is_served_by_scikit_learn_and_says_why_once_per_worker(pipeline):
    _deploy(pipeline, "--model-type", "random_forest", "--set", 'hyperparameters={"n_jobs": 2}',
            "--accuracy-threshold", "0.9", "--minimum-accuracy", "0.8")
    log = Path(".mlops/endpoints/iris-model/stable.log").read_text()
    lines = [line for line in log.splitlines() if "fast predict path not used" in line]
    assert len(lines) == 2  # endpoint_workers
    assert "n_jobs=2" in lines[0]


def test_gradient_boosting_is_served_by_the_fast_predict_path_and_matches_scikit_learn(pipeline):
    _deploy(pipeline, "--model-type", "gradient_boosting")
    assert pipeline.results()["phases"]["testing"]["test_summary"]["parity_mismatches"] == 0
    assert "fast predict path not used" not in Path(".mlops/endpoints/iris-model/stable.log").read_text()
