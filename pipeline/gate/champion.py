"""The champion: the version a candidate would replace, scored on the candidate's evaluation rows.

Before the gate decides, the model the target endpoint serves is loaded exactly as a deployment
loads it (its sha256 checked against the store first) and predicts the candidate's held-out rows.
Rows the champion was trained on are dropped (their hashes are stored with every training job),
so the comparison is paired, on rows neither model saw, and ``pipeline.gate.comparison`` turns it into
numbers and a verdict. Anything that makes a fair comparison impossible (nothing serves, the
champion cannot be loaded, it reads other features) makes it ``skipped``, with the reason; the
absolute gate then decides alone.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as sklearn_metrics

from pipeline.backends.base import Backend
from pipeline.config import PipelineConfig
from pipeline.container import inference
from pipeline.errors import PipelineError
from pipeline.gate.comparison import PAIRED_METRICS, compare_point_values, compare_with_champion, skipped_comparison
from pipeline.gate.decision import ChampionComparison
from pipeline.state.store import DeploymentStore
from pipeline.training import job_files
from pipeline.training.jobs import TrainingJob
from pipeline.training.labels import label_of
from pipeline.training.row_hashes import labelled_row_hashes, rows_not_trained_on

log = logging.getLogger(__name__)

# Gate metrics that are not decided row by row but can be computed on the shared rows for both models.
_ROW_METRICS = {
    "precision_weighted": lambda y, p: sklearn_metrics.precision_score(y, p, average="weighted", zero_division=0),
    "f1_weighted": lambda y, p: sklearn_metrics.f1_score(y, p, average="weighted", zero_division=0),
    "balanced_accuracy": sklearn_metrics.balanced_accuracy_score,
}


class Unfair(Exception):
    """The champion cannot be compared fairly with this candidate; the message says why."""


def compare_with_serving_version(config: PipelineConfig, store: DeploymentStore, backend: Backend,
                                 endpoint_name: str, candidate: TrainingJob) -> tuple[ChampionComparison, str | None]:
    """The candidate against what ``endpoint_name`` serves now; also a warning when a champion exists
    but could not be compared (the reviewer should know the comparison did not protect this decision)."""
    settings: dict[str, Any] = {"metric": config.gate_metric, "policy": config.champion_policy,
                                "margin": config.champion_margin, "alpha": config.champion_alpha}
    if config.champion_policy == "off":
        return skipped_comparison("champion_policy is off", **settings), None
    (store.directory / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.directory / "tmp", prefix="champion-") as scratch:
        try:
            serving = backend.serving_model(endpoint_name, Path(scratch))
        except PipelineError as err:
            warning = f"the version serving {endpoint_name} could not be read ({err.message}): not compared"
            return skipped_comparison(warning, **settings), warning
        if serving is None:
            return skipped_comparison("no serving version", **settings), None
        version, model_dir = serving
        try:
            return _compare(config, store, version, model_dir, candidate, settings), None
        except Unfair as err:
            warning = f"champion {version} not compared: {err}"
            return skipped_comparison(str(err), version=version, **settings), warning


def _compare(config: PipelineConfig, store: DeploymentStore, version: str, model_dir: Path, candidate: TrainingJob,
             settings: dict[str, Any]) -> ChampionComparison:
    champion_job, champion_model = _load_champion(store, version, model_dir)
    features, labels = candidate.heldout()
    champion_features = list(champion_job.heldout()[0].columns)
    if champion_features != list(features.columns):
        raise Unfair(f"its features differ from the candidate's (champion: {len(champion_features)} "
                     f"[{', '.join(champion_features[:8])}], candidate: {features.shape[1]} "
                     f"[{', '.join(map(str, features.columns[:8]))}])")
    candidate_model = inference.model_fn(str(candidate.model_dir), candidate.model_sha256)
    champion_classes = [label_of(label) for label in getattr(champion_model, "classes_", ())]
    candidate_classes = [label_of(label) for label in getattr(candidate_model, "classes_", ())]
    if champion_classes != candidate_classes:
        # Another label vocabulary (setosa against 0): every row would score 0% for one of them.
        raise Unfair(f"classes differ (champion: {_shown(champion_classes)}, candidate: {_shown(candidate_classes)})")
    truth = labels.to_numpy()
    candidate_predictions = np.asarray(candidate_model.predict(features))
    champion_predictions = np.asarray(champion_model.predict(features))  # the one extra prediction pass
    trained_on = champion_job.training_row_hashes()
    shared = np.ones(len(truth), dtype=bool) if trained_on is None else \
        rows_not_trained_on(labelled_row_hashes(features, labels), trained_on)
    excluded = int((~shared).sum())
    rows = dict(version=version, min_rows=config.champion_min_rows, excluded=excluded, **settings)
    metric = config.gate_metric
    if metric in PAIRED_METRICS:
        return compare_with_champion(candidate_predictions[shared] == truth[shared],
                                     champion_predictions[shared] == truth[shared], **rows)
    if metric in _ROW_METRICS:
        score, kept = _ROW_METRICS[metric], truth[shared]
        values = (score(kept, candidate_predictions[shared]), score(kept, champion_predictions[shared])) \
            if shared.any() else (0.0, 0.0)
    else:  # cv_mean_accuracy or a custom metric: only the values each training run recorded exist
        values = (candidate.metrics.get(metric), champion_job.metrics.get(metric))
        if not all(isinstance(value, (int, float)) for value in values):
            raise Unfair(f"champion {version} recorded no {metric}")
    return compare_point_values(values[0], values[1], rows_compared=int(shared.sum()), **rows)


def _load_champion(store: DeploymentStore, version: str, model_dir: Path) -> tuple[TrainingJob, Any]:
    """The champion's job and model, each checked against what the store recorded."""
    version_row = store.version(version)
    if version_row is None:
        raise Unfair(f"version {version} serves but the store has no record of it")
    job_row = store.training_job(version_row["training_job"])
    if job_row is None:
        raise Unfair(f"its training job {version_row['training_job']} is not in the store")
    try:
        job = job_files.load(store, job_row)
        model = inference.model_fn(str(model_dir), version_row["model_sha256"])
    except PipelineError as err:
        raise Unfair(f"it cannot be loaded: {err.message}") from None
    except Exception as err:
        raise Unfair(f"its model cannot be loaded: {type(err).__name__}: {err}") from None
    return job, model


def _shown(classes: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(repr(value) if kind == "str" else value for kind, value in classes[:8]) + \
        (", ..." if len(classes) > 8 else "") + "]"
