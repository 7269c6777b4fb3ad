"""Every server the pipeline starts is known, owned and stopped: none outlives a killed pipeline,
none is hidden by a lost state file, none inherits the pipeline's secrets."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.state.processes import find_servers
from pipeline.state.store import DeploymentStore
from tests.conftest import PYTHON, REPO, wait_for

ENDPOINT_DIR = Path(".mlops/endpoints/iris-model")


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, str(REPO / "run_pipeline.py"), *args, "--set", "performance_requests=20",
                             "--set", "cv_folds=3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _servers() -> list:
    return find_servers(ENDPOINT_DIR.resolve()) if ENDPOINT_DIR.exists() else []


def _slow_dataset(path: str = "slow.csv") -> str:
    """Enough rows for gradient boosting to take a few seconds: time to kill the run while it trains."""
    generator = np.random.default_rng(0)
    labels = generator.integers(0, 3, 30000)
    features = generator.normal(size=(30000, 8)) + labels[:, None]
    lines = ["a,b,c,d,e,f,g,h,target"] + [",".join(f"{v:.5f}" for v in row) + f",{t}"
                                          for row, t in zip(features, labels)]
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def test_a_server_prestarted_during_training_stops_when_its_pipeline_is_killed(workdir):
    process = _run("--dataset", _slow_dataset(), "--model-type", "gradient_boosting",
                   "--set", "endpoint_prefix=iris-model", "--output-file", "killed.json")
    wait_for(lambda: any(server.master_alive for server in _servers()), seconds=60)
    process.send_signal(signal.SIGKILL)
    process.wait()
    wait_for(lambda: not _servers(), seconds=15)  # on its own: no command had to clean up after it
    assert DeploymentStore(".mlops").endpoints() == []


def test_two_first_deployments_at_once_both_succeed(workdir):
    first, second = _run("--output-file", "a.json"), _run("--output-file", "b.json")
    outputs = [process.communicate(timeout=240)[0].decode() for process in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), outputs
    versions = {json.loads(Path(name).read_text())["summary"]["endpoint_version"] for name in ("a.json", "b.json")}
    store = DeploymentStore(".mlops")
    assert [row["status"] for row in store.deployments("iris-model")] == ["deployed", "deployed"]
    serving = store.endpoint("iris-model")
    assert serving["serving_version"] in versions
    assert requests.get(f"{serving['url']}/ping").headers["X-Model-Version"] == serving["serving_version"]
    assert [server.group for server in _servers()] == [serving["pid"]]


def test_workers_of_a_killed_master_do_not_block_the_next_deployment(pipeline):
    assert pipeline().exit_code == 0
    row = DeploymentStore(".mlops").endpoint("iris-model")
    os.kill(row["pid"], signal.SIGKILL)  # the master alone: its workers keep the port for a while
    wait_for(lambda: not any(server.master_alive for server in _servers()), seconds=10)
    assert pipeline().exit_code == 0, pipeline.results()["error"]
    serving = DeploymentStore(".mlops").endpoint("iris-model")
    assert requests.get(f"{serving['url']}/ping").headers["X-Model-Version"] == serving["serving_version"]
    assert [server.group for server in _servers()] == [serving["pid"]]


def test_endpoint_servers_inherit_an_allow_list_of_the_environment_not_its_secrets(pipeline):
    secrets = {"CI_JOB_TOKEN": "glcbt-secret-value", "SOME_API_KEY": "key-secret-value",
               "MLOPS_ENDPOINT_TOKEN": "endpoint-token-value"}
    assert pipeline(env=secrets).exit_code == 0
    for server in _servers():
        for pid in server.pids:
            environment = Path(f"/proc/{pid}/environ").read_bytes()
            assert all(value.encode() not in environment for value in secrets.values())
            assert b"PATH=" in environment


def test_the_endpoint_token_hash_is_readable_by_its_owner_only(pipeline):
    assert pipeline(env={"MLOPS_ENDPOINT_TOKEN": "endpoint-token-value"}).exit_code == 0
    mode = stat.S_IMODE((ENDPOINT_DIR / "auth.json").stat().st_mode)
    assert mode == 0o600


def test_a_run_killed_before_it_deployed_is_marked_interrupted_by_the_next_command(workdir):
    process = _run("--mode", "training", "--dataset", _slow_dataset(), "--model-type", "gradient_boosting",
                   "--output-file", "killed.json")
    wait_for(lambda: Path(".mlops/state.db").exists() and DeploymentStore(".mlops").runs(), seconds=60)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = _invoke("history", "--json")
    runs = json.loads(result.output)["runs"]
    assert [run["status"] for run in runs] == ["interrupted"]
    assert any(event["kind"] == "run_interrupted" for event in DeploymentStore(".mlops").events())


@pytest.mark.unit
def test_a_corrupt_state_file_is_one_error_line_with_what_to_do(pipeline):
    Path(".mlops").mkdir()
    Path(".mlops/state.db").write_bytes(b"this is not a database" * 100)
    for args in (["status"], ["history"], ["cleanup", "--prune"]):
        result = _invoke(*args)
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "is not a usable SQLite database" in errors[0] and "move it aside" in errors[0]
    assert pipeline().exit_code == 2


def test_status_and_cleanup_find_servers_after_the_state_file_was_lost(pipeline):
    assert pipeline().exit_code == 0
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        Path(".mlops", name).unlink(missing_ok=True)
    status = _invoke("status")
    assert status.exit_code == 1
    assert "iris-model  NOT IN THE STORE" in status.output and "cleanup --endpoint-name iris-model" in status.output
    assert _invoke("cleanup", "--all").exit_code == 0
    wait_for(lambda: not _servers(), seconds=10)


def test_make_clean_stops_the_endpoints_before_deleting_their_state(pipeline, workdir):
    assert pipeline().exit_code == 0
    url = pipeline.results()["summary"]["endpoint_url"]
    result = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "clean", f"VENV={REPO / '.venv'}",
                             f"RUN_PIPELINE={REPO / 'run_pipeline.py'}"], cwd=workdir, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not Path(".mlops").exists()
    assert not find_servers(workdir / ".mlops/endpoints/iris-model")
    try:
        requests.get(f"{url}/ping", timeout=2)
        raise AssertionError("the endpoint still answers")
    except requests.ConnectionError:
        pass


def test_cleanup_prune_removes_the_logs_of_candidates_that_are_gone(pipeline):
    for _ in range(3):
        assert pipeline().exit_code == 0
    logs_before = sorted(path.name for path in ENDPOINT_DIR.glob("candidate-*.log"))
    assert logs_before
    assert _invoke("cleanup", "--prune", "--keep", "1").exit_code == 0
    assert not list(ENDPOINT_DIR.glob("candidate-*.log"))
