"""The Notifier: notifications go out in the background, within one time budget per run.

``notify`` only builds the message and queues it; one daemon worker thread
delivers the queue in order, so a slow or throttling receiver never delays
training, the gate or a deployment. ``close`` is the one place the run waits:
until the queue is empty, never longer than what is left of the run's
``notification_budget_seconds`` (see ``budget.py`` for what is charged).
Whatever is still queued or in flight then is recorded as not delivered, and
the worker, being a daemon, cannot keep the process alive.
"""
from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline import interrupts
from pipeline.config import PipelineConfig
from pipeline.logs import log_phase
from pipeline.notifications.budget import NotificationBudget
from pipeline.notifications.channels import Channel, DeliveryError, EmailChannel, SlackChannel, SnsChannel
from pipeline.notifications.message import EVENTS, Message, RunSummary
from pipeline.redaction import LIBRARY_LOGS, SecretScrubber

log = logging.getLogger("pipeline.notifications")

MAX_BACKOFF_SECONDS = 30.0
_ERROR_TEXT_LIMIT = 300  # enough to diagnose, short enough for a results JSON


@dataclass(eq=False)  # identity matters: the worker checks that its delivery was not given up meanwhile
class _Delivery:
    """One message for one channel, queued or in flight."""

    message: Message
    channel: Channel
    attempts: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.message.event, self.channel.name


