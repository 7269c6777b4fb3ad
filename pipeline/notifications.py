"""Telling people what a run did: Slack, SNS and email, without ever breaking the run.

A notification is a side effect of the pipeline, not part of its result: a
webhook that is down, a throttled topic or a mail server that refuses us is
logged as a warning and recorded in ``Notifier.deliveries``; it never raises
into the orchestrator. Only ``notify_strict`` turns a lost notification into a
failed run, and the orchestrator decides that from ``Notifier.strict_failure``.

Every channel gets the same ``Message`` (built once per event from the
orchestrator's summary) and renders it its own way: Block Kit for Slack, a
subject and plain text for SNS and email.

Secrets (the webhook URL, which is itself the credential, and the SMTP
password) are kept out of logs, deliveries and error text: errors are built
from our own words plus scrubbed library text, because ``requests`` puts the
full URL in its exception messages and urllib3 logs the request path.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import requests

from pipeline.config import PipelineConfig, redact_url

log = logging.getLogger("pipeline.notifications")

EVENTS: tuple[str, ...] = (
    "pipeline_started",
    "gate_decision",
    "deployment_succeeded",
    "tests_failed",
    "rolled_back",
    "rollback_failed",
    "pipeline_finished",
)

SEVERITIES: tuple[str, ...] = ("info", "warning", "error")

SNS_SUBJECT_LIMIT = 100  # SNS rejects longer subjects
MAX_RETRY_AFTER_SECONDS = 30.0  # a server asking for longer would stall the pipeline; we give up sooner
MAX_BACKOFF_SECONDS = 30.0
_ERROR_TEXT_LIMIT = 300  # enough to diagnose, short enough for a results JSON

_TITLES = {
    "pipeline_started": "Pipeline started",
    "gate_decision": "Gate decision",
    "deployment_succeeded": "Deployment succeeded",
    "tests_failed": "Endpoint tests failed",
    "rolled_back": "Deployment rolled back",
    "rollback_failed": "Rollback failed",
    "pipeline_finished": "Pipeline finished",
}
_WARNING_OUTCOMES = {"held", "hold", "rejected", "reject"}


# --------------------------------------------------------------------------- secrets


class SecretScrubber:
    """Replaces known secrets in text, longest first so a URL is hidden before its path."""

    def __init__(self) -> None:
        self._replacements: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, secret: str | None, shown: str = "***") -> None:
        if not secret:
            return
        with self._lock:
            for variant in {secret, quote(secret, safe="/:"), unquote(secret)}:
                if variant:
                    self._replacements[variant] = shown

    def add_webhook(self, url: str) -> None:
        """The whole URL is the credential, but libraries often print only its path or query."""
        try:
            parts = urlsplit(url)
            shown = redact_url(url)
        except ValueError:  # not a URL at all: hide it whole
            self.add(url)
            return
        self.add(url, shown)
        if len(parts.path) > 1:
            self.add(parts.path, "/***")
            # Slack's path is /services/<team>/<bot>/<token>; an echo may carry only its tail.
            segments = [segment for segment in parts.path.split("/") if segment]
            for start in range(1, len(segments)):
                tail = "/".join(segments[start:])
                if len(tail) >= 6:
                    self.add(tail)
        if parts.query:
            self.add(parts.query, "***")
        if parts.password:
            self.add(parts.password)

    def scrub(self, text: str) -> str:
        with self._lock:
            replacements = sorted(self._replacements.items(), key=lambda item: len(item[0]), reverse=True)
        for secret, shown in replacements:
            text = text.replace(secret, shown)
        return text


class _LibraryLogScrubber(logging.Filter):
    """urllib3 logs the request path at DEBUG; for a Slack webhook that path is the secret.

    Logger filters apply only to records logged on that exact logger, so it is
    attached to each urllib3 logger that can mention a URL.
    """

    LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry",
               "urllib3.connection", "urllib3.response")

    def __init__(self) -> None:
        super().__init__()
        self.scrubber = SecretScrubber()
        self._installed = False
        self._lock = threading.Lock()

    def protect(self, url: str) -> None:
        self.scrubber.add_webhook(url)
        with self._lock:
            if not self._installed:
                for name in self.LOGGERS:
                    logging.getLogger(name).addFilter(self)
                self._installed = True

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is the library's problem, not a reason to drop it
            return True
        cleaned = self.scrubber.scrub(text)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


_LIBRARY_LOGS = _LibraryLogScrubber()


# --------------------------------------------------------------------------- the message


def severity_for(event: str, summary: Mapping[str, Any]) -> str:
    """error when something is broken and needs a person, warning when the pipeline protected itself."""
    status = str(summary.get("pipeline_status") or "").lower()
    final_state = str(summary.get("final_state") or "").lower()
    gate = summary.get("gate") if isinstance(summary.get("gate"), Mapping) else {}
    decision = str(gate.get("decision") or "").lower()
    if event == "rollback_failed" or status == "failed" or final_state == "rollback_failed":
        return "error"
    if event in ("tests_failed", "rolled_back") or status in _WARNING_OUTCOMES or final_state == "rolled_back":
        return "warning"
    if event == "gate_decision" and decision in _WARNING_OUTCOMES:
        return "warning"
    return "info"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def _duration(value: Any) -> str | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None if value is None else str(value)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _gate_line(gate: Any) -> str | None:
    if not isinstance(gate, Mapping) or not gate:
        return None
    decision = gate.get("decision") or "unknown"
    metric = gate.get("metric") or "metric"
    line = f"{decision}: {metric}"
    if gate.get("value") is not None:
        line += f" {_number(gate['value'])}"
    limits = []
    if gate.get("threshold") is not None:
        limits.append(f"threshold {_number(gate['threshold'])}")
    if gate.get("minimum") is not None:
        limits.append(f"minimum {_number(gate['minimum'])}")
    if limits:
        line += f" ({', '.join(limits)})"
    if gate.get("reason"):
        line += f" - {gate['reason']}"
    return line


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return " ".join(str(value).split())


@dataclass(frozen=True)
class Message:
    """What one event says, independent of the channel that carries it."""

    event: str
    run_id: str
    severity: str
    title: str
    fields: tuple[tuple[str, str], ...]
    text: str | None = None
    rollback_reason: str | None = None

    @classmethod
    def build(cls, event: str, summary: Mapping[str, Any], run_id: str) -> "Message":
        """Any summary key may be missing or odd: a notification must still go out."""
        gate = summary.get("gate")
        status = _text(summary.get("pipeline_status"))
        title = _TITLES.get(event, event.replace("_", " ").capitalize())
        if event == "gate_decision" and isinstance(gate, Mapping) and gate.get("decision"):
            title += f": {gate['decision']}"
        elif event == "pipeline_finished" and status:
            title += f": {status}"
        endpoint_name = _text(summary.get("endpoint_name"))
        if endpoint_name:
            title += f" - {endpoint_name}"

        endpoint = endpoint_name
        endpoint_url = _text(summary.get("endpoint_url"))
        if endpoint_url:
            endpoint = f"{endpoint} ({endpoint_url})" if endpoint else endpoint_url
        version = _text(summary.get("version"))
        previous = _text(summary.get("previous_version"))
        if version and previous and previous != version:
            version = f"{version} (previous {previous})"
        elif not version and previous:
            version = f"previous {previous}"
        backend = " ".join(filter(None, [_text(summary.get("backend")),
                                         f"({summary['mode']})" if summary.get("mode") else None])) or None
        candidates = (
            ("Status", status),
            ("Gate", _gate_line(gate)),
            ("Endpoint", endpoint),
            ("Version", version),
            ("Final state", _text(summary.get("final_state"))),
            ("Duration", _duration(summary.get("duration_seconds"))),
            ("Backend", backend),
            ("Training job", _text(summary.get("training_job"))),
        )
        return cls(
            event=event,
            run_id=run_id,
            severity=severity_for(event, summary),
            title=title,
            fields=tuple((label, value) for label, value in candidates if value),
            text=_text(summary.get("message")),
            rollback_reason=_text(summary.get("rollback_reason")),
        )

    @property
    def subject(self) -> str:
        """One ASCII line within the SNS limit, so the same subject works for SNS and email."""
        subject = f"[{self.severity.upper()}] MLOps {self.title} (run {self.run_id})"
        subject = re.sub(r"[^\x20-\x7e]", "?", " ".join(subject.split()))
        if len(subject) > SNS_SUBJECT_LIMIT:
            subject = subject[: SNS_SUBJECT_LIMIT - 3].rstrip() + "..."
        return subject

    @property
    def plain_text(self) -> str:
        width = max((len(label) for label, _ in self.fields), default=0) + 2
        lines = [f"[{self.severity.upper()}] {self.title}", ""]
        if self.text:
            lines += [self.text, ""]
        lines += [f"{label + ':':<{width}}{value}" for label, value in self.fields]
        if self.rollback_reason:
            lines += ["", f"Rollback reason: {self.rollback_reason}"]
        lines += ["", f"Run {self.run_id} | event {self.event} | severity {self.severity}"]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- channels


class DeliveryError(Exception):
    """A channel could not deliver; says whether trying again could help and when."""

    def __init__(self, message: str, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> None:
        """Deliver once or raise ``DeliveryError``; retrying is the Notifier's job."""


