"""`monitor` on what it must survive: records it cannot use, traffic too repetitive to judge, labels and
files that cannot give a verdict, and its own unexpected failures.

The unit tests (``@pytest.mark.unit``) drive the reader, the decoder and the statistics directly, among
them a seeded fuzz test over the capture record's structure. The others run the real CLI (click's
CliRunner on ``pipeline.cli.cli``) against a store made by ONE deployment for the whole module: each test
writes the capture files it needs straight into the endpoint's capture directory (``capture_line`` into
``capture_hour_directory``), so no test sends traffic or waits for a capture writer. The endpoint's server
is stopped as soon as the deployment has been recorded: `monitor` reads the store and the files only.
"""
from __future__ import annotations

import base64
import copy
import csv
import json
import random
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.config import ENV_VARS
from pipeline.errors import PipelineError
from pipeline.monitoring import (
    DriftThresholds,
    LiveTraffic,
    capture_hour_directory,
    capture_line,
    capture_record,
    compute_baseline,
    decode_rows,
    detect_drift,
    iter_capture_records,
    live_quality,
    read_baseline,
    read_labels,
)
from pipeline.state.store import DeploymentStore
from pipeline.training.jobs import TrainingJob
from tests.conftest import FAST_SETTINGS, PYTHON, REPO, run_script, stop_servers_under

ENDPOINT = "iris-model"
REPLAYS = 4  # 30 held-out rows, 4 times: 120 records, over monitor_min_rows (100)
T0 = datetime(2026, 11, 30, 10, 15, 2, 123000, tzinfo=UTC)


# --------------------------------------------------------------------------- records
def _record(inference_id: str, body: str | bytes, content_type: str = "text/csv",
            answer: str | None = '{"predictions": [0]}', when: datetime = T0) -> dict[str, Any]:
    return capture_record(inference_id=inference_id, input_body=body, input_content_type=content_type,
                          output_body=answer, output_content_type="application/json" if answer is not None else None,
                          inference_time=when)


def _csv(row: Sequence[float]) -> str:
    return ",".join(map(repr, row))


def _read_all(path: Path, names: Sequence[str] | None = None, width: int = 4) -> tuple[Any, LiveTraffic, int]:
    """Read a capture directory the way `monitor` does: every record decoded into the live traffic."""
    records = iter_capture_records(path)
    traffic = LiveTraffic(width)
    decoded = 0
    for record in records:
        item = decode_rows(record, names)
        assert isinstance(item.inference_id, str) and item.time.tzinfo is not None
        assert isinstance(item.predictions, list)
        traffic.add(item.rows, item.predictions)
        decoded += 1
    return records, traffic, decoded


def _write_lines(directory: Path, lines: Sequence[bytes], version: str = "v1", name: str = "w.jsonl") -> Path:
    hour = capture_hour_directory(directory, version, T0)
    hour.mkdir(parents=True, exist_ok=True)
    path = hour / name
    path.write_bytes(b"".join(lines))
    return path


