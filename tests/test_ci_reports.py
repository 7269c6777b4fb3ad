"""What CI machines read: the dotenv, JUnit and metrics reports, JSON log lines, the plain summary,
and examples/gitlab-ci.yml run job by job the way a GitLab runner would."""
from __future__ import annotations

import http.server
import io
import json
import logging
import os
import re
import shlex
import shutil
import sys
import threading
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from pipeline import cli as cli_module
from pipeline.logs import configure_logging, log_phase, phase_of, set_run_id
from pipeline.reporting.ci_reports import DOTENV_KEY, render_dotenv, render_junit, render_metrics
from pipeline.reporting.results import Results
from tests.conftest import REPO, run_script, stop_servers_under, train_job
from tests.served_models import ServedDifferentlyPipeline

EMOJI = re.compile("[\u2600-\u27bf\U0001f300-\U0001faff]")


# --------------------------------------------------------------------------- how GitLab reads the reports
def gitlab_dotenv(data: bytes) -> dict[str, str]:
    """Ci::ParseDotenvArtifactService: under 5 KiB, every line ``^(.*?)=(.*)$`` (both sides stripped, quotes
    kept), keys GitLab accepts, at most 20 variables (the smallest plan limit)."""
    assert len(data) < 5 * 1024
    variables = {}
    for line in data.decode().splitlines(keepends=True):
        found = re.findall(r"^(.*?)=(.*)$", line, flags=re.MULTILINE)
        assert found, f"GitLab: Invalid Format: {line!r}"
        key, value = (part.strip() for part in found[-1])
        assert DOTENV_KEY.fullmatch(key), key
        variables[key] = value
    assert len(variables) <= 20
    return variables


def gitlab_metrics(data: bytes) -> dict[str, float]:
    """Gitlab::Ci::Parsers::Metrics::Generic: drop comments, shell-split, name then value."""
    metrics = {}
    for line in data.decode().splitlines():
        name, *values = shlex.split(re.sub(r"#.*$", "", line))
        assert values, line
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name), name
        metrics[name] = float(values[0])
    return metrics


def junit_cases(data: bytes) -> dict[str, dict[str, str]]:
    """``suite/case`` -> status and message, checking the counts each suite claims."""
    root = ET.fromstring(data)
    assert root.tag == "testsuites"
    cases = {}
    for suite in root.iter("testsuite"):
        statuses = []
        for case in suite.iter("testcase"):
            status, message = "passed", ""
            for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
                element = case.find(tag)
                if element is not None:
                    status, message = name, element.get("message", "") + "\n" + (element.text or "")
            statuses.append(status)
            cases[f"{suite.get('name')}/{case.get('name')}"] = {"status": status, "message": message}
        assert int(suite.get("tests")) == len(statuses)
        assert int(suite.get("failures")) == statuses.count("failed")
        assert int(suite.get("skipped")) == statuses.count("skipped")
    assert int(root.get("tests")) == len(cases)
    return cases


def _results(**changes: Any) -> Results:
    """A held model's results, as the orchestrator writes them (and the reports read them back)."""
    results: dict[str, Any] = {
        "run_id": "20250823T120000Z-0123abcd", "mode": "full", "pipeline_status": "held", "exit_code": 3,
        "summary": {"training_accuracy": 0.9333333333, "training_job": "iris-classifier-20250823-120000",
                    "deployment_occurred": False, "endpoint_name": None, "testing_passed": None},
        "gate": {"decision": "held", "metric": "accuracy", "value": 0.9333333333, "threshold": 0.95, "minimum": 0.9,
                 "interval": [0.83, 0.98], "deploys": False,
                 "reason": "accuracy 93.33% is below the deploy threshold 95.00% (minimum 90.00%)",
                 "warning": "the 95% interval of accuracy [83.00%, 98.00%] straddles the threshold 95.00%"},
        "phases": {"training": {"evaluation_results": {"accuracy": 0.9333333333, "cv_mean_accuracy": 0.95}}},
        "rollback": None, "error": None,
    }
    results.update(changes)
    return Results.model_validate(results)


