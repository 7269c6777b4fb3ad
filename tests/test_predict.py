"""`predict`: a CSV file scored offline (the job's model, in this process) and through the live endpoint.

Through the real CLI; the endpoint is the local gunicorn server a pipeline run deploys. The scoring loop's
retries, batching and ordering are tested against a fake client in the unit tier (no process, no socket).
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris

from pipeline.cli import cli
from pipeline.errors import PipelineError
from pipeline.scoring.predict import predict_endpoint
from pipeline.scoring.reading import CsvBlocks, match_columns
from pipeline.scoring.remote import EndpointScorer
from pipeline.serving.client import Reply
from tests.conftest import REPO, run_script, train_job

IRIS_COLUMNS = list(load_iris(as_frame=True).frame.columns[:-1])


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def iris_rows(path: Path, rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` iris-like rows with an id column, the label and the features in another order than training's."""
    generator = np.random.default_rng(seed)
    frame = load_iris(as_frame=True).frame
    sample = frame.iloc[generator.integers(0, len(frame), rows)].reset_index(drop=True)
    features = sample[IRIS_COLUMNS] + generator.normal(0, 0.3, (rows, 4)).round(3)
    data = pd.DataFrame({"customer": [f"c-{i:06d}" for i in range(rows)], "target": sample["target"]})
    data = pd.concat([data, features[IRIS_COLUMNS[::-1]]], axis=1)
    data.to_csv(path, index=False)
    return data


