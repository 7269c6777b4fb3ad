"""Deployment safety: manual rollback, status, locking, zero downtime, audit trail."""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
import requests
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.state.locking import FileEndpointLock
from pipeline.state.store import DeploymentStore
from tests.conftest import kill_server, train_job
from tests.served_models import ServedDifferentlyPipeline


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _tamper(*statements: str) -> None:
    """Edit the store by hand, as someone covering their tracks would."""
    connection = sqlite3.connect(".mlops/state.db")
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


def _deploy_twice(pipeline) -> tuple[str, str, str]:
    pipeline()
    v1 = pipeline.results()["summary"]["endpoint_version"]
    pipeline()
    results = pipeline.results()
    return results["summary"]["endpoint_url"], v1, results["summary"]["endpoint_version"]


def test_manual_rollback_serves_the_previous_version_verified(pipeline):
    url, v1, v2 = _deploy_twice(pipeline)
    result = _invoke("rollback", "--endpoint-name", "iris-model")
    assert result.exit_code == 0, result.output
    assert f"rolled_back: iris-model serves {v1}" in result.output
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v1
    assert DeploymentStore(".mlops").endpoint("iris-model")["serving_version"] == v1


def test_manual_rollback_to_a_named_version(pipeline):
    url, v1, v2 = _deploy_twice(pipeline)
    _invoke("rollback", "--endpoint-name", "iris-model")
    assert _invoke("rollback", "--endpoint-name", "iris-model", "--to-version", v2).exit_code == 0
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v2


@pytest.mark.unit
def test_rollback_of_an_unknown_endpoint_is_a_usage_error(pipeline):
    result = _invoke("rollback", "--endpoint-name", "nope")
    assert result.exit_code == 2
    assert "Error: endpoint 'nope' not found" in result.output


def test_status_reports_a_dead_endpoint_process_and_rollback_brings_it_back(pipeline):
    url, v1, v2 = _deploy_twice(pipeline)
    healthy = _invoke("status")
    assert healthy.exit_code == 0 and "healthy" in healthy.output
    kill_server(DeploymentStore(".mlops").endpoint("iris-model")["pid"])
    dead = _invoke("status")
    assert dead.exit_code == 1
    assert "UNHEALTHY" in dead.output and "process DEAD" in dead.output
    as_json = _invoke("status", "--json")
    assert as_json.exit_code == 1
    status = json.loads(as_json.output)["endpoints"][0]
    assert status["process_alive"] is False and status["healthy"] is False
    result = _invoke("rollback", "--endpoint-name", "iris-model")
    assert result.exit_code == 0, result.output
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v1


def test_history_answers_which_version_served_at_a_time(pipeline):
    pipeline()
    v1 = pipeline.results()["summary"]["endpoint_version"]
    between = DeploymentStore(".mlops").events()[0]["at"]
    time.sleep(0.01)
    pipeline()
    result = _invoke("history", "--endpoint-name", "iris-model", "--at", between, "--json")
    assert json.loads(result.output)["serving_version"] == v1


@pytest.mark.unit
def test_history_verify_detects_an_edited_event(pipeline):
    pipeline("--mode", "training")
    assert _invoke("history", "--verify").exit_code == 0
    _tamper("DROP TRIGGER events_append_only_update", "UPDATE events SET detail = '{}' WHERE id = 2")
    result = _invoke("history", "--verify")
    assert result.exit_code == 1
    assert "event 2 was edited" in result.output


@pytest.mark.unit
def test_events_are_append_only(pipeline):
    pipeline("--mode", "training")
    connection = sqlite3.connect(".mlops/state.db")
    try:
        connection.execute("DELETE FROM events")
        deleted = True
    except sqlite3.DatabaseError:
        deleted = False
    assert not deleted


@pytest.mark.unit
def test_second_deployment_waits_for_the_lock_and_names_the_holder(pipeline):
    pipeline("--mode", "training")
    job = pipeline.results()["summary"]["training_job"]
    store = DeploymentStore(".mlops")
    with FileEndpointLock(store.directory / "locks", "iris-model", "run other-run", 600):
        result = pipeline("--mode", "deployment", "--training-job", job, "--set", "lock_timeout_seconds=0.2")
    assert result.exit_code == 1
    assert "endpoint 'iris-model' is locked by run other-run" in result.output
    assert store.endpoints() == []


@pytest.mark.unit
def test_training_is_not_blocked_by_a_deployment_lock(pipeline):
    store = DeploymentStore(".mlops")
    with FileEndpointLock(store.directory / "locks", "iris-model", "run other-run", 600):
        assert pipeline("--mode", "training", "--set", "lock_timeout_seconds=0.2").exit_code == 0


