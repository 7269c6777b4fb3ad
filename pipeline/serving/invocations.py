"""``POST /invocations``: falcon's resource, and the worker's hot path for the common request.

Two ways to the same answer. ``Invocations.on_post`` is the resource falcon routes every invocation to:
every check, every refusal with its status and message. ``Invocations.hot`` answers the common
request -- ``POST /invocations``, its body read whole, rows the model predicts -- without the framework:
the worker (``pipeline.serving.worker.EndpointProtocol``) hands it the request's headers and body straight
from the HTTP parser and writes what it returns, so such a request costs no ASGI task, no falcon request and
response objects and no header validation of headers built here once per version. It performs the same
steps in the same order (route a bake, the token, the client's inference id, parse, predict, answer, count,
capture, the shadow's copy) and gives byte for byte the answer ``on_post`` gives. Anything it does not
answer that way -- a refusal of any kind, a header it leaves to falcon (``X-Probabilities``), a header
given twice -- it declines (returns None) *before* anything is counted or captured, and the worker hands
the request to falcon as it would have, so every refusal keeps the one implementation it has. The version a
bake drew for a declined request travels with it (``CHOSEN_KEY``): falcon answers with the same version.
"""
from __future__ import annotations

import asyncio
import hmac
import re
import time
from typing import Any

import falcon
import falcon.asgi
import numpy as np

from pipeline.container import inference
from pipeline.container.payloads import parse_switch
from pipeline.serving.contract import (
    INFERENCE_ID_HEADER,
    SAGEMAKER_INFERENCE_ID_HEADER,
    SHA_HEADER,
    TEST_TRAFFIC_HEADER,
    VERSION_HEADER,
    token_sha256,
)
from pipeline.serving.metrics import STARTED_KEY
from pipeline.serving.routing import Router, ServedModel

# Probabilities on request. SageMaker forwards no header of the caller's own, so the container reads the
# same switch from the Accept header instead (inference.PROBABILITIES_PARAMETER); this one is for HTTP clients.
PROBABILITIES_HEADER = "X-Probabilities"
# Error answers given before the request body was read close the connection: the rest of the
# body would otherwise have to be read (and waited for) before the next request on it.
CLOSE = {"Connection": "close"}
# SageMaker's InferenceId: 1 to 64 characters of \p{Print} (printable ASCII), the first not whitespace
# (botocore's sagemaker-runtime model: pattern \A\S[\p{Print}]*\z).
_INFERENCE_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,63}")
# The version a bake drew for a request the hot path declined, in its ASGI scope: falcon answers with it.
CHOSEN_KEY = "mlops.chosen"
# A header value uvicorn would refuse to send (its HEADER_VALUE_RE): the hot path's own header lines never hold one.
_BAD_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


def token_matches(authorization: str | None, expected_sha256: str) -> bool:
    """``Authorization: Bearer <token>`` with the token whose sha256 is ``expected_sha256``.

    The scheme is matched case-insensitively (RFC 7235 section 2.1); a header without one is
    refused. Hashes are compared in constant time, so the answer's timing says nothing about how
    much of a guess was right.
    """
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    supplied = credentials.strip(" ")
    if scheme.lower() != "bearer" or not supplied:
        return False
    return hmac.compare_digest(token_sha256(supplied), expected_sha256)


def has_body(req: falcon.asgi.Request) -> bool:
    return bool(req.content_length) or req.get_header("Transfer-Encoding") is not None


def client_inference_id(req: falcon.asgi.Request) -> str | None:
    """The client's own inference id, if it sent one; a malformed one is a 400 naming the header and the rule."""
    value = req.get_header(SAGEMAKER_INFERENCE_ID_HEADER)
    if value is None or _INFERENCE_ID.fullmatch(value):
        return value
    shown = value.encode("latin-1", errors="replace").decode("utf-8", errors="replace")  # as the client wrote it
    raise falcon.HTTPBadRequest(
        title=f"{SAGEMAKER_INFERENCE_ID_HEADER} (InferenceId) must be 1 to 64 printable ASCII characters, the first "
              f"not a space: got {shown[:80]!r} ({len(shown)} characters)",
        headers=CLOSE if has_body(req) else None)


def _query_refused(req: falcon.asgi.Request) -> str:
    """A query string is refused rather than ignored: ``?probabilities=true`` would otherwise answer without
    probabilities and without saying why (SageMaker forwards no query string, so the switches are headers)."""
    names = ", ".join(repr(name) for name in req.params) or repr(req.query_string[:40])
    return (f"query parameters are not read here (got {names}): ask for probabilities with the header "
            f"{PROBABILITIES_HEADER}: true, or Accept: application/json; {inference.PROBABILITIES_PARAMETER}=true")


