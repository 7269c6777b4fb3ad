"""Keeping secrets out of logs, results and error messages: one scrubber for the whole project.

Secrets are never logged on purpose; scrubbing is the second line of defence, for a library that
puts a URL in an exception message (``requests`` does, with the full webhook URL) or logs a request
path (urllib3 does, and a Slack webhook's path is the credential).
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

# Environment variables that hold secrets: their values are scrubbed wherever text leaves the run.
SECRET_ENV_VARS = ("SLACK_WEBHOOK_URL", "SMTP_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                   "AWS_SESSION_TOKEN", "MLOPS_ENDPOINT_TOKEN", "MLOPS_STORE_URL", "PGPASSWORD")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")


def scrub_known_secrets(text: str) -> str:
    """AWS key ids by their shape, and the values of ``SECRET_ENV_VARS`` (8 characters or more)."""
    text = _AWS_KEY_ID.sub("***", text)
    for name in SECRET_ENV_VARS:
        secret = os.environ.get(name)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    password = url_password(os.environ.get("MLOPS_STORE_URL"))
    if password:
        text = text.replace(password, "***")
    return text


def url_password(url: str | None) -> str | None:
    """The password a URL carries (``postgresql://user:PASSWORD@host/db``), decoded, or None."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def redact_password(url: str) -> str:
    """A store URL as it may be shown: ``postgresql://user:***@host:5432/db`` (everything but the password)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = f"{parts.username}:***@" if parts.username else ":***@"
        netloc = user + (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    except ValueError:  # an unreadable URL: say nothing of it
        return "<an unreadable URL>"
    return parts._replace(netloc=netloc).geturl()


def redact_url(url: str) -> str:
    """Keep scheme and host so a user can tell which webhook it was; drop the secret path."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket: say nothing of it
        return "***"
    if not parts.scheme or not host:
        return "***"
    return f"{parts.scheme}://{host}/***"



class SecretScrubber:
    """Replaces known secrets in text, longest first so a URL is hidden before its path."""

    def __init__(self, secrets: Iterable[str | None] = (), min_length: int = 1) -> None:
        self._replacements: dict[str, str] = {}
        self._lock = threading.Lock()
        self._min_length = min_length  # a two-letter "secret" would scrub half the log
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None, shown: str = "***") -> None:
        if not secret or len(secret) < self._min_length:
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

    def __bool__(self) -> bool:
        return bool(self._replacements)

    def scrub(self, text: str) -> str:
        with self._lock:
            replacements = sorted(self._replacements.items(), key=lambda item: len(item[0]), reverse=True)
        for secret, shown in replacements:
            text = text.replace(secret, shown)
        return text


class LibraryLogScrubber(logging.Filter):
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


LIBRARY_LOGS = LibraryLogScrubber()
