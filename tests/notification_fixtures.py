"""Real receivers for the notification tests: an HTTP webhook, SMTP servers and a mocked SNS.

They live here rather than in conftest.py so the notification tests own them;
the test module imports the fixtures by name.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

WEBHOOK_SECRET = "T0001/B0002/xSecretWebhookToken42"
SMTP_PASSWORD = "hunter2-Sup3rSecret"


def free_port() -> int:
    """A port nothing listens on right now (aiosmtpd cannot bind port 0 itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- Slack


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    slow: bool = False  # hold the request, unanswered, until ``release`` (the client usually times out first)
    trickle: bool = False  # answer at once but send the body a byte at a time until ``release``: no read timeout fires


class SlackReceiver:
    """A stand-in for a Slack incoming webhook: records each request, answers from a script.

    The script's last reply repeats, so ``script(Reply(500))`` means "500 every time".
    ``release`` lets held requests finish; ``arrived`` is set by the first request,
    ``answered`` counts complete answers and ``client_gone`` is set when a client hung
    up on a request the receiver was holding.
    """

    HOLD_LIMIT_SECONDS = 60.0  # a held request is let go after this even if the test never releases it

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # every JSON body received, delivered or not
        self.paths: list[str] = []
        self.answered = 0
        self.arrived = threading.Event()  # set once the first request has been read
        self.client_gone = threading.Event()
        self.finished = threading.Event()  # set once a request's handler is done (answered or the client gone)
        self._script: list[Reply] = [Reply()]
        self._lock = threading.Lock()
        self.release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/services/{WEBHOOK_SECRET}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script = list(replies)

    def _next(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if len(self._script) > 1 else self._script[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply = receiver._next()
                with receiver._lock:
                    receiver.requests.append(json.loads(body))
                    receiver.paths.append(self.path)
                receiver.arrived.set()
                if reply.slow and not receiver._hold(self.connection):
                    return
                body = reply.body.encode()
                if reply.trickle:
                    body = body.ljust(receiver._TRICKLE_BYTES, b".")
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if reply.trickle:
                        body = receiver._trickle(self.wfile, body)
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:  # the client gave up (the timeout tests)
                    receiver.client_gone.set()
                    receiver.finished.set()
                    return
                with receiver._lock:
                    receiver.answered += 1
                receiver.finished.set()

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        return Handler

    _TRICKLE_BYTES = 4096

    def _hold(self, connection: socket.socket) -> bool:
        """Wait for ``release``; False if the client hung up first (it timed out)."""
        waited = 0.0
        while not self.release.wait(0.05) and waited < self.HOLD_LIMIT_SECONDS:
            waited += 0.05
            readable, _, _ = select.select([connection], [], [], 0)
            try:
                gone = bool(readable) and not connection.recv(1, socket.MSG_PEEK)
            except OSError:
                gone = True
            if gone:
                self.client_gone.set()
                return False
        return True

    def _trickle(self, stream: Any, body: bytes) -> bytes:
        """Send a byte every 50 ms until released; returns the rest of the body."""
        sent = 0
        while not self.release.wait(0.05) and sent < min(len(body) - 1, self.HOLD_LIMIT_SECONDS / 0.05):
            stream.write(body[sent:sent + 1])
            stream.flush()
            sent += 1
        return body[sent:]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    receiver = SlackReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def throttling_slack(slack: SlackReceiver) -> SlackReceiver:
    """Always 429 with ``Retry-After: 30``, as a rate-limited Slack workspace answers."""
    slack.script(Reply(429, "rate_limited", {"Retry-After": "30"}))
    return slack


@pytest.fixture
def hanging_slack(slack: SlackReceiver) -> SlackReceiver:
    """Takes every request and never answers (until the test releases it or ends)."""
    slack.script(Reply(slow=True))
    return slack


@pytest.fixture
def failing_slack(slack: SlackReceiver) -> SlackReceiver:
    """500 every time."""
    slack.script(Reply(500, "internal_error"))
    return slack


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: a receiver that is down."""
    return free_port()


# --------------------------------------------------------------------------- SMTP


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool


class SmtpRecorder:
    """aiosmtpd handler and authenticator that remember what arrived and who logged in."""

    def __init__(self, accept_login: bool = True) -> None:
        self.accept_login = accept_login
        self.messages: list[Received] = []
        self.logins: list[tuple[str, str, str, bool]] = []  # mechanism, user, password, over TLS

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                      session.ssl is not None))
        return "250 Message accepted for delivery"

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.logins.append((mechanism, auth_data.login.decode(), auth_data.password.decode(),
                            session.ssl is not None))
        return AuthResult(success=self.accept_login, handled=False)  # aiosmtpd sends the 235/535 reply


@dataclass
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1; tests trust it through SSL_CERT_FILE."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    files = TlsFiles(folder / "cert.pem", folder / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[SmtpRecorder, int]]]:
    """Start an aiosmtpd server on 127.0.0.1: ``smtp_server(**controller_kwargs) -> (recorder, port)``."""
    from aiosmtpd.controller import Controller

    controllers: list[Any] = []

    def start(accept_login: bool = True, **kwargs: Any) -> tuple[SmtpRecorder, int]:
        recorder = SmtpRecorder(accept_login)
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port,
                                authenticator=recorder.authenticator, **kwargs)
        controller.start()
        controllers.append(controller)
        return recorder, port

    yield start
    for controller in controllers:
        controller.stop()


# --------------------------------------------------------------------------- SNS (moto)


@dataclass
class SnsTopic:
    arn: str
    read: Callable[[], list[dict[str, Any]]]  # the SNS envelopes the subscribed queue received


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, and no user profile, so nothing can reach real AWS."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def sns_topic(aws_credentials: None) -> Iterator[SnsTopic]:
    """A moto topic with an SQS queue subscribed (raw delivery off, so subject and attributes arrive)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        arn = sns.create_topic(Name="mlops-notifications")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="mlops-notifications")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn,
                      Attributes={"RawMessageDelivery": "false"})

        def read() -> list[dict[str, Any]]:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(message["Body"]) for message in messages]

        yield SnsTopic(arn, read)
