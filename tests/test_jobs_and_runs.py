"""`jobs` and `runs`: what was trained and what each run did, at a glance, through the real CLI."""
from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest
import requests
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.reporting.html_report import report_path
from pipeline.state.store import DeploymentStore
from tests.conftest import SharedRun, wait_for


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_jobs_lists_training_jobs_newest_first_with_the_gate_and_where_they_serve(pipeline):
    assert pipeline().exit_code == 0
    deployed = pipeline.results()
    assert pipeline("--mode", "training", "--accuracy-threshold", "1.0", "--minimum-accuracy", "0.5",
                    "--set", "gate_metric=cv_mean_accuracy").exit_code == 3
    held = pipeline.results()
    listed = json.loads(_invoke("jobs", "--json").output)["jobs"]
    assert [job["name"] for job in listed] == [held["summary"]["training_job"], deployed["summary"]["training_job"]]
    newest, oldest = listed
    assert newest["gate_decision"] == "held" and newest["gate_metric"] == "cv_mean_accuracy"
    assert newest["deployed_as"] == []
    assert oldest["gate_decision"] == "deploy" and oldest["dataset"] == "iris" and len(oldest["data_sha256"]) == 64
    assert oldest["deployed_as"] == [{"endpoint_name": "iris-model",
                                      "version": deployed["summary"]["endpoint_version"]}]
    header, newer, older = _invoke("jobs").output.splitlines()
    assert header.split()[:3] == ["created", "training", "job"]
    assert newer.split()[1] == held["summary"]["training_job"] and newer.split()[-2:] == ["held", "-"]
    assert older.split()[2:4] == ["iris", oldest["data_sha256"][:12]]
    assert older.split()[-1] == f"iris-model:{deployed['summary']['endpoint_version']}"


@pytest.mark.unit
def test_a_job_gated_on_a_metric_without_an_interval_is_not_shown_with_accuracys(pipeline):
    assert pipeline("--mode", "training", "--set", "gate_metric=f1_weighted").exit_code == 0
    [job] = json.loads(_invoke("jobs", "--json").output)["jobs"]
    assert job["gate_metric"] == "f1_weighted" and job["gate_value"] == pipeline.results()["gate"]["value"]
    assert job["gate_interval"] is None
    assert "[" not in _invoke("jobs").output.splitlines()[1]


@pytest.mark.unit
def test_jobs_filters_by_prefix(pipeline):
    assert pipeline("--mode", "training").exit_code == 0
    assert json.loads(_invoke("jobs", "--prefix", "iris-", "--json").output)["jobs"]
    assert json.loads(_invoke("jobs", "--prefix", "fraud_", "--json").output)["jobs"] == []
    assert "no training jobs named fraud_*" in _invoke("jobs", "--prefix", "fraud_").output


@pytest.mark.unit
def test_limit_shows_the_newest_and_says_there_are_more(pipeline):
    for _ in range(3):
        assert pipeline("--mode", "training").exit_code == 0
    for command, key in (("jobs", "jobs"), ("runs", "runs")):
        listed = json.loads(_invoke(command, "--json").output)
        assert len(listed[key]) == 3 and listed["more"] is False
        limited = json.loads(_invoke(command, "--limit", "2", "--json").output)
        assert limited[key] == listed[key][:2] and limited["more"] is True
        text = _invoke(command, "--limit", "2")
        assert len(text.stdout.splitlines()) == 3  # the header and two rows
        assert f"(the 2 newest {'training jobs' if command == 'jobs' else 'runs'}; --limit N shows more)" \
            in text.stderr


