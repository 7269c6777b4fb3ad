"""What the endpoint takes and answers beyond bare rows: MLflow's payloads with named columns matched to the
model's input schema, probabilities on request, and errors in the shape a boto3 client reads.

Against a real endpoint deployed by the pipeline (iris, logistic regression): the session's default run's,
since no test here changes it, and a fresh one where a test needs its own job.
"""
from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.conftest import SharedRun

NAMES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
SETOSA, VIRGINICA = [5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]  # classes 0 and 2
ROWS = [SETOSA, VIRGINICA]


@pytest.fixture
def endpoint(default_run: SharedRun) -> str:
    """The endpoint of the session's default run (no test here changes it)."""
    return default_run.url


def _post(url: str, body: Any, headers: dict[str, str] | None = None, path: str = "/invocations") -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(f"{url}{path}", data=data, timeout=10,
                         headers={"Content-Type": "application/json", **(headers or {})})


def _records(rows: list[list[float]], names: list[str] = NAMES) -> list[dict[str, float]]:
    return [dict(zip(names, row)) for row in rows]


def _runtime(url: str) -> Any:
    return boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=url, aws_access_key_id="x",
                        aws_secret_access_key="x", config=BotoConfig(retries={"max_attempts": 1}))


# --------------------------------------------------------------------------- MLflow's payload shapes
@pytest.mark.parametrize("body", [
    pytest.param({"dataframe_split": {"columns": NAMES, "data": ROWS}}, id="dataframe_split"),
    pytest.param({"dataframe_split": {"columns": NAMES, "data": ROWS, "index": [7, 8]}}, id="dataframe_split-index"),
    pytest.param({"dataframe_records": _records(ROWS)}, id="dataframe_records"),
    pytest.param({"instances": _records(ROWS)}, id="instances-records"),
    pytest.param({"inputs": _records(ROWS)}, id="inputs-records"),
    pytest.param({"inputs": dict(zip(NAMES, map(list, zip(*ROWS))))}, id="inputs-columns"),
    pytest.param({"inputs": ROWS}, id="inputs-rows"),
    pytest.param({"dataframe_split": {"data": ROWS}}, id="dataframe_split-without-columns"),
    pytest.param(_records(ROWS), id="bare-records"),
])
def test_each_mlflow_payload_shape_is_answered(endpoint, body):
    reply = _post(endpoint, body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [0, 2]}


def test_one_row_per_column_in_inputs_is_one_row(endpoint):
    assert _post(endpoint, {"inputs": dict(zip(NAMES, SETOSA))}).json() == {"predictions": [0]}


def test_named_columns_in_another_order_are_put_in_the_models_order(endpoint):
    order = [2, 0, 3, 1]
    shuffled = [[row[i] for i in order] for row in ROWS]
    names = [NAMES[i] for i in order]
    # By position, the shuffled values are other flowers: the names are what puts them right.
    assert _post(endpoint, shuffled).json() != {"predictions": [0, 2]}
    assert _post(endpoint, {"dataframe_split": {"columns": names, "data": shuffled}}).json() == {"predictions": [0, 2]}
    assert _post(endpoint, {"dataframe_records": _records(shuffled, names)}).json() == {"predictions": [0, 2]}


@pytest.mark.parametrize("columns, fragments", [
    (NAMES[:3], ["missing 'petal width (cm)'"]),
    (NAMES + ["colour"], ["unexpected 'colour'"]),
    (NAMES[:3] + ["petal_width"], ["missing 'petal width (cm)'", "unexpected 'petal_width'"]),
])
def test_missing_or_unexpected_columns_are_400_naming_them(endpoint, columns, fragments):
    rows = [[1.0] * len(columns)]
    for body in ({"dataframe_split": {"columns": columns, "data": rows}},
                 {"dataframe_records": _records(rows, columns)}):
        reply = _post(endpoint, body)
        assert reply.status_code == 400
        for fragment in fragments:
            assert fragment in reply.json()["title"]
        assert "expected 'sepal length (cm)'" in reply.json()["title"]


@pytest.mark.parametrize("value, fragment", [("5.1", "values must be numbers"), (True, "values must be numbers"),
                                             (None, "values must be numbers"), ([1], "values must be numbers"),
                                             ("NaN", "NaN or infinity")])
