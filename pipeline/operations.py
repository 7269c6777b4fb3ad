"""Every command as one library call: a pipeline run, ``status``, ``rollback``, ``cleanup``, ``history``.

The CLI parses arguments, calls one method here, and prints what it returns. Each method that
changes an endpoint takes the endpoint's lock and repairs an interrupted deployment first
(``DeploymentPipeline.exclusive``), the same way a pipeline run does.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.backends import chosen_backend, load_backend
from pipeline.backends.base import Backend, Outcome
from pipeline.config import PipelineConfig
from pipeline.container.verified_files import FileChanged, file_sha256, read_verified
from pipeline.errors import PipelineError
from pipeline.gate.approvals import decide_for_approval
from pipeline.gate.approvals import record as record_approval
from pipeline.gate.decision import Approval, ApprovalStatus
from pipeline.outcomes import FinalState
from pipeline.run.record import new_run_id
from pipeline.state.artifacts import artifacts_for
from pipeline.state.store import DeploymentStore, host_of
from pipeline.training import job_files

# What a command acts with is imported where it acts: deployment and monitoring bring in the training and
# data libraries, and the commands that only read the store (``history``, ``runs``, ``jobs``) must not wait for them.
if TYPE_CHECKING:
    from pipeline.deployment.steps import DeploymentPipeline
    from pipeline.monitoring.monitor_run import MonitorRecord
    from pipeline.reporting.results import Results
    from pipeline.scoring.predict import PredictReport
    from pipeline.scoring.request import PredictRequest
    from pipeline.training.reproduce import ReproduceReport

log = logging.getLogger("pipeline")


# --------------------------------------------------------------------------- the other commands
@dataclass(frozen=True)
class StatusReport:
    endpoints: list[dict[str, Any]]
    unrecorded_servers: dict[str, list[str]]  # endpoint name -> servers running that the store does not know

    @property
    def healthy(self) -> bool:
        return not self.unrecorded_servers and all(row.get("healthy") and row.get("process_alive", True)
                                                   for row in self.endpoints if not row.get("on_host"))


@dataclass
class CleanupReport:
    removed: list[str] = field(default_factory=list)  # endpoints stopped and removed
    unrecorded_stopped: list[str] = field(default_factory=list)  # endpoints whose servers the store did not know
    deleted: dict[str, list[str]] = field(default_factory=dict)  # backend resources by kind (cleanup --prefix)
    pruned: dict[str, list[str]] = field(default_factory=dict)  # endpoint -> versions whose artifacts went
    elsewhere: dict[str, str] = field(default_factory=dict)  # local endpoints of other hosts, left alone: name -> host


@dataclass(frozen=True)
class MonitorRunReport:
    """What a monitor run wrote (``monitor --output-file``): ``runs show`` prints it as it is."""

    path: str
    document: dict[str, Any]


@dataclass(frozen=True)
class History:
    deployments: list[dict[str, Any]]
    rollbacks: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    approvals: list[dict[str, Any]]


class Operations:
    """The store and the backends of one config, for the commands that are not a pipeline run."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.store = DeploymentStore(config.store_dir, config.shared_store_url)
        self.store.cache.region = config.aws_region
        self.run_id = new_run_id()
        self._backends: dict[str, Backend] = {}

    def backend(self, endpoint_name: str | None = None) -> Backend:
        """The backend that runs the endpoint (``chosen_backend``)."""
        name = chosen_backend(self.config, self.store.endpoint(endpoint_name) if endpoint_name else None)
        if name not in self._backends:
            self._backends[name] = load_backend(name, self.config, self.store, self.run_id)
        return self._backends[name]

    def deployer(self, endpoint_name: str | None = None) -> DeploymentPipeline:
        from pipeline.deployment.steps import DeploymentPipeline
        return DeploymentPipeline(self.config, self.store, self.backend(endpoint_name), self.run_id)

    # ----------------------------------------------------------------- status
    def status(self, endpoint_name: str | None = None) -> StatusReport:
        """Each endpoint's URL, version, health and process; an interrupted deployment is repaired first
        (when no pipeline is deploying), so status tells the truth."""
        stopped = self.backend().stop_abandoned()
        if stopped:
            log.warning("stopped servers whose pipeline died before deploying them: %s", ", ".join(stopped))
        names = [endpoint_name] if endpoint_name else [row["name"] for row in self.store.endpoints()]
        deploying = set(self.store.endpoints_deploying())
        for name in [name for name in deploying if name not in names and not endpoint_name
                     and not host_of(self.store.endpoint(name))]:
            self.deployer(name).reconcile_if_idle(name)  # a first deployment that died: finished, not listed
        rows = []
        for name in names:
            row = self.store.endpoint(name)
            if host_of(row):  # a local endpoint of another host: only that host can reach its server
                rows.append(_elsewhere(row))
                continue
            deployer = self.deployer(name)
            if row or name in deploying:
                deployer.reconcile_if_idle(name)
            rows.append(deployer.backend.describe(name))
        unrecorded = {name: servers for name, servers in self.backend().unrecorded_servers().items()
                      if not endpoint_name or name == endpoint_name}
        return StatusReport(rows, unrecorded)

    # ----------------------------------------------------------------- rollback
    def rollback(self, endpoint_name: str, to_version: str | None = None) -> Outcome:
        deployer = self.deployer(endpoint_name)
        deployer.require_here(endpoint_name, "rollback")
        with deployer.exclusive(endpoint_name, f"rollback {self.run_id}"):
            return deployer.rollback(endpoint_name, to_version)

    # ----------------------------------------------------------------- approvals
    def decide_on_model(self, training_job: str, status: ApprovalStatus, by: str, reason: str) -> Approval:
        """``approve`` / ``reject``: a person's decision about a job's model, in the audit trail (and SageMaker's
        Model Registry for a SageMaker job). The job's files are checked first: an approval names one model."""
        row = self.store.training_job(training_job)
        if row is None:
            raise PipelineError(f"training job {training_job!r} not found in {self.store.location!r} (see `jobs`)")
        job = job_files.load(self.store, row)
        approval = decide_for_approval(job.name, row["gate_decision"], job.model_sha256, status, by, reason)
        record_approval(self.store, approval, run_id=self.run_id)
        load_backend(chosen_backend(self.config, row), self.config, self.store, self.run_id).record_approval(
            job, str(status), by, approval.reason or "")
        return approval

    # ----------------------------------------------------------------- rollout
    def rollout_status(self, endpoint_name: str) -> dict[str, Any] | None:
        """The bake running on an endpoint now (its run, versions, routing, intervals judged so far, requests
        made of it), or None. Read from the store, so it takes no lock: the baking run holds it."""
        self.store.require_endpoint(endpoint_name)
        started = self.store.bake_in_progress(endpoint_name)
        if started is None:
            return None
        intervals = self.store.events_after(started["id"], endpoint_name, "bake_interval")
        requested = self.store.events_after(started["id"], endpoint_name, "rollout_requested")
        return {**started["detail"], "run_id": started["run_id"], "started_at": started["at"],
                "intervals": [{key: event["detail"].get(key) for key in ("interval", "candidate_percent", "verdict",
                                                                          "reason")} for event in intervals],
                "requested": [{"action": event["detail"]["action"], "by": event["detail"]["by"], "at": event["at"]}
                              for event in requested]}

    def rollout_request(self, endpoint_name: str, action: str, by: str, wait_seconds: float = 60.0
                        ) -> dict[str, Any]:
        """Ask the baking run to ``promote`` (skip the remaining intervals) or ``abort`` (every request back to the
        serving version): recorded in the audit trail, where the run reads it within a second. Waits, at most
        ``wait_seconds``, for the run to act, and answers how its deployment ended (or ``in_progress``)."""
        status = self.rollout_status(endpoint_name)
        if status is None:
            raise PipelineError(f"no bake in progress on endpoint {endpoint_name!r}: nothing to {action} "
                                f"(`status` shows what serves; `history` how earlier bakes ended)")
        self.store.record_event("rollout_requested", run_id=status["run_id"], endpoint_name=endpoint_name,
                                action=action, by=by, version=status["version"])
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and self.store.bake_in_progress(endpoint_name) is not None:
            time.sleep(0.2)
        deployment = next((row for row in self.store.deployments(endpoint_name, limit=20)
                           if row["run_id"] == status["run_id"]), None)
        return {"run_id": status["run_id"], "version": status["version"],
                "final_state": deployment["status"] if deployment else None,
                "reason": deployment["reason"] if deployment else None}

    # ----------------------------------------------------------------- monitor
    def monitor(self, endpoint_name: str, *, version: str | None = None, since: str | None = None,
                labels_file: str | None = None, rollback_on_breach: bool = False,
                report_file: str | None = None) -> MonitorRecord:
        """Drift and live accuracy of what ``endpoint_name`` serves; notifies, and rolls back on a breach when
        asked. Recorded as a run (mode ``monitor``), so ``runs`` shows scheduled monitor jobs too."""
        from pipeline.monitoring.monitor_run import MonitorRun
        deployer = self.deployer(endpoint_name)
        deployer.require_here(endpoint_name, "monitor")
        self.store.use_artifacts(artifacts_for(self.config, deployer.backend.TYPE, self.store.directory),
                                 self.config.aws_region)
        return MonitorRun(self.config, deployer, self.rollback, self.run_id).run(
            endpoint_name, version=version, since=since, labels_file=labels_file,
            rollback_on_breach=rollback_on_breach, report_file=report_file)

    # ----------------------------------------------------------------- predict and reproduce
    def predict(self, request: PredictRequest) -> PredictReport:
        """Score a CSV file with a training job's model in this process, through a live endpoint, or in a Batch
        Transform job (``pipeline.scoring.service``)."""
        from pipeline.scoring.service import predict

        return predict(self, request)

    def reproduce(self, training_job: str, **options: Any) -> ReproduceReport:
        """Retrain a job from its manifest and compare the model (``pipeline.training.reproduce``); every verdict
        is recorded in the audit trail."""
        from pipeline.training.reproduce import reproduce

        return reproduce(self.store, training_job, run_id=self.run_id, **options)

    # ----------------------------------------------------------------- cleanup
    def remove_endpoint(self, endpoint_name: str) -> str | None:
        """Stop and forget one endpoint (its history stays); the version it served."""
        deployer = self.deployer(endpoint_name)
        deployer.require_here(endpoint_name, "cleanup")
        with deployer.exclusive(endpoint_name, f"cleanup {self.run_id}"):
            return deployer.remove(endpoint_name)

    def cleanup(self, *, endpoint_name: str | None = None, prefix: str | None = None, everything: bool = False,
                prune: bool = False, keep: int | None = None) -> CleanupReport:
        """Stop and remove endpoints by name, prefix or all (and servers of them the store lost), or
        prune the artifacts of old versions."""
        if everything:
            prefix = prefix or ""
        if not (endpoint_name or prefix is not None or prune):
            raise PipelineError("cleanup needs --endpoint-name NAME, --prefix PREFIX, --all or --prune")
        if keep is not None and not prune:
            raise PipelineError("--keep goes with --prune: it is the number of versions --prune keeps")
        if keep is not None and keep < 1:
            raise PipelineError(f"--keep {keep}: expected at least 1")

        def matches(name: str) -> bool:
            return bool(endpoint_name and name == endpoint_name) or (prefix is not None and name.startswith(prefix))

        self.backend().stop_abandoned()
        report = CleanupReport()
        endpoints = [row for row in self.store.endpoints() if matches(row["name"])]
        names = [row["name"] for row in endpoints if row["name"] == endpoint_name or not host_of(row)]
        report.elsewhere = {row["name"]: row["machine"] for row in endpoints if row["name"] not in names}
        unrecorded = [name for name in self.backend().unrecorded_servers() if matches(name)]
        if endpoint_name and endpoint_name not in unrecorded:
            self.store.require_endpoint(endpoint_name)
        for name in names:
            self.remove_endpoint(name)
            report.removed.append(name)
        for name in unrecorded:
            with self.deployer().lock(name, f"cleanup {self.run_id}"):
                self.backend().remove(name)
            report.unrecorded_stopped.append(name)
        if prefix:  # SageMaker may hold resources this store never recorded
            report.deleted = self.backend().remove_by_prefix(prefix)
        if prune:
            for name in sorted({row["endpoint_name"] for row in self.store.versions()}):
                row = self.store.endpoint(name)
                if host_of(row):
                    report.elsewhere[name] = row["machine"]  # its files are on that host
                    continue
                deployer = self.deployer(name)
                with deployer.lock(name, f"cleanup {self.run_id}"):
                    report.pruned[name] = deployer.prune(name, keep or self.config.retain_versions)
        return report

    # ----------------------------------------------------------------- history
    def history(self, endpoint_name: str | None = None) -> History:
        if endpoint_name and not self.store.knows_endpoint(endpoint_name):
            raise PipelineError(f"endpoint {endpoint_name!r} not found: {self.store.directory} has no endpoint, "
                                f"deployment or event of that name (`history` lists them all)")
        rollbacks = self.store.manual_events(endpoint_name)
        deployments = self.store.deployments(endpoint_name, limit=1000)
        jobs = {row["training_job"] for row in deployments}
        approvals = [event for event in self.store.events_of_kinds(("model_approved", "model_rejected"))
                     if not endpoint_name or event["detail"].get("training_job") in jobs]
        return History(deployments, rollbacks, self.store.runs(), approvals)

    def serving_at(self, endpoint_name: str, at: str) -> tuple[str | None, dict[str, Any] | None]:
        """Which version served at ``at``, and the approval of its model that stood then (None: none recorded)."""
        if not self.store.knows_endpoint(endpoint_name):
            raise PipelineError(f"endpoint {endpoint_name!r} not found: {self.store.directory} has no endpoint, "
                                f"deployment or event of that name (`history` lists them all)")
        version = self.store.serving_version_at(endpoint_name, at)
        row = self.store.version(version) if version else None
        if row is None:
            return version, None
        moment = self.store.serving_moment(at)
        for event in self.store.events_of_kinds(("model_approved", "model_rejected")):  # newest first
            if event["detail"].get("training_job") == row["training_job"] and \
                    datetime.fromisoformat(event["at"]) <= moment:
                return version, {"status": "approved" if event["kind"] == "model_approved" else "rejected",
                                 "by": event["detail"].get("by"), "at": event["at"],
                                 "reason": event["detail"].get("reason"), "training_job": row["training_job"]}
        return version, None

    def verify_audit_trail(self) -> list[str]:
        return self.store.verify_events()

    # ----------------------------------------------------------------- jobs and runs
    def jobs(self, prefix: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Training jobs newest first: what each was trained on, how the gate judged it, where it serves.
        Up to ``limit`` of them, plus one more when there are more (the caller says so, and drops it)."""
        listed = []
        decided = {}  # job -> the last approval or rejection event of it, newest first
        for event in self.store.events_of_kinds(("model_approved", "model_rejected")):
            decided.setdefault(event["detail"].get("training_job"), event)
        for row in self.store.training_jobs(prefix, limit=limit + 1):
            metrics = json.loads(row["metrics_json"] or "{}")
            decision = decided.get(row["name"])
            metric = row["gate_metric"] or "accuracy"
            listed.append({
                "name": row["name"], "created_at": row["created_at"], "backend": row["backend"],
                "dataset": row["dataset"], "data_sha256": row["data_sha256"], "model_type": row["model_type"],
                "gate_metric": metric,
                "gate_value": row["gate_value"] if row["gate_value"] is not None else metrics.get(metric),
                # only accuracy has an interval: another metric is never shown beside accuracy's
                "gate_interval": json.loads(row["gate_interval_json"]) if row["gate_interval_json"]
                else metrics.get("accuracy_ci95") if metric == "accuracy" else None,
                "gate_decision": row["gate_decision"], "deployed_as": row["deployed_as"], "run_id": row["run_id"],
                "pruned_at": row.get("pruned_at"), "deployable": not row.get("pruned_at")
                and row["gate_decision"] != "rejected" and (decision is None or decision["kind"] != "model_rejected"),
                "approval": None if decision is None else {
                    "status": "approved" if decision["kind"] == "model_approved" else "rejected",
                    "by": decision["detail"].get("by"), "at": decision["at"],
                    "reason": decision["detail"].get("reason")},
                "awaiting_approval": row["gate_decision"] == "pending_approval" and decision is None})
        return listed

    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Pipeline runs newest first: mode, outcome, how long, what they trained and deployed, their results.
        Up to ``limit`` of them, plus one more when there are more (the caller says so, and drops it)."""
        from pipeline.reporting.html_report import report_path

        listed = []
        for row in self.store.run_overview(limit=limit + 1):
            page = report_path(self.store.directory, row["run_id"])
            duration = None
            if row["finished_at"]:
                duration = round((datetime.fromisoformat(row["finished_at"]) -
                                  datetime.fromisoformat(row["started_at"])).total_seconds(), 1)
            listed.append({key: row[key] for key in ("run_id", "started_at", "mode", "backend", "status", "exit_code",
                                                     "training_job", "endpoint_name", "version", "results_file")}
                          | {"duration_seconds": duration,
                             "report_html": str(page) if page.is_file() else row.get("report_url")}
                          | _left_serving(row))
        return listed

    def run_results(self, run_id: str) -> tuple[Results | MonitorRunReport, str | None]:
        """A run's results read back from the file it wrote: a pipeline run's results, or a monitor run's
        report (``monitor --output-file``), which has a shape of its own. The file must still have the sha256
        the run recorded when it wrote it; a file changed since is refused, one without a recorded hash comes
        with the reason it is unverified (the second item; None when verified)."""
        row = self.store.run(run_id)
        if row is None:
            raise PipelineError(f"run {run_id!r} not found in {self.store.location!r} (`runs` lists them)")
        if not row["results_file"]:
            written = " (it was run without --output-file)" if row["mode"] == "monitor" else ""
            raise PipelineError(f"run {run_id!r} recorded no results file{written}")
        path = Path(row["results_file"])
        recorded = row.get("results_sha256")
        try:
            if recorded and row.get("results_url") and not _holds(path, recorded):  # written on another machine
                data = self.store.cache.read(row["results_url"], recorded, f"the results file of run {run_id!r}")
                path = Path(row["results_url"])
            else:
                data = read_verified(path, recorded) if recorded else path.read_bytes()
            self._fetch_report(row)
            unverified = None if recorded else (
                f"run {run_id} recorded no sha256 of its results file (it ended before writing it, or ran before "
                f"results were hashed): {path} is shown unverified")
            document = json.loads(data)
            if row["mode"] == "monitor":
                return MonitorRunReport(str(path), document), unverified
            from pipeline.reporting.results import Results

            return Results.model_validate(document), unverified
        except FileChanged:
            raise PipelineError(f"the results file of run {run_id!r}, {str(path)!r}, is not the one the run "
                                f"wrote: its sha256 differs from the one recorded in {self.store.location!r} "
                                f"(edited or replaced since); `runs` and `history` still show the run") from None
        except FileNotFoundError:
            raise PipelineError(f"the results file of run {run_id!r}, {str(path)!r}, does not exist (deleted, or "
                                f"never written: the status was {row['status']}, exit code {row['exit_code']})"
                                ) from None
        except (OSError, ValueError) as err:
            raise PipelineError(f"the results file of run {run_id!r}, {str(path)!r}, cannot be read: {err}") from None

    def _fetch_report(self, row: dict[str, Any]) -> None:
        """A run's HTML report, from the artifact store into this store_dir where `runs show` says it is (checked
        against the recorded sha256); a report that cannot be fetched is said, the summary is still shown."""
        from pipeline.reporting.html_report import report_path
        from pipeline.state.artifacts import place

        page = report_path(self.store.directory, row["run_id"])
        if not row.get("report_url") or not row.get("report_sha256") or _holds(page, row["report_sha256"]):
            return
        try:
            place(self.store.cache.fetch(row["report_url"], row["report_sha256"], f"the report of run "
                                         f"{row['run_id']!r}"), page)
        except PipelineError as err:
            log.warning("%s", err.message)


def _elsewhere(row: dict[str, Any]) -> dict[str, Any]:
    """``status`` of a local endpoint of another host: what the store recorded, not checked from here."""
    return {key: row[key] for key in ("name", "backend", "url", "serving_version")} | {"on_host": row["machine"],
                                                                                       "healthy": None}


def _holds(path: Path, sha256: str) -> bool:
    try:
        return path.is_file() and file_sha256(path) == sha256
    except OSError:
        return False


def _left_serving(run: dict[str, Any]) -> dict[str, Any]:
    """What a run's deployment left serving and what it tried, labelled apart: a deployment that was not kept
    left the version before it serving (or nothing, when the endpoint's first version failed)."""
    state, tried = run.get("deployment_status"), run.get("version")
    if tried is None:
        return {"deployment_status": None, "tried_version": None, "left_serving": None}
    kept = state in (FinalState.DEPLOYED, FinalState.FAILED, FinalState.IN_PROGRESS)
    return {"deployment_status": state, "tried_version": tried,
            "left_serving": tried if kept else (None if state == FinalState.REMOVED else run.get("from_version"))}