class Notifier:
    """Sends each configured event once per run to each configured channel, and records the outcome.

    Never raises into the run; only ``notify_strict`` turns a lost notification
    into a failed run, which the orchestrator reads from ``strict_failure``.
    """

    def __init__(self, config: PipelineConfig, run_id: str, env: Mapping[str, str] | None = None,
                 backoff_seconds: float = 1.0) -> None:
        self.config = config
        self.run_id = run_id
        self.backoff_seconds = backoff_seconds
        self.budget = NotificationBudget(config.notification_budget_seconds)
        self._gave_up = threading.Event()  # set when close() abandons the queue: cuts short a backoff wait
        self.sleep: Callable[[float], Any] = self._gave_up.wait  # a seam: tests record delays instead of waiting
        self._records: list[dict[str, Any]] = []
        self._delivered: set[tuple[str, str]] = set()
        self._failed: set[tuple[str, str]] = set()
        self._down: set[str] = set()  # channels whose last delivery failed after its retries
        self._pending: deque[_Delivery] = deque()  # the head is the one in flight
        self._changed = threading.Condition()  # guards everything above that the worker touches
        self._worker: threading.Thread | None = None
        self._closed = False
        self._secrets = SecretScrubber()
        self._channels = self._configured_channels(config, os.environ if env is None else env)
        unknown = [event for event in config.notify_events if event not in EVENTS]
        if unknown:
            log.warning("notify_events has unknown event(s) %s; known: %s", ", ".join(unknown), ", ".join(EVENTS))

    def _configured_channels(self, config: PipelineConfig, env: Mapping[str, str]) -> list[Channel]:
        channels: list[Channel] = []
        if config.slack_webhook_url is not None:
            url = config.slack_webhook_url.get_secret_value()
            self._secrets.add_webhook(url)
            LIBRARY_LOGS.protect(url)
            channels.append(SlackChannel(url))
        if config.sns_topic_arn:
            channels.append(SnsChannel(config.sns_topic_arn, config.aws_region))
        if config.email_recipients and (env.get("SMTP_HOST") or "").strip():
            self._secrets.add(env.get("SMTP_PASSWORD"))
            email = EmailChannel(env, config.email_recipients)
            if email.settings_error:
                log.warning("%s", self._secrets.scrub(email.settings_error))
            elif env.get("SMTP_PASSWORD") and not env.get("SMTP_USER"):
                log.warning("SMTP_PASSWORD is set but SMTP_USER is not: email is sent without logging in")
            channels.append(email)
        elif config.email_recipients:
            log.warning("email_recipients is set but SMTP_HOST is not: no email notifications will be sent")
        return channels

    @property
    def channels(self) -> list[str]:
        return [channel.name for channel in self._channels]

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Outcomes recorded so far, in order; complete and final once ``close`` has returned."""
        with self._changed:
            return list(self._records)

    @property
    def strict_failure(self) -> bool:
        """A notification counts as lost only if it never got through, even after a later notify call.

        The verdict needs every notification settled, so asking for it closes
        the notifier (waiting within the budget) if that has not happened yet.
        """
        self.close()
        with self._changed:
            return self.config.notify_strict and bool(self._failed - self._delivered)

    # ----------------------------------------------------------------- the caller's side
    def notify(self, event: str, summary: RunSummary) -> None:
        """Queue the event and return at once; after ``close`` it is delivered before returning.

        Never raises: a notification problem must not change what the pipeline did.
        """
        try:
            if self._enqueue(event, summary) and self._closed:
                self._settle()  # nobody will call close() again: wait here, within what is left of the budget
        except Exception as exc:  # a bug here must not fail a deployment
            log.warning("notification %s not sent: %s", event, self._scrub(f"{type(exc).__name__}: {exc}"))

    def close(self) -> list[dict[str, Any]]:
        """Wait for the queue to empty, never past the budget; returns the final deliveries.

        Called once at the end of the run, after the last notify. Calling it
        again is harmless and returns the same records.
        """
        with self._changed:
            self._closed = True
            self._changed.notify_all()  # an idle worker may now exit
        self._settle()
        return self.deliveries

    def _enqueue(self, event: str, summary: RunSummary) -> bool:
        if event not in EVENTS:
            log.warning("unknown notification event %r ignored; known: %s", event, ", ".join(EVENTS))
            return False
        if event not in self.config.notify_events or not self._channels:
            return False
        message = Message.build(event, summary)
        with self._changed:
            queued = [_Delivery(message, channel) for channel in self._channels
                      if (event, channel.name) not in self._delivered]
            self._pending.extend(queued)
            if queued and self._worker is None:
                # The worker logs with the run's context (its run id) like the rest of the run.
                self._worker = threading.Thread(target=contextvars.copy_context().run, args=(self._work,),
                                                name=f"notifications-{self.run_id}", daemon=True)
                self._worker.start()
            self._changed.notify_all()
        return bool(queued)

    def _settle(self) -> None:
        deadline = time.monotonic() + self.budget.remaining()  # also bounds the wait if the worker died
        with self._changed:
            try:
                while self._pending:
                    left = min(deadline - time.monotonic(), self.budget.remaining())
                    if left <= 0:
                        break
                    if interrupts.pending():  # Ctrl-C or SIGTERM while the run records how it ended
                        self._give_up_on_pending("interrupted while waiting for notifications")
                        break
                    self._changed.wait(min(left, 0.1))  # in slices: an interrupt noted meanwhile is seen soon
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM while waiting: stop waiting, say so, let it unwind
                self._give_up_on_pending("interrupted while waiting for notifications")
                raise
            if self._pending:
                self._give_up_on_pending(self.budget.exhausted_text)

    def _give_up_on_pending(self, why: str) -> None:
        """Record what is still queued or in flight as not delivered; the worker's late results are dropped."""
        self.budget.exhaust()
        self._gave_up.set()
        lost = [delivery for delivery in self._pending if delivery.key not in self._delivered]
        self._pending.clear()
        for delivery in lost:
            error = why
            if delivery.attempts:
                error += f" during attempt {delivery.attempts}; the message may still arrive"
            self._failed.add(delivery.key)
            self._records.append(self._record(delivery, error))
        if lost:
            log.warning("%s: %s not delivered", why, ", ".join(f"{d.message.event} via {d.channel.name}" for d in lost))
        self._changed.notify_all()

    # ----------------------------------------------------------------- the worker's side
    def _work(self) -> None:
        with log_phase("notifications"):
            self._deliver_queue()

    def _deliver_queue(self) -> None:
        while True:
            with self._changed:
                while not self._pending:
                    if self._closed:
                        self._worker = None
                        return
                    self._changed.wait()
                delivery = self._pending[0]
                if delivery.key in self._delivered:  # queued twice; the first one got through
                    self._pending.popleft()
                    self._changed.notify_all()
                    continue
                one_try = delivery.channel.name in self._down
            with self.budget.charging():
                try:
                    error = self._attempt(delivery, one_try)
                except Exception as exc:  # a bug must not stop the worker and leave the queue waiting
                    error = self._scrub(f"{type(exc).__name__}: {exc}")
            with self._changed:
                if not self._pending or self._pending[0] is not delivery:  # close() gave up on it meanwhile
                    log.debug("notification %s via %s finished after the budget ran out (%s); not recorded",
                              delivery.message.event, delivery.channel.name, error or "delivered")
                    continue
                self._pending.popleft()
                self._finish(delivery, error)
                self._changed.notify_all()

    def _attempt(self, delivery: _Delivery, one_try: bool) -> str | None:
        """Send with retries inside the budget; None when delivered, else why not."""
        # A channel that already failed every retry in this run gets one try per event: an outage
        # costs one timeout per event, not a full round of backoff each time.
        max_attempts = 1 if one_try else 1 + self.config.notification_retries
        error: str | None = None
        while True:
            left = self.budget.remaining()
            if left <= 0:
                return self.budget.exhausted_text + (f"; last error: {error}" if error else "")
            delivery.attempts += 1
            try:
                delivery.channel.send(delivery.message, min(self.config.notification_timeout_seconds, left))
                return None
            except DeliveryError as exc:
                error, retryable, retry_after = self._scrub(str(exc)), exc.retryable, exc.retry_after
            except Exception as exc:  # an unexpected library error: record it, do not retry blindly
                error, retryable, retry_after = self._scrub(f"{type(exc).__name__}: {exc}"), False, None
            if not retryable or delivery.attempts >= max_attempts:
                return error if self.budget.remaining() > 0 else f"{error}; {self.budget.exhausted_text}"
            delay = retry_after if retry_after is not None else min(
                self.backoff_seconds * 2 ** (delivery.attempts - 1), MAX_BACKOFF_SECONDS)
            left = self.budget.remaining()
            if delay >= left:  # waiting would spend the budget and leave no time to try again
                wait = "Retry-After" if retry_after is not None else "backoff"
                return f"{error}; not retried: {wait} of {delay:g}s is beyond the {left:.1f}s left of the {self.budget}"
            log.info("%s via %s: attempt %d failed (%s); retrying in %.2fs",
                     delivery.message.event, delivery.channel.name, delivery.attempts, error, delay)
            self.sleep(delay)

    def _finish(self, delivery: _Delivery, error: str | None) -> None:
        """Called with the lock held: the outcome and the channel's state change together."""
        event, channel = delivery.key
        attempts = f"{delivery.attempts} attempt{'' if delivery.attempts == 1 else 's'}"
        if error is None:
            self._delivered.add(delivery.key)
            self._down.discard(channel)
            log.info("notification %s sent via %s (%s)", event, channel, attempts)
        else:
            self._failed.add(delivery.key)
            self._down.add(channel)
            log.warning("notification %s via %s not delivered after %s: %s", event, channel, attempts, error)
        self._records.append(self._record(delivery, error))

    @staticmethod
    def _record(delivery: _Delivery, error: str | None) -> dict[str, Any]:
        return {
            "channel": delivery.channel.name,
            "event": delivery.message.event,
            "delivered": error is None,
            "attempts": delivery.attempts,
            "error": error,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _scrub(self, text: str) -> str:
        text = self._secrets.scrub(text)
        return text if len(text) <= _ERROR_TEXT_LIMIT else text[: _ERROR_TEXT_LIMIT - 3] + "..."
