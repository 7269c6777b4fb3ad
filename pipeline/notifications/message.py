"""What an event says: one ``Message`` per event, built from a ``RunSummary`` of the run.

Every channel gets the same ``Message`` and renders it its own way: Block Kit
for Slack, a subject and plain text for SNS and email.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunSummary:
    """A snapshot of the run for one notification: immutable, because it is delivered in the
    background while the run goes on."""

    run_id: str
    status: str
    mode: str | None = None
    backend: str | None = None
    training_job: str | None = None
    gate_decision: str | None = None
    gate_metric: str | None = None
    gate_value: float | None = None
    gate_threshold: float | None = None
    gate_minimum: float | None = None
    gate_reason: str | None = None
    champion: str | None = None  # the comparison with the serving version, in one sentence
    endpoint_name: str | None = None
    endpoint_url: str | None = None
    version: str | None = None
    previous_version: str | None = None
    final_state: str | None = None
    rollback_reason: str | None = None
    duration_seconds: float | None = None
    message: str | None = None


EVENTS: tuple[str, ...] = (
    "pipeline_started",
    "gate_decision",
    "deployment_succeeded",
    "tests_failed",
    "rolled_back",
    "rollback_failed",
    "pipeline_finished",
    "drift_detected",  # `monitor`: live inputs or predictions moved away from the training baseline
    "live_accuracy_breach",  # `monitor --labels`: live accuracy confidently below minimum_accuracy
    "approval_needed",  # approval_required: the gate passed a model nobody has approved yet
)

SNS_SUBJECT_LIMIT = 100  # SNS rejects longer subjects; email uses the same subject

_TITLES = {
    "pipeline_started": "Pipeline started",
    "gate_decision": "Gate decision",
    "deployment_succeeded": "Deployment succeeded",
    "tests_failed": "Endpoint tests failed",
    "rolled_back": "Deployment rolled back",
    "rollback_failed": "Rollback failed",
    "pipeline_finished": "Pipeline finished",
    "drift_detected": "Drift detected",
    "live_accuracy_breach": "Live accuracy below the minimum",
    "approval_needed": "A model waits for approval",
}
_WARNING_OUTCOMES = {"held", "hold", "rejected", "reject"}


def severity_for(event: str, summary: RunSummary) -> str:
    """error when something is broken and needs a person, warning when the pipeline protected itself."""
    status = (summary.status or "").lower()
    final_state = (summary.final_state or "").lower()
    decision = (summary.gate_decision or "").lower()
    if event == "rollback_failed" or status == "failed" or final_state == "rollback_failed":
        return "error"
    if event in ("tests_failed", "rolled_back", "drift_detected", "live_accuracy_breach", "approval_needed") or \
            status in _WARNING_OUTCOMES or final_state == "rolled_back":
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


def _gate_line(summary: RunSummary) -> str | None:
    if not summary.gate_decision:
        return None
    line = f"{summary.gate_decision}: {summary.gate_metric or 'metric'}"
    if summary.gate_value is not None:
        line += f" {_number(summary.gate_value)}"
    limits = []
    if summary.gate_threshold is not None:
        limits.append(f"threshold {_number(summary.gate_threshold)}")
    if summary.gate_minimum is not None:
        limits.append(f"minimum {_number(summary.gate_minimum)}")
    if limits:
        line += f" ({', '.join(limits)})"
    if summary.gate_reason:
        line += f" - {summary.gate_reason}"
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
    def build(cls, event: str, summary: RunSummary) -> Message:
        status = _text(summary.status)
        title = _TITLES.get(event, event.replace("_", " ").capitalize())
        if event == "gate_decision" and summary.gate_decision:
            title += f": {summary.gate_decision}"
        elif event == "pipeline_finished" and status:
            title += f": {status}"
        endpoint_name = _text(summary.endpoint_name)
        if endpoint_name:
            title += f" - {endpoint_name}"

        endpoint = endpoint_name
        endpoint_url = _text(summary.endpoint_url)
        if endpoint_url:
            endpoint = f"{endpoint} ({endpoint_url})" if endpoint else endpoint_url
        version = _text(summary.version)
        previous = _text(summary.previous_version)
        if version and previous and previous != version:
            version = f"{version} (previous {previous})"
        elif not version and previous:
            version = f"previous {previous}"
        backend = " ".join(filter(None, [_text(summary.backend),
                                         f"({summary.mode})" if summary.mode else None])) or None
        candidates = (
            ("Status", status),
            ("Gate", _gate_line(summary)),
            ("Champion", _text(summary.champion)),
            ("Endpoint", endpoint),
            ("Version", version),
            ("Final state", _text(summary.final_state)),
            ("Duration", _duration(summary.duration_seconds)),
            ("Backend", backend),
            ("Training job", _text(summary.training_job)),
        )
        return cls(
            event=event,
            run_id=summary.run_id,
            severity=severity_for(event, summary),
            title=title,
            fields=tuple((label, value) for label, value in candidates if value),
            text=_text(summary.message),
            rollback_reason=_text(summary.rollback_reason),
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
