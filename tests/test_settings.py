"""Settings are honoured or refused, never silently dropped; contradictions and bad paths are found before any work.

Every test goes through the real CLI. A refusal is exit 2 with one ``Error:`` line, and the run
that was refused wrote nothing: no results, no reports, no log file, no store.
"""
from __future__ import annotations

import json
import os
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline import logs
from pipeline.cli import cli
from pipeline.config import FLAGS, PipelineConfig
from pipeline.state.store import DeploymentStore
from tests.conftest import FAST_SETTINGS, REPO


def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def _refused(result: Result, *words: str) -> str:
    """Exit 2, one error line naming every word, and nothing written in the working directory."""
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    for word in words:
        assert word in line, line
    assert not Path(".mlops").exists()
    assert not any(path.suffix in (".json", ".log", ".xml", ".env", ".txt") and path.name != "c.json"
                   for path in Path(".").rglob("*")), sorted(map(str, Path(".").rglob("*")))
    return line


# --- every way a setting can arrive is honoured ---------------------------------------------------------

def _arrive(layer: str) -> tuple[list[str], dict[str, str], str | None]:
    """accuracy_threshold 0.97, auto-deploy off and store_dir 'other', through one layer.

    Returns the arguments, the environment, and the layer's source name for store_dir (None: the
    environment has no variable for it, so store_dir stays the default there).
    """
    if layer == "file":
        Path("c.json").write_text(json.dumps({"accuracy_threshold": 0.97, "auto_deploy_enabled": False,
                                              "store_dir": "other"}))
        return ["--config-file", "c.json"], {}, "file:c.json"
    if layer == "env":
        return [], {"ACCURACY_THRESHOLD": "0.97", "AUTO_DEPLOY_ENABLED": "false"}, None
    if layer == "flag":
        return ["--accuracy-threshold", "0.97", "--disable-auto-deploy", "--store-dir", "other"], {}, \
            "flag:--store-dir"
    return ["--set", "accuracy_threshold=0.97", "--set", "auto_deploy_enabled=false",
            "--set", "store_dir=other"], {}, "set:store_dir"


SOURCES = {
    "file": ("file:c.json", "file:c.json"),
    "env": ("env:ACCURACY_THRESHOLD", "env:AUTO_DEPLOY_ENABLED"),
    "flag": ("flag:--accuracy-threshold", "flag:--disable-auto-deploy"),
    "set": ("set:accuracy_threshold", "set:auto_deploy_enabled"),
}


@pytest.mark.unit
@pytest.mark.parametrize("layer", ["file", "env", "flag", "set"])
def test_threshold_auto_deploy_and_store_dir_are_honoured_from_every_layer(pipeline, layer):
    args, env, store_source = _arrive(layer)
    result = pipeline(*args, env=env)
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    assert results["gate"]["threshold"] == 0.97
    assert results["gate"]["decision"] == "approved"  # auto-deploy off: judged, not deployed
    assert results["summary"]["deployment_occurred"] is False
    threshold_source, auto_deploy_source = SOURCES[layer]
    assert results["config_sources"]["accuracy_threshold"] == threshold_source
    assert results["config_sources"]["auto_deploy_enabled"] == auto_deploy_source
    store = Path("other" if store_source else ".mlops")
    assert results["config_sources"]["store_dir"] == (store_source or "default")
    assert (store / "state.db").is_file() and DeploymentStore(store).endpoints() == []
    assert store.name == ".mlops" or not Path(".mlops").exists()
    history = _invoke(*args, "history", "--json", env=env)  # the subcommands read the same store
    assert history.exit_code == 0, history.output
    assert [run["run_id"] for run in json.loads(history.output)["runs"]] == [results["run_id"]]


@pytest.mark.unit
def test_set_reaches_every_key_that_also_has_a_flag(pipeline):
    Path("d.csv").write_text("x1,x2,kind\n" + "".join(
        f"{i % 5 + (100 if i >= 30 else 0)},{i % 3},{'big' if i >= 30 else 'small'}\n" for i in range(60)))
    settings = {"dataset": "d.csv", "label_column": "kind", "model_type": "random_forest", "random_seed": 7,
                "minimum_accuracy": 0.5, "accuracy_threshold": 0.6, "log_level": "DEBUG", "endpoint_port": 12345,
                "aws_region": "eu-west-1", "instance_type": "ml.t2.medium", "endpoint_host": "localhost"}
    args = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    result = pipeline("--mode", "training", *args)
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    for key, value in settings.items():
        assert results["config"][key] == value, key
        assert results["config_sources"][key] == f"set:{key}", key
    assert results["gate"]["threshold"] == 0.6 and results["gate"]["minimum"] == 0.5
    assert results["config_sources"]["cv_folds"] == "set:cv_folds"  # no --cv-folds flag exists to credit


