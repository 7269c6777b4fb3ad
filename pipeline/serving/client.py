"""Reaching an endpoint: the client the endpoint tests, the deployment checks and the CLI use.

``EndpointClient`` is what every caller needs: ``ping`` and ``invoke``. The local endpoint is
plain HTTP (``HttpEndpointClient``); the SageMaker backend supplies a client over
``sagemaker-runtime``. Both answer with a ``Reply``, so callers never care which it was.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import requests

from pipeline.serving.contract import SHA_HEADER, TEST_TRAFFIC_HEADER, VERSION_HEADER  # noqa: F401 -- re-exported


class EndpointDown(ConnectionError):
    """The endpoint is gone for good (its process exited): waiting longer cannot make it healthy."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class EndpointClient(Protocol):
    """What the tester needs from an endpoint, whatever serves it."""

    url: str

    def ping(self) -> Reply: ...

    def invoke(self, body: bytes, content_type: str, accept: str = "application/json") -> Reply: ...


class HttpEndpointClient:
    """HTTP to a server speaking the SageMaker serving contract (``/ping``, ``/invocations``).

    Its callers are the pipeline's own checks, so by default every invocation carries
    ``TEST_TRAFFIC_HEADER``: the endpoint answers it but does not capture it, and ``monitor``
    never mistakes the tester's held-out rows for live traffic. ``test_traffic=False`` sends
    requests that are captured like any client's.
    """

    def __init__(self, url: str, timeout: float = 10.0, token: str | None = None, *,
                 test_traffic: bool = True) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._invoke_headers = {**self._headers, TEST_TRAFFIC_HEADER: "1"} if test_traffic else dict(self._headers)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _reply(self, response: requests.Response) -> Reply:
        return Reply(response.status_code, response.headers, response.content)  # case-insensitive

    def ping(self) -> Reply:
        return self._reply(self._session().get(f"{self.url}/ping", timeout=self.timeout, headers=self._headers))

    def metrics(self) -> Reply:
        """``GET /metrics``: the endpoint's Prometheus counters, summed over its workers."""
        return self._reply(self._session().get(f"{self.url}/metrics", timeout=self.timeout, headers=self._headers))

    def invoke(self, body: bytes, content_type: str, accept: str = "application/json") -> Reply:
        headers = {**self._invoke_headers, "Content-Type": content_type, "Accept": accept}
        return self._reply(self._session().post(f"{self.url}/invocations", data=body, headers=headers,
                                                timeout=self.timeout))


@dataclass(frozen=True)
class PingPoll:
    """How polling ``/ping`` ended: accepted (``ok``), or the last thing seen when the time ran out."""

    ok: bool
    attempts: int
    seconds: float
    last: str  # what the last answer (or failure to answer) was
    reply: Reply | None = None  # the last answer


def poll_ping(client: EndpointClient, timeout: float, judge: Callable[[Reply], str | None],
              in_a_row: int = 1) -> PingPoll:
    """Poll ``/ping`` until ``judge`` accepts ``in_a_row`` answers one after another, or ``timeout`` seconds pass.

    ``judge`` answers None to accept a reply, else what it saw (for the message when time runs out); it may
    raise to stop at once. ``EndpointDown`` (the server process is gone) stops at once too, raised to the
    caller. Every 50 ms while a freshly started server is likely to come up (a doubling delay found it up to
    0.8 s late), then every 0.5 s; accepted answers are asked for again without a pause.
    """
    started = time.monotonic()
    deadline = started + timeout
    attempts = accepted = 0
    last, reply = "no answer", None
    while True:
        attempts += 1
        try:
            reply = client.ping()
        except EndpointDown:
            raise
        except requests.RequestException as err:
            last = f"cannot reach {client.url}: {type(err).__name__}"
        except Exception as err:  # a backend client's own error (botocore's, say): retried like a refused connection
            last = f"{type(err).__name__}: {err}"
        else:
            seen = judge(reply)  # may raise: the caller's reason to stop at once
            if seen is None:
                accepted += 1
                if accepted >= in_a_row:
                    return PingPoll(True, attempts, round(time.monotonic() - started, 3), "accepted", reply)
                continue
            last = seen
        accepted = 0
        delay = 0.05 if time.monotonic() - started < 10 else 0.5
        if time.monotonic() + delay > deadline:
            return PingPoll(False, attempts, round(time.monotonic() - started, 3), last, reply)
        time.sleep(delay)