# --------------------------------------------------------------------------- dotenv
def test_dotenv_reads_the_same_to_gitlab_and_to_a_shell_whatever_the_values(tmp_path):
    hostile = "iris job$HOME `id` 'q' \"dq\" ;rm -rf / \\\nSECOND=line\t# not a comment"
    results = _results(summary={"training_accuracy": 1.0, "training_job": hostile, "deployment_occurred": True,
                                "endpoint_name": "iris-model", "endpoint_url": "http://127.0.0.1:8080",
                                "endpoint_version": "iris-model-20250823-120000", "testing_passed": None})
    data = render_dotenv(results)
    variables = gitlab_dotenv(data)
    assert variables["MLOPS_PIPELINE_STATUS"] == "held"
    assert variables["MLOPS_EXIT_CODE"] == "3"
    assert variables["MLOPS_GATE_DECISION"] == "held"
    assert variables["MLOPS_TRAINING_ACCURACY"] == "1.0"
    assert variables["MLOPS_DEPLOYMENT_OCCURRED"] == "true"
    assert variables["MLOPS_TESTING_PASSED"] == ""  # not tested: empty, not "false"
    assert variables["MLOPS_ENDPOINT_URL"] == "http://127.0.0.1:8080"
    assert "SECOND" not in variables and len(data.splitlines()) == len(variables)
    assert re.fullmatch(r"[A-Za-z0-9_.:/@+,%=-]+", variables["MLOPS_TRAINING_JOB"])
    assert variables["MLOPS_TRAINING_JOB"].startswith("iris_job_HOME_")
    (tmp_path / "ci.env").write_bytes(data)
    script = "set -a; . ./ci.env; for k in $(cut -d= -f1 ci.env); do printf '%s=%s\\n' \"$k\" \"${!k}\"; done"
    sourced = run_script("bash", "-c", script, cwd=tmp_path)
    assert sourced.returncode == 0, sourced.stderr
    assert dict(line.split("=", 1) for line in sourced.stdout.splitlines()) == variables


def test_dotenv_stays_within_gitlab_limits_however_long_the_values():
    long = "x" * 10_000
    results = _results(run_id=long, mode=long, pipeline_status=long,
                       summary={key: long for key in ("training_job", "endpoint_name", "endpoint_url",
                                                      "endpoint_version")})
    variables = gitlab_dotenv(render_dotenv(results))
    assert all(key.startswith("MLOPS_") for key in variables)
    assert max(len(value) for value in variables.values()) <= 255


# --------------------------------------------------------------------------- JUnit and metrics
def test_junit_says_why_the_gate_held_the_model_with_the_numbers():
    cases = junit_cases(render_junit(_results()))
    assert cases["gate/minimum_accuracy"]["status"] == "passed"
    held = cases["gate/accuracy_threshold"]
    assert held["status"] == "failed"
    assert "accuracy 0.933333 is below accuracy_threshold 0.95 (minimum_accuracy 0.9)" in held["message"]
    assert "held, nothing was deployed" in held["message"]
    assert "straddles the threshold" in held["message"]  # the interval warning travels with it
    for check in ("health", "prediction_accuracy", "performance", "robustness"):
        skipped = cases[f"endpoint tests/{check}"]
        assert skipped["status"] == "skipped" and "nothing was deployed (gate held" in skipped["message"]


def test_junit_rejected_model_fails_both_gate_checks():
    gate = {**_results().gate.model_dump(), "decision": "rejected", "value": 0.8}
    cases = junit_cases(render_junit(_results(gate=gate, pipeline_status="rejected")))
    assert "0.8 is below minimum_accuracy 0.9: the model is rejected" in cases["gate/minimum_accuracy"]["message"]
    assert "the model is rejected, nothing was deployed" in cases["gate/accuracy_threshold"]["message"]