# --------------------------------------------------------------------------- the fuzz test
class RecordFuzzer:
    """Capture records bent out of shape, one at a time, from a seed: every field given every type
    (missing, null, bool, int, a number too large for a float, float, NaN, text, list, object), objects
    and lists nested deeply, bodies that are too deep, too large or not UTF-8, lines cut short or not
    JSON at all. Each case is the bytes of one line (without its newline)."""

    FIELDS = [
        ("captureData",), ("captureData", "endpointInput"), ("captureData", "endpointOutput"),
        ("captureData", "endpointInput", "observedContentType"), ("captureData", "endpointInput", "data"),
        ("captureData", "endpointInput", "encoding"), ("captureData", "endpointInput", "mode"),
        ("captureData", "endpointOutput", "observedContentType"), ("captureData", "endpointOutput", "data"),
        ("captureData", "endpointOutput", "encoding"), ("eventMetadata",), ("eventMetadata", "eventId"),
        ("eventMetadata", "inferenceId"), ("eventMetadata", "inferenceTime"), ("eventVersion",),
    ]
    BODIES = [
        "[[" + "9" * 400 + ",3.5,1.4,0.2]]",  # a number no float can hold
        "[" * 50_000,  # deeper than any parser's recursion
        "[" * 5_000 + "]" * 5_000,
        '{"instances": [[1e999, 2, 3, 4]]}',
        '{"dataframe_split": {"columns": ["a"], "data": [[' + "9" * 400 + "]]}}",
        '{"dataframe_records": [{"a": ' + "[" * 3000 + "]" * 3000 + "}]}",
        '{"inputs": {"a": [NaN, Infinity, -Infinity]}}',
        '[[1, [2, [3]], {"x": 4}, "5"]]',
        "[[" + "[" * 900 + "]" * 900 + ", 1, 2, 3]]",
        '{"instances": ' + "[" * 3000 + "]" * 3000 + "}",
        "5.1,3.5,1.4,0.2\n" + "9" * 400 + ",1,2,3\n,,,\nnan,inf,-inf,1e999",
        "\ud800,1,2,3",  # a lone surrogate
        "[]", "{}", "null", "7", '"text"', "[1, 2, 3, 4]", '{"instances": []}',
    ]

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.deep: list[str] = []

    def value(self, depth: int = 0) -> Any:
        choice = self.random.randrange(13 if depth < 3 else 9)
        if choice == 0:
            return None
        if choice == 1:
            return self.random.choice([True, False])
        if choice == 2:
            return self.random.randint(-10, 10)
        if choice == 3:
            return int("9" * self.random.choice([310, 400, 4000]))
        if choice == 4:
            return self.random.choice([0.5, -1e308, 1e308, float("nan"), float("inf")])
        if choice == 5:
            return self.random.choice(["", "text/csv", "application/json", "BASE64", "CSV", "JSON",
                                       "2026-11-30T10:15:02.123Z", "not base64 é", "\ud800", "5.1,3.5,1.4,0.2"])
        if choice == 6:
            return self.random.choice(self.BODIES)
        if choice == 7:
            return base64.b64encode(self.random.choice([b"\xff\xfe\x00", b"5.1,3.5,1.4,0.2",
                                                        b'{"predictions": [1]}'])).decode()
        if choice == 8:
            return self.nested(self.random.choice([10, 500, 3000]))
        if choice in (9, 10):
            return [self.value(depth + 1) for _ in range(self.random.randrange(4))]
        return {self.random.choice(["data", "encoding", "predictions", "x"]): self.value(depth + 1)
                for _ in range(self.random.randrange(3))}

    def nested(self, depth: int) -> str:
        """A marker that ``line`` replaces with a value nested ``depth`` deep (too deep for ``json.dumps``)."""
        opening = "".join(self.random.choice(['[', '{"data":']) for _ in range(depth))
        closing = "".join("]" if bracket == "[" else "}" for bracket in opening.replace('{"data":', "{")[::-1])
        self.deep.append(opening + "1" + closing)
        return f"@@nested-{len(self.deep) - 1}@@"

    def record(self) -> dict[str, Any]:
        inputs = [("5.1,3.5,1.4,0.2", "text/csv"), ('[[5.1, 3.5, 1.4, 0.2]]', "application/json"),
                  (b"\xff\x00binary", "application/octet-stream"), ("[]", "application/json")]
        body, content_type = self.random.choice(inputs)
        answer = self.random.choice([None, '{"predictions": [0]}', "0\n1\n", '{"predictions": 3}'])
        record = _record(f"id-{self.random.randrange(10**9)}", body, content_type, answer)
        if body == "[]":  # a body as written in the file (a lone surrogate cannot go through capture_record)
            record["captureData"]["endpointInput"]["data"] = self.random.choice(self.BODIES)
            record["captureData"]["endpointInput"]["observedContentType"] = self.random.choice(
                ["application/json", "text/csv"])
        return record

    def mutate(self, record: dict[str, Any]) -> None:
        for _ in range(self.random.randrange(1, 4)):
            path = self.random.choice(self.FIELDS)
            parent: Any = record
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                continue
            chance = self.random.random()
            if chance < 0.2:
                parent.pop(path[-1], None)
            elif chance < 0.6:  # a value of the right type, with a body or text no client should send
                parent[path[-1]] = self.random.choice(self.BODIES)
            else:
                parent[path[-1]] = self.value()

    def line(self) -> bytes:
        record = self.record()
        if self.random.random() < 0.8:
            self.mutate(record)
        text = json.dumps(record, separators=(",", ":"))  # NaN and Infinity allowed: a hand-edited file has them
        for index, nested in enumerate(self.deep):
            text = text.replace(f'"@@nested-{index}@@"', nested)
        self.deep.clear()
        line = text.encode("utf-8", "surrogatepass")
        damage = self.random.randrange(8)
        if damage == 0:
            line = line[: self.random.randrange(len(line))]  # cut short
        elif damage == 1:
            position = self.random.randrange(len(line))
            line = line[:position] + b"\xff\xfe" + line[position:]  # not UTF-8
        elif damage == 2:
            line = self.random.choice([b"[" * 50_000, b"{}", b"[]", b"null", b'"x"', b"\x00\x01", b"{" * 100])
        return line


