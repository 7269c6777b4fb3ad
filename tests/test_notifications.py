"""Notifications against real receivers: an HTTP webhook, aiosmtpd, and SNS under moto."""
from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import signal
import smtplib
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import PipelineConfig
from pipeline.notifications import (
    EVENTS,
    MAX_RETRY_AFTER_SECONDS,
    SNS_SUBJECT_LIMIT,
    Message,
    Notifier,
    SmtpSettings,
    severity_for,
)
from pipeline.notifications.message import RunSummary
from tests.notification_fixtures import SMTP_PASSWORD, WEBHOOK_SECRET, Reply, SlackReceiver

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent

SUMMARY = RunSummary(
    status="failed",
    run_id="run-42",
    mode="full",
    backend="local",
    training_job="iris-classifier-20240101-000000",
    gate_decision="deploy", gate_metric="accuracy", gate_value=0.966667, gate_threshold=0.95, gate_minimum=0.9,
    gate_reason="accuracy 96.67% meets the deploy threshold 95.00%",
    endpoint_name="iris-model-prod",
    endpoint_url="http://127.0.0.1:8080",
    version="v7",
    previous_version="v6",
    final_state="rolled_back",
    rollback_reason="p95 latency 1450 ms above the 1000 ms limit",
    duration_seconds=83.4,
    message="the new model failed its live tests and was rolled back",
)


def make_config(**settings: Any) -> PipelineConfig:
    settings.setdefault("notification_timeout_seconds", 2.0)
    settings.setdefault("notification_retries", 2)
    settings.setdefault("notify_events", list(EVENTS))
    return PipelineConfig.model_validate(settings)


def make_notifier(config: PipelineConfig, env: dict[str, str] | None = None) -> tuple[Notifier, list[float]]:
    """A notifier that records its back-off delays instead of sleeping them."""
    notifier = Notifier(config, "run-42", env=env or {}, backoff_seconds=0.01)
    delays: list[float] = []
    notifier.sleep = delays.append
    return notifier, delays


def slack_notifier(receiver_url: str, **settings: Any) -> tuple[Notifier, list[float]]:
    return make_notifier(make_config(slack_webhook_url=receiver_url, **settings))


def notify_and_close(notifier: Notifier, event: str, summary: RunSummary) -> list[dict[str, Any]]:
    """One event, then the end of the run: the deliveries it produced."""
    notifier.notify(event, summary)
    return notifier.close()


def all_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload)


# --------------------------------------------------------------------------- Slack


def test_slack_message_shows_status_gate_endpoint_version_duration_and_rollback_reason(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url)

    notify_and_close(notifier, "rolled_back", replace(SUMMARY, status="running"))

    [payload] = slack.requests
    assert payload["blocks"][0]["type"] == "header"
    text = all_text(payload)
    for expected in ("running", "deploy: accuracy 0.9667 (threshold 0.95, minimum 0.9)", "iris-model-prod",
                     "v7 (previous v6)", "1m 23s", "p95 latency 1450 ms above the 1000 ms limit"):
        assert expected in text
    assert payload["text"].startswith("[WARNING]")


def test_slack_429_waits_for_retry_after_then_delivers_once(slack: SlackReceiver) -> None:
    slack.script(Reply(429, "rate_limited", {"Retry-After": "2"}), Reply(200))
    notifier, delays = slack_notifier(slack.url)

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert delays == [2.0]
    assert (record["delivered"], record["attempts"]) == (True, 2)
    assert len(slack.requests) == 2


def test_slack_retry_after_is_capped(slack: SlackReceiver) -> None:
    slack.script(Reply(429, "rate_limited", {"Retry-After": "3600"}), Reply(200))
    notifier, delays = slack_notifier(slack.url, notification_budget_seconds=60)  # room for the longest wait

    notify_and_close(notifier, "gate_decision", SUMMARY)

    assert delays == [MAX_RETRY_AFTER_SECONDS]


def test_slack_5xx_is_retried_with_exponential_backoff_then_recorded_as_failed(slack: SlackReceiver) -> None:
    slack.script(Reply(500, "internal_error"))
    notifier, delays = slack_notifier(slack.url, notification_retries=3)

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert delays == [0.01, 0.02, 0.04]
    assert (record["delivered"], record["attempts"]) == (False, 4)
    assert "HTTP 500" in record["error"]
    assert len(slack.requests) == 4