def test_junit_endpoint_checks_after_a_failed_health_check_are_skipped_not_passed():
    testing = {"checks": {"health": {"passed": False, "seconds": 20.0, "attempts": 9,
                                     "reason": "not healthy within 20s: /ping answered 503"}}}
    results = _results(mode="testing", gate=None, phases={"testing": testing}, pipeline_status="failed")
    data = render_junit(results)
    cases = junit_cases(data)
    assert cases["endpoint tests/health"] == {
        "status": "failed",
        "message": "health: not healthy within 20s: /ping answered 503\n"
                   "health: not healthy within 20s: /ping answered 503\n\nseconds: 20.0\nattempts: 9"}
    assert cases["endpoint tests/performance"]["message"].startswith("not run: the health check failed")
    assert not any(name.startswith("gate/") for name in cases)  # --mode testing has no gate
    assert ET.fromstring(data).find(".//testcase[@name='health']").get("time") == "20.0"


def test_junit_text_is_valid_xml_whatever_the_reason_holds():
    testing = {"checks": {"health": {"passed": True},
                          "prediction_accuracy": {"passed": False, "reason": "<b>&\x00\x1b[31m]]>\u2603"}}}
    cases = junit_cases(render_junit(_results(phases={"testing": testing})))
    assert "<b>&" in cases["endpoint tests/prediction_accuracy"]["message"]


def test_metrics_are_name_value_lines_of_what_was_measured():
    assert gitlab_metrics(render_metrics(_results())) == {"mlops_training_accuracy": 0.933333,
                                                          "mlops_cv_mean_accuracy": 0.95}
    testing = {"test_summary": {"p95_latency_ms": 4.2, "throughput_rps": 812.5}}
    metrics = gitlab_metrics(render_metrics(_results(phases={"testing": testing}, summary={})))
    assert metrics == {"mlops_endpoint_latency_p95_ms": 4.2, "mlops_endpoint_throughput_rps": 812.5}


# --------------------------------------------------------------------------- through the CLI
def _report_flags(root: Path) -> list[str]:
    return ["--dotenv-file", str(root / "out" / "ci.env"), "--junit-xml", str(root / "out" / "junit.xml"),
            "--metrics-file", str(root / "out" / "metrics.txt")]


def _reports(root: Path) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, float]]:
    out = root / "out"
    assert not list(out.glob(".*.tmp"))  # written atomically: no temporary left behind
    return (gitlab_dotenv((out / "ci.env").read_bytes()), junit_cases((out / "junit.xml").read_bytes()),
            gitlab_metrics((out / "metrics.txt").read_bytes()))


def test_cli_writes_the_reports_when_the_gate_holds(pipeline, workdir):
    result = pipeline("--accuracy-threshold", "1.0", "--minimum-accuracy", "0.5", "--model-type", "random_forest",
                      *_report_flags(workdir))
    assert result.exit_code == 3
    results = pipeline.results()
    dotenv, cases, metrics = _reports(workdir)
    assert dotenv["MLOPS_PIPELINE_STATUS"] == "held" and dotenv["MLOPS_EXIT_CODE"] == "3"
    assert dotenv["MLOPS_RUN_ID"] == results["run_id"]
    assert dotenv["MLOPS_TRAINING_JOB"] == results["summary"]["training_job"]
    assert dotenv["MLOPS_DEPLOYMENT_OCCURRED"] == "false" and dotenv["MLOPS_ENDPOINT_NAME"] == ""
    value = round(results["gate"]["value"], 6)
    assert f"accuracy {value!r} is below accuracy_threshold 1.0" in cases["gate/accuracy_threshold"]["message"]
    assert metrics["mlops_training_accuracy"] == value
    assert metrics["mlops_cv_mean_accuracy"] == round(results["phases"]["training"]["evaluation_results"]
                                                      ["cv_mean_accuracy"], 6)