def test_a_value_that_is_not_a_finite_number_is_400_naming_its_column(endpoint, value, fragment):
    record = {**_records([SETOSA])[0], "petal length (cm)": value}
    text = json.dumps({"dataframe_records": [record]})
    if value == "NaN":
        text = text.replace('"NaN"', "NaN")  # JSON as Python's json module writes NaN
    reply = _post(endpoint, text)
    assert reply.status_code == 400
    assert reply.json()["title"].startswith("column 'petal length (cm)': ") and fragment in reply.json()["title"]


@pytest.mark.parametrize("body, fragment", [
    pytest.param({"rows": ROWS}, "unexpected key 'rows'", id="unknown-key"),
    pytest.param({"inputs": ROWS, "instances": ROWS}, "exactly one of", id="two-keys"),
    pytest.param({"inputs": ROWS, "params": {"x": 1}}, "unexpected key 'params'", id="params"),
    pytest.param({"dataframe_split": {"columns": NAMES, "data": [SETOSA[:3]]}}, "row 0 has 3 values for 4 columns",
                 id="short-row"),
    pytest.param({"dataframe_split": {"columns": NAMES[:3] + NAMES[:1], "data": [SETOSA]}},
                 "column 'sepal length (cm)' appears twice", id="duplicate-column"),
    pytest.param({"dataframe_split": {"columns": NAMES, "values": ROWS}}, "unexpected key 'values'",
                 id="split-unknown-key"),
    pytest.param({"dataframe_records": ROWS}, '"dataframe_records" must be a non-empty list of objects',
                 id="records-of-lists"),
    pytest.param({"dataframe_records": [_records([SETOSA])[0], {NAMES[0]: 1.0}]},
                 "row 1 has no value for column 'sepal width (cm)'", id="record-lacking-a-column"),
    pytest.param({"inputs": {NAMES[0]: [1.0, 2.0], NAMES[1]: [1.0]}}, "same number of values", id="ragged-columns"),
    pytest.param({"instances": []}, '"instances" must be a non-empty list of rows', id="no-rows"),
])
def test_a_malformed_payload_is_400_saying_what_is_wrong(endpoint, body, fragment):
    reply = _post(endpoint, body)
    assert reply.status_code == 400
    assert fragment in reply.json()["title"]


# --------------------------------------------------------------------------- probabilities
@pytest.mark.parametrize("headers", [{"X-Probabilities": "true"}, {"Accept": "application/json; probabilities=true"},
                                     {"X-Probabilities": "TRUE", "Accept": "application/json"}])
def test_probabilities_on_request_sum_to_one_and_name_their_classes(endpoint, headers):
    body = {"dataframe_split": {"columns": NAMES, "data": ROWS}}
    for unasked in ({}, {"X-Probabilities": "false"}, {"Accept": "application/json; probabilities=false"}):
        assert _post(endpoint, body, unasked).json() == {"predictions": [0, 2]}
    reply = _post(endpoint, body, headers)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert set(answer) == {"predictions", "probabilities", "classes"}
    assert answer["predictions"] == [0, 2] and answer["classes"] == [0, 1, 2]
    assert len(answer["probabilities"]) == 2
    for label, probabilities in zip(answer["predictions"], answer["probabilities"]):
        assert len(probabilities) == 3 and sum(probabilities) == pytest.approx(1.0)
        assert answer["classes"][probabilities.index(max(probabilities))] == label


def test_probabilities_with_a_csv_answer_are_406(endpoint):
    reply = _post(endpoint, "5.1,3.5,1.4,0.2", {"Content-Type": "text/csv", "Accept": "text/csv",
                                                 "X-Probabilities": "true"})
    assert reply.status_code == 406 and "JSON only" in reply.json()["title"]


@pytest.mark.parametrize("headers, status", [({"X-Probabilities": "yes"}, 400),
                                             ({"Accept": "application/json; probabilities=1"}, 406)])
def test_a_probabilities_switch_that_is_neither_true_nor_false_is_refused(endpoint, headers, status):
    reply = _post(endpoint, [SETOSA], headers)
    assert reply.status_code == status and "expected true or false" in reply.json()["title"]


def test_probabilities_switches_that_contradict_each_other_are_a_400(endpoint):
    reply = _post(endpoint, [SETOSA], {"X-Probabilities": "false", "Accept": "application/json; probabilities=true"})
    assert reply.status_code == 400 and "contradicts" in reply.json()["title"]


