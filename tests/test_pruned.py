"""After ``cleanup --prune``, what is gone says so: rollback, --mode deployment and jobs name the pruned versions and
jobs instead of failing on a missing file."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.config import ENV_VARS
from pipeline.state.store import DeploymentStore
from tests.conftest import FAST_SETTINGS, stop_servers_under


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three versions of iris-model, the two older ones pruned."""
    root = tmp_path_factory.mktemp("pruned")
    saved = {name: os.environ.pop(name) for name in [*ENV_VARS, "MLOPS_ENDPOINT_TOKEN"] if name in os.environ}
    previous = Path.cwd()
    os.chdir(root)
    try:
        versions, jobs = [], []
        for number in range(3):
            result = _invoke("--output-file", f"r{number}.json", "--log-file", "p.log", *FAST_SETTINGS)
            assert result.exit_code == 0, result.output
            summary = json.loads(Path(f"r{number}.json").read_text())["summary"]
            versions.append(summary["endpoint_version"])
            jobs.append(summary["training_job"])
        result = _invoke("cleanup", "--prune", "--keep", "1")
        assert result.exit_code == 0, result.output
        yield {"versions": versions, "jobs": jobs}
    finally:
        os.chdir(previous)
        os.environ.update(saved)
        stop_servers_under(root)


def test_pruning_is_recorded_with_the_versions_and_jobs_it_deleted(pruned):
    store = DeploymentStore(".mlops")
    assert [bool(store.version(v)["pruned_at"]) for v in pruned["versions"]] == [True, True, False]
    assert [bool(store.training_job(j)["pruned_at"]) for j in pruned["jobs"]] == [True, True, False]
    event = next(e for e in store.events() if e["kind"] == "artifacts_pruned")
    assert sorted(event["detail"]["versions"]) == sorted(pruned["versions"][:2])
    assert sorted(event["detail"]["jobs"]) == sorted(pruned["jobs"][:2])


def test_a_rollback_to_a_pruned_version_says_it_was_pruned(pruned):
    for args in (["rollback", "--endpoint-name", "iris-model"],
                 ["rollback", "--endpoint-name", "iris-model", "--to-version", pruned["versions"][0]]):
        result = _invoke(*args)
        assert result.exit_code == 2, result.output
        assert "was pruned on" in result.output and "cannot serve again" in result.output
        assert "pointer file" not in result.output
    assert DeploymentStore(".mlops").endpoint("iris-model")["serving_version"] == pruned["versions"][2]


def test_deploying_a_pruned_job_is_refused_naming_it(pruned):
    result = _invoke("--mode", "deployment", "--training-job", pruned["jobs"][0], "--output-file", "d.json")
    assert result.exit_code == 2
    assert f"training job '{pruned['jobs'][0]}' was pruned on" in result.output and "train again" in result.output


def test_jobs_marks_pruned_jobs_as_not_deployable(pruned):
    listed = json.loads(_invoke("jobs", "--json").output)["jobs"]
    deployable = {job["name"]: job["deployable"] for job in listed}
    assert [deployable[name] for name in pruned["jobs"]] == [False, False, True]
    table = _invoke("jobs").output
    assert table.count("pruned, not deployable") == 2
