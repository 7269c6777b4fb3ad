"""Approvals: who let a model through, when, and why -- recorded in the audit trail, read back by the gate.

``approve JOB`` and ``reject JOB`` append ``model_approved`` / ``model_rejected`` to the hash-chained audit
trail with the person (``--by``, else ``GITLAB_USER_LOGIN``, else the OS user), the reason and the sha256 of
the model they looked at: an approval names one model, and a job whose model changed is not approved by it. A
model the gate rejected is never approved (a rejected model is never deployed); a held one may be, and the
approval says it overrides the gate. With ``approval_required`` the gate lets no model deploy without one
(``pipeline.gate.rules``). On SageMaker the decision is mirrored to the Model Registry, and one given there
(Studio, another tool) counts, recorded with the identity SageMaker reports.
"""
from __future__ import annotations

from typing import Any

from pipeline.gate.decision import Approval, ApprovalStatus
from pipeline.outcomes import Verdict

KINDS = {ApprovalStatus.APPROVED: "model_approved", ApprovalStatus.REJECTED: "model_rejected"}


def latest_approval(store: Any, training_job: str) -> Approval | None:
    """The last approval or rejection of a job in the audit trail, or None."""
    for event in store.events_of_kinds(tuple(KINDS.values())):
        detail = event["detail"]
        if detail.get("training_job") == training_job:
            status = ApprovalStatus.APPROVED if event["kind"] == KINDS[ApprovalStatus.APPROVED] else \
                ApprovalStatus.REJECTED
            return Approval(status=status, training_job=training_job, model_sha256=detail.get("model_sha256"),
                            by=detail.get("by"), at=event["at"], reason=detail.get("reason"),
                            source=detail.get("source", "cli"), overrides_gate=bool(detail.get("overrides_gate")))
    return None


def approval_for(store: Any, job_name: str, model_sha256: str,
                 registered: dict[str, Any] | None = None) -> Approval | None:
    """The decision that counts for this model now: the audit trail's, or a newer one given in SageMaker's Model
    Registry (``Backend.registered_approval``; recorded in the audit trail the first time it is seen). A decision
    about another model (the job's model changed since) does not count."""
    recorded = latest_approval(store, job_name)
    registry = None if not registered else Approval(
        status=ApprovalStatus(registered["status"]), training_job=job_name, model_sha256=model_sha256,
        by=registered.get("by"), at=registered.get("at"), reason=registered.get("reason"), source="sagemaker")
    if registry is not None and (recorded is None or recorded.status != registry.status):
        # Decided in SageMaker (the registry mirrors every decision made here, so a different status is new).
        record(store, registry, run_id=None)
        recorded = latest_approval(store, job_name)
    if recorded is None or recorded.model_sha256 not in (None, model_sha256):
        return None
    return recorded


def record(store: Any, approval: Approval, run_id: str | None) -> None:
    store.record_event(KINDS[approval.status], run_id=run_id, training_job=approval.training_job,
                       model_sha256=approval.model_sha256, by=approval.by, reason=approval.reason,
                       source=approval.source, overrides_gate=approval.overrides_gate)


def decide_for_approval(job_name: str, gate_decision: str | None, model_sha256: str, status: ApprovalStatus,
                        by: str, reason: str) -> Approval:
    """A person's decision about a job, checked against what the gate said of it."""
    from pipeline.errors import ExitCode, PipelineError

    if not reason.strip():
        raise PipelineError("--reason: say why (it goes into the audit trail with your name)")
    if status == ApprovalStatus.APPROVED and gate_decision == Verdict.REJECTED:
        raise PipelineError(f"training job {job_name!r} was rejected by the gate (below minimum_accuracy): a rejected "
                            f"model is never approved or deployed", ExitCode.GATE)
    overrides = status == ApprovalStatus.APPROVED and gate_decision == Verdict.HELD
    return Approval(status=status, training_job=job_name, model_sha256=model_sha256, by=by, reason=reason.strip(),
                    source="cli", overrides_gate=overrides)