def _is_loopback(host: str | None) -> bool:
    """Literal loopback only: a name other than localhost is not resolved, since DNS can lie."""
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _reason(exc: requests.RequestException) -> str:
    """The useful end of a requests error; the rest repeats the URL (scrubbed later regardless)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    text = str(getattr(inner, "reason", None) or inner)
    return text.split("): ", 1)[1] if "): " in text else text


class SlackChannel:
    """Slack incoming webhook: one POST of a Block Kit message."""

    name = "slack"

    def __init__(self, webhook_url: str, timeout: float) -> None:
        self._url = webhook_url
        self._timeout = timeout
        self._refusal: str | None = None
        try:
            self._shown = redact_url(webhook_url)
            parts = urlsplit(webhook_url)
        except ValueError:
            self._shown, self._refusal = "***", "slack_webhook_url is not a valid URL"
            return
        # The URL is the credential: in clear text anyone on the path could post as us.
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            self._refusal = (f"refusing to send the Slack webhook URL over plain http to {self._shown}; "
                             "use an https:// webhook URL")

    def send(self, message: Message) -> None:
        if self._refusal:
            raise DeliveryError(self._refusal)
        try:
            response = requests.post(self._url, json=self.payload(message), timeout=self._timeout)
        except requests.ReadTimeout as exc:
            # The message was sent and may have been posted: trying again could post it twice.
            raise DeliveryError(f"{type(exc).__name__} posting to {self._shown}: no answer within "
                                f"{self._timeout:g}s; not retried, the message may have been delivered") from None
        except (requests.Timeout, requests.ConnectionError) as exc:  # never reached the receiver: safe to retry
            raise DeliveryError(f"{type(exc).__name__} posting to {self._shown}: {_reason(exc)}",
                                retryable=True) from None
        except requests.RequestException as exc:
            raise DeliveryError(f"{type(exc).__name__} posting to {self._shown}: {_reason(exc)}") from None
        if 200 <= response.status_code < 300:
            return
        body = " ".join(response.text.split())[:200]
        error = f"HTTP {response.status_code} from {self._shown}: {body or response.reason}"
        if response.status_code == 429:
            raise DeliveryError(error, retryable=True,
                                retry_after=_parse_retry_after(response.headers.get("Retry-After")))
        raise DeliveryError(error, retryable=response.status_code >= 500)

    @staticmethod
    def payload(message: Message) -> dict[str, Any]:
        """Block Kit, with a plain ``text`` fallback for notifications and old clients."""

        def escape(value: str) -> str:  # Slack's mrkdwn treats these three as markup
            return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        icon = {"info": ":white_check_mark:", "warning": ":warning:", "error": ":rotating_light:"}[message.severity]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150], "emoji": True}},
        ]
        if message.text:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape(message.text)[:3000]}})
        fields = [{"type": "mrkdwn", "text": f"*{label}*\n{escape(value)}"[:2000]} for label, value in message.fields]
        for start in range(0, len(fields), 10):  # Slack allows ten fields per section
            blocks.append({"type": "section", "fields": fields[start:start + 10]})
        if message.rollback_reason:
            blocks.append({"type": "section",
                           "text": {"type": "mrkdwn",
                                    "text": f"*Rollback reason*\n{escape(message.rollback_reason)}"[:3000]}})
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn",
             "text": f"{icon} {message.severity} | run `{escape(message.run_id)}` | event `{message.event}`"},
        ]})
        return {"text": message.subject, "blocks": blocks}


class SnsChannel:
    """SNS ``publish``; boto3 is imported on first use so the local path never loads it."""

    name = "sns"

    _THROTTLING = {"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                   "TooManyRequestsException", "KMSThrottlingException"}

    def __init__(self, topic_arn: str, region: str, timeout: float) -> None:
        self._topic_arn = topic_arn
        arn_parts = topic_arn.split(":")
        # A topic can only be published to in its own region, whatever aws_region says.
        self._region = arn_parts[3] if len(arn_parts) > 5 and arn_parts[3] else region
        self._timeout = timeout
        self._client: Any = None

    def _sns(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("sns", region_name=self._region, config=Config(
                connect_timeout=self._timeout, read_timeout=self._timeout,
                retries={"total_max_attempts": 1},  # the Notifier retries; two layers would multiply
            ))
        return self._client

    def send(self, message: Message) -> None:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError as BotoConnectionError,
            ConnectTimeoutError,
            ReadTimeoutError,
        )

        request: dict[str, Any] = {
            "TopicArn": self._topic_arn,
            "Subject": message.subject,
            "Message": message.plain_text,
            "MessageAttributes": {
                "severity": {"DataType": "String", "StringValue": message.severity},
                "event": {"DataType": "String", "StringValue": message.event},
            },
        }
        if self._topic_arn.endswith(".fifo"):
            # FIFO topics require these; the deduplication id also makes our retries idempotent.
            request["MessageGroupId"] = re.sub(r"[^A-Za-z0-9_-]", "-", message.run_id)[:128] or "run"
            request["MessageDeduplicationId"] = hashlib.sha256(
                f"{message.run_id}:{message.event}".encode()).hexdigest()
        try:
            self._sns().publish(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            retryable = code in self._THROTTLING or status == 429 or status >= 500
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {code}: {error.get('Message', '')}",
                                retryable=retryable) from None
        except ReadTimeoutError as exc:  # SNS may have published it: a retry could publish it twice
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {exc}; not retried, the message may "
                                f"have been delivered") from None
        except (ConnectTimeoutError, BotoConnectionError) as exc:
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {exc}", retryable=True) from None
        except BotoCoreError as exc:  # no credentials, bad parameters: trying again will not help
            raise DeliveryError(f"SNS publish to {self._topic_arn} failed: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class SmtpSettings:
    """SMTP settings from the environment, where CI systems keep mail credentials."""

    host: str
    port: int
    security: str  # ssl | starttls | none
    user: str | None
    password: str | None = field(repr=False)  # a logged repr must not carry it
    sender: str = "mlops-pipeline@localhost"

    _PORT_FOR = {"ssl": 465, "starttls": 587, "none": 25}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SmtpSettings":
        """Raises ValueError naming the variable when a value is unusable."""
        host = (env.get("SMTP_HOST") or "").strip()
        if not host:
            raise ValueError("SMTP_HOST is not set")
        raw_security = (env.get("SMTP_SECURITY") or "").strip().lower()
        if raw_security and raw_security not in cls._PORT_FOR:
            raise ValueError(f"SMTP_SECURITY={raw_security!r}: expected ssl, starttls or none")
        raw_port = (env.get("SMTP_PORT") or "").strip()
        if raw_port:
            try:
                port = int(raw_port)
            except ValueError:
                raise ValueError(f"SMTP_PORT={raw_port!r}: expected a port number") from None
            if not 0 < port < 65536:
                raise ValueError(f"SMTP_PORT={raw_port!r}: expected a port number between 1 and 65535")
        else:
            port = cls._PORT_FOR[raw_security or "none"]
        security = raw_security or {465: "ssl", 587: "starttls"}.get(port, "none")
        user = env.get("SMTP_USER") or None
        sender = (env.get("SMTP_FROM") or "").strip()
        if not sender:
            sender = user if user and "@" in user else "mlops-pipeline@localhost"
        return cls(host, port, security, user, password=env.get("SMTP_PASSWORD") or None, sender=sender)


class EmailChannel:
    """Plain-text email over SMTP; the password only ever travels encrypted (or to loopback)."""

    name = "email"

    def __init__(self, env: Mapping[str, str], recipients: Iterable[str], timeout: float) -> None:
        self._recipients = [r for r in recipients if r]
        self._timeout = timeout
        self.settings: SmtpSettings | None = None
        self.settings_error: str | None = None
        try:
            self.settings = SmtpSettings.from_env(env)
        except ValueError as exc:
            self.settings_error = f"email not sent: {exc}"

    def _refusal(self, settings: SmtpSettings) -> str | None:
        if settings.user and settings.password and settings.security == "none" and not _is_loopback(settings.host):
            return (f"refusing to send SMTP_PASSWORD unencrypted to {settings.host}:{settings.port}; "
                    "set SMTP_SECURITY=ssl or starttls (or use a loopback relay)")
        return None

    def _email(self, message: Message, settings: SmtpSettings) -> EmailMessage:
        email = EmailMessage()
        email["From"] = settings.sender
        email["To"] = ", ".join(self._recipients)
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=True)
        # An explicit domain: make_msgid's default asks DNS for our FQDN, which can hang.
        email["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or "localhost")
        email["X-MLOps-Event"] = message.event
        email["X-MLOps-Severity"] = message.severity
        email["X-MLOps-Run"] = message.run_id
        email.set_content(message.plain_text)
        return email

    def send(self, message: Message) -> None:
        if self.settings is None:
            raise DeliveryError(self.settings_error or "email not sent: SMTP is not configured")
        settings = self.settings
        refusal = self._refusal(settings)
        if refusal:
            raise DeliveryError(refusal)
        where = f"{settings.host}:{settings.port} ({settings.security})"
        try:
            self._deliver(self._email(message, settings), settings)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login as {settings.user} rejected by {where}: {self._reply(exc)}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"all recipients refused by {where}: {', '.join(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            # SMTP's 4xx replies mean "try again later", 5xx mean "never".
            raise DeliveryError(f"SMTP error from {where}: {self._reply(exc)}",
                                retryable=400 <= exc.smtp_code < 500) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where}: {exc} (does the server offer STARTTLS?)") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise DeliveryError(f"{where} disconnected: {exc}", retryable=True) from None
        except ssl.SSLError as exc:  # a certificate or protocol mismatch will not fix itself
            raise DeliveryError(f"TLS with {where} failed: {exc}") from None
        except smtplib.SMTPException as exc:  # a protocol problem: the same server will say the same again
            raise DeliveryError(f"SMTP error from {where}: {type(exc).__name__}: {exc}") from None
        except OSError as exc:  # refused, unreachable, timed out: the network may recover
            raise DeliveryError(f"cannot reach {where}: {type(exc).__name__}: {exc}", retryable=True) from None

    def _deliver(self, email: EmailMessage, settings: SmtpSettings) -> None:
        context = ssl.create_default_context()  # verifies the certificate and host name
        if settings.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port, timeout=self._timeout,
                                                  context=context)
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=self._timeout)
        try:
            if settings.security == "starttls":
                smtp.ehlo()
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            refused = smtp.send_message(email, from_addr=settings.sender, to_addrs=self._recipients)
            if refused:
                log.warning("email: %d recipient(s) refused: %s", len(refused), ", ".join(refused))
        finally:
            # Once the message is accepted a failing QUIT must not look like a failed delivery
            # (a retry would send it twice), so QUIT errors are swallowed here.
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    @staticmethod
    def _reply(exc: smtplib.SMTPResponseException) -> str:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {' '.join(text.split())}"


# --------------------------------------------------------------------------- the notifier


class Notifier:
    """Sends each configured event once per run to each configured channel, and records the outcome."""

    def __init__(self, config: PipelineConfig, run_id: str, env: Mapping[str, str] | None = None,
                 backoff_seconds: float = 1.0) -> None:
        env = os.environ if env is None else env
        self.config = config
        self.run_id = run_id
        self.backoff_seconds = backoff_seconds
        self.sleep: Callable[[float], None] = time.sleep  # a seam: tests record delays instead of waiting
        self.deliveries: list[dict[str, Any]] = []
        self._delivered: set[tuple[str, str]] = set()
        self._failed: set[tuple[str, str]] = set()
        self._down: set[str] = set()  # channels whose last delivery failed after its retries
        self._lock = threading.Lock()
        self._secrets = SecretScrubber()
        self._channels: list[Channel] = []

        timeout = config.notification_timeout_seconds
        if config.slack_webhook_url is not None:
            url = config.slack_webhook_url.get_secret_value()
            self._secrets.add_webhook(url)
            _LIBRARY_LOGS.protect(url)
            self._channels.append(SlackChannel(url, timeout))
        if config.sns_topic_arn:
            self._channels.append(SnsChannel(config.sns_topic_arn, config.aws_region, timeout))
        if config.email_recipients and (env.get("SMTP_HOST") or "").strip():
            self._secrets.add(env.get("SMTP_PASSWORD"))
            email = EmailChannel(env, config.email_recipients, timeout)
            if email.settings_error:
                log.warning("%s", self._secrets.scrub(email.settings_error))
            elif env.get("SMTP_PASSWORD") and not env.get("SMTP_USER"):
                log.warning("SMTP_PASSWORD is set but SMTP_USER is not: email is sent without logging in")
            self._channels.append(email)
        elif config.email_recipients:
            log.warning("email_recipients is set but SMTP_HOST is not: no email notifications will be sent")

        unknown = [event for event in config.notify_events if event not in EVENTS]
        if unknown:
            log.warning("notify_events has unknown event(s) %s; known: %s", ", ".join(unknown), ", ".join(EVENTS))

    @property
    def channels(self) -> list[str]:
        return [channel.name for channel in self._channels]

    @property
    def strict_failure(self) -> bool:
        """A notification counts as lost only if it never got through, even after a later notify call."""
        return self.config.notify_strict and bool(self._failed - self._delivered)

    def notify(self, event: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
        """Never raises: a notification problem must not change what the pipeline did."""
        try:
            return self._notify(event, summary)
        except Exception as exc:  # a bug here must not fail a deployment
            log.warning("notification %s not sent: %s", event, self._scrub_error(exc))
            return []

    def _notify(self, event: str, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
        if event not in EVENTS:
            log.warning("unknown notification event %r ignored; known: %s", event, ", ".join(EVENTS))
            return []
        if event not in self.config.notify_events or not self._channels:
            return []
        message = Message.build(event, summary if isinstance(summary, Mapping) else {}, self.run_id)
        results: list[dict[str, Any]] = []
        with self._lock:  # the delivered-set check and the send must not interleave
            for channel in self._channels:
                key = (event, channel.name)
                if key in self._delivered:
                    log.debug("%s already sent via %s in run %s", event, channel.name, self.run_id)
                    continue
                record = self._deliver(channel, message)
                (self._delivered if record["delivered"] else self._failed).add(key)
                self.deliveries.append(record)
                results.append(record)
        return results

    def _deliver(self, channel: Channel, message: Message) -> dict[str, Any]:
        # A channel that already failed every retry in this run gets one try per event: an outage
        # costs one timeout per event, not a full round of backoff each time.
        max_attempts = 1 if channel.name in self._down else 1 + self.config.notification_retries
        attempts = 0
        error: str | None = None
        while True:
            attempts += 1
            retry_after: float | None = None
            try:
                channel.send(message)
                error = None
                break
            except DeliveryError as exc:
                error, retryable, retry_after = self._scrub(str(exc)), exc.retryable, exc.retry_after
            except Exception as exc:  # an unexpected library error: record it, do not retry blindly
                error, retryable = self._scrub_error(exc), False
            if not retryable or attempts >= max_attempts:
                break
            delay = retry_after if retry_after is not None else min(
                self.backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            log.info("%s via %s: attempt %d failed (%s); retrying in %.2fs",
                     message.event, channel.name, attempts, error, delay)
            self.sleep(delay)
        delivered = error is None
        (self._down.discard if delivered else self._down.add)(channel.name)
        if delivered:
            log.info("notification %s sent via %s (%d attempt%s)", message.event, channel.name, attempts,
                     "" if attempts == 1 else "s")
        else:
            log.warning("notification %s via %s not delivered after %d attempt%s: %s", message.event,
                        channel.name, attempts, "" if attempts == 1 else "s", error)
        return {
            "channel": channel.name,
            "event": message.event,
            "delivered": delivered,
            "attempts": attempts,
            "error": error,
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def _scrub(self, text: str) -> str:
        text = self._secrets.scrub(text)
        return text if len(text) <= _ERROR_TEXT_LIMIT else text[: _ERROR_TEXT_LIMIT - 3] + "..."

    def _scrub_error(self, exc: BaseException) -> str:
        return self._scrub(f"{type(exc).__name__}: {exc}")
