"""The pipeline, phase by phase:

    train -> evaluate -> gate -> deploy -> test the live endpoint -> [bake on live traffic]
          -> keep it, or roll back -> notify -> record

``Orchestrator.run`` reads like that diagram. The decisions that matter are
made here and nowhere else: the accuracy gate (``Gate``), whether a
deployment whose tests failed is rolled back, and what a bake's findings
(``pipeline.deployment.rollout``) lead to: promote, roll back on a breach, or keep the
serving version when there was too little traffic for a verdict. Modules below do the work; this
one decides, passing one config object and one ``RunRecord`` along.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import interrupts
from pipeline.backends import chosen_backend, load_backend
from pipeline.backends.base import Backend
from pipeline.config import PipelineConfig, validate_endpoint_name
from pipeline.container.model_files import BUILTIN_METRICS
from pipeline.deployment.rollout import BakeOutcome, BakeReport, OperatorRequest, bake
from pipeline.deployment.steps import Deployment, DeploymentPipeline
from pipeline.errors import ExitCode, PipelineError
from pipeline.gate.approvals import approval_for
from pipeline.gate.decision import ContractCheck, ContractStatus, GateDecision
from pipeline.logs import log_phase, set_run_id
from pipeline.notifications import Notifier
from pipeline.outcomes import FinalState, Mode, Verdict
from pipeline.run.conclusion import Conclusion, conclude
from pipeline.run.invocation import resolve_mode
from pipeline.run.record import (
    CleanupRecord,
    EndpointRef,
    RollbackRecord,
    RunError,
    RunRecord,
    TrainingRecord,
    new_run_id,
)
from pipeline.state.artifacts import artifacts_for
from pipeline.state.database import StoreLost
from pipeline.state.store import DeploymentStore
from pipeline.training import job_files
from pipeline.training.jobs import TrainingJob

# Each phase imports the module that does its work when it runs: training, the gate's statistics and the
# endpoint tests bring in scikit-learn, scipy and pandas (1-2 s), and a full run prestarts its endpoint's server
# before they load, so the server's own imports overlap the CLI's on the other core (docs/PERFORMANCE.md §2).
if TYPE_CHECKING:
    from pipeline.testing import TestReport
    from pipeline.training.fitting import TrainingPipeline

log = logging.getLogger(__name__)

MODES = tuple(str(mode) for mode in Mode)


# --------------------------------------------------------------------------- the run
class Orchestrator:
    def __init__(
        self,
        config: PipelineConfig,
        sources: dict[str, str] | None = None,
        *,
        mode: str = Mode.FULL,
        endpoint_name: str | None = None,
        training_job: str | None = None,
        training_pipeline: TrainingPipeline | None = None,
        log_file: str | None = None,
        results_file: str | None = None,
        allow_contract_change: bool = False,
    ) -> None:
        if mode not in MODES:
            raise PipelineError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
        resolve_mode(mode, training_job=training_job)  # the command line's rules hold for the library too
        if mode in (Mode.FULL, Mode.TRAINING) and config.gate_metric not in BUILTIN_METRICS and \
                not getattr(training_pipeline, "custom_evaluations", None):
            raise PipelineError(f"gate_metric {config.gate_metric!r}: expected one of {', '.join(BUILTIN_METRICS)} "
                                f"or a metric added by a custom evaluation")
        if endpoint_name is not None:
            validate_endpoint_name(endpoint_name)
        self.config = config
        self.mode = Mode(mode)
        self.endpoint_name = endpoint_name or config.endpoint_prefix
        self.training_job_name = training_job
        self.allow_contract_change = allow_contract_change  # --allow-contract-change: this run may change inputs/labels
        self.training = training_pipeline  # None: the built-in TrainingPipeline, made when training starts
        self.run_id = new_run_id()
        set_run_id(self.run_id)  # every log line of this run carries it (--log-format json)
        self.record = RunRecord(self.run_id, self.mode, config.backend_name, config.public_dict(), sources or {},
                                log_file=log_file, results_file=results_file)
        # Nothing below touches the machine until the config and inputs are known good.
        self.store = DeploymentStore(config.store_dir, config.shared_store_url)
        if endpoint_name and self.store.endpoint(endpoint_name) is None:
            named = self.store.version(endpoint_name)
            if named is not None:  # an endpoint named after one of its versions, e.g. iris-model-20250823-120000
                self.endpoint_name = named["endpoint_name"]
        self.backend: Backend = load_backend(self._backend_name(), config, self.store, self.run_id)
        self.record.backend = self.backend.TYPE
        self.store.use_artifacts(artifacts_for(config, self.backend.TYPE, self.store.directory), config.aws_region)
        self.deployer = DeploymentPipeline(config, self.store, self.backend, self.run_id)
        if self.mode in (Mode.TESTING, Mode.CLEANUP) or self.deploys_if_approved():
            self.deployer.require_here(self.endpoint_name, f"--mode {self.mode}")
        # One lock for the run: taken before a server is prestarted (so two first deployments never
        # race for the endpoint's port) and held until that server is used or stopped.
        self.lock = self.deployer.lock(self.endpoint_name, f"run {self.run_id}")
        self.notifier = Notifier(config, self.run_id)
        self._deployment: Deployment | None = None

    def _backend_name(self) -> str:
        """The backend of the training job to deploy, or of the endpoint to test or remove (``chosen_backend``)."""
        row = None
        if self.mode == Mode.DEPLOYMENT and self.training_job_name:
            row = self.store.training_job(self.training_job_name)
        elif self.mode in (Mode.TESTING, Mode.CLEANUP):
            row = self.store.endpoint(self.endpoint_name)
        return chosen_backend(self.config, row)

    # ----------------------------------------------------------------- the diagram
    def run(self) -> RunRecord:
        # absolute, so `runs show` finds the file from any directory (the store may be named by --store-dir)
        results_file = str(Path(self.record.results_file).resolve()) if self.record.results_file else None
        self.store.start_run(self.run_id, self.mode, self.backend.TYPE, results_file)
        self.notify("pipeline_started")
        try:
            if self.mode == Mode.CLEANUP:
                self.cleanup()
            elif self.mode == Mode.TESTING:
                self.test_live_endpoint()
            else:
                if self.mode == Mode.FULL and self.config.auto_deploy_enabled and self.lock.try_acquire():
                    self.backend.prestart(self.endpoint_name)  # its start-up overlaps training
                job = self.train() if self.mode in (Mode.FULL, Mode.TRAINING) else self.load_training_job()
                # A run that would deploy is judged under the endpoint's lock: against what serves once any other
                # deployment of the endpoint (on any machine) has finished, never against what it replaced.
                with self.lock if self.deploys_if_approved() else contextlib.nullcontext():
                    decision = self.gate(job)
                    if self.mode != Mode.TRAINING and decision.deploys:
                        deployment = self.deploy(job)
                        report = self.test(deployment, job)
                        baked = self.bake(deployment) if report.passed else None  # None: all traffic at once
                        conclusion = conclude(report, baked, rollback_on_failure=self.config.rollback_on_failure)
                        if conclusion.keep:
                            self.keep(deployment, conclusion)
                        else:
                            self.roll_back(deployment, conclusion.reason or "", tests_failed=conclusion.tests_failed,
                                           status=conclusion.final_state)
            interrupts.defer()  # the work is done: what arrives now must not change how it is recorded
        except PipelineError as err:
            self.fail(err.message, err.exit_code, err.hint)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from a cancelled CI job (see cli.run_pipeline)
            self.fail("stopped by Ctrl-C or SIGTERM", ExitCode.FAILURE)
        except Exception as err:  # a bug or an environment problem: still record and report it
            log.debug("unexpected error", exc_info=True)
            self.fail(f"unexpected {type(err).__name__}: {err}", ExitCode.FAILURE)
        finally:
            interrupts.defer()
            self.finish()
        return self.record

    # ----------------------------------------------------------------- phases
    def train(self) -> TrainingJob:
        from pipeline.training.fitting import TrainingPipeline

        with log_phase("training"):
            started = time.monotonic()
            log.info("training %s on %s (seed %d)", self.config.model_type, self.config.dataset,
                     self.config.random_seed)
            job = self.backend.train(self.training or TrainingPipeline(self.config))
            self.store.record_training_job(self.run_id, self.backend.TYPE, job, job_files.publish(self.store, job))
            self.record.training = TrainingRecord(job, time.monotonic() - started)
            log.info("training job %s: accuracy %.4f, cv mean %.4f", job.name, job.metrics["accuracy"],
                     job.metrics["cv_mean_accuracy"])
            return job

    def load_training_job(self) -> TrainingJob:
        with log_phase("training"):
            row = job_files.recorded(self.store, self.training_job_name or "", "it cannot be deployed; train again")
            if row["gate_decision"] == Verdict.REJECTED:
                raise PipelineError(f"training job {row['name']!r} was rejected by the gate when it was trained; a "
                                    f"rejected model is never deployed", ExitCode.GATE)
            job = job_files.load(self.store, row)
            self.record.training = TrainingRecord(job, 0.0)
            return job

    def gate(self, job: TrainingJob) -> GateDecision:
        from pipeline.gate.champion import compare_with_serving_version
        from pipeline.gate.rules import Gate

        with log_phase("gate"):
            # The version the candidate would replace, as it serves now (for --mode deployment: at deployment
            # time, whatever served when the candidate was trained).
            champion, champion_warning = compare_with_serving_version(self.config, self.store, self.backend,
                                                                       self.endpoint_name, job)
            contract = self.check_contract(job) if self.deploys_if_approved() else None
            approval = approval_for(self.store, job.name, job.model_sha256, self.backend.registered_approval(job))
            decision = Gate(self.config, explicit_request=self.mode == Mode.DEPLOYMENT).decide(
                job.metrics, champion, champion_warning, contract, approval)
            self.record.gate = decision
            self.store.record_gate(self.run_id, job.name, decision.decision, decision.reason, decision.metric,
                                   decision.value, decision.interval,
                                   contract=contract.to_dict() if contract is not None else None)
            (log.warning if decision.decision.stops_the_run else log.info)("gate: %s: %s", decision.decision,
                                                                           decision.reason)
            log.info("gate: champion comparison: %s", champion.reason)
            if contract is not None and not contract.holds:  # when it holds, the decision's reason says it
                (log.warning if contract.changes else log.info)("gate: contract: %s", contract.reason)
            if decision.warning:
                log.warning("gate: %s", decision.warning)
            self.notify("gate_decision")
            if decision.decision == Verdict.PENDING_APPROVAL:
                self.notify("approval_needed")
            return decision

    def deploys_if_approved(self) -> bool:
        """Whether this run deploys a model the gate lets through (not training alone, not auto-deploy off)."""
        return self.mode == Mode.DEPLOYMENT or (self.mode == Mode.FULL and self.config.auto_deploy_enabled)

    def check_contract(self, job: TrainingJob) -> ContractCheck:
        """The candidate's inputs and labels against what the endpoint serves now."""
        from pipeline.gate.contract import check_contract

        row = self.store.endpoint(self.endpoint_name)
        version = (row or {}).get("serving_version")
        if not version:
            return check_contract(job, None, None)
        try:
            serving = self.deployer.job_of_version(version)
        except PipelineError as err:  # its job is gone or changed: say so, as the champion comparison does
            log.warning("gate: the contract of %s could not be read (%s): not checked", version, err.message)
            return ContractCheck(status=ContractStatus.SKIPPED, serving_version=version,
                                 reason=f"skipped: the contract of {version} could not be read: {err.message}")
        return check_contract(job, version, serving, allowed=self.allow_contract_change)

    def deploy(self, job: TrainingJob) -> Deployment:
        with log_phase("deployment"):
            self.record.reconciled = self.deployer.reconcile(self.endpoint_name)
            self._deployment = self.record.deployment = self.deployer.stage(job, self.endpoint_name)
            return self._deployment

    def test(self, deployment: Deployment, job: TrainingJob) -> TestReport:
        from pipeline.deployment.replay import sample_for_replay
        from pipeline.testing import EndpointTester

        with log_phase("testing"):
            staged = deployment.staged
            client = self.backend.client(staged.endpoint_name, staged.candidate)
            # What clients sent the serving version lately: the candidate must take it too.
            replay = sample_for_replay(self.backend, self.store.directory, staged.endpoint_name,
                                       staged.previous_version, self.config.replay_requests)
            self.record.testing = EndpointTester(client, self.config, expected_version=staged.version).run_for(
                job, replay)
            return self.record.testing  # notified after the rollback: never delay it

    def bake(self, deployment: Deployment) -> BakeReport | None:
        """CANARY, LINEAR or SHADOW: the tested version meets live traffic before it takes all of it."""
        staged, routing = deployment.staged, self.config.traffic_routing
        if routing == "ALL_AT_ONCE":
            return None
        if not self.backend.bakes_on_the_endpoint(routing):  # SageMaker's CANARY and LINEAR: inside its update
            if not self.config.rollback_alarm_names:
                log.warning("traffic_routing %s on %s shifts traffic on a timer and nothing judges it: set "
                            "rollback_alarm_names for CloudWatch alarms that roll the update back", routing,
                            self.backend.TYPE)
            return None
        if not (staged.beside_stable and staged.previous_version):
            reason = (f"endpoint {staged.endpoint_name} has no serving version to bake beside: {staged.version} "
                      f"takes all traffic now")
            log.warning("traffic_routing %s: %s", routing, reason)
            self.record.rollout = BakeReport(routing, self.config.baking_seconds, outcome=BakeOutcome.SKIPPED,
                                             reason=reason)
            return self.record.rollout
        with log_phase("rollout"):
            self.record.rollout = BakeReport(routing, self.config.baking_seconds)
            log.info("baking %s on live traffic (%s, %g s per interval) beside %s", staged.version, routing,
                     self.config.baking_seconds, staged.previous_version)
            started = self.store.record_event(
                "bake_started", run_id=self.run_id, endpoint_name=staged.endpoint_name, version=staged.version,
                serving_version=staged.previous_version, traffic_routing=routing,
                baking_seconds=self.config.baking_seconds)

            def operator() -> OperatorRequest | None:  # `rollout promote|abort` from any machine with this store
                asked = self.store.events_after(started, staged.endpoint_name, "rollout_requested")
                return OperatorRequest(asked[0]["detail"]["action"], asked[0]["detail"]["by"]) if asked else None

            baked = bake(self.config, self.backend, staged, record=self.record.rollout,
                         on_interval=lambda interval: self.store.record_event(
                             "bake_interval", run_id=self.run_id, endpoint_name=staged.endpoint_name,
                             version=staged.version, **interval.to_dict()),
                         operator=operator)
            (log.info if baked.promotes else log.warning)("bake: %s: %s", baked.outcome, baked.reason)
            return baked

    def keep(self, deployment: Deployment, conclusion: Conclusion) -> None:
        """Make the tested version the serving one (or, with rollback off, the failed one stays); the
        conclusion's reason goes into the history (a bake's verdict, or why the tests failed)."""
        interrupts.defer()  # the version was judged good: a Ctrl-C now must not undo its verified switch
        with log_phase("deployment"):
            try:
                if not conclusion.failed:
                    self.deployer.promote(deployment, reason=conclusion.reason)
                else:
                    self.deployer.promote(deployment, status=FinalState.FAILED, reason=f"{conclusion.reason}; "
                                          f"rollback_on_failure is off, so it stays serving")
            except StoreLost:  # the switch was verified; only its record is missing: never undone for that
                raise
            except PipelineError as err:
                self.roll_back(deployment, f"switch to {deployment.staged.version} failed: {err}")
                return
        if not conclusion.failed:
            self.notify("deployment_succeeded")
        else:
            self.notify("tests_failed", rollback_reason=conclusion.reason)

    def roll_back(self, deployment: Deployment, reason: str, tests_failed: bool = False,
                  status: FinalState | None = None) -> None:
        """Drop the new version; ``status`` names how it ended when the backend's word is not the right one
        (a bake that stopped without a breach: the serving version never stopped serving, ``kept_previous``)."""
        unrecorded: StoreLost | None = None
        with log_phase("rollback"):
            try:
                outcome = self.deployer.discard(deployment, reason, status)
            except StoreLost as lost:  # the backend did it, verified; the store did not hear of it
                if deployment.outcome is None:
                    raise
                outcome, unrecorded = deployment.outcome, lost
            self.record.rollback = RollbackRecord(outcome.status, reason, outcome.serving_version, outcome.detail)
            log.error("deployment of %s failed (%s): %s", deployment.staged.version, reason, outcome.detail)
        if tests_failed:
            self.notify("tests_failed", rollback_reason=reason)
        if outcome.status == FinalState.ROLLBACK_FAILED:
            self.record.resume_command = (f"python3 run_pipeline.py rollback --endpoint-name "
                                          f"{deployment.staged.endpoint_name}")
            self.notify("rollback_failed", rollback_reason=reason)
        else:
            self.notify("rolled_back", rollback_reason=reason)
        if unrecorded is not None:
            raise unrecorded

    def test_live_endpoint(self) -> None:
        """--mode testing: test what serves now, with the held-out data of the version it serves."""
        from pipeline.testing import EndpointTester

        with log_phase("testing"):
            self.store.require_endpoint(self.endpoint_name)
            self.record.reconciled = self.deployer.reconcile_if_idle(self.endpoint_name, self.lock)
            row = self.store.require_endpoint(self.endpoint_name)
            self.record.endpoint = EndpointRef(self.endpoint_name, row["url"], row["serving_version"])
            job = self.deployer.serving_job(self.endpoint_name)
            client = self.backend.client(self.endpoint_name, self.backend.serving(self.endpoint_name))
            report = EndpointTester(client, self.config, expected_version=row["serving_version"]).run_for(job)
            self.record.testing = report
        if not report.passed:
            self.notify("tests_failed", rollback_reason=report.failure_reason)

    def cleanup(self) -> None:
        with log_phase("cleanup"), self.deployer.exclusive(self.endpoint_name, lock=self.lock) as repaired:
            self.record.reconciled = repaired
            self.record.cleanup = CleanupRecord(self.endpoint_name, self.deployer.remove(self.endpoint_name))

    # ----------------------------------------------------------------- the end of every run
    def fail(self, message: str, exit_code: ExitCode, hint: str | None = None) -> None:
        interrupts.defer()  # a second Ctrl-C must not cut the rollback or the record short
        self.record.error = RunError(message, exit_code, hint)
        deployment = self._deployment
        if deployment is not None and deployment.outcome is None:
            # Never leave a half-done deployment: drop the candidate, keep what served before. A bake cut short
            # (Ctrl-C, SIGTERM, an unreadable endpoint) ends with every request back on the serving version.
            baking = self.record.rollout is not None and self.record.rollout.outcome is None
            if baking and self.record.rollout is not None:
                self.record.rollout.reason = f"interrupted: {message}"
            try:
                self.roll_back(deployment, f"interrupted: {message}",
                               status=FinalState.KEPT_PREVIOUS if baking else None)
            except StoreLost as lost:  # done and verified by the backend, not recorded: the next command does
                log.error("the rollback was not recorded: %s", lost.message)
        job = self.record.training_job
        if job and self.mode in (Mode.FULL, Mode.DEPLOYMENT) and exit_code == ExitCode.FAILURE \
                and not self.record.resume_command:
            self.record.resume_command = f"python3 run_pipeline.py --mode deployment --training-job {job}"

    def finish(self) -> None:
        self.backend.release_prestart()  # unused when the gate held or something failed first
        self.lock.release_all()
        self.record.finish()
        self.notify("pipeline_finished")
        # Delivery runs in the background; wait for it here, at most the rest of the notification budget,
        # so the duration reported includes it.
        self.record.notifications = self.notifier.close()
        self.record.finish()
        if self.notifier.strict_failure and self.record.exit_code == ExitCode.SUCCESS:
            self.record.error = RunError("a notification was not delivered and notify_strict is on",
                                         ExitCode.FAILURE)
        try:
            self.store.finish_run(self.run_id, self.record.status, int(self.record.exit_code))
        except StoreLost as lost:  # the results file still says how the run ended
            log.error("the run's end was not recorded: %s", lost.message)
            if self.record.error is None:
                self.record.error = RunError(lost.message, lost.exit_code)
                self.record.finish()

    def notify(self, event: str, rollback_reason: str | None = None) -> None:
        self.notifier.notify(event, self.record.summary(rollback_reason))