def test_cli_reports_say_why_a_deployment_was_rolled_back(pipeline, workdir):
    job = train_job(workdir, ServedDifferentlyPipeline)
    result = pipeline("--mode", "deployment", "--training-job", job, *_report_flags(workdir))
    assert result.exit_code == 1
    dotenv, cases, metrics = _reports(workdir)
    assert dotenv["MLOPS_PIPELINE_STATUS"] == "failed" and dotenv["MLOPS_EXIT_CODE"] == "1"
    assert dotenv["MLOPS_DEPLOYMENT_STATE"] == "removed" and dotenv["MLOPS_TESTING_PASSED"] == "false"
    assert dotenv["MLOPS_ENDPOINT_NAME"] == "iris-model"
    assert dotenv["MLOPS_ENDPOINT_VERSION"] == dotenv["MLOPS_ENDPOINT_URL"] == ""  # nothing serves: removed
    parity = cases["endpoint tests/prediction_accuracy"]
    assert parity["status"] == "failed" and "30 of 30 predictions differ from the offline model" in parity["message"]
    assert cases["endpoint tests/health"]["status"] == "passed"
    assert cases["gate/accuracy_threshold"]["status"] == "passed"
    rolled_back = cases["deployment/deployment"]
    assert rolled_back["status"] == "failed"
    assert "was not kept (removed, now serving nothing): prediction_accuracy: 30 of 30" in rolled_back["message"]
    assert set(metrics) == {"mlops_training_accuracy", "mlops_cv_mean_accuracy", "mlops_endpoint_latency_p95_ms",
                            "mlops_endpoint_throughput_rps", "mlops_gate_rows_needed"}


def test_cli_error_during_the_run_is_a_junit_error(pipeline, workdir):
    result = pipeline("--mode", "testing", "--endpoint-name", "nope", *_report_flags(workdir))
    assert result.exit_code == 2
    dotenv, cases, metrics = _reports(workdir)
    assert dotenv["MLOPS_EXIT_CODE"] == "2"
    assert cases["pipeline/run"]["status"] == "error"
    assert "exit code 2: endpoint 'nope' not found" in cases["pipeline/run"]["message"]
    assert cases["endpoint tests/health"]["status"] == "skipped"
    assert metrics == {}


def test_cli_usage_error_before_the_run_writes_no_reports(pipeline, workdir):
    result = pipeline("--set", "no_such_key=1", *_report_flags(workdir))
    assert result.exit_code == 2
    assert not (workdir / "out").exists()  # documented: no run, no results, no reports


def test_cli_report_that_cannot_be_written_is_an_error_line_and_the_others_are_written(pipeline, workdir):
    # Writable when checked before the run; the run itself makes state.db a file, so the report fails at the end.
    unwritable = workdir / ".mlops" / "state.db" / "junit.xml"
    result = pipeline("--mode", "training", "--junit-xml", str(unwritable), "--dotenv-file", str(workdir / "ci.env"))
    assert result.exit_code == 0  # the run's verdict stands; the missing report is GitLab's to flag
    assert f"report not written: --junit-xml {str(unwritable)!r}: cannot write" in result.stderr
    assert gitlab_dotenv((workdir / "ci.env").read_bytes())["MLOPS_EXIT_CODE"] == "0"


def test_cli_json_log_lines_carry_time_level_phase_message_and_run_id(pipeline, workdir):
    result = pipeline("--mode", "training", "--log-format", "json")
    assert result.exit_code == 0, result.output
    run_id = pipeline.results()["run_id"]
    for text in ((workdir / "pipeline.log").read_text(), result.stderr):
        entries = [json.loads(line) for line in text.splitlines()]
        assert entries
        assert all(set(entry) >= {"time", "level", "phase", "message", "run_id"} for entry in entries)
        assert {entry["run_id"] for entry in entries} == {run_id}
        assert {"training", "gate"} <= {entry["phase"] for entry in entries}
        gate = next(entry for entry in entries if entry["phase"] == "gate")
        assert gate["level"] == "INFO" and gate["message"].startswith("gate: deploy")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", gate["time"])


def test_text_logs_stay_the_default(pipeline, workdir):
    pipeline("--mode", "training")
    assert not (workdir / "pipeline.log").read_text().startswith("{")


def test_json_log_lines_are_scrubbed_and_hold_the_traceback_on_one_line(tmp_path):
    path = configure_logging("INFO", tmp_path / "x.log", secrets=["s3cr3t-token"], log_format="json")
    set_run_id("run-1")
    log = logging.getLogger("pipeline.deployment.steps")
    try:
        raise RuntimeError("failed with s3cr3t-token\nsecond line")
    except RuntimeError:
        with log_phase("deployment"):
            log.exception("calling https://hooks.example/s3cr3t-token")
    for handler in logging.getLogger("pipeline").handlers:
        handler.flush()
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["phase"] == "deployment" and entry["run_id"] == "run-1" and entry["level"] == "ERROR"
    assert "s3cr3t-token" not in lines[0] and "RuntimeError" in entry["exception"]


