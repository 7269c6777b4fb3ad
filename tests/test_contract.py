"""A deployment never changes what clients may send or receive unannounced: the contract check and the replay
of the endpoint's own captured requests, through the real CLI against a real endpoint."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sklearn.datasets import load_iris

from pipeline.cli import cli
from pipeline.config import ENV_VARS
from pipeline.state.store import DeploymentStore
from tests.conftest import FAST_SETTINGS, stop_servers_under

IRIS_ROW = "5.1,3.5,1.4,0.2"


class Endpoint:
    """One iris endpoint for the whole module, in a directory of its own; every test runs the CLI there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = 0
        iris = load_iris(as_frame=True).frame
        iris.drop(columns=["petal width (cm)"]).to_csv(root / "three_features.csv", index=False)
        named = iris.assign(target=iris["target"].map(dict(enumerate(load_iris().target_names))))
        named.to_csv(root / "named_labels.csv", index=False)
        iris.to_csv(root / "iris.csv", index=False)

    def run(self, *args: str) -> tuple[int, dict[str, Any]]:
        self.runs += 1
        output = self.root / f"results-{self.runs}.json"
        result = CliRunner().invoke(cli, [*args, "--output-file", str(output), "--log-file",
                                          str(self.root / "pipeline.log"), *FAST_SETTINGS], catch_exceptions=False)
        return result.exit_code, json.loads(output.read_text()) if output.is_file() else {}

    @property
    def url(self) -> str:
        return DeploymentStore(self.root / ".mlops").endpoint("iris-model")["url"]

    def serving_version(self) -> str:
        return DeploymentStore(self.root / ".mlops").endpoint("iris-model")["serving_version"]

    def client_requests(self, count: int, row: str = IRIS_ROW) -> None:
        """Requests of a client that is not the pipeline: captured by the endpoint."""
        with requests.Session() as session:
            for _ in range(count):
                reply = session.post(f"{self.url}/invocations", data=row, headers={"Content-Type": "text/csv"},
                                     timeout=10)
                assert reply.status_code == 200


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    root = tmp_path_factory.mktemp("contract")
    saved = {name: os.environ.pop(name) for name in [*ENV_VARS, "MLOPS_ENDPOINT_TOKEN"] if name in os.environ}
    previous = Path.cwd()
    os.chdir(root)
    try:
        served = Endpoint(root)
        code, results = served.run()
        assert code == 0, results.get("error")
        served.client_requests(20)
        yield served
    finally:
        os.chdir(previous)
        os.environ.update(saved)
        stop_servers_under(root)


def test_a_candidate_without_a_feature_the_endpoint_takes_is_held_naming_it(endpoint):
    serving = endpoint.serving_version()
    code, results = endpoint.run("--dataset", "three_features.csv", "--endpoint-name", "iris-model")
    assert code == 3 and results["pipeline_status"] == "held"
    contract = results["gate"]["contract"]
    assert contract["status"] == "changed" and contract["serving_version"] == serving
    assert contract["changes"] == ["input features missing: 'petal width (cm)'"]
    assert "--allow-contract-change" in results["gate"]["reason"]
    assert results["phases"].get("deployment") is None and endpoint.serving_version() == serving


def test_a_candidate_with_other_labels_is_held_and_its_champion_comparison_skipped(endpoint):
    code, results = endpoint.run("--dataset", "named_labels.csv", "--endpoint-name", "iris-model")
    assert code == 3
    gate = results["gate"]
    assert gate["contract"]["changes"] == ["labels removed: [0, 1, 2]",
                                           "labels added: ['setosa', 'versicolor', 'virginica']"]
    assert gate["champion"]["status"] == "skipped" and gate["champion"]["reason"].startswith(
        "skipped: classes differ")


def test_an_allowed_contract_change_is_recorded_and_still_replays_what_clients_send(endpoint):
    serving = endpoint.serving_version()
    code, results = endpoint.run("--dataset", "three_features.csv", "--endpoint-name", "iris-model",
                                 "--allow-contract-change", "--junit-xml", "junit.xml")
    assert results["gate"]["contract"]["status"] == "allowed"
    replay = results["phases"]["testing"]["checks"]["replay"]
    assert not replay["passed"] and replay["refused"] == replay["requests"] > 0
    assert "each row must have 3 features, got 4" in replay["reason"]
    assert code == 1 and results["phases"]["deployment"]["deployment_results"]["final_state"] == "kept_previous"
    assert endpoint.serving_version() == serving
    gate_events = [event for event in DeploymentStore(".mlops").events(run_id=results["run_id"])
                   if event["kind"] == "gate_decision"]
    assert gate_events[0]["detail"]["contract"]["status"] == "allowed"
    junit = Path("junit.xml").read_text()
    assert 'name="contract"' in junit and 'name="replay"' in junit


def test_runs_shows_what_a_failed_deployment_left_serving_and_what_it_tried(endpoint):
    serving = endpoint.serving_version()
    code, results = endpoint.run("--dataset", "three_features.csv", "--endpoint-name", "iris-model",
                                 "--allow-contract-change")
    assert code == 1
    tried = results["phases"]["deployment"]["deployment_results"]["version"]
    listed = json.loads(CliRunner().invoke(cli, ["runs", "--json"]).output)["runs"]
    run = next(row for row in listed if row["run_id"] == results["run_id"])
    assert (run["left_serving"], run["tried_version"], run["deployment_status"]) == (serving, tried, "kept_previous")
    table = CliRunner().invoke(cli, ["runs"]).output
    assert f"iris-model:{serving} (tried {tried}: kept_previous)" in table


def test_a_retrain_on_the_same_inputs_passes_the_replay_of_captured_requests(endpoint):
    endpoint.client_requests(5)
    code, results = endpoint.run("--endpoint-name", "iris-model", "--set", "replay_requests=10")
    assert code == 0, results.get("error")
    assert results["gate"]["contract"]["status"] == "unchanged"
    replay = results["phases"]["testing"]["checks"]["replay"]
    assert replay["passed"] and replay["requests"] == 10 and replay["refused"] == 0
