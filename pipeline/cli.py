"""The command line: a thin shell over ``Orchestrator`` and ``DeploymentStore``.

Every command turns an error the user can fix into one ``Error: ...`` line and
a documented exit code; ``--verbose`` adds the traceback.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from click.core import ParameterSource

from pipeline.backends import BACKENDS
from pipeline.config import (
    PipelineConfig,
    check_output_paths,
    load_config,
    output_label,
    resolve_mode,
    validate_endpoint_name,
)
from pipeline.errors import ExitCode, PipelineError
from pipeline.logs import LOG_FORMATS, configure_logging, default_results_file, prune_default_files, set_run_id
from pipeline.orchestrator import MODES, write_results

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


def _flags(options: dict[str, Any]) -> dict[str, Any]:
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
    }


def _build_config(options: dict[str, Any]) -> tuple[PipelineConfig, dict[str, str]]:
    """Every command builds its config the same way: file, environment, flags and --set (config.py)."""
    return load_config(options.get("config_file"), os.environ, _flags(options), settings=options.get("settings", ()))


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
@click.option("--mode", type=click.Choice(MODES), default=None, help="Run one phase only (default: full).")
@click.option("--training-job", help="Training job to deploy (only with --mode deployment, which needs it).")
@click.option("--endpoint-name", callback=_endpoint_name,
              help="Endpoint to deploy to, test or clean up (default: endpoint_prefix; not with --mode training).")
@click.option("--deployment-only", is_flag=True, help="Same as --mode deployment.")
@click.option("--disable-auto-deploy", is_flag=True,
              help="Train and judge, but do not deploy (full or training mode only).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), help="Where to deploy (default: sagemaker with "
              "--role-arn, else local).")
@click.option("--dataset", help="'iris' or a CSV file with a header row.")
@click.option("--label-column", help="Label column of a CSV dataset (default 'target').")
@click.option("--model-type", type=click.Choice(["logistic_regression", "random_forest", "gradient_boosting"]))
@click.option("--random-seed", type=int, help="Seed for the split, CV and the model.")
@click.option("--store-dir", type=click.Path(file_okay=False), help="State directory (default .mlops).")
@click.option("--endpoint-port", type=int, help="Port of a new local endpoint (default: a free one).")
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
    """
    ctx.ensure_object(dict)
    ctx.obj.update(options)
    ctx.obj["given"] = [name for name in options
                        if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)]
    if ctx.invoked_subcommand is not None:
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
            # the default log path only warns when it cannot be written (configure_logging); a chosen one must work
            output_label("log_file", sources["log_file"]): config.log_file,
        })
        results, exit_code = run_pipeline(config, sources, mode=mode, endpoint_name=options["endpoint_name"],
                                          training_job=options["training_job"], output_file=options["output_file"],
                                          log_format=options["log_format"], dotenv_file=options["dotenv_file"],
                                          junit_xml=options["junit_xml"], metrics_file=options["metrics_file"])
    except PipelineError as err:
        _fail(err, verbose)
        return
    sys.exit(exit_code)


def run_pipeline(config: PipelineConfig, sources: dict[str, str], *, mode: str, endpoint_name: str | None,
                 training_job: str | None, output_file: str | None, log_format: str = "text",
                 dotenv_file: str | None = None, junit_xml: str | None = None,
                 metrics_file: str | None = None) -> tuple[dict[str, Any], int]:
    """Run one pipeline invocation end to end: log, orchestrate, write results and reports, print the summary.

    The reports (dotenv, JUnit, metrics) are written for every run that started, whatever its exit code.
    """
    from pipeline.orchestrator import Orchestrator
    from pipeline.reports import write_reports

    log_file = configure_logging(config.log_level, config.log_file, log_format=log_format)
    pruned = prune_default_files(config.tmp_retention_count, results_pending=not output_file,
                                 protect=[path for path in (output_file, config.log_file, dotenv_file, junit_xml,
                                                            metrics_file) if path])
    if pruned:
        logging.getLogger("pipeline").debug("deleted %d old default-named log/results file(s) "
                                            "(tmp_retention_count=%d)", len(pruned), config.tmp_retention_count)
    orchestrator = Orchestrator(config, sources, mode=mode, endpoint_name=endpoint_name, training_job=training_job,
                                log_file=str(log_file))
    set_run_id(orchestrator.run_id)
    with _sigterm_as_interrupt():
        results = orchestrator.run()
    path = output_file or default_results_file()
    results["results_file"] = str(path)
    try:
        write_results(results, path)
    finally:  # the CI reports even when the results JSON cannot be written
        for problem in write_reports(results, dotenv_file=dotenv_file, junit_xml=junit_xml,
                                     metrics_file=metrics_file):
            logging.getLogger("pipeline").error("report not written: %s", problem)
    print_summary(results)
    logging.getLogger("pipeline").debug("results written to %s", path)
    return results, results["exit_code"]


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A cancelled CI job sends SIGTERM: unwind like Ctrl-C, so an unfinished candidate is dropped."""
    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_terminal() -> bool:
    """Emoji and colour are for a person at a terminal; CI logs, pipes and files get the plain words."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def _tick(value: Any, emoji: bool = True) -> str:
    if not emoji:
        return "Yes" if value else "No"
    return "✅ Yes" if value else "❌ No"


