"""The versions an endpoint's worker serves: the loaded model of each, and how a bake routes between them.

A worker loads the serving version (``ServedModel``: the model, sha256-checked, with its telemetry) and,
while a candidate bakes beside it, the candidate too; ``Router`` decides which of them answers each
request. The falcon resources that use them are in ``pipeline.serving.app``.
"""
from __future__ import annotations

import random
import time
from typing import Any

import falcon.asgi
import numpy as np

from pipeline.container import inference
from pipeline.serving.contract import SHA_HEADER, TEST_TRAFFIC_HEADER, VERSION_HEADER
from pipeline.serving.telemetry import EndpointTelemetry


class ServedModel:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.endpoint: str | None = spec.get("endpoint")
        self.version = spec["version"]
        self.sha256 = spec["sha256"]
        began = time.perf_counter()
        self.model = inference.model_fn(spec["model_dir"], spec["sha256"], spec.get("input_schema"))
        self.load_seconds = time.perf_counter() - began
        self.predict = inference.predictor(self.model)  # predict_fn for this model, its lookups done once
        width = int(getattr(self.model, "n_features_in_", 1))
        self.probe = np.zeros((1, width))
        self.headers = ((VERSION_HEADER, self.version), (SHA_HEADER, self.sha256))
        self.telemetry = EndpointTelemetry.from_spec(spec, getattr(self.model, "classes_", ()), self.load_seconds)

    def healthy(self) -> bool:
        try:
            inference.predict_fn(self.probe, self.model)
            return True
        except Exception:
            return False


class Router:
    """Which version answers a request while a candidate bakes beside the serving version.

    ``split``: each client request goes to the candidate with probability ``percent``/100, by a random
    draw of the worker's own generator, so the share holds in expectation and no pattern of a client's
    requests (every second one malformed, a health probe every tenth) can line up with the routing and
    fall on one version only. ``shadow``: the serving version answers everything; the candidate
    predicts a copy afterwards (``pipeline.serving.app``). The pipeline's own test requests
    (``TEST_TRAFFIC_HEADER``) always go to the serving version: they check what serves, and are never
    part of a bake's analysis.
    """

    def __init__(self, serving: ServedModel, candidate: ServedModel, mode: str, percent: int) -> None:
        if mode not in ("split", "shadow"):
            raise ValueError(f"pointer key split.mode: expected 'split' or 'shadow', got {mode!r}")
        if not 0 <= percent <= 100:
            raise ValueError(f"pointer key split.percent: expected 0 to 100, got {percent}")
        self.serving = serving
        self.candidate = candidate
        self.mode = mode
        self.percent = percent
        self._share = percent / 100.0
        self._draw = random.Random().random  # seeded from the OS in each worker: workers never draw alike

    def choose(self, req: falcon.asgi.Request) -> ServedModel:
        return self.choose_for(req.get_header(TEST_TRAFFIC_HEADER) is not None)

    def choose_for(self, test: bool) -> ServedModel:
        """The version that answers a request (``test``: one of the pipeline's own, ``TEST_TRAFFIC_HEADER``)."""
        if self.mode != "split" or test:
            return self.serving
        return self.candidate if self._draw() < self._share else self.serving

    def shadows(self, req: falcon.asgi.Request) -> bool:
        return self.mode == "shadow" and req.get_header(TEST_TRAFFIC_HEADER) is None

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "percent": self.percent, "candidate_version": self.candidate.version,
                "candidate_sha256": self.candidate.sha256, "candidate_healthy": self.candidate.healthy()}


class VersionHeaders:
    """During a split each response names the version that answered it (the worker's default headers, which
    name one version, are off then: ``ServerSettings.headers_per_response``)."""

    def __init__(self, serving: ServedModel) -> None:
        self.serving = serving

    async def process_response(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any,
                               req_succeeded: bool) -> None:
        model = getattr(req.context, "model", None) or self.serving
        resp.set_headers(model.headers)


def router_for(spec: dict[str, Any], serving: ServedModel) -> Router | None:
    """During a bake the pointer carries ``split``: the candidate's own pointer spec, how it shares the traffic."""
    split = spec.get("split")
    if not split:
        return None
    candidate = ServedModel(split["candidate"])  # sha256-checked like the serving model
    return Router(serving, candidate, split.get("mode", "split"), int(split.get("percent", 0)))


class CountedBy:
    """falcon's error handlers during a split: a refused invocation counts against the version that refused it."""

    def __init__(self, serving: ServedModel) -> None:
        self.serving = serving

    async def http_error(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, error: falcon.HTTPError,
                         params: dict[str, Any]) -> None:
        model = getattr(req.context, "model", None) or self.serving
        await model.telemetry.count_http_error(req, resp, error, params)

    async def exception(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception,
                        params: dict[str, Any]) -> None:
        model = getattr(req.context, "model", None) or self.serving
        await model.telemetry.count_exception(req, resp, error, params)
