"""The one interface both backends implement.

A deployment goes through the same steps everywhere:

1. ``stage`` makes the new version reachable for testing. Locally that is a
   candidate server on its own port while the stable endpoint keeps serving
   the old version; on SageMaker it is a blue/green ``update_endpoint``.
2. The orchestrator tests what ``stage`` returned, through ``client``.
3. ``promote`` makes it the serving version and verifies that it is; or
   ``discard`` drops it, leaving (or returning) the endpoint to the previous
   version, verified by health and version.

Backends report facts (which version serves, which process, which URL); the
``DeploymentPipeline`` records them in the store.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.errors import ExitCode, PipelineError

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.store import DeploymentStore
    from pipeline.testing import EndpointClient
    from pipeline.training import TrainingJob, TrainingPipeline


class DeploymentError(PipelineError):
    """A deployment step failed at run time (not the user's input): exit 1."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, ExitCode.FAILURE, hint)


@dataclass
class Staged:
    """A new version made reachable for testing."""

    endpoint_name: str
    version: str
    previous_version: str | None
    test_url: str  # where the tests reach the new version
    stable_url: str  # where clients reach the endpoint
    kind: str  # "candidate": beside the stable version; "direct": already at the stable URL
    handle: dict[str, Any] = field(default_factory=dict)  # backend-specific (pids, ports, config names)


@dataclass(frozen=True)
class Outcome:
    """How a deployment ended, in the words results and history use."""

    status: str  # deployed | kept_previous | rolled_back | rollback_failed | removed | failed
    serving_version: str | None
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. the pid of a restarted server


class Backend(ABC):
    TYPE: ClassVar[str]

    def __init__(self, config: "PipelineConfig", store: "DeploymentStore") -> None:
        self.config = config
        self.store = store
        self.run_id: str | None = None  # set by the orchestrator: resources a run creates can carry it

    @abstractmethod
    def train(self, training: "TrainingPipeline") -> "TrainingJob":
        """Run the training job and return its artifacts."""

    @abstractmethod
    def stage(self, endpoint_name: str, version: str, job: "TrainingJob") -> Staged:
        """Make ``version`` reachable for testing without disturbing what serves now."""

    @abstractmethod
    def client(self, url: str, endpoint_name: str | None = None,
               handle: dict[str, Any] | None = None) -> "EndpointClient":
        """A client the endpoint tests use to reach ``url`` (``handle``: what ``stage`` returned)."""

    @abstractmethod
    def promote(self, staged: Staged) -> Outcome:
        """Make the staged version serve at the stable URL; verified, or DeploymentError."""

    @abstractmethod
    def discard(self, staged: Staged) -> Outcome:
        """Drop the staged version; the previous one serves (verified), or a first endpoint is removed."""

    @abstractmethod
    def rollback(self, endpoint_name: str, to_version: str) -> Outcome:
        """Serve ``to_version`` again at the stable URL, verified by health and version."""

    @abstractmethod
    def remove(self, endpoint_name: str) -> None:
        """Stop and delete an endpoint."""

    def reconcile(self, endpoint_name: str, deployment: dict[str, Any]) -> Outcome:
        """Repair what a pipeline that died during ``deployment`` left behind (called under the lock).

        Returns ``interrupted`` with the version that serves now, or ``removed``.
        """
        return Outcome("interrupted", deployment["from_version"], "nothing to repair")

    def prestart(self, endpoint_name: str, run_id: str) -> None:
        """Start what serving needs while the model trains, with the endpoint lock held (a backend may
        do nothing). What it starts dies with the pipeline unless a deployment uses it."""

    def adopt(self, endpoint_name: str) -> None:
        """The store has recorded the endpoint's serving process: from now on it outlives this pipeline."""

    def sweep(self, endpoint_name: str) -> list[str]:
        """Stop what serves for ``endpoint_name`` without the store or a live pipeline owning it
        (called under the endpoint lock); what was stopped, for the record."""
        return []

    def unrecorded_servers(self) -> dict[str, list[str]]:
        """What runs for endpoints the store does not know (e.g. after its state file was lost)."""
        return {}

    def delete_stale_logs(self, endpoint_name: str, keep_versions: set[str]) -> list[str]:
        """Retention of the backend's logs for versions and servers that are gone; names deleted."""
        return []

    def release_prestart(self) -> None:
        """Stop whatever ``prestart`` started and ``stage`` did not use."""

    def remove_by_prefix(self, prefix: str) -> dict[str, list[str]]:
        """Delete what the backend holds under ``prefix`` that the store may never have recorded
        (``cleanup --prefix``); kind -> names deleted. Locally the store knows everything: nothing."""
        return {}

    def delete_version_artifacts(self, endpoint_name: str, version: str) -> None:
        """Forget what the backend keeps for an old version (retention); by default nothing."""

    @abstractmethod
    def describe(self, endpoint_name: str) -> dict[str, Any]:
        """URL, serving version, health and liveness of an endpoint."""