def test_runs_lists_each_run_with_its_outcome_and_results_file(default_run: SharedRun, monkeypatch):
    monkeypatch.chdir(default_run.root)  # the store of one default run, read only
    results = default_run.results
    [run] = json.loads(_invoke("runs", "--json").output)["runs"]
    assert run["run_id"] == results["run_id"] and run["status"] == "success" and run["exit_code"] == 0
    assert run["results_file"] == str(default_run.results_file) and run["duration_seconds"] >= 0
    assert run["report_html"] == str(report_path(default_run.root / ".mlops", results["run_id"]))
    assert run["training_job"] == results["summary"]["training_job"]
    assert run["version"] == results["summary"]["endpoint_version"]
    header, row = _invoke("runs").output.splitlines()
    assert header.split()[:4] == ["started", "run", "id", "mode"]
    assert row.split()[1:6] == [results["run_id"], "full", "success", "0", f"{run['duration_seconds']:.1f}s"]
    assert row.index(results["run_id"]) == header.index("run id")  # columns line up under the header


def test_runs_show_prints_a_run_summary_again(default_run: SharedRun, monkeypatch):
    monkeypatch.chdir(default_run.root)  # the store of one default run, read only
    shown = _invoke("runs", "show", default_run.results["run_id"])
    assert shown.exit_code == 0
    assert "ENTERPRISE MLOPS PIPELINE COMPLETED" in shown.output and "Status: SUCCESS" in shown.output


@pytest.mark.unit
def test_a_run_records_the_sha256_of_the_results_file_it_wrote(pipeline, workdir):
    assert pipeline("--mode", "training").exit_code == 0
    run_id = pipeline.results()["run_id"]
    row = DeploymentStore(workdir / ".mlops").run(run_id)
    assert row["results_sha256"] == hashlib.sha256(pipeline.last_output.read_bytes()).hexdigest()


@pytest.mark.unit
def test_runs_show_refuses_a_results_file_changed_after_the_run(pipeline):
    assert pipeline("--mode", "training").exit_code == 0
    run_id = pipeline.results()["run_id"]
    document = json.loads(pipeline.last_output.read_text())
    document["pipeline_status"] = "success" if document["pipeline_status"] != "success" else "failed"
    pipeline.last_output.write_text(json.dumps(document, indent=2))
    shown = _invoke("runs", "show", run_id)
    assert shown.exit_code == 2 and "PIPELINE" not in shown.output
    assert shown.output.startswith(f"Error: the results file of run {run_id!r}, {str(pipeline.last_output)!r}, is "
                                   "not the one the run wrote: its sha256 differs from the one recorded in")


@pytest.mark.unit
def test_runs_show_says_a_results_file_without_a_recorded_sha256_is_unverified(pipeline, workdir):
    assert pipeline("--mode", "training").exit_code == 0
    run_id = pipeline.results()["run_id"]
    with sqlite3.connect(workdir / ".mlops" / "state.db") as conn:  # a run recorded before results were hashed
        conn.execute("UPDATE runs SET results_sha256=NULL WHERE run_id=?", (run_id,))
    shown = _invoke("runs", "show", run_id)
    assert shown.exit_code == 0 and "Status: SUCCESS" in shown.stdout
    assert f"Warning: run {run_id} recorded no sha256 of its results file" in shown.stderr
    assert f"{pipeline.last_output} is shown unverified" in shown.stderr


@pytest.mark.unit
def test_runs_show_says_where_the_runs_html_report_is(pipeline, workdir):
    assert pipeline("--mode", "training").exit_code == 0
    run_id = pipeline.results()["run_id"]
    assert f"Run report: {report_path(workdir / '.mlops', run_id)}" in _invoke("runs", "show", run_id).output


@pytest.mark.unit
def test_runs_show_finds_a_relative_results_file_from_another_directory(workdir, monkeypatch):
    store = workdir / "state"
    assert _invoke("--mode", "training", "--store-dir", str(store), "--output-file", "results.json",
                   "--log-file", "pipeline.log").exit_code == 0
    [run] = json.loads(_invoke("--store-dir", str(store), "runs", "--json").output)["runs"]
    assert run["results_file"] == str(workdir / "results.json")
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    shown = _invoke("--store-dir", str(store), "runs", "show", run["run_id"])
    assert shown.exit_code == 0 and "Status: SUCCESS" in shown.output


