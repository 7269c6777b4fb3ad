"""The local endpoint's HTTP app: SageMaker's serving contract over the same inference hooks.

An ASGI app (falcon), run by gunicorn with the endpoint's own uvicorn worker
(``pipeline.endpoint_worker``; ``pipeline.backends.local`` starts it)::

    MLOPS_MODEL_POINTER=.mlops/endpoints/iris-model/current.json \\
        gunicorn -c python:pipeline.gunicorn_conf 'pipeline.serving:create_app()'

The pointer file names the version to serve, its model directory, the model's
sha256 and the version's server settings (``max_payload_mb``,
``client_timeout_seconds``). A worker reads it when it starts; a gunicorn HUP
starts fresh workers, which read the pointer again. That is how a stable
endpoint switches versions without closing its listening socket, so no
request is dropped.

Routes:
- ``GET /ping``: 200 only when the model is loaded and a probe prediction succeeds.
- ``POST /invocations`` and ``POST /endpoints/<name>/invocations`` (the path a boto3
  ``sagemaker-runtime`` client uses with ``endpoint_url``): CSV or JSON in (rows by
  position, or MLflow's payloads with named columns), JSON or CSV out per ``Accept``;
  probabilities with ``X-Probabilities: true`` (or ``Accept: application/json;
  probabilities=true``, the spelling that also reaches SageMaker's container); a query
  string (``?probabilities=true``) is a 400 saying so. Client mistakes are 4xx and the worker
  stays up. On the boto3 path errors take the shape
  SageMaker's runtime gives them (``x-amzn-ErrorType``, ``Message``; the model's refusals
  a ``ModelError`` with ``OriginalStatusCode`` and ``OriginalMessage``), so botocore's
  ``ClientError`` carries the message; a name other than this endpoint's is a 404.
  An answer carries its inference id (``X-Inference-Id``), the key of its captured record.
- ``GET /metrics``: Prometheus text format, summed over the workers
  (``pipeline.endpoint_telemetry``; the endpoint's token is asked for, as on /invocations).
Every response carries ``X-Model-Version`` and ``X-Model-Sha256`` (``Endpoint.headers``:
the worker sends them with every response, its own 400 and 408 included).

Why the predictions run on the event loop rather than in a thread: one costs
10-300 microseconds, less than handing it to a thread would; a slow client,
meanwhile, costs the worker nothing, because reading its request is the event
loop's job and not a blocked thread's.
"""
from __future__ import annotations

import gc
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi
import numpy as np

from pipeline.container import inference
from pipeline.endpoint_telemetry import EndpointTelemetry
from pipeline.serving_contract import INFERENCE_ID_HEADER, SHA_HEADER, TOKEN_ENV, VERSION_HEADER

POINTER_ENV = "MLOPS_MODEL_POINTER"
POINTER_WAIT_ENV = "MLOPS_POINTER_WAIT"
DEFAULT_MAX_PAYLOAD_MB = 6.0
DEFAULT_CLIENT_TIMEOUT_SECONDS = 5.0
# Error answers given before the request body was read close the connection: the rest of the
# body would otherwise have to be read (and waited for) before the next request on it.
_CLOSE = {"Connection": "close"}
# Probabilities on request. SageMaker forwards no header of the caller's own, so the container reads the
# same switch from the Accept header instead (inference.PROBABILITIES_PARAMETER); this one is for HTTP clients.
PROBABILITIES_HEADER = "X-Probabilities"
SAGEMAKER_RUNTIME_ROUTE = "/endpoints/{name}/invocations"
ERROR_TYPE_HEADER = "x-amzn-ErrorType"  # botocore takes an error's code from it


ModelIntegrityError = inference.ModelIntegrityError


def read_pointer(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def verified_model_dir(spec: dict[str, Any]) -> str:
    """Refuse a model whose bytes differ from what training recorded for this version."""
    inference.verify_model_file(spec["model_dir"], spec["sha256"], use="serve")
    return spec["model_dir"]


def token_matches(authorization: str | None, token_sha256: str) -> bool:
    """``Authorization: Bearer <token>`` with the token whose sha256 is ``token_sha256``.

    The scheme is matched case-insensitively (RFC 7235 section 2.1); a header without one is
    refused. Hashes are compared in constant time, so the answer's timing says nothing about how
    much of a guess was right.
    """
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    supplied = credentials.strip(" ")
    if scheme.lower() != "bearer" or not supplied:
        return False
    return hmac.compare_digest(hashlib.sha256(supplied.encode()).hexdigest(), token_sha256)


class _Model:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.endpoint: str | None = spec.get("endpoint")
        self.version = spec["version"]
        self.sha256 = spec["sha256"]
        self.model = inference.model_fn(spec["model_dir"], spec["sha256"], spec.get("input_schema"))
        width = int(getattr(self.model, "n_features_in_", 1))
        self.probe = np.zeros((1, width))

    def healthy(self) -> bool:
        try:
            inference.predict_fn(self.probe, self.model)
            return True
        except Exception:
            return False


class _Ping:
    def __init__(self, model: _Model) -> None:
        self.model = model

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        healthy = self.model.healthy()
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"status": "healthy" if healthy else "unhealthy",
                                "version": self.model.version, "sha256": self.model.sha256})