def test_slack_4xx_other_than_429_is_not_retried(slack: SlackReceiver) -> None:
    slack.script(Reply(404, "no_service"))
    notifier, delays = slack_notifier(slack.url)

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"], delays) == (False, 1, [])
    assert "404" in record["error"] and "no_service" in record["error"]


def test_slack_slower_than_the_timeout_is_not_retried_so_it_is_never_posted_twice(slack: SlackReceiver) -> None:
    slack.script(Reply(slow=True))
    notifier, _ = slack_notifier(slack.url, notification_timeout_seconds=0.2, notification_retries=1)

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"]) == (False, 1)
    assert "Timeout" in record["error"] and "may have been delivered" in record["error"]
    assert len(slack.requests) == 1


def test_slack_receiver_down_is_a_warning_not_an_exception(closed_port: int,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    notifier, _ = slack_notifier(f"http://127.0.0.1:{closed_port}/services/{WEBHOOK_SECRET}")

    with caplog.at_level(logging.WARNING, logger="pipeline.notifications"):
        [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"]) == (False, 3)
    assert "ConnectionError" in record["error"]
    assert any(r.levelno == logging.WARNING and "not delivered" in r.getMessage() for r in caplog.records)


def test_webhook_secret_never_appears_in_logs_or_deliveries(slack: SlackReceiver, closed_port: int,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    slack.script(Reply(500, f"echo {WEBHOOK_SECRET}"), Reply(200))
    caplog.set_level(logging.DEBUG)  # urllib3 logs the request path at DEBUG
    working, _ = slack_notifier(slack.url)
    down, _ = slack_notifier(f"http://127.0.0.1:{closed_port}/services/{WEBHOOK_SECRET}")

    notify_and_close(working, "gate_decision", SUMMARY)
    notify_and_close(down, "gate_decision", SUMMARY)

    assert any(r.name.startswith("urllib3") for r in caplog.records)  # the library did log the request
    assert "xSecretWebhookToken42" not in caplog.text
    assert "xSecretWebhookToken42" not in json.dumps(working.deliveries + down.deliveries)
    assert "http://127.0.0.1/***" in json.dumps(down.deliveries)


@pytest.mark.unit
def test_webhook_over_plain_http_to_a_remote_host_is_refused() -> None:
    notifier, _ = slack_notifier(f"http://hooks.example.invalid/services/{WEBHOOK_SECRET}")

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"]) == (False, 1)
    assert "https" in record["error"] and "xSecretWebhookToken42" not in record["error"]


# --------------------------------------------------------------------------- events, de-duplication, records


def test_same_event_twice_in_one_run_is_sent_once(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url)

    notifier.notify("gate_decision", SUMMARY)
    notifier.notify("gate_decision", SUMMARY)

    assert len(notifier.close()) == 1
    assert len(slack.requests) == 1
    assert len(notifier.deliveries) == 1


def test_an_undelivered_event_is_tried_again_by_a_later_notify(slack: SlackReceiver) -> None:
    slack.script(Reply(500), Reply(500), Reply(500), Reply(200))
    notifier, _ = slack_notifier(slack.url)

    notifier.notify("gate_decision", SUMMARY)
    notifier.notify("gate_decision", SUMMARY)
    record = notifier.close()[-1]

    assert record["delivered"]
    assert [d["delivered"] for d in notifier.deliveries] == [False, True]


def test_a_channel_that_failed_its_retries_gets_one_try_per_later_event(slack: SlackReceiver) -> None:
    slack.script(Reply(500))
    notifier, delays = slack_notifier(slack.url, notification_retries=2)

    notifier.notify("gate_decision", SUMMARY)
    notifier.notify("pipeline_finished", SUMMARY)
    first, later = [[record] for record in notifier.close()]

    assert [first[0]["attempts"], later[0]["attempts"]] == [3, 1]
    assert len(delays) == 2  # backoff only within the first event


def test_events_not_in_notify_events_are_not_sent(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url, notify_events=["pipeline_finished"])

    notifier.notify("gate_decision", SUMMARY)
    notifier.notify("pipeline_finished", SUMMARY)
    assert [record["event"] for record in notifier.close()] == ["pipeline_finished"]
    assert [p["text"] for p in slack.requests] == [Message.build("pipeline_finished", SUMMARY).subject]


def test_default_notify_events_skip_pipeline_started(slack: SlackReceiver) -> None:
    notifier, _ = make_notifier(PipelineConfig(slack_webhook_url=slack.url))

    assert notify_and_close(notifier, "pipeline_started", SUMMARY) == []
    assert slack.requests == []


def test_unknown_event_is_ignored_with_a_warning(slack: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    notifier, _ = slack_notifier(slack.url)

    with caplog.at_level(logging.WARNING, logger="pipeline.notifications"):
        assert notify_and_close(notifier, "model_trained", SUMMARY) == []

    assert "model_trained" in caplog.text
    assert slack.requests == []


@pytest.mark.unit
def test_no_channels_configured_sends_nothing() -> None:
    notifier, _ = make_notifier(make_config(email_recipients=["ops@example.com"]), env={})

    assert notifier.channels == []
    assert notify_and_close(notifier, "pipeline_finished", SUMMARY) == []


def test_delivery_record_has_the_documented_keys(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url)

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert set(record) == {"channel", "event", "delivered", "attempts", "error", "at"}
    assert (record["channel"], record["event"], record["error"]) == ("slack", "gate_decision", None)
    assert notifier.deliveries == [record]


def test_a_summary_with_nothing_known_yet_still_produces_a_message(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url)

    [record] = notify_and_close(notifier, "pipeline_finished", RunSummary(run_id="run-42", status="running"))

    assert record["delivered"]
    assert "Pipeline finished: running" in all_text(slack.requests[0])


@pytest.mark.unit
@pytest.mark.parametrize(("event", "summary", "expected"), [
    ("rollback_failed", {"status": "running"}, "error"),
    ("pipeline_finished", {"status": "failed"}, "error"),
    ("tests_failed", {"status": "running"}, "warning"),
    ("rolled_back", {"status": "running"}, "warning"),
    ("gate_decision", {"status": "held", "gate_decision": "held"}, "warning"),
    ("pipeline_finished", {"status": "rejected"}, "warning"),
    ("gate_decision", {"status": "running", "gate_decision": "deploy"}, "info"),
    ("pipeline_finished", {"status": "success"}, "info"),
    ("pipeline_started", {"status": "running"}, "info"),
])
def test_severity_follows_the_outcome(event: str, summary: dict[str, Any], expected: str) -> None:
    assert severity_for(event, RunSummary(run_id="run-1", **summary)) == expected


# --------------------------------------------------------------------------- strict mode


def test_strict_failure_is_set_when_notify_strict_and_a_delivery_failed(closed_port: int) -> None:
    notifier, _ = slack_notifier(f"http://127.0.0.1:{closed_port}/hook", notify_strict=True,
                                 notification_retries=0)

    notifier.notify("pipeline_finished", SUMMARY)

    assert notifier.strict_failure is True


def test_strict_failure_stays_false_without_notify_strict(closed_port: int) -> None:
    notifier, _ = slack_notifier(f"http://127.0.0.1:{closed_port}/hook", notification_retries=0)

    notifier.notify("pipeline_finished", SUMMARY)

    assert notifier.strict_failure is False


def test_strict_failure_stays_false_when_everything_was_delivered(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url, notify_strict=True)

    notifier.notify("pipeline_finished", SUMMARY)

    assert notifier.strict_failure is False


# --------------------------------------------------------------------------- background delivery and the budget


def budget_notifier(url: str, budget: float, run_id: str = "run-42", **settings: Any) -> Notifier:
    """A notifier that really waits (no sleep seam), with a generous per-attempt timeout."""
    settings.setdefault("notification_timeout_seconds", 30.0)
    return Notifier(make_config(slack_webhook_url=url, notification_budget_seconds=budget, **settings), run_id,
                    env={}, backoff_seconds=0.4)


def test_notify_returns_before_the_receiver_answers(slack: SlackReceiver) -> None:
    slack.script(Reply(slow=True))  # holds the request until released
    notifier, _ = slack_notifier(slack.url)

    notifier.notify("gate_decision", SUMMARY)
    answered_while_notify_ran = slack.answered
    slack.release.set()
    [record] = notifier.close()

    assert answered_while_notify_ran == 0
    assert (record["delivered"], record["attempts"]) == (True, 1)  # a blocking notify would have timed out


def test_events_are_delivered_in_order_by_one_worker(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url)

    for event in ("gate_decision", "deployment_succeeded", "pipeline_finished"):
        notifier.notify(event, SUMMARY)
    records = notifier.close()

    expected = ["gate_decision", "deployment_succeeded", "pipeline_finished"]
    assert [record["event"] for record in records] == expected
    assert [payload["text"] for payload in slack.requests] == [
        Message.build(event, SUMMARY).subject for event in expected]


def test_close_gives_up_on_a_delivery_still_in_flight_when_the_budget_runs_out(slack: SlackReceiver) -> None:
    slack.script(Reply(trickle=True))  # answers a byte at a time: no read timeout ever fires
    notifier = budget_notifier(slack.url, budget=1, run_id="run-trickle")

    notifier.notify("gate_decision", SUMMARY)
    notifier.notify("pipeline_finished", SUMMARY)
    gate, finished = notifier.close()
    answered_when_close_returned = slack.answered

    assert answered_when_close_returned == 0
    assert (gate["delivered"], gate["attempts"]) == (False, 1)
    assert gate["error"].startswith("notification budget of 1s exhausted during attempt 1")
    assert (finished["delivered"], finished["attempts"], finished["error"]) == (
        False, 0, "notification budget of 1s exhausted")
    assert len(slack.requests) == 1


def test_deliveries_are_final_once_close_returned(slack: SlackReceiver) -> None:
    slack.script(Reply(trickle=True))
    # A budget long enough that a loaded machine's pauses between trickled bytes never reach it.
    notifier = budget_notifier(slack.url, budget=2.0, run_id="run-final")
    notifier.notify("gate_decision", SUMMARY)
    assert slack.arrived.wait(20)  # in flight (however slowly a loaded machine got it there)
    records = notifier.close()

    slack.release.set()  # the in-flight post now completes with 200
    [worker] = [thread for thread in threading.enumerate() if thread.name == "notifications-run-final"]
    worker.join(timeout=20)
    # The client can read the last byte before the receiver's thread counts the answer: wait for the count.
    assert slack.finished.wait(20)

    assert slack.answered == 1 and not worker.is_alive()
    assert notifier.deliveries == records
    assert records[0]["delivered"] is False


def test_a_hanging_receiver_is_cut_off_at_the_budget_not_at_the_timeout(hanging_slack: SlackReceiver) -> None:
    notifier = budget_notifier(hanging_slack.url, budget=1, notification_timeout_seconds=30)

    notifier.notify("gate_decision", SUMMARY)
    [record] = notifier.close()

    assert record["delivered"] is False
    assert "notification budget of 1s exhausted" in record["error"]
    # The receiver would hold the request for a minute and the timeout is 30 s: only the budget ends it.
    assert hanging_slack.client_gone.wait(timeout=20)
    assert hanging_slack.answered == 0


def test_retry_after_beyond_the_remaining_budget_is_not_waited_for(throttling_slack: SlackReceiver) -> None:
    notifier, delays = slack_notifier(throttling_slack.url, notification_budget_seconds=2)

    notifier.notify("gate_decision", SUMMARY)
    [record] = notifier.close()

    assert (record["delivered"], record["attempts"], delays) == (False, 1, [])
    assert "Retry-After of 30s is beyond" in record["error"]
    assert "notification budget of 2s" in record["error"]
    assert len(throttling_slack.requests) == 1


def test_backoff_that_would_pass_the_budget_ends_the_retries(failing_slack: SlackReceiver) -> None:
    notifier = budget_notifier(failing_slack.url, budget=2, notification_retries=10)

    notifier.notify("gate_decision", SUMMARY)
    [record] = notifier.close()

    assert record["delivered"] is False
    assert 1 < record["attempts"] < 11  # backoff 0.4 s, 0.8 s, 1.6 s...: the budget ends it early
    assert "HTTP 500" in record["error"] and "not retried: backoff of" in record["error"]
    assert "notification budget of 2s" in record["error"]
    assert len(failing_slack.requests) == record["attempts"]


def test_a_channel_throttled_for_the_first_event_gets_one_try_for_the_next(throttling_slack: SlackReceiver) -> None:
    notifier, delays = slack_notifier(throttling_slack.url, notification_budget_seconds=2)

    notifier.notify("gate_decision", SUMMARY)
    notifier.notify("pipeline_finished", SUMMARY)
    records = notifier.close()

    assert [(r["event"], r["delivered"], r["attempts"]) for r in records] == [
        ("gate_decision", False, 1), ("pipeline_finished", False, 1)]
    assert delays == []


def test_strict_failure_counts_notifications_given_up_at_the_budget(hanging_slack: SlackReceiver) -> None:
    notifier = budget_notifier(hanging_slack.url, budget=0.5, notify_strict=True)

    notifier.notify("pipeline_finished", SUMMARY)
    [record] = notifier.close()

    assert "notification budget of 0.5s exhausted" in record["error"]
    assert notifier.strict_failure is True


def test_a_notify_after_close_is_delivered_before_it_returns(slack: SlackReceiver) -> None:
    notifier, _ = slack_notifier(slack.url)
    assert notifier.close() == []

    notifier.notify("pipeline_finished", SUMMARY)

    assert [(d["event"], d["delivered"]) for d in notifier.deliveries] == [("pipeline_finished", True)]
    assert len(slack.requests) == 1


def test_a_notify_after_the_budget_ran_out_is_recorded_not_sent(slack: SlackReceiver) -> None:
    slack.script(Reply(trickle=True))
    notifier = budget_notifier(slack.url, budget=0.3)
    notifier.notify("gate_decision", SUMMARY)
    notifier.close()

    notifier.notify("rolled_back", SUMMARY)

    late = notifier.deliveries[-1]
    assert (late["event"], late["delivered"], late["attempts"], late["error"]) == (
        "rolled_back", False, 0, "notification budget of 0.3s exhausted")
    assert len(slack.requests) == 1


def wait_until_main_thread_runs(function: str, limit: float = 10.0) -> bool:
    """True once the main thread is inside ``function`` (looked up on its live stack)."""
    main = threading.main_thread().ident
    stop = threading.Event()
    for _ in range(int(limit / 0.01)):
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        stop.wait(0.01)
    return False


def test_ctrl_c_while_close_waits_stops_the_wait_and_records_why(hanging_slack: SlackReceiver,
                                                                 python_ctrl_c: None) -> None:
    notifier = budget_notifier(hanging_slack.url, budget=25)  # the wait a Ctrl-C cuts short
    notifier.notify("gate_decision", SUMMARY)
    notifier.notify("pipeline_finished", SUMMARY)

    def interrupt_once_the_post_is_held() -> None:  # bounds generous enough for a machine under heavy load
        if hanging_slack.arrived.wait(timeout=20) and wait_until_main_thread_runs("_settle", limit=20):
            # A real signal, sent to the main thread itself: one sent to the process may be taken by another
            # thread, and the main thread would sleep on until its wait ran out.
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_the_post_is_held, daemon=True)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        notifier.close()
    interrupter.join()

    records = notifier.deliveries
    assert [(r["event"], r["delivered"], r["attempts"]) for r in records] == [
        ("gate_decision", False, 1), ("pipeline_finished", False, 0)]
    assert all(r["error"].startswith("interrupted while waiting for notifications") for r in records)


def test_a_delivery_still_in_flight_does_not_keep_the_process_alive(slack: SlackReceiver) -> None:
    slack.script(Reply(trickle=True))  # the receiver keeps the post going until the test ends
    script = (
        "from pipeline.config import PipelineConfig\n"
        "from pipeline.notifications import Notifier\nfrom pipeline.notifications.message import RunSummary\n"
        f"config = PipelineConfig(slack_webhook_url={slack.url!r}, notification_budget_seconds=0.5)\n"
        "notifier = Notifier(config, 'run', env={})\n"
        "notifier.notify('pipeline_finished', RunSummary(run_id='run', status='running'))\n"
        "print(notifier.close()[0]['error'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notification budget of 0.5s exhausted during attempt 1")
    assert slack.answered == 0  # the process ended while its post was still being answered


# --------------------------------------------------------------------------- SNS


@pytest.mark.unit
def test_sns_publishes_subject_message_and_severity_attribute(sns_topic: Any) -> None:
    notifier, _ = make_notifier(make_config(sns_topic_arn=sns_topic.arn))

    [record] = notify_and_close(notifier, "rollback_failed", SUMMARY)

    assert record["delivered"]
    [envelope] = sns_topic.read()
    assert envelope["Subject"] == Message.build("rollback_failed", SUMMARY).subject
    assert envelope["MessageAttributes"]["severity"] == {"Type": "String", "Value": "error"}
    assert "p95 latency 1450 ms above the 1000 ms limit" in envelope["Message"]
    assert "deploy: accuracy 0.9667" in envelope["Message"]


@pytest.mark.unit
def test_sns_subject_is_cut_to_the_sns_limit(sns_topic: Any) -> None:
    notifier, _ = make_notifier(make_config(sns_topic_arn=sns_topic.arn))

    [record] = notify_and_close(notifier, "gate_decision", replace(SUMMARY, endpoint_name="e" * 300))

    assert record["delivered"]
    [envelope] = sns_topic.read()
    assert len(envelope["Subject"]) <= SNS_SUBJECT_LIMIT
    assert envelope["Subject"].endswith("...")


@pytest.mark.unit
def test_sns_topic_that_does_not_exist_is_recorded_not_raised(aws_credentials: None) -> None:
    from moto import mock_aws

    with mock_aws():
        notifier, delays = make_notifier(make_config(sns_topic_arn="arn:aws:sns:us-east-1:123456789012:missing"))
        [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"], delays) == (False, 1, [])
    assert "NotFound" in record["error"]


def test_the_local_path_does_not_import_boto3(closed_port: int) -> None:
    script = (
        "import sys\n"
        "from pipeline.config import PipelineConfig\n"
        "from pipeline.notifications import Notifier\nfrom pipeline.notifications.message import RunSummary\n"
        f"config = PipelineConfig(slack_webhook_url='http://127.0.0.1:{closed_port}/hook', notification_retries=0)\n"
        "notifier = Notifier(config, 'run', env={})\n"
        "notifier.notify('pipeline_finished', RunSummary(run_id='run', status='running'))\n"
        "print(notifier.close()[0]['attempts'])\n"
        "print('boto3' in sys.modules, 'botocore' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert result.stdout.split("\n")[-2] == "False False", result.stderr
    assert result.stdout.split("\n")[0] == "1"  # the delivery was tried (and failed: nothing listens)


# --------------------------------------------------------------------------- email


def smtp_env(port: int, **extra: str) -> dict[str, str]:
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_FROM": "mlops@example.com", **extra}


def email_notifier(env: dict[str, str], **settings: Any) -> tuple[Notifier, list[float]]:
    return make_notifier(make_config(email_recipients=["ops@example.com", "ml@example.com"], **settings), env)


def test_email_over_starttls_logs_in_after_tls_and_sends_plain_text(smtp_server: Any, tls_files: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, port = smtp_server(tls_context=tls_files.server_context(), require_starttls=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    notifier, _ = email_notifier(smtp_env(port, SMTP_SECURITY="starttls", SMTP_USER="mlops",
                                          SMTP_PASSWORD=SMTP_PASSWORD))

    [record] = notify_and_close(notifier, "rolled_back", SUMMARY)

    assert record["delivered"], record["error"]
    assert recorder.logins == [("PLAIN", "mlops", SMTP_PASSWORD, True)]
    [received] = recorder.messages
    assert received.tls and received.rcpt_tos == ["ops@example.com", "ml@example.com"]
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert parsed["Subject"] == Message.build("rolled_back", SUMMARY).subject
    assert parsed.get_content_type() == "text/plain"
    assert "Rollback reason: p95 latency 1450 ms above the 1000 ms limit" in parsed.get_content()


def test_email_over_implicit_ssl(smtp_server: Any, tls_files: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, port = smtp_server(ssl_context=tls_files.server_context())
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    notifier, _ = email_notifier(smtp_env(port, SMTP_SECURITY="ssl"))

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert record["delivered"], record["error"]
    assert len(recorder.messages) == 1


def test_email_without_encryption_to_loopback_may_log_in(smtp_server: Any) -> None:
    recorder, port = smtp_server(auth_require_tls=False)
    notifier, _ = email_notifier(smtp_env(port, SMTP_SECURITY="none", SMTP_USER="mlops",
                                          SMTP_PASSWORD=SMTP_PASSWORD))

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert record["delivered"], record["error"]
    assert recorder.logins[0][3] is False
    assert recorder.messages[0].tls is False


@pytest.mark.unit
def test_password_over_plain_smtp_to_a_remote_host_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    def no_connection(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("must refuse before connecting")

    monkeypatch.setattr(smtplib, "SMTP", no_connection)
    env = {"SMTP_HOST": "smtp.example.com", "SMTP_PORT": "25", "SMTP_SECURITY": "none",
           "SMTP_USER": "mlops", "SMTP_PASSWORD": SMTP_PASSWORD}
    notifier, _ = email_notifier(env)

    with caplog.at_level(logging.DEBUG):
        [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"]) == (False, 1)
    assert "refusing to send SMTP_PASSWORD unencrypted to smtp.example.com" in record["error"]
    assert SMTP_PASSWORD not in caplog.text + json.dumps(notifier.deliveries)


def test_rejected_smtp_login_is_not_retried_and_hides_the_password(smtp_server: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    recorder, port = smtp_server(accept_login=False, auth_require_tls=False)
    notifier, delays = email_notifier(smtp_env(port, SMTP_SECURITY="none", SMTP_USER="mlops",
                                               SMTP_PASSWORD=SMTP_PASSWORD))

    with caplog.at_level(logging.DEBUG):
        [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"], delays) == (False, 1, [])
    assert "535" in record["error"]
    assert SMTP_PASSWORD not in caplog.text + json.dumps(notifier.deliveries)
    assert recorder.messages == []


def test_smtp_server_down_is_retried_then_recorded(closed_port: int) -> None:
    notifier, delays = email_notifier(smtp_env(closed_port, SMTP_SECURITY="none"))

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"], delays) == (False, 3, [0.01, 0.02])
    assert "ConnectionRefusedError" in record["error"]


@pytest.mark.unit
@pytest.mark.parametrize(("env", "port", "security"), [
    ({"SMTP_PORT": "465"}, 465, "ssl"),
    ({"SMTP_PORT": "587"}, 587, "starttls"),
    ({"SMTP_PORT": "2525"}, 2525, "none"),
    ({}, 25, "none"),
    ({"SMTP_SECURITY": "ssl"}, 465, "ssl"),
    ({"SMTP_SECURITY": "STARTTLS"}, 587, "starttls"),
    ({"SMTP_PORT": "465", "SMTP_SECURITY": "none"}, 465, "none"),
])
def test_smtp_security_and_port_defaults(env: dict[str, str], port: int, security: str) -> None:
    settings = SmtpSettings.from_env({"SMTP_HOST": "mail.example.com", **env})

    assert (settings.port, settings.security) == (port, security)


@pytest.mark.unit
def test_invalid_smtp_settings_fail_the_delivery_not_the_pipeline() -> None:
    notifier, _ = email_notifier({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "smtp"})

    [record] = notify_and_close(notifier, "gate_decision", SUMMARY)

    assert (record["delivered"], record["attempts"]) == (False, 1)
    assert "SMTP_PORT" in record["error"]


@pytest.mark.unit
def test_email_needs_both_recipients_and_smtp_host() -> None:
    with_host_only, _ = make_notifier(make_config(), {"SMTP_HOST": "127.0.0.1"})
    with_recipients_only, _ = make_notifier(make_config(email_recipients=["ops@example.com"]), {})
    with_both, _ = make_notifier(make_config(email_recipients=["ops@example.com"]), {"SMTP_HOST": "127.0.0.1"})

    assert (with_host_only.channels, with_recipients_only.channels, with_both.channels) == ([], [], ["email"])