@pytest.mark.unit
def test_a_flag_is_recorded_under_the_name_it_is_typed_with(pipeline):
    result = pipeline("--mode", "training", "--region", "eu-west-1", "--verbose")
    assert result.exit_code == 0, result.output
    sources = pipeline.results()["config_sources"]
    assert sources["aws_region"] == "flag:--region"
    assert sources["log_level"] == "flag:--verbose"


@pytest.mark.unit
def test_every_flag_a_source_can_name_is_a_real_option():
    options = {opt for param in cli.params for opt in param.opts}
    assert set(FLAGS.values()) <= options
    assert set(FLAGS) <= set(PipelineConfig.model_fields)


def test_set_store_dir_reaches_status_history_and_cleanup(pipeline):
    result = pipeline("--set", "store_dir=other")
    assert result.exit_code == 0, result.output
    status = _invoke("--set", "store_dir=other", "status")
    assert status.exit_code == 0 and "iris-model" in status.output and "healthy" in status.output
    history = _invoke("--set", "store_dir=other", "history")
    assert "deployment  iris-model" in history.output
    cleanup = _invoke("--set", "store_dir=other", "cleanup", "--prefix", "iris-")
    assert cleanup.exit_code == 0, cleanup.output
    assert "removed endpoint iris-model" in cleanup.output
    assert DeploymentStore("other").endpoints() == []
    assert not Path(".mlops").exists()


# --- a flag and --set for the same key ------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("args, words", [
    (["--accuracy-threshold", "0.97", "--set", "accuracy_threshold=0.96"],
     ["--accuracy-threshold 0.97", "--set accuracy_threshold=0.96"]),
    (["--disable-auto-deploy", "--set", "auto_deploy_enabled=true"],
     ["--disable-auto-deploy", "--set auto_deploy_enabled=true"]),
    (["--store-dir", "a", "--set", "store_dir=b"], ["--store-dir a", "--set store_dir=b"]),
    (["--model-type", "random_forest", "--set", "model_type=gradient_boosting"],
     ["--model-type random_forest", "--set model_type=gradient_boosting"]),
    (["--random-seed", "1", "--set", "random_seed=2"], ["--random-seed 1", "--set random_seed=2"]),
    (["--verbose", "--set", "log_level=INFO"], ["--verbose", "--set log_level=INFO"]),
    (["--region", "eu-west-1", "--set", "aws_region=us-east-1"], ["--region eu-west-1", "--set aws_region=us-east-1"]),
    (["--set", "test_size=0.2", "--set", "test_size=0.3"], ["--set test_size=0.2", "--set test_size=0.3"]),
])
def test_a_flag_and_set_that_disagree_are_refused_naming_both(workdir, args, words):
    _refused(_invoke(*args, "--output-file", "out.json", "--log-file", "run.log"), *words, "contradict")


@pytest.mark.unit
def test_a_flag_and_set_that_agree_are_accepted_and_credited_to_the_flag(pipeline):
    result = pipeline("--mode", "training", "--accuracy-threshold", "0.97", "--set", "accuracy_threshold=0.97",
                      "--verbose", "--set", "log_level=debug")
    assert result.exit_code == 0, result.output
    assert pipeline.results()["config_sources"]["accuracy_threshold"] == "flag:--accuracy-threshold"
    assert pipeline.results()["config"]["log_level"] == "DEBUG"


# --- flags that contradict each other -------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("args, words", [
    (["--deployment-only", "--mode", "training"], ["--deployment-only", "--mode training"]),
    (["--deployment-only", "--mode", "full"], ["--deployment-only", "--mode full"]),
    (["--mode", "training", "--training-job", "job-1"], ["--training-job", "--mode training"]),
    (["--mode", "full", "--training-job", "job-1"], ["--training-job", "--mode full"]),
    (["--mode", "testing", "--training-job", "job-1"], ["--training-job", "--mode testing"]),
    (["--mode", "cleanup", "--training-job", "job-1"], ["--training-job", "--mode cleanup"]),
    (["--training-job", "job-1"], ["--training-job", "--mode deployment"]),
    (["--mode", "deployment"], ["--mode deployment", "--training-job"]),
    (["--deployment-only"], ["--deployment-only", "--training-job"]),
    (["--mode", "deployment", "--training-job", "job-1", "--disable-auto-deploy"],
     ["--disable-auto-deploy", "--mode deployment"]),
    (["--deployment-only", "--training-job", "job-1", "--disable-auto-deploy"],
     ["--disable-auto-deploy", "--deployment-only"]),
    (["--mode", "deployment", "--training-job", "job-1", "--set", "auto_deploy_enabled=false"],
     ["--set auto_deploy_enabled=false", "--mode deployment"]),
    (["--mode", "testing", "--disable-auto-deploy"], ["--disable-auto-deploy", "--mode testing"]),
    (["--mode", "training", "--endpoint-name", "iris-model"], ["--endpoint-name", "--mode training"]),
    (["--disable-auto-deploy", "--endpoint-name", "iris-model"], ["--endpoint-name", "--disable-auto-deploy"]),
])
def test_contradicting_flags_are_refused_naming_both(workdir, args, words):
    _refused(_invoke(*args, "--output-file", "out.json", "--log-file", "run.log"), *words)


