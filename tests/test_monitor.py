"""The `monitor` command through the real CLI.

Most tests write the traffic they judge: the records the endpoint writes for each request
(``pipeline.monitoring.capture``, answered with the deployed model's own predictions, or refused
without an answer) go into a copy of a store where the pipeline deployed iris once for the module,
and `monitor` reads them back. Live traffic is the job's own held-out rows, replayed one row per
request (enough requests to pass monitor_min_rows).

The end-to-end tests send that traffic to a real endpoint instead: what it captures (held-out rows,
refused rows) and what it never captures (the pipeline's own endpoint tests, requests marked as test
traffic), and a breach rolled back on a live endpoint. Capture writers write within a second or two, so
those tests wait (bounded) until every request they sent is on disk before they run `monitor`.
"""
from __future__ import annotations

import csv
import json
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli import cli
from pipeline.monitoring import (
    capture_hour_directory,
    capture_line,
    capture_record,
    decode_rows,
    iter_capture_records,
)
from pipeline.serving.contract import INFERENCE_ID_HEADER, TEST_TRAFFIC_HEADER, VERSION_HEADER
from pipeline.state.store import DeploymentStore
from pipeline.training.jobs import TrainingJob
from tests.conftest import run_script, shared_endpoint, wait_for
from tests.notification_fixtures import SlackReceiver

ENDPOINT = "iris-model"
WRAPPER = Path(__file__).resolve().parent.parent / "run_mlops_pipeline.sh"
CAPTURE_DIR = Path(".mlops/endpoints") / ENDPOINT / "capture"
SHIFTED = "sepal width (cm)"  # a feature the iris model barely uses: its predictions stay put
REPLAYS = 4  # 30 held-out rows, 4 times: 120 requests, over monitor_min_rows (100)


# --------------------------------------------------------------------------- helpers
class Deployed:
    def __init__(self, results: dict[str, Any]) -> None:
        summary = results["summary"]
        self.url: str = summary["endpoint_url"]
        self.version: str = summary["endpoint_version"]
        store = DeploymentStore(".mlops")
        self.job = TrainingJob.load(store.directory / "jobs" / summary["training_job"],
                                    store.training_job(summary["training_job"]))
        frame = self.job.heldout()[0]
        self.columns: list[str] = list(frame.columns)
        self.rows: list[list[float]] = frame.to_numpy(dtype=float).tolist()
        self.labels: list[str] = [str(label) for label in self.job.heldout()[1].tolist()]

    def predictions(self, rows: Sequence[Sequence[float]]) -> list[Any]:
        """What the endpoint answers for ``rows``: the deployed model's predictions."""
        model = joblib.load(self.job.model_path)
        return model.predict(pd.DataFrame([list(row) for row in rows], columns=self.columns)).tolist()


def _deploy(pipeline, env: dict[str, str] | None = None) -> Deployed:
    result = pipeline(env=env)
    assert result.exit_code == 0, result.output
    return Deployed(pipeline.results())


@pytest.fixture(scope="module")
def deployed_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A store where the real CLI deployed iris once (its endpoint stopped again), and that run's results."""
    root = tmp_path_factory.mktemp("monitored")
    with shared_endpoint(root):
        results = json.loads((root / "results-1.json").read_text())
    yield root / ".mlops", results


@pytest.fixture
def deployed(workdir: Path, deployed_store: tuple[Path, dict[str, Any]]) -> Deployed:
    """This test's own copy of ``deployed_store``: the traffic it writes is read by no other test."""
    store, results = deployed_store
    shutil.copytree(store, workdir / ".mlops", symlinks=True)
    return Deployed(results)


def _write_records(version: str, records: list[dict[str, Any]], when: datetime) -> None:
    """Append records to a capture file of ``version`` in the hour of ``when``, as an endpoint worker does."""
    hour = capture_hour_directory(CAPTURE_DIR, version, when)
    hour.mkdir(parents=True, exist_ok=True)
    with open(hour / "written-by-the-test.jsonl", "ab") as handle:
        handle.write(b"".join(capture_line(record) for record in records))