def print_summary(results: dict[str, Any], emoji: bool | None = None) -> None:
    emoji = _on_terminal() if emoji is None else emoji
    summary = results["summary"]
    status = results["pipeline_status"]
    line = "=" * 80
    title = "ENTERPRISE MLOPS PIPELINE COMPLETED" if status == "success" else "ENTERPRISE MLOPS PIPELINE FINISHED"
    if emoji:
        title = ("🎉 " if status == "success" else "⚠️ ") + title
    colour = {"success": "green", "held": "yellow", "rejected": "yellow"}.get(status, "red")
    accuracy = summary.get("training_accuracy")
    rows = [click.style(f"Status: {status.upper()}", fg=colour, bold=True),  # click.echo drops it off a terminal
            f"Duration: {results['total_duration_seconds']:.2f} seconds"]
    if accuracy is not None:
        rows.append(f"Training Accuracy: {accuracy:.2%}")
    if results.get("gate"):
        rows.append(f"Gate: {results['gate']['decision']} ({results['gate']['reason']})")
    rows.append(f"Deployment Occurred: {_tick(summary.get('deployment_occurred'), emoji)}")
    if summary.get("endpoint_name"):
        rows.append(f"Endpoint: {summary['endpoint_name']} ({summary.get('endpoint_url')}, "
                    f"version {summary.get('endpoint_version')})")
    if summary.get("testing_passed") is not None:
        passed = summary["testing_passed"]
        rows.append(f"Testing: {('✅ ' if passed else '❌ ') if emoji else ''}{'Passed' if passed else 'Failed'}")
    if results.get("rollback"):
        rows.append(f"Rollback: {results['rollback']['final_state']} ({results['rollback']['reason']})")
    if results.get("error"):
        rows.append(f"Error: {results['error']['message']}")
    if results.get("resume_command"):
        rows.append(f"To resume: {results['resume_command']}")
    testing = results["phases"].get("testing", {}).get("test_summary", {})
    metrics = [f"{'📊 ' if emoji else ''}Key Metrics:", f"   Status: {status}"]
    if accuracy is not None:
        metrics.append(f"   Training Accuracy: {accuracy:.2%}")
    metrics.append(f"   Deployment: {_tick(summary.get('deployment_occurred'), emoji)}")
    if summary.get("endpoint_name"):
        metrics.append(f"   Endpoint: {summary['endpoint_name']}")
    if summary.get("testing_passed") is not None:
        metrics.append(f"   Testing: {'Passed' if summary['testing_passed'] else 'Failed'}")
    if testing.get("p95_latency_ms") is not None:
        metrics.append(f"   Latency: avg {testing['avg_latency_ms']} ms, p95 {testing['p95_latency_ms']} ms, "
                       f"{testing['throughput_rps']} requests/s")
    click.echo("\n".join(["", line, title, line, *rows, line, "", *metrics, "",
                          f"{'📄 ' if emoji else ''}Detailed results saved to: {results.get('results_file')}"]))


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
    store = _store(ctx)
    if verify and (endpoint_name or at_time):
        _fail(PipelineError(f"history --verify checks the whole audit trail: it takes no "
                            f"{'--endpoint-name' if endpoint_name else '--at'}"), False)
    if endpoint_name and not (store.endpoint(endpoint_name) or store.deployments(endpoint_name, limit=1)
                              or store.events(endpoint_name, limit=1)):
        _fail(PipelineError(f"endpoint {endpoint_name!r} not found: {store.directory} has no endpoint, deployment "
                            f"or event of that name (`history` lists them all)"), False)
    if verify:
        problems = store.verify_events()
        for problem in problems:
            click.echo(f"Error: audit trail: {problem}", err=True)
        if problems:
            sys.exit(int(ExitCode.FAILURE))
        click.echo("audit trail intact")
        return
    if at_time:
        if not endpoint_name:
            _fail(PipelineError("history --at needs --endpoint-name"), False)
        try:
            version = store.serving_version_at(endpoint_name, at_time)
        except PipelineError as err:
            _fail(err, False)
            return
        click.echo(json.dumps({"endpoint_name": endpoint_name, "at": at_time, "serving_version": version})
                   if as_json else (version or "nothing was serving"))
        return
    rows = store.deployments(endpoint_name, limit=1000)
    rollbacks = [event for event in store.events(endpoint_name) if event["kind"].startswith("manual_")]
    runs = store.runs()
    if as_json:
        click.echo(json.dumps({"deployments": rows, "rollbacks": rollbacks, "runs": runs}, indent=2, default=str))
        return
    lines = [(row["started_at"], f"deployment  {row['endpoint_name']}  {row['from_version'] or '-'} -> "
              f"{row['to_version']}  {row['status']}" + (f"  ({row['reason']})" if row["reason"] else ""))
             for row in rows]
    lines += [(event["at"], f"rollback    {event['endpoint_name']}  {event['detail'].get('from_version') or '-'} -> "
               f"{event['detail'].get('to_version')}  {event['kind'].removeprefix('manual_')}") for event in rollbacks]
    if not endpoint_name:
        lines += [(run["started_at"], f"run         {run['run_id']}  {run['mode']}  {run['backend']}  "
                   f"{run['status']}" + (f"  exit {run['exit_code']}" if run["exit_code"] is not None else ""))
                  for run in runs]
    for at, text in sorted(lines, key=lambda item: item[0], reverse=True):
        click.echo(f"{at[:19]}  {text}")


