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
- **A hot path for** ``POST /invocations`` (``ServerSettings.hot_path``, ``pipeline.serving.invocations``):
  such a request's body is gathered here, straight from the parser, and the app's hot path answers it
  when it arrives whole -- no request-response cycle, no ASGI task, no framework -- and the answer is
  written here, head and body in one write. What the hot path declines (any refusal, anything unusual)
  and everything else goes uvicorn's way, to the app in a task of its own, with the body read so far.
  So is a request that cannot be answered the moment it arrives: one behind an answer still being
  written (pipelined), one that expects ``100 Continue``, one declaring a body over the payload limit
  (falcon refuses that one before reading it).
- **When a request began**: its first byte's ``perf_counter()`` goes into its ASGI scope
  (``endpoint_metrics.STARTED_KEY``) for the latency histogram, and the worker's own answers
  (408, and the refusals below) are counted with the app's in ``mlops_endpoint_requests_total``
  under their status code (``ServerSettings.telemetry``).
- **A bounded request head.** httptools (llhttp) has no limit of its own, and gunicorn's
  ``limit_request_line``, ``limit_request_fields`` and ``limit_request_field_size`` are read by
  gunicorn's own HTTP parser only: a uvicorn worker never applies them. So the bounds are here,
  gunicorn's and nginx's defaults as the model: a request target over ``MAX_URL_BYTES`` is
  answered 414; a header field (name and value) over ``MAX_FIELD_BYTES``, more than
  ``MAX_FIELDS`` fields, or a head over ``MAX_HEAD_BYTES`` (counted as the bytes received while
  the head is incomplete, so a head that never ends holds no more than that) is answered 431.
