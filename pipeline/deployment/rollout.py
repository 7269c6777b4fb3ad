"""Progressive delivery: a tested version bakes on live traffic before it takes all of it.

``traffic_routing`` (SageMaker's names) says how:

| routing       | intervals                                          | the candidate                                  |
|---------------|----------------------------------------------------|------------------------------------------------|
| ALL_AT_ONCE   | none: the switch of today                          | takes every request once its tests pass        |
| CANARY        | one, at ``canary_percent``                         | answers that share, then all                   |
| LINEAR        | ``linear_step_percent``, twice that, ... below 100 | answers a growing share, then all              |
| SHADOW        | one                                                | predicts a copy of every request, never answers|

Each interval lasts ``baking_seconds``; then ``TrafficAnalysis`` judges what the backend read of
it (``Backend.traffic_since``: clients' requests only, the pipeline's own tests left out):

1. the candidate's non-2xx rate above the serving version's + ``max_error_rate_increase``, by more than
   chance gives: breach. Requests are routed by a random draw, so two equal versions' rates differ by
   sampling noise alone, on both sides: the candidate is held to the highest rate the serving version
   plausibly has (the one-sided upper Wilson bound of its sample at ``ERROR_RATE_ALPHA``) + the increase, and
   breaches when its own errors are beyond that by a one-sided binomial test at ``ERROR_RATE_ALPHA``. Judged
   first, at any volume: failures are evidence however few requests there were (5 errors in 5 requests breach against a
   serving version without errors). When the serving version itself fails many of its requests
   (``HIGH_SERVING_ERROR_RATE``), the verdict says so: clients are sending what no version answers, and
   the comparison is of the difference only;
2. fewer than ``analysis_min_requests`` candidate requests (or nothing to compare with): not enough
   traffic for a verdict -- never a pass;
3. its p95 latency above ``max_latency_ratio`` x the serving version's and at least 1 ms above it
   (a millisecond is below what a latency histogram's buckets resolve): breach;
4. under SHADOW, the share of rows both versions predicted alike below ``shadow_min_agreement``: breach.

``bake`` runs the intervals and says what they found; what happens next -- promote, roll back, or
keep the serving version -- is the orchestrator's decision (``pipeline.run.orchestrator``).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pipeline.backends.base import Backend, IntervalTraffic, Staged, TrafficStep, VersionTraffic
from pipeline.config import PipelineConfig
from pipeline.container.wilson import wilson_interval
from pipeline.progress import progress

log = logging.getLogger(__name__)

LATENCY_RESOLUTION_SECONDS = 0.001  # a p95 less than this above the serving one's is never a breach
ERROR_RATE_ALPHA = 0.05  # how unlikely by chance the candidate's excess errors must be to breach
HIGH_SERVING_ERROR_RATE = 0.10  # from here on a verdict says the serving version's own errors are most of them


class IntervalVerdict(StrEnum):
    PASS = "pass"
    BREACH = "breach"
    INSUFFICIENT_TRAFFIC = "insufficient_traffic"


class BakeOutcome(StrEnum):
    """What the bake found, for the orchestrator to act on."""

    PROMOTE = "promote"  # every interval passed (or had too little traffic, with insufficient_traffic promote)
    SKIPPED = "skipped"  # nothing to bake beside (a first deployment): the version takes all traffic
    BREACH = "breach"  # an interval breached a threshold: roll back
    INSUFFICIENT_TRAFFIC = "insufficient_traffic"  # too little traffic for a verdict, insufficient_traffic hold
    ABORTED = "aborted"  # `rollout abort`: every request back to the serving version


def traffic_steps(config: PipelineConfig) -> list[TrafficStep]:
    """The intervals of a bake, in order (none for ALL_AT_ONCE), each knowing its place and length."""
    routing = config.traffic_routing
    if routing == "CANARY":
        shares = [("split", config.canary_percent)]
    elif routing == "LINEAR":
        shares = [("split", percent) for percent in range(config.linear_step_percent, 100, config.linear_step_percent)]
    elif routing == "SHADOW":
        shares = [("shadow", 100)]
    else:
        shares = []
    return [TrafficStep(mode, percent, interval=index, intervals=len(shares), seconds=config.baking_seconds)
            for index, (mode, percent) in enumerate(shares, 1)]


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f} ms"


def _serving_rate_bound(serving: VersionTraffic) -> float:
    """The highest error rate the serving version plausibly has: its observed rate is a sample of the interval's
    random routing too (one-sided upper Wilson bound at ``ERROR_RATE_ALPHA``; 0 without requests)."""
    if not serving.requests:
        return 0.0
    return wilson_interval(serving.errors, serving.requests, confidence=1 - 2 * ERROR_RATE_ALPHA)[1]


def _excess_p_value(candidate: VersionTraffic, limit: float) -> float:
    """How likely the candidate's errors, or more, were if its true error rate were ``limit``: one-sided binomial."""
    from scipy.stats import binomtest  # scipy is loaded with scikit-learn already; imported here, once needed

    return float(binomtest(candidate.errors, candidate.requests, limit, alternative="greater").pvalue)


