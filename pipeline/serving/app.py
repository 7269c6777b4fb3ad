"""The local endpoint's HTTP app: SageMaker's serving contract over the same inference hooks.

An ASGI app (falcon), run by gunicorn with the endpoint's own uvicorn worker
(``pipeline.serving.worker``; ``pipeline.backends.local.backend`` starts it)::

    MLOPS_MODEL_POINTER=.mlops/endpoints/iris-model/current.json \\
        gunicorn -c python:pipeline.serving.gunicorn_conf 'pipeline.serving.app:create_app()'

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
  An answer carries its inference id (``X-Inference-Id``), the key of its captured record: the
  client's own when it sent one (``X-Amzn-SageMaker-Inference-Id``, boto3's ``InferenceId=``; 1 to 64
  printable ASCII characters, the first not a space, as SageMaker takes it: another is a 400), else the
  endpoint's. As SageMaker does, the captured record's ``inferenceId`` is then the client's and its
  ``eventId`` the endpoint's, so labels keyed by the client's ids (``monitor --labels``) find them.
- ``GET /metrics``: Prometheus text format, summed over the workers
  (``pipeline.serving.telemetry``; the endpoint's token is asked for, as on /invocations).
Every response carries ``X-Model-Version`` and ``X-Model-Sha256`` (``Endpoint.headers``:
the worker sends them with every response, its own 400 and 408 included).

Why the predictions run on the event loop rather than in a thread: one costs
10-300 microseconds, less than handing it to a thread would; a slow client,
meanwhile, costs the worker nothing, because reading its request is the event
loop's job and not a blocked thread's.
"""
from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi

from pipeline.container import inference
from pipeline.container.model_files import verify_model_file
from pipeline.serving.contract import POINTER_ENV, POINTER_WAIT_ENV, SAGEMAKER_RUNTIME_ROUTE, TOKEN_ENV, token_sha256
from pipeline.serving.invocations import Invocations, Refused, token_matches
from pipeline.serving.routing import CountedBy, Router, ServedModel, VersionHeaders, router_for
from pipeline.serving.telemetry import EndpointTelemetry, answered_status

DEFAULT_MAX_PAYLOAD_MB = 6.0
DEFAULT_CLIENT_TIMEOUT_SECONDS = 5.0
ERROR_TYPE_HEADER = "x-amzn-ErrorType"  # botocore takes an error's code from it


ModelIntegrityError = inference.ModelIntegrityError


