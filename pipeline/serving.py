"""The local endpoint's HTTP app: SageMaker's serving contract over the same inference hooks.

Run by gunicorn (``pipeline.backends.local`` starts it), one app per worker::

    MLOPS_MODEL_POINTER=.mlops/endpoints/iris-model/current.json \\
        gunicorn -c python:pipeline.gunicorn_conf 'pipeline.serving:create_app()'

The pointer file names the version to serve, its model directory and the model's
sha256. A worker reads it when it starts; a gunicorn HUP starts fresh workers,
which read the pointer again. That is how a stable endpoint switches versions
without closing its listening socket, so no request is dropped.

Routes:
- ``GET /ping``: 200 only when the model is loaded and a probe prediction succeeds.
- ``POST /invocations`` and ``POST /endpoints/<name>/invocations`` (the path a boto3
  ``sagemaker-runtime`` client uses with ``endpoint_url``): CSV or JSON in, JSON or
  CSV out per ``Accept``. Client mistakes are 4xx and the worker stays up.
Every response carries ``X-Model-Version`` and ``X-Model-Sha256``.
"""
from __future__ import annotations

import gc
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import falcon
import numpy as np

from pipeline.container import inference

POINTER_ENV = "MLOPS_MODEL_POINTER"
POINTER_WAIT_ENV = "MLOPS_POINTER_WAIT"
TOKEN_ENV = "MLOPS_ENDPOINT_TOKEN"
VERSION_HEADER = "X-Model-Version"
SHA_HEADER = "X-Model-Sha256"


ModelIntegrityError = inference.ModelIntegrityError


def read_pointer(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def verified_model_dir(spec: dict[str, Any]) -> str:
    """Refuse a model whose bytes differ from what training recorded for this version."""
    inference.verify_model_file(spec["model_dir"], spec["sha256"], use="serve")
    return spec["model_dir"]


class _Model:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.version = spec["version"]
        self.sha256 = spec["sha256"]
        self.model = inference.model_fn(spec["model_dir"], spec["sha256"])
        width = int(getattr(self.model, "n_features_in_", 1))
        self.probe = np.zeros((1, width))

    def healthy(self) -> bool:
        try:
            inference.predict_fn(self.probe, self.model)
            return True
        except Exception:
            return False


class _VersionHeaders:
    """Name the serving version on every response, errors included."""

    def __init__(self, model: _Model) -> None:
        self.model = model

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        resp.set_header(VERSION_HEADER, self.model.version)
        resp.set_header(SHA_HEADER, self.model.sha256)


class _Ping:
    def __init__(self, model: _Model) -> None:
        self.model = model

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        healthy = self.model.healthy()
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"status": "healthy" if healthy else "unhealthy",
                                "version": self.model.version, "sha256": self.model.sha256})


class _Invocations:
    def __init__(self, model: _Model, max_payload_bytes: int, token_sha256: str | None) -> None:
        self.model = model
        self.max_payload_bytes = max_payload_bytes
        self.token_sha256 = token_sha256

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str | None = None) -> None:
        if self.token_sha256 is not None:
            supplied = (req.get_header("Authorization") or "").removeprefix("Bearer ")
            if not hmac.compare_digest(hashlib.sha256(supplied.encode()).hexdigest(), self.token_sha256):
                raise falcon.HTTPUnauthorized(title="missing or wrong token",
                                              challenges=["Bearer"])
        length = req.content_length
        if length is not None and length > self.max_payload_bytes:
            raise falcon.HTTPContentTooLarge(
                title=f"request body of {length} bytes is over the limit of {self.max_payload_bytes} bytes")
        body = req.bounded_stream.read(self.max_payload_bytes + 1)
        if len(body) > self.max_payload_bytes:
            raise falcon.HTTPContentTooLarge(title=f"request body is over the limit of {self.max_payload_bytes} bytes")
        try:
            rows = inference.input_fn(body, req.content_type or "")
            prediction = inference.predict_fn(rows, self.model.model)
            text, content_type = inference.output_fn(prediction, req.get_header("Accept"))
        except inference.InferenceError as err:
            raise falcon.HTTPError(falcon.code_to_http_status(err.status_code), title=str(err)) from None
        except UnicodeDecodeError:
            raise falcon.HTTPBadRequest(title="request body is not UTF-8 text") from None
        resp.content_type = content_type
        resp.text = text


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


def create_app(pointer: str | None = None) -> falcon.App:
    """Load the pointed-to model (checking its sha256) and build the WSGI app."""
    spec = _wait_for_pointer(Path(pointer or os.environ[POINTER_ENV]))
    model = _Model(spec)
    max_payload_bytes = int(float(spec.get("max_payload_mb", 6.0)) * 1024 * 1024)
    token_sha256 = _token_sha256(spec)
    app = falcon.App(middleware=[_VersionHeaders(model)])
    app.add_route("/ping", _Ping(model))
    invocations = _Invocations(model, max_payload_bytes, token_sha256)
    app.add_route("/invocations", invocations)
    app.add_route("/endpoints/{name}/invocations", invocations)
    # Everything loaded from here on lives as long as the worker: keep the collector
    # from scanning it, which otherwise shows up as tens of milliseconds of p99.
    gc.collect()
    gc.freeze()
    return app