def _serving_fails(serving: VersionTraffic) -> str:
    """A note for the verdict when the serving version's own errors are most of what is compared."""
    if serving.requests and _rate(serving) >= HIGH_SERVING_ERROR_RATE:
        return (f" (the serving version itself answered {_rate(serving):.1%} of its {serving.requests} requests with "
                f"errors: clients are sending requests no version answers, and only the difference is judged)")
    return ""


def _rate(traffic: VersionTraffic) -> float:
    return traffic.errors / traffic.requests if traffic.requests else 0.0


@dataclass(frozen=True)
class IntervalReport:
    """One analysis interval: what was seen and what it means."""

    index: int
    step: TrafficStep
    seconds: float
    traffic: IntervalTraffic
    verdict: IntervalVerdict
    reason: str
    metric: str | None = None  # the breached (or missing) measure
    candidate_value: float | None = None
    limit: float | None = None  # what the candidate's value had to stay within

    @property
    def agreement(self) -> float | None:
        traffic = self.traffic
        return traffic.agreeing_rows / traffic.compared_rows if traffic.compared_rows else None

    def summary_line(self, total: int, seconds_left: float) -> str:
        """The progress line of one interval: share, requests per version, error rates, p95s, time left."""
        serving, candidate = self.traffic.serving, self.traffic.candidate
        share = "shadow copy of every request" if self.step.mode == "shadow" else f"{self.step.percent}% to candidate"
        agreement = f", agreement {self.agreement:.1%}" if self.agreement is not None else ""
        return (f"bake interval {self.index} of {total} ({share}): candidate {candidate.requests} requests, "
                f"{_rate(candidate):.1%} errors, p95 {_ms(candidate.p95_seconds)}; serving {serving.requests} "
                f"requests, {_rate(serving):.1%} errors, p95 {_ms(serving.p95_seconds)}{agreement}; "
                f"{self.verdict}; {seconds_left:.0f}s of baking left")

    def to_dict(self) -> dict[str, Any]:
        def version(traffic: VersionTraffic) -> dict[str, Any]:
            return {"requests": traffic.requests, "errors": traffic.errors, "error_rate": round(_rate(traffic), 6),
                    "p95_ms": None if traffic.p95_seconds is None else round(traffic.p95_seconds * 1000, 3)}

        return {"interval": self.index, "mode": self.step.mode, "candidate_percent": self.step.percent,
                "seconds": round(self.seconds, 3), "verdict": str(self.verdict), "reason": self.reason,
                "metric": self.metric, "candidate_value": self.candidate_value, "limit": self.limit,
                "serving": version(self.traffic.serving), "candidate": version(self.traffic.candidate),
                "compared_rows": self.traffic.compared_rows, "agreeing_rows": self.traffic.agreeing_rows,
                "agreement": None if self.agreement is None else round(self.agreement, 6)}


