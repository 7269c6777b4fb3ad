"""Watching a deployed version: its captured traffic against its training baseline, and its live
accuracy once labels arrive.

``monitor`` reads the requests the endpoint captured for the version it serves (or ``--version``),
compares them with the baseline stored with that version's training job (``pipeline.monitoring``)
and, given a labels file, merges the labels with the captured predictions by inference id. A breach
of ``minimum_accuracy`` (the accuracy interval's upper end below it) can roll the endpoint back to
its previous version, recorded like a manual rollback. Too little traffic for a verdict is its own
result, never "no drift".
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.backends.base import Outcome
from pipeline.config import PipelineConfig
from pipeline.errors import ExitCode, PipelineError
from pipeline.monitoring import (
    DriftReport,
    DriftThresholds,
    LiveTraffic,
    QualityReport,
    detect_drift,
    iter_capture_records,
    live_quality,
    prediction_keys,
    read_labels,
)
from pipeline.outcomes import FinalState
from pipeline.serving.contract import TEST_INFERENCE_ID_PREFIX

log = logging.getLogger(__name__)


@dataclass
class MonitorReport:
    """What one monitor run found; ``exit_code`` is the command's (0 no drift, 1 drift or a breach, 2 no verdict:
    too few rows, or with labels too few labelled predictions)."""

    endpoint_name: str
    version: str
    since: str | None
    captured_requests: int
    unreadable_lines: int
    drift: DriftReport
    quality: QualityReport | None = None
    rollback: Outcome | None = None
    serving_version: str | None = None  # what the endpoint served when the captures were read


    @property
    def breach(self) -> bool:
        return self.quality is not None and self.quality.status == "breach"

    @property
    def exit_code(self) -> ExitCode:
        if self.drift.verdict == "drift" or self.breach:
            return ExitCode.FAILURE
        if self.drift.verdict == "insufficient_data":
            return ExitCode.USAGE
        if self.quality is not None and self.quality.status == "insufficient_data":
            return ExitCode.USAGE  # labels were given to judge live accuracy, and too few matched: no verdict
        return ExitCode.SUCCESS

    @property
    def verdict(self) -> str:
        if self.breach:
            return "breach" if self.drift.verdict != "drift" else "drift_and_breach"
        return self.drift.verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint_name": self.endpoint_name, "version": self.version, "since": self.since,
            "verdict": self.verdict, "exit_code": int(self.exit_code),
            "captured_requests": self.captured_requests, "unreadable_lines": self.unreadable_lines,
            "drift": self.drift.to_dict(), "quality": self.quality.to_dict() if self.quality else None,
            "rollback": None if self.rollback is None else {
                "final_state": str(self.rollback.status), "serving_version": self.rollback.serving_version,
                "detail": self.rollback.detail},
        }


def parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PipelineError(f"--since {text!r}: expected an ISO time such as 2026-11-26T10:00:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def watch(config: PipelineConfig, deployer: Any, endpoint_name: str, *, version: str | None = None,
          since: str | None = None, labels_file: str | None = None) -> MonitorReport:
    """Drift (and, with labels, live accuracy) of what ``endpoint_name`` serves, from its captures."""
    store, backend = deployer.store, deployer.backend
    row = store.require_endpoint(endpoint_name)
    if version is None:  # an empty --version is refused below, not taken for "the serving one"
        version = row["serving_version"]
    if not version or store.version(version) is None:
        raise PipelineError(f"endpoint {endpoint_name!r} has no recorded version {version!r} (see `history`)")
    try:
        job = deployer.job_of_version(version)
        baseline = job.baseline()
    except PipelineError as err:  # a job file changed or missing: nothing to judge against, so no verdict
        raise PipelineError(err.message, ExitCode.USAGE, err.hint) from None
    if baseline is None:
        raise PipelineError(f"training job {job.name!r} of version {version} has no baseline (it was trained "
                            f"before monitoring existed): train and deploy again to monitor it")
    labels = read_labels(Path(labels_file)) if labels_file else None
    moment = parse_since(since)
    (store.directory / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.directory / "tmp", prefix="captures-") as scratch:
        directory = backend.capture_directory(endpoint_name, version, Path(scratch), since=moment)
        records = iter_capture_records(directory, since=moment, version=version) if directory else None
        traffic = LiveTraffic(baseline.width)
        predictions_by_id: dict[str, Any] = {}
        requests = 0
        for decoded in records.decoded(baseline.feature_names) if records is not None else ():
            if decoded.inference_id.startswith(TEST_INFERENCE_ID_PREFIX):
                continue  # the pipeline's own endpoint tests, on SageMaker (locally they are never captured)
            requests += 1
            traffic.add(decoded.rows, decoded.predictions)
            if labels is not None:
                predictions_by_id.update(zip(prediction_keys(decoded.inference_id, len(decoded.predictions)),
                                             decoded.predictions))
    if requests == 0:
        if records is not None and records.not_directories:
            raise PipelineError(f"capture directory {str(records.not_directories[0])!r} is not a directory (a file "
                                f"is in its place): the endpoint cannot write captures there, and monitor cannot read "
                                f"them; move it away")
        raise PipelineError(f"no captured requests for version {version} of endpoint {endpoint_name!r}"
                            + (f" since {since}" if since else "") +
                            ": is capture_percent 0, or has nothing called the endpoint yet?")
    thresholds = DriftThresholds.from_mapping(config.model_dump())
    drift = detect_drift(baseline, traffic.rows, traffic.predictions, thresholds, traffic.wrong_widths)
    quality = None
    if labels is not None:
        quality = live_quality(predictions_by_id, labels, config.minimum_accuracy, config.monitor_min_labels,
                               known_classes=baseline.class_counts)
    return MonitorReport(endpoint_name, version, since, requests, records.unreadable if records else 0, drift,
                         quality, serving_version=row["serving_version"])


def roll_back_after_breach(report: MonitorReport, rollback: Any) -> None:
    """A confirmed breach: serve the previous version again, verified (recorded like a manual rollback)."""
    if not report.breach:
        return
    log.warning("live accuracy of %s is below minimum_accuracy: rolling %s back", report.version,
                report.endpoint_name)
    if report.serving_version != report.version:
        # A rollback steps back from what serves now, which is not the version judged (--version).
        report.rollback = Outcome(FinalState.ROLLBACK_FAILED, report.serving_version,
                                  f"not rolled back: the breach is of version {report.version}, but "
                                  f"{report.serving_version} serves {report.endpoint_name!r}")
    else:
        try:
            report.rollback = rollback(report.endpoint_name)
        except PipelineError as err:  # nothing to roll back to, or the endpoint busy: the breach stands all the same
            report.rollback = Outcome(FinalState.ROLLBACK_FAILED, report.version, str(err))
        except Exception as err:  # a bug in the rollback: the breach stands all the same, and says so
            log.debug("unexpected error rolling back", exc_info=True)
            report.rollback = Outcome(FinalState.ROLLBACK_FAILED, report.version,
                                      f"unexpected {type(err).__name__}: {' '.join(str(err).split())[:300]}")
    if report.rollback.status != FinalState.ROLLED_BACK:
        log.error("rollback after the breach failed: %s", report.rollback.detail)