def test_probabilities_asked_for_in_the_query_string_are_a_400_naming_the_header(endpoint):
    reply = _post(endpoint, [SETOSA], {"Accept": "application/json"}, path="/invocations?probabilities=true")
    assert reply.status_code == 400
    assert "'probabilities'" in reply.json()["title"] and "X-Probabilities: true" in reply.json()["title"]


# --------------------------------------------------------------------------- the boto3 route
def test_boto3_client_error_carries_the_endpoints_message_and_the_plain_route_keeps_its_own(endpoint):
    with pytest.raises(ClientError) as caught:
        _runtime(endpoint).invoke_endpoint(EndpointName="iris-model", Body=b"1,2,3", ContentType="text/csv")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424  # SageMaker's status for a ModelError
    assert error["OriginalStatusCode"] == 400
    assert json.loads(error["OriginalMessage"]) == {"error": "BadRequestError", "status": 400,
                                                    "message": "each row must have 4 features, got 3"}
    assert "each row must have 4 features, got 3" in error["Error"]["Message"]
    assert "each row must have 4 features, got 3" in str(caught.value)
    reply = _post(endpoint, "1,2,3", {"Content-Type": "text/csv", "Accept": "text/csv"})
    assert reply.status_code == 400 and "x-amzn-ErrorType" not in reply.headers
    assert reply.json() == {"title": "each row must have 4 features, got 3"}  # JSON, though CSV was asked for


def test_boto3_client_reads_named_columns_and_probabilities(endpoint):
    answer = _runtime(endpoint).invoke_endpoint(
        EndpointName="iris-model", ContentType="application/json", Accept="application/json; probabilities=true",
        Body=json.dumps({"dataframe_split": {"columns": NAMES[::-1], "data": [row[::-1] for row in ROWS]}}))
    body = json.loads(answer["Body"].read())
    assert body["predictions"] == [0, 2] and body["classes"] == [0, 1, 2]
    assert [sum(row) for row in body["probabilities"]] == [pytest.approx(1.0)] * 2


@pytest.mark.parametrize("body, content_type, accept, status, error", [
    (b"5.1,3.5,1.4,0.2", "application/xml", "application/json", 415, "UnsupportedContentTypeError"),
    (b"5.1,3.5,1.4,0.2", "text/csv", "image/png", 406, "UnsupportedAcceptError"),
    (json.dumps({"dataframe_split": {"columns": NAMES[:3], "data": [SETOSA[:3]]}}).encode(), "application/json",
     "application/json", 400, "BadRequestError"),
])
def test_every_refusal_of_the_model_is_a_model_error_with_its_original_status(endpoint, body, content_type, accept,
                                                                              status, error):
    with pytest.raises(ClientError) as caught:
        _runtime(endpoint).invoke_endpoint(EndpointName="iris-model", Body=body, ContentType=content_type,
                                           Accept=accept)
    response = caught.value.response
    assert response["Error"]["Code"] == "ModelError" and response["OriginalStatusCode"] == status
    assert json.loads(response["OriginalMessage"])["error"] == error
    assert f"Received client error ({status})" in response["Error"]["Message"]


def test_another_endpoints_name_is_404(endpoint):
    with pytest.raises(ClientError) as caught:
        _runtime(endpoint).invoke_endpoint(EndpointName="other-model", Body=b"5.1,3.5,1.4,0.2", ContentType="text/csv")
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert response["Error"]["Code"] == "ValidationError"
    assert response["Error"]["Message"] == "endpoint 'other-model' is not served here: this is endpoint 'iris-model'"


def test_a_body_over_the_limit_on_the_boto3_route_is_413_with_a_message(endpoint):
    reply = _post(endpoint, b"5.1,3.5,1.4,0.2\n" * 400_000, {"Content-Type": "text/csv"},
                  path="/endpoints/iris-model/invocations")
    assert reply.status_code == 413
    assert reply.headers["x-amzn-ErrorType"] == "ValidationError" and "over the limit" in reply.json()["Message"]


# --------------------------------------------------------------------------- the input schema
def _job(pipeline) -> tuple[str, Path]:
    assert pipeline("--mode", "training").exit_code == 0
    job = pipeline.results()["summary"]["training_job"]
    return job, Path(".mlops/jobs") / job


@pytest.mark.unit
def test_the_input_schema_is_recorded_beside_the_model_and_in_the_manifest(pipeline):
    job, directory = _job(pipeline)
    schema = json.loads((directory / "model" / "input_schema.json").read_text())
    assert schema == {"columns": [{"name": name, "dtype": "float64"} for name in NAMES]}
    assert json.loads((directory / "manifest.json").read_text())["input_schema"] == schema
    with sqlite3.connect(".mlops/state.db") as connection:
        artifacts = json.loads(connection.execute("SELECT artifacts_json FROM training_jobs WHERE name = ?",
                                                  (job,)).fetchone()[0])
    assert "model/input_schema.json" in artifacts


