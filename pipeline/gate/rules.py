"""The accuracy gate's rules: may this model be deployed?

``Gate.decide`` is the table, row by row; ``judge`` is its first rows under ``gate_policy``
(``point``: the metric itself; ``confident``: its 95% interval). Pure: the metrics, the config and the
champion comparison in, one ``GateDecision`` out. The orchestrator calls it and acts on the answer.
"""
from __future__ import annotations

from typing import Any

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.gate.decision import Approval, ApprovalStatus, ChampionComparison, ContractCheck, GateDecision, GatePolicy
from pipeline.gate.statistics import rows_needed
from pipeline.outcomes import Verdict


class Gate:
    """May this model be deployed? Each row is checked in order; the first that applies decides.

    | condition                                                    | decision | deploys                      |
    |--------------------------------------------------------------|----------|------------------------------|
    | metric < minimum (``confident``: the interval's upper end)   | rejected | never, not even with         |
    |                                                              |          | --mode deployment            |
    | accuracy <= no-skill baseline                                | held     | no (a majority-class guess   |
    |                                                              |          | does as well)                |
    | metric < threshold (``confident``: the interval's lower end) | held     | no                           |
    | the endpoint's contract would change (inputs or labels),     | held     | no; --allow-contract-change  |
    | when deploying                                               |          | deploys it                   |
    | the champion holds it (``champion_policy``)                  | held     | no; the champion serves on   |
    | a person rejected it (``reject``)                            | rejected | never                        |
    | approval_required and nobody approved this model             | pending_ | later, once approved         |
    |                                                              | approval | (--mode deployment: held)    |
    | auto-deploy off, and not --mode deployment                   | approved | later, with --mode deployment|
    | otherwise                                                    | deploy   | yes                          |

    A person's approval of a model the threshold, the no-skill baseline or the champion held overrides
    that hold (the approval says so); never a rejection, nor a contract change (``--allow-contract-change``).

    ``gate_policy`` ``point`` compares the metric itself; ``confident`` its 95% interval
    (``judge`` below). The champion comparison and the contract check are made beforehand
    (``pipeline.gate.champion``, ``pipeline.gate.contract``) and reported whatever the decision.
    """

    def __init__(self, config: PipelineConfig, explicit_request: bool = False) -> None:
        self.config = config
        self.explicit_request = explicit_request  # --mode deployment: deploy even with auto-deploy off

    def decide(self, metrics: dict[str, Any], champion: ChampionComparison | None = None,
               champion_warning: str | None = None, contract: ContractCheck | None = None,
               approval: Approval | None = None) -> GateDecision:
        name = self.config.gate_metric
        value = metrics.get(name)
        if name in NOT_GATEABLE or not _is_score(value):
            scores = sorted(k for k, v in metrics.items() if _is_score(v) and k not in NOT_GATEABLE)
            raise PipelineError(f"gate_metric {name!r} is not an evaluated score between 0 and 1 where higher is "
                                f"better (available: {', '.join(scores)})")
        interval = tuple(metrics["accuracy_ci95"]) if name == "accuracy" and metrics.get("accuracy_ci95") else None
        evidence = judge(name, float(value), self.config.accuracy_threshold, self.config.minimum_accuracy,
                         policy=self.config.gate_policy, interval=interval)  # type: ignore[arg-type]
        verdict, reason = evidence.decision, evidence.reason
        accuracy, no_skill = metrics.get("accuracy"), metrics.get("no_skill_accuracy")
        if verdict != Verdict.REJECTED and _is_score(accuracy) and _is_score(no_skill) and accuracy <= no_skill:
            verdict, reason = Verdict.HELD, (f"accuracy {accuracy:.2%} does not beat the no-skill baseline "
                                             f"{no_skill:.2%} (always predicting the most frequent class)")
        elif verdict == Verdict.DEPLOY and contract is not None and contract.holds:
            verdict, reason = Verdict.HELD, contract.reason
        elif verdict == Verdict.DEPLOY and champion is not None and champion.holds:
            verdict, reason = Verdict.HELD, champion.reason.removeprefix("held: ")  # the decision says held
        verdict, reason = self._approval_rows(verdict, reason, contract, approval)
        if verdict == Verdict.DEPLOY and not (self.config.auto_deploy_enabled or self.explicit_request):
            verdict, reason = Verdict.APPROVED, (f"{reason}; auto-deploy is off: deploy it with --mode deployment "
                                                 f"--training-job NAME")
        warning = "; ".join(filter(None, (evidence.warning, champion_warning))) or None
        return evidence.model_copy(update={"decision": verdict, "reason": reason, "warning": warning,
                                           "champion": champion, "contract": contract, "approval": approval})

    def _approval_rows(self, verdict: Verdict, reason: str, contract: ContractCheck | None,
                       approval: Approval | None) -> tuple[Verdict, str]:
        """What a person decided, after the gate's own rows (``approve`` / ``reject``; ``approval_required``)."""
        if verdict == Verdict.REJECTED:
            return verdict, reason  # never approved, never deployed
        if approval is not None and approval.status == ApprovalStatus.REJECTED:
            return Verdict.REJECTED, f"rejected by {approval.by}: {approval.reason}"
        approved = approval is not None and approval.status == ApprovalStatus.APPROVED
        if verdict == Verdict.HELD and approved and not (contract is not None and contract.holds):
            return Verdict.DEPLOY, f"approved by {approval.by}, overriding the gate ({reason}): {approval.reason}"
        if verdict == Verdict.DEPLOY and self.config.approval_required and not approved:
            if self.explicit_request:
                return Verdict.HELD, (f"{reason}; approval_required: nobody has approved this model (`approve JOB "
                                      f"--reason TEXT`)")
            return Verdict.PENDING_APPROVAL, (f"{reason}; approval_required: it deploys once approved (`approve JOB "
                                              f"--reason TEXT`, then --mode deployment --training-job NAME)")
        return verdict, reason


