"""The command line: a thin shell over ``Orchestrator`` and ``DeploymentStore``.

Every command turns an error the user can fix into one ``Error: ...`` line and
a documented exit code; ``--verbose`` adds the traceback.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from pipeline.config import (
    BACKEND_NAMES,
    MODEL_TYPES,
    TRAFFIC_ROUTINGS,
    PipelineConfig,
    load_config,
    validate_endpoint_name,
)
from pipeline.errors import ExitCode, PipelineError
from pipeline.logs import LOG_FORMATS, default_results_file
from pipeline.operations import MonitorRunReport, Operations, default_outputs, run_pipeline
from pipeline.outcomes import FinalState, Mode
from pipeline.progress import on_terminal
from pipeline.reporting.console_summary import render_summary
from pipeline.reporting.results import Results
from pipeline.run.invocation import check_output_paths, output_label, resolve_mode

EXIT_CODES_HELP = """
\b
Exit codes:
  0  success: everything asked for was done and verified
  1  pipeline failure: tests failed, a deployment was rolled back, an AWS call failed;
     `status`: an endpoint listed is unhealthy or its process is dead
  2  usage, config or input error: nothing was changed
  3  the accuracy gate held or rejected the model: nothing was deployed

\b
Settings, lowest precedence first: defaults < config file < environment
< command line. Flags and --set are one layer: a key given by both (or by
--set twice) with different values is refused, never silently dropped.
Flags that contradict each other (--deployment-only with another --mode,
--training-job outside --mode deployment, ...) and output files that could
not be written are refused with exit 2 before any work.
"""


def _endpoint_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Endpoint names become file and resource names: refuse anything else before it is used."""
    if value is None:
        return None
    try:
        return validate_endpoint_name(value)
    except PipelineError as err:
        raise click.BadParameter(err.message.split(": ", 1)[-1]) from None