@pytest.mark.parametrize(("name", "current_phase", "phase"), [
    ("pipeline.training.fitting", "training", "training"),
    ("pipeline.training.fitting", "gate", "gate"),
    ("pipeline.testing", "testing", "testing"),
    ("pipeline.notifications.notifier", "notifications", "notifications"),
    ("pipeline.run.orchestrator", "rollback", "rollback"),
    ("pipeline.run.orchestrator", None, "pipeline"),
    ("pipeline", None, "pipeline"),
    ("botocore.retries", "deployment", "botocore"),
])
def test_phase_is_the_one_announced_whichever_module_logs(name, current_phase, phase):
    record = logging.LogRecord(name, logging.INFO, __file__, 1, "x", (), None)
    if current_phase is None:
        assert phase_of(record) == phase
    else:
        with log_phase(current_phase):
            assert phase_of(record) == phase


def test_notification_lines_carry_the_notifications_phase(tmp_path, slack):
    from pipeline.config import load_config
    from pipeline.notifications import Notifier
    from pipeline.notifications.message import RunSummary

    path = configure_logging("DEBUG", tmp_path / "x.log", log_format="json")
    config, _ = load_config(env={}, flags={"slack_webhook_url": slack.url}, search_default_file=False)
    notifier = Notifier(config, "run-1")
    with log_phase("gate"):
        notifier.notify("pipeline_finished", RunSummary(run_id="run-1", status="success"))
    notifier.close()
    for handler in logging.getLogger("pipeline").handlers:
        handler.flush()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    notifier_lines = [entry for entry in entries if entry["logger"].startswith("pipeline.notifications")]
    assert notifier_lines and {entry["phase"] for entry in notifier_lines} == {"notifications"}


# --------------------------------------------------------------------------- the console summary
def test_summary_has_emoji_only_on_a_terminal(capsys, monkeypatch):
    summary = {**_results().summary.model_dump(), "deployment_occurred": True, "testing_passed": True}
    results = _results(pipeline_status="success", total_duration_seconds=1.0, results_file="r.json", summary=summary)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    cli_module.print_summary(results)
    plain = capsys.readouterr().out
    assert not EMOJI.search(plain) and "\x1b[" not in plain
    for line in ("ENTERPRISE MLOPS PIPELINE COMPLETED", "Status: SUCCESS", "Deployment Occurred: Yes",
                 "Testing: Passed", "Detailed results saved to: r.json"):
        assert line in plain
    cli_module.print_summary(results, emoji=True)
    assert "Deployment Occurred: ✅ Yes" in capsys.readouterr().out


def test_cli_output_to_a_pipe_has_no_emoji_and_no_colour(pipeline):
    result = pipeline("--mode", "training")
    assert "Status: SUCCESS" in result.stdout
    assert not EMOJI.search(result.stdout) and "\x1b[" not in result.stdout


# --------------------------------------------------------------------------- examples/gitlab-ci.yml, run
EXAMPLE = REPO / "examples" / "gitlab-ci.yml"
COPIED = ("pipeline", "run_pipeline.py", "run_mlops_pipeline.sh", "requirements.txt", "pipeline_config.json")
GLOBAL_KEYWORDS = {"stages", "variables", "default", "workflow", "include", "image", "services", "cache",
                   "before_script", "after_script"}


def _jobs(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    jobs = [(name, job) for name, job in config.items() if name not in GLOBAL_KEYWORDS and not name.startswith(".")]
    return sorted(jobs, key=lambda item: config["stages"].index(item[1]["stage"]))  # stable: file order in a stage


def _expand(value: str, env: dict[str, str]) -> str:
    """GitLab's expansion of ``variables:`` values: $VAR and ${VAR}, $$ for a literal $."""
    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1) or m.group(2), m.group(0)), value)