def _captured_requests(deployed: Deployed, bodies: Sequence[str], content_type: str,
                       predictions: Sequence[list[Any] | None], when: datetime | None = None) -> list[tuple[str, str]]:
    """Write what the endpoint captures for each request (its answer, or none for a refused request); the
    (inference id, version) of each, as the endpoint's answers name them."""
    when = when or datetime.now(UTC)
    ids = [uuid.uuid4().hex for _ in bodies]
    records = [capture_record(inference_id=inference_id, input_body=body, input_content_type=content_type,
                              output_body=None if answer is None else json.dumps({"predictions": answer}),
                              output_content_type=None if answer is None else "application/json",
                              inference_time=when)
               for inference_id, body, answer in zip(ids, bodies, predictions)]
    _write_records(deployed.version, records, when)
    return [(inference_id, deployed.version) for inference_id in ids]


def _csv_body(row: Sequence[float]) -> str:
    return ",".join(map(repr, row)) + "\n"


def _capture_csv(deployed: Deployed, rows: Sequence[Sequence[float]],
                 when: datetime | None = None) -> list[tuple[str, str]]:
    """One answered CSV request per row, as ``_send_csv`` sends them."""
    return _captured_requests(deployed, [_csv_body(row) for row in rows], "text/csv",
                              [[label] for label in deployed.predictions(rows)], when)


def _capture_split(deployed: Deployed, rows: Sequence[Sequence[float]], when: datetime | None = None) -> None:
    """One answered request per row as MLflow's dataframe_split, its columns in the reverse of the model's order."""
    columns = deployed.columns[::-1]
    bodies = [json.dumps({"dataframe_split": {"columns": columns, "data": [list(row)[::-1]]}}) for row in rows]
    _captured_requests(deployed, bodies, "application/json", [[label] for label in deployed.predictions(rows)], when)


def _capture_refused(deployed: Deployed, bodies: Sequence[str]) -> None:
    """CSV requests the endpoint refused (400): captured without an answer."""
    _captured_requests(deployed, bodies, "text/csv", [None] * len(bodies))


def _captured(version: str) -> int:
    return sum(1 for _ in iter_capture_records(CAPTURE_DIR, version=version)) if CAPTURE_DIR.is_dir() else 0


def _send_csv(deployed: Deployed, rows: Sequence[Sequence[float]]) -> list[tuple[str, str]]:
    """One row per request to the live endpoint; (inference id, version that answered) of each."""
    answers = []
    with requests.Session() as session:
        for row in rows:
            reply = session.post(f"{deployed.url}/invocations", data=_csv_body(row),
                                 headers={"Content-Type": "text/csv"}, timeout=10)
            assert reply.status_code == 200, reply.text
            answers.append((reply.headers[INFERENCE_ID_HEADER], reply.headers[VERSION_HEADER]))
    return answers


def _replayed(deployed: Deployed) -> list[list[float]]:
    return [row for _ in range(REPLAYS) for row in deployed.rows]


def _shifted(deployed: Deployed, rows: list[list[float]], feature: str = SHIFTED) -> list[list[float]]:
    """The rows with one feature moved by two of its training standard deviations."""
    baseline = deployed.job.baseline()
    assert baseline is not None
    index = deployed.columns.index(feature)
    std = baseline.features[baseline.feature_names.index(feature)].std
    return [[value + 2 * std if position == index else value for position, value in enumerate(row)]
            for row in rows]


def _wait_captured(version: str, count: int) -> None:
    wait_for(lambda: _captured(version) >= count, seconds=30)
    assert _captured(version) == count


def _monitor(*args: str, settings: Sequence[str] = (), env: dict[str, str] | None = None,
             report: str | None = "monitor.json") -> Result:
    argv = [*settings, "monitor", "--endpoint-name", ENDPOINT, *args]
    if report:
        argv += ["--output-file", report]
    return CliRunner().invoke(cli, argv, env=env, catch_exceptions=False)


def _report(path: str = "monitor.json") -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _write_labels(path: str, answers: list[tuple[str, str]], labels: list[str], wrong_every: int | None) -> None:
    """``inference_id,label``; with ``wrong_every=3``, every third label is another class."""
    classes = sorted(set(labels))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["inference_id", "label"])
        for index, ((inference_id, _), label) in enumerate(zip(answers, labels)):
            if wrong_every and index % wrong_every == 0:
                label = classes[(classes.index(label) + 1) % len(classes)]
            writer.writerow([inference_id, label])