def _has_body(req: falcon.asgi.Request) -> bool:
    return bool(req.content_length) or req.get_header("Transfer-Encoding") is not None


def _switch(header: str, value: str | None) -> bool:
    if value is None or value.strip().lower() == "false":
        return False
    if value.strip().lower() == "true":
        return True
    raise inference.BadRequestError(f"{header}: expected true or false, got {value[:40]!r}")


def _query_refused(req: falcon.asgi.Request) -> str:
    """A query string is refused rather than ignored: ``?probabilities=true`` would otherwise answer without
    probabilities and without saying why (SageMaker forwards no query string, so the switches are headers)."""
    names = ", ".join(repr(name) for name in req.params) or repr(req.query_string[:40])
    return (f"query parameters are not read here (got {names}): ask for probabilities with the header "
            f"{PROBABILITIES_HEADER}: true, or Accept: application/json; {inference.PROBABILITIES_PARAMETER}=true")


class _Refused(falcon.HTTPError):
    """A request the inference hooks refused: on the boto3 path, what SageMaker calls a ``ModelError``."""

    def __init__(self, err: inference.InferenceError) -> None:
        super().__init__(falcon.code_to_http_status(err.status_code), title=str(err))
        self.error_name = type(err).__name__


class _ErrorBodies:
    """Error bodies. On the boto3 path, as SageMaker's runtime answers them, so botocore's ``ClientError`` carries
    the message (``Error.Message``) and, for the model's refusals, ``OriginalStatusCode`` and
    ``OriginalMessage``: status 424 and ``x-amzn-ErrorType: ModelError``, the original message being the
    body SageMaker's container answers with (``serve.py``). A request refused before the model sees it
    (another endpoint's name, a body over the limit) keeps its status, as a ``ValidationError``; a missing
    token is an ``AccessDeniedException``. Every other path keeps falcon's error body (``{"title": ...}``),
    in JSON whatever the Accept header asked for: an answer in CSV (or none, falcon's default for an Accept
    it cannot serialise to) would hide the message from a client that asked for CSV.
    """

    def __init__(self, version: str) -> None:
        self.version = version

    def __call__(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, error: falcon.HTTPError) -> None:
        if req.uri_template != SAGEMAKER_RUNTIME_ROUTE:
            resp.content_type = falcon.MEDIA_JSON
            resp.data = error.to_json()
            return
        status = error.status_code
        message = error.title or str(status)
        if isinstance(error, _Refused) or status >= 500:
            original = inference.error_body(status, message, getattr(error, "error_name", "InternalServerError"))
            kind = "client" if status < 500 else "server"
            body: dict[str, Any] = {
                "Message": f'Received {kind} error ({status}) from {self.version} with message "{original}".',
                "OriginalStatusCode": status, "OriginalMessage": original}
            code = "ModelError"
            resp.status = falcon.code_to_http_status(424)
        else:
            body = {"Message": message}
            code = "AccessDeniedException" if status == 401 else "ValidationError"
        resp.set_header(ERROR_TYPE_HEADER, code)
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps(body)


class _Invocations:
    def __init__(self, model: _Model, max_payload_bytes: int, token_sha256: str | None,
                 telemetry: EndpointTelemetry) -> None:
        self.model = model
        self.max_payload_bytes = max_payload_bytes
        self.token_sha256 = token_sha256
        self.telemetry = telemetry

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str | None = None) -> None:
        if self.token_sha256 is not None and not token_matches(req.get_header("Authorization"), self.token_sha256):
            raise falcon.HTTPUnauthorized(title="missing or wrong token", challenges=["Bearer"],
                                          headers=_CLOSE if _has_body(req) else None)
        if name is not None and self.model.endpoint is not None and name != self.model.endpoint:
            raise falcon.HTTPNotFound(title=f"endpoint {name!r} is not served here: this is endpoint "
                                            f"{self.model.endpoint!r}", headers=_CLOSE if _has_body(req) else None)
        length = req.content_length
        if length is not None and length > self.max_payload_bytes:
            raise falcon.HTTPContentTooLarge(
                title=f"request body of {length} bytes is over the limit of {self.max_payload_bytes} bytes",
                headers=_CLOSE)
        # Whatever the framing (Content-Length or chunked), at most the limit + 1 bytes are read. How
        # long the body may take to arrive is the worker's business (client_timeout_seconds).
        body = await req.stream.read(self.max_payload_bytes + 1)
        if len(body) > self.max_payload_bytes:
            raise falcon.HTTPContentTooLarge(title=f"request body is over the limit of {self.max_payload_bytes} bytes",
                                             headers=_CLOSE)
        try:
            if req.query_string:
                raise inference.BadRequestError(_query_refused(req))
            switch = req.get_header(PROBABILITIES_HEADER)
            probabilities = _switch(PROBABILITIES_HEADER, switch)
            if switch is not None and not probabilities and \
                    inference.accept_asks_for_probabilities(req.get_header("Accept")):
                raise inference.BadRequestError(f"{PROBABILITIES_HEADER}: false contradicts Accept's "
                                                f"{inference.PROBABILITIES_PARAMETER}=true: send one of them")
            rows = inference.input_fn(body, req.content_type or "")
            prediction = inference.predict_fn(rows, self.model.model)
            text, content_type = inference.output_fn(prediction, req.get_header("Accept"), probabilities)
        except inference.InferenceError as err:
            if isinstance(err, inference.BadRequestError):  # malformed rows: evidence of drift for `monitor`
                self.telemetry.refused(req, body)
            raise _Refused(err) from None
        except UnicodeDecodeError:
            raise _Refused(inference.BadRequestError("request body is not UTF-8 text")) from None
        resp.content_type = content_type
        resp.text = text
        resp.set_header(INFERENCE_ID_HEADER, self.telemetry.answered(req, body, prediction.labels, text,
                                                                   content_type))