def test_runs_show_of_a_monitor_run_prints_the_report_it_wrote(pipeline, workdir):
    assert pipeline().exit_code == 0
    url = pipeline.results()["summary"]["endpoint_url"]
    for _ in range(3):  # traffic of its own for the monitor to judge (the endpoint tests' is not captured)
        assert requests.post(f"{url}/invocations", data="5.1,3.5,1.4,0.2", timeout=10,
                             headers={"Content-Type": "text/csv"}).status_code == 200
    wait_for(lambda: list((workdir / ".mlops" / "endpoints").rglob("*.jsonl")))  # a worker flushed its captures
    # too few rows for a verdict (exit 2), but the report is written
    assert _invoke("monitor", "--endpoint-name", "iris-model", "--output-file", "monitor.json").exit_code == 2
    [run, _] = json.loads(_invoke("runs", "--json").output)["runs"]
    assert run["mode"] == "monitor" and run["results_file"] == str(workdir / "monitor.json")
    shown = _invoke("runs", "show", run["run_id"])
    assert shown.exit_code == 0 and "PIPELINE" not in shown.output, shown.output
    heading, report = shown.output.split("\n", 1)
    assert heading == f"monitor run {run['run_id']}, report {workdir / 'monitor.json'}:"
    assert json.loads(report) == json.loads((workdir / "monitor.json").read_text())
    assert DeploymentStore(workdir / ".mlops").run(run["run_id"])["results_sha256"] == \
        hashlib.sha256((workdir / "monitor.json").read_bytes()).hexdigest()


@pytest.mark.unit
def test_runs_show_of_an_unknown_run_is_a_usage_error(pipeline):
    result = _invoke("runs", "show", "20990101T000000Z-00000000")
    assert result.exit_code == 2 and "not found" in result.output


@pytest.mark.unit
def test_every_command_has_an_example_in_its_help_and_a_line_in_the_readme():
    from tests.conftest import REPO

    commands = REPO.joinpath("README.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    for name in cli.commands:
        assert "Example" in _invoke(name, "--help").output, name
        assert f"run_mlops_pipeline.sh {name}" in commands, name
    for name in getattr(cli.commands["runs"], "commands", {}):
        assert "Example" in _invoke("runs", name, "--help").output, name


# --------------------------------------------------------------------------- the held-out rows' CSV
@pytest.mark.unit
def test_the_held_out_csv_written_in_the_background_is_what_pandas_writes(tmp_path):
    import pandas as pd

    from pipeline.training.jobs import HeldoutCsv

    rows = pd.DataFrame({"a": [0.1, 1e-05, 2.5], "b": [3, 4, 5], "label": ["x", "y", "x"]})
    pending = HeldoutCsv(rows, tmp_path / "jobs")
    pending.move_to(tmp_path / "heldout.csv")
    pending.discard()
    rows.to_csv(tmp_path / "direct.csv", index=False)
    assert (tmp_path / "heldout.csv").read_bytes() == (tmp_path / "direct.csv").read_bytes()
    assert list((tmp_path / "jobs").iterdir()) == []


@pytest.mark.unit
def test_a_held_out_csv_no_job_took_leaves_no_file(tmp_path):
    import pandas as pd

    from pipeline.training.jobs import HeldoutCsv

    HeldoutCsv(pd.DataFrame({"a": [1.0], "label": [0]}), tmp_path).discard()  # training failed after the split
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_a_held_out_csv_that_could_not_be_written_fails_the_job(tmp_path):
    import pandas as pd

    from pipeline.training.jobs import HeldoutCsv

    class Unwritable(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

    pending = HeldoutCsv(Unwritable({"a": [1.0]}), tmp_path)
    with pytest.raises(OSError, match="No space left"):
        pending.move_to(tmp_path / "heldout.csv")
    pending.discard()
    assert not (tmp_path / "heldout.csv").exists()
