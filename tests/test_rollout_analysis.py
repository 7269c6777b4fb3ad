"""Progressive delivery's analysis and routing, without a process: the steps each routing bakes in, each
interval's verdict from the traffic both versions answered, the endpoint's metrics read into that traffic,
and the setting from every source. tests/test_rollout.py bakes on real endpoints.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.backends.base import IntervalTraffic, TrafficStep, VersionTraffic
from pipeline.backends.local.traffic import interval, quantile, read_metrics
from pipeline.cli import cli
from pipeline.config import load_config
from pipeline.deployment.rollout import BakeReport, IntervalVerdict, TrafficAnalysis, traffic_steps

pytestmark = pytest.mark.unit

CANARY_10 = TrafficStep("split", 10)


def _config(**settings):
    return load_config(env={}, flags=settings, search_default_file=False)[0]


def _traffic(serving=(500, 0, 0.002), candidate=(60, 0, 0.002), compared=0, agreeing=0) -> IntervalTraffic:
    return IntervalTraffic(VersionTraffic(*serving), VersionTraffic(*candidate), compared, agreeing)


def _judge(traffic: IntervalTraffic, step: TrafficStep = CANARY_10, **settings):
    return TrafficAnalysis(_config(**settings)).judge(1, step, 60.0, traffic)


# --------------------------------------------------------------------------- the plan
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
def test_an_interval_within_every_threshold_passes():
    assert _judge(_traffic()).verdict == IntervalVerdict.PASS


def test_a_candidate_failing_more_than_the_serving_version_breaches_even_with_few_requests():
    report = _judge(_traffic(candidate=(5, 5, 0.002)))
    assert report.verdict == IntervalVerdict.BREACH
    assert report.metric == "error_rate"
    assert "candidate 100.0% (5 of 5 requests) against serving 0.0% (0 of 500)" in report.reason
    assert "in interval 1" in report.reason


def test_errors_the_serving_version_makes_as_often_are_no_breach():
    assert _judge(_traffic(serving=(500, 50, 0.002), candidate=(60, 6, 0.002))).verdict == IntervalVerdict.PASS


def test_too_few_candidate_requests_are_insufficient_traffic_never_a_pass():
    report = _judge(_traffic(candidate=(49, 0, 0.002)))
    assert report.verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC
    assert "49 live candidate requests" in report.reason and "analysis_min_requests is 50" in report.reason
    assert report.reason.endswith("for a verdict, send more traffic or give it a longer baking_seconds or a larger "
                                  "canary_percent, lower analysis_min_requests, or set insufficient_traffic=promote "
                                  "to promote without one")


def test_no_latency_to_compare_is_insufficient_traffic_not_a_pass():
    assert _judge(_traffic(serving=(0, 0, None))).verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC


def test_a_p95_above_the_ratio_breaches():
    report = _judge(_traffic(serving=(500, 0, 0.002), candidate=(60, 0, 0.0045)))
    assert report.verdict == IntervalVerdict.BREACH
    assert report.metric == "p95_latency_ms" and report.candidate_value == 4.5 and report.limit == 4.0


def test_a_p95_less_than_a_millisecond_above_the_serving_one_is_no_breach():
    assert _judge(_traffic(serving=(500, 0, 0.0002), candidate=(60, 0, 0.0009))).verdict == IntervalVerdict.PASS


def test_shadow_agreement_below_the_minimum_breaches():
    report = _judge(_traffic(candidate=(60, 0, 0.002), compared=60, agreeing=54), step=TrafficStep("shadow", 100))
    assert report.verdict == IntervalVerdict.BREACH
    assert report.metric == "agreement" and report.candidate_value == 0.9
    assert _judge(_traffic(compared=60, agreeing=58), step=TrafficStep("shadow", 100)).verdict == IntervalVerdict.PASS


def test_shadow_without_compared_rows_is_insufficient_traffic():
    verdict = _judge(_traffic(), step=TrafficStep("shadow", 100)).verdict
    assert verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC


# --------------------------------------------------------------------------- reading the endpoint's metrics
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


def test_an_interval_counts_clients_requests_only_the_pipelines_tests_taken_out():
    before = _reading(v1=100, v1_test=40, v1_fast=90, v2=0, v2_bad=0)
    after = _reading(v1=400, v1_test=240, v1_fast=390, v2=30, v2_bad=3)
    seen = interval(before, after, "v1", "v2", shadow=False)
    assert seen.serving.requests == 100 and seen.serving.errors == 0  # 300 answered, 200 of them tests
    assert seen.candidate.requests == 33 and seen.candidate.errors == 3
    assert seen.serving.p95_seconds is not None and seen.serving.p95_seconds <= 0.001  # the tests' buckets too


# --------------------------------------------------------------------------- the setting, every way it arrives
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


def test_a_shadow_failing_copies_the_serving_version_answered_breaches_whatever_clients_sent_malformed():
    # 1,000 client requests: 100 malformed ones refused by the serving version (never copied to the shadow),
    # 900 answered and copied; the shadow fails 50 of those 900 copies (5.6%).
    seen = interval(_shadow_reading(0, 0, 0), _shadow_reading(900, 100, 50), "v1", "v2", shadow=True)
    assert seen.candidate.requests == 900 and seen.candidate.errors == 50
    assert seen.serving.requests == 900 and seen.serving.errors == 0  # the very requests the shadow saw
    report = TrafficAnalysis(_config(traffic_routing="SHADOW")).judge(1, TrafficStep("shadow", 100), 60.0, seen)
    assert report.verdict == IntervalVerdict.BREACH and report.metric == "error_rate"


def test_a_promotion_without_a_verdict_says_how_many_intervals_had_too_little_traffic():
    config = _config(traffic_routing="LINEAR", linear_step_percent=50, insufficient_traffic="promote")
    analysis = TrafficAnalysis(config)
    passed = analysis.judge(1, TrafficStep("split", 50), 60.0, _traffic())
    unjudged = analysis.judge(2, TrafficStep("split", 50), 60.0, _traffic(candidate=(3, 0, 0.002)))
    baked = BakeReport("LINEAR", 60.0, [passed, unjudged])
    assert baked.promotion_reason() == ("LINEAR bake promoted without a verdict: 1 of 2 interval(s) had too little "
                                        "traffic (insufficient_traffic promote)")
    assert BakeReport("LINEAR", 60.0, baked.intervals[:1]).promotion_reason() == "LINEAR bake passed 1 interval(s)"
