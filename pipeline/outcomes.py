"""The words a run's results, history, reports and notifications use for what happened.

One ``StrEnum`` per question, so a misspelt state is an AttributeError at import time, not a
silently different string in a CI report. Each member is its own JSON value (``"held"``).
"""
from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """Which phases one invocation runs."""

    FULL = "full"
    TRAINING = "training"
    DEPLOYMENT = "deployment"
    TESTING = "testing"
    CLEANUP = "cleanup"


class Verdict(StrEnum):
    """The accuracy gate's decision about a trained model."""

    DEPLOY = "deploy"  # good enough, and deploying was asked for
    APPROVED = "approved"  # good enough; auto-deploy is off, so it waits for --mode deployment
    PENDING_APPROVAL = "pending_approval"  # good enough; approval_required, and nobody has approved it yet
    HELD = "held"  # not good enough to deploy, not bad enough to reject
    REJECTED = "rejected"  # below the minimum: never deployed

    @property
    def stops_the_run(self) -> bool:
        return self in (Verdict.HELD, Verdict.REJECTED)


class FinalState(StrEnum):
    """How a deployment ended (also the status of its row in the store)."""

    IN_PROGRESS = "in_progress"
    DEPLOYED = "deployed"  # the new version serves, verified
    KEPT_PREVIOUS = "kept_previous"  # the candidate failed before the switch; the old version never stopped
    ROLLED_BACK = "rolled_back"  # the new version served and the previous one serves again, verified
    REMOVED = "removed"  # a first deployment failed: the endpoint was removed
    ROLLBACK_FAILED = "rollback_failed"  # the previous version could not be verified
    FAILED = "failed"  # tests failed with rollback_on_failure off: the new version stays serving
    INTERRUPTED = "interrupted"  # the pipeline died mid-deployment; a later command repaired it

    @property
    def kept_the_new_version(self) -> bool:
        return self in (FinalState.DEPLOYED, FinalState.FAILED)

    @property
    def previous_serves(self) -> bool:
        """The new version is gone and what served before serves (or nothing did, and nothing does)."""
        return self in (FinalState.KEPT_PREVIOUS, FinalState.ROLLED_BACK, FinalState.REMOVED)


class RunStatus(StrEnum):
    """``pipeline_status`` of the results JSON."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    HELD = "held"
    REJECTED = "rejected"
