"""One pipeline invocation end to end (``run_pipeline``): logging set up, the orchestrator's run under the
interrupt handler, then the results JSON, the CI reports and the HTML run report, whatever the exit code."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import interrupts
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.logs import configure_logging, default_results_file, prune_default_files
from pipeline.progress import configure as configure_progress
from pipeline.progress import on_terminal
from pipeline.redaction import url_password
from pipeline.state.store import DeploymentStore

if TYPE_CHECKING:
    from pipeline.reporting.results import Results

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class Outputs:
    """Where a run writes what it did. The results file is chosen before the run starts, so the
    store records it with the run."""

    results_file: str
    dotenv_file: str | None = None
    junit_xml: str | None = None
    metrics_file: str | None = None
    report_html: str | None = None  # a copy of the run report; every run writes <store_dir>/runs/<run_id>/report.html
    log_format: str = "text"
    chosen_results_file: bool = True  # False: the default name, subject to tmp_retention_count


def run_pipeline(config: PipelineConfig, sources: dict[str, str], outputs: Outputs, *, mode: str,
                 endpoint_name: str | None = None, training_job: str | None = None,
                 allow_contract_change: bool = False) -> Results:
    """One pipeline invocation end to end: log, orchestrate, write the results, the CI reports and the
    HTML run report.

    The reports (dotenv, JUnit, metrics, HTML) are written for every run that started, whatever its exit code.
    """
    from pipeline.reporting.ci_reports import write_reports
    from pipeline.reporting.results import Results
    from pipeline.run.orchestrator import Orchestrator

    log_file = configure_logging(config.log_level, config.log_file, secrets=[url_password(config.shared_store_url)],
                                 log_format=outputs.log_format)
    configure_progress(live=outputs.log_format == "text" and on_terminal())
    pruned = prune_default_files(config.tmp_retention_count, results_pending=not outputs.chosen_results_file,
                                 protect=[path for path in (outputs.results_file, config.log_file, outputs.dotenv_file,
                                                            outputs.junit_xml, outputs.metrics_file,
                                                            outputs.report_html) if path])
    if pruned:
        log.debug("deleted %d old default-named log/results file(s) (tmp_retention_count=%d)", len(pruned),
                  config.tmp_retention_count)
    orchestrator = Orchestrator(config, sources, mode=mode, endpoint_name=endpoint_name, training_job=training_job,
                                allow_contract_change=allow_contract_change,
                                log_file=str(log_file), results_file=outputs.results_file)
    with interrupts.handled():  # the run's outcome is written whatever Ctrl-C or SIGTERM arrives meanwhile
        record = orchestrator.run()
        document = record.to_json()
        try:
            orchestrator.store.write_run_file(document.get("run_id"), outputs.results_file,
                                              json.dumps(document, indent=2, default=str))
        finally:  # the CI reports even when the results JSON cannot be written
            results = Results.model_validate(document)
            for problem in write_reports(results, dotenv_file=outputs.dotenv_file, junit_xml=outputs.junit_xml,
                                         metrics_file=outputs.metrics_file):
                log.error("report not written: %s", problem)
            for problem in _write_run_report(results, orchestrator.store, outputs.report_html):
                log.error("report not written: %s", problem)
    log.debug("results written to %s", outputs.results_file)
    return results


def _write_run_report(results: Results, store: DeploymentStore, report_html: str | None) -> list[str]:
    """The HTML run report in the store (every run) and at ``--report-html`` (when asked)."""
    from pipeline.reporting.html_report import report_path, write_html_report

    paths: list[tuple[str, str | Path]] = [("run report", report_path(store.directory, results.run_id or "unknown"))]
    if report_html:
        paths.append(("--report-html", report_html))
    try:
        events = store.events(run_id=results.run_id) if results.run_id else []
    except PipelineError as err:  # the page still tells the verdict; only the timeline is missing
        log.warning("run report: the audit trail cannot be read (%s): no timeline", err.message)
        events = []
    problems = write_html_report(results, events, paths)
    if results.run_id:  # for `runs show` on another machine
        try:
            store.publish_report(results.run_id, Path(paths[0][1]))
        except PipelineError as err:
            log.warning("run report: not copied to the artifact store (%s)", err.message)
    return problems


def default_outputs(results_file: str | None, **reports: Any) -> Outputs:
    return Outputs(results_file or str(default_results_file()), chosen_results_file=results_file is not None,
                   **reports)