def _metrics(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


# --------------------------------------------------------------------------- the endpoint tests are not traffic
def test_the_endpoint_tests_are_counted_but_never_captured(pipeline):
    deployed = _deploy(pipeline)
    assert pipeline.results()["summary"]["testing_passed"] is True  # the run did test the endpoint

    def settled() -> bool:  # workers write their counts at most a second late
        before = _metrics(deployed.url)
        time.sleep(1.5)
        return _metrics(deployed.url) == before and before.get("mlops_endpoint_requests_total", 0) > 0

    wait_for(settled, seconds=60, interval=0)
    totals = _metrics(deployed.url)
    # Every held-out row (the parity check) and every performance request was answered and counted...
    assert totals["mlops_endpoint_request_rows_sum"] == len(deployed.rows) + 40
    # ...and none captured.
    assert totals.get("mlops_endpoint_captured_total", 0) == 0
    assert not list(CAPTURE_DIR.rglob("*.jsonl"))

    result = _monitor()
    assert result.exit_code == 2, result.output
    assert f"no captured requests for version {deployed.version}" in _error_line(result)


def test_no_captured_requests_still_writes_the_report_saying_why(deployed):
    # Only the deployment's own endpoint tests called the endpoint: nothing captured.
    result = _monitor(report="why.json")
    assert result.exit_code == 2, result.output
    report = _report("why.json")
    assert (report["verdict"], report["exit_code"], report["version"]) == ("error", 2, None)
    assert report["error"] == _error_line(result).removeprefix("Error: ")
    assert f"no captured requests for version {deployed.version}" in report["error"]


def test_a_request_marked_as_test_traffic_is_answered_but_not_captured(pipeline):
    deployed = _deploy(pipeline)
    row = ",".join(map(repr, deployed.rows[0]))
    with requests.Session() as session:  # one connection: one worker, whose writer keeps the order it was offered
        marked = session.post(f"{deployed.url}/invocations", data=row,
                              headers={"Content-Type": "text/csv", TEST_TRAFFIC_HEADER: "1"}, timeout=10)
        live = session.post(f"{deployed.url}/invocations", data=row, headers={"Content-Type": "text/csv"},
                            timeout=10)
    assert marked.status_code == 200 and marked.headers[INFERENCE_ID_HEADER]
    assert live.status_code == 200
    # The live request was written after the marked one would have been: once it is on disk, it is alone.
    _wait_captured(deployed.version, 1)
    [record] = iter_capture_records(CAPTURE_DIR, version=deployed.version)
    assert record["eventMetadata"]["inferenceId"] == live.headers[INFERENCE_ID_HEADER]


# --------------------------------------------------------------------------- drift
def test_held_out_traffic_sent_to_the_endpoint_is_captured_and_is_no_drift(pipeline):
    deployed = _deploy(pipeline)
    _send_csv(deployed, _replayed(deployed))
    _wait_captured(deployed.version, len(deployed.rows) * REPLAYS)
    result = _monitor()
    assert result.exit_code == 0, result.output
    report = _report()
    assert report["verdict"] == "no_drift" and report["exit_code"] == 0
    assert report["captured_requests"] == len(deployed.rows) * REPLAYS
    assert report["drift"]["moved_features"] == []
    assert "drift: no_drift" in result.output


def test_one_feature_shifted_by_two_standard_deviations_is_drift_on_that_feature_only(deployed):
    _capture_csv(deployed, _shifted(deployed, _replayed(deployed)))
    result = _monitor()
    assert result.exit_code == 1, result.output
    report = _report()
    assert report["verdict"] == "drift"
    assert report["drift"]["moved_features"] == [SHIFTED]
    assert {v["feature_name"] for v in report["drift"]["violations"]} == {SHIFTED}
    table = result.output[result.output.index("feature  "):].splitlines()
    moved_rows = [line for line in table[1:] if line.split("  ")[1].strip() != "-"]
    assert len(moved_rows) == 1 and moved_rows[0].startswith(SHIFTED), result.output
    assert f"1 of 4 features moved: {SHIFTED}" in result.output


def _send_refused(deployed: Deployed, bodies: Sequence[str]) -> None:
    with requests.Session() as session:
        for body in bodies:
            reply = session.post(f"{deployed.url}/invocations", data=body, headers={"Content-Type": "text/csv"},
                                 timeout=10)
            assert reply.status_code == 400, reply.text


def test_rows_refused_for_an_empty_value_are_that_features_drift_by_missing_values(deployed):
    _capture_csv(deployed, _replayed(deployed))
    index = deployed.columns.index(SHIFTED)
    _capture_refused(deployed, [",".join("" if position == index else repr(value)
                                         for position, value in enumerate(row)) for row in deployed.rows])
    result = _monitor()
    assert result.exit_code == 1, result.output
    drift = _report()["drift"]
    assert drift["moved_features"] == [SHIFTED]
    assert {(v["feature_name"], v["constraint_check_type"]) for v in drift["violations"]} == {
        (SHIFTED, "completeness_check")}


def test_rows_refused_for_their_width_are_captured_and_counted_as_drift(pipeline):
    deployed = _deploy(pipeline)
    _send_csv(deployed, _replayed(deployed))
    _send_refused(deployed, [",".join(map(repr, row[:-1])) for row in deployed.rows])  # one feature short: 400 each
    _wait_captured(deployed.version, len(deployed.rows) * (REPLAYS + 1))
    result = _monitor()
    assert result.exit_code == 1, result.output
    drift = _report()["drift"]
    assert drift["wrong_width_rows"] == len(deployed.rows) and drift["moved_features"] == []
    assert [v["constraint_check_type"] for v in drift["violations"]] == ["column_count_check"]


def test_fewer_rows_than_monitor_min_rows_is_insufficient_data_never_no_drift(deployed):
    _capture_csv(deployed, deployed.rows)  # 30 rows
    result = _monitor()
    assert result.exit_code == 2, result.output  # no verdict: the documented "usage" code
    report = _report()
    assert report["verdict"] == "insufficient_data" and report["exit_code"] == 2
    assert f"only {len(deployed.rows)} captured rows; monitor_min_rows is 100" in report["drift"]["reason"]
    assert "no_drift" not in result.output and "drift: insufficient_data" in result.output


@pytest.mark.parametrize("layer", ["file", "set"])
def test_monitor_min_rows_is_honoured_from_the_config_file_and_set(deployed, layer):
    _capture_csv(deployed, _replayed(deployed))  # 120 rows: enough for the default of 100
    if layer == "file":
        Path("monitor-config.json").write_text(json.dumps({"monitor_min_rows": 500}))
        settings = ["--config-file", "monitor-config.json"]
    else:
        settings = ["--set", "monitor_min_rows=500"]
    result = _monitor(settings=settings)
    assert result.exit_code == 2, result.output
    report = _report()
    assert report["verdict"] == "insufficient_data"
    assert report["drift"]["thresholds"]["monitor_min_rows"] == 500
    assert "monitor_min_rows is 500" in report["drift"]["reason"]


def test_traffic_sent_as_dataframe_split_gets_the_verdict_csv_gets(deployed):
    rows = _shifted(deployed, _replayed(deployed))
    now = datetime.now(UTC)
    _capture_csv(deployed, rows, when=now - timedelta(seconds=2))
    assert _monitor(report="csv.json").exit_code == 1
    since = (now - timedelta(seconds=1)).isoformat()
    _capture_split(deployed, rows, when=now)  # the same rows, named, in the reverse column order
    result = _monitor("--since", since, report="split.json")
    assert result.exit_code == 1, result.output
    by_csv, by_split = _report("csv.json")["drift"], _report("split.json")["drift"]
    assert by_split["rows_compared"] == len(rows) and by_split["wrong_width_rows"] == 0
    assert by_split["moved_features"] == by_csv["moved_features"] == [SHIFTED]
    assert by_split["features"] == by_csv["features"]  # every statistic of every feature


def test_drift_is_sent_to_slack(deployed, slack: SlackReceiver):
    _capture_csv(deployed, _shifted(deployed, _replayed(deployed)))
    delivered = len(slack.requests)
    result = _monitor(env={"SLACK_WEBHOOK_URL": slack.url})
    assert result.exit_code == 1, result.output
    sent = slack.requests[delivered:]
    assert len(sent) == 1, sent
    text = json.dumps(sent[0])
    assert "Drift detected" in text and ENDPOINT in text and SHIFTED in text


# --------------------------------------------------------------------------- live accuracy
def test_a_third_of_the_labels_wrong_is_a_breach(deployed):
    answers = _capture_csv(deployed, _replayed(deployed))
    _write_labels("labels.csv", answers, deployed.labels * REPLAYS, wrong_every=3)
    result = _monitor("--labels", "labels.csv")
    assert result.exit_code == 1, result.output
    report = _report()
    assert report["verdict"] == "breach"
    assert report["quality"]["status"] == "breach" and report["quality"]["matched"] == len(answers)
    assert report["rollback"] is None
    assert "live accuracy: breach" in result.output


def test_correct_labels_are_no_breach(deployed):
    answers = _capture_csv(deployed, _replayed(deployed))
    _write_labels("labels.csv", answers, deployed.labels * REPLAYS, wrong_every=None)
    result = _monitor("--labels", "labels.csv")
    assert result.exit_code == 0, result.output
    report = _report()
    assert report["verdict"] == "no_drift"
    assert report["quality"]["status"] == "no_breach" and report["quality"]["matched"] == len(answers)
    assert "live accuracy: no_breach" in result.output


def test_live_accuracy_prints_the_recall_of_each_class(deployed):
    answers = _capture_csv(deployed, _replayed(deployed))
    _write_labels("labels.csv", answers, deployed.labels * REPLAYS, wrong_every=3)
    result = _monitor("--labels", "labels.csv")
    recall = _report()["quality"]["per_class_recall"]
    assert sorted(recall) == sorted(set(deployed.labels))
    expected = "recall by class: " + ", ".join(
        f"{label} {item['recall']:.2%} ({item['correct']}/{item['support']})" for label, item in recall.items())
    assert expected in result.output.splitlines(), result.output


def test_a_breach_is_sent_to_slack(deployed, slack: SlackReceiver):
    answers = _capture_csv(deployed, _replayed(deployed))
    _write_labels("labels.csv", answers, deployed.labels * REPLAYS, wrong_every=3)
    delivered = len(slack.requests)
    result = _monitor("--labels", "labels.csv", env={"SLACK_WEBHOOK_URL": slack.url})
    assert result.exit_code == 1, result.output
    sent = slack.requests[delivered:]
    assert len(sent) == 1, sent  # the breach only: the traffic itself did not drift
    text = json.dumps(sent[0])
    assert "Live accuracy below the minimum" in text and ENDPOINT in text


@pytest.mark.parametrize("layer", ["flag", "env", "set", "file"])
def test_minimum_accuracy_of_live_accuracy_is_honoured_from_every_layer(deployed, layer):
    answers = _capture_csv(deployed, _replayed(deployed))
    _write_labels("labels.csv", answers, deployed.labels * REPLAYS, wrong_every=3)  # accuracy about 0.67
    settings: list[str] = []
    env = None
    if layer == "flag":
        settings = ["--minimum-accuracy", "0.5"]
    elif layer == "env":
        env = {"MINIMUM_ACCURACY": "0.5"}
    elif layer == "set":
        settings = ["--set", "minimum_accuracy=0.5"]
    else:
        Path("monitor-config.json").write_text(json.dumps({"minimum_accuracy": 0.5}))
        settings = ["--config-file", "monitor-config.json"]
    result = _monitor("--labels", "labels.csv", settings=settings, env=env)
    assert result.exit_code == 0, result.output  # the default 0.90 would be a breach (see above)
    quality = _report()["quality"]
    assert quality["status"] == "no_breach" and quality["minimum_accuracy"] == 0.5


def test_labels_that_match_too_few_captured_predictions_are_no_verdict_exit_2(deployed):
    answers = _capture_csv(deployed, _replayed(deployed))
    unknown = [(f"not-{inference_id}", version) for inference_id, version in answers]  # ids of another endpoint
    _write_labels("labels.csv", unknown, deployed.labels * REPLAYS, wrong_every=None)
    result = _monitor("--labels", "labels.csv")
    assert result.exit_code == 2, result.output  # the drift check alone would say 0: the labels were the question
    report = _report()
    assert report["quality"]["status"] == "insufficient_data" and report["exit_code"] == 2
    assert report["drift"]["verdict"] == "no_drift"
    assert "live accuracy: insufficient_data" in result.output


def test_the_rows_of_a_multi_row_request_are_labelled_by_id_and_row_index(deployed):
    rows = _replayed(deployed)
    [(inference_id, _)] = _captured_requests(deployed, ["".join(_csv_body(row) for row in rows)], "text/csv",
                                             [deployed.predictions(rows)])
    keys = [(f"{inference_id}:{index}", "") for index in range(len(rows))]
    _write_labels("labels.csv", keys, deployed.labels * REPLAYS, wrong_every=3)
    result = _monitor("--labels", "labels.csv")
    assert result.exit_code == 1, result.output
    quality = _report()["quality"]
    assert quality["status"] == "breach" and quality["matched"] == len(keys) and quality["unmatched_labels"] == 0


def test_a_breach_with_rollback_on_breach_serves_the_previous_version_recorded_like_a_manual_rollback(pipeline):
    first = _deploy(pipeline)
    deployed = _deploy(pipeline)
    assert deployed.version != first.version
    answers = _send_csv(deployed, _replayed(deployed))
    assert {version for _, version in answers} == {deployed.version}
    _wait_captured(deployed.version, len(answers))
    _write_labels("labels.csv", answers, deployed.labels * REPLAYS, wrong_every=3)
    result = _monitor("--labels", "labels.csv", "--rollback-on-breach")
    assert result.exit_code == 1, result.output
    report = _report()
    assert report["verdict"] == "breach"
    assert report["rollback"]["final_state"] == "rolled_back"
    assert report["rollback"]["serving_version"] == first.version
    assert "rollback: rolled_back" in result.output
    _, served_by = _send_csv(deployed, [deployed.rows[0]])[0]
    assert served_by == first.version
    history = CliRunner().invoke(cli, ["history", "--endpoint-name", ENDPOINT, "--json"], catch_exceptions=False)
    assert history.exit_code == 0, history.output
    rollback = json.loads(history.output)["rollbacks"][0]
    assert rollback["detail"]["to_version"] == first.version
    lines = CliRunner().invoke(cli, ["history"], catch_exceptions=False).output.splitlines()
    assert any(f"rollback    {ENDPOINT}  {deployed.version} -> {first.version}  rolled_back" in line
               for line in lines), lines
    assert CliRunner().invoke(cli, ["history", "--verify"]).exit_code == 0
    runs = json.loads(CliRunner().invoke(cli, ["runs", "--json"], catch_exceptions=False).output)["runs"]
    monitor_run = runs[0]
    assert (monitor_run["mode"], monitor_run["status"], monitor_run["exit_code"]) == ("monitor", "breach", 1)
    events = DeploymentStore(".mlops").events(ENDPOINT, run_id=monitor_run["run_id"])
    assert [event["kind"] for event in events] == ["manual_rolled_back"]  # as `rollback` records it


def test_a_breach_with_no_earlier_version_is_still_a_breach_whose_rollback_failed(pipeline):
    deployed = _deploy(pipeline)
    answers = _capture_csv(deployed, _replayed(deployed))
    _write_labels("labels.csv", answers, deployed.labels * REPLAYS, wrong_every=3)
    result = _monitor("--labels", "labels.csv", "--rollback-on-breach")
    assert result.exit_code == 1, result.output
    report = _report()
    assert report["verdict"] == "breach"
    assert report["rollback"]["final_state"] == "rollback_failed"
    assert "no earlier deployed version" in report["rollback"]["detail"]
    assert report["rollback"]["serving_version"] == deployed.version
    assert _send_csv(deployed, [deployed.rows[0]])[0][1] == deployed.version


def test_a_breach_of_a_version_that_no_longer_serves_rolls_nothing_back(pipeline):
    first = _deploy(pipeline)
    answers = _capture_csv(first, _replayed(first))
    deployed = _deploy(pipeline)
    _write_labels("labels.csv", answers, first.labels * REPLAYS, wrong_every=3)
    result = _monitor("--version", first.version, "--labels", "labels.csv", "--rollback-on-breach")
    assert result.exit_code == 1, result.output
    report = _report()
    assert report["verdict"] == "breach" and report["version"] == first.version
    assert report["rollback"]["final_state"] == "rollback_failed"
    assert report["rollback"]["serving_version"] == deployed.version
    assert f"{deployed.version} serves" in report["rollback"]["detail"]
    assert _send_csv(deployed, [deployed.rows[0]])[0][1] == deployed.version


def test_a_labels_file_without_its_label_column_is_a_one_line_usage_error(deployed):
    answers = _capture_csv(deployed, deployed.rows[:3])
    Path("labels.csv").write_text("inference_id,truth\n" + "".join(f"{i},0\n" for i, _ in answers))
    result = _monitor("--labels", "labels.csv")
    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert "labels.csv" in line and "'label'" in line


# --------------------------------------------------------------------------- MLflow bodies, read as the endpoint did
NAMES = ["a", "b", "c"]


@pytest.mark.unit
@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": ["c", "a", "b"], "data": [[3, 1, 2], [6, 4, 5]]}},
    {"dataframe_records": [{"b": 2, "c": 3, "a": 1}, {"c": 6, "a": 4, "b": 5}]},
    {"inputs": {"c": [3, 6], "b": [2, 5], "a": [1, 4]}},
    {"inputs": [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}]},
    {"instances": [{"c": 3, "b": 2, "a": 1}, {"c": 6, "b": 5, "a": 4}]},
    [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}],
    {"inputs": [[1, 2, 3], [4, 5, 6]]},
    {"dataframe_split": {"data": [[1, 2, 3], [4, 5, 6]]}},
], ids=["split", "records", "inputs-by-column", "inputs-records", "instances-records", "records-list",
        "inputs-rows", "split-unnamed"])
