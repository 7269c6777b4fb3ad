"""Approvals: who let a model through, when and why -- the gate's rows, the setting, and the flow through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import PipelineConfig, load_config
from pipeline.gate.decision import Approval, ApprovalStatus, ContractCheck, ContractStatus
from pipeline.gate.rules import Gate
from pipeline.outcomes import Verdict
from pipeline.state.store import DeploymentStore

GOOD = {"accuracy": 0.97, "no_skill_accuracy": 0.34}
HELD = {"accuracy": 0.92, "no_skill_accuracy": 0.34}


def _approval(status: ApprovalStatus = ApprovalStatus.APPROVED) -> Approval:
    return Approval(status=status, training_job="job", model_sha256="abc", by="alice", reason="looked at it")


def _decide(metrics, approval=None, contract=None, explicit=False, **settings):
    return Gate(PipelineConfig(**settings), explicit_request=explicit).decide(metrics, None, None, contract, approval)


# --------------------------------------------------------------------------- the gate's rows
@pytest.mark.unit
def test_with_approval_required_a_passing_model_nobody_approved_waits():
    decision = _decide(GOOD, approval_required=True)
    assert decision.decision == Verdict.PENDING_APPROVAL and not decision.deploys
    assert "approve JOB" in decision.reason


@pytest.mark.unit
def test_deploying_an_unapproved_model_on_request_is_held_when_approval_is_required():
    assert _decide(GOOD, approval_required=True, explicit=True).decision == Verdict.HELD


@pytest.mark.unit
def test_an_approved_model_deploys_and_the_decision_carries_who_approved_it():
    decision = _decide(GOOD, _approval(), approval_required=True)
    assert decision.decision == Verdict.DEPLOY and decision.approval.by == "alice"


@pytest.mark.unit
def test_a_rejection_by_a_person_is_never_deployed_whatever_else_holds():
    decision = _decide(GOOD, _approval(ApprovalStatus.REJECTED))
    assert decision.decision == Verdict.REJECTED and decision.reason == "rejected by alice: looked at it"


@pytest.mark.unit
def test_an_approval_overrides_a_hold_by_the_threshold_and_says_so():
    decision = _decide(HELD, _approval())
    assert decision.decision == Verdict.DEPLOY and "overriding the gate" in decision.reason


@pytest.mark.unit
def test_an_approval_overrides_neither_the_minimum_nor_a_contract_change():
    assert _decide({"accuracy": 0.5}, _approval()).decision == Verdict.REJECTED
    changed = ContractCheck(status=ContractStatus.CHANGED, changes=["labels removed: [2]"], reason="changed")
    assert _decide(GOOD, _approval(), contract=changed).decision == Verdict.HELD


@pytest.mark.unit
@pytest.mark.parametrize(("how", "source"), [
    ("file", "file:config.json"), ("env", "env:APPROVAL_REQUIRED"), ("flag", "flag:--approval-required"),
    ("set", "set:approval_required"),
])
def test_approval_required_arrives_from_each_source(tmp_path, monkeypatch, how, source):
    monkeypatch.chdir(tmp_path)
    Path("config.json").write_text(json.dumps({"approval_required": True} if how == "file" else {}))
    config, sources = load_config("config.json", {"APPROVAL_REQUIRED": "yes"} if how == "env" else {},
                                  {"approval_required": True} if how == "flag" else {},
                                  settings=["approval_required=true"] if how == "set" else [])
    assert config.approval_required is True and sources["approval_required"] == source


# --------------------------------------------------------------------------- the flow, through the CLI
def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _train(pipeline, *settings: str) -> str:
    result = pipeline("--approval-required", *settings)
    assert result.exit_code == 0, result.output
    assert pipeline.results()["gate"]["decision"] == "pending_approval"
    return pipeline.results()["summary"]["training_job"]


def test_a_model_waits_is_approved_by_a_named_person_and_then_deploys(pipeline):
    job = _train(pipeline)
    assert pipeline.results()["phases"].get("deployment") is None
    assert "(awaits `approve`)" in _invoke("jobs").output
    approved = _invoke("approve", job, "--reason", "read the report", "--by", "alice")
    assert approved.exit_code == 0 and "approved by alice" in approved.output
    result = pipeline("--mode", "deployment", "--training-job", job, "--approval-required",
                      "--dotenv-file", "deploy.env")
    assert result.exit_code == 0, result.output
    results = pipeline.results()
    assert results["gate"]["approval"]["by"] == "alice" and results["summary"]["deployment_occurred"]
    assert "MLOPS_APPROVED_BY=alice" in Path("deploy.env").read_text()
    version = results["summary"]["endpoint_version"]
    answer = _invoke("history", "--endpoint-name", "iris-model", "--at", "2999-01-01T00:00:00")
    assert answer.output.startswith(f"{version} (approved by alice at ")
    assert "approved    " + job in _invoke("history").output


def test_an_unapproved_model_is_not_deployed_on_request(pipeline):
    job = _train(pipeline)
    result = pipeline("--mode", "deployment", "--training-job", job, "--approval-required")
    assert result.exit_code == 3 and "nobody has approved this model" in pipeline.results()["gate"]["reason"]


def test_a_rejected_model_is_refused_with_the_person_s_reason(pipeline, monkeypatch):
    job = _train(pipeline)
    monkeypatch.setenv("GITLAB_USER_LOGIN", "ci-carol")
    assert _invoke("reject", job, "--reason", "bad data week").exit_code == 0
    result = pipeline("--mode", "deployment", "--training-job", job)
    assert result.exit_code == 3
    assert pipeline.results()["gate"]["reason"] == "rejected by ci-carol: bad data week"


def test_a_model_changed_after_its_approval_is_refused(pipeline):
    job = _train(pipeline)
    assert _invoke("approve", job, "--reason", "ok", "--by", "alice").exit_code == 0
    model = Path(f".mlops/jobs/{job}/model/model.joblib")
    model.write_bytes(model.read_bytes() + b"changed")
    result = pipeline("--mode", "deployment", "--training-job", job, "--approval-required")
    assert result.exit_code != 0 and "changed since training" in pipeline.results()["error"]["message"]
    assert DeploymentStore(".mlops").endpoints() == []


def test_a_model_the_gate_rejected_cannot_be_approved(pipeline):
    # iris at test_size 0.5 scores 96%: below a minimum of 99% it is rejected
    assert pipeline("--accuracy-threshold", "0.995", "--minimum-accuracy", "0.99", "--mode", "training",
                    "--set", "test_size=0.5").exit_code == 3
    assert pipeline.results()["gate"]["decision"] == "rejected"
    refused = _invoke("approve", pipeline.results()["summary"]["training_job"], "--reason", "please")
    assert refused.exit_code == 3 and "never approved or deployed" in refused.output


def test_approving_a_model_the_gate_held_overrides_the_gate_and_says_so(pipeline):
    # 96% is above a minimum of 90% and below a threshold of 99%: held
    assert pipeline("--accuracy-threshold", "0.99", "--mode", "training", "--set", "test_size=0.5").exit_code == 3
    assert pipeline.results()["gate"]["decision"] == "held"
    approved = _invoke("approve", pipeline.results()["summary"]["training_job"], "--reason", "good enough",
                       "--by", "bob")
    assert approved.exit_code == 0 and "it overrides the gate" in approved.output
