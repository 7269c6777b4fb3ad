"""The pipeline's training phase on a CSV, timed per step (a child of bench/scale.py).

    PYTHONPATH=<project> python bench/scale_train.py DATA.csv STORE_DIR [--test-size 0.1]

Runs ``TrainingPipeline(config).run(jobs_dir)`` -- what the local backend's train
phase runs -- with clock-only wrappers around its steps.
"""
import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from bench.common import add_timer  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.gate import champion  # noqa: E402
from pipeline.state.store import DeploymentStore  # noqa: E402
from pipeline.training import datasets as data  # noqa: E402
from pipeline.training import fitting as training  # noqa: E402
from pipeline.training import jobs  # noqa: E402

IMPORTED = time.perf_counter()
STEPS: dict[str, float] = {}


def timed(owner: object, name: str, label: str) -> None:
    """A clock around ``owner.name``; a step the pipeline no longer has by that name is left untimed."""
    if hasattr(owner, name):
        add_timer(STEPS, owner, name, label)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("store")
    parser.add_argument("--test-size", type=float, default=0.1)
    parser.add_argument("--model-type", default="logistic_regression")
    args = parser.parse_args()
    config, _ = load_config(None, {}, {"dataset": args.csv, "label_column": "target", "test_size": args.test_size,
                                       "model_type": args.model_type, "store_dir": args.store},
                            search_default_file=False)
    pipeline_cls = training.TrainingPipeline
    for name in ("load_data", "split_data", "train_local_model", "evaluate_model", "save"):
        timed(pipeline_cls, name, name)
    timed(data.Dataset, "fingerprint", "save: data fingerprint")
    timed(training.recipe, "save_model", "save: model (joblib)")
    timed(jobs, "sha256_file", "save: file sha256s")  # before pipeline/training/jobs.py named it file_sha256
    timed(jobs, "file_sha256", "save: file sha256s")
    timed(jobs, "labelled_row_hashes", "save: training row hashes")
    timed(jobs, "compute_baseline", "save: monitoring baseline")
    timed(pd.DataFrame, "to_csv", "save: held-out CSV")
    timed(data.pd, "read_csv", "load_data: read_csv")
    began = time.perf_counter()
    job = pipeline_cls(config).run(Path(args.store) / "jobs")
    seconds = time.perf_counter() - began
    comparison = champion_comparison_seconds(config, job)
    sys.stdout.write("BENCH_JSON " + json.dumps({
        "training_seconds": seconds, "champion_comparison_seconds": comparison,
        "imports": IMPORTED - T0, "steps": STEPS, "job_dir": str(job.directory),
        "model_sha256": job.model_sha256, "accuracy": job.metrics["accuracy"],
        "cv_mean_accuracy": job.metrics["cv_mean_accuracy"], "heldout_rows": job.metrics["test_size"],
    }) + "\n")


def champion_comparison_seconds(config, job) -> float:
    """What the gate adds when a champion serves: the job itself stands in as the champion (same
    features, every held-out row comparable), so this is the whole comparison: load and verify the
    champion, one prediction pass of each model over the held-out rows, the row hashes, the test."""
    store = DeploymentStore(config.store_dir)
    store.record_training_job("bench", "local", job)
    store.claim_version("bench-model", "bench-model-v1", job.name, job.model_sha256)
    began = time.perf_counter()
    result = champion._compare(config, store, "bench-model-v1", job.model_dir, job,
                               {"metric": "accuracy", "policy": "not_worse", "margin": 0.0, "alpha": 0.05})
    seconds = time.perf_counter() - began
    assert result.status == "compared", result.reason
    return seconds


if __name__ == "__main__":
    main()
