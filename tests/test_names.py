"""Names follow the data: a CSV dataset names its jobs, endpoint and versions, unless a name is chosen."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from sklearn.datasets import load_iris

from pipeline.config import load_config

LOW_BAR = ["--accuracy-threshold", "0.7", "--minimum-accuracy", "0.6"]


def _csv(name: str = "breast_cancer.csv") -> str:
    load_iris(as_frame=True).frame.to_csv(name, index=False)
    return name


def test_a_csv_dataset_names_the_training_job_the_endpoint_and_its_versions(pipeline):
    assert pipeline("--dataset", _csv(), *LOW_BAR).exit_code == 0
    results = pipeline.results()
    assert results["summary"]["training_job"].startswith("breast-cancer-classifier-")
    assert results["summary"]["endpoint_name"] == "breast-cancer-model"
    assert re.fullmatch(r"breast-cancer-model-\d{8}-\d{6}(-\d+)?", results["summary"]["endpoint_version"])
    assert results["config_sources"]["endpoint_prefix"] == "derived:dataset"


@pytest.mark.unit
def test_iris_keeps_its_names(pipeline):
    assert pipeline("--mode", "training").exit_code == 0
    assert pipeline.results()["summary"]["training_job"].startswith("iris-classifier-")


def test_a_prefix_that_was_set_wins_over_the_file_name(pipeline):
    Path("config.json").write_text('{"endpoint_prefix": "fraud", "model_name_prefix": "fraud-job"}')
    assert pipeline("--dataset", _csv(), "--config-file", "config.json", *LOW_BAR).exit_code == 0
    results = pipeline.results()
    assert results["summary"]["endpoint_name"] == "fraud"
    assert results["summary"]["training_job"].startswith("fraud-job-")


def test_a_version_is_named_after_the_endpoint_it_serves(pipeline):
    assert pipeline("--endpoint-name", "bc-model").exit_code == 0
    assert pipeline.results()["summary"]["endpoint_version"].startswith("bc-model-")


@pytest.mark.unit
def test_an_odd_file_name_still_gives_a_valid_name():
    config, sources = load_config(env={}, flags={"dataset": "/data/2024 Q1 (final)!.csv"},
                                  search_default_file=False)
    assert config.endpoint_prefix == "2024-q1-final-model" and sources["model_name_prefix"] == "derived:dataset"


@pytest.mark.unit
def test_a_prefix_given_with_set_wins_over_the_file_name_and_the_other_still_follows_it(pipeline):
    assert pipeline("--dataset", _csv(), "--mode", "training", "--set", "model_name_prefix=fraud-job",
                    *LOW_BAR).exit_code == 0
    results = pipeline.results()
    assert results["summary"]["training_job"].startswith("fraud-job-")
    assert results["config"]["endpoint_prefix"] == "breast-cancer-model"
    assert results["config_sources"]["model_name_prefix"] == "set:model_name_prefix"


def test_an_endpoint_name_given_with_a_csv_dataset_names_the_endpoint_and_its_versions(pipeline):
    assert pipeline("--dataset", _csv(), "--endpoint-name", "bc-model", *LOW_BAR).exit_code == 0
    summary = pipeline.results()["summary"]
    assert summary["endpoint_name"] == "bc-model" and summary["endpoint_version"].startswith("bc-model-")
    assert summary["training_job"].startswith("breast-cancer-classifier-")


@pytest.mark.unit
def test_jobs_trained_in_the_same_second_against_a_shared_store_get_names_of_their_own():
    from datetime import UTC, datetime

    from pipeline.training.jobs import job_base_name

    moment = datetime(2026, 12, 6, 9, 26, 59, tzinfo=UTC)
    local, _ = load_config(None, {}, {}, search_default_file=False)
    shared, _ = load_config(None, {}, {"store_url": "postgresql://mlops@db.example:5432/mlops"},
                            search_default_file=False)
    assert job_base_name(local, moment) == "iris-classifier-20261206-092659"  # one machine: its directory decides
    names = {job_base_name(shared, moment) for _ in range(20)}
    assert all(re.fullmatch(r"iris-classifier-20261206-092659-[0-9a-f]{3}", name) for name in names)
    assert len(names) > 1