@cli.command()
@click.option("--endpoint-name", help="Only this endpoint.", callback=_endpoint_name)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, endpoint_name: str | None, as_json: bool) -> None:
    """Each endpoint: URL, serving version, health, and whether its process is alive.

    Exit 1 when any endpoint listed is unhealthy or its process is dead, so it serves as a health
    check; 0 when all are healthy (or there are none).

    Example: python3 run_pipeline.py status
    """
    from pipeline.deployment import DeploymentPipeline
    from pipeline.locking import EndpointLock
    from pipeline.orchestrator import new_run_id, reconcile_if_idle

    backend, store, config = _backend(ctx)
    names = [endpoint_name] if endpoint_name else [row["name"] for row in store.endpoints()]
    deployer = DeploymentPipeline(config, store, backend, new_run_id())
    try:
        for name in names:  # a deployment interrupted by a crash is repaired first, so status tells the truth
            if store.endpoint(name):
                reconcile_if_idle(deployer, EndpointLock(store.directory / "locks", name, "status", 0))
        rows = [backend.describe(name) for name in names]
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    # Servers the store does not know (its state file was lost or replaced): found by their pid files.
    unrecorded = {name: servers for name, servers in backend.unrecorded_servers().items()
                  if not endpoint_name or name == endpoint_name}
    if as_json:
        click.echo(json.dumps({"endpoints": rows, "unrecorded_servers": unrecorded}, indent=2, default=str))
    else:
        if not rows and not unrecorded:
            click.echo("no endpoints")
        for row in rows:
            health = "healthy" if row.get("healthy") else "UNHEALTHY"
            alive = "" if row.get("process_alive", True) else \
                "  process DEAD: the next deployment or rollback restarts it"
            click.echo(f"{row['name']}  {row['url']}  {row['serving_version']}  {health}{alive}")
        for name, servers in unrecorded.items():
            click.echo(f"{name}  NOT IN THE STORE: {', '.join(servers)} still running; "
                       f"`run_pipeline.py cleanup --endpoint-name {name}` stops them")
    if unrecorded or any(not row.get("healthy") or not row.get("process_alive", True) for row in rows):
        sys.exit(int(ExitCode.FAILURE))