@pytest.mark.unit
def test_an_input_schema_edited_after_training_is_refused_before_deployment(pipeline):
    job, directory = _job(pipeline)
    path = directory / "model" / "input_schema.json"
    schema = json.loads(path.read_text())
    schema["columns"].reverse()
    path.write_text(json.dumps(schema))
    result = pipeline("--mode", "deployment", "--training-job", job)
    assert result.exit_code == 1
    assert "input_schema.json' changed since training" in result.output


def test_a_model_without_a_recorded_schema_takes_rows_by_position_and_says_so_for_named_ones(pipeline):
    """A job trained before input schemas were kept: no file, no manifest entry, no hash of either."""
    job, directory = _job(pipeline)
    (directory / "model" / "input_schema.json").unlink()
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["input_schema"]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    from pipeline.container.verified_files import file_sha256 as sha256_file

    with sqlite3.connect(".mlops/state.db") as connection:
        artifacts = json.loads(connection.execute("SELECT artifacts_json FROM training_jobs WHERE name = ?",
                                                  (job,)).fetchone()[0])
        del artifacts["model/input_schema.json"]
        artifacts["manifest.json"] = sha256_file(directory / "manifest.json")
        connection.execute("UPDATE training_jobs SET artifacts_json = ? WHERE name = ?", (json.dumps(artifacts), job))
    assert pipeline("--mode", "deployment", "--training-job", job).exit_code == 0
    url = pipeline.results()["summary"]["endpoint_url"]
    assert _post(url, {"inputs": ROWS}).json() == {"predictions": [0, 2]}
    reply = _post(url, {"dataframe_split": {"columns": NAMES, "data": ROWS}})
    assert reply.status_code == 400
    assert "no recorded input schema" in reply.json()["title"] and "by position" in reply.json()["title"]


@pytest.mark.unit
def test_a_schema_that_disagrees_with_the_model_is_refused_when_the_model_is_loaded(tmp_path):
    """SageMaker's container reads input_schema.json from model.tar.gz: its names and order are checked against
    the ones the (hash-checked) model was fitted with."""
    from sklearn.datasets import load_iris

    from pipeline.container import inference, train

    frame = load_iris(as_frame=True).frame
    features = frame.drop(columns=["target"])
    model = train.build_estimator("logistic_regression", {}, 0).fit(features, frame["target"])
    train.save_model(model, tmp_path, features)
    assert inference.model_fn(str(tmp_path)) is not None
    schema = train.input_schema(features[NAMES[::-1]])
    (tmp_path / "input_schema.json").write_text(json.dumps(schema))
    with pytest.raises(inference.ModelIntegrityError, match="differ from the features the model was fitted with"):
        inference.model_fn(str(tmp_path))


def test_named_columns_with_labels_that_hold_commas_round_trip_through_csv_and_json(pipeline, tmp_path):
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    names = ["Barolo, DOCG", 'Chianti "Classico"', "Soave"]
    frame["wine"] = [names[i] for i in frame.pop("target")]
    frame.to_csv(tmp_path / "wines.csv", index=False)
    assert pipeline("--dataset", str(tmp_path / "wines.csv"), "--label-column", "wine").exit_code == 0
    url = pipeline.results()["summary"]["endpoint_url"]
    body = {"dataframe_records": _records([SETOSA, [5.7, 2.8, 4.1, 1.3], VIRGINICA])}
    answer = _post(url, body, {"X-Probabilities": "true"}).json()
    assert sorted(answer["classes"]) == sorted(names) and set(answer["predictions"]) == set(names)
    reply = _post(url, body, {"Accept": "text/csv"})
    assert list(csv.reader(io.StringIO(reply.text))) == [[label] for label in answer["predictions"]]
    rows = "".join(",".join(map(str, row)) + "\n" for row in [SETOSA, [5.7, 2.8, 4.1, 1.3], VIRGINICA])
    reply = _post(url, rows, {"Content-Type": "text/csv", "Accept": "text/csv"})  # CSV rows in, CSV out
    assert list(csv.reader(io.StringIO(reply.text))) == [[label] for label in answer["predictions"]]