def test_every_json_body_the_endpoint_takes_decodes_to_rows_in_the_baseline_order(body):
    record = capture_record(inference_id="i1", input_body=json.dumps(body), input_content_type="application/json",
                            output_body='{"predictions": [0, 1]}', output_content_type="application/json")
    decoded = decode_rows(record, NAMES)
    assert decoded.rows.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert decoded.predictions == [0, 1]


@pytest.mark.unit
def test_a_named_feature_the_body_lacks_is_missing_and_an_unknown_column_is_left_out():
    body = {"dataframe_split": {"columns": ["c", "zzz", "a"], "data": [[3, 9, 1]]}}
    record = capture_record(inference_id="i1", input_body=json.dumps(body), input_content_type="application/json")
    rows = decode_rows(record, NAMES).rows
    assert rows.shape == (1, 3) and rows[0, 0] == 1.0 and np.isnan(rows[0, 1]) and rows[0, 2] == 3.0


@pytest.mark.unit
def test_a_json_object_the_endpoint_refuses_has_no_rows():
    body = {"dataframe_split": {"columns": ["a"], "data": [["x"]]}}
    record = capture_record(inference_id="i1", input_body=json.dumps(body), input_content_type="application/json")
    assert decode_rows(record, NAMES).rows.shape[0] == 0


