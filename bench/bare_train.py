"""The baseline: the same training and evaluation with scikit-learn alone (no pipeline).

Mirrors the recipe of pipeline/container/train.py -- stratified hold-out split,
StandardScaler + the estimator with the same hyperparameters and seed, the same
hold-out metrics and the same k-fold cross-validation, the model saved with
joblib -- but nothing else: no config, store, manifest, fingerprint, held-out
file, endpoint or tests.

    python -m bench.bare_train                      # iris, as numpy arrays
    python -m bench.bare_train --csv data.csv       # pandas.read_csv of a CSV with a header
"""
import time

T0 = time.perf_counter()
T0_WALL = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

IMPORTED = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv")
    parser.add_argument("--label-column", default="target")
    parser.add_argument("--model-type", default="logistic_regression",
                        choices=["logistic_regression", "random_forest"])
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--cv-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="where to save model.joblib (default: a temp dir)")
    args = parser.parse_args()
    phases = {"imports": IMPORTED - T0}

    began = time.perf_counter()
    if args.csv:
        import pandas as pd

        frame = pd.read_csv(args.csv)
        y = frame[args.label_column].to_numpy()
        X = frame.drop(columns=[args.label_column]).to_numpy()
        del frame
    else:
        from sklearn.datasets import load_iris

        X, y = load_iris(return_X_y=True)
    phases["load"] = time.perf_counter() - began

    began = time.perf_counter()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=args.test_size, random_state=args.seed,
                                                        stratify=y)
    phases["split"] = time.perf_counter() - began

    began = time.perf_counter()
    if args.model_type == "logistic_regression":
        estimator = LogisticRegression(max_iter=1000, C=10.0, random_state=args.seed)
    else:
        estimator = RandomForestClassifier(n_estimators=100, random_state=args.seed)
    model = Pipeline([("scale", StandardScaler()), ("model", estimator)]).fit(X_train, y_train)
    phases["fit"] = time.perf_counter() - began

    began = time.perf_counter()
    predictions = model.predict(X_test)
    precision, recall, f1, _ = precision_recall_fscore_support(y_test, predictions, average="weighted",
                                                               zero_division=0)
    folds = StratifiedKFold(n_splits=args.cv_folds, shuffle=True, random_state=args.seed)
    cv_scores = cross_val_score(model, X_train, y_train, cv=folds, scoring="accuracy")
    metrics = {
        "accuracy": float(accuracy_score(y_test, predictions)),
        "cv_mean_accuracy": float(np.mean(cv_scores)),
        "precision_weighted": float(precision), "recall_weighted": float(recall), "f1_weighted": float(f1),
        "classification_report": classification_report(y_test, predictions, output_dict=True, zero_division=0),
        "confusion_matrix": confusion_matrix(y_test, predictions).tolist(),
    }
    phases["evaluate"] = time.perf_counter() - began

    began = time.perf_counter()
    out = args.out or tempfile.mkdtemp(prefix="bare-train-")
    joblib.dump(model, os.path.join(out, "model.joblib"))
    with open(os.path.join(out, "metrics.json"), "w") as handle:
        json.dump(metrics, handle)
    phases["save"] = time.perf_counter() - began
    phases["total_in_process"] = time.perf_counter() - T0
    sys.stdout.write("BENCH_JSON " + json.dumps({"phases": phases, "accuracy": metrics["accuracy"],
                                                 "cv_mean_accuracy": metrics["cv_mean_accuracy"],
                                                 "t0_wall": T0_WALL, "out": out}) + "\n")


if __name__ == "__main__":
    main()