@pytest.mark.unit
def test_fuzzed_capture_records_are_read_or_counted_never_a_crash(tmp_path: Path) -> None:
    fuzzer = RecordFuzzer(seed=20261130)
    lines = [fuzzer.line() for _ in range(400)]
    lines = [line for line in lines if line.strip() and b"\n" not in line]  # one record per line
    good = [capture_line(_record(f"good-{index}", "5.1,3.5,1.4,0.2")) for index in range(5)]
    _write_lines(tmp_path, [line + b"\n" for line in lines] + good, name="fuzz.jsonl")
    _write_lines(tmp_path, [good[0], lines[0][:-3]], name="cut.jsonl")  # a file's last line cut short

    records, traffic, decoded = _read_all(tmp_path, ["a", "b", "c", "d"])

    assert records.records == decoded
    assert records.records + records.unreadable + records.truncated == len(lines) + len(good) + 2
    assert records.truncated == 1 and records.unreadable > 0 and decoded >= len(good) + 1
    rows = traffic.rows
    assert rows.dtype == np.float64 and rows.shape[1] == 4 and rows.shape[0] >= len(good) + 1
    assert not np.isinf(rows).any()  # a value no float holds is a missing value, never an infinity
    thresholds = DriftThresholds(monitor_min_rows=1)
    baseline = compute_baseline(pd.DataFrame(np.arange(40.0).reshape(10, 4), columns=list("abcd")),
                                pd.Series([0, 1] * 5))
    report = detect_drift(baseline, rows, traffic.predictions, thresholds, traffic.wrong_width_rows)
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.mark.unit
@pytest.mark.parametrize("case", ["huge-number", "deep-body", "content-type-5", "output-data-7", "output-list",
                                  "base64-not-ascii", "metadata-list", "input-not-object"])
def test_the_records_that_crashed_monitor_are_read_or_counted(tmp_path: Path, case: str) -> None:
    good = _record("good", "5.1,3.5,1.4,0.2")
    bent = copy.deepcopy(good)
    rows, unreadable = 1, 0
    if case == "huge-number":  # answered 400 and captured as malformed: a missing value
        bent = _record("huge", "[[" + "9" * 400 + ",3.5,1.4,0.2]]", "application/json", answer=None)
    elif case == "deep-body":  # answered 400 and captured as malformed: no rows
        bent, rows = _record("deep", "[" * 50_000, "application/json", answer=None), 0
    elif case == "base64-not-ascii":  # a body that does not decode: no rows, as a binary body
        bent["captureData"]["endpointInput"].update(encoding="BASE64", data="é")
        rows = 0
    else:
        unreadable, rows = 1, 0
        capture = bent["captureData"]
        if case == "content-type-5":
            capture["endpointInput"]["observedContentType"] = 5
        elif case == "output-data-7":
            capture["endpointOutput"]["data"] = 7
        elif case == "output-list":
            capture["endpointOutput"] = [1]
        elif case == "metadata-list":
            bent["eventMetadata"] = [1]
        else:
            capture["endpointInput"] = "5.1,3.5,1.4,0.2"
    _write_lines(tmp_path, [capture_line(good), capture_line(bent), capture_line(good)])

    records, traffic, decoded = _read_all(tmp_path)

    assert (records.records, records.unreadable, decoded) == (3 - unreadable, unreadable, 3 - unreadable)
    assert traffic.rows.shape == (2 + rows, 4)
    if case == "huge-number":
        assert np.isnan(traffic.rows[1, 0]) and traffic.rows[1, 1:].tolist() == [3.5, 1.4, 0.2]


