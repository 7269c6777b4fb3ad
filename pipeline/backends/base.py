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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.errors import ExitCode, PipelineError
from pipeline.outcomes import FinalState

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.scoring.predict import PredictReport
    from pipeline.serving.client import EndpointClient
    from pipeline.state.store import DeploymentStore
    from pipeline.training.fitting import TrainingPipeline
    from pipeline.training.jobs import TrainingJob


class DeploymentError(PipelineError):
    """A deployment step failed at run time (not the user's input): exit 1."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, ExitCode.FAILURE, hint)


@dataclass(frozen=True)
class Server:
    """Where a version is reached and what runs it: the facts the store records about an endpoint.

    A backend fills in what it has (a local server: host, port, pid and role; SageMaker: the
    resource names); ``DeploymentPipeline`` records them without interpreting them.
    """

    url: str
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    role: str | None = None
    resources: Mapping[str, str] = field(default_factory=dict)
    machine: str | None = None  # the host a local server runs on: only there can it be reached, stopped or switched


@dataclass(frozen=True)
class Staged:
    """A new version made reachable for testing."""

    endpoint_name: str
    version: str
    previous_version: str | None
    candidate: Server  # where the tests reach the new version
    stable: Server  # where clients reach the endpoint
    beside_stable: bool  # True: a candidate beside the serving version; False: already at the stable URL
    restarted: Server | None = None  # the stable server, brought back on previous_version before staging


@dataclass(frozen=True)
class Outcome:
    """How a deployment (or a rollback) ended, in the words results and history use."""

    status: FinalState
    serving_version: str | None
    detail: str
    stable: Server | None = None  # the stable server afterwards, when it changed (e.g. restarted)


@dataclass(frozen=True)
class TrafficStep:
    """How live traffic is shared between the serving version and a tested candidate during a bake.

    ``split``: the candidate answers ``percent`` of live requests, the serving version the rest.
    ``shadow``: the serving version answers every request; the candidate predicts a copy of each,
    off the response path, and its answers are recorded, never returned.
    """

    mode: str  # "split" or "shadow"
    percent: int  # split: the candidate's share of live requests; shadow: the share copied to it (100)
    # Where the step stands in its bake, for people watching it (`status`); not part of what the step is.
    interval: int | None = field(default=None, compare=False)
    intervals: int | None = field(default=None, compare=False)
    seconds: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class VersionTraffic:
    """One version's live requests over an analysis interval (the pipeline's own test requests excluded)."""

    requests: int  # answered (shadow: predicted) requests
    errors: int  # of them, non-2xx (shadow: predictions that failed)
    p95_seconds: float | None  # None: no request, or no latency known


@dataclass(frozen=True)
class IntervalTraffic:
    """What an analysis interval saw, per version; ``compared_rows``/``agreeing_rows`` under shadow only."""

    serving: VersionTraffic
    candidate: VersionTraffic
    compared_rows: int = 0  # rows both versions predicted (shadow)
    agreeing_rows: int = 0  # of them, rows both predicted alike


class Backend(ABC):
    TYPE: ClassVar[str]

    def __init__(self, config: PipelineConfig, store: DeploymentStore, run_id: str | None = None) -> None:
        self.config = config
        self.store = store
        self.run_id = run_id  # resources and processes a run creates carry it (None: a command outside a run)

    @abstractmethod
    def train(self, training: TrainingPipeline) -> TrainingJob:
        """Run the training job and return its artifacts."""

    @abstractmethod
    def stage(self, endpoint_name: str, version: str, job: TrainingJob) -> Staged:
        """Make ``version`` reachable for testing without disturbing what serves now."""

    @abstractmethod
    def client(self, endpoint_name: str, server: Server) -> EndpointClient:
        """A client that reaches ``server`` of ``endpoint_name`` (a staged candidate, or the stable one)."""

    @abstractmethod
    def serving(self, endpoint_name: str) -> Server:
        """The endpoint's stable server as the store recorded it (for tests of what serves now)."""

    @abstractmethod
    def serving_model(self, endpoint_name: str, scratch: Path) -> tuple[str, Path] | None:
        """The version the endpoint serves now and a directory holding its model file (fetched into
        ``scratch`` if it lives elsewhere); None when nothing serves. The caller checks the file's
        sha256 against the store before loading it."""

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
        return Outcome(FinalState.INTERRUPTED, deployment["from_version"], "nothing to repair")

    def prestart(self, endpoint_name: str) -> None:
        """Start what serving needs while the model trains, with the endpoint lock held (a backend may
        do nothing). What it starts dies with the pipeline unless a deployment uses it."""

    def adopt(self, endpoint_name: str) -> None:
        """The store has recorded the endpoint's serving process: from now on it outlives this pipeline."""

    def sweep(self, endpoint_name: str) -> list[str]:
        """Stop what serves for ``endpoint_name`` without the store or a live pipeline owning it
        (called under the endpoint lock); what was stopped, for the record."""
        return []

    def stop_abandoned(self) -> list[str]:
        """Stop what a pipeline that died started before the store took it over; what was stopped."""
        return []

    def capture_directory(self, endpoint_name: str, version: str, scratch: Path,
                          since: datetime | None = None) -> Path | None:
        """Where the endpoint's captured requests are, laid out as ``<version>/YYYY/MM/DD/HH/*.jsonl``
        (fetched into ``scratch`` if they live elsewhere, hours before ``since`` left behind); None when
        nothing was captured."""
        return None

    def registered_approval(self, job: TrainingJob) -> dict[str, Any] | None:
        """A decision about ``job`` given in the backend's own model registry (SageMaker's): ``status`` (approved,
        rejected, pending), ``by``, ``at``, ``reason``; None where there is no registry."""
        return None

    def record_approval(self, job: TrainingJob, status: str, by: str, reason: str) -> None:
        """Mirror a person's decision about ``job`` to the backend's model registry (nothing to do locally)."""

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

    def batch_transform(self, job: TrainingJob, request: Any) -> PredictReport:
        """Score a file in the backend's own batch service (``predict --backend``; SageMaker: Batch Transform)."""
        raise PipelineError(f"the {self.TYPE} backend has no batch service: score a file with predict --training-job "
                            f"JOB (in this process) or --endpoint-name NAME")

    # --- progressive delivery (pipeline/deployment/rollout.py drives these; the orchestrator decides) ---
    def bakes_on_the_endpoint(self, traffic_routing: str) -> bool:
        """True when the pipeline itself shifts traffic in steps and judges each interval for this routing
        (``split_traffic``, ``traffic_mark``, ``traffic_since``); False when the backend does the shifting
        inside ``stage`` (SageMaker's blue/green CANARY and LINEAR) or there is nothing to bake."""
        return False

    def split_traffic(self, staged: Staged, step: TrafficStep) -> None:
        """Share the endpoint's live traffic with the staged version as ``step`` says, verified; the serving
        version keeps answering throughout. ``promote`` ends a split with the candidate serving alone,
        ``discard`` with the previous version serving alone."""
        raise DeploymentError(f"the {self.TYPE} backend cannot split an endpoint's traffic")

    def traffic_mark(self, staged: Staged) -> Any:
        """Where an analysis interval starts (a counter snapshot, or a time): handed back to ``traffic_since``."""
        raise DeploymentError(f"the {self.TYPE} backend cannot read an endpoint's traffic")

    def traffic_since(self, staged: Staged, mark: Any) -> IntervalTraffic:
        """The live traffic of both versions since ``mark``, the pipeline's own test requests excluded."""
        raise DeploymentError(f"the {self.TYPE} backend cannot read an endpoint's traffic")

    @abstractmethod
    def describe(self, endpoint_name: str) -> dict[str, Any]:
        """URL, serving version, health and liveness of an endpoint."""
