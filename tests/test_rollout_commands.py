"""``rollout status|promote|abort``: a person sees or ends a bake while the baking run holds the endpoint's lock."""
from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import requests
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.state.store import DeploymentStore
from tests.conftest import PYTHON, REPO, wait_for


def _bake(job: str) -> subprocess.Popen:
    sets = [arg for setting in ("cv_folds=3", "performance_requests=40", "baking_seconds=300")
            for arg in ("--set", setting)]
    return subprocess.Popen([PYTHON, str(REPO / "run_pipeline.py"), "--mode", "deployment", "--training-job", job,
                             "--traffic-routing", "LINEAR", "--output-file", "baking.json", *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _baking(pipeline) -> tuple[str, str, subprocess.Popen]:
    assert pipeline().exit_code == 0
    url, v1 = pipeline.results()["summary"]["endpoint_url"], pipeline.results()["summary"]["endpoint_version"]
    assert pipeline("--mode", "training").exit_code == 0
    process = _bake(pipeline.results()["summary"]["training_job"])
    wait_for(lambda: CliRunner().invoke(cli, ["rollout", "status", "--endpoint-name", "iris-model"]).exit_code == 0,
             seconds=120, interval=0.2)
    return url, v1, process


def _serving(url: str) -> dict:
    return requests.get(f"{url}/ping", timeout=5).json()


def test_status_shows_the_bake_and_abort_ends_it_recorded_as_the_person_s(pipeline):
    url, v1, process = _baking(pipeline)
    try:
        status = CliRunner().invoke(cli, ["rollout", "status", "--endpoint-name", "iris-model"])
        assert f"bakes beside {v1} (LINEAR, 300s per interval" in status.output
        aborted = CliRunner().invoke(cli, ["rollout", "abort", "--endpoint-name", "iris-model", "--by", "alice"])
        assert aborted.exit_code == 0, aborted.output
        assert "kept_previous (aborted by alice (in interval 1 of 4, 3 more skipped))" in aborted.output
        assert process.wait(timeout=120) == 1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    results = json.loads(Path("baking.json").read_text())
    assert results["rollback"]["final_state"] == "kept_previous"
    assert results["phases"]["rollout"]["outcome"] == "aborted"
    assert _serving(url)["version"] == v1 and not _serving(url).get("split")
    asked = [e for e in DeploymentStore(".mlops").events("iris-model") if e["kind"] == "rollout_requested"]
    assert asked[0]["detail"]["by"] == "alice" and asked[0]["detail"]["action"] == "abort"


def test_promote_skips_the_remaining_intervals_and_the_candidate_serves(pipeline, monkeypatch):
    url, v1, process = _baking(pipeline)
    monkeypatch.setenv("GITLAB_USER_LOGIN", "ci-bob")
    try:
        promoted = CliRunner().invoke(cli, ["rollout", "promote", "--endpoint-name", "iris-model"])
        assert promoted.exit_code == 0, promoted.output
        assert "deployed (promoted by ci-bob" in promoted.output
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    results = json.loads(Path("baking.json").read_text())
    assert results["pipeline_status"] == "success"
    assert _serving(url)["version"] == results["summary"]["endpoint_version"] != v1


def test_without_a_bake_there_is_nothing_to_promote_or_abort(pipeline):
    assert pipeline().exit_code == 0
    status = CliRunner().invoke(cli, ["rollout", "status", "--endpoint-name", "iris-model"])
    assert status.exit_code == 1 and "iris-model: no bake in progress" in status.output
    result = CliRunner().invoke(cli, ["rollout", "abort", "--endpoint-name", "iris-model"])
    assert result.exit_code == 2 and "no bake in progress on endpoint 'iris-model'" in result.output
