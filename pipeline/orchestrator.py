"""The pipeline, phase by phase:

    train -> evaluate -> gate -> deploy -> test the live endpoint -> keep it, or roll back -> notify -> record

``Orchestrator.run`` reads like that diagram. The two decisions that matter are
made here and nowhere else: the accuracy gate (``Gate``) and whether a
deployment whose tests failed is rolled back. Modules below do the work; this
one decides, passing one config object and one results dict along.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.backends import load_backend
from pipeline.backends.base import Backend
from pipeline.config import PipelineConfig, validate_endpoint_name
from pipeline.container import inference
from pipeline.deployment import Deployment, DeploymentPipeline
from pipeline.errors import ExitCode, PipelineError
from pipeline.locking import EndpointLock
from pipeline.logs import set_run_id
from pipeline.notifications import Notifier
from pipeline.store import DeploymentStore
from pipeline.testing import EndpointTester, TestReport
from pipeline.training import BUILTIN_METRICS, TrainingJob, TrainingPipeline

log = logging.getLogger(__name__)

MODES = ("full", "training", "deployment", "testing", "cleanup")


# --------------------------------------------------------------------------- the gate
@dataclass(frozen=True)
class GateDecision:
    decision: str  # deploy | approved | held | rejected
    metric: str
    value: float
    threshold: float
    minimum: float
    interval: tuple[float, float] | None
    reason: str
    warning: str | None = None

    @property
    def deploys(self) -> bool:
        return self.decision == "deploy"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval) if self.interval else None
        data["deploys"] = self.deploys
        return data


class Gate:
    """May this model be deployed?

    | condition                            | decision | deploys                                   |
    |--------------------------------------|----------|-------------------------------------------|
    | metric >= threshold, auto-deploy on  | deploy   | yes                                       |
    | metric >= threshold, auto-deploy off | approved | no; --mode deployment deploys it later    |
    | minimum <= metric < threshold        | held     | no                                        |
    | accuracy <= no-skill baseline        | held     | no (a majority-class guess does as well)  |
    | metric < minimum                     | rejected | never, not even with --mode deployment    |
    """

    def __init__(self, config: PipelineConfig, explicit_request: bool = False) -> None:
        self.config = config
        self.explicit_request = explicit_request  # --mode deployment: deploy even with auto-deploy off

    def decide(self, metrics: dict[str, Any]) -> GateDecision:
        name = self.config.gate_metric
        value = metrics.get(name)
        if name in NOT_GATEABLE or not _is_score(value):
            scores = sorted(k for k, v in metrics.items() if _is_score(v) and k not in NOT_GATEABLE)
            raise PipelineError(f"gate_metric {name!r} is not an evaluated score between 0 and 1 where higher is "
                                f"better (available: {', '.join(scores)})")
        threshold, minimum = self.config.accuracy_threshold, self.config.minimum_accuracy
        interval = tuple(metrics["accuracy_ci95"]) if name == "accuracy" and metrics.get("accuracy_ci95") else None
        shown = f"{name} {value:.2%}"
        accuracy, no_skill = metrics.get("accuracy"), metrics.get("no_skill_accuracy")
        if value < minimum:
            decision, reason = "rejected", f"{shown} is below the minimum threshold {minimum:.2%}"
        elif _is_score(accuracy) and _is_score(no_skill) and accuracy <= no_skill:
            decision, reason = "held", (f"accuracy {accuracy:.2%} does not beat the no-skill baseline "
                                        f"{no_skill:.2%} (always predicting the most frequent class)")
        elif value < threshold:
            decision, reason = "held", f"{shown} is below the deploy threshold {threshold:.2%} (minimum {minimum:.2%})"
        elif self.config.auto_deploy_enabled or self.explicit_request:
            decision, reason = "deploy", f"{shown} meets the deploy threshold {threshold:.2%}"
        else:
            decision, reason = "approved", (f"{shown} meets the deploy threshold {threshold:.2%}; auto-deploy is off: "
                                            f"deploy it with --mode deployment --training-job NAME")
        warning = None
        if interval and interval[0] < threshold <= interval[1]:
            warning = (f"the 95% interval of {name} [{interval[0]:.2%}, {interval[1]:.2%}] straddles the threshold "
                       f"{threshold:.2%}: the test set is too small to be sure")
        return GateDecision(decision, name, float(value), threshold, minimum, interval, reason, warning)  # type: ignore[arg-type]


# Numbers, but not "higher is better" scores of the model: a spread, sizes, and a reference point.
NOT_GATEABLE = {"cv_std", "test_size", "train_size", "no_skill_accuracy"}


def _is_score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


# --------------------------------------------------------------------------- the run
def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


class Orchestrator:
    def __init__(
        self,
        config: PipelineConfig,
        sources: dict[str, str] | None = None,
        *,
        mode: str = "full",
        endpoint_name: str | None = None,
        training_job: str | None = None,
        training_pipeline: TrainingPipeline | None = None,
        log_file: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise PipelineError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "deployment" and not training_job:
            raise PipelineError("--mode deployment needs --training-job NAME (the names are in `history`)")
        if mode in ("full", "training") and config.gate_metric not in BUILTIN_METRICS and \
                not getattr(training_pipeline, "custom_evaluations", None):
            raise PipelineError(f"gate_metric {config.gate_metric!r}: expected one of {', '.join(BUILTIN_METRICS)} "
                                f"or a metric added by a custom evaluation")
        if endpoint_name is not None:
            validate_endpoint_name(endpoint_name)
        self.config = config
        self.mode = mode
        self.endpoint_name = endpoint_name or config.endpoint_prefix
        self.training_job_name = training_job
        self.training = training_pipeline or TrainingPipeline(config)
        self.run_id = new_run_id()
        set_run_id(self.run_id)  # every log line of this run carries it (--log-format json)
        self.started = time.monotonic()
        self.exit_code = ExitCode.SUCCESS
        self.results: dict[str, Any] = {
            "run_id": self.run_id,
            "mode": mode,
            "backend": config.backend_name,
            "pipeline_status": "running",
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "summary": {"training_accuracy": None, "deployment_occurred": False, "endpoint_name": None,
                        "testing_passed": None},
            "phases": {},
            "gate": None,
            "rollback": None,
            "error": None,
            "resume_command": None,
            "log_file": log_file,
            "config": config.public_dict(),
            "config_sources": sources or {},
        }
        # Nothing below touches the machine until the config and inputs are known good.
        self.store = DeploymentStore(config.store_dir)
        if endpoint_name and self.store.endpoint(endpoint_name) is None:
            named = self.store.version(endpoint_name)
            if named is not None:  # the seed names endpoints after a version, e.g. iris-model-20250823-120000
                self.endpoint_name = named["endpoint_name"]
        self.backend: Backend = load_backend(self._backend_name(), config, self.store)
        self.results["backend"] = self.backend.TYPE
        self.backend.run_id = self.run_id  # resource tags carry this run's id
        self.deployer = DeploymentPipeline(config, self.store, self.backend, self.run_id)
        # One lock object for the run: taken before a server is prestarted (so two first deployments
        # never race for the endpoint's port) and held until that server is used or stopped.
        self.lock = EndpointLock(self.store.directory / "locks", self.endpoint_name, f"run {self.run_id}",
                                 config.lock_timeout_seconds)
        self.notifier = Notifier(config, self.run_id)

    def _backend_name(self) -> str:
        """--backend or --role-arn decide; otherwise the backend that trained the job or runs the endpoint."""
        if self.config.backend or self.config.role_arn:
            return self.config.backend_name
        row = None
        if self.mode == "deployment" and self.training_job_name:
            row = self.store.training_job(self.training_job_name)
        elif self.mode in ("testing", "cleanup"):
            row = self.store.endpoint(self.endpoint_name)
        return (row or {}).get("backend") or self.config.backend_name

    # ----------------------------------------------------------------- the diagram
    def run(self) -> dict[str, Any]:
        self.store.start_run(self.run_id, self.mode, self.backend.TYPE)
        self.notify("pipeline_started")
        try:
            if self.mode == "cleanup":
                with self.lock:
                    self.cleanup()
            elif self.mode == "testing":
                self.test_live_endpoint()
            else:
                if self.mode == "full" and self.config.auto_deploy_enabled and self.lock.try_acquire():
                    self.backend.prestart(self.endpoint_name, self.run_id)  # its start-up overlaps training
                job = self.train() if self.mode in ("full", "training") else self.load_training_job()
                decision = self.gate(job)
                if self.mode != "training" and decision.deploys:
                    with self.lock:
                        deployment = self.deploy(job)
                        report = self.test(deployment, job)
                        if report.passed:
                            self.keep(deployment)
                        elif self.config.rollback_on_failure:
                            self.roll_back(deployment, report.failure_reason or "endpoint tests failed",
                                           tests_failed=True)
                        else:
                            self.keep(deployment, failed_reason=report.failure_reason)
        except PipelineError as err:
            self.fail(err.message, err.exit_code, err.hint)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from a cancelled CI job (see cli.run_pipeline)
            self.fail("stopped by Ctrl-C or SIGTERM", ExitCode.FAILURE)
        except Exception as err:  # a bug or an environment problem: still record and report it
            log.debug("unexpected error", exc_info=True)
            self.fail(f"unexpected {type(err).__name__}: {err}", ExitCode.FAILURE)
        finally:
            self.finish()
        return self.results

    # ----------------------------------------------------------------- phases
    def train(self) -> TrainingJob:
        started = time.monotonic()
        log.info("training %s on %s (seed %d)", self.config.model_type, self.config.dataset, self.config.random_seed)
        job = self.backend.train(self.training)
        self.store.record_training_job(self.run_id, self.backend.TYPE, job)
        self._record_training(job, time.monotonic() - started)
        log.info("training job %s: accuracy %.4f, cv mean %.4f", job.name, job.metrics["accuracy"],
                 job.metrics["cv_mean_accuracy"])
        return job

    def load_training_job(self) -> TrainingJob:
        row = self.store.training_job(self.training_job_name or "")
        if row is None:
            raise PipelineError(f"training job {self.training_job_name!r} not found in "
                                f"{str(self.store.path)!r} (see `run_pipeline.py history`)")
        if row["gate_decision"] == "rejected":
            raise PipelineError(f"training job {row['name']!r} was rejected by the gate when it was trained; a "
                                f"rejected model is never deployed", ExitCode.GATE)
        job = TrainingJob.load(Path(row["directory"]), row)
        self._record_training(job, 0.0)
        return job

    def gate(self, job: TrainingJob) -> GateDecision:
        decision = Gate(self.config, explicit_request=self.mode == "deployment").decide(job.metrics)
        self.results["gate"] = decision.to_dict()
        self.store.record_gate(self.run_id, job.name, decision.decision, decision.reason)
        (log.info if decision.decision in ("deploy", "approved") else log.warning)("gate: %s: %s",
                                                                                   decision.decision, decision.reason)
        if decision.warning:
            log.warning("gate: %s", decision.warning)
        if decision.decision in ("held", "rejected"):
            self.exit_code = ExitCode.GATE
            self.results["pipeline_status"] = decision.decision
        self.notify("gate_decision")
        return decision

    def deploy(self, job: TrainingJob) -> Deployment:
        self.results["reconciled"] = self.deployer.reconcile(self.endpoint_name)
        deployment = self.deployer.stage(job, self.endpoint_name)
        self._deployment = deployment
        self._record_deployment(deployment)
        return deployment

    def test(self, deployment: Deployment, job: TrainingJob) -> TestReport:
        staged = deployment.staged
        client = self.backend.client(staged.test_url, staged.endpoint_name, staged.handle)
        return self._run_tests(client, job, staged.version)  # notified after the rollback: never delay it

    def keep(self, deployment: Deployment, failed_reason: str | None = None) -> None:
        """Make the tested version the serving one (or, with rollback off, the failed one stays)."""
        try:
            if failed_reason is None:
                self.deployer.promote(deployment)
            else:
                self.deployer.promote(deployment, status="failed",
                                      reason=f"{failed_reason}; rollback_on_failure is off, so it stays serving")
                self.exit_code = ExitCode.FAILURE
        except PipelineError as err:
            self.roll_back(deployment, f"switch to {deployment.staged.version} failed: {err}")
            return
        finally:
            self._record_deployment(deployment)
        self.results["summary"]["deployment_occurred"] = True
        if failed_reason is None:
            self.notify("deployment_succeeded")
        else:
            self.notify("tests_failed", rollback_reason=failed_reason)

    def roll_back(self, deployment: Deployment, reason: str, tests_failed: bool = False) -> None:
        outcome = self.deployer.discard(deployment, reason)
        self._record_deployment(deployment)
        self.results["rollback"] = {"performed": outcome.status in ("rolled_back", "kept_previous", "removed"),
                                    "final_state": outcome.status, "reason": reason,
                                    "serving_version": outcome.serving_version, "detail": outcome.detail}
        self.exit_code = ExitCode.FAILURE
        log.error("deployment of %s failed (%s): %s", deployment.staged.version, reason, outcome.detail)
        if tests_failed:
            self.notify("tests_failed", rollback_reason=reason)
        if outcome.status == "rollback_failed":
            self.results["resume_command"] = (f"python3 run_pipeline.py rollback --endpoint-name "
                                              f"{deployment.staged.endpoint_name}")
            self.notify("rollback_failed", rollback_reason=reason)
        else:
            self.notify("rolled_back", rollback_reason=reason)

    def test_live_endpoint(self) -> None:
        """--mode testing: test what serves now, with the held-out data of the version it serves."""
        self.store.require_endpoint(self.endpoint_name)
        self.results["reconciled"] = reconcile_if_idle(self.deployer, self.lock)
        row = self.store.require_endpoint(self.endpoint_name)
        version = self.store.version(row["serving_version"] or "")
        if version is None:
            raise PipelineError(f"endpoint {self.endpoint_name!r} serves no recorded version")
        job_row = self.store.training_job(version["training_job"])
        if job_row is None:
            raise PipelineError(f"training job {version['training_job']!r} of version {version['version']} "
                                f"is not in the store")
        job = TrainingJob.load(Path(job_row["directory"]), job_row)
        self.results["summary"]["endpoint_name"] = self.endpoint_name
        self.results["summary"]["endpoint_url"] = row["url"]
        self.results["summary"]["endpoint_version"] = row["serving_version"]
        client = self.backend.client(row["url"], self.endpoint_name, {"pid": row["pid"], "role": "stable"})
        report = self._run_tests(client, job, row["serving_version"])
        if not report.passed:
            self.exit_code = ExitCode.FAILURE
            self.notify("tests_failed", rollback_reason=report.failure_reason)

    def cleanup(self) -> None:
        self.results["reconciled"] = self.deployer.reconcile(self.endpoint_name)
        removed_version = self.deployer.remove(self.endpoint_name)
        self.results["phases"]["cleanup"] = {"pipeline_status": "success", "endpoint_name": self.endpoint_name,
                                             "removed_version": removed_version}

    # ----------------------------------------------------------------- helpers

    def _run_tests(self, client: Any, job: TrainingJob, version: str | None) -> TestReport:
        features, labels = job.heldout()
        try:
            model = inference.model_fn(str(job.model_dir), job.model_sha256)
        except inference.ModelIntegrityError as err:
            raise PipelineError(f"training job {job.name!r}: {err}", ExitCode.FAILURE) from None
        # scikit-learn's own predict, not predict_fn's fast path: parity then checks that path too.
        offline = model.predict(features.to_numpy(dtype=float))
        report = EndpointTester(client, self.config, expected_version=version).run(
            features, labels, offline, feature_lines=job.heldout_feature_lines(),
            recorded_accuracy=job.metrics.get("accuracy"))
        self.results["phases"]["testing"] = report.to_dict()
        self.results["summary"]["testing_passed"] = report.passed
        return report

    def _record_training(self, job: TrainingJob, seconds: float) -> None:
        self.results["phases"]["training"] = {
            "pipeline_status": "success",
            "training_job": job.name,
            "model_sha256": job.model_sha256,
            "data_fingerprint": job.data_fingerprint,
            "duration_seconds": round(seconds, 3),
            "evaluation_results": job.metrics,
        }
        self.results["summary"]["training_accuracy"] = job.metrics.get("accuracy")
        self.results["summary"]["training_job"] = job.name

    def _record_deployment(self, deployment: Deployment) -> None:
        details = deployment.to_results()
        final = details["final_state"]
        self.results["phases"]["deployment"] = {
            "pipeline_status": "success" if final in ("deployed", "in_progress") else "failed",
            "deployment_results": details,
        }
        summary = self.results["summary"]
        summary["endpoint_name"] = details["endpoint_name"]
        summary["endpoint_url"] = details["endpoint_url"]
        summary["endpoint_version"] = details["serving_version"] or details["version"]

    def fail(self, message: str, exit_code: ExitCode, hint: str | None = None) -> None:
        deployment: Deployment | None = getattr(self, "_deployment", None)
        if deployment is not None and deployment.outcome is None:
            # Never leave a half-done deployment: drop the candidate, keep what served before.
            self.roll_back(deployment, f"interrupted: {message}")
        self.exit_code = exit_code
        self.results["error"] = {"message": message, "exit_code": int(exit_code), "hint": hint}
        job = self.results["summary"].get("training_job")
        if job and self.mode in ("full", "deployment") and exit_code == ExitCode.FAILURE \
                and not self.results["resume_command"]:
            self.results["resume_command"] = f"python3 run_pipeline.py --mode deployment --training-job {job}"

    def finish(self) -> None:
        self.backend.release_prestart()  # unused when the gate held or something failed first
        self.lock.release_all()
        if self.exit_code == ExitCode.SUCCESS:
            self.results["pipeline_status"] = "success"
        elif self.exit_code != ExitCode.GATE or self.results["pipeline_status"] == "running":
            self.results["pipeline_status"] = "failed"
        self.results["exit_code"] = int(self.exit_code)
        self.notify("pipeline_finished")
        # Delivery runs in the background; wait for it here, at most the rest of the notification budget,
        # so the duration reported includes it.
        self.results["notifications"] = self.notifier.close()
        self.results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.results["total_duration_seconds"] = round(time.monotonic() - self.started, 3)
        if self.notifier.strict_failure and self.exit_code == ExitCode.SUCCESS:
            self.exit_code = ExitCode.FAILURE
            self.results["pipeline_status"] = "failed"
            self.results["exit_code"] = int(self.exit_code)
            self.results["error"] = {"message": "a notification was not delivered and notify_strict is on",
                                     "exit_code": int(self.exit_code), "hint": None}
        self.store.finish_run(self.run_id, self.results["pipeline_status"], int(self.exit_code), None)

    def notify(self, event: str, rollback_reason: str | None = None) -> None:
        summary = self.results["summary"]
        deployment = self.results["phases"].get("deployment", {}).get("deployment_results", {})
        self.notifier.notify(event, {
            "pipeline_status": self.results["pipeline_status"],
            "run_id": self.run_id,
            "mode": self.mode,
            "backend": self.backend.TYPE,
            "training_job": summary.get("training_job"),
            "gate": self.results["gate"],
            "endpoint_name": summary.get("endpoint_name"),
            "endpoint_url": summary.get("endpoint_url"),
            "version": deployment.get("version"),
            "previous_version": deployment.get("previous_version"),
            "final_state": deployment.get("final_state"),
            "rollback_reason": rollback_reason or (self.results["rollback"] or {}).get("reason"),
            "duration_seconds": round(time.monotonic() - self.started, 3),
            "message": (self.results["error"] or {}).get("message") or (self.results["gate"] or {}).get("reason"),
        })


def reconcile_if_idle(deployer: DeploymentPipeline, lock: EndpointLock) -> list[dict[str, Any]]:
    """Repair an interrupted deployment when no pipeline is deploying now; never wait for one."""
    if not lock.try_acquire():
        return []
    try:
        return deployer.reconcile(lock.endpoint_name)
    finally:
        lock.release()


def write_results(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically: a CI job never reads half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(results, indent=2, default=str))
    os.replace(temporary, target)
    return target