class Refused(falcon.HTTPError):
    """A request the inference hooks refused: on the boto3 path, what SageMaker calls a ``ModelError``."""

    by_model = True  # telemetry.answered_status: counted as the 424 the client sees on the boto3 path

    def __init__(self, err: inference.InferenceError) -> None:
        super().__init__(falcon.code_to_http_status(err.status_code), title=str(err))
        self.error_name = type(err).__name__


def _header_line(name: str, value: str) -> bytes:
    line = value.encode("latin-1")
    if _BAD_HEADER_VALUE.search(line):
        raise ValueError(f"header {name}: {value!r} cannot be sent")
    return name.lower().encode("latin-1") + b": " + line + b"\r\n"


# Request headers the hot path reads (lower case, as the worker gives them), each read as falcon's get_header would.
_CONTENT_TYPE, _ACCEPT, _AUTHORIZATION = b"content-type", b"accept", b"authorization"
_CLIENT_ID, _TEST = SAGEMAKER_INFERENCE_ID_HEADER.lower().encode(), TEST_TRAFFIC_HEADER.lower().encode()
_DECLINED = frozenset({PROBABILITIES_HEADER.lower().encode()})  # left to falcon: on_post reads them
_READ = frozenset({_CONTENT_TYPE, _ACCEPT, _AUTHORIZATION, _CLIENT_ID})