def _fail(err: PipelineError, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    click.echo(f"Error: {err.message}", err=True)
    if err.hint:
        click.echo(err.hint, err=True)
    elif not verbose:
        click.echo("Run with --verbose for the traceback.", err=True)
    sys.exit(int(err.exit_code))


def flag_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The config keys the group's flags set; None where a flag was not given."""
    return {
        "role_arn": options.get("role_arn"), "accuracy_threshold": options.get("accuracy_threshold"),
        "minimum_accuracy": options.get("minimum_accuracy"), "aws_region": options.get("region"),
        "instance_type": options.get("instance_type"), "backend": options.get("backend"),
        "auto_deploy_enabled": False if options.get("disable_auto_deploy") else None,
        "dataset": options.get("dataset"), "label_column": options.get("label_column"),
        "model_type": options.get("model_type"), "random_seed": options.get("random_seed"),
        "store_dir": options.get("store_dir"), "endpoint_port": options.get("endpoint_port"),
        "log_file": options.get("log_file"), "log_level": "DEBUG" if options.get("verbose") else None,
        "traffic_routing": options.get("traffic_routing"),
    }


def _build_config(options: dict[str, Any]) -> tuple[PipelineConfig, dict[str, str]]:
    """Every command builds its config the same way: file, environment, flags and --set (config.py)."""
    return load_config(options.get("config_file"), os.environ, flag_settings(options),
                       settings=options.get("settings", ()))


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.option("--role-arn", help="IAM role for SageMaker; implies --backend sagemaker.")
@click.option("--config-file", type=click.Path(dir_okay=False),
              help="JSON config (default: ./pipeline_config.json if present).")
@click.option("--accuracy-threshold", type=float, help="Deploy when accuracy reaches this (default 0.95).")
@click.option("--minimum-accuracy", type=float, help="Reject below this (default 0.90).")
@click.option("--region", help="AWS region.")
@click.option("--instance-type", help="SageMaker instance type.")
@click.option("--output-file", type=click.Path(dir_okay=False),
              help="Results JSON (default /tmp/mlops_pipeline_results_<timestamp>.json; the newest "
                   "tmp_retention_count such files are kept).")
@click.option("--mode", type=click.Choice([str(mode) for mode in Mode]), default=None,
              help="Run one phase only (default: full).")
@click.option("--training-job", help="Training job to deploy (only with --mode deployment, which needs it).")
@click.option("--endpoint-name", callback=_endpoint_name,
              help="Endpoint to deploy to, test or clean up (default: endpoint_prefix; not with --mode training).")
@click.option("--deployment-only", is_flag=True, help="Same as --mode deployment.")
@click.option("--disable-auto-deploy", is_flag=True,
              help="Train and judge, but do not deploy (full or training mode only).")
@click.option("--backend", type=click.Choice(BACKEND_NAMES), help="Where to deploy (default: sagemaker with "
              "--role-arn, else local).")
@click.option("--dataset", help="'iris' or a CSV file with a header row.")
@click.option("--label-column", help="Label column of a CSV dataset (default 'target').")
@click.option("--model-type", type=click.Choice(MODEL_TYPES))
@click.option("--random-seed", type=int, help="Seed for the split, CV and the model.")
@click.option("--store-dir", type=click.Path(file_okay=False), help="State directory (default .mlops).")
@click.option("--endpoint-port", type=int, help="Port of a new local endpoint (default: a free one).")
@click.option("--traffic-routing", type=click.Choice(TRAFFIC_ROUTINGS, case_sensitive=False),
              help="How a tested version takes the endpoint's traffic (default ALL_AT_ONCE; CANARY, LINEAR and "
                   "SHADOW bake it on live requests first).")
@click.option("--log-file", type=click.Path(dir_okay=False),
              help="Log file (default /tmp/mlops_pipeline_<ts>.log; the newest tmp_retention_count such files "
                   "are kept).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="Log lines for people, or one JSON object per line (time, level, phase, message, run_id).")
@click.option("--dotenv-file", type=click.Path(dir_okay=False),
              help="Write MLOPS_*=value lines for GitLab's dotenv report (whatever the exit code).")
@click.option("--junit-xml", type=click.Path(dir_okay=False),
              help="Write gate checks and endpoint tests as JUnit XML for GitLab's test report.")
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="Write 'name value' lines for GitLab's metrics report.")
@click.option("--report-html", type=click.Path(dir_okay=False),
              help="Also write the run's self-contained HTML report here (every run writes it to "
                   "<store_dir>/runs/<run_id>/report.html, whatever the exit code).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Set any config key (JSON value, else a string); must agree with a flag for the same key.")
@click.option("--verbose", is_flag=True, help="DEBUG logging and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """Train a scikit-learn model, gate it on accuracy, deploy it to a live endpoint,
    test the endpoint and roll back when the tests fail.

    \b
    Examples:
      python3 run_pipeline.py                                  # full pipeline, local endpoint
      python3 run_pipeline.py --accuracy-threshold 0.98 --output-file results.json
      python3 run_pipeline.py --mode deployment --training-job iris-classifier-20250823-120000
      python3 run_pipeline.py --mode testing --endpoint-name iris-model
      python3 run_pipeline.py --mode cleanup --endpoint-name iris-model
      python3 run_pipeline.py --role-arn arn:aws:iam::123456789012:role/SageMakerRole
      python3 run_pipeline.py jobs                             # training jobs: gate, where each serves
      python3 run_pipeline.py runs show RUN_ID                 # a run's summary and report path again
    """
    ctx.ensure_object(dict)
    ctx.obj.update(options)
    ctx.obj["given"] = [name for name in options
                        if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)]
    if ctx.invoked_subcommand is not None:
        # Checked here, before click parses the command's own options: `--endpoint-name NAME monitor` must
        # say where --endpoint-name goes, not that the command is missing it.
        try:
            _refuse_run_only(ctx.obj["given"], ctx.invoked_subcommand)
        except PipelineError as err:
            _fail(err, options["verbose"])
        return
    verbose = options["verbose"]
    try:
        config, sources = _build_config(options)
        mode = resolve_mode(options["mode"], deployment_only=options["deployment_only"],
                            training_job=options["training_job"], endpoint_name=options["endpoint_name"],
                            config=config, sources=sources)
        check_output_paths({
            ("--output-file" if options["output_file"] else "the default results file (choose one with "
             "--output-file)"): options["output_file"] or default_results_file(),
            "--dotenv-file": options["dotenv_file"],
            "--junit-xml": options["junit_xml"], "--metrics-file": options["metrics_file"],
            "--report-html": options["report_html"],
            # the default log path only warns when it cannot be written (configure_logging); a chosen one must work
            output_label("log_file", sources["log_file"]): config.log_file,
        })
        outputs = default_outputs(options["output_file"], dotenv_file=options["dotenv_file"],
                                  junit_xml=options["junit_xml"], metrics_file=options["metrics_file"],
                                  report_html=options["report_html"], log_format=options["log_format"])
        results = run_pipeline(config, sources, outputs, mode=mode, endpoint_name=options["endpoint_name"],
                               training_job=options["training_job"])
    except PipelineError as err:
        _fail(err, verbose)
        return
    print_summary(results, store_dir=config.store_dir)
    sys.exit(results.exit_code)


def print_summary(results: Results, emoji: bool | None = None, store_dir: str | None = None) -> None:
    """The console summary (``pipeline.reporting.console_summary``): emoji and colour only at a terminal."""
    click.echo(render_summary(results, on_terminal(sys.stdout) if emoji is None else emoji, store_dir))


@cli.command()
@click.option("--endpoint-name", help="Only this endpoint's history.", callback=_endpoint_name)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--at", "at_time", help="Which version served --endpoint-name at this ISO time (UTC).")
@click.option("--verify", is_flag=True, help="Check the audit trail's hash chain; exit 1 if it was edited.")
@click.pass_context
def history(ctx: click.Context, endpoint_name: str | None, as_json: bool, at_time: str | None,
            verify: bool) -> None:
    """Deployments and rollbacks, newest first.

    Example: python3 run_pipeline.py history --endpoint-name iris-model --at 2026-11-26T10:00:00
    """
    operations = _operations(ctx)
    try:
        if verify and (endpoint_name or at_time):
            raise PipelineError(f"history --verify checks the whole audit trail: it takes no "
                                f"{'--endpoint-name' if endpoint_name else '--at'}")
        if verify:
            problems = operations.verify_audit_trail()
            for problem in problems:
                click.echo(f"Error: audit trail: {problem}", err=True)
            if problems:
                sys.exit(int(ExitCode.FAILURE))
            click.echo("audit trail intact")
            return
        if at_time:
            if not endpoint_name:
                raise PipelineError("history --at needs --endpoint-name")
            version = operations.serving_at(endpoint_name, at_time)
            click.echo(json.dumps({"endpoint_name": endpoint_name, "at": at_time, "serving_version": version})
                       if as_json else (version or "nothing was serving"))
            return
        history = operations.history(endpoint_name)
    except PipelineError as err:
        _fail(err, False)
        return
    if as_json:
        click.echo(json.dumps({"deployments": history.deployments, "rollbacks": history.rollbacks,
                               "runs": history.runs}, indent=2, default=str))
        return
    lines = [(row["started_at"], f"deployment  {row['endpoint_name']}  {row['from_version'] or '-'} -> "
              f"{row['to_version']}  {row['status']}" + (f"  ({row['reason']})" if row["reason"] else ""))
             for row in history.deployments]
    lines += [(event["at"], f"rollback    {event['endpoint_name']}  {event['detail'].get('from_version') or '-'} -> "
               f"{event['detail'].get('to_version')}  {event['kind'].removeprefix('manual_')}")
              for event in history.rollbacks]
    if not endpoint_name:
        lines += [(run["started_at"], f"run         {run['run_id']}  {run['mode']}  {run['backend']}  "
                   f"{run['status']}" + (f"  exit {run['exit_code']}" if run["exit_code"] is not None else ""))
                  for run in history.runs]
    for at, text in sorted(lines, key=lambda item: item[0], reverse=True):
        click.echo(f"{at[:19]}  {text}")


@cli.command()
@click.option("--endpoint-name", help="Only this endpoint.", callback=_endpoint_name)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, endpoint_name: str | None, as_json: bool) -> None:
    """Each endpoint: URL, serving version, health, whether its process is alive, and a bake's traffic split.

    Exit 1 when any endpoint listed is unhealthy or its process is dead, so it serves as a health
    check; 0 when all are healthy (or there are none).

    Example: python3 run_pipeline.py status
    """
    try:
        report = _operations(ctx).status(endpoint_name)
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    if as_json:
        click.echo(json.dumps({"endpoints": report.endpoints, "unrecorded_servers": report.unrecorded_servers},
                              indent=2, default=str))
    else:
        if not report.endpoints and not report.unrecorded_servers:
            click.echo("no endpoints")
        for row in report.endpoints:
            health = "healthy" if row.get("healthy") else "UNHEALTHY"
            alive = "" if row.get("process_alive", True) else \
                "  process DEAD: the next deployment or rollback restarts it"
            split = row.get("traffic_split")
            if split:  # a bake in progress: who answers what, and how far it is
                alive += f"  BAKING: {_describe_bake(split)}"
            click.echo(f"{row['name']}  {row['url']}  {row['serving_version']}  {health}{alive}")
        for name, servers in report.unrecorded_servers.items():
            click.echo(f"{name}  NOT IN THE STORE: {', '.join(servers)} still running; "
                       f"`run_pipeline.py cleanup --endpoint-name {name}` stops them")
    if not report.healthy:
        sys.exit(int(ExitCode.FAILURE))


@cli.command()
@click.option("--endpoint-name", required=True, help="Endpoint to roll back.", callback=_endpoint_name)
@click.option("--to-version", help="Version to serve again (default: the one deployed before the current one).")
@click.pass_context
def rollback(ctx: click.Context, endpoint_name: str, to_version: str | None) -> None:
    """Serve an earlier version again, verified by health check and version header.

    Example: python3 run_pipeline.py rollback --endpoint-name iris-model
    """
    try:
        outcome = _operations(ctx).rollback(endpoint_name, to_version)
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    if outcome.status != FinalState.ROLLED_BACK:
        click.echo(f"Error: rollback of {endpoint_name!r} failed: {outcome.detail}", err=True)
        click.echo(f"Check `python3 run_pipeline.py status --endpoint-name {endpoint_name}`, then run "
                   f"`python3 run_pipeline.py rollback --endpoint-name {endpoint_name} --to-version VERSION`.",
                   err=True)
        sys.exit(int(ExitCode.FAILURE))
    click.echo(f"rolled_back: {endpoint_name} serves {outcome.serving_version} ({outcome.detail})")


@cli.command()
@click.option("--endpoint-name", help="Stop and remove this endpoint.", callback=_endpoint_name)
@click.option("--prefix", help="Stop and remove every endpoint whose name starts with this.")
@click.option("--all", "everything", is_flag=True, help="Stop and remove every endpoint of the store, and any "
              "server of its endpoint directories the store does not know.")
@click.option("--prune", is_flag=True, help="Keep the endpoints; delete the artifacts of old versions.")
@click.option("--keep", type=int, help="With --prune: versions to keep per endpoint (default retain_versions).")
@click.pass_context
def cleanup(ctx: click.Context, endpoint_name: str | None, prefix: str | None, everything: bool, prune: bool,
            keep: int | None) -> None:
    """Stop and remove endpoints by name or prefix (or all), or prune old versions' artifacts.

    Servers running from the store's endpoint directories that the store does not know (its
    state file was lost) are stopped too when their endpoint's name matches.

    Example: python3 run_pipeline.py cleanup --prefix iris-
    """
    try:
        report = _operations(ctx).cleanup(endpoint_name=endpoint_name, prefix=prefix, everything=everything,
                                          prune=prune, keep=keep)
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    for name in report.removed:
        click.echo(f"removed endpoint {name}")
    for name in report.unrecorded_stopped:
        click.echo(f"stopped the servers of {name}, which the store did not know")
    for kind, deleted in report.deleted.items():
        for name in deleted:
            click.echo(f"deleted {kind} {name}")
    for name, pruned in report.pruned.items():
        click.echo(f"{name}: pruned {len(pruned)} old version(s)")
    if not report.removed and not report.unrecorded_stopped and not prune:
        click.echo("no endpoints matched")


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
    """Training jobs, newest first: data, model, the gate's numbers and decision, where each serves.

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
        rows.append([job["created_at"][:19], job["name"], Path(job["dataset"]).name if job["dataset"] else "?",
                     (job["data_sha256"] or "-")[:12], job["model_type"] or "-", judged, job["gate_decision"] or "-",
                     served])
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
        deployed = f"{run['endpoint_name']}:{run['version']}" if run["version"] else "-"
        rows.append([run["started_at"][:19], run["run_id"], run["mode"], run["status"], code, took,
                     run["training_job"] or "-", deployed, run["results_file"] or "-"])
    _table(["started", "run id", "mode", "status", "exit", "took", "training job", "endpoint:version",
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


def _describe_bake(split: dict[str, Any]) -> str:
    """``v2 gets 10% of requests, interval 2 of 9, 40s of 60s left`` (as much as the split recorded)."""
    share = "a shadow copy of every request" if split.get("mode") == "shadow" else \
        f"{split.get('percent')}% of requests"
    text = f"{split.get('candidate_version')} gets {share}"
    if split.get("interval") and split.get("intervals"):
        text += f", interval {split['interval']} of {split['intervals']}"
    try:
        elapsed = (datetime.now(UTC) - datetime.fromisoformat(split["since"])).total_seconds()
        text += f", {max(0.0, float(split['seconds']) - elapsed):.0f}s of {float(split['seconds']):g}s left"
    except (KeyError, TypeError, ValueError):  # a split written before these were recorded
        pass
    return text


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
    (no captures, fewer than monitor_min_rows rows, or with --labels fewer than monitor_min_labels
    labelled predictions).

    Example: python3 run_pipeline.py monitor --endpoint-name iris-model --labels labels.csv
    """
    if rollback_on_breach and not labels_file:
        _fail(PipelineError("--rollback-on-breach needs --labels FILE: only labels can show a breach"), False)
    try:
        if report_file:
            check_output_paths({"--output-file": report_file})
        report = _operations(ctx).monitor(endpoint_name, version=version, since=since, labels_file=labels_file,
                                          rollback_on_breach=rollback_on_breach, report_file=report_file)
    except PipelineError as err:
        _fail(err, bool((ctx.obj or {}).get("verbose")))
        return
    drift = report.drift
    counted = "".join(f", {count:,} {what}" for count, what in (
        (drift.wrong_width_rows, "row(s) of the wrong width"), (report.unreadable_lines, "unreadable capture line(s)"))
        if count)
    click.echo(f"{endpoint_name} {report.version}: {report.captured_requests:,} captured requests, "
               f"{drift.rows_compared:,} rows compared{counted}")
    click.echo(f"drift: {drift.verdict} ({drift.reason})")
    if drift.verdict != "insufficient_data":
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


# Options of a pipeline run that mean nothing to a subcommand: given before one, they would be dropped.
_RUN_ONLY = {"mode": "--mode", "training_job": "--training-job", "endpoint_name": "--endpoint-name",
             "deployment_only": "--deployment-only", "output_file": "--output-file", "dotenv_file": "--dotenv-file",
             "junit_xml": "--junit-xml", "metrics_file": "--metrics-file", "report_html": "--report-html",
             "log_file": "--log-file", "log_format": "--log-format"}


def _refuse_run_only(given: Any, command: str) -> None:
    takes_endpoint = any(param.name == "endpoint_name" for param in getattr(cli.commands.get(command), "params", ()))
    for name in given:
        if name in _RUN_ONLY:
            where = (f"; give it after the command: `{command} --endpoint-name NAME`"
                     if name == "endpoint_name" and takes_endpoint else "")
            raise PipelineError(f"{_RUN_ONLY[name]} is an option of a pipeline run, not of `{command}`" + where)


def _subcommand_config(ctx: click.Context) -> PipelineConfig:
    """The config of a subcommand: the group's flags and --set count as for a run; run-only options are refused."""
    options = ctx.obj or {}
    try:
        _refuse_run_only(options.get("given", ()), ctx.info_name or "")
        config, _ = _build_config(options)
    except PipelineError as err:
        _fail(err, bool(options.get("verbose")))
        raise  # unreachable: _fail exits
    return config


def _operations(ctx: click.Context) -> Operations:
    config = _subcommand_config(ctx)
    try:
        return Operations(config)
    except PipelineError as err:
        _fail(err, bool((ctx.obj or {}).get("verbose")))
        raise  # unreachable: _fail exits


def main() -> None:
    """Run the CLI, then leave without tearing down the interpreter.

    Module teardown after scipy, scikit-learn and pandas costs 0.3-0.4 s and does nothing
    useful here: logs and output are flushed first, and every file was written atomically.
    """
    try:
        # run_pipeline.py or the installed console script, mlops-pipeline: --help names the one used.
        cli(prog_name=Path(sys.argv[0]).name or "run_pipeline.py")  # pylint: disable=no-value-for-parameter
        code: Any = 0
    except SystemExit as exit_:
        code = exit_.code
    if not isinstance(code, int):
        if code is not None:
            click.echo(code, err=True)
        code = 0 if code is None else 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