# --------------------------------------------------------------------------- entry points
@pytest.mark.unit
def test_endpoint_name_given_before_monitor_says_where_it_goes(workdir):
    result = CliRunner().invoke(cli, ["--endpoint-name", ENDPOINT, "monitor"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert _error_line(result) == ("Error: --endpoint-name is an option of a pipeline run, not of `monitor`; "
                                   "give it after the command: `monitor --endpoint-name NAME`")


def test_monitor_through_the_wrapper(deployed, workdir):
    _capture_csv(deployed, _replayed(deployed))
    result = run_script(str(WRAPPER), "monitor", "--endpoint-name", ENDPOINT, "--output-file", "wrapped.json",
                        cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drift: no_drift" in result.stdout
    assert _report("wrapped.json")["captured_requests"] == len(deployed.rows) * REPLAYS


def test_an_empty_version_is_refused_not_taken_for_the_serving_one(deployed):
    _capture_csv(deployed, deployed.rows[:3])
    result = _monitor("--version", "")
    assert result.exit_code == 2, result.output
    assert _error_line(result) == f"Error: endpoint {ENDPOINT!r} has no recorded version '' (see `history`)"


def test_rows_of_the_wrong_width_and_unreadable_lines_are_counted_in_the_output(deployed):
    _capture_csv(deployed, _replayed(deployed))
    # A client whose rows lost a feature, answered by some other server writing the same capture layout.
    when = datetime.now(UTC)
    lines = [capture_line(capture_record(inference_id=f"short-{index}", input_body="5.1,3.5,1.4",
                                         input_content_type="text/csv", output_body='{"predictions": [0]}',
                                         output_content_type="application/json", inference_time=when))
             for index in range(3)]
    hour = capture_hour_directory(CAPTURE_DIR, deployed.version, when)
    hour.mkdir(parents=True, exist_ok=True)
    (hour / "elsewhere.jsonl").write_bytes(b"".join(lines) + b"not a capture record\n" + lines[0])
    result = _monitor()
    first = result.output.splitlines()[0]
    assert first.endswith(", 4 row(s) of the wrong width, 1 unreadable capture line(s)"), result.output
    assert _report()["drift"]["wrong_width_rows"] == 4 and _report()["unreadable_lines"] == 1


def test_the_wrappers_help_shows_a_monitor_example(workdir):
    result = run_script(str(WRAPPER), "--help", cwd=workdir)
    assert result.returncode == 0
    assert "./run_mlops_pipeline.sh monitor --endpoint-name iris-model" in result.stdout
