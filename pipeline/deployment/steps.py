"""Deployment steps with their records: every change of endpoint state is one store transaction.

``DeploymentPipeline`` wraps the backend's ``stage``/``promote``/``discard``/
``rollback`` and writes what each one did (the endpoint row, the deployment's
status, the audit event) together, so the history never disagrees with what
serves. Whether to promote or discard is not decided here: that is the
orchestrator's call.
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.backends.base import Backend, DeploymentError, Outcome, Server, Staged
from pipeline.config import PipelineConfig
from pipeline.errors import ExitCode, PipelineError
from pipeline.outcomes import FinalState
from pipeline.state.locking import EndpointLock
from pipeline.state.store import DeploymentStore, host_of
from pipeline.training import job_files
from pipeline.training.jobs import TrainingJob, timestamp_name

log = logging.getLogger(__name__)


@dataclass
class Deployment:
    """One attempt to put a version on an endpoint, from staging to its final status."""

    deployment_id: int
    staged: Staged
    training_job: str
    started: float = field(default_factory=time.monotonic)
    outcome: Outcome | None = None
    reason: str | None = None

    @property
    def final_state(self) -> FinalState:
        return self.outcome.status if self.outcome else FinalState.IN_PROGRESS

    @property
    def serving_version(self) -> str | None:
        """What serves once the deployment ended (None while it is in progress)."""
        return self.outcome.serving_version if self.outcome else None

    def to_results(self) -> dict[str, Any]:
        status = self.final_state
        return {
            "status": "success" if status == FinalState.DEPLOYED else str(status),
            "final_state": str(status),
            "endpoint_name": self.staged.endpoint_name,
            "endpoint_url": self.staged.stable.url,
            "version": self.staged.version,
            "previous_version": self.staged.previous_version,
            "serving_version": self.serving_version,
            "training_job": self.training_job,
            "deployment_id": self.deployment_id,
            "deployment_duration": round(time.monotonic() - self.started, 3),
            "reason": self.reason,
            "detail": self.outcome.detail if self.outcome else None,
        }


class DeploymentPipeline:
    def __init__(self, config: PipelineConfig, store: DeploymentStore, backend: Backend, run_id: str) -> None:
        self.config = config
        self.store = store
        self.backend = backend
        self.run_id = run_id

    # --- one change to an endpoint at a time ---
    def lock(self, endpoint_name: str, holder: str | None = None, timeout: float | None = None) -> EndpointLock:
        return self.store.endpoint_lock(endpoint_name, holder or f"run {self.run_id}",
                                        self.config.lock_timeout_seconds if timeout is None else timeout)

    @contextmanager
    def exclusive(self, endpoint_name: str, holder: str | None = None,
                  lock: EndpointLock | None = None) -> Iterator[list[dict[str, Any]]]:
        """Hold the endpoint's lock and repair an interrupted deployment first; yields what was repaired.

        Every command that changes an endpoint goes through here: a pipeline run, rollback, cleanup.
        """
        with lock or self.lock(endpoint_name, holder):
            yield self.reconcile(endpoint_name)

    def require_here(self, endpoint_name: str, command: str) -> None:
        """Refuse, in one line, a command that would act on a local endpoint of another host."""
        elsewhere = host_of(self.store.endpoint(endpoint_name))
        if elsewhere:
            raise PipelineError(f"endpoint {endpoint_name!r} is a local endpoint on host {elsewhere}: run {command} "
                                f"there (this is {socket.gethostname()})", ExitCode.USAGE)

    def reconcile_if_idle(self, endpoint_name: str, lock: EndpointLock | None = None) -> list[dict[str, Any]]:
        """Repair an interrupted deployment when no pipeline is deploying now; never wait for one."""
        lock = lock or self.lock(endpoint_name, f"reconcile {self.run_id}", timeout=0)
        if not lock.try_acquire():
            return []
        try:
            return self.reconcile(endpoint_name)
        finally:
            lock.release()

    def serving_job(self, endpoint_name: str) -> TrainingJob:
        """The training job of the version an endpoint serves, verified against the store."""
        row = self.store.require_endpoint(endpoint_name)
        if self.store.version(row["serving_version"] or "") is None:
            raise PipelineError(f"endpoint {endpoint_name!r} serves no recorded version")
        return self.job_of_version(row["serving_version"])

    def job_of_version(self, version_name: str) -> TrainingJob:
        """The training job a version was deployed from, verified against the store."""
        version = self.store.version(version_name)
        if version is None:
            raise PipelineError(f"version {version_name!r} is not in the store (see `history`)")
        job_row = self.store.training_job(version["training_job"])
        if job_row is None:
            raise PipelineError(f"training job {version['training_job']!r} of version {version['version']} "
                                f"is not in the store")
        return job_files.load(self.store, job_row)

    def stage(self, job: TrainingJob, endpoint_name: str) -> Deployment:
        """Register a new version and make it reachable for the endpoint tests."""
        # Versions are named after the endpoint they serve; the name stays within SageMaker's 63 characters.
        version = self.store.claim_version(endpoint_name, timestamp_name(endpoint_name[:44].rstrip("-")),
                                           job.name, job.model_sha256)
        row = self.store.endpoint(endpoint_name)
        previous = row["serving_version"] if row else None
        deployment_id = self.store.start_deployment(self.run_id, endpoint_name, previous, version, job.name)
        log.info("deploying %s (training job %s) to endpoint %s", version, job.name, endpoint_name)
        try:
            staged = self.backend.stage(endpoint_name, version, job)
        except PipelineError as err:
            with self.store.transaction() as conn:
                self.store.finish_deployment(conn, deployment_id, FinalState.FAILED, str(err), self.run_id,
                                             endpoint_name)
            raise
        if staged.restarted is not None:  # the dead stable server was restarted with `previous`
            with self.store.transaction() as conn:
                self._record_server(conn, endpoint_name, staged.restarted)
                self.store.append_event(conn, "endpoint_restarted", run_id=self.run_id, endpoint_name=endpoint_name,
                                        version=previous, pid=staged.restarted.pid)
            self.backend.adopt(endpoint_name)
        if not staged.beside_stable:  # the stable server itself now runs the new version
            with self.store.transaction() as conn:
                self._record_server(conn, endpoint_name, staged.stable, serving_version=version)
                self.store.append_event(conn, "endpoint_started", run_id=self.run_id, endpoint_name=endpoint_name,
                                        version=version, url=staged.stable.url)
        return Deployment(deployment_id, staged, job.name)

    def _record_server(self, conn: Any, endpoint_name: str, server: Server, **fields: Any) -> None:
        """The store's endpoint row takes the backend's facts as they are."""
        self.store.set_endpoint(conn, endpoint_name, backend=self.backend.TYPE, url=server.url, host=server.host,
                                port=server.port, pid=server.pid, machine=server.machine, **fields)

    def promote(self, deployment: Deployment, status: FinalState = FinalState.DEPLOYED,
                reason: str | None = None) -> Outcome:
        """Switch the stable endpoint to the staged version (verified) and record it."""
        staged = deployment.staged
        try:
            outcome = self.backend.promote(staged)
        except DeploymentError as err:
            deployment.reason = str(err)
            raise
        if status != FinalState.DEPLOYED:
            outcome = Outcome(status, outcome.serving_version, outcome.detail, outcome.stable)
        self._finish(deployment, outcome, reason)
        log.info("endpoint %s now serves %s", staged.endpoint_name, staged.version)
        return outcome

    def discard(self, deployment: Deployment, reason: str, status: FinalState | None = None) -> Outcome:
        """The new version failed: keep or restore the previous one, verified; record how it ended (``status``,
        when given, names it instead of the backend, unless the previous version could not be verified)."""
        staged = deployment.staged
        try:
            outcome = self.backend.discard(staged)
        except PipelineError as err:
            outcome = Outcome(FinalState.ROLLBACK_FAILED, None, str(err))
        if status is not None and outcome.status not in (FinalState.ROLLBACK_FAILED, FinalState.REMOVED):
            outcome = Outcome(status, outcome.serving_version, outcome.detail, outcome.stable)
        self._finish(deployment, outcome, reason)
        return outcome

    def _finish(self, deployment: Deployment, outcome: Outcome, reason: str | None) -> None:
        staged = deployment.staged
        deployment.outcome = outcome
        deployment.reason = reason
        with self.store.transaction() as conn:
            if outcome.status == FinalState.REMOVED:
                self.store.delete_endpoint(conn, staged.endpoint_name)
            elif outcome.status != FinalState.ROLLBACK_FAILED:
                self._record_server(conn, staged.endpoint_name, outcome.stable or staged.stable,
                                    serving_version=outcome.serving_version)
            self.store.finish_deployment(conn, deployment.deployment_id, outcome.status, reason, self.run_id,
                                         staged.endpoint_name, version=staged.version,
                                         serving_version=outcome.serving_version, detail=outcome.detail)
        if outcome.status not in (FinalState.REMOVED, FinalState.ROLLBACK_FAILED):
            self.backend.adopt(staged.endpoint_name)

    def reconcile(self, endpoint_name: str) -> list[dict[str, Any]]:
        """Finish deployments left ``in_progress`` by a pipeline that died (SIGKILL, power loss).

        Called while holding the endpoint lock, so no live pipeline can own them. Servers of the
        endpoint that neither the store nor a live pipeline owns are stopped as well.
        """
        repaired = []
        for row in self.store.deployments(endpoint_name, limit=1000):
            if row["status"] != FinalState.IN_PROGRESS:
                continue
            try:
                outcome = self.backend.reconcile(endpoint_name, row)
            except PipelineError as err:
                outcome = Outcome(FinalState.ROLLBACK_FAILED, None, str(err))
            reason = f"the pipeline of run {row['run_id']} stopped during this deployment; {outcome.detail}"
            with self.store.transaction() as conn:
                if outcome.status == FinalState.REMOVED:
                    self.store.delete_endpoint(conn, endpoint_name)
                elif outcome.serving_version is not None:
                    self.store.set_endpoint(conn, endpoint_name, backend=self.backend.TYPE,
                                            serving_version=outcome.serving_version)
                # deployed: it completed (verified, judged good) and only its record was lost (on SageMaker)
                status = outcome.status if outcome.status in (FinalState.ROLLBACK_FAILED, FinalState.DEPLOYED) \
                    else FinalState.INTERRUPTED
                self.store.finish_deployment(conn, row["id"], status, reason, self.run_id, endpoint_name,
                                             serving_version=outcome.serving_version, detail=outcome.detail)
                if row["run_id"]:
                    self.store.close_run(conn, row["run_id"], FinalState.INTERRUPTED)
            log.warning("deployment %s of %s was interrupted: %s", row["to_version"], endpoint_name, outcome.detail)
            repaired.append({"deployment_id": row["id"], "version": row["to_version"], "status": str(status),
                             "serving_version": outcome.serving_version, "detail": outcome.detail})
        stopped = self.backend.sweep(endpoint_name)
        if stopped:
            self.store.record_event("orphans_stopped", run_id=self.run_id, endpoint_name=endpoint_name,
                                    servers=stopped)
            log.warning("endpoint %s: stopped servers nobody owned: %s", endpoint_name, ", ".join(stopped))
            repaired.append({"deployment_id": None, "version": None, "status": "orphans_stopped",
                             "serving_version": None, "detail": f"stopped {', '.join(stopped)}"})
        return repaired

    def rollback(self, endpoint_name: str, to_version: str | None = None) -> Outcome:
        """Manual rollback to ``to_version`` or the version served before the current one."""
        row = self.store.require_endpoint(endpoint_name)
        target = to_version or self._previous_version(endpoint_name, row["serving_version"])
        version = self.store.version(target)
        if version is None:
            raise PipelineError(f"version {target!r} of endpoint {endpoint_name!r} not found (see history)")
        if version.get("pruned_at"):
            kept = [v["version"] for v in self.store.versions(endpoint_name)
                    if not v.get("pruned_at") and v["version"] != row["serving_version"]]
            raise PipelineError(f"version {target!r} of endpoint {endpoint_name!r} was pruned on "
                                f"{version['pruned_at'][:19]} (cleanup --prune deleted its artifacts): it cannot serve "
                                f"again; " + (f"versions that can: {', '.join(kept[:5])}" if kept else
                                              "no earlier version of this endpoint has its artifacts left"))
        try:
            outcome = self.backend.rollback(endpoint_name, target)
        except PipelineError as err:
            outcome = Outcome(FinalState.ROLLBACK_FAILED, None, str(err))
        with self.store.transaction() as conn:
            if outcome.status == FinalState.ROLLED_BACK:
                if outcome.stable is not None:
                    self._record_server(conn, endpoint_name, outcome.stable)
                self.store.set_endpoint(conn, endpoint_name, serving_version=target)
            self.store.append_event(conn, f"manual_{outcome.status}", run_id=self.run_id,
                                    endpoint_name=endpoint_name, from_version=row["serving_version"],
                                    to_version=target, detail=outcome.detail)
        if outcome.status == FinalState.ROLLED_BACK:
            self.backend.adopt(endpoint_name)
        return outcome

    def remove(self, endpoint_name: str) -> str | None:
        """Stop an endpoint and forget it (its history stays); returns the version it served."""
        row = self.store.require_endpoint(endpoint_name)
        self.backend.remove(endpoint_name)
        with self.store.transaction() as conn:
            self.store.delete_endpoint(conn, endpoint_name)
            self.store.append_event(conn, "endpoint_removed", run_id=self.run_id, endpoint_name=endpoint_name,
                                    serving_version=row["serving_version"])
        log.info("endpoint %s stopped and removed", endpoint_name)
        return row["serving_version"]

    def prune(self, endpoint_name: str, keep: int) -> list[str]:
        """Delete the artifacts of all but the newest ``keep`` versions (never the serving one).

        A training job's directory goes only when no kept version of any endpoint uses it.
        """
        row = self.store.endpoint(endpoint_name)
        serving = row["serving_version"] if row else None
        versions = self.store.versions(endpoint_name)  # newest first
        kept = {v["version"] for v in versions[:keep]} | ({serving} if serving else set())
        doomed = [v for v in versions if v["version"] not in kept]
        in_use = {v["training_job"] for v in self.store.versions() if v["version"] in kept or
                  v["endpoint_name"] != endpoint_name}
        pruned, jobs = [], []
        for version in doomed:
            self.backend.delete_version_artifacts(endpoint_name, version["version"])
            job = self.store.training_job(version["training_job"])
            if job and version["training_job"] not in in_use:
                job_files.remove(self.store, job)
                jobs.append(job["name"])
            if not version.get("pruned_at"):
                pruned.append(version["version"])
        logs = self.backend.delete_stale_logs(endpoint_name, kept)
        if pruned or jobs or logs:
            self.store.record_pruned(self.run_id, endpoint_name, pruned, sorted(set(jobs)), kept=sorted(kept),
                                     logs=logs)
        return pruned

    def _previous_version(self, endpoint_name: str, current: str | None) -> str:
        for deployment in self.store.deployments(endpoint_name, limit=1000):
            if deployment["status"] == FinalState.DEPLOYED and deployment["to_version"] != current:
                return deployment["to_version"]  # pruned or not: rollback says which
        raise PipelineError(f"endpoint {endpoint_name!r} has no earlier deployed version to roll back to")
