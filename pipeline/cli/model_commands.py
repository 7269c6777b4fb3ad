"""Commands on a trained model: ``predict`` (score a file) and ``reproduce`` (rebuild a job's model and compare)."""
from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.run_command import _endpoint_name, _fail, _operations, cli
from pipeline.config import BACKEND_NAMES
from pipeline.errors import ExitCode, PipelineError
from pipeline.progress import configure as configure_progress
from pipeline.progress import on_terminal
from pipeline.scoring.request import MAX_CONCURRENCY, ON_BAD_ROW, PredictRequest

if TYPE_CHECKING:
    from pipeline.scoring.predict import PredictReport
    from pipeline.training.reproduce import ReproduceReport


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines to whatever ``sys.stderr`` is when they are written (a test's, a redirected one)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _console(ctx: click.Context) -> None:
    """Progress on stderr: a live line at a terminal, else a log line every few seconds (``pipeline.progress``)."""
    logger = logging.getLogger("pipeline")
    for handler in list(logger.handlers):  # the command's own lines, as configure_logging does for a run
        logger.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if (ctx.obj or {}).get("verbose") else logging.INFO)
    configure_progress(live=on_terminal())


def _verbose(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("verbose"))


@cli.command()
@click.option("--input", "input_path", required=True, metavar="PATH",
              help="CSV with a header row; the model's columns are found by name, others ignored (s3://... with "
                   "--backend sagemaker).")
@click.option("--output", "output_path", required=True, metavar="PATH",
              help="The predictions, CSV with a header row: written whole or not at all.")
@click.option("--training-job", metavar="JOB", help="Score with this job's model, in this process (its sha256 "
              "checked first).")
@click.option("--endpoint-name", callback=_endpoint_name, help="Score through this live endpoint (local or "
              "SageMaker), in batches under max_payload_mb.")
@click.option("--backend", type=click.Choice(BACKEND_NAMES), help="sagemaker: a Batch Transform job of "
              "--training-job's model reads --input and writes --output on S3 (default: local, this process).")
@click.option("--id-column", metavar="NAME", help="Carry this column through as the first output column (default: "
              "the row number, in a column 'row').")
@click.option("--probabilities", is_flag=True, help="Add a probability_<class> column per class.")
@click.option("--on-bad-row", type=click.Choice(ON_BAD_ROW), default="fail", show_default=True,
              help="A row the model cannot score (not a number, empty, a field too many): stop with its row "
                   "number and write nothing (exit 2), or leave it out and report it.")
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=4, show_default=True,
              help="Requests in flight to an endpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_context
def predict(ctx: click.Context, input_path: str, output_path: str, training_job: str | None,
            endpoint_name: str | None, backend: str | None, id_column: str | None, probabilities: bool,
            on_bad_row: str, concurrency: int, as_json: bool) -> None:
    """Score a CSV file: with a training job's model in this process, or through a live endpoint. Output: the id
    column (or the row number), `prediction`, and with --probabilities one `probability_<class>` column per class.
    Exit 0: every row scored (or skipped, with --on-bad-row skip); 1: the endpoint or AWS failed; 2: a usage error,
    a missing column, or a row the model cannot score. Nothing is written unless every row is done.

    \b
    Examples:
      python3 run_pipeline.py predict --training-job JOB --input data.csv --output predictions.csv
      python3 run_pipeline.py predict --endpoint-name iris-model --input data.csv --output out.csv --probabilities
      python3 run_pipeline.py predict --training-job JOB --backend sagemaker --input s3://b/in.csv --output s3://b/out.csv
    """
    if backend is None and "backend" in (ctx.obj or {}).get("given", ()):
        backend = (ctx.obj or {}).get("backend")  # `--backend sagemaker predict ...`: the group's flag means it too
    request = PredictRequest(input_path, output_path, training_job, endpoint_name, backend or "local", id_column,
                             probabilities, on_bad_row, concurrency)
    operations = _operations(ctx)
    _console(ctx)
    try:
        report = operations.predict(request)
    except PipelineError as err:
        _fail(err, _verbose(ctx))
        return
    except KeyboardInterrupt:
        click.echo("Error: stopped by Ctrl-C or SIGTERM; nothing was written", err=True)
        sys.exit(int(ExitCode.FAILURE))
    _print_predict(report, as_json)


def _print_predict(report: PredictReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        versions = f", version {', '.join(report.versions)}" if len(report.versions) == 1 else ""
        click.echo(f"wrote {report.rows_written:,} predictions of {report.rows_read:,} rows to {report.output} "
                   f"({report.scored_by}{versions}; {report.seconds:.1f}s)")
    if report.skipped:
        shown = ", ".join(f"row {row} ({reason})" for row, reason in report.skipped_shown)
        more = f" and {report.skipped - len(report.skipped_shown):,} more" \
            if report.skipped > len(report.skipped_shown) else ""
        click.echo(f"Warning: left out {report.skipped:,} row(s) the model cannot score: {shown}{more}", err=True)
    if len(report.versions) > 1:
        click.echo(f"Warning: the endpoint answered with {len(report.versions)} versions "
                   f"({', '.join(report.versions)}): it was deployed to during the run", err=True)


def _hyperparameters(items: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise PipelineError(f"--hyperparameter {item!r}: expected NAME=VALUE, e.g. --hyperparameter n_jobs=2")
        try:
            values[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[name.strip()] = raw
    return values


@cli.command()
@click.argument("training_job")
@click.option("--data", metavar="PATH", help="The data, when it is no longer where the manifest says (checked "
              "against the recorded sha256 all the same).")
@click.option("--allow-data-change", is_flag=True, help="Retrain on data whose sha256 differs from training's; "
              "the verdict says what that did.")
@click.option("--hyperparameter", "hyperparameters", multiple=True, metavar="NAME=VALUE",
              help="Retrain with this hyperparameter changed (a JSON value), e.g. n_jobs=2: a setting that should "
                   "not change the model.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def reproduce(ctx: click.Context, training_job: str, data: str | None, allow_data_change: bool,
              hyperparameters: tuple[str, ...], as_json: bool) -> None:
    """Prove a training job's model can be rebuilt: check its data (same sha256, or what changed) and the library
    versions, retrain with the recorded config and seed in a scratch directory (a SageMaker job with the same
    container code, here), and compare. Recorded in the audit trail. Exit 0: identical (the same model file) or
    equivalent (the same predictions on the held-out rows and the same metrics); 1: different (what differs, and
    the likely cause); 2: cannot (the data is missing, or changed without --allow-data-change).

    \b
    Example:
      python3 run_pipeline.py reproduce iris-classifier-20250823-120000
    """
    from pipeline.training.reproduce import CANNOT  # scikit-learn: loaded for this command alone

    operations = _operations(ctx)
    _console(ctx)
    try:
        report = operations.reproduce(training_job, data=data, allow_data_change=allow_data_change,
                                      hyperparameters=_hyperparameters(hyperparameters))
    except PipelineError as err:
        _fail(err, _verbose(ctx))
        return
    except KeyboardInterrupt:
        click.echo("Error: stopped by Ctrl-C or SIGTERM; nothing was recorded", err=True)
        sys.exit(int(ExitCode.FAILURE))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif report.verdict == CANNOT:
        _fail(PipelineError(report.reason, ExitCode.USAGE), _verbose(ctx))
    else:
        _print_reproduce(report)
    sys.exit(int(report.exit_code))


def _print_reproduce(report: ReproduceReport) -> None:
    click.echo(f"training job {report.training_job}: {report.verdict}: {report.reason}")
    data = report.data
    found = data.found or {}
    shape = f"{found.get('rows', '?'):,} rows, {found.get('columns', '?')} columns"
    click.echo(f"  data: {data.source}: " + (f"the same (sha256 {str(found.get('sha256'))[:12]}..., {shape})"
                                             if data.same else "; ".join(data.changes)))
    click.echo("  versions: " + ("the same as at training" if not report.versions else ", ".join(
        f"{item['package']} {item['recorded']} -> {item['now']}" for item in report.versions)))
    if report.hyperparameters:
        click.echo("  hyperparameters given here: " + ", ".join(
            f"{name}={json.dumps(value)}" for name, value in sorted(report.hyperparameters.items())))
    click.echo(f"  {report.retrained}")
    comparison = report.comparison
    if comparison is None:
        return
    click.echo(f"  model: sha256 {comparison.recorded_sha256[:12]}... recorded, {comparison.reproduced_sha256[:12]}... "
               f"reproduced")
    if comparison.first_differences:
        click.echo("  predictions: " + "; ".join(f"held-out row {item['row']}: {item['recorded']!r} recorded, "
                                                 f"{item['reproduced']!r} reproduced"
                                                 for item in comparison.first_differences))
    for item in comparison.metric_differences:
        click.echo(f"  {item['metric']}: {item['recorded']!r} recorded, {item['reproduced']!r} reproduced")
    if report.causes:
        click.echo("  likely cause: " + "; ".join(report.causes))
