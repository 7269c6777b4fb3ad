"""Training code, written as a SageMaker script-mode entry point.

This file is shipped unchanged to SageMaker's scikit-learn container (inside
``sourcedir.tar.gz``, run as ``sagemaker_program``) and imported by the local
backend, so both backends fit and evaluate with exactly the same code. It may
therefore import only what that container has: scikit-learn, numpy, pandas,
scipy, joblib and the standard library -- never the ``pipeline`` package.

Container contract: data in ``SM_CHANNEL_TRAIN`` (one CSV with a header and the
label column), the model written to ``SM_MODEL_DIR``, metrics to
``SM_OUTPUT_DATA_DIR/metrics.json``, hyperparameters as ``--name value``
arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

if __package__:  # imported as pipeline.container.train
    from .model_files import INPUT_SCHEMA_FILENAME, METRICS_FILENAME, MODEL_FILENAME
    from .verified_files import SHA256_SUFFIX, file_sha256, write_atomically
    from .wilson import wilson_interval
else:  # in SageMaker's container: the source dir's files are top-level modules
    from model_files import INPUT_SCHEMA_FILENAME, METRICS_FILENAME, MODEL_FILENAME
    from verified_files import SHA256_SUFFIX, file_sha256, write_atomically
    from wilson import wilson_interval

# Estimators by the names the config uses. Each is fitted behind a StandardScaler
# so that hyperparameters keep their usual meaning whatever the feature scales.
ESTIMATORS: dict[str, type] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "gradient_boosting": GradientBoostingClassifier,
}
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"max_iter": 1000, "C": 10.0},  # iris is near-separable once scaled
    "random_forest": {"n_estimators": 100},
    "gradient_boosting": {},
}


class TrainingInputError(ValueError):
    """The model type, hyperparameters or data cannot be used; the message says which."""


def build_estimator(model_type: str, hyperparameters: dict[str, Any], seed: int) -> Pipeline:
    """A fresh, unfitted model; unknown hyperparameters are refused by name."""
    if model_type not in ESTIMATORS:
        raise TrainingInputError(f"model_type {model_type!r}: expected one of {', '.join(ESTIMATORS)}")
    estimator_class = ESTIMATORS[model_type]
    allowed = estimator_class().get_params()
    unknown = sorted(set(hyperparameters) - set(allowed))
    if unknown:
        raise TrainingInputError(
            f"hyperparameters: {unknown[0]!r} is not a hyperparameter of {model_type} "
            f"(known: {', '.join(sorted(allowed))})"
        )
    params = {**DEFAULT_HYPERPARAMETERS[model_type], **hyperparameters}
    if "random_state" in allowed and "random_state" not in hyperparameters:
        params["random_state"] = seed
    try:
        estimator = estimator_class(**params)
        estimator._validate_params()  # type and range checks now, not halfway through fitting
    except (TypeError, ValueError) as err:
        raise TrainingInputError(f"hyperparameters for {model_type}: {str(err).splitlines()[0]}") from None
    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


def split(features: pd.DataFrame, labels: pd.Series, test_size: float, seed: int):
    """Stratified hold-out split; returns X_train, X_test, y_train, y_test."""
    counts = labels.value_counts()
    smallest = _python_scalar(counts.idxmin())
    if counts.min() < 2:
        raise TrainingInputError(
            f"class {smallest!r} has {counts.min()} row(s): a stratified split needs at least 2 per class"
        )
    try:
        return train_test_split(features, labels, test_size=test_size, random_state=seed, stratify=labels)
    except ValueError as err:
        raise TrainingInputError(f"cannot split the data with test_size={test_size}: {err}") from None


def check_cv_folds(labels: pd.Series, cv_folds: int) -> None:
    counts = labels.value_counts()
    if counts.min() < cv_folds:
        raise TrainingInputError(
            f"class {_python_scalar(counts.idxmin())!r} has {counts.min()} training row(s), fewer than "
            f"cv_folds={cv_folds}: lower cv_folds or add data"
        )


def evaluate(
    model: Pipeline,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_test: pd.DataFrame,
    y_test: pd.Series,
    cv_folds: int,
    seed: int,
    on_fold: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Hold-out metrics of the fitted model plus k-fold CV of the same recipe on the training part.

    ``on_fold(k, n)`` is called after each fold: cross-validation is most of a training run's time.
    """
    predictions = model.predict(X_test)
    correct = int((predictions == np.asarray(y_test)).sum())
    total = len(y_test)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_test, predictions, average="weighted", zero_division=0
    )
    folds = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    # Each fold fits a clone of the model, so CV judges the recipe, not this fit (as cross_val_score
    # does, fold by fold, so that progress can be reported).
    cv_scores = []
    for fold, (fit_rows, score_rows) in enumerate(folds.split(X_train, y_train), start=1):
        estimator = clone(model).fit(X_train.iloc[fit_rows], y_train.iloc[fit_rows])
        cv_scores.append(accuracy_score(y_train.iloc[score_rows], estimator.predict(X_train.iloc[score_rows])))
        if on_fold is not None:
            on_fold(fold, cv_folds)
    low, high = wilson_interval(correct, total)
    # The no-skill reference: the accuracy on the test rows of always predicting the class most
    # frequent in the training rows (ties: the smallest class). A model that does not beat it has
    # learned nothing; it is a yardstick, not a score of the model.
    no_skill = DummyClassifier(strategy="most_frequent").fit(X_train, y_train)
    labels = sorted(pd.unique(pd.concat([pd.Series(y_test), pd.Series(predictions)])))
    return {
        "accuracy": float(accuracy_score(y_test, predictions)),
        "balanced_accuracy": float(balanced_accuracy_score(y_test, predictions)),
        "no_skill_accuracy": float(no_skill.score(X_test, y_test)),
        "cv_mean_accuracy": float(np.mean(cv_scores)),
        "cv_std": float(np.std(cv_scores)),
        "cv_scores": [float(score) for score in cv_scores],
        "precision_weighted": float(precision),
        "recall_weighted": float(recall),
        "f1_weighted": float(f1),
        "classification_report": classification_report(y_test, predictions, output_dict=True, zero_division=0),
        "confusion_matrix": confusion_matrix(y_test, predictions, labels=labels).tolist(),
        "confusion_matrix_labels": [_python_scalar(label) for label in labels],
        "test_size": total,
        "train_size": len(y_train),
        "accuracy_ci95": [low, high],
    }


