"""Keep the tested version, or roll back: the decision after the endpoint tests and the bake.

| endpoint tests | bake (CANARY, LINEAR, SHADOW)        | rollback_on_failure | conclusion                          |
|----------------|--------------------------------------|---------------------|-------------------------------------|
| passed         | none (ALL_AT_ONCE), skipped, promote | -                   | keep                                |
| passed         | breach                               | -                   | roll back (tests_failed: it failed) |
| passed         | too little traffic (hold)            | -                   | roll back: kept_previous            |
| failed         | not run                              | true                | roll back (tests_failed)            |
| failed         | not run                              | false               | keep, marked failed                 |

Pure: the test report and the bake's report in, a ``Conclusion`` out. The orchestrator acts on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.outcomes import FinalState

if TYPE_CHECKING:
    from pipeline.deployment.rollout import BakeReport
    from pipeline.testing import TestReport


@dataclass(frozen=True)
class Conclusion:
    keep: bool
    reason: str | None  # why: for the history (a bake's verdict) or the rollback
    failed: bool = False  # kept although its tests failed: rollback_on_failure is off
    tests_failed: bool = False  # the version failed a check (a test or the bake): notified as tests_failed
    final_state: FinalState | None = None  # how a rollback ends when the backend's word is not the right one


def conclude(tests: TestReport, bake: BakeReport | None, *, rollback_on_failure: bool) -> Conclusion:
    """Keep or roll back, and why (the table above). ``bake`` is None when the version took all traffic at once,
    or when its tests failed (a version that failed its tests is never baked)."""
    if not tests.passed:
        reason = tests.failure_reason or "endpoint tests failed"
        if rollback_on_failure:
            return Conclusion(keep=False, reason=reason, tests_failed=True)
        return Conclusion(keep=True, reason=reason, failed=True)
    if bake is None or bake.promotes:
        return Conclusion(keep=True, reason=bake.reason if bake else None)
    if bake.breached:
        return Conclusion(keep=False, reason=bake.reason or "bake breached", tests_failed=True)
    # Too little traffic for a verdict is never a pass: the serving version never stopped serving.
    return Conclusion(keep=False, reason=bake.reason or "insufficient traffic", final_state=FinalState.KEPT_PREVIOUS)