def _when(job: dict[str, Any], env: dict[str, str]) -> str | None:
    """How GitLab's ``rules`` add a job to a pipeline with these variables: its ``when`` (``on_success``,
    ``manual``), or None when it is left out. Enough of the ``if`` grammar for this file: ``$VAR == "value"``
    joined by ``||`` or ``&&``."""
    def holds(expression: str) -> bool:
        alternatives = []
        for alternative in expression.split("||"):
            comparisons = [re.fullmatch(r'\s*\$(\w+)\s*==\s*"([^"]*)"\s*', part) for part in alternative.split("&&")]
            assert all(comparisons), f"rule not understood: {expression}"
            alternatives.append(all(env.get(m.group(1), "") == m.group(2) for m in comparisons if m))
        return any(alternatives)

    for rule in job.get("rules", []):
        if "if" not in rule or holds(rule["if"]):
            when = rule.get("when", "on_success")
            return None if when == "never" else when
    return None


def _needed(job: dict[str, Any], done: list[str]) -> list[str]:
    """Jobs whose artifacts (and dotenv) this job gets: its needs with artifacts, else every earlier job."""
    if "needs" not in job:
        return done
    names = []
    for need in job["needs"]:
        need = {"job": need} if isinstance(need, str) else need
        if need.get("artifacts", True):
            names.append(need["job"])
    return names


def _check_exposed_report(job: str, artifacts: dict[str, Any], project: Path, run_id: str) -> None:
    """Each job links its HTML run report from merge requests (``expose_as``), within GitLab's rules for it:
    a name of letters, digits, spaces, '-' and '_'; paths given, without variables or globs, a directory
    ending in '/'."""
    assert re.fullmatch(r"\w([-\s\w]*\w)?", artifacts["expose_as"]), job
    paths = artifacts["paths"]
    assert not any(set(path) & set("$*?[") for path in paths), job
    assert all(path.endswith("/") for path in paths if (project / path).is_dir()), job
    pages = [path for path in paths if path.endswith(".html")]
    assert len(pages) == 1, job
    page = (project / pages[0]).read_text()
    assert page.startswith("<!DOCTYPE html>") and run_id in page
    assert page == (project / ".mlops" / "runs" / run_id / "report.html").read_text()  # the store keeps one too


