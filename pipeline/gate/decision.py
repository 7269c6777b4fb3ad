"""What the gate decided, as one type from the rule to the results JSON.

``GateDecision`` is made by the gate's rules (``pipeline.gate.rules``), kept in the run's record,
written as the results' ``gate`` and read back from a results file by the reports and ``runs show``:
its fields are the JSON's keys. ``ChampionComparison`` is the comparison with the serving version it
carries (``gate.champion``).
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from pipeline.outcomes import Verdict


class GatePolicy(StrEnum):
    POINT = "point"  # metric >= threshold deploys, below minimum rejected, between held
    CONFIDENT = "confident"  # the whole 95% interval decides; the rest is "not enough evidence"


class ChampionPolicy(StrEnum):
    NOT_WORSE = "not_worse"  # held when the candidate is below the champion by more than the margin
    BETTER = "better"  # deploy only when the candidate beats the champion by more than the margin, significantly
    OFF = "off"  # no comparison


class ComparisonStatus(StrEnum):
    COMPARED = "compared"
    SKIPPED = "skipped"


class ContractStatus(StrEnum):
    UNCHANGED = "unchanged"  # the same inputs and labels as the serving version
    CHANGED = "changed"  # they differ: the candidate is held
    ALLOWED = "allowed"  # they differ, and --allow-contract-change said so for this run
    SKIPPED = "skipped"  # nothing serves: there is no contract to keep


class ApprovalStatus(StrEnum):
    APPROVED = "approved"  # a person let this model through (approve, or SageMaker's Model Registry)
    REJECTED = "rejected"  # a person refused it: never deployed
    PENDING = "pending"  # approval_required, and nobody has decided yet


class _Result(BaseModel):
    # Frozen: a decision is made once. Keys a newer tool added are ignored when an older results file
    # is read back (and ``deploys`` is worked out again, never read).
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ChampionComparison(_Result):
    """The candidate against the serving version, on the evaluation rows the champion never trained on."""

    status: ComparisonStatus
    policy: ChampionPolicy = ChampionPolicy.NOT_WORSE
    version: str | None = None  # None: nothing serves, so there is no champion
    metric: str = "accuracy"
    champion_value: float | None = None
    candidate_value: float | None = None
    rows_compared: int = 0
    rows_excluded: int = 0
    candidate_only_correct: int | None = None  # rows the candidate got right and the champion wrong
    champion_only_correct: int | None = None  # and the reverse
    p_value: float | None = None  # one-sided exact McNemar: the candidate is better
    difference: float | None = None  # candidate - champion
    difference_interval: tuple[float, float] | None = None  # 95%, Tango's score interval
    test: str = "none"  # which paired test ran, or "skipped: not paired"
    margin: float = 0.0
    alpha: float = 0.05
    holds: bool = False
    reason: str = ""


class ContractCheck(_Result):
    """The candidate's inputs and labels against the serving version's (``pipeline.gate.contract``)."""

    status: ContractStatus
    serving_version: str | None = None
    changes: list[str] = []  # what a client of the serving version would see change, one phrase each
    reason: str = ""

    @property
    def holds(self) -> bool:
        return self.status == ContractStatus.CHANGED


class Approval(_Result):
    """Who let a model through, when and why -- or refused it -- as the audit trail records it."""

    status: ApprovalStatus
    training_job: str
    model_sha256: str | None = None  # the model the person looked at: an approval names one model
    by: str | None = None
    at: str | None = None
    reason: str | None = None
    source: str = "cli"  # cli, or sagemaker (given in SageMaker's Model Registry)
    overrides_gate: bool = False  # the gate had held the model; the person deployed it anyway


class GateDecision(_Result):
    """The gate's decision on one model, the evidence it rests on, and the champion comparison beside it."""

    decision: Verdict
    metric: str
    value: float
    threshold: float
    minimum: float
    interval: tuple[float, float] | None = None
    reason: str
    warning: str | None = None
    policy: GatePolicy = GatePolicy.POINT
    rows_needed: int | None = None  # evaluation rows at which the interval's lower end would clear the threshold
    champion: ChampionComparison | None = None
    contract: ContractCheck | None = None
    approval: Approval | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deploys(self) -> bool:
        return self.decision == Verdict.DEPLOY

    @property
    def held_by_champion(self) -> bool:
        return self.champion is not None and self.champion.holds and self.decision == Verdict.HELD