class TrafficAnalysis:
    """Judges one interval against the configured thresholds (the order is the module doc's)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    def judge(self, index: int, step: TrafficStep, seconds: float, traffic: IntervalTraffic) -> IntervalReport:
        config = self.config
        serving, candidate = traffic.serving, traffic.candidate
        where = f"in interval {index} ({seconds:.0f}s, {self._share(step)})"

        def report(verdict: IntervalVerdict, reason: str, metric: str | None = None,
                   value: float | None = None, limit: float | None = None) -> IntervalReport:
            return IntervalReport(index, step, seconds, traffic, verdict, reason, metric, value, limit)

        error_limit = _serving_rate_bound(serving) + config.max_error_rate_increase
        if candidate.requests and _rate(candidate) > error_limit and \
                _excess_p_value(candidate, min(error_limit, 1.0)) < ERROR_RATE_ALPHA:
            return report(IntervalVerdict.BREACH,
                          f"error rate: candidate {_rate(candidate):.1%} ({candidate.errors} of {candidate.requests} "
                          f"requests) against serving {_rate(serving):.1%} ({serving.errors} of {serving.requests}) "
                          f"{where}; max_error_rate_increase {config.max_error_rate_increase:g}"
                          f"{_serving_fails(serving)}",
                          "error_rate", round(_rate(candidate), 6), round(error_limit, 6))
        if candidate.requests < config.analysis_min_requests:
            return report(IntervalVerdict.INSUFFICIENT_TRAFFIC,
                          f"insufficient traffic: {candidate.requests} live candidate requests {where}, "
                          f"analysis_min_requests is {config.analysis_min_requests}; {self._more_traffic(step)}",
                          "requests", candidate.requests, config.analysis_min_requests)
        if candidate.p95_seconds is None or serving.p95_seconds is None:
            return report(IntervalVerdict.INSUFFICIENT_TRAFFIC,
                          f"insufficient traffic: no p95 latency to compare {where} (serving "
                          f"{serving.requests} requests, candidate {candidate.requests})", "p95_latency")
        latency_limit = max(config.max_latency_ratio * serving.p95_seconds,
                            serving.p95_seconds + LATENCY_RESOLUTION_SECONDS)
        if candidate.p95_seconds > latency_limit:
            return report(IntervalVerdict.BREACH,
                          f"p95 latency: candidate {_ms(candidate.p95_seconds)} against serving "
                          f"{_ms(serving.p95_seconds)} {where}; max_latency_ratio {config.max_latency_ratio:g}",
                          "p95_latency_ms", round(candidate.p95_seconds * 1000, 3), round(latency_limit * 1000, 3))
        if step.mode == "shadow":
            if not traffic.compared_rows:
                return report(IntervalVerdict.INSUFFICIENT_TRAFFIC,
                              f"insufficient traffic: no rows predicted by both versions {where}", "agreement")
            agreement = traffic.agreeing_rows / traffic.compared_rows
            if agreement < config.shadow_min_agreement:
                return report(IntervalVerdict.BREACH,
                              f"shadow agreement: {agreement:.1%} of {traffic.compared_rows} rows predicted alike "
                              f"{where}; shadow_min_agreement {config.shadow_min_agreement:g}",
                              "agreement", round(agreement, 6), config.shadow_min_agreement)
        return report(IntervalVerdict.PASS, f"passed {where}: {candidate.requests} candidate requests"
                                            f"{_serving_fails(serving)}")

    @staticmethod
    def _share(step: TrafficStep) -> str:
        return "shadow" if step.mode == "shadow" else f"{step.percent}% to the candidate"

    def _more_traffic(self, step: TrafficStep) -> str:
        """What the user can change for a verdict next time: the settings that bring the candidate requests."""
        share = "" if step.mode == "shadow" else (
            " or a larger linear_step_percent" if self.config.traffic_routing == "LINEAR" else
            " or a larger canary_percent")
        return (f"for a verdict, send more traffic or give it a longer baking_seconds{share}, lower "
                f"analysis_min_requests, or set insufficient_traffic=promote to promote without one")


@dataclass
class BakeReport:
    """A bake's intervals and what they add up to; ``outcome`` None while it runs (or when it was cut short)."""

    traffic_routing: str
    baking_seconds: float
    intervals: list[IntervalReport] = field(default_factory=list)
    outcome: BakeOutcome | None = None
    reason: str | None = None
    promoted_without_verdict: bool = False  # insufficient_traffic promote was used

    @property
    def promotes(self) -> bool:
        return self.outcome in (BakeOutcome.PROMOTE, BakeOutcome.SKIPPED)

    @property
    def breached(self) -> bool:
        return self.outcome == BakeOutcome.BREACH

    def promotion_reason(self) -> str:
        """Why every interval let the candidate go on, naming how many had no verdict (not "every" when some had)."""
        total = len(self.intervals)
        unjudged = sum(1 for interval in self.intervals if interval.verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC)
        if not unjudged:
            return f"{self.traffic_routing} bake passed {total} interval(s)"
        return (f"{self.traffic_routing} bake promoted without a verdict: {unjudged} of {total} interval(s) had too "
                f"little traffic (insufficient_traffic promote)")

    def to_dict(self) -> dict[str, Any]:
        return {"traffic_routing": self.traffic_routing, "baking_seconds": self.baking_seconds,
                "outcome": str(self.outcome) if self.outcome else "interrupted", "reason": self.reason,
                "promoted_without_verdict": self.promoted_without_verdict,
                "intervals": [interval.to_dict() for interval in self.intervals]}