@pytest.mark.unit
def test_a_record_that_fails_to_decode_all_the_same_is_counted_unreadable_by_decoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.monitoring import capture

    real = capture.decode_rows

    def failing_on_the_second(record: dict[str, Any], names: Sequence[str] | None = None) -> Any:
        if record["eventMetadata"]["inferenceId"] == "r1":
            raise MemoryError("a body too large to decode")  # the safety net for what _parse cannot foresee
        return real(record, names)

    monkeypatch.setattr(capture, "decode_rows", failing_on_the_second)
    _write_lines(tmp_path, [capture_line(_record(f"r{index}", "5.1,3.5,1.4,0.2")) for index in range(3)])
    records = iter_capture_records(tmp_path)

    assert [item.inference_id for item in records.decoded()] == ["r0", "r2"]
    assert (records.records, records.unreadable) == (2, 1)


@pytest.mark.unit
@pytest.mark.parametrize("content", ['{"features": Infinity}', "[" * 50_000, '{"dataset": {"item_count": 1e999}}'],
                         ids=["infinity", "deep", "huge-count"])
def test_a_baseline_file_that_is_no_baseline_is_a_one_line_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(PipelineError) as raised:
        read_baseline(path)
    assert "baseline.json" in raised.value.message and "\n" not in raised.value.message
    assert raised.value.exit_code == 2


# --------------------------------------------------------------------------- repeated rows, wrong widths, labels
@pytest.fixture(scope="module")
def iris_baseline() -> Any:
    from sklearn.datasets import load_iris

    from pipeline.container.train import split
    frame = load_iris(as_frame=True).frame
    train, heldout, labels, _ = split(frame.drop(columns=["target"]), frame["target"], 0.2, 42)
    return compute_baseline(train, labels), heldout.to_numpy()


@pytest.mark.unit
def test_one_row_replayed_120_times_is_insufficient_data_not_no_drift(iris_baseline: Any) -> None:
    baseline, heldout = iris_baseline
    report = detect_drift(baseline, np.repeat(heldout[:1], 120, axis=0), [0] * 120, DriftThresholds())
    assert report.verdict == "insufficient_data", report.reason
    assert report.effective_rows == pytest.approx(1.0) and report.distinct_rows == 1
    assert "120 captured rows" in report.reason and "1 effective" in report.reason


@pytest.mark.unit
def test_a_few_distinct_rows_replayed_are_insufficient_and_the_held_out_rows_replayed_are_judged(
        iris_baseline: Any) -> None:
    baseline, heldout = iris_baseline
    few = detect_drift(baseline, np.tile(heldout[:10], (12, 1)), [], DriftThresholds())
    assert few.verdict == "insufficient_data" and few.effective_rows == pytest.approx(10.0)
    held_out = detect_drift(baseline, np.tile(heldout, (REPLAYS, 1)), [], DriftThresholds())
    assert held_out.verdict == "no_drift", held_out.reason  # 30 effective rows: enough to see a feature move
    lowered = detect_drift(baseline, np.tile(heldout[:10], (12, 1)), [], DriftThresholds(monitor_min_rows=10))
    assert lowered.verdict != "insufficient_data"  # monitor_min_rows below what the tests need is honoured


@pytest.mark.unit
def test_a_verdict_made_by_rows_of_the_wrong_width_says_so(iris_baseline: Any) -> None:
    baseline, heldout = iris_baseline
    report = detect_drift(baseline, np.tile(heldout[:, :3], (REPLAYS, 1)), [], DriftThresholds())
    assert report.verdict == "drift" and report.wrong_width_rows == 120
    assert "120 of 120 captured rows" in report.reason and "wrong width" in report.reason
    assert "3 values" in report.reason and "4 features" in report.reason
    assert "monitor_min_rows" not in report.reason  # not an "insufficient data" story
    mixed = detect_drift(baseline, [*np.tile(heldout, (REPLAYS, 1)).tolist(), *[[1.0, 2.0, 3.0, 4.0, 5.0]] * 10],
                         [], DriftThresholds())
    assert mixed.verdict == "drift" and "10 of 130 captured rows" in mixed.reason and "5 values" in mixed.reason


