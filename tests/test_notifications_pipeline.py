"""Notifications through the real CLI: a broken channel never changes the pipeline's own result."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.notification_fixtures import WEBHOOK_SECRET, Reply, SlackReceiver

FEW_RETRIES = ["--set", "notification_retries=1", "--set", "notification_timeout_seconds=1"]


def _deliveries(results: dict) -> dict[str, dict]:
    return {d["event"]: d for d in results["notifications"] if d["channel"] == "slack"}


def test_a_deploying_run_tells_slack_the_decision_and_the_finish(pipeline, slack: SlackReceiver):
    result = pipeline(*FEW_RETRIES, env={"SLACK_WEBHOOK_URL": slack.url})
    assert result.exit_code == 0, result.output
    deliveries = _deliveries(pipeline.results())
    assert deliveries["gate_decision"]["delivered"] and deliveries["pipeline_finished"]["delivered"]
    assert len(slack.requests) == 2
    assert "iris-model" in str(slack.requests[-1])


@pytest.mark.parametrize("script", [Reply(500), Reply(status=200, slow=True)], ids=["500 every time", "too slow"])
def test_a_failing_slack_leaves_the_result_unchanged_and_says_what_happened(pipeline, slack: SlackReceiver, script):
    slack.script(script)
    result = pipeline(*FEW_RETRIES, env={"SLACK_WEBHOOK_URL": slack.url})
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    assert results["pipeline_status"] == "success"
    finished = _deliveries(results)["pipeline_finished"]
    assert finished["delivered"] is False and finished["error"]
    gate = _deliveries(results)["gate_decision"]
    assert gate["attempts"] == (2 if script.status == 500 else 1)  # a timed-out post may have landed
    assert finished["attempts"] == 1  # the channel is known to be down by then: one try, no backoff
    assert WEBHOOK_SECRET not in pipeline.last_output.read_text()


def test_slack_down_leaves_the_result_unchanged(pipeline, closed_port: int):
    url = f"http://127.0.0.1:{closed_port}/services/{WEBHOOK_SECRET}"
    assert pipeline(*FEW_RETRIES, env={"SLACK_WEBHOOK_URL": url}).exit_code == 0
    assert _deliveries(pipeline.results())["pipeline_finished"]["delivered"] is False


def test_429_then_200_delivers_once(pipeline, slack: SlackReceiver):
    slack.script(Reply(429, headers={"Retry-After": "0"}), Reply(200))
    assert pipeline(*FEW_RETRIES, env={"SLACK_WEBHOOK_URL": slack.url}).exit_code == 0
    deliveries = _deliveries(pipeline.results())
    assert deliveries["gate_decision"]["delivered"] and deliveries["gate_decision"]["attempts"] == 2
    assert len(slack.requests) == 3  # gate decision twice (429, then 200), finish once


def test_notify_strict_fails_the_run_when_a_notification_was_not_delivered(pipeline, closed_port: int):
    url = f"http://127.0.0.1:{closed_port}/services/{WEBHOOK_SECRET}"
    result = pipeline(*FEW_RETRIES, "--set", "notify_strict=true", env={"SLACK_WEBHOOK_URL": url})
    assert result.exit_code == 1
    assert pipeline.results()["error"]["message"] == "a notification was not delivered and notify_strict is on"



# --------------------------------------------------------------------------- the notification budget


def test_a_hanging_slack_costs_a_training_run_at_most_its_budget(pipeline, hanging_slack: SlackReceiver):
    result = pipeline("--mode", "training", "--set", "notification_budget_seconds=1",
                      env={"SLACK_WEBHOOK_URL": hanging_slack.url})
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    assert results["pipeline_status"] == "success"
    deliveries = _deliveries(results)
    assert set(deliveries) == {"gate_decision", "pipeline_finished"}
    assert not any(d["delivered"] for d in deliveries.values())
    assert "notification budget of 1s exhausted" in deliveries["gate_decision"]["error"]
    # The gate decision's post used up the budget: the finish notification was never attempted.
    finished = deliveries["pipeline_finished"]
    assert (finished["attempts"], finished["error"]) == (0, "notification budget of 1s exhausted")
    assert hanging_slack.answered == 0


def test_notification_budget_from_a_config_file_is_used(pipeline, throttling_slack: SlackReceiver):
    Path("budget.json").write_text(json.dumps({"notification_budget_seconds": 2.5}))
    result = pipeline("--mode", "training", "--config-file", "budget.json",
                      env={"SLACK_WEBHOOK_URL": throttling_slack.url})
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    assert results["config"]["notification_budget_seconds"] == 2.5
    assert results["config_sources"]["notification_budget_seconds"] == "file:budget.json"
    assert "notification budget of 2.5s" in _deliveries(results)["gate_decision"]["error"]


@pytest.mark.unit
@pytest.mark.parametrize("value", ["0", "-1", "NaN", "Infinity", '"ten"'])
def test_a_bad_notification_budget_is_refused_with_exit_2(pipeline, value: str):
    result = pipeline("--mode", "training", "--set", f"notification_budget_seconds={value}")
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert "notification_budget_seconds: expected a " in line and "number" in line