@dataclass(frozen=True)
class OperatorRequest:
    """``rollout promote`` or ``rollout abort``, as the baking run reads it from the store."""

    action: str  # promote | abort
    by: str


def bake(config: PipelineConfig, backend: Backend, staged: Staged, record: BakeReport | None = None,
         on_interval: Callable[[IntervalReport], None] | None = None,
         sleep: Callable[[float], None] = time.sleep,
         operator: Callable[[], OperatorRequest | None] = lambda: None) -> BakeReport:
    """Run every interval of ``traffic_routing`` on the endpoint; stop at the first breach or, with
    ``insufficient_traffic`` hold, at the first interval with too little traffic. Leaves the last split in
    place: the orchestrator ends it (promote or discard). ``on_interval`` hears each judged interval at once
    (the audit trail records it as it happens). ``operator`` is asked every second for a person's ``rollout
    promote`` (the remaining intervals are skipped) or ``rollout abort`` (the bake ends, nothing promoted)."""
    steps = traffic_steps(config)
    report = record or BakeReport(config.traffic_routing, config.baking_seconds)
    analysis = TrafficAnalysis(config)
    total_seconds = len(steps) * config.baking_seconds
    reporter = progress()
    for index, step in enumerate(steps, 1):
        backend.split_traffic(staged, step)
        mark = backend.traffic_mark(staged)
        began = time.monotonic()
        while (left := config.baking_seconds - (time.monotonic() - began)) > 0:
            request = operator()
            if request is not None:
                _obey(report, request, index, len(steps))
                reporter.done("baking", detail=str(report.outcome))
                return report
            sleep(min(1.0, left))
            elapsed = (index - 1) * config.baking_seconds + min(config.baking_seconds, time.monotonic() - began)
            reporter.report("baking", detail=f"interval {index} of {len(steps)} ({TrafficAnalysis._share(step)}), "
                                             f"{total_seconds - elapsed:.0f}s left")
        judged = analysis.judge(index, step, time.monotonic() - began, backend.traffic_since(staged, mark))
        report.intervals.append(judged)
        if on_interval is not None:
            on_interval(judged)
        log.info("%s", judged.summary_line(len(steps), total_seconds - index * config.baking_seconds))
        if judged.verdict == IntervalVerdict.BREACH:
            report.outcome, report.reason = BakeOutcome.BREACH, judged.reason
            break
        if judged.verdict == IntervalVerdict.INSUFFICIENT_TRAFFIC:
            if config.insufficient_traffic == "hold":
                report.outcome, report.reason = BakeOutcome.INSUFFICIENT_TRAFFIC, judged.reason
                break
            report.promoted_without_verdict = True
            log.warning("%s; insufficient_traffic is promote: going on without a verdict", judged.reason)
    else:
        report.outcome = BakeOutcome.PROMOTE
        report.reason = report.promotion_reason()
    reporter.done("baking", detail=str(report.outcome))
    return report


def _obey(report: BakeReport, request: OperatorRequest, index: int, total: int) -> None:
    """A person ended the bake: recorded as theirs, with what it skipped."""
    skipped = f"in interval {index} of {total}" + (f", {total - index} more skipped" if index < total else "")
    if request.action == "promote":
        report.outcome, report.reason = BakeOutcome.PROMOTE, f"promoted by {request.by} ({skipped})"
    else:
        report.outcome, report.reason = BakeOutcome.ABORTED, f"aborted by {request.by} ({skipped})"
    log.warning("bake %s", report.reason)
