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
from datetime import datetime
from typing import Any

import click

from pipeline.backends import BACKENDS
from pipeline.config import PipelineConfig, load_config
from pipeline.errors import ExitCode, PipelineError
from pipeline.logs import configure_logging
from pipeline.orchestrator import MODES, write_results

EXIT_CODES_HELP = """
\b
Exit codes:
  0  success: everything asked for was done and verified
  1  pipeline failure: tests failed, a deployment was rolled back, an AWS call failed
  2  usage, config or input error: nothing was changed
  3  the accuracy gate held or rejected the model: nothing was deployed
"""


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise PipelineError(f"--set {item!r}: expected KEY=VALUE, e.g. --set cv_folds=3")
        try:
            settings[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key.strip()] = raw  # a bare string
    return settings


def _fail(err: PipelineError, verbose: bool) -> None:
    if verbose:
        traceback.print_exc()
    click.echo(f"Error: {err.message}", err=True)
    if err.hint:
        click.echo(err.hint, err=True)
    elif not verbose:
        click.echo("Run with --verbose for the traceback.", err=True)
    sys.exit(int(err.exit_code))


def _build_config(config_file: str | None, flags: dict[str, Any], settings: tuple[str, ...]):
    extra = _parse_set(settings)
    unknown = [key for key in extra if key not in PipelineConfig.model_fields]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(PipelineConfig.model_fields), n=1)
        raise PipelineError(f"--set: unknown key {unknown[0]!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    return load_config(config_file, os.environ, {**extra, **flags})


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
              help="Results JSON (default /tmp/mlops_pipeline_results_<timestamp>.json).")
@click.option("--mode", type=click.Choice(MODES), default=None, help="Run one phase only (default: full).")
@click.option("--training-job", help="Training job to deploy (with --mode deployment).")
@click.option("--endpoint-name", help="Endpoint to deploy to, test or clean up (default: endpoint_prefix).")
@click.option("--deployment-only", is_flag=True, help="Same as --mode deployment.")
@click.option("--disable-auto-deploy", is_flag=True, help="Train and judge, but do not deploy.")
@click.option("--backend", type=click.Choice(list(BACKENDS)), help="Where to deploy (default: sagemaker with "
              "--role-arn, else local).")
@click.option("--dataset", help="'iris' or a CSV file with a header row.")
@click.option("--label-column", help="Label column of a CSV dataset (default 'target').")
@click.option("--model-type", type=click.Choice(["logistic_regression", "random_forest", "gradient_boosting"]))
@click.option("--random-seed", type=int, help="Seed for the split, CV and the model.")
@click.option("--store-dir", type=click.Path(file_okay=False), help="State directory (default .mlops).")
@click.option("--endpoint-port", type=int, help="Port of a new local endpoint (default: a free one).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log file (default /tmp/mlops_pipeline_<ts>.log).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Set any config key (JSON value).")
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
    if ctx.invoked_subcommand is not None:
        return
    verbose = options["verbose"]
    mode = "deployment" if options["deployment_only"] else (options["mode"] or "full")
    try:
        flags = {
            "role_arn": options["role_arn"], "accuracy_threshold": options["accuracy_threshold"],
            "minimum_accuracy": options["minimum_accuracy"], "aws_region": options["region"],
            "instance_type": options["instance_type"], "backend": options["backend"],
            "auto_deploy_enabled": False if options["disable_auto_deploy"] else None,
            "dataset": options["dataset"], "label_column": options["label_column"],
            "model_type": options["model_type"], "random_seed": options["random_seed"],
            "store_dir": options["store_dir"], "endpoint_port": options["endpoint_port"],
            "log_file": options["log_file"], "log_level": "DEBUG" if verbose else None,
        }
        config, sources = _build_config(options["config_file"], flags, options["settings"])
        results, exit_code = run_pipeline(config, sources, mode=mode, endpoint_name=options["endpoint_name"],
                                          training_job=options["training_job"], output_file=options["output_file"])
    except PipelineError as err:
        _fail(err, verbose)
        return
    sys.exit(exit_code)


