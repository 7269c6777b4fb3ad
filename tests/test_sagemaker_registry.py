"""SageMaker's Model Registry mirrors approvals both ways, against moto (which implements its calls)."""
from __future__ import annotations

from click.testing import CliRunner

from pipeline.cli import cli
from tests.aws_fixtures import ROLE, sm


def _trained(pipeline) -> tuple[str, str]:
    result = pipeline("--role-arn", ROLE, "--mode", "training", "--approval-required")
    assert result.exit_code == 0, result.output
    job = pipeline.results()["summary"]["training_job"]
    packages = sm().list_model_packages(ModelPackageGroupName="iris-classifier")["ModelPackageSummaryList"]
    assert len(packages) == 1 and packages[0]["ModelApprovalStatus"] == "PendingManualApproval"
    return job, packages[0]["ModelPackageArn"]


def test_every_training_job_is_registered_and_approve_sets_its_status_with_the_reason(pipeline, sagemaker):
    job, arn = _trained(pipeline)
    package = sm().describe_model_package(ModelPackageName=arn)
    assert package["CustomerMetadataProperties"]["training_job"] == job
    assert len(package["CustomerMetadataProperties"]["model_sha256"]) == 64
    result = CliRunner().invoke(cli, ["approve", job, "--reason", "looked at it", "--by", "alice"])
    assert result.exit_code == 0, result.output
    package = sm().describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Approved" and package["ApprovalDescription"] == "looked at it (by alice)"
    assert package["CustomerMetadataProperties"]["training_job"] == job  # sent again with the status, never lost
    deployed = pipeline("--mode", "deployment", "--training-job", job, "--approval-required")
    assert deployed.exit_code == 0, deployed.output
    assert pipeline.results()["gate"]["approval"]["by"] == "alice"


def test_an_approval_given_in_sagemaker_itself_counts_and_is_recorded(pipeline, sagemaker):
    job, arn = _trained(pipeline)
    sm().update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved",
                              ApprovalDescription="approved in Studio",
                              CustomerMetadataProperties={"training_job": job})
    deployed = pipeline("--mode", "deployment", "--training-job", job, "--approval-required")
    assert deployed.exit_code == 0, deployed.output
    approval = pipeline.results()["gate"]["approval"]
    assert approval["source"] == "sagemaker" and approval["reason"] == "approved in Studio"
    history = CliRunner().invoke(cli, ["history"]).output
    assert f"approved    {job}" in history


def test_a_rejection_in_sagemaker_keeps_the_model_from_deploying(pipeline, sagemaker):
    job, arn = _trained(pipeline)
    sm().update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected", ApprovalDescription="no",
                              CustomerMetadataProperties={"training_job": job})
    assert pipeline("--mode", "deployment", "--training-job", job).exit_code == 3
    assert pipeline.results()["gate"]["reason"].startswith("rejected by ")