class _Clients:
    """Threads that keep calling the stable URL; only requests made while ``counting`` is on are counted."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.counting = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counted = 0
        self.failed: list[str] = []
        self.versions: set[str] = set()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 300
        while not self.stop.is_set() and time.monotonic() < deadline:
            counted = self.counting.is_set()
            try:
                reply = session.post(f"{self.url}/invocations", data="5.1,3.5,1.4,0.2",
                                     headers={"Content-Type": "text/csv"}, timeout=10)
                problem = None if reply.status_code == 200 else str(reply.status_code)
            except requests.RequestException as err:
                reply, problem = None, type(err).__name__
            with self.lock:
                if problem:
                    self.failed.append(problem)
                elif counted and self.counting.is_set():  # the whole request fell inside the command
                    self.counted += 1
                    self.versions.add(reply.headers["X-Model-Version"])

    def __enter__(self) -> _Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def during(self, command) -> None:
        """Run ``command`` while counting; every request counted was sent while it ran."""
        self.counting.set()
        try:
            command()
        finally:
            self.counting.clear()


def _check(result) -> None:
    assert result.exit_code == 0, result.output


def test_no_request_fails_while_versions_are_deployed(pipeline):
    pipeline()
    url, first = pipeline.results()["summary"]["endpoint_url"], pipeline.results()["summary"]["endpoint_version"]
    with _Clients(url) as clients:
        for _ in range(10):  # each deployment is one window; at least 2,000 requests inside the windows
            clients.during(lambda: _check(pipeline("--set", "max_p95_latency_ms=null")))
            if clients.counted >= 2000:
                break
    assert clients.failed == []
    assert clients.counted >= 2000
    assert first in clients.versions and len(clients.versions) >= 2  # the switches happened while counting


def test_no_request_fails_while_versions_are_rolled_back(pipeline):
    url, v1, v2 = _deploy_twice(pipeline)
    with _Clients(url) as clients:
        for attempt in range(40):
            target = v1 if attempt % 2 == 0 else v2
            clients.during(lambda target=target: _check(_invoke("rollback", "--endpoint-name", "iris-model",
                                                                "--to-version", target)))
            if clients.counted >= 2000 and attempt >= 1:
                break
    assert clients.failed == []
    assert clients.counted >= 2000
    assert clients.versions == {v1, v2}

def test_rollback_to_a_tampered_version_is_refused_and_the_current_version_keeps_serving(pipeline):
    from pathlib import Path
    url, v1, v2 = _deploy_twice(pipeline)
    job = DeploymentStore(".mlops").version(v1)["training_job"]
    model = Path(f".mlops/jobs/{job}/model/model.joblib")
    model.write_bytes(model.read_bytes()[:-10])
    result = _invoke("rollback", "--endpoint-name", "iris-model")
    assert result.exit_code == 1
    assert "rollback of 'iris-model' failed" in result.output and "refusing to serve it" in result.output
    assert "run_pipeline.py rollback --endpoint-name iris-model --to-version" in result.output
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v2


def test_endpoint_token_guards_invocations_and_never_reaches_results_or_logs(pipeline):
    from pathlib import Path
    token = "tok-3f9a8c7d6e5b4a"
    result = pipeline(env={"MLOPS_ENDPOINT_TOKEN": token})
    assert result.exit_code == 0, result.output
    url = pipeline.results()["summary"]["endpoint_url"]
    body, headers = "5.1,3.5,1.4,0.2", {"Content-Type": "text/csv"}
    assert requests.post(f"{url}/invocations", data=body, headers=headers).status_code == 401
    authorized = {**headers, "Authorization": f"Bearer {token}"}
    assert requests.post(f"{url}/invocations", data=body, headers=authorized).status_code == 200
    assert token not in pipeline.last_output.read_text()
    assert token not in Path("pipeline.log").read_text()
    assert token not in result.output


def test_cleanup_by_prefix_removes_every_matching_endpoint(pipeline):
    pipeline("--endpoint-name", "iris-a")
    pipeline("--endpoint-name", "iris-b")
    url = pipeline.results()["summary"]["endpoint_url"]
    result = _invoke("cleanup", "--prefix", "iris-")
    assert result.exit_code == 0, result.output
    assert "removed endpoint iris-a" in result.output and "removed endpoint iris-b" in result.output
    assert DeploymentStore(".mlops").endpoints() == []
    try:
        requests.get(f"{url}/ping", timeout=2)
        raise AssertionError("endpoint still answers")
    except requests.ConnectionError:
        pass


def test_cleanup_prune_keeps_the_newest_versions_and_the_serving_one(pipeline):
    from pathlib import Path
    versions = []
    for _ in range(3):
        pipeline()
        versions.append(pipeline.results()["summary"]["endpoint_version"])
    oldest_job = DeploymentStore(".mlops").version(versions[0])["training_job"]
    result = _invoke("cleanup", "--prune", "--keep", "2")
    assert result.exit_code == 0, result.output
    assert "iris-model: pruned 1 old version(s)" in result.output
    assert not Path(f".mlops/jobs/{oldest_job}").exists()
    assert not Path(f".mlops/endpoints/iris-model/versions/{versions[0]}.json").exists()
    assert Path(f".mlops/endpoints/iris-model/versions/{versions[1]}.json").exists()
    assert _invoke("rollback", "--endpoint-name", "iris-model").exit_code == 0


@pytest.mark.unit
def test_cleanup_of_an_unknown_endpoint_is_a_usage_error(pipeline):
    result = _invoke("cleanup", "--endpoint-name", "nope")
    assert result.exit_code == 2 and "Error: endpoint 'nope' not found" in result.output


def test_concurrent_deployments_are_serialized_and_the_store_stays_intact(pipeline):
    import subprocess

    from tests.conftest import PYTHON, REPO
    pipeline("--mode", "training")
    job = pipeline.results()["summary"]["training_job"]
    command = [PYTHON, str(REPO / "run_pipeline.py"), "--mode", "deployment", "--training-job", job,
               "--set", "performance_requests=40"]
    processes = [subprocess.Popen(command + ["--output-file", f"c{i}.json"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for i in range(2)]
    assert [p.wait(timeout=180) for p in processes] == [0, 0]
    rows = DeploymentStore(".mlops").deployments("iris-model")
    assert [row["status"] for row in rows] == ["deployed", "deployed"]
    assert rows[0]["from_version"] == rows[1]["to_version"]  # the second saw the first's result
    connection = sqlite3.connect(".mlops/state.db")
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _invoke("history", "--verify").exit_code == 0


def test_history_lists_runs_deployments_and_rollbacks_newest_first(pipeline):
    url, v1, v2 = _deploy_twice(pipeline)
    _invoke("rollback", "--endpoint-name", "iris-model")
    lines = _invoke("history").output.splitlines()
    assert f"rollback    iris-model  {v2} -> {v1}  rolled_back" in lines[0]
    assert any(f"deployment  iris-model  {v1} -> {v2}  deployed" in line for line in lines)
    assert sum(" run " in f" {line} " for line in lines) == 2
    only = json.loads(_invoke("history", "--endpoint-name", "iris-model", "--json").output)
    assert [row["to_version"] for row in only["deployments"]] == [v2, v1]
    assert only["rollbacks"][0]["detail"]["to_version"] == v1


def _kill_stable() -> None:
    kill_server(DeploymentStore(".mlops").endpoint("iris-model")["pid"])


def test_next_deployment_brings_a_dead_endpoint_back_and_switches_to_the_new_version(pipeline):
    url, v1, v2 = _deploy_twice(pipeline)
    _kill_stable()
    result = pipeline()
    assert result.exit_code == 0, result.output
    v3 = pipeline.results()["summary"]["endpoint_version"]
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v3
    events = [event["kind"] for event in DeploymentStore(".mlops").events("iris-model")]
    assert "endpoint_restarted" in events


def test_a_failing_version_is_never_served_when_the_endpoint_had_died(pipeline, workdir):
    pipeline()
    url, v1 = pipeline.results()["summary"]["endpoint_url"], pipeline.results()["summary"]["endpoint_version"]
    _kill_stable()
    job = train_job(workdir, ServedDifferentlyPipeline)
    assert pipeline("--mode", "deployment", "--training-job", job, "--set", "champion_policy=off").exit_code == 1
    assert pipeline.results()["rollback"]["final_state"] == "kept_previous"
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v1


@pytest.mark.unit
def test_history_verify_detects_events_cut_off_the_end(pipeline):
    pipeline("--mode", "training")
    _tamper("DROP TRIGGER events_append_only_delete",
            "DELETE FROM events WHERE id >= (SELECT max(id) - 1 FROM events)")
    result = _invoke("history", "--verify")
    assert result.exit_code == 1 and "are missing" in result.output


@pytest.mark.unit
def test_subcommands_refuse_an_endpoint_name_that_is_not_a_plain_name(pipeline):
    result = _invoke("rollback", "--endpoint-name", "../x")
    assert result.exit_code == 2 and "Invalid value for '--endpoint-name'" in result.output


def test_cleanup_with_an_empty_prefix_removes_every_endpoint(pipeline):
    pipeline()
    assert _invoke("cleanup", "--prefix", "").exit_code == 0
    assert DeploymentStore(".mlops").endpoints() == []


def test_a_token_set_by_a_later_deployment_applies_to_the_running_endpoint(pipeline):
    pipeline()
    url = pipeline.results()["summary"]["endpoint_url"]
    body, headers = "5.1,3.5,1.4,0.2", {"Content-Type": "text/csv"}
    assert requests.post(f"{url}/invocations", data=body, headers=headers).status_code == 200
    assert pipeline(env={"MLOPS_ENDPOINT_TOKEN": "tok-later-1234567"}).exit_code == 0
    assert requests.post(f"{url}/invocations", data=body, headers=headers).status_code == 401
    authorized = {**headers, "Authorization": "Bearer tok-later-1234567"}
    assert requests.post(f"{url}/invocations", data=body, headers=authorized).status_code == 200