def test_gitlab_example_runs_train_deploy_test_with_the_local_backend(workdir):
    project = workdir / "project"
    project.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / name)
    shutil.copy2(EXAMPLE, project / ".gitlab-ci.yml")
    config = yaml.safe_load((project / ".gitlab-ci.yml").read_text())

    assert config["stages"] == ["train", "deploy", "test", "monitor"]
    jobs = _jobs(config)
    by_name = dict(jobs)
    push = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
    schedule = {**push, "CI_PIPELINE_SOURCE": "schedule"}  # a schedule on main: the branch matches too
    assert {name: _when(job, push) for name, job in jobs} == {
        "train": "on_success", "deploy_production": "manual", "test_production": "on_success", "monitor": None}
    assert {name: _when(job, schedule) for name, job in jobs} == {
        "train": None, "deploy_production": None, "test_production": None, "monitor": "on_success"}
    pushed = [(name, job) for name, job in jobs if _when(job, push)]
    assert [job["stage"] for _, job in pushed] == ["train", "deploy", "test"]
    assert 3 in by_name["train"]["allow_failure"]["exit_codes"]

    runner = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # python3 is this .venv's
        "CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": str(project), **push,
        "ROLE_ARN": "",  # the local backend
        "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",  # pip may only confirm what is installed
    }
    global_vars = {key: _expand(str(value), runner) for key, value in config.get("variables", {}).items()}
    dotenvs: dict[str, dict[str, str]] = {}
    done: list[str] = []
    seen: dict[str, Any] = {}
    uploaded: dict[str, bytes] = {}  # each job's artifacts archive, as GitLab keeps it
    try:
        for name, job in pushed:
            env = {**runner, **global_vars, "CI_JOB_NAME": name, "CI_JOB_STAGE": job["stage"]}
            env.update({key: _expand(str(value), env) for key, value in job.get("variables", {}).items()})
            for needed in _needed(job, done):
                env.update(dotenvs.get(needed, {}))  # dotenv beats job and global variables
            lines = [*job.get("before_script", config.get("default", {}).get("before_script", [])), *job["script"]]
            result = run_script("bash", "-c", "set -eo pipefail\n" + "\n".join(lines), cwd=project, env=env)
            assert result.returncode == 0, f"{name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"

            artifacts = job["artifacts"]
            assert artifacts["when"] == "always"  # the reports of a held or rolled-back run are uploaded too
            for path in artifacts["paths"]:
                assert list(project.glob(path.rstrip("/"))), f"{name}: artifact {path} missing"
            reports = artifacts["reports"]
            dotenvs[name] = gitlab_dotenv((project / reports["dotenv"]).read_bytes())
            cases = junit_cases((project / reports["junit"]).read_bytes())
            metrics = gitlab_metrics((project / reports["metrics"]).read_bytes())
            _check_exposed_report(name, artifacts, project, dotenvs[name]["MLOPS_RUN_ID"])
            logs = [path for path in artifacts["paths"] if path.endswith(".log")]
            for path in logs:
                entries = [json.loads(line) for line in (project / path).read_text().splitlines()]
                assert {entry["run_id"] for entry in entries} == {dotenvs[name]["MLOPS_RUN_ID"]}
            assert all(line.startswith("{") for line in result.stderr.splitlines()), result.stderr
            seen[name] = (dotenvs[name], cases, metrics, result)
            done.append(name)
            uploaded[name] = _artifacts_archive(project, artifacts["paths"])
        seen["monitor"] = _run_scheduled_monitor(workdir, config, {**runner, **schedule}, uploaded)
    finally:
        stop_servers_under(project)

    dotenv, cases, metrics, _ = seen["train"]
    assert dotenv["MLOPS_PIPELINE_STATUS"] == "success" and dotenv["MLOPS_GATE_DECISION"] == "deploy"
    assert dotenv["MLOPS_TRAINING_JOB"].startswith("iris-classifier-")
    assert {case: value["status"] for case, value in cases.items()} == {
        "gate/minimum_accuracy": "passed", "gate/accuracy_threshold": "passed",
        "gate/champion comparison": "skipped"}  # nothing serves yet: no champion
    assert set(metrics) == {"mlops_training_accuracy", "mlops_cv_mean_accuracy", "mlops_gate_rows_needed"}

    dotenv, cases, metrics, result = seen["deploy_production"]
    assert f"Deploying {seen['train'][0]['MLOPS_TRAINING_JOB']} (accuracy 1.0, gate deploy) to iris-model" \
        in result.stdout  # train.env's variables reached the next job
    assert dotenv["MLOPS_ENDPOINT_NAME"] == "iris-model" and dotenv["MLOPS_DEPLOYMENT_STATE"] == "deployed"
    assert dotenv["MLOPS_DEPLOYMENT_OCCURRED"] == "true" and dotenv["MLOPS_TESTING_PASSED"] == "true"
    assert dotenv["MLOPS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    # skipped on a first deployment: nothing serves to compare with, no contract to keep, no client request to replay
    assert {case for case, value in cases.items() if value["status"] != "passed"} == {
        "gate/champion comparison", "gate/contract", "endpoint tests/replay"}
    assert {"gate/accuracy_threshold", "endpoint tests/health", "endpoint tests/prediction_accuracy",
            "endpoint tests/performance", "endpoint tests/robustness", "deployment/deployment"} <= set(cases)
    assert len(metrics) == 5

    dotenv, cases, metrics, _ = seen["test_production"]
    assert dotenv["MLOPS_PIPELINE_STATUS"] == "success" and dotenv["MLOPS_MODE"] == "testing"
    assert dotenv["MLOPS_ENDPOINT_VERSION"] == seen["deploy_production"][0]["MLOPS_ENDPOINT_VERSION"]
    assert {case: value["status"] for case, value in cases.items()} == {
        f"endpoint tests/{check}": "passed" for check in ("health", "prediction_accuracy", "performance",
                                                          "robustness")}
    assert set(metrics) == {"mlops_endpoint_latency_p95_ms", "mlops_endpoint_throughput_rps"}


    # On the local backend the deploy job's artifacts hold no live traffic (the endpoint tests are never captured,
    # and what clients send later is captured on the runner, not in the artifacts): no verdict, a warning, and
    # the report artifact says why.
    result, report = seen["monitor"]
    assert report["endpoint_name"] == "iris-model"
    assert (report["verdict"], report["exit_code"], result.returncode) == ("error", 2, 2)
    assert "no captured requests for version " + seen["deploy_production"][0]["MLOPS_ENDPOINT_VERSION"] \
        in report["error"]
    assert 2 in by_name["monitor"]["allow_failure"]["exit_codes"]  # no verdict is a warning; drift (1) fails the job


def _artifacts_archive(project: Path, paths: list[str]) -> bytes:
    """A job's artifacts as GitLab uploads them: a zip of its ``paths``, relative to the project."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in paths:
            found = project / path.rstrip("/")
            for file in sorted(found.rglob("*")) if found.is_dir() else [found]:
                if file.is_file():
                    archive.write(file, file.relative_to(project))
    return buffer.getvalue()


class _GitLabArtifactsApi(http.server.BaseHTTPRequestHandler):
    """GitLab's "download the artifacts archive of the latest successful job on a ref", for one project."""

    archives: dict[str, bytes] = {}
    token = ""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        match = re.fullmatch(r"/api/v4/projects/7/jobs/artifacts/main/download", url.path)
        job = parse_qs(url.query).get("job", [""])[0]
        if self.headers.get("JOB-TOKEN") != self.token:
            self.send_error(401)
        elif not match or job not in self.archives:
            self.send_error(404)
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(self.archives[job])))
            self.end_headers()
            self.wfile.write(self.archives[job])

    def log_message(self, *args: Any) -> None:
        pass


