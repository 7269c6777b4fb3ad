"""The summary a run prints at its end: what happened, in a dozen lines a person or a CI log reads first.

``pipeline.cli`` prints it (emoji and colour only on a terminal); the same words are in the results JSON.
"""
from __future__ import annotations

from typing import Any

import click

from pipeline.reporting.results import Results


def _tick(value: Any, emoji: bool = True) -> str:
    if not emoji:
        return "Yes" if value else "No"
    return "✅ Yes" if value else "❌ No"


def render_summary(results: Results, emoji: bool, store_dir: str | None = None) -> str:
    """The console summary; with ``store_dir``, it also says where the run's HTML report is (when it was written)."""
    summary = results.summary
    status = results.pipeline_status or "unknown"
    line = "=" * 80
    title = "ENTERPRISE MLOPS PIPELINE COMPLETED" if status == "success" else "ENTERPRISE MLOPS PIPELINE FINISHED"
    if emoji:
        title = ("🎉 " if status == "success" else "⚠️ ") + title
    colour = {"success": "green", "held": "yellow", "rejected": "yellow"}.get(status, "red")
    accuracy = summary.training_accuracy
    rows = [click.style(f"Status: {status.upper()}", fg=colour, bold=True),  # click.echo drops it off a terminal
            f"Duration: {results.total_duration_seconds or 0:.2f} seconds"]
    if accuracy is not None:
        rows.append(f"Training Accuracy: {accuracy:.2%}")
    if results.gate:
        rows.append(f"Gate: {results.gate.decision} ({results.gate.reason})")
        if results.gate.contract and not results.gate.contract.holds:  # when it holds, the gate's reason says so
            rows.append(f"Contract: {results.gate.contract.status}: {results.gate.contract.reason}")
        if results.gate.champion:
            rows.append(f"Champion comparison: {results.gate.champion.reason}")
        if results.gate.approval:
            approval = results.gate.approval
            rows.append(f"Approval: {approval.status} by {approval.by} ({approval.reason})")
        if results.gate.warning:
            rows.append(f"Gate warning: {results.gate.warning}")
    rows.append(f"Deployment Occurred: {_tick(summary.deployment_occurred, emoji)}")
    if summary.endpoint_name:
        rows.append(f"Endpoint: {summary.endpoint_name} ({summary.endpoint_url}, version {summary.endpoint_version})")
    if summary.testing_passed is not None:
        passed = summary.testing_passed
        rows.append(f"Testing: {('✅ ' if passed else '❌ ') if emoji else ''}{'Passed' if passed else 'Failed'}")
    rollout = results.phases.rollout
    if rollout is not None:
        rows.append(f"Bake: {rollout.traffic_routing}, {len(rollout.intervals)} interval(s) of "
                    f"{rollout.baking_seconds:g} s: {rollout.outcome} ({rollout.reason})")
    if results.rollback:
        rows.append(f"Rollback: {results.rollback.final_state} ({results.rollback.reason})")
    if results.error:
        rows.append(f"Error: {results.error.message}")
    if results.resume_command:
        rows.append(f"To resume: {results.resume_command}")
    testing = results.test_summary
    metrics = [f"{'📊 ' if emoji else ''}Key Metrics:", f"   Status: {status}"]
    if accuracy is not None:
        metrics.append(f"   Training Accuracy: {accuracy:.2%}")
    metrics.append(f"   Deployment: {_tick(summary.deployment_occurred, emoji)}")
    if summary.endpoint_name:
        metrics.append(f"   Endpoint: {summary.endpoint_name}")
    if summary.testing_passed is not None:
        metrics.append(f"   Testing: {'Passed' if summary.testing_passed else 'Failed'}")
    if testing.p95_latency_ms is not None:
        metrics.append(f"   Latency: avg {testing.avg_latency_ms} ms, p95 {testing.p95_latency_ms} ms, "
                       f"{testing.throughput_rps} requests/s")
    saved = [f"{'📄 ' if emoji else ''}Detailed results saved to: {results.results_file}"]
    if store_dir is not None and results.run_id:
        from pipeline.reporting.html_report import report_path

        page = report_path(store_dir, results.run_id)
        if page.is_file():
            saved.append(f"{'📄 ' if emoji else ''}Run report: {page}")
    return "\n".join(["", line, title, line, *rows, line, "", *metrics, "", *saved])
