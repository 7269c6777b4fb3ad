"""The endpoint's HTTP contract, against a real gunicorn server deployed by the pipeline.

No test here changes the endpoint it calls: they call the session's default run's endpoint, and the
tests of the token's scheme share one more, deployed with a token.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import SharedRun, shared_endpoint


@pytest.fixture
def endpoint(default_run: SharedRun) -> str:
    return default_run.url


def _post(url: str, body, content_type: str = "text/csv", accept: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    return requests.post(f"{url}/invocations", data=body, headers=headers, timeout=10)


def test_ping_is_healthy_and_names_the_version(endpoint):
    reply = requests.get(f"{endpoint}/ping")
    assert reply.status_code == 200
    assert reply.json()["status"] == "healthy"
    assert reply.headers["X-Model-Version"] == reply.json()["version"]
    assert len(reply.headers["X-Model-Sha256"]) == 64


def test_csv_rows_in_json_out(endpoint):
    reply = _post(endpoint, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    assert reply.json() == {"predictions": [0, 2]}


@pytest.mark.parametrize("body", [[[5.1, 3.5, 1.4, 0.2]], {"instances": [[5.1, 3.5, 1.4, 0.2]]}])
def test_json_rows_or_instances(endpoint, body):
    assert _post(endpoint, json.dumps(body), "application/json").json() == {"predictions": [0]}


def test_csv_out_when_accept_asks_for_it(endpoint):
    reply = _post(endpoint, "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", accept="text/csv")
    assert reply.headers["Content-Type"].startswith("text/csv")
    assert reply.text == "0\n2\n"


@pytest.mark.parametrize("body, content_type, fragment", [
    ("1,2,3", "text/csv", "each row must have 4 features, got 3"),
    ("a,b,c,d", "text/csv", "rows must be numbers only"),
    ("nan,1,2,3", "text/csv", "NaN or infinity"),
    ("", "text/csv", "empty request body"),
    ("[[1, 2", "application/json", "malformed JSON"),
    ('[["a", 1, 2, 3]]', "application/json", "rows must be numbers only"),
    ("[[1" + "0" * 400 + ", 1, 1, 1]]", "application/json", "rows must be numbers only"),
])
def test_malformed_input_is_400_with_a_message_and_the_server_stays_up(endpoint, body, content_type, fragment):
    reply = _post(endpoint, body, content_type)
    assert reply.status_code == 400
    assert fragment in reply.text
    assert requests.get(f"{endpoint}/ping").status_code == 200


def test_unsupported_content_type_is_415(endpoint):
    assert _post(endpoint, "x", "application/x-npy").status_code == 415


def test_body_over_the_limit_is_413(endpoint):
    body = ("5.1,3.5,1.4,0.2\n" * 400_000).encode()  # ~6.4 MB, over SageMaker's 6 MB
    assert _post(endpoint, body).status_code == 413
    assert requests.get(f"{endpoint}/ping").status_code == 200


def test_sagemaker_runtime_path_is_served(endpoint):
    reply = requests.post(f"{endpoint}/endpoints/iris-model/invocations", data="5.1,3.5,1.4,0.2",
                          headers={"Content-Type": "text/csv"})
    assert reply.json() == {"predictions": [0]}


@pytest.mark.parametrize("accept, content_type", [
    ("text/plain, */*", "application/json"),
    ("text/csv, application/json;q=0.5", "text/csv"),
    ("text/csv;q=0.2, application/json", "application/json"),
])
def test_accept_lists_are_negotiated(endpoint, accept, content_type):
    reply = _post(endpoint, "5.1,3.5,1.4,0.2", accept=accept)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith(content_type)


def test_unacceptable_accept_is_406(endpoint):
    assert _post(endpoint, "5.1,3.5,1.4,0.2", accept="image/png").status_code == 406


def test_a_body_that_is_not_utf8_is_400(endpoint):
    reply = _post(endpoint, b"\xff\xfe1,2,3,4")
    assert reply.status_code == 400 and "not UTF-8" in reply.text


def _chunks(data: bytes, size: int = 64 * 1024):
    """A generator body: requests sends it chunked, with no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_chunked_body_is_read(endpoint):
    reply = requests.post(f"{endpoint}/invocations", data=_chunks(b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", 8),
                          headers={"Content-Type": "text/csv"}, timeout=10)
    assert "Content-Length" not in reply.request.headers
    assert reply.status_code == 200 and reply.json() == {"predictions": [0, 2]}


def test_chunked_body_over_the_limit_is_413(endpoint):
    body = ("5.1,3.5,1.4,0.2\n" * 400_000).encode()  # ~6.4 MB, over SageMaker's 6 MB
    reply = requests.post(f"{endpoint}/invocations", data=_chunks(body), headers={"Content-Type": "text/csv"},
                          timeout=10)
    assert reply.status_code == 413
    assert requests.get(f"{endpoint}/ping").status_code == 200


@pytest.mark.parametrize("body", ["[" * 100_000, '{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                  "[" * 500 + "1" + "]" * 500])
def test_deeply_nested_json_is_400_with_a_message(endpoint, body):
    reply = _post(endpoint, body, "application/json")
    assert reply.status_code == 400
    assert reply.json()["title"]
    assert requests.get(f"{endpoint}/ping").status_code == 200


TOKEN = "tok-5e1d0c9b8a7f6e"


@pytest.fixture(scope="module")
def guarded_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with shared_endpoint(tmp_path_factory.mktemp("guarded"), env={"MLOPS_ENDPOINT_TOKEN": TOKEN}) as url:
        yield url


def _post_with_authorization(url: str, authorization: str) -> requests.Response:
    return requests.post(f"{url}/invocations", data="5.1,3.5,1.4,0.2",
                         headers={"Content-Type": "text/csv", "Authorization": authorization}, timeout=10)


def test_the_bearer_scheme_is_matched_case_insensitively(guarded_endpoint):
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        assert _post_with_authorization(guarded_endpoint, f"{scheme} {TOKEN}").status_code == 200, scheme


@pytest.mark.parametrize("authorization", [TOKEN, f"Basic {TOKEN}", f"Bearer{TOKEN}", "Bearer ", "Bearer wrong"])
def test_a_token_without_the_bearer_scheme_or_a_wrong_one_is_401(guarded_endpoint, authorization):
    reply = _post_with_authorization(guarded_endpoint, authorization)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
