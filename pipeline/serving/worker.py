"""The endpoint's gunicorn worker: uvicorn's (uvloop + httptools) with client deadlines and draining.

Why this stack (measured in docs/PERFORMANCE.md): gunicorn's master keeps what the
endpoint relied on -- one listening socket shared by every worker, the HUP that starts
fresh workers which read the version pointer again, the pid file and the process
name -- while each worker is an event loop, so a client that is slow or idle holds a
socket, never a worker, and kept-alive connections spare a TCP handshake per request.

What uvicorn does not do, this module adds (``EndpointProtocol``):

- **A deadline per request** (``client_timeout_seconds``): from the moment the worker waits
  for a request (a new connection, or the previous answer sent) the request's headers and
  body must have arrived within the deadline. A request cut off part-way is answered 408
  and its connection closed; a connection that sent nothing is closed.
- **Draining on a version switch.** Closing a kept-alive connection that looks idle races a
  request the client may be sending on it right then, which would fail. So when the master
  replaces this worker (a HUP: ``gunicorn_conf.on_reload`` sends ``DRAIN_SIGNAL`` first),
  idle connections stay open: the next request on each is answered, with ``Connection:
  close``, and a connection that stays idle is closed by its deadline as at any other
  time. A plain stop (SIGTERM alone) closes idle connections at once, as uvicorn does.
- **One write per answer**: uvicorn writes an answer's head and body separately, two system calls
  and two TCP segments; here they leave together (about 10% less CPU per single-row request).
- **When a request began**: its first byte's ``perf_counter()`` goes into its ASGI scope
  (``endpoint_metrics.STARTED_KEY``) for the latency histogram, and the worker's own 408s are
  counted with the app's answers (``ServerSettings.telemetry``).
"""
from __future__ import annotations

import asyncio
import json
import signal
from time import perf_counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from pipeline.serving.contract import SHA_HEADER, VERSION_HEADER
from pipeline.serving.metrics import STARTED_KEY

# Sent by the master to the workers it is about to replace; SIGUSR2 means nothing else to a worker.
DRAIN_SIGNAL = signal.SIGUSR2
_replacing = False  # this worker is being replaced by fresh ones (set by DRAIN_SIGNAL)
# The headers that name a version, as uvicorn keeps its default headers (lower case, bytes).
_VERSION_HEADERS = frozenset(name.lower().encode("latin1") for name in (VERSION_HEADER, SHA_HEADER))


def _mark_replaced(signum: int, frame: Any) -> None:
    global _replacing
    _replacing = True


class _OneWritePerResponse:
    """The connection's transport as the request's cycle sees it: what the cycle writes while it
    answers (the status line and headers, then the body) leaves in one write, when the answer is
    complete -- one system call and one TCP segment per answer instead of two. Anything written
    outside an answer (``100 Continue``) goes out at once."""

    __slots__ = ("transport", "cycle", "parts")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.cycle: Any = None
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete:
            self.parts.append(data)
        else:
            self.flush()
            self.transport.write(data)

    def flush(self) -> None:
        if self.parts:
            data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            self.parts.clear()
            self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class EndpointProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline per request and draining (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_timeout: float = self.config.client_timeout_seconds  # set by EndpointWorker
        self.headers_per_response: bool = getattr(self.config, "headers_per_response", False)
        self._deadline: asyncio.TimerHandle | None = None
        self._receiving = False  # a request has begun to arrive and has not arrived whole
        self._draining = False

    # --- the deadline ---
    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.client_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answered = cycle is not None and cycle.response_started and not cycle.response_complete
        if self._receiving and not answered:
            self._send_408()
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() now says so; anything it sends is dropped
            cycle.message_event.set()
        self.transport.close()

    def _send_408(self) -> None:
        telemetry = getattr(self.config, "telemetry", None)
        if telemetry is not None:
            telemetry.failed(408, self.scope.get(STARTED_KEY))
        body = json.dumps({"title": f"request not received within {self.client_timeout:g} s "
                                    f"(client_timeout_seconds)"}).encode()
        content = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n", body])
        self.transport.write(b"".join(content))

    # --- uvicorn's callbacks, extended ---
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[STARTED_KEY] = perf_counter()  # type: ignore[literal-required]
        self._receiving = True
        self._arm()  # already armed unless a pipelined request begins while the previous one is served

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle is previous:  # an upgrade request: no cycle of its own
            return
        writer = _OneWritePerResponse(self.transport)
        writer.cycle = cycle
        cycle.transport = writer  # type: ignore[assignment]
        answered = cycle.on_response  # the cycle calls it once its answer is complete

        def flush_then_answered() -> None:
            writer.flush()
            answered()

        cycle.on_response = flush_then_answered
        if self.headers_per_response:  # a split: the app names the version that answered; Date stays
            cycle.default_headers = [header for header in cycle.default_headers if header[0] not in _VERSION_HEADERS]
        if self._draining:
            cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving = False
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        waiting = self.cycle is None or self.cycle.response_complete  # no pipelined request started
        if waiting and not self._receiving and not self.transport.is_closing():
            self._arm()

    def shutdown(self) -> None:
        if not _replacing:
            super().shutdown()
            return
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        # An idle connection stays open: its next request is answered (Connection: close), or the
        # deadline closes it, exactly as if no switch were happening.


class EndpointWorker(UvicornWorker):
    """gunicorn worker running the endpoint's ASGI app on uvloop with ``EndpointProtocol``."""

    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": EndpointProtocol,
        "lifespan": "off",  # the app is ready when create_app returns
        "proxy_headers": False,  # nothing trusted sits in front of the endpoint
        "server_header": False,
        "access_log": False,
    }

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(DRAIN_SIGNAL, _mark_replaced)
        signal.siginterrupt(DRAIN_SIGNAL, False)

    async def _serve(self) -> None:
        settings = self.wsgi.settings  # the app (pipeline.serving.app.Endpoint) carries its version's settings
        self.config.headers = list(settings.headers)
        self.config.client_timeout_seconds = settings.client_timeout_seconds  # read by EndpointProtocol
        self.config.telemetry = settings.telemetry  # counts the 408s EndpointProtocol sends
        self.config.headers_per_response = settings.headers_per_response  # read by EndpointProtocol
        self.config.timeout_keep_alive = settings.client_timeout_seconds
        await super()._serve()
