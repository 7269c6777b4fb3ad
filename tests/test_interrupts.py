"""Ctrl-C and SIGTERM: the first stops the work, every later one waits for the run to record how it ended, and the
records never lie (pipeline/interrupts.py). Through the real script, signalled at several moments of a bake."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from pipeline import interrupts
from pipeline.cli import cli
from pipeline.state.store import DeploymentStore
from tests.conftest import PYTHON, REPO, wait_for


# --------------------------------------------------------------------------- the rule, in process
@pytest.mark.unit
def test_the_first_interrupt_is_raised_and_later_ones_are_only_noted():
    with interrupts.handled():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)  # noted: nothing raised
        signal.raise_signal(signal.SIGINT)
        assert interrupts.pending() == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not interrupts._handler  # the previous handlers are back


@pytest.mark.unit
def test_once_the_run_records_how_it_ended_even_the_first_interrupt_is_only_noted():
    with interrupts.handled():
        interrupts.defer()
        signal.raise_signal(signal.SIGINT)
        assert interrupts.pending() == "SIGINT"
    assert interrupts.pending() is None


# --------------------------------------------------------------------------- a real bake, signalled
def _bake_in_background(job: str, output: str, *settings: str) -> subprocess.Popen:
    sets = [arg for setting in ("cv_folds=3", "performance_requests=40", *settings) for arg in ("--set", setting)]
    return subprocess.Popen([PYTHON, str(REPO / "run_pipeline.py"), "--mode", "deployment", "--training-job", job,
                             "--traffic-routing", "CANARY", "--output-file", output, "--dotenv-file", "bake.env",
                             *sets], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _ping(url: str) -> dict:
    try:
        return requests.get(f"{url}/ping", timeout=5).json()
    except (requests.RequestException, ValueError):
        return {}


def _first_then_trained(pipeline) -> tuple[str, str, str]:
    assert pipeline().exit_code == 0
    url, v1 = pipeline.results()["summary"]["endpoint_url"], pipeline.results()["summary"]["endpoint_version"]
    assert pipeline("--mode", "training").exit_code == 0
    return url, v1, pipeline.results()["summary"]["training_job"]


def _recorded_as(results_file: str, exit_code: int) -> dict:
    """The results file, the dotenv report and the store all say the same thing, and it is the exit code."""
    results = json.loads(Path(results_file).read_text())
    assert results["exit_code"] == exit_code
    run = next(row for row in DeploymentStore(".mlops").runs() if row["run_id"] == results["run_id"])
    assert (run["status"], run["exit_code"]) == (results["pipeline_status"], exit_code)
    assert f"MLOPS_EXIT_CODE={exit_code}" in Path("bake.env").read_text()
    assert all(row["status"] != "in_progress" for row in DeploymentStore(".mlops").deployments("iris-model"))
    shown = CliRunner().invoke(cli, ["runs", "show", results["run_id"]])
    assert shown.exit_code == 0, shown.output
    return results


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_a_bake_changes_nothing_the_run_records(pipeline, second):
    url, v1, job = _first_then_trained(pipeline)
    process = _bake_in_background(job, "baking.json", "baking_seconds=120")
    wait_for(lambda: bool(_ping(url).get("split")), seconds=120)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)  # the second lands while the first is being handled: the rollback of the split
    process.send_signal(second)
    code = process.wait(timeout=120)
    assert code == 1, process.stderr.read() if process.stderr else ""
    results = _recorded_as("baking.json", 1)
    assert results["pipeline_status"] == "failed" and results["rollback"]["final_state"] == "kept_previous"
    wait_for(lambda: not _ping(url).get("split"), seconds=30)
    assert _ping(url)["version"] == v1


def test_signals_a_moment_after_the_rollback_began_still_leave_a_complete_record(pipeline):
    url, v1, job = _first_then_trained(pipeline)
    process = _bake_in_background(job, "baking.json", "baking_seconds=120")
    wait_for(lambda: bool(_ping(url).get("split")), seconds=120)
    process.send_signal(signal.SIGTERM)
    for _ in range(5):  # a cancelled CI job's runner may signal again and again
        time.sleep(0.2)
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGINT)
    code = process.wait(timeout=120)
    assert code == 1
    assert _recorded_as("baking.json", 1)["rollback"]["final_state"] == "kept_previous"


def test_a_signal_just_after_the_promotion_never_escapes_as_a_signal_exit_code(pipeline):
    url, v1, job = _first_then_trained(pipeline)
    process = _bake_in_background(job, "baking.json", "baking_seconds=1", "insufficient_traffic=promote")
    wait_for(lambda: _ping(url).get("version") not in (None, v1) and not _ping(url).get("split"), seconds=120,
             interval=0.01)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    assert code == 0  # the promotion was decided and is finished and recorded: never 143
    results = _recorded_as("baking.json", 0)
    assert results["phases"]["deployment"]["deployment_results"]["final_state"] == "deployed"
    assert _ping(url)["version"] == results["summary"]["endpoint_version"] != v1