@cli.command()
@click.option("--endpoint-name", required=True, help="Endpoint to roll back.", callback=_endpoint_name)
@click.option("--to-version", help="Version to serve again (default: the one deployed before the current one).")
@click.pass_context
def rollback(ctx: click.Context, endpoint_name: str, to_version: str | None) -> None:
    """Serve an earlier version again, verified by health check and version header.

    Example: python3 run_pipeline.py rollback --endpoint-name iris-model
    """
    from pipeline.deployment import DeploymentPipeline
    from pipeline.locking import EndpointLock
    from pipeline.orchestrator import new_run_id

    backend, store, config = _backend(ctx)
    run_id = new_run_id()
    try:
        with EndpointLock(store.directory / "locks", endpoint_name, f"rollback {run_id}",
                          config.lock_timeout_seconds):
            deployer = DeploymentPipeline(config, store, backend, run_id)
            deployer.reconcile(endpoint_name)
            outcome = deployer.rollback(endpoint_name, to_version)
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
        return
    if outcome.status != "rolled_back":
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
    from pipeline.deployment import DeploymentPipeline
    from pipeline.locking import EndpointLock
    from pipeline.orchestrator import new_run_id

    backend, store, config = _backend(ctx)
    if everything:
        prefix = prefix or ""
    if not (endpoint_name or prefix is not None or prune):
        _fail(PipelineError("cleanup needs --endpoint-name NAME, --prefix PREFIX, --all or --prune"), False)
    if keep is not None and not prune:
        _fail(PipelineError("--keep goes with --prune: it is the number of versions --prune keeps"), False)
    if keep is not None and keep < 1:
        _fail(PipelineError(f"--keep {keep}: expected at least 1"), False)
    run_id = new_run_id()
    deployer = DeploymentPipeline(config, store, backend, run_id)
    def matches(name: str) -> bool:
        return bool(endpoint_name and name == endpoint_name) or (prefix is not None and name.startswith(prefix))

    names = [row["name"] for row in store.endpoints() if matches(row["name"])]
    unrecorded = [name for name in backend.unrecorded_servers() if matches(name)]
    try:
        if endpoint_name and endpoint_name not in unrecorded:
            store.require_endpoint(endpoint_name)
    except PipelineError as err:
        _fail(err, False)
    try:
        for name in names:
            with EndpointLock(store.directory / "locks", name, f"cleanup {run_id}", config.lock_timeout_seconds):
                deployer.reconcile(name)
                deployer.remove(name)
                click.echo(f"removed endpoint {name}")
        for name in unrecorded:
            with EndpointLock(store.directory / "locks", name, f"cleanup {run_id}", config.lock_timeout_seconds):
                backend.remove(name)
                click.echo(f"stopped the servers of {name}, which the store did not know")
        if prefix:  # SageMaker may hold resources this store never recorded (the seed's cleanup script)
            for kind, deleted in backend.remove_by_prefix(prefix).items():
                for name in deleted:
                    click.echo(f"deleted {kind} {name}")
        if prune:
            for name in sorted({row["endpoint_name"] for row in store.versions()}):
                with EndpointLock(store.directory / "locks", name, f"cleanup {run_id}",
                                  config.lock_timeout_seconds):
                    pruned = deployer.prune(name, keep or config.retain_versions)
                click.echo(f"{name}: pruned {len(pruned)} old version(s)")
    except PipelineError as err:
        _fail(err, bool(ctx.obj.get("verbose")))
    if not names and not unrecorded and not prune:
        click.echo("no endpoints matched")


# Options of a pipeline run that mean nothing to a subcommand: given before one, they would be dropped.
_RUN_ONLY = {"mode": "--mode", "training_job": "--training-job", "endpoint_name": "--endpoint-name",
             "deployment_only": "--deployment-only", "output_file": "--output-file", "dotenv_file": "--dotenv-file",
             "junit_xml": "--junit-xml", "metrics_file": "--metrics-file", "log_file": "--log-file",
             "log_format": "--log-format"}


def _subcommand_config(ctx: click.Context) -> PipelineConfig:
    """The config of a subcommand: the group's flags and --set count as for a run; run-only options are refused."""
    options = ctx.obj or {}
    try:
        for name in options.get("given", ()):
            if name in _RUN_ONLY:
                where = (f"; give it after the command: `{ctx.info_name} --endpoint-name NAME`"
                         if name == "endpoint_name" else "")
                raise PipelineError(f"{_RUN_ONLY[name]} is an option of a pipeline run, not of `{ctx.info_name}`"
                                    + where)
        config, _ = _build_config(options)
    except PipelineError as err:
        _fail(err, bool(options.get("verbose")))
        raise  # unreachable: _fail exits
    return config


def _backend(ctx: click.Context):
    from pipeline.backends import load_backend

    config = _subcommand_config(ctx)
    store = _store(ctx, config)
    try:
        return load_backend(config.backend_name, config, store), store, config
    except PipelineError as err:
        _fail(err, bool((ctx.obj or {}).get("verbose")))
        raise


def _store(ctx: click.Context, config: PipelineConfig | None = None):
    from pipeline.store import DeploymentStore

    return DeploymentStore((config or _subcommand_config(ctx)).store_dir)


def main() -> None:
    """Run the CLI, then leave without tearing down the interpreter.

    Module teardown after scipy, scikit-learn and pandas costs 0.3-0.4 s and does nothing
    useful here: logs and output are flushed first, and every file was written atomically.
    """
    try:
        cli(prog_name="run_pipeline.py")  # pylint: disable=no-value-for-parameter
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
