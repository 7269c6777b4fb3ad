"""SIGKILL at spread moments of a first deployment and of a redeployment.

After each kill and the next command on the endpoint, three things hold: the endpoint serves a
verified version (the one the store names, with the model hash recorded for it) or is cleanly
absent; the audit trail verifies; and no server process of the store is left that the store does
not know.
"""
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
from pipeline.state.processes import find_servers
from pipeline.state.store import DeploymentStore
from tests.conftest import PYTHON, REPO

KILLS_PER_SCENARIO = 5
FAST = ["--set", "performance_requests=200", "--set", "cv_folds=3"]


def _command(store: str, *args: str) -> list[str]:
    return [PYTHON, str(REPO / "run_pipeline.py"), "--store-dir", store, *args, *FAST,
            "--output-file", f"{store}.json", "--log-file", f"{store}.log"]


def _timed_run(store: str, *args: str) -> float:
    started = time.monotonic()
    completed = subprocess.run(_command(store, *args), capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return time.monotonic() - started


def _kill_at(store: str, seconds: float, *args: str) -> None:
    process = subprocess.Popen(_command(store, *args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _assert_consistent(store: str) -> None:
    status = CliRunner().invoke(cli, ["--store-dir", store, "status", "--json"], catch_exceptions=False)
    state = DeploymentStore(store)
    row = state.endpoint("iris-model")
    servers = find_servers(Path(store, "endpoints", "iris-model").resolve())
    if row is None:
        assert servers == [], f"servers left without an endpoint: {servers}"
    else:
        assert status.exit_code == 0, status.output
        version = state.version(row["serving_version"])
        reply = requests.get(f"{row['url']}/ping", timeout=5)
        assert reply.status_code == 200
        assert reply.headers["X-Model-Version"] == row["serving_version"]
        assert reply.headers["X-Model-Sha256"] == version["model_sha256"]
        assert [server.group for server in servers] == [row["pid"]], f"unknown servers: {servers}"
    assert state.verify_events() == []
    assert all(run["status"] != "running" for run in state.runs())
    assert all(deployment["status"] != "in_progress" for deployment in state.deployments(limit=1000))


@pytest.mark.timeout(600)
def test_kills_during_a_first_deployment_leave_a_verified_endpoint_or_none(workdir):
    duration = _timed_run("reference")
    for kill in range(KILLS_PER_SCENARIO):
        store = f"first-{kill}"
        _kill_at(store, duration * (kill + 0.5) / KILLS_PER_SCENARIO)
        _assert_consistent(store)


@pytest.mark.timeout(600)
def test_kills_during_a_redeployment_leave_a_verified_version_serving(workdir):
    store = "redeploy"
    _timed_run(store)
    _timed_run(store, "--mode", "training")
    job = json.loads(Path(f"{store}.json").read_text())["summary"]["training_job"]
    duration = _timed_run(store, "--mode", "deployment", "--training-job", job)
    for kill in range(KILLS_PER_SCENARIO):
        _kill_at(store, duration * (kill + 0.5) / KILLS_PER_SCENARIO, "--mode", "deployment", "--training-job", job)
        _assert_consistent(store)
