"""The results JSON as types: what CI reads, and what the reports and the console summary are drawn from.

``RunRecord.to_json`` writes the document; ``Results.model_validate`` reads one back (from the run
that just finished, or from a results file written earlier), so the dotenv, JUnit and metrics
reports and the console summary read attributes of one documented shape, never ``.get()`` chains.
Every field a run may not reach is optional, so a document of a run that stopped early still reads.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.gate.decision import GateDecision


class _Document(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Summary(_Document):
    training_accuracy: float | None = None
    training_job: str | None = None
    deployment_occurred: bool = False
    endpoint_name: str | None = None
    endpoint_url: str | None = None
    endpoint_version: str | None = None
    testing_passed: bool | None = None


class TrainingPhase(_Document):
    pipeline_status: str | None = None
    training_job: str | None = None
    model_sha256: str | None = None
    data_fingerprint: dict[str, Any] | None = None
    duration_seconds: float | None = None
    evaluation_results: dict[str, Any] = Field(default_factory=dict)


class DeploymentResults(_Document):
    status: str | None = None
    final_state: str | None = None
    endpoint_name: str | None = None
    endpoint_url: str | None = None
    version: str | None = None
    previous_version: str | None = None
    serving_version: str | None = None
    training_job: str | None = None
    deployment_id: int | None = None
    deployment_duration: float | None = None
    reason: str | None = None
    detail: str | None = None


class DeploymentPhase(_Document):
    pipeline_status: str | None = None
    deployment_results: DeploymentResults = Field(default_factory=DeploymentResults)


class TestSummary(_Document):
    health_passed: bool | None = None
    prediction_accuracy: float | None = None
    parity_mismatches: int | None = None
    avg_latency_ms: float | None = None
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    throughput_rps: float | None = None
    performance_success_rate: float | None = None
    robustness_passed: bool | None = None


class TestingPhase(_Document):
    overall_status: str | None = None
    test_summary: TestSummary = Field(default_factory=TestSummary)
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)


class BakeInterval(_Document):
    interval: int
    mode: str  # split | shadow
    candidate_percent: int
    seconds: float
    verdict: str  # pass | breach | insufficient_traffic
    reason: str
    metric: str | None = None
    candidate_value: float | None = None
    limit: float | None = None
    serving: dict[str, Any] = Field(default_factory=dict)  # requests, errors, error_rate, p95_ms
    candidate: dict[str, Any] = Field(default_factory=dict)
    compared_rows: int = 0
    agreeing_rows: int = 0
    agreement: float | None = None


class RolloutPhase(_Document):
    traffic_routing: str
    baking_seconds: float
    outcome: str  # promote | breach | insufficient_traffic | interrupted
    reason: str | None = None
    promoted_without_verdict: bool = False
    intervals: list[BakeInterval] = Field(default_factory=list)


class Phases(_Document):
    training: TrainingPhase | None = None
    deployment: DeploymentPhase | None = None
    testing: TestingPhase | None = None
    rollout: RolloutPhase | None = None
    cleanup: dict[str, Any] | None = None


class Rollback(_Document):
    performed: bool | None = None
    final_state: str | None = None
    reason: str | None = None
    serving_version: str | None = None
    detail: str | None = None


class Error(_Document):
    message: str | None = None
    exit_code: int | None = None
    hint: str | None = None


class Results(_Document):
    run_id: str | None = None
    mode: str = "full"
    backend: str | None = None
    pipeline_status: str | None = None
    started_at: str | None = None
    summary: Summary = Field(default_factory=Summary)
    phases: Phases = Field(default_factory=Phases)
    gate: GateDecision | None = None
    rollback: Rollback | None = None
    error: Error | None = None
    resume_command: str | None = None
    log_file: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    config_sources: dict[str, str] = Field(default_factory=dict)
    reconciled: list[dict[str, Any]] | None = None
    exit_code: int | None = None
    finished_at: str | None = None
    total_duration_seconds: float | None = None
    notifications: list[dict[str, Any]] = Field(default_factory=list)
    results_file: str | None = None

    @property
    def deployment(self) -> DeploymentResults | None:
        return self.phases.deployment.deployment_results if self.phases.deployment else None

    @property
    def test_summary(self) -> TestSummary:
        return self.phases.testing.test_summary if self.phases.testing else TestSummary()

    @property
    def evaluation(self) -> dict[str, Any]:
        return self.phases.training.evaluation_results if self.phases.training else {}