- **HTTP/1.0 and HTTP/1.1 only.** A request line with another version (``HTTP/2.0``: 505) or
  none (HTTP/0.9's ``GET /ping``: 400) is refused here; the app (falcon) would fail on it with
  a 500. A request httptools cannot parse is a 400 naming what llhttp found wrong.

Every refusal of the worker's own is one JSON body, ``{"title": "<what was wrong>"}`` as the app's
errors, and closes the connection (what follows the refused head cannot be framed).
"""
from __future__ import annotations

import asyncio
import json
import signal
from time import perf_counter
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from pipeline.serving.contract import SHA_HEADER, VERSION_HEADER
from pipeline.serving.metrics import STARTED_KEY

# Sent by the master to the workers it is about to replace; SIGUSR2 means nothing else to a worker.
DRAIN_SIGNAL = signal.SIGUSR2
_replacing = False  # this worker is being replaced by fresh ones (set by DRAIN_SIGNAL)
# The headers that name a version, as uvicorn keeps its default headers (lower case, bytes).
_VERSION_HEADERS = frozenset(name.lower().encode("latin1") for name in (VERSION_HEADER, SHA_HEADER))


# The request head's bounds (see the module doc): gunicorn's limit_request_field_size (8190) and
# limit_request_fields (100); nginx's large_client_header_buffers (4 x 8 KB) for the target and the whole head.
MAX_URL_BYTES = 8 * 1024
MAX_FIELD_BYTES = 8190
MAX_FIELDS = 100
MAX_HEAD_BYTES = 32 * 1024
# After refusing a request, the worker reads (and drops) what the client is still sending for at most this long
# before it closes: a close with unread bytes would reset the connection and could destroy the answer before the
# client read it (nginx's lingering close).
LINGER_SECONDS = 2.0


class _Refusal(Exception):
    """Raised in a parser callback: the request is answered ``status`` and its connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
        # The deadline: when it falls (loop time; None: not armed), and the one timer that watches it. Arming and
        # disarming, twice a request, only move the time; the timer, when it fires, looks again (_expire).
        self._deadline_at: float | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._receiving = False  # a request has begun to arrive and has not arrived whole
        self._draining = False
        # The request head's bounds: bytes received while a head is incomplete, its fields and their size.
        self._awaiting_head = True
        self._head_bytes = 0
        self._fields = 0
        self._field_bytes = 0
        self._refusal: _Refusal | None = None  # the worker's own answer to this connection's last request
        self._refusal_answer: bytes | None = None  # written once the answers before it are complete
        # The hot path (the app's answer to a plain POST /invocations, see on_headers_complete): the body of the
        # hot request being received, and whether to close once it is answered (a stop came meanwhile).
        self.hot_path: Any = getattr(self.config, "hot_path", None)
        self.hot_path_max_bytes: int = getattr(self.config, "hot_path_max_bytes", 0)
        self._hot_body: list[bytes] | None = None
        self._hot_size = 0
        self._close_after_hot = False
        self._hot_prefix_of: Any = None  # the default headers the prefix below was built from
        self._hot_prefix = b""
        self._http_version = "1.1"  # the request's, from on_headers_complete

    # --- the deadline ---
    def _arm(self) -> None:
        if self._deadline_at is None:
            self._deadline_at = at = self.loop.time() + self.client_timeout
            if self._deadline is None:
                self._deadline = self.loop.call_at(at, self._expire)

    def _disarm(self) -> None:
        self._deadline_at = None  # a timer still pending finds nothing to do when it fires

    def _expire(self) -> None:
        self._deadline = None
        at = self._deadline_at
        if at is None:
            return
        if self.loop.time() + 0.001 < at:  # disarmed and armed again since the timer was set: the deadline moved
            self._deadline = self.loop.call_at(at, self._expire)
            return
        self._deadline_at = None
        self._too_slow()

    def _too_slow(self) -> None:
        self._hot_body = None
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
        self.transport.write(self._error_answer(408, f"request not received within {self.client_timeout:g} s "
                                                     f"(client_timeout_seconds)"))

    def _error_answer(self, status: int, message: str) -> bytes:
        """The worker's own error answer, counted with the app's answers; the connection closes after it."""
        telemetry = getattr(self.config, "telemetry", None)
        if telemetry is not None:
            started = self.scope.get(STARTED_KEY) if self._receiving and self.scope is not None else None
            telemetry.failed(status, started)
        body = json.dumps({"title": message}).encode()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n",
                        b"content-length: " + str(len(body)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n", body])
        return b"".join(content)

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer the request being received with ``refusal`` and close the connection; an answer to an earlier
        (pipelined) request still being written goes first."""
        self._refusal = refusal
        answer = self._error_answer(refusal.status, refusal.message)
        self._receiving = False
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._refusal_answer = answer  # on_response_complete writes it
            self.transport.pause_reading()
            return
        self._answer_and_close(answer)

    def _answer_and_close(self, answer: bytes) -> None:
        """Write the worker's own error answer, then close: the answer and a FIN at once, the connection itself once
        the client closes its side (``eof_received``, uvicorn's, lets the transport close) or ``LINGER_SECONDS``
        later; data_received drops what arrives meanwhile."""
        transport = self.transport
        transport.write(answer)
        if not transport.can_write_eof():
            transport.close()
            return
        transport.resume_reading()
        transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, transport.close)

    # --- uvicorn's callbacks, extended ---
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the head's bounds and the worker's own refusals (which close the connection)."""
        if self._refusal is not None:
            return  # refused: what follows cannot be framed, and the connection is closing
        if self._awaiting_head:
            self._head_bytes += len(data)  # on_headers_complete starts again from 0 for the body
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as err:
            context = err.__context__
            if isinstance(context, _Refusal):
                self._refuse(context)
            elif self.parser.get_http_version().startswith("2."):  # HTTP/2's connection preface, "PRI * HTTP/2.0"
                self._refuse(_Refusal(505, "HTTP/2 is not served here: send HTTP/1.1 (or HTTP/1.0)"))
            else:
                self._refuse(_Refusal(400, f"malformed HTTP request: {str(err) or type(err).__name__}"))
            return
        if self._awaiting_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(_Refusal(431, f"request head over {MAX_HEAD_BYTES} bytes: send at most {MAX_FIELDS} "
                                       f"header fields of at most {MAX_FIELD_BYTES} bytes each"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[STARTED_KEY] = perf_counter()  # type: ignore[literal-required]
        self._receiving = True
        self._fields = self._field_bytes = 0
        self._arm()  # already armed unless a pipelined request begins while the previous one is served

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL_BYTES:
            raise _Refusal(414, f"request target over {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._fields += 1
        self._field_bytes += size
        if size > MAX_FIELD_BYTES:
            raise _Refusal(431, f"header field {name[:40].decode('latin-1')!r} is {size} bytes: the limit is "
                                f"{MAX_FIELD_BYTES} bytes per field (name and value)")
        if self._fields > MAX_FIELDS:
            raise _Refusal(431, f"more than {MAX_FIELDS} header fields: the limit is {MAX_FIELDS}")
        if len(self.url) + self._field_bytes + 4 * self._fields > MAX_HEAD_BYTES:
            raise _Refusal(431, f"request head over {MAX_HEAD_BYTES} bytes: send at most {MAX_FIELDS} header "
                                f"fields of at most {MAX_FIELD_BYTES} bytes each")
        # uvicorn's own, inline (a call less per header)
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            if version.startswith("0."):  # no version on the request line: HTTP/0.9's "GET /ping"
                raise _Refusal(400, "a request line without HTTP/1.1 (HTTP/0.9): send e.g. GET /ping HTTP/1.1")
            raise _Refusal(505, f"HTTP/{version} is not served here: send HTTP/1.1 (or HTTP/1.0)")
        self._awaiting_head = False
        self._head_bytes = 0
        self._http_version = version
        if self.hot_path is not None and self.url == b"/invocations" and self._hot_eligible():
            self._hot_body, self._hot_size = [], 0  # the body is read here; on_message_complete answers
            return
        self._start_cycle()

    def _hot_eligible(self) -> bool:
        """A POST to /invocations with nothing in flight before it on this connection, no ``Expect:
        100-continue`` and no declared body over the limit (falcon answers that one at once, unread)."""
        if self.parser.get_method() != b"POST" or self.expect_100_continue or self.parser.should_upgrade():
            return False
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return False
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) <= self.hot_path_max_bytes
        return True

    def _start_cycle(self) -> None:
        """uvicorn's way: a request-response cycle running the ASGI app in a task of its own."""
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

    def on_body(self, body: bytes) -> None:
        hot = self._hot_body
        if hot is None:
            super().on_body(body)
            return
        hot.append(body)
        self._hot_size += len(body)
        if self._hot_size > self.hot_path_max_bytes:  # chunked, over the limit: falcon refuses it (413)
            self._hot_body = None
            self._start_cycle()
            super().on_body(b"".join(hot))

    def on_message_complete(self) -> None:
        hot = self._hot_body
        if hot is None:
            super().on_message_complete()
        self._receiving = False
        self._awaiting_head = True
        self._head_bytes = 0
        self._disarm()
        if hot is not None:
            self._hot_body = None
            self._answer_hot(hot[0] if len(hot) == 1 else b"".join(hot))

    def _answer_hot(self, body: bytes) -> None:
        """The app's hot path answers the request, or hands it back: then it goes to the app as any other."""
        try:
            answer = self.hot_path(self.headers, body, self.scope)
        except Exception:  # a bug, not a refusal: falcon's path answers it (and its handlers count and log it)
            self.logger.exception("the hot path failed: the request goes the app's way")
            answer = None
        if answer is None:
            self._start_cycle()
            cycle = self.cycle
            cycle.body += body
            cycle.more_body = False
            cycle.message_event.set()
            return
        keep_alive = self._http_version != "1.0" and not (self._draining or self._close_after_hot) and \
            self.parser.should_keep_alive()
        defaults = self.server_state.default_headers
        if defaults is not self._hot_prefix_of:  # uvicorn renews them (the Date) once a second
            self._hot_prefix_of = defaults
            self._hot_prefix = STATUS_LINE[200] + b"".join(
                name + b": " + value + b"\r\n" for name, value in defaults
                if not (self.headers_per_response and name in _VERSION_HEADERS))
        lines, content = answer
        transport = self.transport
        transport.write(b"".join((self._hot_prefix, lines, b"content-length: %d\r\n" % len(content),
                                  b"\r\n" if keep_alive else b"connection: close\r\n\r\n", content)))
        self.server_state.total_requests += 1  # as uvicorn's on_response_complete counts an answer
        if not keep_alive:
            transport.close()
        elif not transport.is_closing():
            self._arm()  # the next request's deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        waiting = self.cycle is None or self.cycle.response_complete  # no pipelined request started
        if self._refusal_answer is not None:
            if waiting and not self.transport.is_closing():
                self._answer_and_close(self._refusal_answer)
            return
        if waiting and not self._receiving and not self.transport.is_closing():
            self._arm()

    def shutdown(self) -> None:
        if self._hot_body is not None:  # a hot request is arriving: it is answered, then the connection closes
            self._close_after_hot = True
            if not _replacing:
                return
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
        self.config.hot_path = settings.hot_path  # read by EndpointProtocol
        self.config.hot_path_max_bytes = settings.hot_path_max_bytes
        self.config.timeout_keep_alive = settings.client_timeout_seconds
        await super()._serve()
