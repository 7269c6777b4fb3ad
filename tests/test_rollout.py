"""Progressive delivery on the local endpoint: CANARY, LINEAR and SHADOW bakes judged on live traffic.

Real endpoints, with a client of their own (``LiveTraffic``) while the pipeline bakes a new version;
the analysis and the routing are specified without a process in tests/test_rollout_analysis.py.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import requests
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.state.store import DeploymentStore
from tests.conftest import PYTHON, REPO, LiveTraffic, train_job, wait_for
from tests.served_models import SlowWhenServedPipeline

ENDPOINT_DIR = Path(".mlops/endpoints/iris-model")
# A busy CI machine answers a few dozen requests a second: 30% of 4 s of them still gives a verdict.
BAKE = ["--set", "baking_seconds=4", "--set", "analysis_min_requests=10", "--set", "canary_percent=30"]


# --------------------------------------------------------------------------- real endpoints
def _first(pipeline) -> tuple[str, str]:
    assert pipeline().exit_code == 0
    results = pipeline.results()
    return results["summary"]["endpoint_url"], results["summary"]["endpoint_version"]


def _split_shown(url: str) -> dict | None:
    try:
        return requests.get(f"{url}/ping", timeout=5).json().get("split")
    except (requests.RequestException, ValueError):
        return None


def _wait_for_split(url: str, seconds: float = 120.0) -> dict:
    """The split once a ping shows it (during the switch, a retiring worker may still answer without one)."""
    seen: list[dict] = []

    def shown() -> bool:
        split = _split_shown(url)
        if split:
            seen.append(split)
        return bool(split)

    wait_for(shown, seconds=seconds)
    return seen[-1]


def test_a_canary_that_passes_is_promoted_and_no_client_request_fails(pipeline):
    url, v1 = _first(pipeline)
    with LiveTraffic(url) as client:
        result = pipeline("--traffic-routing", "CANARY", *BAKE)
        finished = time.monotonic()
        client.stop(at_least=2000)
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    v2 = results["summary"]["endpoint_version"]
    rollout = results["phases"]["rollout"]
    assert rollout["outcome"] == "promote" and rollout["intervals"][0]["verdict"] == "pass"
    assert rollout["intervals"][0]["candidate_percent"] == 30
    assert len(client.answers) >= 2000 and client.failures() == []
    assert {v1, v2} <= client.versions(before=finished)  # both answered during the bake
    first_v2 = min(at for at, _, version in client.answers if version == v2)
    assert v1 in client.versions(after=first_v2, before=finished)  # ... interleaved: a split, not a switch
    assert client.versions(after=finished) == {v2}
    assert _split_shown(url) is None
    assert "bake interval 1 of 1 (30% to candidate)" in Path("pipeline.log").read_text()
    assert "Bake: CANARY, 1 interval(s) of 4 s: promote" in result.output
    history = DeploymentStore(".mlops").deployments("iris-model")
    assert history[0]["status"] == "deployed" and history[0]["reason"] == "CANARY bake passed 1 interval(s)"


def test_a_slow_canary_is_rolled_back_by_its_analysis_and_no_client_request_fails(pipeline, slack):
    url, v1 = _first(pipeline)
    job = train_job(pipeline.root, SlowWhenServedPipeline)
    with LiveTraffic(url) as client:
        result = pipeline("--mode", "deployment", "--training-job", job, "--traffic-routing", "CANARY", *BAKE,
                          "--set", "champion_policy=off", "--junit-xml", "junit.xml",
                          env={"SLACK_WEBHOOK_URL": slack.url})
        finished = time.monotonic()
        client.stop(at_least=2000)
    assert result.exit_code == 1, result.output
    results = pipeline.results()
    v2 = results["phases"]["deployment"]["deployment_results"]["version"]
    assert results["rollback"]["final_state"] == "rolled_back"
    assert results["rollback"]["reason"].startswith("p95 latency: candidate")
    assert "in interval 1" in results["rollback"]["reason"]
    assert results["phases"]["rollout"]["intervals"][0]["metric"] == "p95_latency_ms"
    assert len(client.answers) >= 2000 and client.failures() == []
    assert {v1, v2} <= client.versions(before=finished)
    assert client.versions(after=finished) == {v1}
    history = DeploymentStore(".mlops").deployments("iris-model")
    assert history[0]["status"] == "rolled_back" and history[0]["reason"].startswith("p95 latency: candidate")
    failure = ET.parse("junit.xml").getroot().find(".//testsuite[@name='bake']/testcase/failure")
    assert failure is not None and failure.get("message", failure.text or "").startswith("p95 latency")
    report = Path(".mlops/runs", results["run_id"], "report.html").read_text()
    assert "bake interval 1: breach" in report  # on the run report's timeline
    rolled_back = [body for body in slack.requests if "p95 latency: candidate" in json.dumps(body)]
    assert rolled_back, slack.requests  # the notification says which measure, both numbers and the interval


def _iris_without_sepal_width(path: Path) -> Path:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.drop(columns=["sepal width (cm)"])
    frame.to_csv(path, index=False)
    return path


def test_a_candidate_that_fails_on_live_requests_is_rolled_back_while_the_serving_version_answers(pipeline):
    url, v1 = _first(pipeline)
    dataset = _iris_without_sepal_width(pipeline.root / "three_features.csv")
    with LiveTraffic(url) as client:
        # The contract check and the replay would hold it before the bake: this is what the bake alone catches.
        result = pipeline("--dataset", str(dataset), "--endpoint-name", "iris-model", "--traffic-routing", "CANARY",
                          "--set", "champion_policy=off", "--allow-contract-change", "--replay-requests", "0", *BAKE)
        finished = time.monotonic()
        client.stop()
    assert result.exit_code == 1, result.output
    results = pipeline.results()
    assert results["summary"]["testing_passed"] is True  # its own held-out rows (three features) pass
    assert results["rollback"]["final_state"] == "rolled_back"
    assert results["rollback"]["reason"].startswith("error rate: candidate 100.0%")
    v2 = results["phases"]["deployment"]["deployment_results"]["version"]
    assert all(status == 200 for _, status, version in client.answers if version == v1)
    assert {status for _, status, version in client.answers if version == v2} == {400}
    assert client.versions(after=finished) == {v1}


def test_shadow_never_answers_with_the_candidate_and_measures_its_agreement_as_offline(pipeline):
    url, v1 = _first(pipeline)
    job = train_job(pipeline.root, model_type="random_forest", hyperparameters={"max_depth": 1},
                    accuracy_threshold=0.5, minimum_accuracy=0.3)
    rows = tuple(",".join(f"{value:.1f}" for value in row) for row in np.random.default_rng(7).uniform(
        [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(40, 4)))
    process = _deploy_in_background(job, "SHADOW", "shadow.json", "baking_seconds=8", "analysis_min_requests=20",
                                    "accuracy_threshold=0.5", "minimum_accuracy=0.3", "champion_policy=off")
    wait_for(lambda: (_split_shown(url) or {}).get("mode") == "shadow", seconds=120)
    time.sleep(0.5)  # the bake's first reading is taken once every worker shadows
    client = LiveTraffic(url, rows=rows)
    with client:
        client.stop(at_least=300)
    assert process.wait(timeout=120) == 1  # a one-split stump agrees with the serving model far too little
    results = json.loads(Path("shadow.json").read_text())
    interval_seen = results["phases"]["rollout"]["intervals"][0]
    assert results["rollback"]["final_state"] == "rolled_back"
    assert results["rollback"]["reason"].startswith("shadow agreement: ")
    assert client.failures() == [] and client.versions() == {v1}  # never a candidate's answer

    models = {version: joblib.load(next(Path(".mlops/jobs").glob(f"{name}/model/model.joblib")))
              for version, name in ((v1, DeploymentStore(".mlops").version(v1)["training_job"]), ("v2", job))}
    sent = pd.DataFrame([[float(value) for value in row.split(",")] for row in client.sent_rows],
                        columns=models[v1].feature_names_in_)  # named, as the endpoint predicts
    offline_agreeing = int(np.count_nonzero(models[v1].predict(sent) == models["v2"].predict(sent)))
    assert interval_seen["compared_rows"] == len(sent)
    assert interval_seen["agreeing_rows"] == offline_agreeing


def test_a_first_deployment_has_nothing_to_bake_beside_and_says_so(pipeline):
    result = pipeline("--traffic-routing", "CANARY", "--junit-xml", "junit.xml")
    assert result.exit_code == 0, result.output
    rollout = pipeline.results()["phases"]["rollout"]
    assert rollout["outcome"] == "skipped" and "no serving version to bake beside" in rollout["reason"]
    assert rollout["intervals"] == []
    skipped = ET.parse("junit.xml").getroot().find(".//testsuite[@name='bake']/testcase/skipped")
    assert skipped is not None


def test_a_bake_without_traffic_keeps_the_previous_version_never_deployed(pipeline):
    url, v1 = _first(pipeline)
    result = pipeline("--traffic-routing", "CANARY", "--set", "baking_seconds=1")
    assert result.exit_code == 1, result.output
    results = pipeline.results()
    assert results["rollback"]["final_state"] == "kept_previous"
    assert results["rollback"]["reason"].startswith("insufficient traffic: 0 live candidate requests")
    assert results["summary"]["deployment_occurred"] is False
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v1 and _split_shown(url) is None


def test_insufficient_traffic_promote_deploys_and_says_it_had_no_verdict(pipeline):
    _first(pipeline)
    result = pipeline("--traffic-routing", "CANARY", "--set", "baking_seconds=1",
                      "--set", "insufficient_traffic=promote")
    assert result.exit_code == 0, result.output
    rollout = pipeline.results()["phases"]["rollout"]
    assert rollout["outcome"] == "promote" and rollout["promoted_without_verdict"] is True
    assert rollout["intervals"][0]["verdict"] == "insufficient_traffic"


def test_a_linear_bake_judges_every_step(pipeline):
    url, _ = _first(pipeline)
    with LiveTraffic(url) as client:
        result = pipeline("--traffic-routing", "LINEAR", "--set", "linear_step_percent=40",
                          "--set", "baking_seconds=2", "--set", "analysis_min_requests=10")
        client.stop()
    assert result.exit_code == 0, result.output
    intervals = pipeline.results()["phases"]["rollout"]["intervals"]
    assert [(i["candidate_percent"], i["verdict"]) for i in intervals] == [(40, "pass"), (80, "pass")]
    assert client.failures() == []


def _deploy_in_background(job: str, routing: str, output_file: str, *settings: str) -> subprocess.Popen:
    """``--mode deployment`` of ``job`` as its own process (the real script), so a test can talk to the endpoint,
    or signal the pipeline, while it bakes."""
    sets = [arg for setting in ("cv_folds=3", "performance_requests=40", *settings) for arg in ("--set", setting)]
    return subprocess.Popen([PYTHON, str(REPO / "run_pipeline.py"), "--mode", "deployment", "--training-job", job,
                             "--traffic-routing", routing, "--output-file", output_file, *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _start_baking(job: str) -> subprocess.Popen:
    """A CANARY bake long enough to be interrupted."""
    return _deploy_in_background(job, "CANARY", "baking.json", "baking_seconds=120")


def test_while_baking_each_answer_names_the_one_version_that_gave_it(pipeline):
    url, v1 = _first(pipeline)
    assert pipeline("--mode", "training").exit_code == 0
    process = _start_baking(pipeline.results()["summary"]["training_job"])
    try:
        v2 = _wait_for_split(url)["candidate_version"]
        session = requests.Session()
        # Routing is a random draw at 10%: 200 requests reach the candidate but with chance 0.9**200 (1e-9).
        answers = [session.post(f"{url}/invocations", data=row, headers={"Content-Type": "text/csv"}, timeout=10)
                   for row in ["5.1,3.5,1.4,0.2"] * 200 + ["1,2"] * 200]
        refused = [session.post(f"{url}/invocations?probabilities=true", data="5.1,3.5,1.4,0.2", timeout=10,
                                headers={"Content-Type": "text/csv"}) for _ in range(200)]
        tests = [session.post(f"{url}/invocations", data="5.1,3.5,1.4,0.2", timeout=10,
                              headers={"Content-Type": "text/csv", "X-Mlops-Test-Traffic": "1"}) for _ in range(20)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    for reply in answers:
        assert reply.headers["X-Model-Version"] in (v1, v2)  # one value: never both versions' headers
        assert len(reply.headers["X-Model-Sha256"]) == 64 and "Date" in reply.headers
    assert {reply.headers["X-Model-Version"] for reply in answers[:200]} == {v1, v2}
    assert {reply.status_code for reply in answers[200:]} == {400}  # refusals name who refused, too
    assert {reply.headers["X-Model-Version"] for reply in answers[200:]} == {v1, v2}
    assert {reply.headers["X-Model-Version"] for reply in tests} == {v1}  # the pipeline's checks see what serves
    # Refused before a model is asked, and still routed first: such refusals fall on both versions alike.
    assert {reply.status_code for reply in refused} == {400}
    assert {reply.headers["X-Model-Version"] for reply in refused} == {v1, v2}


def test_sigterm_while_baking_returns_every_request_to_the_serving_version(pipeline):
    url, v1 = _first(pipeline)
    assert pipeline("--mode", "training").exit_code == 0
    process = _start_baking(pipeline.results()["summary"]["training_job"])
    _wait_for_split(url)
    status = CliRunner().invoke(cli, ["status"])
    assert re.search(r"BAKING: \S+ gets 10% of requests, interval 1 of 1, \d+s of 120s left", status.output), \
        status.output
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 1  # bounded: ending the split and stopping the candidate, on a busy machine
    results = json.loads(Path("baking.json").read_text())
    assert results["rollback"]["final_state"] == "kept_previous"
    assert results["phases"]["rollout"]["outcome"] == "interrupted"
    assert _split_shown(url) is None and requests.get(f"{url}/ping").headers["X-Model-Version"] == v1


def test_a_split_left_by_a_killed_pipeline_is_ended_by_the_next_command(pipeline):
    url, v1 = _first(pipeline)
    assert pipeline("--mode", "training").exit_code == 0
    process = _start_baking(pipeline.results()["summary"]["training_job"])
    _wait_for_split(url)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _wait_for_split(url, seconds=30)  # nobody ended it

    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    wait_for(lambda: _split_shown(url) is None, seconds=30)
    history = DeploymentStore(".mlops").deployments("iris-model")
    assert history[0]["status"] == "interrupted" and "ended the traffic split" in history[0]["reason"]
    assert requests.get(f"{url}/ping").headers["X-Model-Version"] == v1


