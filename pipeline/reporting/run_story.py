"""What a run did, in plain words: the verdict the page opens with, and the run's timeline.

``verdict_of`` reads the results through the project's own words (``pipeline.outcomes``: final states,
gate decisions, modes, run statuses), never string literals of its own; ``timeline`` reads the run's
events from the audit trail.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.errors import ExitCode
from pipeline.outcomes import FinalState, Mode, RunStatus, Verdict
from pipeline.reporting.page_values import details, extra, number, parse_time
from pipeline.reporting.results import Results


@dataclass(frozen=True)
class Headline:
    """The first thing the page says: one or two words, their tone, and why."""

    headline: str
    tone: str  # good | warn | bad | info
    reason: str | None
    detail: str | None = None


def verdict_of(results: Results) -> Headline:
    """What happened to the model, in the documented tables' words (the gate's decisions, final states)."""
    error, gate, deployment, rollback = results.error, results.gate, results.deployment, results.rollback
    state = deployment.final_state if deployment else None
    reason = (rollback.reason if rollback else None) or (deployment.reason if deployment else None)
    if state == FinalState.DEPLOYED and error is not None:  # e.g. an undelivered notification with notify_strict on
        return Headline("Deployed, run failed", "bad", error.message,
                       f"{deployment.version} now serves at endpoint {deployment.endpoint_name}")
    if state == FinalState.DEPLOYED:
        return Headline("Deployed", "good", f"{deployment.version} now serves at endpoint {deployment.endpoint_name}",
                       f"The gate passed it ({gate.reason}) and every endpoint test passed." if gate else None)
    if state is not None and FinalState(state).previous_serves:
        serving = deployment.serving_version
        after = {FinalState.KEPT_PREVIOUS: f"the previous version {serving} never stopped serving",
                 FinalState.ROLLED_BACK: f"the previous version {serving} serves again",
                 FinalState.REMOVED: "it was the endpoint's first version, so the endpoint was removed",
                 }[FinalState(state)]
        return Headline("Rolled back", "bad", reason or (error.message if error else None),
                       f"{deployment.version} was not kept ({state}): {after}")
    if state == FinalState.ROLLBACK_FAILED:
        return Headline("Rollback failed", "bad", reason or (error.message if error else None),
                       f"{deployment.version} failed and the previous version could not be verified"
                       + (f"; run: {results.resume_command}" if results.resume_command else ""))
    if state == FinalState.FAILED:
        return Headline("Deployed, tests failed", "bad", reason,
                       f"{deployment.version} stays serving: rollback_on_failure is off")
    if error is not None and error.exit_code == ExitCode.GATE:  # e.g. --mode deployment of a job the gate rejected
        return Headline("Not deployed", "warn", error.message, error.hint)
    if error is not None:
        return Headline("Failed", "bad", error.message, error.hint)
    if gate is not None and gate.decision.stops_the_run:
        never = " A rejected model is never deployed." if gate.decision == Verdict.REJECTED else ""
        return Headline(gate.decision.capitalize(), "warn", gate.reason, f"Nothing was deployed.{never}")
    if gate is not None and gate.decision == Verdict.PENDING_APPROVAL:
        return Headline("Awaiting approval", "info", gate.reason, "Nothing was deployed: approval_required.")
    if gate is not None and gate.decision == Verdict.APPROVED:
        return Headline("Approved", "info", gate.reason, "Nothing was deployed: auto-deploy is off.")
    if gate is not None and results.mode == Mode.TRAINING:
        return Headline("Passed the gate", "good", gate.reason, "Training mode: nothing was deployed.")
    testing = results.phases.testing
    if results.mode == Mode.TESTING and testing is not None:
        passed = testing.overall_status == "passed"
        return Headline("Endpoint tests passed" if passed else "Endpoint tests failed", "good" if passed else "bad",
                       "; ".join(testing.failures) or f"{results.summary.endpoint_version} at "
                                                      f"{results.summary.endpoint_name} passed every check")
    cleanup = results.phases.cleanup
    if cleanup is not None:
        return Headline("Endpoint removed", "info", f"{cleanup.get('endpoint_name')} was stopped and removed "
                                                   f"(it served {cleanup.get('removed_version') or 'nothing'})")
    status = results.pipeline_status or "unknown"
    return Headline(status.capitalize(), "good" if status == RunStatus.SUCCESS else "bad", None)


# --------------------------------------------------------------------------- the timeline
@dataclass(frozen=True)
class Moment:
    at: datetime
    what: str
    detail: str
    tone: str = "info"


def timeline(results: Results, events: Iterable[Mapping[str, Any]]) -> list[Moment]:
    """The run's events from the audit trail, plus the endpoint tests' start and end, oldest first."""
    moments = []
    for event in events:
        if results.run_id and event.get("run_id") != results.run_id:
            continue
        at = parse_time(event.get("at"))
        if at is not None:
            detail = event.get("detail") if isinstance(event.get("detail"), Mapping) else {}
            what, text, tone = _describe_event(str(event.get("kind")), detail)
            moments.append(Moment(at, what, text, tone))
    testing = results.phases.testing
    if testing is not None:
        started, finished = parse_time(extra(testing, "started_at")), parse_time(extra(testing, "finished_at"))
        if started is not None:
            moments.append(Moment(started, "endpoint tests started", _tested_version(results)))
        if finished is not None:
            passed = testing.overall_status == "passed"
            failed = [name for name, check in testing.checks.items() if not check.get("passed")]
            moments.append(Moment(finished, "endpoint tests passed" if passed else "endpoint tests failed",
                                  ", ".join(failed), "good" if passed else "bad"))  # the reasons are above
    return sorted(moments, key=lambda moment: moment.at)


def _tested_version(results: Results) -> str:
    deployment = results.deployment
    version = deployment.version if deployment else results.summary.endpoint_version
    return f"version {version}" if version else ""


def _describe_event(kind: str, detail: Mapping[str, Any]) -> tuple[str, str, str]:
    """A label, a line of detail and a tone for one audit-trail event."""
    get = detail.get
    if kind == "run_started":
        return "run started", f"mode {get('mode')}, backend {get('backend')}", "info"
    if kind == "training_completed":
        return "trained", f"{get('training_job')}: accuracy {number(get('accuracy'))}", "info"
    if kind == "gate_decision":
        decision = str(get("decision"))
        tone = "good" if decision in (Verdict.DEPLOY, Verdict.APPROVED) else "warn"
        return f"gate: {decision}", str(get("reason") or ""), tone
    if kind == "deployment_started":
        previous = get("from_version")
        return "staged", f"{get('to_version')} (replacing {previous})" if previous else \
            f"{get('to_version')} (the endpoint's first version)", "info"
    if kind == "endpoint_started":
        return "endpoint started", f"{get('version')} at {get('url')}", "info"
    if kind == "endpoint_restarted":
        return "endpoint restarted", f"on {get('version')} (its process had died)", "warn"
    if kind.startswith("deployment_"):
        state = kind.removeprefix("deployment_")
        serving = get("serving_version")
        reason = f": {get('reason')}" if get("reason") else ""
        described = {
            FinalState.DEPLOYED: ("switched", f"{serving} serves", "good"),
            FinalState.KEPT_PREVIOUS: ("rolled back", f"before the switch; {serving} kept serving{reason}", "bad"),
            FinalState.ROLLED_BACK: ("rolled back", f"{serving} serves again{reason}", "bad"),
            FinalState.REMOVED: ("rolled back", f"the endpoint was removed (nothing served before){reason}", "bad"),
            FinalState.ROLLBACK_FAILED: ("rollback failed", f"{get('detail') or ''}{reason}", "bad"),
            FinalState.FAILED: ("kept, tests failed", f"{serving} stays serving{reason}", "bad"),
            FinalState.INTERRUPTED: ("interrupted", f"{get('detail') or ''}{reason}", "warn"),
        }
        return described.get(state, (state.replace("_", " "), details(detail), "info"))
    if kind == "bake_interval":
        verdict = str(get("verdict"))
        tone = {"pass": "good", "breach": "bad"}.get(verdict, "warn")
        return f"bake interval {get('interval')}: {verdict.replace('_', ' ')}", str(get("reason") or ""), tone
    if kind.startswith("manual_"):
        return f"manual {kind.removeprefix('manual_').replace('_', ' ')}", \
            f"{get('from_version')} -> {get('to_version')}", "warn"
    if kind == "run_finished":
        status = str(get("status"))
        tone = "good" if status == RunStatus.SUCCESS else "bad"
        return "run finished", f"{status}, exit code {get('exit_code')}", tone
    return kind.replace("_", " "), details(detail), "info"
