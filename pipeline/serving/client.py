"""Reaching an endpoint: the client the endpoint tests, the deployment checks and the CLI use.

``EndpointClient`` is what every caller needs: ``ping`` and ``invoke``. The local endpoint is
plain HTTP (``HttpEndpointClient``); the SageMaker backend supplies a client over
``sagemaker-runtime``. Both answer with a ``Reply``, so callers never care which it was.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
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
