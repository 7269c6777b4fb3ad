"""What ``reproduce`` checks: the data against its fingerprint, the library versions, and the retrained model
against the recorded one (its sha256, its predictions on the held-out rows, its metrics)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from pipeline.config import PipelineConfig
from pipeline.container.inference_errors import ModelIntegrityError
from pipeline.container.model_files import MODEL_FILENAME, verify_model_file
from pipeline.container.verified_files import file_sha256
from pipeline.errors import ExitCode, PipelineError
from pipeline.training.datasets import Dataset, load_dataset
from pipeline.training.jobs import TrainingJob
from pipeline.training.row_hashes import labelled_row_hashes

# The metrics every job has, compared between the recorded and the retrained model.
COMPARED_METRICS = ("accuracy", "balanced_accuracy", "no_skill_accuracy", "cv_mean_accuracy", "cv_std",
                    "precision_weighted", "recall_weighted", "f1_weighted", "test_size", "train_size")
SHOWN_DIFFERENCES = 5


@dataclass
class DataCheck:
    """The data read again, against the fingerprint recorded at training."""

    source: str
    same: bool
    recorded: dict[str, Any]
    found: dict[str, Any] | None  # None: it could not be read
    changes: list[str] = field(default_factory=list)  # what differs, in words


@dataclass
class ModelComparison:
    recorded_sha256: str
    reproduced_sha256: str
    heldout_rows: int = 0
    prediction_differences: int = 0
    first_differences: list[dict[str, Any]] = field(default_factory=list)  # row, recorded, reproduced
    metric_differences: list[dict[str, Any]] = field(default_factory=list)  # metric, recorded, reproduced

    @property
    def same_model(self) -> bool:
        return self.recorded_sha256 == self.reproduced_sha256

    @property
    def same_predictions(self) -> bool:
        return self.prediction_differences == 0


def check_data(job: TrainingJob, spec: str, config: PipelineConfig) -> tuple[Dataset | None, DataCheck]:
    """The data read as training read it (and refused as training refuses it), its fingerprint compared."""
    recorded = dict(job.data_fingerprint)
    try:
        dataset = load_dataset(spec, job.label_column, allow_label_leakage=config.allow_label_leakage)
    except PipelineError as err:
        return None, DataCheck(spec, False, recorded, None, [f"cannot be read: {err.message}"])
    found = dataset.fingerprint()
    if found["sha256"] == recorded.get("sha256"):
        return dataset, DataCheck(spec, True, recorded, found)
    changes = [f"has sha256 {found['sha256'][:12]}..., recorded {str(recorded.get('sha256'))[:12]}..."]
    changes += _what_changed(job, dataset, recorded, found)
    return dataset, DataCheck(spec, False, recorded, found, changes)


def _what_changed(job: TrainingJob, dataset: Dataset, recorded: dict[str, Any], found: dict[str, Any]) -> list[str]:
    schema = job.input_schema or {}
    before = [str(column["name"]) for column in schema.get("columns") or []]
    now = [str(name) for name in dataset.features.columns]
    if before and now != before:
        added = [name for name in now if name not in before]
        removed = [name for name in before if name not in now]
        words = ([f"column(s) added: {', '.join(map(repr, added))}"] if added else []) + \
                ([f"column(s) removed: {', '.join(map(repr, removed))}"] if removed else [])
        return words or ["the same columns in another order"]
    rows = f"{recorded.get('rows', '?'):,} rows recorded, {found['rows']:,} now" \
        if isinstance(recorded.get("rows"), int) else f"{found['rows']:,} rows now"
    trained = job.training_row_hashes()
    if trained is None:
        return [rows]
    features, labels = job.heldout()
    recorded_rows = np.concatenate([trained, labelled_row_hashes(features, labels)])
    current = labelled_row_hashes(dataset.features, dataset.labels)
    added, removed = _not_in(current, recorded_rows), _not_in(recorded_rows, current)
    if not added and not removed:
        return [f"{rows}: the same rows in another order (the split, and so the model, follow the order)"]
    return [f"{rows}: {added:,} added, {removed:,} removed or changed"]


def _not_in(values: npt.NDArray[np.uint64], others: npt.NDArray[np.uint64]) -> int:
    """How many of ``values`` (counted with repeats) have no partner in ``others``."""
    unique, counts = np.unique(values, return_counts=True)
    other_unique, other_counts = np.unique(others, return_counts=True)
    if not len(other_unique):
        return int(counts.sum())
    places = np.clip(np.searchsorted(other_unique, unique), 0, len(other_unique) - 1)
    partners = np.where(other_unique[places] == unique, other_counts[places], 0)
    return int(np.maximum(counts - partners, 0).sum())


def version_differences(manifest: dict[str, Any], now: dict[str, str]) -> list[dict[str, str | None]]:
    """The libraries whose version differs from training's. A SageMaker job ran in the scikit-learn image of
    ``sklearn_framework_version``: its scikit-learn is that one (compared by minor version, as the image names
    it), and the other versions recorded are the launching machine's, not the training's."""
    image = manifest.get("sklearn_framework_version") if manifest.get("backend") == "sagemaker" else None
    if image:
        minor = ".".join(str(image).split("-")[0].split(".")[:2])
        here = now.get("scikit-learn", "")
        if ".".join(here.split(".")[:2]) != minor:
            return [{"package": "scikit-learn", "recorded": f"{image} (SageMaker image)", "now": here or None}]
        return []
    recorded = manifest.get("library_versions") or {}
    return [{"package": package, "recorded": recorded.get(package), "now": now.get(package)}
            for package in sorted(set(recorded) | set(now)) if recorded.get(package) != now.get(package)]


def compare_models(job: TrainingJob, model_dir: Path, metrics: dict[str, Any]) -> ModelComparison:
    """The retrained model in ``model_dir`` against the job's: bytes, held-out predictions, metrics."""
    path = model_dir / MODEL_FILENAME
    comparison = ModelComparison(job.model_sha256, file_sha256(path))
    for metric in COMPARED_METRICS:
        recorded, reproduced = job.metrics.get(metric), metrics.get(metric)
        if isinstance(recorded, (int, float)) and isinstance(reproduced, (int, float)) and \
                not math.isclose(recorded, reproduced, rel_tol=1e-9, abs_tol=1e-12):
            comparison.metric_differences.append({"metric": metric, "recorded": recorded, "reproduced": reproduced})
    features, labels = job.heldout()
    comparison.heldout_rows = len(features)
    if comparison.same_model:
        return comparison
    try:
        recorded_model = joblib.load(verify_model_file(str(job.model_dir), job.model_sha256))
    except ModelIntegrityError as err:
        raise PipelineError(f"training job {job.name!r}: {err}", ExitCode.FAILURE) from None
    before = np.asarray(recorded_model.predict(features))
    after = np.asarray(joblib.load(path).predict(features))
    differs = np.flatnonzero(before != after)
    comparison.prediction_differences = int(len(differs))
    comparison.first_differences = [{"row": int(row) + 1, "recorded": before[row].item(),
                                     "reproduced": after[row].item()} for row in differs[:SHOWN_DIFFERENCES]]
    return comparison
