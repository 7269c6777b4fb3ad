"""Nothing is gated, loaded or deployed unverified: what the store recorded at training decides."""
from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pipeline.state.store import DeploymentStore


def _hard_dataset(path: str = "hard.csv", rows: int = 400, seed: int = 3) -> str:
    """Two noisy classes: a model reaches roughly 0.75-0.85, never 0.95."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, rows)
    features = generator.normal(size=(rows, 3)) + labels[:, None] * 0.9
    lines = ["a,b,c,target"] + [f"{x:.6f},{y:.6f},{z:.6f},{t}" for (x, y, z), t in zip(features, labels)]
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def _train(pipeline, *args: str) -> dict:
    pipeline("--mode", "training", *args)
    return pipeline.results()


@pytest.mark.unit
def test_a_job_rejected_at_training_is_never_deployed(pipeline):
    results = _train(pipeline, "--dataset", _hard_dataset(), "--accuracy-threshold", "0.99",
                     "--minimum-accuracy", "0.98")
    assert results["gate"]["decision"] == "rejected"
    job = results["summary"]["training_job"]
    result = pipeline("--mode", "deployment", "--training-job", job, "--accuracy-threshold", "0.5",
                      "--minimum-accuracy", "0.5")
    assert result.exit_code == 3
    assert "was rejected by the gate when it was trained" in pipeline.results()["error"]["message"]
    assert DeploymentStore(".mlops").endpoints() == []


@pytest.mark.unit
def test_an_edited_metrics_file_never_decides_the_gate(pipeline):
    results = _train(pipeline, "--dataset", _hard_dataset(), "--accuracy-threshold", "0.95",
                     "--minimum-accuracy", "0.5")
    assert results["gate"]["decision"] == "held"
    job = results["summary"]["training_job"]
    metrics_file = Path(f".mlops/jobs/{job}/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    metrics["accuracy"] = 0.99
    metrics_file.write_text(json.dumps(metrics))
    result = pipeline("--mode", "deployment", "--training-job", job, "--minimum-accuracy", "0.5")
    assert result.exit_code == 1
    message = pipeline.results()["error"]["message"]
    assert "metrics.json" in message and "changed since training" in message
    assert DeploymentStore(".mlops").endpoints() == []


@pytest.mark.unit
def test_deployment_mode_gates_on_the_metrics_the_store_recorded(pipeline):
    results = _train(pipeline, "--dataset", _hard_dataset(), "--accuracy-threshold", "0.95",
                     "--minimum-accuracy", "0.5")
    recorded = results["phases"]["training"]["evaluation_results"]["accuracy"]
    job = results["summary"]["training_job"]
    pipeline("--mode", "deployment", "--training-job", job, "--minimum-accuracy", "0.5")
    gate = pipeline.results()["gate"]
    assert gate["decision"] == "held" and gate["value"] == recorded


def test_the_live_accuracy_test_fails_below_minimum_accuracy(pipeline):
    deployed = pipeline("--dataset", _hard_dataset(), "--accuracy-threshold", "0.6", "--minimum-accuracy", "0.5")
    assert deployed.exit_code == 0, deployed.output
    accuracy = pipeline.results()["phases"]["testing"]["test_summary"]["prediction_accuracy"]
    assert accuracy < 0.95
    result = pipeline("--mode", "testing", "--endpoint-name", "hard-model", "--accuracy-threshold", "0.99",
                      "--minimum-accuracy", "0.95")
    assert result.exit_code == 1
    check = pipeline.results()["phases"]["testing"]["checks"]["prediction_accuracy"]
    assert check["passed"] is False and "below minimum_accuracy 0.95" in check["reason"]


def test_the_live_accuracy_test_compares_with_the_accuracy_recorded_at_training(pipeline):
    assert pipeline().exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    with sqlite3.connect(".mlops/state.db") as conn:  # as if training had recorded another number
        row = conn.execute("SELECT metrics_json FROM training_jobs WHERE name=?", (job,)).fetchone()
        metrics = json.loads(row[0])
        metrics["accuracy"] = 0.5
        conn.execute("UPDATE training_jobs SET metrics_json=? WHERE name=?", (json.dumps(metrics), job))
    assert pipeline("--mode", "testing").exit_code == 1
    check = pipeline.results()["phases"]["testing"]["checks"]["prediction_accuracy"]
    assert "but 0.5000 was recorded at training" in check["reason"]


class _RunsCode:
    """A pickle that, when loaded, creates a file: what a crafted model could do."""

    def __reduce__(self):
        return (Path.touch, (Path("unpickled-code-ran").resolve(),))


def test_a_crafted_model_file_is_never_unpickled_by_the_pipeline(pipeline):
    assert pipeline().exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    Path(f".mlops/jobs/{job}/model/model.joblib").write_bytes(pickle.dumps(_RunsCode()))
    result = pipeline("--mode", "testing")
    assert result.exit_code == 1
    assert "model.joblib" in pipeline.results()["error"]["message"]
    assert not Path("unpickled-code-ran").exists()


def test_a_model_no_better_than_always_predicting_the_majority_class_is_held(pipeline):
    generator = np.random.default_rng(0)
    labels = [1] * 10 + [0] * 990
    lines = ["a,b,target"] + [f"{x:.5f},{y:.5f},{t}" for (x, y), t in zip(generator.normal(size=(1000, 2)), labels)]
    Path("imbalanced.csv").write_text("\n".join(lines) + "\n")
    result = pipeline("--dataset", "imbalanced.csv")
    assert result.exit_code == 3
    results = pipeline.results()
    metrics = results["phases"]["training"]["evaluation_results"]
    assert metrics["accuracy"] >= 0.95 and metrics["no_skill_accuracy"] == 0.99
    assert results["gate"]["decision"] == "held"
    assert "does not beat the no-skill baseline 99.00%" in results["gate"]["reason"]
    assert DeploymentStore(".mlops").endpoints() == []


@pytest.mark.unit
def test_the_no_skill_baseline_cannot_be_the_gate_metric(pipeline):
    result = pipeline("--set", "gate_metric=no_skill_accuracy")
    assert result.exit_code == 2
    assert "gate_metric 'no_skill_accuracy'" in result.output
