"""The worker's hot path for ``POST /invocations`` gives, byte for byte, the answers falcon's path gives.

In process, without a server: the endpoint's app is built by ``create_app`` from a pointer as the local backend
writes one, and two ``EndpointProtocol`` connections feed it the same raw requests, one with the hot path
(``ServerSettings.hot_path``) and one without. Whatever the request -- answered, refused, declined by the hot
path -- the two answers and the records captured for them are the same but for the ids and the time. The
parts the hot path is made of are held to the general code they stand in for: orjson's reading of JSON bodies
to json's, the JSON answer's text to ``json.dumps``', a model's ``predictor`` to ``predict_fn``.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
from email.utils import formatdate
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.container import inference, payloads

pytestmark = pytest.mark.unit

NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = [5.1, 3.5, 1.4, 0.2]


# --------------------------------------------------------------------------- an app and two connections to it
def _pointer(tmp_path: Path, **extra: Any) -> Path:
    from sklearn.datasets import load_iris

    from pipeline.container import train as recipe

    frame = load_iris(as_frame=True).frame
    features, labels = frame.drop(columns=["target"]), frame["target"]
    model = recipe.build_estimator("logistic_regression", {}, 42).fit(features, labels)
    path = recipe.save_model(model, tmp_path / "model", features)
    spec = {"endpoint": "iris-model", "version": "v-hot", "model_dir": str(tmp_path / "model"),
            "sha256": path.with_name(path.name + ".sha256").read_text().strip(),
            "input_schema": recipe.input_schema(features), "capture_dir": str(tmp_path / "capture"),
            "capture_percent": 100, **extra}
    pointer = tmp_path / "current.json"
    pointer.write_text(json.dumps(spec))
    return pointer


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


def _connection(app: Any, hot: bool) -> tuple[Any, _Transport]:
    """An ``EndpointProtocol`` configured as ``EndpointWorker._serve`` configures it, on a fake socket."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from pipeline.serving.worker import EndpointProtocol

    settings = app.settings
    config = Config(app=app, http=EndpointProtocol, lifespan="off", proxy_headers=False, server_header=False,
                    access_log=False, log_config=None, headers=list(settings.headers))
    config.load()
    config.client_timeout_seconds = settings.client_timeout_seconds
    config.telemetry = settings.telemetry
    config.headers_per_response = settings.headers_per_response
    config.hot_path = settings.hot_path if hot else None
    config.hot_path_max_bytes = settings.hot_path_max_bytes
    config.timeout_keep_alive = settings.client_timeout_seconds
    state = ServerState()
    state.default_headers = [(b"date", formatdate(0, usegmt=True).encode()), *config.encoded_headers]
    protocol = EndpointProtocol(config=config, server_state=state, app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _exchange(protocol: Any, transport: _Transport, request: bytes) -> bytes:
    answered = protocol.server_state.total_requests
    protocol.data_received(request)
    for _ in range(1000):
        if protocol.server_state.total_requests > answered or transport.closed:
            break
        await asyncio.sleep(0)
    answer = bytes(transport.data)
    transport.data.clear()
    return answer


def _normalised(answer: bytes) -> bytes:
    return re.sub(rb"x-inference-id: [0-9a-f]{32}", b"x-inference-id: ID", answer)


def _request(body: bytes, content_type: str | None = "application/json", *headers: str,
             line: str = "POST /invocations HTTP/1.1") -> bytes:
    head = [line, "Host: endpoint", f"Content-Length: {len(body)}"]
    if content_type is not None:
        head.append(f"Content-Type: {content_type}")
    return ("\r\n".join([*head, *headers]) + "\r\n\r\n").encode() + body


def _chunked(body: bytes) -> bytes:
    return (b"POST /invocations HTTP/1.1\r\nHost: endpoint\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")


REQUESTS = {
    "json row": _request(json.dumps([ROW]).encode()),
    "json rows": _request(json.dumps([ROW, [6.7, 3.0, 5.2, 2.3]]).encode()),
    "json one flat row": _request(json.dumps(ROW).encode()),
    "inputs": _request(json.dumps({"inputs": [ROW]}).encode()),
    "instances": _request(json.dumps({"instances": [ROW]}).encode()),
    "named columns": _request(json.dumps({"dataframe_split": {"columns": NAMES, "data": [ROW]}}).encode()),
    "csv": _request(b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", "text/csv"),
    "csv with header row": _request(("\n".join([",".join(NAMES), "5.1,3.5,1.4,0.2"])).encode(), "text/csv"),
    "accept csv": _request(b"5.1,3.5,1.4,0.2", "text/csv", "Accept: text/csv"),
    "accept list": _request(b"5.1,3.5,1.4,0.2", "text/csv", "Accept: text/plain, text/csv;q=0.5"),
    "probabilities by accept": _request(b"5.1,3.5,1.4,0.2", "text/csv", "Accept: application/json; probabilities=true"),
    "probabilities by header": _request(b"5.1,3.5,1.4,0.2", "text/csv", "X-Probabilities: true"),
    "probabilities contradicted": _request(b"5.1,3.5,1.4,0.2", "text/csv", "X-Probabilities: false",
                                           "Accept: application/json; probabilities=true"),
    "client inference id": _request(b"5.1,3.5,1.4,0.2", "text/csv", "X-Amzn-SageMaker-Inference-Id: client-7"),
    "malformed inference id": _request(b"5.1,3.5,1.4,0.2", "text/csv", "X-Amzn-SageMaker-Inference-Id:  lead"),
    "test traffic": _request(b"5.1,3.5,1.4,0.2", "text/csv", "X-Mlops-Test-Traffic: 1"),
    "content type twice": _request(b"5.1,3.5,1.4,0.2", "text/csv", "Content-Type: application/json"),
    "http/1.0": _request(b"5.1,3.5,1.4,0.2", "text/csv", line="POST /invocations HTTP/1.0"),
    "connection close": _request(b"5.1,3.5,1.4,0.2", "text/csv", "Connection: close"),
    "chunked": _chunked(b"5.1,3.5,1.4,0.2\n"),
    "json NaN": _request(b"[[NaN, 1, 2, 3]]"),
    "json huge integer": _request(b"[[1" + b"0" * 400 + b", 1, 1, 1]]"),
    "json bool": _request(b"[[true, 1, 2, 3]]"),
    "json ragged": _request(b"[[1, 2, 3, 4], [1, 2]]"),
    "json malformed": _request(b"[[1, 2"),
    "json BOM": _request(b"\xef\xbb\xbf[[5.1, 3.5, 1.4, 0.2]]"),
    "wrong width": _request(b"[[1, 2, 3]]"),
    "csv NaN": _request(b"nan,1,2,3", "text/csv"),
    "not utf-8": _request(b"\xff\xfe1,2,3,4", "text/csv"),
    "empty": _request(b"", "text/csv"),
    "no content type": _request(b"5.1,3.5,1.4,0.2", None),
    "unsupported content type": _request(b"x", "application/x-npy"),
    "unacceptable accept": _request(b"5.1,3.5,1.4,0.2", "text/csv", "Accept: image/png"),
    "query string": _request(b"5.1,3.5,1.4,0.2", "text/csv", line="POST /invocations?probabilities=true HTTP/1.1"),
    "over the limit": _request(b"5.1,3.5,1.4,0.2\n" * 80_000, "text/csv"),
    "boto3 route": _request(b"5.1,3.5,1.4,0.2", "text/csv", line="POST /endpoints/iris-model/invocations HTTP/1.1"),
    "ping": b"GET /ping HTTP/1.1\r\nHost: endpoint\r\n\r\n",
}


def _answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> tuple[dict[str, bytes], ...]:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("MLOPS_ENDPOINT_TOKEN", raising=False)
    from pipeline.serving.app import create_app

    async def run() -> tuple[dict[str, bytes], ...]:
        app = create_app(str(_pointer(tmp_path, max_payload_mb=1.0, **extra)))
        found: tuple[dict[str, bytes], ...] = ({}, {})
        for answers, hot in zip(found, (True, False)):
            for name, request in REQUESTS.items():
                protocol, transport = _connection(app, hot)  # a connection each: some answers close theirs
                answers[name] = _normalised(await _exchange(protocol, transport, request))
        app.settings.telemetry.close()
        return found

    return asyncio.run(run())


def test_the_hot_path_answers_as_falcons_path_does(tmp_path, monkeypatch):
    hot, falcon = _answers(tmp_path, monkeypatch)
    assert {name: answer for name, answer in hot.items() if answer != falcon[name]} == {}
    assert hot["json row"].startswith(b"HTTP/1.1 200 OK\r\n") and hot["json row"].endswith(b'{"predictions": [0]}')
    assert b"connection: close" in hot["http/1.0"] and b"connection: close" in hot["connection close"]
    for name in ("json NaN", "json huge integer", "json bool", "json ragged", "json malformed", "json BOM"):
        assert hot[name].startswith(b"HTTP/1.1 400 ")


def test_during_a_split_the_hot_path_names_the_version_that_answered(tmp_path, monkeypatch):
    candidate = json.loads(_pointer(tmp_path / "candidate").read_text())
    hot, falcon = _answers(tmp_path, monkeypatch, split={"mode": "split", "percent": 0, "candidate": candidate})
    assert {name: answer for name, answer in hot.items() if answer != falcon[name]} == {}
    assert b"x-model-version: v-hot\r\n" in hot["json row"]


def test_the_captured_records_are_the_same_but_for_ids_and_time(tmp_path, monkeypatch):
    _answers(tmp_path, monkeypatch)
    records = [json.loads(line) for path in sorted((tmp_path / "capture").rglob("*.jsonl"))
               for line in path.read_text().splitlines()]
    for record in records:
        record["eventMetadata"] = {key: value for key, value in record["eventMetadata"].items()
                                   if key not in ("eventId", "inferenceId", "inferenceTime")}
    half = len(records) // 2
    assert half > 10 and records[:half] == records[half:]  # the hot connection's requests, then falcon's


# --------------------------------------------------------------------------- the parts, against what they stand for
def _general(body: bytes | str, content_type: str = "application/json") -> Any:
    saved, payloads._orjson_loads = payloads._orjson_loads, None
    try:
        return payloads.decode_body(body, content_type)
    except Exception as err:
        return type(err), str(err)
    finally:
        payloads._orjson_loads = saved


def _number(generator: random.Random) -> str:
    kind = generator.randrange(6)
    if kind == 0:
        return str(generator.randrange(-10**30, 10**30))
    if kind == 1:
        return repr(generator.uniform(-1e6, 1e6))
    if kind == 2:
        return f"{generator.uniform(-10, 10):.{generator.randrange(1, 25)}e}{generator.randrange(-330, 320):+d}"
    if kind == 3:
        return repr(np.float64(generator.getrandbits(64) / 2**generator.randrange(1, 80)))
    if kind == 4:
        return "".join(generator.choice("0123456789") for _ in range(generator.randrange(1, 40))).lstrip("0") or "0"
    return f"{generator.randrange(0, 10**9)}.{generator.randrange(0, 10**9):09d}e{generator.randrange(-20, 20)}"


@pytest.mark.skipif(payloads._orjson_loads is None, reason="orjson is not installed")
def test_orjson_reads_json_bodies_to_the_rows_json_reads():
    generator = random.Random(5)
    for _ in range(3000):
        width = generator.randrange(1, 6)
        rows = [[_number(generator) for _ in range(width)] for _ in range(generator.randrange(1, 4))]
        body = ("[" + ", ".join("[" + ", ".join(row) + "]" for row in rows) + "]").encode()
        general = _general(body)
        if isinstance(general, tuple):  # an infinity, say: refused the same way, orjson or not
            assert payloads._plain_json_rows(body) is None, body
            with pytest.raises(general[0], match=re.escape(general[1])):
                payloads.decode_body(body, "application/json")
        else:
            fast = payloads.decode_body(body, "application/json")
            assert fast.dtype == general.dtype and np.array_equal(fast, general), body


@pytest.mark.parametrize("body", [b"[[1, 2], [3]]", b"[]", b"[[]]", b"{}", b'{"inputs": [[1]], "x": 1}', b"[1, [2]]",
                                  b'[["1", 2]]', b"[[null]]", b"[[1e400]]", b"[[-Infinity]]", b"[{\"a\": 1}]", b"  ",
                                  b"[[1, 2]] x", b"\"text\"", b"[[18446744073709551616, 1]]"])
def test_bodies_orjson_declines_or_reads_are_read_as_json_reads_them(body):
    fast = payloads.decode_body(body, "application/json") if not isinstance(_general(body), tuple) else None
    general = _general(body)
    if isinstance(general, tuple):
        with pytest.raises(general[0], match=re.escape(general[1])):
            payloads.decode_body(body, "application/json")
    else:
        assert np.array_equal(fast.rows if hasattr(fast, "rows") else fast,
                              general.rows if hasattr(general, "rows") else general)


@pytest.mark.parametrize("labels", [np.array([0, 2, 1]), np.array([7], dtype=np.uint8), np.array([-3, 10**12]),
                                    np.array(["a", "b,c"]), np.array([True, False]), np.array([0.5, 2.0]),
                                    np.array([], dtype=np.int64)])
def test_the_json_answer_is_json_dumps_text(labels):
    assert inference.output_fn(labels, "application/json")[0] == json.dumps({"predictions": labels.tolist()})


def test_a_models_predictor_is_its_predict_fn(tmp_path):
    pointer = json.loads(_pointer(tmp_path).read_text())
    model = inference.model_fn(pointer["model_dir"], pointer["sha256"], pointer["input_schema"])
    rows = np.random.default_rng(3).normal(4, 2, (200, 4))
    predict = inference.predictor(model)
    for batch in (rows[:1], rows[:7], rows):
        assert np.array_equal(predict(batch).labels, inference.predict_fn(batch, model).labels)
    named = payloads.NamedRows(tuple(reversed(NAMES)), rows[:, ::-1])
    assert np.array_equal(predict(named).labels, inference.predict_fn(named, model).labels)
    with pytest.raises(inference.BadRequestError, match="each row must have 4 features, got 3"):
        predict(rows[:, :3])