class _Metrics:
    def __init__(self, telemetry: EndpointTelemetry, token_sha256: str | None) -> None:
        self.telemetry = telemetry
        self.token_sha256 = token_sha256

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self.token_sha256 is not None and not token_matches(req.get_header("Authorization"), self.token_sha256):
            raise falcon.HTTPUnauthorized(title="missing or wrong token", challenges=["Bearer"])
        exposition = self.telemetry.exposition()
        if exposition is None:
            raise falcon.HTTPNotFound(title="metrics are off: this server was started without "
                                            "PROMETHEUS_MULTIPROC_DIR")
        resp.data, resp.content_type = exposition


@dataclass(frozen=True)
class ServerSettings:
    """What the worker running the app needs to know of the version it serves."""

    headers: tuple[tuple[str, str], ...]  # sent with every response, the worker's own included
    client_timeout_seconds: float
    telemetry: EndpointTelemetry | None = None  # counts the worker's own 408s


class Endpoint(falcon.asgi.App):
    """The falcon app, carrying the settings of the version it serves for the worker."""

    settings: ServerSettings


def _token_sha256(spec: dict[str, Any]) -> str | None:
    """The endpoint's token hash, if it has one (written by each deployment and rollback)."""
    auth_file = spec.get("auth_file")
    if auth_file and Path(auth_file).is_file():
        return json.loads(Path(auth_file).read_text()).get("token_sha256")
    token = os.environ.get(TOKEN_ENV)
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def _wait_for_pointer(path: Path) -> dict[str, Any]:
    """A prestarted server does its imports while the model is still training; its workers wait
    here until the deployment writes the pointer (at most ``MLOPS_POINTER_WAIT`` seconds)."""
    deadline = time.monotonic() + float(os.environ.get(POINTER_WAIT_ENV, "0"))
    while not path.is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    return read_pointer(path)


def _positive(spec: dict[str, Any], key: str, default: float) -> float:
    value = float(spec.get(key, default))
    if not (0 < value < float("inf")):
        raise ValueError(f"pointer key {key}: expected a finite number greater than 0, got {value}")
    return value


def create_app(pointer: str | None = None) -> Endpoint:
    """Load the pointed-to model (checking its sha256) and build the ASGI app."""
    spec = _wait_for_pointer(Path(pointer or os.environ[POINTER_ENV]))
    began = time.perf_counter()
    model = _Model(spec)
    load_seconds = time.perf_counter() - began
    max_payload_bytes = int(_positive(spec, "max_payload_mb", DEFAULT_MAX_PAYLOAD_MB) * 1024 * 1024)
    telemetry = EndpointTelemetry.from_spec(spec, getattr(model.model, "classes_", ()), load_seconds)
    app = Endpoint()
    app.set_error_serializer(_ErrorBodies(model.version))
    app.settings = ServerSettings(
        headers=((VERSION_HEADER, model.version), (SHA_HEADER, model.sha256)),
        client_timeout_seconds=_positive(spec, "client_timeout_seconds", DEFAULT_CLIENT_TIMEOUT_SECONDS),
        telemetry=telemetry)
    app.add_route("/ping", _Ping(model))
    token_sha256 = _token_sha256(spec)
    invocations = _Invocations(model, max_payload_bytes, token_sha256, telemetry)
    app.add_route("/invocations", invocations)
    app.add_route("/endpoints/{name}/invocations", invocations)
    app.add_route("/metrics", _Metrics(telemetry, token_sha256))
    # Refused invocations are counted too, then answered as falcon would.
    app.add_error_handler(falcon.HTTPError, telemetry.count_http_error)
    app.add_error_handler(Exception, telemetry.count_exception)
    # Everything loaded from here on lives as long as the worker: keep the collector
    # from scanning it, which otherwise shows up as tens of milliseconds of p99.
    gc.collect()
    gc.freeze()
    return app
