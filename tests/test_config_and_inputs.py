"""Bad config and bad data get one clear line and exit 2, before anything is deployed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.state.store import DeploymentStore


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def _nothing_deployed() -> bool:
    return not Path(".mlops/state.db").exists() or DeploymentStore(".mlops").endpoints() == []


@pytest.mark.unit
@pytest.mark.parametrize("content, expected", [
    ({"accuracy_threshold": 1.5}, "accuracy_threshold: expected a number between 0.0 and 1.0, got 1.5"),
    ({"baking_seconds": 0}, "baking_seconds: expected a number greater than 0.0 and at most 3600.0, got 0"),
    ({"test_size": 1.0}, "test_size: expected a number greater than 0.0 and less than 1.0, got 1.0"),
    ({"minimum_accuracy": -0.1}, "minimum_accuracy: expected a number between 0.0 and 1.0, got -0.1"),
    ({"accuracy_threshold": "high"}, "accuracy_threshold: expected a number, got 'high'"),
    ({"auto_deploy_enabled": "yes"}, "auto_deploy_enabled: expected true or false, got 'yes'"),
    ({"endpoint_workers": 2.5}, "endpoint_workers: expected a whole number, got 2.5"),
    ({"model_type": "svm"}, "model_type: expected one of"),
    ({"acuracy_threshold": 0.9}, "unknown key 'acuracy_threshold'; did you mean 'accuracy_threshold'?"),
    ({"accuracy_threshold": 0.9, "minimum_accuracy": 0.95}, "minimum_accuracy (0.95) must not be above"),
])
def test_bad_config_file_value_is_named_with_exit_2(pipeline, content, expected):
    Path("bad.json").write_text(json.dumps(content))
    result = pipeline("--config-file", "bad.json")
    assert result.exit_code == 2
    line = _error_line(result)
    assert expected in line
    assert _nothing_deployed()


@pytest.mark.unit
def test_invalid_json_names_line_and_column(pipeline):
    Path("bad.json").write_text('{\n  "accuracy_threshold": 0.9,\n  "x": \n}')
    result = pipeline("--config-file", "bad.json")
    assert result.exit_code == 2
    assert "is not valid JSON: Expecting value at line 4 column 1" in _error_line(result)


@pytest.mark.unit
def test_missing_config_file_is_named(pipeline):
    result = pipeline("--config-file", "nope.json")
    assert result.exit_code == 2
    assert "config file 'nope.json' not found" in _error_line(result)


@pytest.mark.unit
@pytest.mark.parametrize("name, value, expected", [
    ("AUTO_DEPLOY_ENABLED", "maybe", "AUTO_DEPLOY_ENABLED='maybe': expected a boolean"),
    ("ACCURACY_THRESHOLD", "abc", "ACCURACY_THRESHOLD='abc': expected a number"),
    ("ACCURACY_THRESHOLD", "2", "environment variable ACCURACY_THRESHOLD: accuracy_threshold: expected a number "
                               "between 0.0 and 1.0"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL: log_level: expected one of"),
])
def test_bad_environment_value_is_named_with_exit_2(pipeline, name, value, expected):
    result = pipeline(env={name: value})
    assert result.exit_code == 2
    assert expected in _error_line(result)


@pytest.mark.unit
@pytest.mark.parametrize("raw, parsed", [("true", True), ("0", False), ("yes", True), ("No", False)])
def test_environment_booleans_accept_common_spellings(raw, parsed):
    config, sources = load_config(env={"AUTO_DEPLOY_ENABLED": raw}, search_default_file=False)
    assert config.auto_deploy_enabled is parsed
    assert sources["auto_deploy_enabled"] == "env:AUTO_DEPLOY_ENABLED"


@pytest.mark.unit
def test_precedence_is_defaults_then_file_then_environment_then_flags(tmp_path):
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"accuracy_threshold": 0.91, "minimum_accuracy": 0.5, "aws_region": "eu-west-1",
                                "instance_type": "ml.t2.medium"}))
    config, sources = load_config(file, env={"ACCURACY_THRESHOLD": "0.92", "AWS_REGION": "eu-central-1"},
                                  flags={"accuracy_threshold": 0.93})
    assert (config.accuracy_threshold, config.aws_region, config.instance_type, config.minimum_accuracy) == \
        (0.93, "eu-central-1", "ml.t2.medium", 0.5)
    assert sources["accuracy_threshold"] == "flag:--accuracy-threshold"
    assert sources["aws_region"] == "env:AWS_REGION"
    assert sources["instance_type"] == f"file:{file}"
    assert sources["cv_folds"] == "default"


def test_pipeline_config_json_in_the_working_directory_is_read_by_default(pipeline):
    Path("pipeline_config.json").write_text(json.dumps({"accuracy_threshold": 1.0, "minimum_accuracy": 0.99,
                                                        "model_type": "random_forest"}))
    result = pipeline()
    assert result.exit_code == 3
    assert pipeline.results()["config_sources"]["accuracy_threshold"] == "file:pipeline_config.json"


@pytest.mark.unit
def test_malformed_role_arn_is_refused_before_any_call(pipeline):
    result = pipeline("--role-arn", "SageMakerRole")
    assert result.exit_code == 2
    assert "role_arn: expected an IAM role ARN" in _error_line(result)


def test_secret_webhook_never_appears_in_results(pipeline):
    secret = "https://hooks.slack.invalid/services/T000/B000/SECRETSECRET"
    pipeline("--mode", "training", env={"SLACK_WEBHOOK_URL": secret, "MLOPS_TEST": "1"},
             fast=True)
    text = pipeline.last_output.read_text()
    assert "SECRETSECRET" not in text
    assert "SECRETSECRET" not in Path("pipeline.log").read_text()


@pytest.mark.unit
@pytest.mark.parametrize("metric", ["test_size", "cv_std", "no_such_metric"])
def test_gate_metric_must_be_a_score_where_higher_is_better(pipeline, metric):
    result = pipeline("--mode", "training", "--set", f"gate_metric={metric}")
    assert result.exit_code == 2
    assert f"gate_metric {metric!r}" in _error_line(result)


@pytest.mark.unit
@pytest.mark.parametrize("name", ["../../escaped", "a/b", "-x", "a_b"])
def test_endpoint_name_must_be_a_plain_name(pipeline, name):
    result = pipeline("--endpoint-name", name)
    assert result.exit_code == 2
    assert "expected letters, digits and hyphens" in result.output
    assert not Path("escaped").exists() and not Path(".mlops").exists()
