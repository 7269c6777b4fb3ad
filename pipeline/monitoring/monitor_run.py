"""The ``monitor`` command as one run, recorded like a pipeline run: a typed record, one driver.

``MonitorRun.run`` reads like a pipeline run's diagram: record the run, watch what the endpoint serves
(``pipeline.monitoring.monitor.watch``), roll back on a breach when asked, notify, write the report,
record how it ended. Whatever happens, the run is recorded with the exit code the command exits with,
and a report file that was asked for says what happened (``"verdict": "error"`` when there is none).

An unexpected exception (a bug, or the environment: a full disk, no memory) is no verdict like any other
error: exit 2 (``ExitCode.USAGE``, which for ``monitor`` means "no verdict"), never 1, which a scheduled job
takes for drift. The run is recorded ``failed`` with exit 2, the report says ``"verdict": "error"`` and
names the exception, and ``--verbose`` prints its traceback (``MonitorRecord.failure``).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.base import Outcome
from pipeline.config import PipelineConfig
from pipeline.errors import ExitCode, PipelineError
from pipeline.logs import log_phase
from pipeline.monitoring.monitor import MonitorReport, roll_back_after_breach, watch
from pipeline.notifications import Notifier
from pipeline.notifications.message import RunSummary
from pipeline.outcomes import FinalState

log = logging.getLogger(__name__)


@dataclass
class MonitorRecord:
    """What one monitor run did: its report, or the error that left it without a verdict."""

    run_id: str
    endpoint_name: str
    version: str | None  # as asked (None: the serving version)
    since: str | None
    report: MonitorReport | None = None
    error: PipelineError | None = None
    failure: BaseException | None = None  # the unexpected exception behind ``error``, for --verbose

    @property
    def exit_code(self) -> ExitCode:
        if self.error is not None:
            return self.error.exit_code
        return self.report.exit_code if self.report is not None else ExitCode.USAGE  # no report: no verdict

    @property
    def status(self) -> str:
        """The run's status in the store: the verdict, or ``failed`` when there is none."""
        return self.report.verdict if self.report is not None else "failed"

    def to_json(self) -> dict[str, Any]:
        """The report file (``monitor --output-file``)."""
        if self.report is not None and self.error is None:
            return self.report.to_dict()
        return {"endpoint_name": self.endpoint_name, "version": self.version, "since": self.since,
                "verdict": "error", "exit_code": int(self.exit_code),
                "error": self.error.message if self.error else "no report"}


class MonitorRun:
    def __init__(self, config: PipelineConfig, deployer: Any, rollback: Callable[[str], Outcome], run_id: str) -> None:
        self.config = config
        self.deployer = deployer
        self.store = deployer.store
        self.rollback = rollback  # a verified manual rollback of an endpoint (``Operations.rollback``)
        self.run_id = run_id

    def run(self, endpoint_name: str, *, version: str | None = None, since: str | None = None,
            labels_file: str | None = None, rollback_on_breach: bool = False,
            report_file: str | None = None) -> MonitorRecord:
        record = MonitorRecord(self.run_id, endpoint_name, version, since)
        backend = self.deployer.backend.TYPE
        self.store.start_run(self.run_id, "monitor", backend, str(Path(report_file).resolve()) if report_file else None)
        notifier = Notifier(self.config, self.run_id)
        try:
            with log_phase("monitor"):
                record.report = watch(self.config, self.deployer, endpoint_name, version=version, since=since,
                                      labels_file=labels_file)
            if rollback_on_breach:
                with log_phase("rollback"):
                    roll_back_after_breach(record.report, self.rollback)
            self.notify(notifier, record.report, backend)
        except PipelineError as err:
            record.error = err
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM from a cancelled job
            record.error, record.failure = PipelineError("monitor stopped by Ctrl-C or SIGTERM: no verdict"), err
        except Exception as err:  # a bug or the environment: still a recorded run with its report, never a traceback
            log.debug("unexpected error in monitor", exc_info=True)
            detail = " ".join(str(err).split())[:300]
            record.error = PipelineError(f"monitor failed without a verdict: unexpected {type(err).__name__}"
                                         + (f": {detail}" if detail else ""), ExitCode.USAGE)
            record.failure = err
        finally:
            if report_file:  # a scheduled job's artifact says what happened, verdict or not
                self.write_report(record, report_file)
            notifier.close()
            self.store.finish_run(self.run_id, record.status, int(record.exit_code))
        return record

    def notify(self, notifier: Notifier, report: MonitorReport, backend: str) -> None:
        summary = RunSummary(run_id=self.run_id, status=report.verdict, mode="monitor", backend=backend,
                             endpoint_name=report.endpoint_name, version=report.version, message=report.drift.reason,
                             rollback_reason=report.quality.reason if report.breach and report.quality else None,
                             final_state=str(report.rollback.status) if report.rollback else None)
        if report.drift.verdict == "drift":
            notifier.notify("drift_detected", summary)
        if report.breach:
            notifier.notify("live_accuracy_breach", summary)
        if report.rollback is not None:
            notifier.notify("rolled_back" if report.rollback.status == FinalState.ROLLED_BACK else "rollback_failed",
                            summary)

    def write_report(self, record: MonitorRecord, report_file: str) -> None:
        try:
            self.store.write_run_file(self.run_id, report_file, json.dumps(record.to_json(), indent=2))
        except OSError as problem:
            if record.error is not None:  # the error itself is what the user must see
                log.error("monitor report not written to %s: %s", report_file, problem)
            else:
                record.error = PipelineError(f"--output-file {report_file!r}: the report could not be written "
                                             f"({problem})", ExitCode.FAILURE)