class Invocations:
    def __init__(self, model: ServedModel, max_payload_bytes: int, token_sha256: str | None,
                 router: Router | None = None) -> None:
        self.model = model
        self.max_payload_bytes = max_payload_bytes
        self.token_sha256 = token_sha256
        self.router = router
        # The hot path's header lines, built once: a version's headers (sent by the app during a split, by the
        # worker otherwise), and the content type of each answer output_fn gives.
        versions = [model] + ([router.candidate] if router is not None else [])
        self._version_lines = {id(version): _header_line(VERSION_HEADER, version.version) +
                               _header_line(SHA_HEADER, version.sha256) for version in versions}
        self._content_lines = {kind: _header_line("Content-Type", kind) for kind in (inference.JSON, inference.CSV)}
        self._id_name = INFERENCE_ID_HEADER.lower().encode() + b": "

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str | None = None) -> None:
        model = self.model
        if self.router is not None:  # routed first, so refusals fall on both versions in proportion
            model = req.context.model = req.scope.get(CHOSEN_KEY) or self.router.choose(req)
        if self.token_sha256 is not None and not token_matches(req.get_header("Authorization"), self.token_sha256):
            raise falcon.HTTPUnauthorized(title="missing or wrong token", challenges=["Bearer"],
                                          headers=CLOSE if has_body(req) else None)
        if name is not None and self.model.endpoint is not None and name != self.model.endpoint:
            raise falcon.HTTPNotFound(title=f"endpoint {name!r} is not served here: this is endpoint "
                                            f"{self.model.endpoint!r}", headers=CLOSE if has_body(req) else None)
        client_id = client_inference_id(req)
        length = req.content_length
        if length is not None and length > self.max_payload_bytes:
            raise falcon.HTTPContentTooLarge(
                title=f"request body of {length} bytes is over the limit of {self.max_payload_bytes} bytes",
                headers=CLOSE)
        # Whatever the framing (Content-Length or chunked), at most the limit + 1 bytes are read. How
        # long the body may take to arrive is the worker's business (client_timeout_seconds).
        body = await req.stream.read(self.max_payload_bytes + 1)
        if len(body) > self.max_payload_bytes:
            raise falcon.HTTPContentTooLarge(title=f"request body is over the limit of {self.max_payload_bytes} bytes",
                                             headers=CLOSE)
        try:
            if req.query_string:
                raise inference.BadRequestError(_query_refused(req))
            switch = req.get_header(PROBABILITIES_HEADER)
            probabilities = parse_switch(PROBABILITIES_HEADER, switch)
            if switch is not None and not probabilities and \
                    inference.accept_asks_for_probabilities(req.get_header("Accept")):
                raise inference.BadRequestError(f"{PROBABILITIES_HEADER}: false contradicts Accept's "
                                                f"{inference.PROBABILITIES_PARAMETER}=true: send one of them")
            rows = inference.input_fn(body, req.content_type or "")
            began = time.perf_counter()
            prediction = model.predict(rows)
            predicted = time.perf_counter()
            text, content_type = inference.output_fn(prediction, req.get_header("Accept"), probabilities)
        except inference.InferenceError as err:
            if isinstance(err, inference.BadRequestError):  # malformed rows: evidence of drift for `monitor`
                model.telemetry.refused(req, body, client_id)
            raise Refused(err) from None
        except UnicodeDecodeError:
            raise Refused(inference.BadRequestError("request body is not UTF-8 text")) from None
        resp.content_type = content_type
        resp.text = text
        resp.set_header(INFERENCE_ID_HEADER, model.telemetry.answered(req, body, prediction.labels, text,
                                                                    content_type, client_id))
        if self.router is not None and self.router.shadows(req):
            self._schedule_shadow(req.scope.get(STARTED_KEY), rows, prediction.labels, predicted - began)

    def hot(self, headers: list[tuple[bytes, bytes]], body: bytes, scope: dict[str, Any]) -> tuple[bytes, bytes] | None:
        """``on_post``'s answer to a ``POST /invocations`` whose body has arrived whole: the header lines of the
        answer (content type, inference id, and during a split the version's), and its body; None to leave the
        request to falcon (see the module doc), which then gives whatever answer this one would not."""
        content_type = accept = authorization = client_id = None
        test = False
        for name, value in headers:
            if name in _READ:
                if name == _CONTENT_TYPE:
                    if content_type is not None:
                        return None  # given twice: falcon's reading of it is the one to keep
                    content_type = value.decode("latin-1")
                elif name == _ACCEPT:
                    if accept is not None:
                        return None
                    accept = value.decode("latin-1")
                elif name == _AUTHORIZATION:
                    if authorization is not None:
                        return None
                    authorization = value.decode("latin-1")
                else:
                    if client_id is not None:
                        return None
                    client_id = value.decode("latin-1")
            elif name == _TEST:
                test = True
            elif name in _DECLINED:
                return None
        model, router = self.model, self.router
        if router is not None:
            model = scope[CHOSEN_KEY] = router.choose_for(test)
        if self.token_sha256 is not None and not token_matches(authorization, self.token_sha256):
            return None
        if client_id is not None and not _INFERENCE_ID.fullmatch(client_id):
            return None
        if len(body) > self.max_payload_bytes:
            return None
        try:
            rows = inference.input_fn(body, content_type or "")
            began = time.perf_counter()
            prediction = model.predict(rows)
            predicted = time.perf_counter()
            text, answer_type = inference.output_fn(prediction, accept, False)
        except (inference.InferenceError, UnicodeDecodeError):
            return None
        started = scope.get(STARTED_KEY)
        inference_id = model.telemetry.answered_as(started, test, body, content_type, prediction.labels, text,
                                                   answer_type, client_id)
        lines = self._content_lines[answer_type] + self._id_name + inference_id.encode() + b"\r\n"
        if router is not None:
            lines += self._version_lines[id(model)]
            if router.mode == "shadow" and not test:
                self._schedule_shadow(started, rows, prediction.labels, predicted - began)
        return lines, text.encode()

    def _schedule_shadow(self, started: float | None, rows: Any, served: np.ndarray, predicting: float) -> None:
        """After the answer: the candidate's prediction never delays, or reaches, the client."""
        # The request's own time but for the serving version's prediction: the candidate's is added to it.
        overhead = None if started is None else max(0.0, (time.perf_counter() - started) - predicting)
        # A plain callback on the loop's next turn: the worker has written this answer by then (it writes an
        # answer whole as the app completes it, before the loop turns). resp.schedule would cost a coroutine,
        # a task and falcon's coroutine-function check per request, several times the callback's own cost.
        asyncio.get_running_loop().call_soon(self._shadow, rows, served, overhead)

    def _shadow(self, rows: Any, served: np.ndarray, overhead: float | None) -> None:
        """The candidate predicts the rows the serving version just answered: the two predictions are compared
        row by row, and the candidate's latency is what the client would have waited had it answered (the
        request's own time with the candidate's prediction in place of the serving version's)."""
        assert self.router is not None
        candidate = self.router.candidate
        began = time.perf_counter()
        try:
            labels = candidate.predict(rows).labels
        except inference.InferenceError as err:
            candidate.telemetry.shadowed(err.status_code, None, 0, 0)
            return
        except Exception:  # the candidate's own failure: counted, never the serving version's problem
            candidate.telemetry.shadowed(500, None, 0, 0)
            return
        waited = None if overhead is None else overhead + time.perf_counter() - began
        same = int(np.count_nonzero(np.asarray(labels) == np.asarray(served))) if len(labels) == len(served) else 0
        candidate.telemetry.shadowed(200, waited, same, len(served) - same)