def read_pointer(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def verified_model_dir(spec: dict[str, Any]) -> str:
    """Refuse a model whose bytes differ from what training recorded for this version."""
    verify_model_file(spec["model_dir"], spec["sha256"], use="serve")
    return spec["model_dir"]


class _Ping:
    """Health of the serving version (which answers every ping); during a bake, the split and the candidate's
    health too, so a deployment can verify that every worker routes as it was told."""

    def __init__(self, model: ServedModel, router: Router | None = None) -> None:
        self.model = model
        self.router = router

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        healthy = self.model.healthy()
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.content_type = falcon.MEDIA_JSON
        body: dict[str, Any] = {"status": "healthy" if healthy else "unhealthy",
                                "version": self.model.version, "sha256": self.model.sha256}
        if self.router is not None:
            body["split"] = self.router.describe()
        resp.text = json.dumps(body)


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
        model = getattr(req.context, "model", None)
        version = model.version if model is not None else self.version
        if req.uri_template != SAGEMAKER_RUNTIME_ROUTE:
            resp.content_type = falcon.MEDIA_JSON
            resp.data = error.to_json()
            return
        status = error.status_code
        message = error.title or str(status)
        answered, _ = answered_status(req, status, isinstance(error, Refused))
        if answered != status:
            original = inference.error_body(status, message, getattr(error, "error_name", "InternalServerError"))
            kind = "client" if status < 500 else "server"
            body: dict[str, Any] = {
                "Message": f'Received {kind} error ({status}) from {version} with message "{original}".',
                "OriginalStatusCode": status, "OriginalMessage": original}
            code = "ModelError"
            resp.status = falcon.code_to_http_status(answered)
        else:
            body = {"Message": message}
            code = "AccessDeniedException" if status == 401 else "ValidationError"
        resp.set_header(ERROR_TYPE_HEADER, code)
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps(body)


class _Metrics:
    def __init__(self, telemetry: EndpointTelemetry, token_sha256: str | None,
                 also: EndpointTelemetry | None = None) -> None:
        self.telemetry = telemetry
        self.token_sha256 = token_sha256
        self.also = also  # during a bake, the candidate's: its counts are written out first too

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if self.token_sha256 is not None and not token_matches(req.get_header("Authorization"), self.token_sha256):
            raise falcon.HTTPUnauthorized(title="missing or wrong token", challenges=["Bearer"])
        if self.also is not None and self.also.metrics is not None:
            self.also.metrics.flush()
        exposition = self.telemetry.exposition()
        if exposition is None:
            raise falcon.HTTPNotFound(title="metrics are off: this server was started without "
                                            "PROMETHEUS_MULTIPROC_DIR")
        resp.data, resp.content_type = exposition


@dataclass(frozen=True)
class ServerSettings:
    """What the worker running the app needs to know of the version it serves."""

    headers: tuple[tuple[str, str], ...]  # the serving version's: on the worker's own answers (400, 408)
    client_timeout_seconds: float
    telemetry: EndpointTelemetry | None = None  # counts the worker's own 408s
    # During a split the app names the answering version on each response, and the worker adds no
    # version headers of its own to the app's responses (they would name the serving version twice).
    headers_per_response: bool = False
    # The worker's hot path: POST /invocations answered without the framework (pipeline.serving.invocations).
    hot_path: Callable[[list[tuple[bytes, bytes]], bytes, dict[str, Any]], tuple[bytes, bytes] | None] | None = None
    hot_path_max_bytes: int = 0  # a body over this is falcon's to refuse (413)


class Endpoint(falcon.asgi.App):
    """The falcon app, carrying the settings of the version it serves for the worker."""

    settings: ServerSettings


def _token_sha256(spec: dict[str, Any]) -> str | None:
    """The endpoint's token hash, if it has one (written by each deployment and rollback)."""
    auth_file = spec.get("auth_file")
    if auth_file and Path(auth_file).is_file():
        return json.loads(Path(auth_file).read_text()).get("token_sha256")
    token = os.environ.get(TOKEN_ENV)
    return token_sha256(token) if token else None


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
    """Load the pointed-to model (checking its sha256), and during a bake the candidate beside it; build the app."""
    spec = _wait_for_pointer(Path(pointer or os.environ[POINTER_ENV]))
    model = ServedModel(spec)
    router = router_for(spec, model)
    max_payload_bytes = int(_positive(spec, "max_payload_mb", DEFAULT_MAX_PAYLOAD_MB) * 1024 * 1024)
    telemetry = model.telemetry
    app = Endpoint(middleware=[VersionHeaders(model)] if router is not None else None)
    app.set_error_serializer(_ErrorBodies(model.version))
    token_sha256 = _token_sha256(spec)
    invocations = Invocations(model, max_payload_bytes, token_sha256, router)
    app.settings = ServerSettings(
        headers=model.headers,
        client_timeout_seconds=_positive(spec, "client_timeout_seconds", DEFAULT_CLIENT_TIMEOUT_SECONDS),
        telemetry=telemetry, headers_per_response=router is not None,
        hot_path=invocations.hot, hot_path_max_bytes=max_payload_bytes)
    app.add_route("/ping", _Ping(model, router))
    app.add_route("/invocations", invocations)
    app.add_route(SAGEMAKER_RUNTIME_ROUTE, invocations)
    app.add_route("/metrics", _Metrics(telemetry, token_sha256, router.candidate.telemetry if router else None))
    # Refused invocations are counted too, then answered as falcon would.
    counted_by = CountedBy(model) if router is not None else None
    app.add_error_handler(falcon.HTTPError, counted_by.http_error if counted_by else telemetry.count_http_error)
    app.add_error_handler(Exception, counted_by.exception if counted_by else telemetry.count_exception)
    # Everything loaded from here on lives as long as the worker: keep the collector
    # from scanning it, which otherwise shows up as tens of milliseconds of p99.
    gc.collect()
    gc.freeze()
    return app
