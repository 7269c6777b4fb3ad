"""The run's verdict for machines: GitLab's dotenv, JUnit and metrics reports.

Each writer takes the results dict of one run (what ``Orchestrator.run``
returns, whatever the exit code) and writes one file atomically, so a CI job
never uploads half a report:

``--dotenv-file``   ``MLOPS_*=value`` lines for ``artifacts:reports:dotenv``.
                    GitLab reads each line as ``^(.*?)=(.*)$``, strips both
                    sides and keeps quotes as part of the value; it refuses
                    blank lines, comments, more variables than its plan limit
                    (20 on the smallest plans) and files of 5 KiB or more.
                    Values are therefore written bare and limited to
                    characters that mean the same to GitLab and to a shell's
                    ``source`` (letters, digits and ``_.:/@+,%=-``); any other
                    character (space, quote, ``$``, newline) becomes ``_``.
                    A value that is not known is empty (``MLOPS_ENDPOINT_NAME=``).
``--junit-xml``     ``artifacts:reports:junit``: each gate check and each
                    endpoint test is a test case; a failed one carries the
                    numbers in its message, so the pipeline's test tab says
                    why a model was held or a deployment rolled back.
``--metrics-file``  ``artifacts:reports:metrics``: ``name value`` lines
                    (accuracy, cv mean, p95 latency, throughput), only those
                    the run measured.

A usage or config error found before the run starts (exit code 2 with an
``Error:`` line) produces no results, and so no reports.
"""
from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from pipeline.container.verified_files import write_atomically
from pipeline.gate.decision import ApprovalStatus, ContractStatus, GateDecision
from pipeline.reporting.results import DeploymentResults, Results, RolloutPhase, TestingPhase

DOTENV_PREFIX = "MLOPS_"
DOTENV_MAX_VARIABLES = 20  # the smallest per-plan limit GitLab applies
DOTENV_MAX_BYTES = 5 * 1024  # GitLab accepts a file only if it is smaller than this
DOTENV_MAX_VALUE_CHARS = 255
DOTENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_VALUE_CHARS = re.compile(r"[^A-Za-z0-9_.:/@+,%=-]+")

ENDPOINT_CHECKS = ("health", "prediction_accuracy", "performance", "robustness")
GATE_MODES = ("full", "training", "deployment")
ENDPOINT_TEST_MODES = ("full", "deployment", "testing")
_INVALID_XML_CHARS = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# --------------------------------------------------------------------------- writing
def write_reports(results: Results, *, dotenv_file: str | os.PathLike[str] | None = None,
                  junit_xml: str | os.PathLike[str] | None = None,
                  metrics_file: str | os.PathLike[str] | None = None) -> list[str]:
    """Write each report asked for; return one line per report that could not be written."""
    problems = []
    for option, path, render in (("--dotenv-file", dotenv_file, render_dotenv),
                                 ("--junit-xml", junit_xml, render_junit),
                                 ("--metrics-file", metrics_file, render_metrics)):
        if not path:
            continue
        try:
            write_atomically(path, render(results))
        except OSError as err:
            problems.append(f"{option} {str(path)!r}: cannot write: {err.strerror or err}")
    return problems


# --------------------------------------------------------------------------- dotenv
def dotenv_variables(results: Results) -> dict[str, str]:
    """The variables a later CI job needs, by name (with the ``MLOPS_`` prefix), as safe strings."""
    summary = results.summary
    deployment = results.deployment
    champion = results.gate.champion if results.gate else None
    approval = results.gate.approval if results.gate else None
    version, url = summary.endpoint_version, summary.endpoint_url
    if deployment is not None:  # what serves now: nothing after a failed first deployment was removed
        version = deployment.serving_version
        url = url if version else None
    values = {
        "PIPELINE_STATUS": results.pipeline_status,
        "EXIT_CODE": results.exit_code,
        "RUN_ID": results.run_id,
        "MODE": results.mode,
        "TRAINING_JOB": summary.training_job,
        "TRAINING_ACCURACY": summary.training_accuracy,
        "GATE_DECISION": results.gate.decision if results.gate else None,
        "ENDPOINT_NAME": summary.endpoint_name,
        "ENDPOINT_URL": url,
        "ENDPOINT_VERSION": version,
        "DEPLOYMENT_OCCURRED": summary.deployment_occurred,
        "DEPLOYMENT_STATE": deployment.final_state if deployment else None,
        "TESTING_PASSED": summary.testing_passed,
        "CHAMPION_STATUS": champion.status if champion else None,
        "CHAMPION_VERSION": champion.version if champion else None,
        "APPROVED_BY": approval.by if approval and approval.status == ApprovalStatus.APPROVED else None,
    }
    return {DOTENV_PREFIX + key: dotenv_value(value) for key, value in values.items()}


def dotenv_value(value: Any) -> str:
    """One line that GitLab and ``source`` read alike: no quoting needed, none added."""
    if value is None or isinstance(value, (bool, float)):
        return _text(value)
    text = _UNSAFE_VALUE_CHARS.sub("_", str(value).strip())
    return text[:DOTENV_MAX_VALUE_CHARS]


def render_dotenv(results: Results) -> bytes:
    lines: list[str] = []
    size = 0
    for key, value in dotenv_variables(results).items():
        if not DOTENV_KEY.fullmatch(key):
            continue
        line = f"{key}={value}\n"
        if len(lines) == DOTENV_MAX_VARIABLES or size + len(line.encode()) >= DOTENV_MAX_BYTES:
            break  # unreachable with today's variables; the order above is the priority
        lines.append(line)
        size += len(line.encode())
    return "".join(lines).encode()


# --------------------------------------------------------------------------- metrics
def metric_values(results: Results) -> dict[str, float]:
    evaluation, tests = results.evaluation, results.test_summary
    champion = results.gate.champion if results.gate else None
    values = {
        "mlops_training_accuracy": evaluation.get("accuracy", results.summary.training_accuracy),
        "mlops_cv_mean_accuracy": evaluation.get("cv_mean_accuracy"),
        "mlops_endpoint_latency_p95_ms": tests.p95_latency_ms,
        "mlops_endpoint_throughput_rps": tests.throughput_rps,
        "mlops_champion_difference": champion.difference if champion else None,
        "mlops_champion_p_value": champion.p_value if champion else None,
        "mlops_gate_rows_needed": results.gate.rows_needed if results.gate else None,
    }
    return {name: float(value) for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def render_metrics(results: Results) -> bytes:
    return "".join(f"{name} {_number(value)}\n" for name, value in metric_values(results).items()).encode()


# --------------------------------------------------------------------------- JUnit
class _Suite:
    def __init__(self, parent: ET.Element, name: str) -> None:
        self.element = ET.SubElement(parent, "testsuite", name=name)
        self.classname = "mlops." + name.replace(" ", "_")
        self.counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        self.time = 0.0

    def case(self, name: str, *, failure: str | None = None, error: str | None = None, skipped: str | None = None,
             details: Mapping[str, Any] | None = None, seconds: float | None = None) -> ET.Element:
        case = ET.SubElement(self.element, "testcase", classname=self.classname, name=name)
        if seconds is not None:
            case.set("time", _number(seconds))
            self.time += seconds
        text = _details(details or {})
        self.counts["tests"] += 1
        if failure is not None:
            ET.SubElement(case, "failure", message=_xml(failure), type="failure").text = _xml(f"{failure}\n\n{text}")
            self.counts["failures"] += 1
        elif error is not None:
            ET.SubElement(case, "error", message=_xml(error), type="error").text = _xml(f"{error}\n\n{text}")
            self.counts["errors"] += 1
        elif skipped is not None:
            ET.SubElement(case, "skipped", message=_xml(skipped))
            self.counts["skipped"] += 1
        elif text:
            ET.SubElement(case, "system-out").text = _xml(text)
        return case

    def close(self) -> None:
        for key, count in self.counts.items():
            self.element.set(key, str(count))
        self.element.set("time", _number(self.time))


def junit_tree(results: Results) -> ET.ElementTree:
    """Test suites ``gate``, ``endpoint tests``, ``deployment`` and ``pipeline``, each when it applies."""
    root = ET.Element("testsuites", name="mlops-pipeline")
    suites: list[_Suite] = []
    error = results.error
    not_run = f"not run: {error.message}" if error and error.message else "not run: the run stopped before it"

    gate = results.gate
    if gate or results.mode in GATE_MODES:
        suite = _Suite(root, "gate")
        suites.append(suite)
        if gate:
            _gate_cases(suite, gate, results)
        else:
            suite.case("minimum_accuracy", skipped=not_run)
            suite.case("accuracy_threshold", skipped=not_run)

    testing = results.phases.testing
    if testing or results.mode in ENDPOINT_TEST_MODES:
        suite = _Suite(root, "endpoint tests")
        suites.append(suite)
        if testing:
            _endpoint_cases(suite, testing)
        else:
            reason = not_run
            if gate and not (gate.deploys or gate.decision == "deploy") and not error:
                reason = f"not run: nothing was deployed (gate {gate.decision}: {gate.reason})"
            for name in ENDPOINT_CHECKS:
                suite.case(name, skipped=reason)

    rollout = results.phases.rollout
    if rollout is not None:
        suite = _Suite(root, "bake")
        suites.append(suite)
        _bake_cases(suite, rollout)

    deployment = results.deployment
    if deployment is not None:
        suite = _Suite(root, "deployment")
        suites.append(suite)
        _deployment_case(suite, deployment, results)

    if error:
        suite = _Suite(root, "pipeline")
        suites.append(suite)
        suite.case("run", error=f"exit code {error.exit_code}: {error.message}",
                   details={"hint": error.hint, "run_id": results.run_id, "resume_command": results.resume_command})

    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for suite in suites:
        suite.close()
        total_time += suite.time
        for key in totals:
            totals[key] += suite.counts[key]
    for key, count in totals.items():
        root.set(key, str(count))
    duration = results.total_duration_seconds
    root.set("time", _number(duration if duration is not None else total_time))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def render_junit(results: Results) -> bytes:
    return ET.tostring(junit_tree(results).getroot(), encoding="utf-8", xml_declaration=True) + b"\n"


def _gate_cases(suite: _Suite, gate: GateDecision, results: Results) -> None:
    metric, value, threshold, minimum = gate.metric, gate.value, gate.threshold, gate.minimum
    properties = ET.SubElement(suite.element, "properties")
    for key in ("decision", "metric", "value", "threshold", "minimum"):
        ET.SubElement(properties, "property", name=key, value=_xml(_text(getattr(gate, key))))
    ET.SubElement(properties, "property", name="run_id", value=_xml(_text(results.run_id)))
    minimum_details = {"metric": metric, "value": value, "minimum_accuracy": minimum,
                       "training_job": results.summary.training_job}
    details = {**minimum_details, "accuracy_threshold": threshold, "interval_95": gate.interval,
               "decision": gate.decision, "reason": gate.reason, "warning": gate.warning}
    if value is None or threshold is None or minimum is None:
        suite.case("minimum_accuracy", error=f"gate without numbers: {gate.reason}", details=details)
        return
    shown = f"{metric} {_number(value)}"
    if value < minimum:
        suite.case("minimum_accuracy", details=minimum_details,
                   failure=f"{shown} is below minimum_accuracy {_number(minimum)}: the model is rejected")
    else:
        suite.case("minimum_accuracy", details=minimum_details)
    if value < threshold:
        outcome = "rejected" if value < minimum else "held"
        suite.case("accuracy_threshold", details=details,
                   failure=f"{shown} is below accuracy_threshold {_number(threshold)} (minimum_accuracy "
                           f"{_number(minimum)}): the model is {outcome}, nothing was deployed")
    else:
        suite.case("accuracy_threshold", details=details)
    _contract_case(suite, gate)
    _approval_case(suite, gate)
    _champion_case(suite, gate)


def _approval_case(suite: _Suite, gate: GateDecision) -> None:
    """A person's decision: failed when they rejected the model or it waits for one; skipped when none was needed."""
    approval = gate.approval
    if approval is None:
        if gate.decision == "pending_approval":
            suite.case("approval", failure=gate.reason)
        return
    details = {"status": approval.status, "by": approval.by, "at": approval.at, "reason": approval.reason,
               "model_sha256": approval.model_sha256, "source": approval.source,
               "overrides_gate": approval.overrides_gate}
    if approval.status == ApprovalStatus.REJECTED:
        suite.case("approval", failure=f"rejected by {approval.by}: {approval.reason}", details=details)
    else:
        suite.case("approval", details=details)


def _contract_case(suite: _Suite, gate: GateDecision) -> None:
    """Failed when a change of the endpoint's inputs or labels held the candidate; skipped when nothing served."""
    contract = gate.contract
    if contract is None:
        return
    details = {"serving_version": contract.serving_version, "changes": contract.changes, "status": contract.status}
    if contract.status == ContractStatus.SKIPPED:
        suite.case("contract", skipped=contract.reason)
    elif contract.holds:
        suite.case("contract", failure=contract.reason, details=details)
    else:
        suite.case("contract", details={**details, "reason": contract.reason})


def _champion_case(suite: _Suite, gate: GateDecision) -> None:
    """Failed when the champion held the candidate; skipped when no comparison was made."""
    champion = gate.champion
    if champion is None:
        return
    details = champion.model_dump(exclude={"reason"})
    if champion.status != "compared":
        suite.case("champion comparison", skipped=champion.reason or "skipped")
    elif champion.holds:
        suite.case("champion comparison", failure=champion.reason or "held by the champion", details=details)
    else:
        suite.case("champion comparison", details={**details, "reason": champion.reason})


def _endpoint_cases(suite: _Suite, testing: TestingPhase) -> None:
    checks = testing.checks
    health_failed = not (checks.get("health") or {}).get("passed", False)
    names = list(ENDPOINT_CHECKS) + [name for name in checks if name not in ENDPOINT_CHECKS]
    for name in names:
        check = checks.get(name)
        if check is None:
            suite.case(name, skipped="not run: the health check failed" if health_failed else "not run")
            continue
        details = {key: value for key, value in check.items() if key not in ("passed", "reason")}
        seconds = check.get("seconds") if isinstance(check.get("seconds"), (int, float)) else None
        if check.get("skipped"):
            suite.case(name, skipped=str(check["skipped"]))
        elif check.get("passed"):
            suite.case(name, details=details, seconds=seconds)
        else:
            suite.case(name, failure=f"{name}: {check.get('reason') or 'failed'}", details=details, seconds=seconds)


def _bake_cases(suite: _Suite, rollout: RolloutPhase) -> None:
    """One case per analysis interval: a breach fails; too little traffic fails too unless it was promoted on
    purpose (``insufficient_traffic`` promote: skipped, saying so); a bake cut short fails its last case."""
    for interval in rollout.intervals:
        name = f"interval {interval.interval} ({interval.mode}, {interval.candidate_percent}%)"
        details = interval.model_dump(exclude={"reason", "interval"})
        if interval.verdict == "pass":
            suite.case(name, details=details, seconds=interval.seconds)
        elif interval.verdict == "insufficient_traffic" and rollout.outcome == "promote":
            suite.case(name, skipped=f"{interval.reason} (promoted anyway: insufficient_traffic promote)")
        else:
            suite.case(name, failure=interval.reason, details=details, seconds=interval.seconds)
    if rollout.outcome == "skipped":
        suite.case("bake", skipped=rollout.reason or "nothing to bake beside")
    if rollout.outcome == "interrupted":
        cut_short = rollout.reason or "interrupted"
        suite.case("bake", failure=f"the {rollout.traffic_routing} bake was cut short: {cut_short}")


def _deployment_case(suite: _Suite, deployment: DeploymentResults, results: Results) -> None:
    state = deployment.final_state
    rollback = results.rollback
    details: dict[str, Any] = {key: getattr(deployment, key) for key in (
        "final_state", "endpoint_name", "version", "previous_version", "serving_version", "training_job", "detail")}
    details["rollback_reason"] = rollback.reason if rollback else None
    seconds = deployment.deployment_duration
    version = deployment.version
    if state == "deployed":
        suite.case("deployment", details=details, seconds=seconds)
        return
    reason = (rollback.reason if rollback else None) or deployment.reason or \
        (results.error.message if results.error else None)
    serving = deployment.serving_version or "nothing"
    if state == "failed":
        message = f"version {version} failed its tests and stays serving (rollback_on_failure is off): {reason}"
    elif state == "rollback_failed":
        message = f"version {version} failed and the rollback failed too: {reason}"
    else:
        message = f"version {version} was not kept ({state}, now serving {serving}): {reason}"
    suite.case("deployment", failure=message, details=details, seconds=seconds)


# --------------------------------------------------------------------------- helpers
def _number(value: float | int) -> str:
    return repr(round(float(value), 6)) if math.isfinite(value) else str(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_rounded(value), default=str)
    return str(value)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def _details(details: Mapping[str, Any]) -> str:
    return "\n".join(f"{key}: {_text(value)}" for key, value in details.items() if value is not None)


def _xml(text: str) -> str:
    """Text XML 1.0 can hold (ElementTree escapes markup but not control characters)."""
    return _INVALID_XML_CHARS.sub("\ufffd", text)