def run_pipeline(config: PipelineConfig, sources: dict[str, str], *, mode: str, endpoint_name: str | None,
                 training_job: str | None, output_file: str | None) -> tuple[dict[str, Any], int]:
    """Run one pipeline invocation end to end: log, orchestrate, write results, print the summary."""
    from pipeline.orchestrator import Orchestrator

    log_file = configure_logging(config.log_level, config.log_file)
    orchestrator = Orchestrator(config, sources, mode=mode, endpoint_name=endpoint_name, training_job=training_job,
                                log_file=str(log_file))
    results = orchestrator.run()
    path = output_file or f"/tmp/mlops_pipeline_results_{datetime.now():%Y%m%d_%H%M%S}.json"
    results["results_file"] = str(path)
    write_results(results, path)
    print_summary(results)
    logging.getLogger("pipeline").debug("results written to %s", path)
    return results, results["exit_code"]


def _tick(value: Any) -> str:
    return "✅ Yes" if value else "❌ No"


def print_summary(results: dict[str, Any]) -> None:
    summary = results["summary"]
    status = results["pipeline_status"]
    line = "=" * 80
    title = "🎉 ENTERPRISE MLOPS PIPELINE COMPLETED" if status == "success" else "⚠️ ENTERPRISE MLOPS PIPELINE FINISHED"
    accuracy = summary.get("training_accuracy")
    rows = [f"Status: {status.upper()}", f"Duration: {results['total_duration_seconds']:.2f} seconds"]
    if accuracy is not None:
        rows.append(f"Training Accuracy: {accuracy:.2%}")
    if results.get("gate"):
        rows.append(f"Gate: {results['gate']['decision']} ({results['gate']['reason']})")
    rows.append(f"Deployment Occurred: {_tick(summary.get('deployment_occurred'))}")
    if summary.get("endpoint_name"):
        rows.append(f"Endpoint: {summary['endpoint_name']} ({summary.get('endpoint_url')}, "
                    f"version {summary.get('endpoint_version')})")
    if summary.get("testing_passed") is not None:
        rows.append(f"Testing: {'✅ Passed' if summary['testing_passed'] else '❌ Failed'}")
    if results.get("rollback"):
        rows.append(f"Rollback: {results['rollback']['final_state']} ({results['rollback']['reason']})")
    if results.get("error"):
        rows.append(f"Error: {results['error']['message']}")
    if results.get("resume_command"):
        rows.append(f"To resume: {results['resume_command']}")
    click.echo("\n".join(["", line, title, line, *rows, line, "",
                          f"📄 Detailed results saved to: {results.get('results_file')}"]))


@cli.command()
@click.option("--endpoint-name", help="Only this endpoint's history.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def history(ctx: click.Context, endpoint_name: str | None, as_json: bool) -> None:
    """Deployments and rollbacks, newest first.

    Example: python3 run_pipeline.py history --endpoint-name iris-model
    """
    store = _store(ctx)
    rows = store.deployments(endpoint_name)
    if as_json:
        click.echo(json.dumps({"deployments": rows, "runs": store.runs()}, indent=2, default=str))
        return
    for row in rows:
        click.echo(f"{row['started_at'][:19]}  {row['endpoint_name']}  {row['from_version'] or '-'} -> "
                   f"{row['to_version']}  {row['status']}" + (f"  ({row['reason']})" if row["reason"] else ""))


def _store(ctx: click.Context):
    from pipeline.store import DeploymentStore

    options = ctx.obj or {}
    try:
        config, _ = _build_config(options.get("config_file"), {"store_dir": options.get("store_dir")},
                                  options.get("settings", ()))
    except PipelineError as err:
        _fail(err, bool(options.get("verbose")))
        raise  # unreachable: _fail exits
    return DeploymentStore(config.store_dir)


def main() -> None:
    cli(prog_name="run_pipeline.py")  # pylint: disable=no-value-for-parameter


if __name__ == "__main__":
    main()
