"""One typed record of a run: what each phase returned, and the verdict derived from it in one place.

The orchestrator fills a ``RunRecord`` with the typed objects the phases return (the training job,
the gate's decision, the deployment, the endpoint test report, the rollback) and hands it along;
the results JSON (``to_json``), the console summary, the CI reports and the notifications all read
it. The run's status and exit code are not set by anyone: they are worked out from what happened
(``exit_code``, ``status``), so no two places can disagree about them.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.errors import ExitCode
from pipeline.notifications.message import RunSummary
from pipeline.outcomes import FinalState, Mode, RunStatus

if TYPE_CHECKING:
    from pipeline.deployment.rollout import BakeReport
    from pipeline.deployment.steps import Deployment
    from pipeline.gate.decision import GateDecision
    from pipeline.testing import TestReport
    from pipeline.training.jobs import TrainingJob


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sortable by time, unique across processes: ``20261126T030742Z-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class TrainingRecord:
    job: TrainingJob
    duration_seconds: float  # 0 when the job was trained by an earlier run (--mode deployment)

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline_status": "success", "training_job": self.job.name, "model_sha256": self.job.model_sha256,
                "data_fingerprint": self.job.data_fingerprint, "duration_seconds": round(self.duration_seconds, 3),
                "evaluation_results": self.job.metrics}


@dataclass(frozen=True)
class RollbackRecord:
    """What was done after a deployment failed, and what serves now."""

    final_state: FinalState
    reason: str
    serving_version: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"performed": self.final_state.previous_serves, "final_state": str(self.final_state),
                "reason": self.reason, "serving_version": self.serving_version, "detail": self.detail}


@dataclass(frozen=True)
class RunError:
    message: str
    exit_code: ExitCode
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "exit_code": int(self.exit_code), "hint": self.hint}


@dataclass(frozen=True)
class EndpointRef:
    """The endpoint a run tested without deploying to it (``--mode testing``)."""

    name: str
    url: str | None
    version: str | None


@dataclass(frozen=True)
class CleanupRecord:
    endpoint_name: str
    removed_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"pipeline_status": "success", "endpoint_name": self.endpoint_name,
                "removed_version": self.removed_version}


@dataclass
class RunRecord:
    """Everything one invocation did; ``to_json`` is the results JSON."""

    run_id: str
    mode: Mode
    backend: str
    config: dict[str, Any]
    config_sources: dict[str, str]
    log_file: str | None = None
    results_file: str | None = None
    started_at: str = field(default_factory=utc_timestamp)
    started: float = field(default_factory=time.monotonic)
    training: TrainingRecord | None = None
    gate: GateDecision | None = None
    deployment: Deployment | None = None
    testing: TestReport | None = None
    rollout: BakeReport | None = None
    cleanup: CleanupRecord | None = None
    rollback: RollbackRecord | None = None
    endpoint: EndpointRef | None = None
    reconciled: list[dict[str, Any]] | None = None
    error: RunError | None = None
    resume_command: str | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    finished_at: str | None = None
    duration_seconds: float | None = None

    # ----------------------------------------------------------------- the verdict, derived
    @property
    def exit_code(self) -> ExitCode:
        """The documented exit code, from what happened: an error says its own; a gate that held or
        rejected is 3; a deployment that was not kept, or endpoint tests that failed, are 1."""
        if self.error is not None:
            return self.error.exit_code
        if self.gate is not None and self.gate.decision.stops_the_run:
            return ExitCode.GATE
        if self.rollback is not None or (self.deployment is not None and
                                         self.deployment.final_state == FinalState.FAILED):
            return ExitCode.FAILURE
        if self.testing is not None and not self.testing.passed:
            return ExitCode.FAILURE
        return ExitCode.SUCCESS

    @property
    def status(self) -> RunStatus:
        if self.error is None and self.gate is not None and self.gate.decision.stops_the_run:
            return RunStatus(str(self.gate.decision))
        if self.finished_at is None:
            return RunStatus.RUNNING
        return RunStatus.SUCCESS if self.exit_code == ExitCode.SUCCESS else RunStatus.FAILED

    @property
    def deployment_occurred(self) -> bool:
        return self.deployment is not None and self.deployment.final_state.kept_the_new_version

    @property
    def training_job(self) -> str | None:
        return self.training.job.name if self.training else None

    @property
    def endpoint_name(self) -> str | None:
        if self.deployment is not None:
            return self.deployment.staged.endpoint_name
        return self.endpoint.name if self.endpoint else None

    @property
    def endpoint_url(self) -> str | None:
        if self.deployment is not None:
            return self.deployment.staged.stable.url
        return self.endpoint.url if self.endpoint else None

    @property
    def endpoint_version(self) -> str | None:
        """What serves at the endpoint as far as this run knows (the new version while it is tested)."""
        if self.deployment is not None:
            return self.deployment.serving_version or self.deployment.staged.version
        return self.endpoint.version if self.endpoint else None

    def finish(self) -> None:
        self.finished_at = utc_timestamp()
        self.duration_seconds = round(time.monotonic() - self.started, 3)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    # ----------------------------------------------------------------- views
    def summary(self, event_rollback_reason: str | None = None) -> RunSummary:
        gate, deployment = self.gate, self.deployment
        return RunSummary(
            run_id=self.run_id, status=str(self.status), mode=str(self.mode), backend=self.backend,
            training_job=self.training_job,
            gate_decision=str(gate.decision) if gate else None, gate_metric=gate.metric if gate else None,
            gate_value=gate.value if gate else None, gate_threshold=gate.threshold if gate else None,
            gate_minimum=gate.minimum if gate else None, gate_reason=gate.reason if gate else None,
            champion=gate.champion.reason if gate and gate.champion else None,
            endpoint_name=self.endpoint_name, endpoint_url=self.endpoint_url,
            version=deployment.staged.version if deployment else None,
            previous_version=deployment.staged.previous_version if deployment else None,
            final_state=str(deployment.final_state) if deployment else None,
            rollback_reason=event_rollback_reason or (self.rollback.reason if self.rollback else None),
            duration_seconds=self.elapsed(),
            message=self.error.message if self.error else (gate.reason if gate else None),
        )

    def to_json(self) -> dict[str, Any]:
        """The results JSON, in the documented shape (docs/RESULTS_AND_REPORTS.md)."""
        phases: dict[str, Any] = {}
        if self.training is not None:
            phases["training"] = self.training.to_dict()
        if self.deployment is not None:
            final = self.deployment.final_state
            phases["deployment"] = {
                "pipeline_status": "success" if final in (FinalState.DEPLOYED, FinalState.IN_PROGRESS) else "failed",
                "deployment_results": self.deployment.to_results()}
        if self.testing is not None:
            phases["testing"] = self.testing.to_dict()
        if self.rollout is not None:
            phases["rollout"] = self.rollout.to_dict()
        if self.cleanup is not None:
            phases["cleanup"] = self.cleanup.to_dict()
        results: dict[str, Any] = {
            "run_id": self.run_id,
            "mode": str(self.mode),
            "backend": self.backend,
            "pipeline_status": str(self.status),
            "started_at": self.started_at,
            "summary": {
                "training_accuracy": self.training.job.metrics.get("accuracy") if self.training else None,
                "training_job": self.training_job,
                "deployment_occurred": self.deployment_occurred,
                "endpoint_name": self.endpoint_name,
                "endpoint_url": self.endpoint_url,
                "endpoint_version": self.endpoint_version,
                "testing_passed": self.testing.passed if self.testing is not None else None,
            },
            "phases": phases,
            "gate": self.gate.to_dict() if self.gate else None,
            "rollback": self.rollback.to_dict() if self.rollback else None,
            "error": self.error.to_dict() if self.error else None,
            "resume_command": self.resume_command,
            "log_file": self.log_file,
            "config": self.config,
            "config_sources": self.config_sources,
        }
        if self.reconciled is not None:
            results["reconciled"] = self.reconciled
        results.update({
            "exit_code": int(self.exit_code),
            "finished_at": self.finished_at,
            "total_duration_seconds": self.duration_seconds if self.duration_seconds is not None else self.elapsed(),
            "notifications": self.notifications,
            "results_file": self.results_file,
        })
        return results
