"""A local endpoint's live traffic per version, read from its ``/metrics`` (``pipeline.serving.metrics``).

A bake's analysis needs, for each version and one interval: the clients' requests, how many were
not 2xx, and their p95 latency. The endpoint's counters are cumulative and summed over its
workers (a version switch's retired workers included), so an interval is the difference of two
readings. The pipeline's own test requests are counted twice by the endpoint, in the totals and
in ``mlops_endpoint_test_*``; they are taken out here, counts and latency buckets alike. A shadow
candidate's predictions have counters of their own (``mlops_endpoint_shadow_*``).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from pipeline.backends.base import IntervalTraffic, VersionTraffic

REQUESTS = "mlops_endpoint_requests_total"
LATENCY = "mlops_endpoint_request_duration_seconds_bucket"
TEST_REQUESTS = "mlops_endpoint_test_requests_total"
TEST_LATENCY = "mlops_endpoint_test_request_duration_seconds_bucket"
SHADOW_REQUESTS = "mlops_endpoint_shadow_requests_total"
SHADOW_LATENCY = "mlops_endpoint_shadow_request_duration_seconds_bucket"
SHADOW_ROWS = "mlops_endpoint_shadow_rows_total"


@dataclass(frozen=True)
class Counts:
    """One version's requests by status code and latency buckets (cumulative, by upper bound)."""

    codes: dict[int, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)

    def minus(self, other: Counts) -> Counts:
        return Counts({code: self.codes.get(code, 0.0) - other.codes.get(code, 0.0)
                       for code in set(self.codes) | set(other.codes)},
                      {bound: self.buckets.get(bound, 0.0) - other.buckets.get(bound, 0.0)
                       for bound in set(self.buckets) | set(other.buckets)})

    def traffic(self) -> VersionTraffic:
        requests = int(round(sum(self.codes.values())))
        errors = int(round(sum(count for code, count in self.codes.items() if not 200 <= code < 300)))
        return VersionTraffic(requests, errors, quantile(0.95, self.buckets))


@dataclass(frozen=True)
class TrafficReading:
    """The endpoint's counters at one moment, per version."""

    served: dict[str, Counts]  # every answered invocation, the pipeline's test requests taken out
    shadow: dict[str, Counts]  # a shadow candidate's predictions
    shadow_rows: dict[str, dict[str, float]]  # version -> {"same": rows, "different": rows}


def read_metrics(text: str) -> TrafficReading:
    codes: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    buckets: dict[str, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            version = sample.labels.get("version")
            if version is None:
                continue
            if sample.name in (REQUESTS, TEST_REQUESTS, SHADOW_REQUESTS):
                codes[sample.name][version][int(sample.labels["code"])] = sample.value
            elif sample.name in (LATENCY, TEST_LATENCY, SHADOW_LATENCY):
                buckets[sample.name][version][float(sample.labels["le"])] = sample.value
            elif sample.name == SHADOW_ROWS:
                rows[version][sample.labels["agreement"]] = sample.value
    served = {version: Counts(codes[REQUESTS][version], buckets[LATENCY][version]).minus(
        Counts(codes[TEST_REQUESTS][version], buckets[TEST_LATENCY][version]))
        for version in set(codes[REQUESTS]) | set(buckets[LATENCY])}
    shadow = {version: Counts(codes[SHADOW_REQUESTS][version], buckets[SHADOW_LATENCY][version])
              for version in set(codes[SHADOW_REQUESTS]) | set(buckets[SHADOW_LATENCY])}
    return TrafficReading(served, shadow, dict(rows))


def interval(before: TrafficReading, after: TrafficReading, serving: str, candidate: str,
             shadow: bool) -> IntervalTraffic:
    """What happened between two readings: the serving version's answers, and the candidate's (its answers
    in a split, its shadow predictions under shadow, set beside the serving version's successful answers,
    the requests they are copies of)."""
    empty = Counts()
    serving_counts = after.served.get(serving, empty).minus(before.served.get(serving, empty))
    source_after, source_before = (after.shadow, before.shadow) if shadow else (after.served, before.served)
    candidate_counts = source_after.get(candidate, empty).minus(source_before.get(candidate, empty))
    rows_after, rows_before = after.shadow_rows.get(candidate, {}), before.shadow_rows.get(candidate, {})
    same = rows_after.get("same", 0.0) - rows_before.get("same", 0.0)
    different = rows_after.get("different", 0.0) - rows_before.get("different", 0.0)
    serving_traffic = serving_counts.traffic()
    if shadow:
        # The endpoint copies to a shadow only what the serving version answered (a refused request -- a client's
        # malformed body, say -- is never predicted again): over the requests the candidate saw, the serving
        # version failed none. Its refusals would otherwise raise the error rate the candidate may reach.
        serving_traffic = VersionTraffic(serving_traffic.requests - serving_traffic.errors, 0,
                                         serving_traffic.p95_seconds)
    return IntervalTraffic(serving_traffic, candidate_counts.traffic(),
                           compared_rows=int(round(same + different)), agreeing_rows=int(round(same)))


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` as Prometheus computes it: linear within the bucket the rank falls in (the
    +Inf bucket answers with the highest finite bound). None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound
