"""``reproduce JOB``: retrain a training job from its manifest and say whether the same model comes out.

A job's manifest holds the resolved config, the fingerprint of its data and the library versions. The data is
read again and checked against the fingerprint (what changed is said: rows added or removed, columns, order);
the versions are compared; the model is retrained in a scratch directory with the recorded config and seed --
by ``TrainingPipeline`` for a job trained here, by the container's ``train.py`` run as SageMaker's script mode
runs it for a SageMaker job -- and compared with the recorded one:

- ``identical``: the same model file (sha256);
- ``equivalent``: other bytes, but the same predictions on every held-out row and the same metrics;
- ``different``: the metric and prediction differences, and the likely cause (data, versions, a hyperparameter
  given on the command line, or nondeterminism when none of those changed);
- ``cannot``: the data is missing, or changed without ``allow_data_change``.

Every verdict is recorded in the audit trail (``job_reproduced``). The checks are in ``reproduce_checks``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig
from pipeline.container import train as recipe
from pipeline.container.verified_files import file_sha256
from pipeline.errors import ExitCode, PipelineError
from pipeline.state.store import DeploymentStore
from pipeline.training import job_files
from pipeline.training.datasets import IRIS, Dataset
from pipeline.training.fitting import TrainingPipeline
from pipeline.training.jobs import TrainingJob, library_versions
from pipeline.training.reproduce_checks import (
    DataCheck,
    ModelComparison,
    check_data,
    compare_models,
    version_differences,
)

log = logging.getLogger(__name__)

IDENTICAL, EQUIVALENT, DIFFERENT, CANNOT = "identical", "equivalent", "different", "cannot"
EXIT_CODES = {IDENTICAL: ExitCode.SUCCESS, EQUIVALENT: ExitCode.SUCCESS, DIFFERENT: ExitCode.FAILURE,
              CANNOT: ExitCode.USAGE}
# The keys that decide what training does; every other key of the recorded config is left at its default.
TRAINING_KEYS = ("dataset", "label_column", "allow_label_leakage", "model_type", "hyperparameters", "test_size",
                 "random_seed", "cv_folds", "model_name_prefix")
CONTAINER_DIR = Path(recipe.__file__).resolve().parent


@dataclass
class ReproduceReport:
    training_job: str
    verdict: str
    reason: str
    data: DataCheck
    versions: list[dict[str, str | None]] = field(default_factory=list)  # package, recorded, now
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # given on the command line
    retrained: str = ""  # how and where
    comparison: ModelComparison | None = None
    causes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> ExitCode:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": int(self.exit_code)}


def recorded_config(job: TrainingJob, dataset: str, hyperparameters: dict[str, Any]) -> PipelineConfig:
    """The training keys of the job's resolved config, the data where it is now, and hyperparameters given."""
    recorded = job.manifest.get("config") or {}
    missing = [key for key in ("model_type", "random_seed", "test_size", "cv_folds") if key not in recorded]
    if missing:
        raise PipelineError(f"training job {job.name!r}: its manifest records no {', '.join(missing)}: it cannot "
                            f"be retrained as it was")
    values = {key: recorded[key] for key in TRAINING_KEYS if key in recorded}
    values["dataset"] = dataset
    values["label_column"] = job.label_column
    values["hyperparameters"] = {**(recorded.get("hyperparameters") or {}), **hyperparameters}
    try:
        config = PipelineConfig.model_validate(values)
    except ValueError as err:
        raise PipelineError(f"training job {job.name!r}: its recorded config is not valid here: "
                            f"{str(err).splitlines()[0]}") from None
    try:  # a hyperparameter given by name that the estimator does not have is refused before any work
        recipe.build_estimator(config.model_type, dict(config.hyperparameters), config.random_seed)
    except recipe.TrainingInputError as err:
        raise PipelineError(f"--hyperparameter: {err}") from None
    return config


def find_data(job: TrainingJob, store: DeploymentStore, given: str | None) -> str | None:
    """The data to retrain on: ``given``, else the file the manifest names (as it was given: from here, or from
    the directory the store is in); None when it is nowhere."""
    spec = given or str(job.manifest.get("dataset") or IRIS)
    if spec == IRIS and not given:
        return IRIS
    path = Path(spec)
    for candidate in ([path] if given or path.is_absolute() else [path, store.directory.parent / path]):
        if candidate.is_file():
            return str(candidate)
    return None


class _GivenData(TrainingPipeline):
    """The recorded training steps on data already read (and checked against the fingerprint)."""

    def __init__(self, config: PipelineConfig, dataset: Dataset) -> None:
        super().__init__(config)
        self.dataset = dataset

    def load_data(self) -> Dataset:
        return self.dataset


def reproduce(store: DeploymentStore, name: str, *, data: str | None = None, allow_data_change: bool = False,
              hyperparameters: dict[str, Any] | None = None, run_id: str | None = None) -> ReproduceReport:
    """Retrain job ``name`` and compare; recorded in the audit trail whatever the verdict."""
    started = time.monotonic()
    row = job_files.recorded(store, name, "there is nothing to compare a retrained model with")
    job = job_files.load(store, row)  # fetched and verified when another machine trained it
    overrides = dict(hyperparameters or {})
    versions = version_differences(job.manifest, library_versions())
    spec = find_data(job, store, data)
    if spec is None:
        where = data or job.manifest.get("dataset")
        report = ReproduceReport(name, CANNOT, f"the data training job {name} was trained on, {where!r}, is missing "
                                 f"(give its path with --data)", DataCheck(str(where), False, job.data_fingerprint,
                                                                           None, ["missing"]), versions, overrides)
        return _recorded(store, report, run_id, started)
    config = recorded_config(job, spec, overrides)
    dataset, check = check_data(job, spec, config)
    if dataset is None or (not check.same and not allow_data_change):
        reason = (f"the data of training job {name}, {check.source!r}, {'; '.join(check.changes)}" if dataset is None
                  else f"the data changed since training job {name}: {check.source!r} {'; '.join(check.changes)}; "
                       f"--allow-data-change retrains on it anyway")
        return _recorded(store, ReproduceReport(name, CANNOT, reason, check, versions, overrides), run_id, started)
    with tempfile.TemporaryDirectory(prefix="mlops-reproduce-") as scratch:
        if job.manifest.get("backend") == "sagemaker":
            model_dir, metrics, how = _retrain_as_sagemaker(job, config, dataset, Path(scratch))
        else:
            retrained = _GivenData(config, dataset).run(Path(scratch) / "jobs")
            model_dir, metrics = retrained.model_dir, retrained.metrics
            how = "retrained here by the training pipeline"
        how += (f" with the recorded config ({config.model_type}, seed {config.random_seed}, test_size "
                f"{config.test_size:g}, cv_folds {config.cv_folds}"
                + (f", hyperparameters {json.dumps(dict(config.hyperparameters), sort_keys=True)}"
                   if config.hyperparameters else "") + ")")
        comparison = compare_models(job, model_dir, metrics)
    report = ReproduceReport(name, "", "", check, versions, overrides, how, comparison)
    _judge(report)
    return _recorded(store, report, run_id, started)


def _judge(report: ReproduceReport) -> None:
    comparison = report.comparison
    assert comparison is not None
    if comparison.same_model:
        report.verdict, report.reason = IDENTICAL, "the same model file, byte for byte (sha256)"
        return
    if comparison.same_predictions and not comparison.metric_differences:
        report.verdict = EQUIVALENT
        report.reason = (f"other bytes, the same predictions on all {comparison.heldout_rows:,} held-out rows and "
                         f"the same metrics")
        return
    report.verdict = DIFFERENT
    shown = [f"{item['metric']} {item['recorded']:.6g} -> {item['reproduced']:.6g}"
             for item in comparison.metric_differences[:4]]
    report.reason = (f"{comparison.prediction_differences:,} of {comparison.heldout_rows:,} held-out predictions "
                     f"differ" + (f"; {', '.join(shown)}" if shown else ""))
    if not report.data.same:
        report.causes.append(f"data: {'; '.join(report.data.changes)}")
    if report.hyperparameters:
        report.causes.append("hyperparameters given here: " + ", ".join(
            f"{key}={json.dumps(value)}" for key, value in sorted(report.hyperparameters.items())))
    if report.versions:
        report.causes.append("versions: " + ", ".join(f"{item['package']} {item['recorded']} -> {item['now']}"
                                                      for item in report.versions))
    if not report.causes:
        report.causes.append("nondeterminism: the same data, config, seed and versions gave another model (an "
                             "estimator whose randomness the seed does not fix, or custom training steps the "
                             "manifest does not record)")


def _recorded(store: DeploymentStore, report: ReproduceReport, run_id: str | None, started: float) -> ReproduceReport:
    report.seconds = round(time.monotonic() - started, 3)
    comparison = report.comparison
    store.record_event("job_reproduced", run_id=run_id, training_job=report.training_job, verdict=report.verdict,
                       reason=report.reason, data_sha256=report.data.found.get("sha256") if report.data.found else None,
                       data_changed=not report.data.same, versions=report.versions,
                       hyperparameters=report.hyperparameters,
                       recorded_model_sha256=comparison.recorded_sha256 if comparison else None,
                       reproduced_model_sha256=comparison.reproduced_sha256 if comparison else None,
                       causes=report.causes)
    return report


def _retrain_as_sagemaker(job: TrainingJob, config: PipelineConfig, dataset: Dataset,
                          scratch: Path) -> tuple[Path, dict[str, Any], str]:
    """Run the container's ``train.py`` as SageMaker's script mode does: the data as the ``train`` channel's CSV
    (written as the backend uploads it), the hyperparameters as ``--name value`` arguments, the source files in a
    directory of their own, importable as top-level modules, without the ``pipeline`` package."""
    code, channel, model_dir, output = (scratch / "code", scratch / "train", scratch / "model", scratch / "output")
    code.mkdir()
    for path in CONTAINER_DIR.glob("*.py"):
        if path.name != "__init__.py":
            shutil.copyfile(path, code / path.name)
    channel.mkdir()
    dataset.frame.to_csv(channel / "train.csv", index=False)
    hyperparameters = {"model_type": config.model_type, "label_column": dataset.label_column,
                       "hyperparameters": json.dumps(dict(config.hyperparameters), sort_keys=True),
                       "test_size": config.test_size, "random_seed": config.random_seed, "cv_folds": config.cv_folds}
    argv = [sys.executable, "train.py"]
    for key in sorted(hyperparameters):
        argv += [f"--{key}", str(hyperparameters[key])]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "SM_MODEL_DIR": str(model_dir), "SM_CHANNEL_TRAIN": str(channel), "SM_OUTPUT_DATA_DIR": str(output)}
    log.info("retraining %s with the container's train.py, as SageMaker's script mode runs it", job.name)
    result = subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise PipelineError(f"retraining {job.name} with train.py failed: {lines[-1] if lines else 'no output'}",
                            ExitCode.FAILURE)
    metrics = json.loads((output / recipe.METRICS_FILENAME).read_text())
    image = job.manifest.get("sklearn_framework_version")
    how = (f"retrained here with the same container code: pipeline/container/train.py (sha256 "
           f"{file_sha256(CONTAINER_DIR / 'train.py')[:12]}...) run as SageMaker's script mode runs it"
           + (f" (the job ran in SageMaker's scikit-learn {image} image)" if image else ""))
    return model_dir, metrics, how
