"""Telling people what a run did: Slack, SNS and email, without ever breaking or stalling the run.

A notification is a side effect of the pipeline, not part of its result: a
webhook that is down, a throttled topic or a mail server that refuses us is
logged as a warning and recorded in ``Notifier.deliveries``; it never raises
into the orchestrator, and it never holds the run up: delivery happens in the
background, and the whole run spends at most ``notification_budget_seconds``
on it (``Notifier.close`` at the end of the run waits for the queue within
that budget). Only ``notify_strict`` turns a lost notification into a failed
run, and the orchestrator decides that from ``Notifier.strict_failure``.

Modules: ``message`` (what an event says), ``channels`` (Slack, SNS, email:
one attempt each), ``notifier`` (queue, retries, budget, records), ``budget``
and ``pipeline.redaction`` (secrets never reach logs, deliveries or error text).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are loaded on first use (PEP 562): a run record imports ``message`` alone, and the commands that only
# read the store must not pay for the channels' HTTP, SMTP and AWS clients.
_MODULE_OF = {
    "NotificationBudget": "pipeline.notifications.budget",
    **dict.fromkeys(("MAX_RETRY_AFTER_SECONDS", "Channel", "DeliveryError", "EmailChannel", "SlackChannel",
                     "SmtpSettings", "SnsChannel"), "pipeline.notifications.channels"),
    **dict.fromkeys(("EVENTS", "SNS_SUBJECT_LIMIT", "Message", "severity_for"), "pipeline.notifications.message"),
    **dict.fromkeys(("MAX_BACKOFF_SECONDS", "Notifier"), "pipeline.notifications.notifier"),
    "SecretScrubber": "pipeline.redaction",
}

if TYPE_CHECKING:
    from pipeline.notifications.budget import NotificationBudget
    from pipeline.notifications.channels import (
        MAX_RETRY_AFTER_SECONDS,
        Channel,
        DeliveryError,
        EmailChannel,
        SlackChannel,
        SmtpSettings,
        SnsChannel,
    )
    from pipeline.notifications.message import EVENTS, SNS_SUBJECT_LIMIT, Message, severity_for
    from pipeline.notifications.notifier import MAX_BACKOFF_SECONDS, Notifier
    from pipeline.redaction import SecretScrubber

__all__ = [
    "EVENTS",
    "MAX_BACKOFF_SECONDS",
    "MAX_RETRY_AFTER_SECONDS",
    "SNS_SUBJECT_LIMIT",
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "Message",
    "NotificationBudget",
    "Notifier",
    "SecretScrubber",
    "SlackChannel",
    "SmtpSettings",
    "SnsChannel",
    "severity_for",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
