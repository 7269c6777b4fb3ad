"""Training and evaluation on this machine, with the same code SageMaker runs.

``TrainingPipeline`` follows the steps of the script-mode entry point
(``pipeline/container/train.py``): split, fit, evaluate. Each step is a method
so a team can override one (custom training steps)::

    class CustomTrainingPipeline(TrainingPipeline):
        def train_local_model(self, X_train, y_train):
            return MyModel().fit(X_train, y_train)

and add metrics with functions ``fn(model, X_test, y_test) -> dict``.
The finished job is written in the format of ``pipeline.training.jobs``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.container import train as recipe
from pipeline.errors import PipelineError
from pipeline.progress import progress
from pipeline.training.datasets import Dataset, load_dataset
from pipeline.training.jobs import (
    HELDOUT_FILE,
    MODEL_DIR,
    HeldoutCsv,
    TrainingJob,
    claim_unique_directory,
    job_base_name,
    record_job,
)

CustomEvaluation = Callable[[Any, pd.DataFrame, pd.Series], dict[str, Any]]



class TrainingPipeline:
    """Split, fit and evaluate one model; write its artifacts as a training job."""

    def __init__(
        self,
        config: PipelineConfig,
        custom_evaluations: Sequence[CustomEvaluation] = (),
    ) -> None:
        self.config = config
        self.custom_evaluations = list(custom_evaluations)

    # --- the steps, each overridable ---
    def load_data(self) -> Dataset:
        return load_dataset(self.config.dataset, self.config.label_column,
                            allow_label_leakage=self.config.allow_label_leakage)

    def split_data(self, dataset: Dataset):
        try:
            X_train, X_test, y_train, y_test = recipe.split(
                dataset.features, dataset.labels, self.config.test_size, self.config.random_seed
            )
            recipe.check_cv_folds(y_train, self.config.cv_folds)
        except recipe.TrainingInputError as err:
            raise PipelineError(f"dataset {dataset.source!r}: {err}") from None
        return X_train, X_test, y_train, y_test

    def train_local_model(self, X_train: pd.DataFrame, y_train: pd.Series) -> Any:
        try:
            model = recipe.build_estimator(
                self.config.model_type, dict(self.config.hyperparameters), self.config.random_seed
            )
        except recipe.TrainingInputError as err:
            raise PipelineError(str(err)) from None
        return model.fit(X_train, y_train)

    def evaluate_model(self, model: Any, X_train, y_train, X_test, y_test) -> dict[str, Any]:
        def on_fold(fold: int, folds: int) -> None:
            progress().report("training: cross-validation", fold, folds, f"fold {fold} of {folds}")

        metrics = recipe.evaluate(
            model, X_train, y_train, X_test, y_test, self.config.cv_folds, self.config.random_seed, on_fold
        )
        progress().done("training: cross-validation")
        for evaluation in self.custom_evaluations:
            metrics.update(evaluation(model, X_test, y_test))
        return metrics

    # --- the whole job ---
    def run(self, jobs_dir: Path) -> TrainingJob:
        dataset = self.load_data()
        X_train, X_test, y_train, y_test = self.split_data(dataset)
        # The split copied the rows; let the whole frame go before fitting (peak memory).
        dataset = dataset.without_rows()
        heldout = HeldoutCsv(X_test.assign(**{dataset.label_column: y_test}), jobs_dir)  # written while it fits
        try:
            progress().report("training: final fit", detail=f"{self.config.model_type} on {len(X_train):,} rows")
            model = self.train_local_model(X_train, y_train)
            progress().done("training: final fit")
            metrics = self.evaluate_model(model, X_train, y_train, X_test, y_test)
            return self.save(jobs_dir, dataset, model, metrics, heldout.rows, X_train, y_train, heldout_csv=heldout)
        finally:
            heldout.discard()

    def save(self, jobs_dir: Path, dataset: Dataset, model: Any, metrics: dict[str, Any],
             heldout: pd.DataFrame, X_train: pd.DataFrame, y_train: pd.Series, *,
             heldout_csv: HeldoutCsv | None = None) -> TrainingJob:
        """Write the job: the model, the held-out rows (``heldout_csv``'s file when given, else formatted here),
        and ``record_job``'s files."""
        directory = claim_unique_directory(jobs_dir, job_base_name(self.config))
        recipe.save_model(model, directory / MODEL_DIR, dataset.features)
        if heldout_csv is not None:
            heldout_csv.move_to(directory / HELDOUT_FILE)
        else:
            heldout.to_csv(directory / HELDOUT_FILE, index=False)
        return record_job(directory, self.config, dataset, metrics, X_train, y_train)