# Numbers, but not "higher is better" scores of the model: a spread, sizes, and a reference point.
NOT_GATEABLE = {"cv_std", "test_size", "train_size", "no_skill_accuracy"}


def _is_score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def judge(metric: str, value: float, threshold: float, minimum: float, *,
          policy: GatePolicy | str = GatePolicy.POINT,
          interval: tuple[float, float] | None = None) -> GateDecision:
    """The gate's verdict on one metric value.

    ``point`` acts on the value alone (the table in ``Gate``). ``confident`` acts on
    the 95% interval: deploy only when its lower end reaches the threshold, reject only when its upper
    end is below the minimum, otherwise hold for "not enough evidence". At the threshold the point rule
    deploys about half the models that are truly no better than the threshold; the interval rule about
    2% (``docs/DECISIONS.md``). ``interval`` is the metric's 95% interval, known for accuracy; without
    one the confident policy cannot judge and says so.

    ``rows_needed`` is filled whenever there is an interval, and the warning (the interval straddles the
    threshold) names it.
    """
    policy = GatePolicy(policy)
    if not minimum <= threshold:
        raise ValueError(f"minimum {minimum!r} is above threshold {threshold!r}")
    shown = f"{metric} {value:.2%}"
    needed = rows_needed(value, threshold) if interval is not None else None
    warning = None
    if interval is not None and interval[0] < threshold <= interval[1]:
        warning = (f"the 95% interval of {metric} [{interval[0]:.2%}, {interval[1]:.2%}] straddles the threshold "
                   f"{threshold:.2%}: the test set is too small to be sure")
        if needed is not None:
            warning += f": about {needed:,} rows would settle it"
    if policy is GatePolicy.POINT:
        if value < minimum:
            verdict, reason = Verdict.REJECTED, f"{shown} is below the minimum threshold {minimum:.2%}"
        elif value < threshold:
            verdict, reason = Verdict.HELD, (f"{shown} is below the deploy threshold {threshold:.2%} "
                                             f"(minimum {minimum:.2%})")
        else:
            verdict, reason = Verdict.DEPLOY, f"{shown} meets the deploy threshold {threshold:.2%}"
        return GateDecision(decision=verdict, metric=metric, value=float(value), threshold=threshold,
                            minimum=minimum, interval=interval, reason=reason, warning=warning, policy=policy,
                            rows_needed=needed)
    if interval is None:
        raise PipelineError(f"gate_policy 'confident' needs the 95% interval of {metric!r}, which is known only "
                            f"for accuracy: set gate_metric=accuracy or gate_policy=point")
    low, high = interval
    span = f"95% interval [{low:.2%}, {high:.2%}]"
    if low >= threshold:
        verdict, reason = Verdict.DEPLOY, (f"{shown}: the lower end of its {span} reaches the deploy threshold "
                                           f"{threshold:.2%}")
    elif high < minimum:
        verdict, reason = Verdict.REJECTED, (f"{shown}: the upper end of its {span} is below the minimum threshold "
                                             f"{minimum:.2%}")
    else:
        verdict = Verdict.HELD
        reason = (f"not enough evidence: {shown} with {span}; deploying needs the lower end to reach "
                  f"{threshold:.2%}, rejecting needs the upper end below {minimum:.2%}")
        if needed is not None:
            reason += f" (about {needed:,} rows at this {metric} would settle it)"
    return GateDecision(decision=verdict, metric=metric, value=float(value), threshold=threshold, minimum=minimum,
                        interval=interval, reason=reason, warning=warning, policy=policy, rows_needed=needed)
