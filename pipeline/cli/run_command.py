"""The command line: a thin shell over the library (``pipeline.operations``, ``pipeline.run``).

This module is the pipeline run itself (the group's options) and what every command shares; the
subcommands are in ``endpoint_commands`` (history, status, rollback, cleanup) and ``record_commands``
(jobs, runs, monitor). Every command turns an error the user can fix into one ``Error: ...`` line and a
documented exit code; ``--verbose`` adds the traceback.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from pipeline import interrupts
from pipeline.config import (
    BACKEND_NAMES,
    MODEL_TYPES,
    TRAFFIC_ROUTINGS,
    PipelineConfig,
    load_config,
    validate_endpoint_name,
)
from pipeline.errors import PipelineError
from pipeline.logs import LOG_FORMATS, default_results_file
from pipeline.operations import Operations
from pipeline.outcomes import Mode
from pipeline.progress import on_terminal
from pipeline.run.invocation import check_output_paths, output_label, resolve_mode
from pipeline.run.launch import default_outputs, run_pipeline

if TYPE_CHECKING:
    from pipeline.reporting.results import Results

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
        "approval_required": True if options.get("approval_required") else None,
        "dataset": options.get("dataset"), "label_column": options.get("label_column"),
        "model_type": options.get("model_type"), "random_seed": options.get("random_seed"),
        "store_dir": options.get("store_dir"), "store_url": options.get("store_url"),
        "artifact_url": options.get("artifact_url"),
        "endpoint_port": options.get("endpoint_port"),
        "log_file": options.get("log_file"), "log_level": "DEBUG" if options.get("verbose") else None,
        "traffic_routing": options.get("traffic_routing"), "replay_requests": options.get("replay_requests"),
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
@click.option("--approval-required", is_flag=True,
              help="Deploy no model nobody approved (`approve JOB --reason TEXT`); environment APPROVAL_REQUIRED.")
@click.option("--backend", type=click.Choice(BACKEND_NAMES), help="Where to deploy (default: sagemaker with "
              "--role-arn, else local).")
@click.option("--dataset", help="'iris' or a CSV file with a header row.")
@click.option("--label-column", help="Label column of a CSV dataset (default 'target').")
@click.option("--model-type", type=click.Choice(MODEL_TYPES))
@click.option("--random-seed", type=int, help="Seed for the split, CV and the model.")
@click.option("--store-dir", type=click.Path(file_okay=False), help="State directory (default .mlops).")
@click.option("--store-url", metavar="URL", help="A store the team shares: postgresql://user@host:port/dbname "
              "(default: SQLite in --store-dir; environment MLOPS_STORE_URL).")
@click.option("--artifact-url", metavar="URL", help="Where job files and run results go: s3://bucket/prefix or a "
              "directory (default: --store-dir; with SageMaker and --store-url, s3://<s3_bucket>/mlops-pipeline; "
              "environment MLOPS_ARTIFACT_URL).")
@click.option("--endpoint-port", type=int, help="Port of a new local endpoint (default: a free one).")
@click.option("--traffic-routing", type=click.Choice(TRAFFIC_ROUTINGS, case_sensitive=False),
              help="How a tested version takes the endpoint's traffic (default ALL_AT_ONCE; CANARY, LINEAR and "
                   "SHADOW bake it on live requests first).")
@click.option("--replay-requests", type=int,
              help="Captured client requests replayed against a candidate before the switch; each the serving "
                   "version answered 2xx must be 2xx again (default 200; 0: none).")
@click.option("--allow-contract-change", is_flag=True,
              help="Deploy even though the candidate's inputs or labels differ from the serving version's "
                   "(recorded in the audit trail and the results).")
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
                            config=config, sources=sources, allow_contract_change=options["allow_contract_change"])
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
        with interrupts.handled():  # from the run's start to its exit code: see pipeline.interrupts
            results = run_pipeline(config, sources, outputs, mode=mode, endpoint_name=options["endpoint_name"],
                                   training_job=options["training_job"],
                                   allow_contract_change=options["allow_contract_change"])
            print_summary(results, store_dir=config.store_dir)
    except PipelineError as err:
        _fail(err, verbose)
        return
    sys.exit(results.exit_code)


def print_summary(results: Results, emoji: bool | None = None, store_dir: str | None = None) -> None:
    """The console summary (``pipeline.reporting.console_summary``): emoji and colour only at a terminal."""
    from pipeline.reporting.console_summary import render_summary

    click.echo(render_summary(results, on_terminal(sys.stdout) if emoji is None else emoji, store_dir))


# Options of a pipeline run that mean nothing to a subcommand: given before one, they would be dropped.
_RUN_ONLY = {"mode": "--mode", "training_job": "--training-job", "endpoint_name": "--endpoint-name",
             "deployment_only": "--deployment-only", "output_file": "--output-file", "dotenv_file": "--dotenv-file",
             "junit_xml": "--junit-xml", "metrics_file": "--metrics-file", "report_html": "--report-html",
             "log_file": "--log-file", "log_format": "--log-format",
             "allow_contract_change": "--allow-contract-change"}


def _refuse_run_only(given: Any, command: str) -> None:
    own = {param.name: param for param in getattr(cli.commands.get(command), "params", ())}
    for name in given:
        if name in _RUN_ONLY:
            where = ""
            if name in own:  # the command has an option of that name: say where it goes
                metavar = own[name].metavar or ("NAME" if name == "endpoint_name" else name.upper())
                where = f"; give it after the command: `{command} {_RUN_ONLY[name]} {metavar}`"
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
    interrupts.install_for_process()
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