@pytest.mark.unit
def test_labels_of_classes_the_model_never_predicts_are_no_verdict_not_a_breach() -> None:
    predictions = {f"id-{index}": index % 3 for index in range(120)}
    labels = {f"id-{index}": ["setosa", "versicolor", "virginica"][index % 3] for index in range(120)}
    report = live_quality(predictions, labels, 0.9, 30, known_classes=["0", "1", "2"])
    assert report.status == "insufficient_data" and report.accuracy is None
    assert "setosa" in report.reason and "0, 1, 2" in report.reason
    assert report.matched == 120
    spelled = {key: str(value) + ".0" for key, value in predictions.items()}  # 1.0 is the class 1
    assert live_quality(predictions, spelled, 0.9, 30, known_classes=["0", "1", "2"]).status == "no_breach"


@pytest.mark.unit
def test_a_labels_file_with_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_bytes("inference_id,label\r\nid-1,0\r\nid-2,1\r\n".encode("utf-8-sig"))
    assert read_labels(path) == {"id-1": "0", "id-2": "1"}


# --------------------------------------------------------------------------- through the CLI, on one deployment
@dataclass
class Store:
    root: Path
    version: str
    capture_dir: Path
    job: TrainingJob
    rows: list[list[float]]
    labels: list[str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("monitor-robustness")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in [*ENV_VARS, "SMTP_HOST", "MLOPS_ENDPOINT_TOKEN", "SLACK_WEBHOOK_URL"]:
            patch.delenv(name, raising=False)
        try:
            result = CliRunner().invoke(cli, ["--output-file", str(root / "deploy.json"), "--log-file",
                                              str(root / "deploy.log"), *FAST_SETTINGS], catch_exceptions=False)
            assert result.exit_code == 0, result.output
            stop_servers_under(root)  # `monitor` reads the store and the capture files, never the server
            summary = json.loads((root / "deploy.json").read_text())["summary"]
            deployments = DeploymentStore(root / ".mlops")
            job = TrainingJob.load(deployments.directory / "jobs" / summary["training_job"],
                                   deployments.training_job(summary["training_job"]))
            frame, labels = job.heldout()
            yield Store(root, summary["endpoint_version"], root / ".mlops" / "endpoints" / ENDPOINT / "capture", job,
                        frame.to_numpy(dtype=float).tolist(), [str(label) for label in labels.tolist()])
        finally:
            stop_servers_under(root)


@pytest.fixture
def captures(store: Store) -> Iterator[Path]:
    """The version's capture directory, empty at the start of the test and removed after it."""
    directory = store.capture_dir / store.version
    shutil.rmtree(store.capture_dir, ignore_errors=True)
    yield directory
    if store.capture_dir.is_dir():
        shutil.rmtree(store.capture_dir)
    elif store.capture_dir.exists():
        store.capture_dir.unlink()


def _capture(store: Store, records: Sequence[dict[str, Any]], extra: Sequence[bytes] = ()) -> None:
    when = datetime.now(UTC) - timedelta(minutes=1)
    hour = capture_hour_directory(store.capture_dir, store.version, when)
    hour.mkdir(parents=True, exist_ok=True)
    with open(hour / "written-by-the-test.jsonl", "ab") as handle:
        handle.write(b"".join(capture_line(record) for record in records) + b"".join(extra))


def _held_out_records(store: Store, rows: Sequence[Sequence[float]] | None = None,
                      predictions: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    rows = rows if rows is not None else [row for _ in range(REPLAYS) for row in store.rows]
    predictions = predictions if predictions is not None else \
        [int(float(label)) for _ in range(REPLAYS) for label in store.labels]
    when = datetime.now(UTC) - timedelta(minutes=1)
    return [_record(f"req-{index}", _csv(row), answer=json.dumps({"predictions": [prediction]}), when=when)
            for index, (row, prediction) in enumerate(zip(rows, predictions))]


def _monitor(store: Store, tmp_path: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    report = tmp_path / "monitor.json"
    result = CliRunner().invoke(cli, ["--store-dir", str(store.root / ".mlops"), "monitor", "--endpoint-name",
                                      ENDPOINT, "--output-file", str(report), *args], catch_exceptions=False)
    assert report.is_file(), result.output  # whatever happened, the report says it
    return result, json.loads(report.read_text())


def _last_run(store: Store) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--store-dir", str(store.root / ".mlops"), "runs", "--json"],
                                catch_exceptions=False)
    return json.loads(result.output)["runs"][0]


def _error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_records_that_crashed_monitor_are_counted_and_the_rest_judged(store: Store, captures: Path,
                                                                      tmp_path: Path) -> None:
    poison = [_record("huge", "[[" + "9" * 400 + ",3.5,1.4,0.2]]", "application/json", answer=None),
              _record("deep", "[" * 50_000, "application/json", answer=None)]
    bent = [copy.deepcopy(poison[0]) for _ in range(3)]
    bent[0]["captureData"]["endpointInput"]["observedContentType"] = 5
    bent[1]["captureData"]["endpointOutput"] = {"observedContentType": "application/json", "data": 7}
    bent[2]["captureData"]["endpointOutput"] = [1]
    _capture(store, _held_out_records(store) + poison + bent, extra=[b"[" * 50_000 + b"\n"])

    result, report = _monitor(store, tmp_path)

    assert result.exit_code == 0, result.output
    assert report["verdict"] == "no_drift"
    assert report["captured_requests"] == len(store.rows) * REPLAYS + 2 and report["unreadable_lines"] == 4
    assert "4 unreadable capture line(s)" in result.output.splitlines()[0]
    run = _last_run(store)
    assert (run["status"], run["exit_code"]) == ("no_drift", 0) and Path(run["results_file"]).is_file()


def test_a_poisoned_capture_through_run_pipeline_py_is_judged_without_a_traceback(store: Store, captures: Path,
                                                                                   tmp_path: Path) -> None:
    poison = [_record("huge", "[[" + "9" * 400 + ",3.5,1.4,0.2]]", "application/json", answer=None),
              _record("deep", "[" * 50_000, "application/json", answer=None)]
    _capture(store, poison + _held_out_records(store) + poison)

    result = run_script(PYTHON, str(REPO / "run_pipeline.py"), "--store-dir", str(store.root / ".mlops"), "monitor",
                        "--endpoint-name", ENDPOINT, "--output-file", str(tmp_path / "monitor.json"), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "drift: no_drift" in result.stdout
    report = json.loads((tmp_path / "monitor.json").read_text())
    assert report["captured_requests"] == len(store.rows) * REPLAYS + 4 and report["unreadable_lines"] == 0
    first = next(f for f in report["drift"]["features"] if f["name"] == store.job.baseline().feature_names[0])
    assert report["drift"]["rows_compared"] == len(store.rows) * REPLAYS + 2  # the "[" bodies have no rows
    assert first["present"] == len(store.rows) * REPLAYS  # the 400 digits are missing values


def test_an_unexpected_failure_is_a_recorded_no_verdict_with_its_report(store: Store, captures: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _capture(store, _held_out_records(store))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug somewhere in the monitor")

    monkeypatch.setattr("pipeline.monitoring.monitor.detect_drift", broken)
    result, report = _monitor(store, tmp_path)

    assert result.exit_code == 2, result.output  # no verdict: never 1, which a scheduled job takes for drift
    assert "Traceback" not in result.output
    line = _error_line(result)
    assert "ZeroDivisionError" in line and "a bug somewhere in the monitor" in line
    assert (report["verdict"], report["exit_code"]) == ("error", 2)
    assert report["error"] == line.removeprefix("Error: ")
    run = _last_run(store)
    assert (run["status"], run["exit_code"]) == ("failed", 2)
    assert Path(run["results_file"]) == tmp_path / "monitor.json"
    verbose = CliRunner().invoke(cli, ["--verbose", "--store-dir", str(store.root / ".mlops"), "monitor",
                                       "--endpoint-name", ENDPOINT], catch_exceptions=False)
    assert verbose.exit_code == 2, verbose.output
    assert "Traceback" in verbose.output and 'raise ZeroDivisionError("a bug somewhere' in verbose.output


@pytest.mark.parametrize("damage", ["tampered-baseline", "missing-constraints"])
def test_a_tampered_baseline_or_a_missing_constraints_file_is_no_verdict(store: Store, captures: Path,
                                                                         tmp_path: Path, damage: str) -> None:
    _capture(store, _held_out_records(store))
    name = "baseline.json" if damage == "tampered-baseline" else "constraints.json"
    path = store.job.directory / name
    kept = path.read_bytes()
    try:
        if damage == "tampered-baseline":
            path.write_bytes(kept.replace(b'"item_count": ', b'"item_count": 1'))
        else:
            path.unlink()
        result, report = _monitor(store, tmp_path)
    finally:
        path.write_bytes(kept)

    assert result.exit_code == 2, result.output
    assert (report["verdict"], report["exit_code"]) == ("error", 2)
    assert name in _error_line(result)
    assert (_last_run(store)["status"], _last_run(store)["exit_code"]) == ("failed", 2)


def test_one_row_sent_120_times_is_insufficient_data_not_no_drift(store: Store, captures: Path,
                                                                  tmp_path: Path) -> None:
    _capture(store, _held_out_records(store, rows=[store.rows[0]] * 120, predictions=[0] * 120))

    result, report = _monitor(store, tmp_path)

    assert result.exit_code == 2, result.output
    assert report["verdict"] == "insufficient_data" and report["drift"]["effective_rows"] == pytest.approx(1.0)
    assert "no_drift" not in result.output and "1 effective" in report["drift"]["reason"]


def test_rows_of_the_wrong_width_are_named_as_such_not_as_too_little_data(store: Store, captures: Path,
                                                                          tmp_path: Path) -> None:
    short = [row[:3] for _ in range(REPLAYS) for row in store.rows]
    _capture(store, _held_out_records(store, rows=short))

    result, report = _monitor(store, tmp_path)

    assert result.exit_code == 1, result.output
    reason = report["drift"]["reason"]
    assert f"{len(short)} of {len(short)} captured rows" in reason and "wrong width" in reason
    assert "3 values" in reason and "4 features" in reason
    assert f"drift: drift ({reason})" in result.output


def _write_labels(path: Path, labels: Sequence[str], encoding: str = "utf-8") -> None:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["inference_id", "label"])
        writer.writerows([f"req-{index}", label] for index, label in enumerate(labels))


def test_labels_that_name_no_predicted_class_are_no_verdict_and_roll_nothing_back(store: Store, captures: Path,
                                                                                  tmp_path: Path) -> None:
    _capture(store, _held_out_records(store))
    names = {"0": "setosa", "1": "versicolor", "2": "virginica"}
    _write_labels(tmp_path / "labels.csv", [names[str(int(float(label)))] for label in store.labels] * REPLAYS)

    result, report = _monitor(store, tmp_path, "--labels", str(tmp_path / "labels.csv"), "--rollback-on-breach")

    assert result.exit_code == 2, result.output
    assert report["quality"]["status"] == "insufficient_data" and report["verdict"] == "no_drift"
    assert report["rollback"] is None and "rollback:" not in result.output
    assert "setosa" in report["quality"]["reason"] and "live accuracy: insufficient_data" in result.output


def test_a_labels_file_saved_by_excel_with_a_byte_order_mark_is_read(store: Store, captures: Path,
                                                                     tmp_path: Path) -> None:
    _capture(store, _held_out_records(store))
    _write_labels(tmp_path / "labels.csv", [str(int(float(label))) for label in store.labels] * REPLAYS,
                  encoding="utf-8-sig")

    result, report = _monitor(store, tmp_path, "--labels", str(tmp_path / "labels.csv"))

    assert result.exit_code == 0, result.output
    assert report["quality"]["status"] == "no_breach" and report["quality"]["matched"] == len(store.rows) * REPLAYS


@pytest.mark.parametrize("level", ["capture", "version"])
def test_a_capture_directory_replaced_by_a_file_is_named(store: Store, captures: Path, tmp_path: Path,
                                                         level: str) -> None:
    if level == "capture":
        store.capture_dir.parent.mkdir(parents=True, exist_ok=True)
        blocked = store.capture_dir
    else:
        store.capture_dir.mkdir(parents=True)
        blocked = captures
    blocked.write_text("not a directory")

    result, report = _monitor(store, tmp_path)

    assert result.exit_code == 2, result.output
    line = _error_line(result)
    assert str(blocked) in line and "not a directory" in line and "capture_percent" not in line
    assert report["verdict"] == "error"