def _run_scheduled_monitor(workdir: Path, config: dict[str, Any], runner: dict[str, str],
                           uploaded: dict[str, bytes]) -> tuple[Any, dict[str, Any]]:
    """The monitor job of a scheduled pipeline, in a fresh checkout (GitLab cleans the build directory), with the
    artifacts of the push pipeline behind GitLab's job artifacts API."""
    checkout = workdir / "scheduled"
    checkout.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, checkout / name)
    handler = type("Api", (_GitLabArtifactsApi,), {"archives": uploaded, "token": "job-token-of-the-monitor-job"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        job = config["monitor"]
        env = {**runner, "CI_PROJECT_DIR": str(checkout), "CI_JOB_NAME": "monitor", "CI_JOB_STAGE": job["stage"],
               "CI_API_V4_URL": f"http://127.0.0.1:{server.server_address[1]}/api/v4", "CI_PROJECT_ID": "7",
               "CI_JOB_TOKEN": "job-token-of-the-monitor-job"}
        env.update({key: _expand(str(value), env) for key, value in config.get("variables", {}).items()})
        lines = [*job.get("before_script", config.get("default", {}).get("before_script", [])), *job["script"]]
        result = run_script("bash", "-c", "set -eo pipefail\n" + "\n".join(lines), cwd=checkout, env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode in (0, 1, 2), f"monitor: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert job["artifacts"]["when"] == "always"
    for path in job["artifacts"]["paths"]:
        assert (checkout / path).is_file(), f"monitor: artifact {path} missing\n{result.stdout}\n{result.stderr}"
    assert "job-token-of-the-monitor-job" not in result.stdout + result.stderr
    return result, json.loads((checkout / "monitor-report.json").read_text())


def test_json_logs_carry_progress_lines_of_the_long_steps(pipeline, workdir):
    result = pipeline("--log-format", "json", "--set", "cv_folds=4", "--set", "performance_requests=40", fast=False)
    assert result.exit_code == 0
    messages = [json.loads(line)["message"] for line in (workdir / "pipeline.log").read_text().splitlines()]
    assert "training: cross-validation 1 of 4: fold 1 of 4" in " ".join(messages)
    assert "training: cross-validation 4 of 4: fold 4 of 4" in " ".join(messages)
    assert any(message.startswith("training: final fit done") for message in messages)
    assert any(message.startswith("endpoint tests: performance requests") for message in messages)
    progress_lines = [message for message in messages if message.startswith("training: cross-validation ")]
    assert len(progress_lines) <= 4  # bounded: first, last, and at most one every few seconds between
