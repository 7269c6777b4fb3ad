"""A pipeline killed with SIGKILL mid-deployment is reconciled by the next command on that endpoint."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.state.store import DeploymentStore
from tests.conftest import PYTHON, REPO, processes_mentioning

ENDPOINT_DIR = Path(".mlops/endpoints/iris-model")


def _start_deployment(job: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, str(REPO / "run_pipeline.py"), "--mode", "deployment", "--training-job", job, "--output-file",
         "killed.json", "--set", "performance_requests=3000", "--set", "cv_folds=3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(condition, seconds: float = 60.0, interval: float = 0.002) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(interval)


def _candidate_servers() -> list[int]:
    """This store's candidate servers, found by their pid files' path (not by the process title, which the
    candidates of every store share)."""
    return processes_mentioning(f"{ENDPOINT_DIR.resolve()}/candidate-")


def _current_version() -> str | None:
    try:
        return json.loads((ENDPOINT_DIR / "current.json").read_text())["version"]
    except (OSError, ValueError):
        return None


def _first_and_job(pipeline) -> tuple[str, str]:
    assert pipeline().exit_code == 0
    v1 = pipeline.results()["summary"]["endpoint_version"]
    assert pipeline("--mode", "training").exit_code == 0
    return v1, pipeline.results()["summary"]["training_job"]


def test_killed_before_the_switch_leaves_the_old_version_and_is_recorded_interrupted(pipeline):
    v1, job = _first_and_job(pipeline)
    process = _start_deployment(job)
    _wait_for(lambda: list(ENDPOINT_DIR.glob("candidate-*.pid")))
    time.sleep(0.5)  # the candidate is being tested
    process.send_signal(signal.SIGKILL)
    process.wait()
    # The candidate was its pipeline's, not the store's: it stops by itself, with no command to clean up.
    _wait_for(lambda: not _candidate_servers(), seconds=15, interval=0.1)

    assert pipeline().exit_code == 0  # the next command on the endpoint records what happened
    results = pipeline.results()
    assert results["reconciled"][0]["status"] == "interrupted"
    statuses = [row["status"] for row in DeploymentStore(".mlops").deployments("iris-model")]
    assert statuses == ["deployed", "interrupted", "deployed"]


def test_killed_right_after_the_switch_returns_to_the_verified_version(pipeline):
    v1, job = _first_and_job(pipeline)
    process = _start_deployment(job)
    _wait_for(lambda: _current_version() not in (None, v1))
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert DeploymentStore(".mlops").deployments("iris-model")[0]["status"] == "in_progress"

    v2 = _current_version()
    from click.testing import CliRunner

    from pipeline.cli import cli
    result = CliRunner().invoke(cli, ["status", "--json"])  # a command that itself switches nothing
    assert result.exit_code == 0, result.output
    url = DeploymentStore(".mlops").endpoint("iris-model")["url"]
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v1
    history = DeploymentStore(".mlops").deployments("iris-model")
    assert history[0]["status"] == "interrupted"
    assert f"switched back from {v2} to {v1}" in history[0]["reason"]
    assert DeploymentStore(".mlops").runs()[0]["status"] == "interrupted"

def test_sigterm_during_a_deployment_drops_the_candidate_and_keeps_the_old_version(pipeline):
    v1, job = _first_and_job(pipeline)
    process = _start_deployment(job)
    _wait_for(lambda: list(ENDPOINT_DIR.glob("candidate-*.pid")))
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 1
    results = json.loads(Path("killed.json").read_text())
    assert results["rollback"]["final_state"] == "kept_previous"
    assert results["rollback"]["reason"] == "interrupted: stopped by Ctrl-C or SIGTERM"
    _wait_for(lambda: not _candidate_servers(), seconds=15, interval=0.1)
    url = DeploymentStore(".mlops").endpoint("iris-model")["url"]
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v1


@pytest.mark.unit
def test_a_first_deployment_whose_pipeline_died_before_its_endpoint_existed_is_finished_by_status(pipeline):
    assert pipeline("--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    store = DeploymentStore(".mlops")
    # What a SIGKILL leaves between recording the deployment and recording its endpoint (the chaos test
    # hits this moment now and then): a deployment in progress, no endpoint, a run that no process owns.
    store.start_deployment("run-that-died", "new-model", None, "new-model-20261130-000000", job)
    assert store.endpoint("new-model") is None

    result = CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    [deployment] = store.deployments("new-model")
    assert deployment["status"] == "interrupted"
    assert "stopped during this deployment" in deployment["reason"]
    assert store.endpoint("new-model") is None
