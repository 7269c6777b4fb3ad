"""Slack incoming webhooks: one POST of a Block Kit message per attempt."""
from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from pipeline.notifications.channels.base import DeliveryError, is_loopback
from pipeline.notifications.message import Message
from pipeline.redaction import redact_url

MAX_RETRY_AFTER_SECONDS = 30.0  # a server asking for longer would stall the pipeline; we give up sooner


def parse_retry_after(value: str | None) -> float | None:
    """Seconds (or an HTTP date) to wait, capped; the Notifier also caps it by the run's budget."""
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
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _reason(exc: requests.RequestException) -> str:
    """The useful end of a requests error; the rest repeats the URL (scrubbed later regardless)."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    text = str(getattr(inner, "reason", None) or inner)
    return text.split("): ", 1)[1] if "): " in text else text


class SlackChannel:
    """Slack incoming webhook: one POST of a Block Kit message."""

    name = "slack"

    def __init__(self, webhook_url: str) -> None:
        self._url = webhook_url
        self._refusal: str | None = None
        try:
            self._shown = redact_url(webhook_url)
            parts = urlsplit(webhook_url)
        except ValueError:
            self._shown, self._refusal = "***", "slack_webhook_url is not a valid URL"
            return
        # The URL is the credential: in clear text anyone on the path could post as us.
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            self._refusal = (f"refusing to send the Slack webhook URL over plain http to {self._shown}; "
                             "use an https:// webhook URL")

    def send(self, message: Message, timeout: float) -> None:
        if self._refusal:
            raise DeliveryError(self._refusal)
        try:
            response = requests.post(self._url, json=self.payload(message), timeout=timeout)
        except requests.ReadTimeout as exc:
            # The message was sent and may have been posted: trying again could post it twice.
            raise DeliveryError(f"{type(exc).__name__} posting to {self._shown}: no answer within "
                                f"{timeout:.3g}s; not retried, the message may have been delivered") from None
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
                                retry_after=parse_retry_after(response.headers.get("Retry-After")))
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