@pytest.mark.unit
def test_training_mode_may_switch_auto_deploy_off(pipeline):
    result = pipeline("--mode", "training", "--disable-auto-deploy")
    assert result.exit_code == 0, result.output
    assert pipeline.results()["gate"]["decision"] == "approved"


def test_auto_deploy_off_in_the_config_file_is_a_policy_deployment_mode_overrides(pipeline):
    Path("pipeline_config.json").write_text(json.dumps({"auto_deploy_enabled": False}))
    assert pipeline().exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    result = pipeline("--mode", "deployment", "--training-job", job)
    assert result.exit_code == 0, result.output
    assert pipeline.results()["summary"]["deployment_occurred"] is True


@pytest.mark.unit
@pytest.mark.parametrize("args, flag", [
    (["--output-file", "o.json"], "--output-file"), (["--mode", "training"], "--mode"),
    (["--training-job", "job-1"], "--training-job"), (["--log-format", "json"], "--log-format"),
    (["--endpoint-name", "iris-model"], "--endpoint-name"), (["--junit-xml", "j.xml"], "--junit-xml"),
])
def test_run_options_before_a_subcommand_are_refused(workdir, args, flag):
    result = _invoke(*args, "status")
    assert result.exit_code == 2
    assert f"{flag} is an option of a pipeline run, not of `status`" in _error_line(result)


@pytest.mark.unit
@pytest.mark.parametrize("args, words", [
    (["history", "--verify", "--endpoint-name", "iris-model"], ["--verify", "--endpoint-name"]),
    (["cleanup", "--prefix", "iris-", "--keep", "2"], ["--keep", "--prune"]),
])
def test_subcommand_options_that_would_do_nothing_are_refused(workdir, args, words):
    result = _invoke(*args)
    assert result.exit_code == 2
    for word in words:
        assert word in _error_line(result)


# --- values that would only fail later ------------------------------------------------------------------

def _float_keys() -> list[str]:
    return [key for key, field in PipelineConfig.model_fields.items()
            if field.annotation is float or float in typing.get_args(field.annotation)]


@pytest.mark.unit
@pytest.mark.parametrize("key", _float_keys())
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_no_float_key_accepts_nan_or_infinity_from_set(workdir, key, value):
    line = _refused(_invoke("--set", f"{key}={value}", "--output-file", "out.json", "--log-file", "run.log"))
    assert line == f"Error: --set {key}: expected a finite number (not NaN or infinity), got {value}"


@pytest.mark.unit
@pytest.mark.parametrize("name, value", [("ACCURACY_THRESHOLD", "nan"), ("MINIMUM_ACCURACY", "inf"),
                                         ("ACCURACY_THRESHOLD", "-inf")])
def test_no_float_key_accepts_nan_or_infinity_from_the_environment(workdir, name, value):
    _refused(_invoke("--output-file", "out.json", env={name: value}),
             f"environment variable {name}", "expected a finite number")


@pytest.mark.unit
def test_no_float_key_accepts_nan_from_a_flag_or_the_config_file(workdir):
    _refused(_invoke("--accuracy-threshold", "nan", "--output-file", "out.json"),
             "flag --accuracy-threshold: accuracy_threshold: expected a finite number")
    Path("c.json").write_text('{"max_payload_mb": Infinity}')
    _refused(_invoke("--config-file", "c.json", "--output-file", "out.json"),
             "config file 'c.json': max_payload_mb: expected a finite number", "got Infinity")


@pytest.mark.unit
@pytest.mark.parametrize("host, expected", [
    ("not-a-host", "expected an IPv4 address such as 127.0.0.1, or 'localhost', got 'not-a-host'"),
    ("::1", "expected an IPv4 address"),
    ("192.0.2.1", "expected an address of this machine"),  # TEST-NET-1: never assigned to a host here
])
def test_endpoint_host_must_be_an_address_this_machine_can_listen_on(workdir, host, expected):
    _refused(_invoke("--set", f"endpoint_host={host}", "--output-file", "out.json"), "--set endpoint_host: ", expected)


