"""Commands on what the store recorded: ``jobs``, ``runs`` (and ``runs show``), and ``monitor``."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from pipeline.cli.run_command import _endpoint_name, _fail, _operations, cli, print_summary
from pipeline.errors import PipelineError
from pipeline.operations import MonitorRunReport
from pipeline.run.invocation import check_output_paths


def _more(listed: list[dict[str, Any]], limit: int, what: str, as_json: bool) -> bool:
    """Drop the one row past ``limit`` (its presence says there are more), and say so off the JSON."""
    more = len(listed) > limit
    del listed[limit:]
    if more and not as_json:
        click.echo(f"(the {limit} newest {what}; --limit N shows more)", err=True)
    return more


@cli.command()
@click.option("--prefix", help="Only jobs whose name starts with this.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (\"more\": true when --limit left some out).")
@click.pass_context
def jobs(ctx: click.Context, prefix: str | None, limit: int, as_json: bool) -> None:
    """Training jobs, newest first: data, model, the gate's numbers and decision, where each serves
    (a job whose files cleanup --prune deleted is marked not deployable).

    Example: python3 run_pipeline.py jobs --prefix iris-classifier
    """
    try:
        listed = _operations(ctx).jobs(prefix, limit)
    except PipelineError as err:
        _fail(err, False)
        return
    more = _more(listed, limit, "training jobs", as_json)
    if as_json:
        click.echo(json.dumps({"jobs": listed, "more": more}, indent=2, default=str))
        return
    if not listed:
        click.echo("no training jobs" + (f" named {prefix}*" if prefix else ""))
        return
    rows = []
    for job in listed:
        value, interval = job["gate_value"], job["gate_interval"]
        judged = f"{job['gate_metric']} {value:.4f}" if isinstance(value, (int, float)) else job["gate_metric"]
        if interval:
            judged += f" [{interval[0]:.4f}, {interval[1]:.4f}]"
        served = ", ".join(f"{item['endpoint_name']}:{item['version']}" for item in job["deployed_as"]) or "-"
        if job.get("pruned_at"):  # its files are gone: it cannot be deployed (or served) again
            served = f"pruned, not deployable (was: {served})" if served != "-" else "pruned, not deployable"
        decision = job["gate_decision"] or "-"
        if job["approval"]:
            decision += f" ({job['approval']['status']} by {job['approval']['by']})"
        elif job["awaiting_approval"]:
            decision += " (awaits `approve`)"
        rows.append([job["created_at"][:19], job["name"], Path(job["dataset"]).name if job["dataset"] else "?",
                     (job["data_sha256"] or "-")[:12], job["model_type"] or "-", judged, decision, served])
    _table(["created", "training job", "dataset", "sha256", "model", "gate metric [95% interval]", "decision",
            "deployed to endpoint:version"], rows)


def _table(header: list[str], rows: list[list[str]]) -> None:
    """Columns aligned under a header, two spaces apart, the last one unpadded (it may be long)."""
    widths = [max(len(str(row[column])) for row in [header, *rows]) for column in range(len(header) - 1)]
    for row in [header, *rows]:
        click.echo("  ".join([*(f"{str(cell):<{width}}" for cell, width in zip(row, widths)), str(row[-1])]))


@cli.group(invoke_without_command=True)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (\"more\": true when --limit left some out).")
@click.pass_context
def runs(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Pipeline runs, newest first: mode, status, exit code, duration, what they trained and deployed.

    Example: python3 run_pipeline.py runs; python3 run_pipeline.py runs show RUN_ID
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        listed = _operations(ctx).runs(limit)
    except PipelineError as err:
        _fail(err, False)
        return
    more = _more(listed, limit, "runs", as_json)
    if as_json:
        click.echo(json.dumps({"runs": listed, "more": more}, indent=2, default=str))
        return
    if not listed:
        click.echo("no runs")
        return
    rows = []
    for run in listed:
        took = f"{run['duration_seconds']:.1f}s" if run["duration_seconds"] is not None else "-"
        code = "-" if run["exit_code"] is None else str(run["exit_code"])
        deployed = "-"
        if run["tried_version"]:  # what it left serving; a version it tried and did not keep, labelled as such
            deployed = f"{run['endpoint_name']}:{run['left_serving'] or 'nothing'}"
            if run["left_serving"] != run["tried_version"]:
                deployed += f" (tried {run['tried_version']}: {run['deployment_status']})"
        rows.append([run["started_at"][:19], run["run_id"], run["mode"], run["status"], code, took,
                     run["training_job"] or "-", deployed, run["results_file"] or "-"])
    _table(["started", "run id", "mode", "status", "exit", "took", "training job", "endpoint:serving",
            "results file"], rows)


@runs.command("show")
@click.argument("run_id")
@click.pass_context
def runs_show(ctx: click.Context, run_id: str) -> None:
    """Print a run's summary again, from the results file it wrote.

    The file must still have the sha256 the run recorded when it wrote it: a file changed since is
    refused (exit 2); a run that recorded none is shown with a warning that it is unverified.

    Example: python3 run_pipeline.py runs show 20261126T030742Z-1a2b3c4d
    """
    operations = _operations(ctx.parent or ctx)
    try:
        results, unverified = operations.run_results(run_id)
    except PipelineError as err:
        _fail(err, False)
        return
    if unverified:
        click.echo(f"Warning: {unverified}", err=True)
    if isinstance(results, MonitorRunReport):  # a monitor run: its report, as `monitor --output-file` wrote it
        click.echo(f"monitor run {run_id}, report {results.path}:")
        click.echo(json.dumps(results.document, indent=2))
        return
    print_summary(results, store_dir=str(operations.store.directory))


@cli.command()
@click.option("--endpoint-name", required=True, help="Endpoint whose captured traffic to check.",
              callback=_endpoint_name)
@click.option("--version", help="Version to check (default: the one serving now).")
@click.option("--since", help="Only requests at or after this ISO time (UTC).")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False),
              help="CSV of inference_id,label: also judge live accuracy against minimum_accuracy.")
@click.option("--rollback-on-breach", is_flag=True,
              help="With --labels: a confirmed breach rolls the endpoint back to its previous version.")
@click.option("--output-file", "report_file", type=click.Path(dir_okay=False), help="Write the report as JSON.")
@click.pass_context
def monitor(ctx: click.Context, endpoint_name: str, version: str | None, since: str | None,
            labels_file: str | None, rollback_on_breach: bool, report_file: str | None) -> None:
    """Compare an endpoint's captured traffic with its training baseline (and, with --labels, its
    live accuracy with minimum_accuracy). Exit 0: no drift; 1: drift or a breach; 2: no verdict
    (no captures, fewer than monitor_min_rows rows or too few distinct ones, with --labels fewer
    than monitor_min_labels labelled predictions or labels that name no class of the model, a
    baseline that changed, a usage error, or an unexpected error inside monitor).

    Example: python3 run_pipeline.py monitor --endpoint-name iris-model --labels labels.csv
    """
    if rollback_on_breach and not labels_file:
        _fail(PipelineError("--rollback-on-breach needs --labels FILE: only labels can show a breach"), False)
    try:
        if report_file:
            check_output_paths({"--output-file": report_file})
        record = _operations(ctx).monitor(endpoint_name, version=version, since=since, labels_file=labels_file,
                                          rollback_on_breach=rollback_on_breach, report_file=report_file)
    except PipelineError as err:
        _fail(err, bool((ctx.obj or {}).get("verbose")))
        return
    if record.error is not None or record.report is None:
        error = record.error or PipelineError("monitor ended without a report")
        if (ctx.obj or {}).get("verbose") and record.failure is not None:  # caught in the run: its own traceback
            traceback.print_exception(record.failure)
            click.echo(f"Error: {error.message}", err=True)
            sys.exit(int(error.exit_code))
        _fail(error, bool((ctx.obj or {}).get("verbose")))
        return
    report = record.report
    drift = report.drift
    counted = "".join(f", {count:,} {what}" for count, what in (
        (drift.wrong_width_rows, "row(s) of the wrong width"), (report.unreadable_lines, "unreadable capture line(s)"))
        if count)
    click.echo(f"{endpoint_name} {report.version}: {report.captured_requests:,} captured requests, "
               f"{drift.rows_compared:,} rows compared{counted}")
    click.echo(f"drift: {drift.verdict} ({drift.reason})")
    if drift.features:  # none when there is no verdict, or rows of the wrong width made it
        click.echo(drift.summary_table())
    if report.quality is not None:
        quality = report.quality
        shown = f"{quality.accuracy:.2%} [{quality.interval_low:.2%}, {quality.interval_high:.2%}]" \
            if quality.accuracy is not None else "unknown"
        click.echo(f"live accuracy: {quality.status}: {shown} on {quality.matched:,} labelled predictions "
                   f"({quality.reason})")
        if quality.per_class_recall:
            click.echo("recall by class: " + ", ".join(
                f"{label} {item['recall']:.2%} ({item['correct']:,}/{item['support']:,})"
                for label, item in quality.per_class_recall.items()))
    if report.rollback is not None:
        click.echo(f"rollback: {report.rollback.status}: {report.rollback.detail}")
    sys.exit(int(report.exit_code))