def _python_scalar(value: Any) -> Any:
    # pipeline.training.datasets.python_scalar's twin: this file may import nothing from the pipeline package.
    return value.item() if hasattr(value, "item") else value


def fit_and_evaluate(
    data: pd.DataFrame, label_column: str, model_type: str, hyperparameters: dict[str, Any],
    test_size: float, seed: int, cv_folds: int,
) -> tuple[Pipeline, dict[str, Any], pd.DataFrame]:
    """The whole training recipe; returns the model, its metrics and the held-out rows."""
    features = data.drop(columns=[label_column])
    labels = data[label_column]
    X_train, X_test, y_train, y_test = split(features, labels, test_size, seed)
    check_cv_folds(y_train, cv_folds)
    print(f"fitting {model_type} on {len(X_train):,} rows", file=sys.stderr, flush=True)
    model = build_estimator(model_type, hyperparameters, seed).fit(X_train, y_train)
    # The training job's log (CloudWatch on SageMaker) says how far cross-validation has got.
    metrics = evaluate(model, X_train, y_train, X_test, y_test, cv_folds, seed,
                       lambda fold, folds: print(f"cross-validation fold {fold} of {folds}", file=sys.stderr,
                                                 flush=True))
    heldout = X_test.assign(**{label_column: y_test})
    return model, metrics, heldout


def input_schema(features: pd.DataFrame) -> dict[str, Any]:
    """The training features' names, order and dtypes: what lets the endpoint take columns by name and
    put them in the model's order."""
    return {"columns": [{"name": str(name), "dtype": str(dtype)} for name, dtype in features.dtypes.items()]}


def save_model(model: Pipeline, model_dir: str | os.PathLike[str], features: pd.DataFrame | None = None) -> Path:
    """Save the model with its sha256 beside it: no process loads a model whose bytes changed since.

    With the training ``features`` (their rows are not needed), their input schema goes beside it too
    (``input_schema.json``), so it travels with the model: in ``model.tar.gz`` on SageMaker, in the
    job's model directory locally.
    """
    path = Path(model_dir) / MODEL_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    # Dumped beside the target and renamed over it, like every file verified_files writes: a reader
    # never meets half a model, and the hash is taken of the bytes that end up in place.
    temporary = path.with_name(f".{MODEL_FILENAME}.{os.getpid()}.tmp")
    try:
        joblib.dump(model, temporary)
        digest = file_sha256(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    write_atomically(path.with_name(MODEL_FILENAME + SHA256_SUFFIX), digest + "\n")
    if features is not None:
        write_atomically(path.with_name(INPUT_SCHEMA_FILENAME), json.dumps(input_schema(features), indent=2))
    return path


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train and evaluate a scikit-learn classifier (SageMaker script mode).")
    parser.add_argument("--model-type", "--model_type", default="logistic_regression")
    parser.add_argument("--hyperparameters", default="{}", help="JSON object of estimator hyperparameters")
    parser.add_argument("--label-column", "--label_column", default="target")
    parser.add_argument("--test-size", "--test_size", type=float, default=0.2)
    parser.add_argument("--random-seed", "--random_seed", type=int, default=42)
    parser.add_argument("--cv-folds", "--cv_folds", type=int, default=5)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "data"))
    parser.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "output"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    csv_files = sorted(Path(args.train).glob("*.csv"))
    if not csv_files:
        print(f"no CSV file in the train channel {args.train}", file=sys.stderr)
        return 1
    data = pd.read_csv(csv_files[0])
    try:
        model, metrics, heldout = fit_and_evaluate(
            data, args.label_column, args.model_type, json.loads(args.hyperparameters),
            args.test_size, args.random_seed, args.cv_folds,
        )
    except TrainingInputError as err:
        print(f"TrainingInputError: {err}", file=sys.stderr)
        return 1
    save_model(model, args.model_dir, data.drop(columns=[args.label_column]))
    output = Path(args.output_data_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2))
    heldout.to_csv(output / "heldout.csv", index=False)
    print(json.dumps({"accuracy": metrics["accuracy"], "cv_mean_accuracy": metrics["cv_mean_accuracy"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