@pytest.mark.unit
@pytest.mark.parametrize("args", [
    ["--endpoint-name", "iris-model\n"], ["history", "--endpoint-name", "iris-model\n"],
    ["status", "--endpoint-name", "iris-model\n"], ["rollback", "--endpoint-name", "iris-model\n"],
    ["cleanup", "--endpoint-name", "iris-model\n"],
])
def test_an_endpoint_name_with_a_trailing_newline_is_refused(workdir, args):
    result = _invoke(*args)
    assert result.exit_code == 2
    assert "expected letters, digits and hyphens" in result.output
    assert not Path(".mlops").exists()


@pytest.mark.unit
@pytest.mark.parametrize("key, value", [("endpoint_prefix", "iris-model\n"), ("model_name_prefix", "iris\n"),
                                        ("role_arn", "arn:aws:iam::123456789012:role/SageMakerRole\n")])
def test_a_configured_name_with_a_trailing_newline_is_refused(workdir, key, value):
    _refused(_invoke("--set", f"{key}={value}", "--output-file", "out.json"), f"--set {key}: expected")


# --- output files are checked before any work -----------------------------------------------------------

OUTPUT_FLAGS = ["--output-file", "--dotenv-file", "--junit-xml", "--metrics-file", "--report-html", "--log-file"]


@pytest.mark.unit
@pytest.mark.parametrize("flag", OUTPUT_FLAGS)
def test_an_output_file_under_a_regular_file_is_refused_before_any_work(workdir, flag):
    Path("a-file").write_text("")
    defaults = {"--output-file": "out.json", "--log-file": "run.log"}
    others = [arg for option, path in defaults.items() if option != flag for arg in (option, path)]
    _refused(_invoke(*others, flag, "a-file/out"), f"{flag} 'a-file/out'", "'a-file' is not a directory")


@pytest.mark.unit
@pytest.mark.parametrize("flag", OUTPUT_FLAGS)
def test_an_output_file_where_no_file_can_be_created_is_refused_before_any_work(workdir, flag):
    path = "/proc/mlops-nowhere/results"  # procfs: no one, not even root, creates files there
    result = _invoke(*(["--output-file", "out.json"] if flag != "--output-file" else []), flag, path)
    _refused(result, f"{flag} '{path}'", "cannot create a file in '/proc'")


@pytest.mark.unit
def test_an_output_file_in_a_missing_directory_is_made_when_written(pipeline):
    result = pipeline("--mode", "training", "--junit-xml", "reports/deep/junit.xml")
    assert result.exit_code == 0, result.output
    assert Path("reports/deep/junit.xml").is_file()


@pytest.mark.unit
def test_two_outputs_naming_the_same_file_are_refused(workdir):
    _refused(_invoke("--output-file", "same.txt", "--metrics-file", "./same.txt"),
             "--output-file and --metrics-file are the same file")


@pytest.mark.unit
def test_a_log_file_from_the_config_file_that_cannot_be_written_is_refused(workdir):
    Path("c.json").write_text(json.dumps({"log_file": "/proc/mlops.log"}))
    _refused(_invoke("--config-file", "c.json", "--output-file", "out.json"),
             "config file 'c.json': log_file '/proc/mlops.log'", "cannot create a file in '/proc'")


@pytest.mark.unit
def test_the_default_log_file_that_cannot_be_written_is_only_a_warning(workdir, monkeypatch):
    Path("a-file").write_text("")
    monkeypatch.setattr(logs, "DEFAULT_DIR", workdir / "a-file")
    result = _invoke("--mode", "training", "--output-file", "out.json", *FAST_SETTINGS)
    assert result.exit_code == 0, result.output
    assert "cannot write log file" in result.output


@pytest.mark.unit
def test_a_default_results_file_that_cannot_be_written_is_refused_before_any_work(workdir, monkeypatch):
    Path("a-file").write_text("")
    monkeypatch.setattr(logs, "DEFAULT_DIR", workdir / "a-file")
    _refused(_invoke("--log-file", "run.log"), "the default results file (choose one with --output-file)",
             "a-file' is not a directory")


# --- status and history -------------------------------------------------------------------------------

@pytest.mark.unit
def test_status_of_no_endpoints_exits_0(workdir):
    result = _invoke("status")
    assert result.exit_code == 0 and "no endpoints" in result.output