# --------------------------------------------------------------------------- the proof, through the CLI
def test_offline_and_endpoint_predictions_of_10000_rows_are_the_same_with_ids_and_probabilities(pipeline, workdir):
    assert pipeline().exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    data = iris_rows(workdir / "rows.csv", 10_000)

    offline = _invoke("predict", "--training-job", job, "--input", "rows.csv", "--output", "offline.csv",
                      "--id-column", "customer", "--probabilities")
    assert offline.exit_code == 0, offline.output
    assert "wrote 10,000 predictions of 10,000 rows to offline.csv" in offline.output
    served = _invoke("predict", "--endpoint-name", "iris-model", "--input", "rows.csv", "--output", "endpoint.csv",
                     "--id-column", "customer", "--probabilities", "--concurrency", "3")
    assert served.exit_code == 0, served.output
    assert "endpoint iris-model, version iris-model-" in served.output

    assert (workdir / "offline.csv").read_bytes() == (workdir / "endpoint.csv").read_bytes()
    result = pd.read_csv(workdir / "offline.csv", dtype={"customer": str})
    assert list(result.columns) == ["customer", "prediction", "probability_0", "probability_1", "probability_2"]
    assert list(result["customer"]) == list(data["customer"])  # ids carried through, in the input's order
    probabilities = result[["probability_0", "probability_1", "probability_2"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    assert (result["prediction"].to_numpy() == probabilities.argmax(axis=1)).all()
    assert (result["prediction"] == data["target"]).mean() > 0.8  # the model, not noise
    assert not list(workdir.glob(".*.tmp"))


def test_without_an_id_column_each_row_is_numbered_and_only_predictions_are_written(pipeline, workdir):
    assert pipeline("--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    iris_rows(workdir / "rows.csv", 25)
    assert _invoke("predict", "--training-job", job, "--input", "rows.csv", "--output", "out/p.csv").exit_code == 0
    lines = (workdir / "out" / "p.csv").read_text().splitlines()
    assert lines[0] == "row,prediction" and [line.split(",")[0] for line in lines[1:]] == [str(i) for i in
                                                                                          range(1, 26)]


def test_a_missing_column_is_refused_in_one_line_and_nothing_is_written(pipeline, workdir):
    assert pipeline("--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    iris_rows(workdir / "rows.csv", 10).drop(columns=["petal width (cm)"]).to_csv(workdir / "rows.csv", index=False)
    result = _invoke("predict", "--training-job", job, "--input", "rows.csv", "--output", "p.csv")
    assert result.exit_code == 2
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "'petal width (cm)' missing from the header" in error
    assert not (workdir / "p.csv").exists()
    result = _invoke("predict", "--training-job", job, "--input", "rows.csv", "--output", "p.csv", "--id-column", "x")
    assert result.exit_code == 2 and "missing" in result.output


@pytest.mark.parametrize("where", ["offline", "endpoint"])
def test_a_row_the_model_cannot_score_stops_the_run_by_row_number_before_anything_is_written(pipeline, workdir,
                                                                                             where):
    assert pipeline("--mode", "training" if where == "offline" else "full").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    data = iris_rows(workdir / "rows.csv", 3000)
    data = data.astype({"sepal width (cm)": object})
    data.loc[1799, "sepal width (cm)"] = "n/a?"  # row 1800
    data.loc[2499, "sepal width (cm)"] = ""  # row 2500
    data.to_csv(workdir / "rows.csv", index=False)
    source = ["--training-job", job] if where == "offline" else ["--endpoint-name", "iris-model"]
    (workdir / "p.csv").write_text("an older file stays as it was\n")

    result = _invoke("predict", *source, "--input", "rows.csv", "--output", "p.csv")
    assert result.exit_code == 2, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: rows.csv: row 1800 cannot be scored: column 'sepal width (cm)' is 'n/a?', "
                            "not a number"), error
    assert "2500" in error and "nothing was written" in error
    assert (workdir / "p.csv").read_text() == "an older file stays as it was\n"
    assert not list(workdir.glob(".p.csv.*"))

    skipped = _invoke("predict", *source, "--input", "rows.csv", "--output", "p.csv", "--on-bad-row", "skip",
                      "--id-column", "customer")
    assert skipped.exit_code == 0, skipped.output
    assert "left out 2 row(s) the model cannot score: row 1800 (column 'sepal width (cm)' is 'n/a?', not a number), " \
           "row 2500 (column 'sepal width (cm)' is empty)" in skipped.output
    written = pd.read_csv(workdir / "p.csv", dtype={"customer": str})
    assert len(written) == 2998 and "c-001799" not in set(written["customer"]) and \
        list(written["customer"][:3]) == ["c-000000", "c-000001", "c-000002"]


def test_quoted_ids_crlf_line_ends_and_a_header_without_rows(pipeline, workdir):
    assert pipeline("--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    header = ["name", *IRIS_COLUMNS]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerows([header, ['Smith, "J"', 5.1, 3.5, 1.4, 0.2], ["plain", 6.7, 3.0, 5.2, 2.3]])
    (workdir / "quoted.csv").write_bytes(text.getvalue().encode())
    assert _invoke("predict", "--training-job", job, "--input", "quoted.csv", "--output", "q.csv",
                   "--id-column", "name").exit_code == 0
    assert (workdir / "q.csv").read_text() == 'name,prediction\n"Smith, ""J""",0\nplain,2\n'

    (workdir / "empty.csv").write_text(",".join(f'"{name}"' for name in header) + "\n")
    assert _invoke("predict", "--training-job", job, "--input", "empty.csv", "--output", "e.csv",
                   "--probabilities").exit_code == 0
    assert (workdir / "e.csv").read_text() == "row,prediction,probability_0,probability_1,probability_2\n"


@pytest.mark.parametrize("args, words", [
    (["--input", "x.csv", "--output", "p.csv"], "--training-job JOB"),
    (["--training-job", "j", "--endpoint-name", "e", "--input", "x.csv", "--output", "p.csv"], "not both"),
    (["--training-job", "j", "--input", "s3://b/x.csv", "--output", "p.csv"], "add --backend sagemaker"),
    (["--training-job", "j", "--backend", "sagemaker", "--input", "x.csv", "--output", "s3://b/p.csv"],
     "expected s3://bucket/key"),
    (["--endpoint-name", "e", "--backend", "sagemaker", "--input", "s3://b/x", "--output", "s3://b/p"],
     "give --training-job JOB"),
    (["--training-job", "j", "--input", "missing.csv", "--output", "p.csv"], "no such file"),
    (["--training-job", "nope", "--input", "x.csv", "--output", "x.csv"], "is the input file"),
    (["--training-job", "nope", "--input", "x.csv", "--output", "p.csv"], "training job 'nope' not found"),
])
def test_requests_that_cannot_work_are_refused_before_any_work_with_exit_2(workdir, args, words):
    (workdir / "x.csv").write_text("a,b\n1,2\n")
    result = _invoke("predict", *args)
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert not (workdir / "p.csv").exists()


def test_a_file_many_blocks_long_streams_in_bounded_memory_with_bounded_log_lines(workdir):
    """Peak memory for a file 30 blocks long is within a few MB of the peak for a file of 5 blocks: the file is never
    held whole (holding it would add twice its 30 MB or more). Off a terminal, progress is a few log lines."""
    job = train_job(workdir)
    rows = 600_000  # ~ 30 MB: 30 blocks of 1 MiB
    generator = np.random.default_rng(1)
    frame = pd.DataFrame(generator.normal(4, 2, (rows, 4)).round(8), columns=IRIS_COLUMNS)
    frame.insert(0, "id", np.arange(rows))
    frame.to_csv(workdir / "big.csv", index=False)
    frame.iloc[:100_000].to_csv(workdir / "small.csv", index=False)

    def peak_mb(name: str) -> tuple[float, str]:
        # Linux keeps a process's peak RSS across exec: a child forked from this test process would count the test
        # process's memory as its own. A small Python process runs the command and reports its child's peak.
        wrapper = ("import resource, subprocess, sys\n"
                   "code = subprocess.call(sys.argv[1:])\n"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
                   "sys.exit(code)\n")
        result = run_script(sys.executable, "-c", wrapper, sys.executable, str(REPO / "run_pipeline.py"), "predict",
                            "--training-job", job, "--input", name, "--output", f"{name}.out", "--id-column", "id",
                            cwd=workdir)
        assert result.returncode == 0, result.stderr
        *log, peak = result.stderr.strip().splitlines()
        return int(peak) / 1024, "\n".join(log)

    small, _ = peak_mb("small.csv")
    big, log = peak_mb("big.csv")
    size_mb = (workdir / "big.csv").stat().st_size / 1e6
    assert size_mb > 25
    assert big - small < 20, (small, big)
    assert len((workdir / "big.csv.out").read_text().splitlines()) == rows + 1
    assert len([line for line in log.splitlines() if line.startswith("INFO predict")]) <= 8, log


# --------------------------------------------------------------------------- the endpoint loop, against a fake
class FakeEndpoint:
    """Answers each CSV body with one prediction per row: the row's first value, rounded; scripted statuses first."""

    url = "fake://endpoint"

    def __init__(self, statuses: list[int] | None = None, limit: int | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.limit = limit
        self.delay = delay
        self.bodies: list[bytes] = []

    def invoke(self, body: bytes, content_type: str, accept: str = "application/json") -> Reply:
        self.bodies.append(body)
        if self.statuses:
            status = self.statuses.pop(0)
            if status:
                return Reply(status, {}, json.dumps({"message": f"scripted {status}"}).encode())
        if self.limit is not None and len(body) > self.limit:
            return Reply(413, {}, b'{"message": "too large"}')
        if body[:1].isalpha():  # as the endpoint does: a first row of text is the column names
            body = body.split(b"\n", 1)[1]
        rows = np.loadtxt(io.StringIO(body.decode()), delimiter=",", ndmin=2)
        if not np.isfinite(rows).all():
            return Reply(400, {}, b'{"message": "rows must not contain NaN or infinity"}')
        if self.delay:
            time.sleep(self.delay * np.random.default_rng(len(self.bodies)).random())
        return Reply(200, {"X-Model-Version": "v1"}, json.dumps({"predictions": rows[:, 0].round().astype(int)
                                                                 .tolist()}).encode())


def _score(tmp_path: Path, text: str, endpoint: FakeEndpoint, **options):
    source = tmp_path / "in.csv"
    source.write_text(text)
    scorer = EndpointScorer(endpoint, "fake", sleep=lambda seconds: None)
    with open(source, "rb") as stream:
        blocks = CsvBlocks(stream, "in.csv", block_bytes=options.pop("block_bytes", 1024))
        report = predict_endpoint(blocks, str(tmp_path / "out.csv"), scorer, ("a", "b"), **options)
    return report, (tmp_path / "out.csv").read_text().splitlines()


ROWS = "".join(f"{i},{i % 7},x{i}\n" for i in range(1, 2001))


@pytest.mark.unit
def test_throttling_and_server_errors_are_retried_and_the_run_succeeds(tmp_path):
    endpoint = FakeEndpoint([429, 503, 500])
    report, lines = _score(tmp_path, "a,b,c\n" + ROWS, endpoint, concurrency=1)
    assert report.retried == 3 and report.rows_written == 2000 and report.versions == ["v1"]
    assert lines[1:4] == ["1,1", "2,2", "3,3"] and lines[-1] == "2000,2000"


@pytest.mark.unit
def test_an_endpoint_that_keeps_failing_is_exit_1_and_leaves_no_output(tmp_path):
    with pytest.raises(PipelineError) as failed:
        _score(tmp_path, "a,b\n" + "1,2\n" * 50, FakeEndpoint([502] * 20), concurrency=1)
    assert failed.value.exit_code == 1 and "answered 502" in failed.value.message and "6 attempts" in \
        failed.value.message
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".out.csv*"))


@pytest.mark.unit
def test_batches_stay_under_the_payload_limit_and_halve_on_413(tmp_path):
    endpoint = FakeEndpoint(limit=3000)
    text = "c,b,a\n" + "".join(f"x{i},{i % 7},{i * 10}\n" for i in range(1, 2001))
    report, lines = _score(tmp_path, text, endpoint, max_body_bytes=8000, block_bytes=20_000)
    assert max(len(body) for body in endpoint.bodies) <= 8000
    assert any(len(body) > 3000 for body in endpoint.bodies)  # answered 413, then sent again in halves
    assert report.rows_written == 2000
    assert lines[1:] == [f"{i},{i * 10}" for i in range(1, 2001)]  # "a", the model's first column, is the file's last


@pytest.mark.unit
def test_answers_arriving_in_any_order_are_written_in_the_inputs(tmp_path):
    endpoint = FakeEndpoint(delay=0.01)
    report, lines = _score(tmp_path, "a,b,c\n" + ROWS, endpoint, concurrency=8, batch_bytes=400,
                           block_bytes=4000)
    assert len(endpoint.bodies) >= 30
    assert lines[1:] == [f"{i},{i}" for i in range(1, 2001)]


@pytest.mark.unit
def test_a_batch_the_endpoint_refuses_is_searched_here_for_the_row(tmp_path):
    text = "a,b\n" + "1,2\n" * 100 + "1,inf\n" + "3,4\n" * 100
    with pytest.raises(PipelineError) as failed:
        _score(tmp_path, text, FakeEndpoint())
    assert failed.value.exit_code == 2 and "row 101 cannot be scored: column 'b' is inf, not a finite number" in \
        failed.value.message
    report, lines = _score(tmp_path, text, FakeEndpoint(), on_bad_row="skip")
    assert report.skipped == 1 and report.rows_written == 200 and "101,1" not in lines and "102,3" in lines


@pytest.mark.unit
def test_a_line_of_text_first_in_a_batch_is_a_bad_row_not_a_header_the_endpoint_would_read(tmp_path):
    text = "a,b\n" + "a,b\n" + "3,4\n" * 10  # the header again, as the first row: the endpoint would drop it
    with pytest.raises(PipelineError) as failed:
        _score(tmp_path, text, FakeEndpoint())
    assert failed.value.exit_code == 2 and "row 1 cannot be scored: column 'a' is 'a', not a number" in \
        failed.value.message
    report, lines = _score(tmp_path, text, FakeEndpoint(), on_bad_row="skip")
    assert report.rows_written == 10 and lines[1] == "2,3" and lines[-1] == "11,3"


@pytest.mark.unit
def test_columns_are_matched_by_name_and_a_near_miss_is_named():
    assert match_columns(["id", "b", "a"], ["a", "b"], "id", "f").positions == (2, 1)
    with pytest.raises(PipelineError) as missing:
        match_columns(["id", "A ", "b"], ["a", "b"], None, "f.csv")
    assert missing.value.message == ("f.csv: the model's column(s) 'a' missing from the header (the model takes 'a', "
                                     "'b'); 'A ' is not 'a'")
    with pytest.raises(PipelineError):
        match_columns(["a", "a", "b"], ["a", "b"], None, "f")


def test_a_rejected_job_scores_with_a_warning_that_says_who_rejected_it(workdir):
    job = train_job(workdir)
    assert _invoke("reject", job, "--reason", "trained on last year's prices", "--by", "alice").exit_code == 0
    iris_rows(workdir / "rows.csv", 5)
    result = _invoke("predict", "--training-job", job, "--input", "rows.csv", "--output", "p.csv")
    assert result.exit_code == 0, result.output
    assert f"WARNING training job {job} was rejected by alice: trained on last year's prices; its predictions are " \
           f"written all the same" in result.output


def test_predict_options_given_before_the_command_say_where_they_go(workdir):
    result = _invoke("--training-job", "iris-classifier-20250823-120000", "predict", "--input", "x", "--output", "y")
    assert result.exit_code == 2
    assert "Error: --training-job is an option of a pipeline run, not of `predict`; give it after the command: " \
           "`predict --training-job JOB`" in result.output


def test_predict_runs_as_a_subprocess_of_run_pipeline(workdir):
    job = train_job(workdir)
    iris_rows(workdir / "rows.csv", 50)
    result = run_script(sys.executable, str(REPO / "run_pipeline.py"), "predict", "--training-job", job, "--input",
                        "rows.csv", "--output", "p.csv", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows_written"] == 50 and report["skipped"] == 0 and report["scored_by"].startswith("training job")
