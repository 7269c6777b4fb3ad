"""Rows scored by a live endpoint (local or SageMaker), one batch per request, retried when it is busy.

A batch is the model's columns of some rows, each value as the file spells it (``reading.model_text``), under
``max_payload_mb``. Throttling (429), a server error (5xx) or a connection that failed is retried with a growing,
jittered pause (``RETRIES`` times); 413 (the endpoint's own limit is lower) halves the batch. The endpoint says a
batch holds a row it cannot score with a 400: the caller then finds the row here, by number.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import ExitCode, PipelineError
from pipeline.scoring.offline import Scored
from pipeline.serving.client import EndpointClient, EndpointDown, Reply
from pipeline.serving.contract import VERSION_HEADER

RETRIES = 5  # attempts after the first, for throttling, server errors and failed connections
FIRST_PAUSE_SECONDS = 0.2
LONGEST_PAUSE_SECONDS = 10.0
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
JSON = "application/json"


class Refused(Exception):
    """The endpoint answered 400 to a batch: it holds a row the model cannot score (the caller finds it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooLarge(Exception):
    """The endpoint answered 413: the batch is over its own payload limit."""


def _reply_text(reply: Reply) -> str:
    text = reply.body[:300].decode("utf-8", errors="replace")
    try:
        message = json.loads(reply.body).get("message")
        if isinstance(message, str):
            text = message
    except (ValueError, AttributeError):
        pass
    return " ".join(text.split())[:300]


class EndpointScorer:
    """Sends batches to ``client``; each answer parsed into ``Scored``."""

    def __init__(self, client: EndpointClient, endpoint_name: str, *, probabilities: bool = False,
                 retries: int = RETRIES, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.accept = f"{JSON}; probabilities=true" if probabilities else JSON
        self.probabilities = probabilities
        self.retries = retries
        self.sleep = sleep
        self.retried = 0  # requests sent again, over the whole run
        self.stopped = threading.Event()  # set when the run stops (an error elsewhere, Ctrl-C): no more requests

    def send(self, body: bytes, rows: int, where: str) -> Scored:
        """The endpoint's answers for ``rows`` rows; ``Refused`` (400), ``TooLarge`` (413), or ``PipelineError`` once
        the retries are spent or the answer is not usable."""
        reply, problem = None, ""
        for attempt in range(self.retries + 1):
            if self.stopped.is_set():
                raise PipelineError(f"endpoint {self.endpoint_name!r}, {where}: not sent, the run stopped",
                                    ExitCode.FAILURE)
            if attempt:
                self.retried += 1
                pause = min(LONGEST_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2 ** (attempt - 1))
                self.sleep(pause * (0.5 + random.random()))
            try:
                reply = self.client.invoke(body, "text/csv", self.accept)
            except EndpointDown as err:  # gone for good: waiting cannot help
                raise PipelineError(f"endpoint {self.endpoint_name!r}: {err}; nothing was written",
                                    ExitCode.FAILURE) from None
            except Exception as err:  # a refused or dropped connection, a timeout, botocore's own errors
                problem = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
                reply = None
                continue
            if reply.status in RETRIED_STATUSES:
                problem = f"answered {reply.status}: {_reply_text(reply)}"
                continue
            break
        if reply is None or reply.status in RETRIED_STATUSES:
            raise PipelineError(f"endpoint {self.endpoint_name!r}, {where}: {problem} ({self.retries + 1} attempts); "
                                f"nothing was written", ExitCode.FAILURE)
        if reply.status == 400:
            raise Refused(_reply_text(reply))
        if reply.status == 413:
            raise TooLarge(_reply_text(reply))
        if reply.status == 401:
            raise PipelineError(f"endpoint {self.endpoint_name!r} answered 401: it needs its token in "
                                f"MLOPS_ENDPOINT_TOKEN ({_reply_text(reply)})")
        if not reply.ok:
            raise PipelineError(f"endpoint {self.endpoint_name!r}, {where}: answered {reply.status}: "
                                f"{_reply_text(reply)}; nothing was written", ExitCode.FAILURE)
        return self._scored(reply, rows, where)

    def _scored(self, reply: Reply, rows: int, where: str) -> Scored:
        try:
            answer: Any = json.loads(reply.body)
            labels = answer["predictions"]
            probabilities = answer.get("probabilities") if self.probabilities else None
            classes = answer.get("classes") if self.probabilities else None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise PipelineError(f"endpoint {self.endpoint_name!r}, {where}: the answer is not the JSON predictions "
                                f"the endpoint gives ({reply.body[:100]!r})", ExitCode.FAILURE) from None
        if not isinstance(labels, list) or len(labels) != rows or \
                (self.probabilities and (not isinstance(probabilities, list) or len(probabilities) != rows)):
            got = len(labels) if isinstance(labels, list) else "no"
            raise PipelineError(f"endpoint {self.endpoint_name!r}, {where}: {got} predictions for {rows} rows",
                                ExitCode.FAILURE)
        return Scored(labels, probabilities, classes, reply.headers.get(VERSION_HEADER))