@pytest.mark.unit
def test_status_help_says_it_is_a_health_check():
    assert "Exit 1 when any endpoint listed is unhealthy" in _invoke("status", "--help").output


@pytest.mark.unit
def test_history_of_an_endpoint_the_store_never_heard_of_is_a_usage_error(pipeline):
    assert pipeline("--mode", "training").exit_code == 0
    for args in (["--endpoint-name", "nope"], ["--endpoint-name", "nope", "--at", "2026-01-01T00:00:00"]):
        result = _invoke("history", *args)
        assert result.exit_code == 2
        assert "endpoint 'nope' not found" in _error_line(result)
    assert _invoke("history").exit_code == 0


# --- default files in /tmp are not kept forever --------------------------------------------------------

def _old_default_files(directory: Path, count: int) -> list[Path]:
    made = []
    for day in range(1, count + 1):
        stamp = f"200001{day:02d}_120000"
        for name in (f"mlops_pipeline_{stamp}.log", f"mlops_pipeline_results_{stamp}.json"):
            (directory / name).write_text("old")
            made.append(directory / name)
    return made


@pytest.mark.unit
def test_old_default_named_logs_and_results_are_deleted_beyond_the_retention_count(workdir, monkeypatch):
    tmp = workdir / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(logs, "DEFAULT_DIR", tmp)
    old = _old_default_files(tmp, 6)
    others = [tmp / "mlops_pipeline_notes.log", tmp / "mlops_pipeline_results_20000101_120000.json.bak",
              tmp / "my_mlops_pipeline_20000101_120000.log"]
    for path in others:
        path.write_text("keep")
    (tmp / "mlops_pipeline_19990101_120000.log").symlink_to(others[0])  # not a regular file: not touched
    result = _invoke("--mode", "training", "--set", "tmp_retention_count=3", *FAST_SETTINGS)
    assert result.exit_code == 0, result.output
    logs_left = sorted(p.name for p in tmp.glob("mlops_pipeline_2*.log"))
    results_left = sorted(p.name for p in tmp.glob("mlops_pipeline_results_2*.json"))
    assert len(logs_left) == 3 and len(results_left) == 3  # counting this run's own
    assert logs_left[:2] == [p.name for p in old if p.suffix == ".log"][-2:]
    assert results_left[:2] == [p.name for p in old if p.suffix == ".json"][-2:]
    assert all(path.exists() for path in others)
    assert (tmp / "mlops_pipeline_19990101_120000.log").is_symlink()


@pytest.mark.unit
def test_retention_count_0_deletes_nothing(workdir, monkeypatch):
    monkeypatch.setattr(logs, "DEFAULT_DIR", workdir)
    old = _old_default_files(workdir, 3)
    result = _invoke("--mode", "training", "--set", "tmp_retention_count=0", "--output-file", "out.json",
                     *FAST_SETTINGS)
    assert result.exit_code == 0, result.output
    assert all(path.exists() for path in old)


@pytest.mark.unit
@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a file to another user")
def test_default_named_files_of_another_user_are_not_touched(workdir, monkeypatch):
    monkeypatch.setattr(logs, "DEFAULT_DIR", workdir)
    old = _old_default_files(workdir, 3)
    for path in old:
        os.chown(path, 4242, 4242)
    result = _invoke("--mode", "training", "--set", "tmp_retention_count=1", "--output-file", "out.json",
                     *FAST_SETTINGS)
    assert result.exit_code == 0, result.output
    assert all(path.exists() for path in old)


@pytest.mark.unit
def test_retention_count_defaults_to_20_and_refuses_a_negative(workdir):
    assert PipelineConfig().tmp_retention_count == 20
    _refused(_invoke("--set", "tmp_retention_count=-1", "--output-file", "out.json"), "tmp_retention_count")


# --- documentation ------------------------------------------------------------------------------------

@pytest.mark.unit
def test_the_configuration_page_documents_every_config_key_and_flag():
    page = (REPO / "docs" / "CONFIGURATION.md").read_text()
    keys = page[page.index("## Keys"):]
    flags = page[page.index("`run_pipeline.py` flags:"):page.index("## Refused flag combinations")]
    for key in PipelineConfig.model_fields:
        assert f"`{key}`" in keys, key
    for param in cli.params:
        for opt in param.opts:
            if opt.startswith("--") and opt != "--help":
                assert opt in flags, opt


@pytest.mark.unit
def test_readme_shows_a_help_command_that_works_on_a_fresh_clone():
    readme = (REPO / "README.md").read_text()
    assert "python3 run_pipeline.py --help" not in readme
    assert "./run_mlops_pipeline.sh --help" in readme and ".venv/bin/python run_pipeline.py --help" in readme
