"""A training job's model, scored in this process through the serving hooks the endpoint runs.

The model is loaded by ``inference.model_fn`` only once its sha256 matches the one the store recorded at training
(``TrainingJob.load`` has checked every other file of the job); rows go through ``predict_fn`` and probabilities
through its ``Prediction``: the endpoint's own code, so offline and endpoint predictions agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.container import inference
from pipeline.container.inference_errors import InferenceError, ModelIntegrityError
from pipeline.errors import ExitCode, PipelineError
from pipeline.training.jobs import TrainingJob


@dataclass(frozen=True)
class Scored:
    """The answers for a batch of rows: labels, and with probabilities the matrix and its classes' order."""

    labels: list[Any] | np.ndarray
    probabilities: np.ndarray | list[list[float]] | None = None
    classes: list[Any] | None = None
    version: str | None = None  # which version answered (an endpoint says so)


def model_columns(job: TrainingJob, model: Any = None) -> tuple[str, ...]:
    """The columns a job's model takes, in its order: its input schema, else the names scikit-learn kept."""
    schema = job.input_schema
    if schema and schema.get("columns"):
        return tuple(str(column["name"]) for column in schema["columns"])
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None:
        return tuple(str(name) for name in fitted)
    raise PipelineError(f"training job {job.name!r} recorded no input schema and its model no column names: its "
                        f"columns cannot be matched by name; train it again")


class OfflineScorer:
    """Scores rows (float64, in the model's order) with a job's verified model."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        try:
            self.model = inference.model_fn(str(job.model_dir), job.model_sha256, job.input_schema)
        except ModelIntegrityError as err:
            raise PipelineError(f"training job {job.name!r}: {err}", ExitCode.FAILURE) from None
        self.columns = model_columns(job, self.model)
        classes = getattr(self.model, "classes_", None)
        self.classes = np.asarray(classes).tolist() if classes is not None else None

    def score(self, rows: np.ndarray, probabilities: bool = False) -> Scored:
        try:
            prediction = inference.predict_fn(rows, self.model)
            labels = np.asarray(prediction.labels)
            if not probabilities:
                return Scored(labels)
            proba, classes = prediction.probabilities()
        except InferenceError as err:  # a model that gives no probabilities, a width that does not fit
            raise PipelineError(f"training job {self.job.name!r}: {err}") from None
        return Scored(labels, proba, np.asarray(classes).tolist())
