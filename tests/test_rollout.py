"""Progressive delivery on the local endpoint: CANARY, LINEAR and SHADOW bakes judged on live traffic.

The first part specifies the analysis and the routing without a process; the second runs real
endpoints with a client of their own (``LiveTraffic``) while the pipeline bakes a new version.
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
import pytest
import requests
from click.testing import CliRunner

from pipeline.backends.base import IntervalTraffic, TrafficStep, VersionTraffic
from pipeline.backends.local.traffic import interval, quantile, read_metrics
from pipeline.cli import cli
from pipeline.config import load_config
from pipeline.deployment.rollout import BakeReport, IntervalVerdict, TrafficAnalysis, traffic_steps
from pipeline.state.store import DeploymentStore
from tests.conftest import PYTHON, REPO, LiveTraffic, train_job, wait_for
from tests.served_models import SlowWhenServedPipeline

ENDPOINT_DIR = Path(".mlops/endpoints/iris-model")
# A busy CI machine answers a few dozen requests a second: 30% of 4 s of them still gives a verdict.
BAKE = ["--set", "baking_seconds=4", "--set", "analysis_min_requests=10", "--set", "canary_percent=30"]
CANARY_10 = TrafficStep("split", 10)


def _config(**settings):
    return load_config(env={}, flags=settings, search_default_file=False)[0]


def _traffic(serving=(500, 0, 0.002), candidate=(60, 0, 0.002), compared=0, agreeing=0) -> IntervalTraffic:
    return IntervalTraffic(VersionTraffic(*serving), VersionTraffic(*candidate), compared, agreeing)


def _judge(traffic: IntervalTraffic, step: TrafficStep = CANARY_10, **settings):
    return TrafficAnalysis(_config(**settings)).judge(1, step, 60.0, traffic)


# --------------------------------------------------------------------------- the plan
@pytest.mark.unit
@pytest.mark.parametrize(("settings", "expected"), [
    ({"traffic_routing": "ALL_AT_ONCE"}, []),
    ({"traffic_routing": "CANARY", "canary_percent": 5}, [("split", 5)]),
    ({"traffic_routing": "LINEAR"}, [("split", 20), ("split", 40), ("split", 60), ("split", 80)]),
    ({"traffic_routing": "LINEAR", "linear_step_percent": 30}, [("split", 30), ("split", 60), ("split", 90)]),
    ({"traffic_routing": "SHADOW"}, [("shadow", 100)]),
])
def test_each_routing_bakes_in_its_own_steps(settings, expected):
    assert [(step.mode, step.percent) for step in traffic_steps(_config(**settings))] == expected


# --------------------------------------------------------------------------- the analysis
@pytest.mark.unit
def test_an_interval_within_every_threshold_passes():
    assert _judge(_traffic()).verdict == IntervalVerdict.PASS


@pytest.mark.unit
def test_a_candidate_failing_more_than_the_serving_version_breaches_even_with_few_requests():
    report = _judge(_traffic(candidate=(5, 5, 0.002)))
    assert report.verdict == IntervalVerdict.BREACH
    assert report.metric == "error_rate"
    assert "candidate 100.0% (5 of 5 requests) against serving 0.0% (0 of 500)" in report.reason
    assert "in interval 1" in report.reason


@pytest.mark.unit
def test_errors_the_serving_version_makes_as_often_are_no_breach():
    assert _judge(_traffic(serving=(500, 50, 0.002), candidate=(60, 6, 0.002))).verdict == IntervalVerdict.PASS


@pytest.mark.unit
def test_too_few_candidate_requests_are_insufficient_traffic_never_a_pass():
    report = _judge(_traffic(candidate=(49, 0, 0.002)))
    assert report.verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC
    assert "49 live candidate requests" in report.reason and "analysis_min_requests is 50" in report.reason
    assert report.reason.endswith("for a verdict, send more traffic or give it a longer baking_seconds or a larger "
                                  "canary_percent, lower analysis_min_requests, or set insufficient_traffic=promote "
                                  "to promote without one")


@pytest.mark.unit
def test_no_latency_to_compare_is_insufficient_traffic_not_a_pass():
    assert _judge(_traffic(serving=(0, 0, None))).verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC


@pytest.mark.unit
def test_a_p95_above_the_ratio_breaches():
    report = _judge(_traffic(serving=(500, 0, 0.002), candidate=(60, 0, 0.0045)))
    assert report.verdict == IntervalVerdict.BREACH
    assert report.metric == "p95_latency_ms" and report.candidate_value == 4.5 and report.limit == 4.0


@pytest.mark.unit
def test_a_p95_less_than_a_millisecond_above_the_serving_one_is_no_breach():
    assert _judge(_traffic(serving=(500, 0, 0.0002), candidate=(60, 0, 0.0009))).verdict == IntervalVerdict.PASS


@pytest.mark.unit
def test_shadow_agreement_below_the_minimum_breaches():
    report = _judge(_traffic(candidate=(60, 0, 0.002), compared=60, agreeing=54), step=TrafficStep("shadow", 100))
    assert report.verdict == IntervalVerdict.BREACH
    assert report.metric == "agreement" and report.candidate_value == 0.9
    assert _judge(_traffic(compared=60, agreeing=58), step=TrafficStep("shadow", 100)).verdict == IntervalVerdict.PASS


@pytest.mark.unit
def test_shadow_without_compared_rows_is_insufficient_traffic():
    verdict = _judge(_traffic(), step=TrafficStep("shadow", 100)).verdict
    assert verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC


# --------------------------------------------------------------------------- reading the endpoint's metrics
@pytest.mark.unit
def test_p95_is_interpolated_within_its_bucket_as_prometheus_does():
    buckets = {0.001: 50.0, 0.0025: 90.0, 0.005: 100.0, float("inf"): 100.0}
    assert quantile(0.95, buckets) == pytest.approx(0.0025 + 0.0025 * (95 - 90) / 10)
    assert quantile(0.95, {float("inf"): 0.0}) is None


EXPOSITION = """\
mlops_endpoint_requests_total{code="200",version="v1"} %(v1)d
mlops_endpoint_requests_total{code="400",version="v2"} %(v2_bad)d
mlops_endpoint_requests_total{code="200",version="v2"} %(v2)d
mlops_endpoint_test_requests_total{code="200",version="v1"} %(v1_test)d
mlops_endpoint_request_duration_seconds_bucket{le="0.001",version="v1"} %(v1_fast)d
mlops_endpoint_request_duration_seconds_bucket{le="+Inf",version="v1"} %(v1)d
mlops_endpoint_test_request_duration_seconds_bucket{le="0.001",version="v1"} %(v1_test)d
mlops_endpoint_test_request_duration_seconds_bucket{le="+Inf",version="v1"} %(v1_test)d
mlops_endpoint_request_duration_seconds_bucket{le="0.001",version="v2"} 0
mlops_endpoint_request_duration_seconds_bucket{le="+Inf",version="v2"} %(v2_all)d
"""


def _reading(v1: int, v1_test: int, v1_fast: int, v2: int, v2_bad: int):
    return read_metrics(EXPOSITION % {"v1": v1, "v1_test": v1_test, "v1_fast": v1_fast, "v2": v2, "v2_bad": v2_bad,
                                      "v2_all": v2 + v2_bad})


@pytest.mark.unit
def test_an_interval_counts_clients_requests_only_the_pipelines_tests_taken_out():
    before = _reading(v1=100, v1_test=40, v1_fast=90, v2=0, v2_bad=0)
    after = _reading(v1=400, v1_test=240, v1_fast=390, v2=30, v2_bad=3)
    seen = interval(before, after, "v1", "v2", shadow=False)
    assert seen.serving.requests == 100 and seen.serving.errors == 0  # 300 answered, 200 of them tests
    assert seen.candidate.requests == 33 and seen.candidate.errors == 3
    assert seen.serving.p95_seconds is not None and seen.serving.p95_seconds <= 0.001  # the tests' buckets too


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
    sent = np.array([[float(value) for value in row.split(",")] for row in client.sent_rows])
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
    assert process.wait(timeout=60) == 1
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


# --------------------------------------------------------------------------- the setting, every way it arrives
@pytest.mark.unit
@pytest.mark.parametrize(("how", "source"), [
    ("file", "file:config.json"), ("env", "env:TRAFFIC_ROUTING"), ("flag", "flag:--traffic-routing"),
    ("set", "set:traffic_routing"),
])
def test_traffic_routing_arrives_from_each_source(workdir, how, source):
    Path("config.json").write_text(json.dumps({"traffic_routing": "LINEAR"} if how == "file" else {}))
    env = {"TRAFFIC_ROUTING": "shadow"} if how == "env" else {}
    flags = {"traffic_routing": "CANARY"} if how == "flag" else {}
    settings = ["traffic_routing=SHADOW"] if how == "set" else []
    config, sources = load_config("config.json", env, flags, settings=settings)
    assert config.traffic_routing == {"file": "LINEAR", "env": "SHADOW", "flag": "CANARY", "set": "SHADOW"}[how]
    assert sources["traffic_routing"] == source


@pytest.mark.unit
def test_an_unknown_traffic_routing_is_refused_naming_where_it_came_from(workdir):
    result = CliRunner().invoke(cli, ["--mode", "training", "--output-file", "out.json"],
                                env={"TRAFFIC_ROUTING": "BLUE_GREEN"})
    assert result.exit_code == 2
    assert "environment variable TRAFFIC_ROUTING: traffic_routing: expected one of" in result.output
    flag = CliRunner().invoke(cli, ["--traffic-routing", "BLUE_GREEN", "--mode", "training"])
    assert flag.exit_code == 2 and "'BLUE_GREEN' is not one of" in flag.output


SHADOW_EXPOSITION = """\
mlops_endpoint_requests_total{code="200",version="v1"} %(answered)d
mlops_endpoint_requests_total{code="400",version="v1"} %(refused)d
mlops_endpoint_request_duration_seconds_bucket{le="0.001",version="v1"} 0
mlops_endpoint_request_duration_seconds_bucket{le="0.005",version="v1"} %(all)d
mlops_endpoint_request_duration_seconds_bucket{le="+Inf",version="v1"} %(all)d
mlops_endpoint_shadow_requests_total{code="200",version="v2"} %(shadow_ok)d
mlops_endpoint_shadow_requests_total{code="400",version="v2"} %(shadow_failed)d
mlops_endpoint_shadow_request_duration_seconds_bucket{le="0.001",version="v2"} 0
mlops_endpoint_shadow_request_duration_seconds_bucket{le="0.005",version="v2"} %(shadow_ok)d
mlops_endpoint_shadow_request_duration_seconds_bucket{le="+Inf",version="v2"} %(shadow_ok)d
mlops_endpoint_shadow_rows_total{agreement="same",version="v2"} %(shadow_ok)d
"""


def _shadow_reading(answered: int, refused: int, shadow_failed: int):
    shadow_ok = answered - shadow_failed
    return read_metrics(SHADOW_EXPOSITION % {"answered": answered, "refused": refused, "all": answered + refused,
                                             "shadow_ok": shadow_ok, "shadow_failed": shadow_failed})


@pytest.mark.unit
def test_a_shadow_failing_copies_the_serving_version_answered_breaches_whatever_clients_sent_malformed():
    # 1,000 client requests: 100 malformed ones refused by the serving version (never copied to the shadow),
    # 900 answered and copied; the shadow fails 50 of those 900 copies (5.6%).
    seen = interval(_shadow_reading(0, 0, 0), _shadow_reading(900, 100, 50), "v1", "v2", shadow=True)
    assert seen.candidate.requests == 900 and seen.candidate.errors == 50
    assert seen.serving.requests == 900 and seen.serving.errors == 0  # the very requests the shadow saw
    report = TrafficAnalysis(_config(traffic_routing="SHADOW")).judge(1, TrafficStep("shadow", 100), 60.0, seen)
    assert report.verdict == IntervalVerdict.BREACH and report.metric == "error_rate"


@pytest.mark.unit
def test_a_promotion_without_a_verdict_says_how_many_intervals_had_too_little_traffic():
    config = _config(traffic_routing="LINEAR", linear_step_percent=50, insufficient_traffic="promote")
    analysis = TrafficAnalysis(config)
    passed = analysis.judge(1, TrafficStep("split", 50), 60.0, _traffic())
    unjudged = analysis.judge(2, TrafficStep("split", 50), 60.0, _traffic(candidate=(3, 0, 0.002)))
    baked = BakeReport("LINEAR", 60.0, [passed, unjudged])
    assert baked.promotion_reason() == ("LINEAR bake promoted without a verdict: 1 of 2 interval(s) had too little "
                                        "traffic (insufficient_traffic promote)")
    assert BakeReport("LINEAR", 60.0, baked.intervals[:1]).promotion_reason() == "LINEAR bake passed 1 interval(s)"
