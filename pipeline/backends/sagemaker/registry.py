"""SageMaker's Model Registry: every training job a model package, its approval mirrored both ways.

A job is registered when it is trained, in the model package group named after ``model_name_prefix``, as
``PendingManualApproval``, with its model's S3 URI and sha256 and its metrics as customer metadata. ``approve``
and ``reject`` set ``ModelApprovalStatus`` with the reason as ``ApprovalDescription``. ``update_model_package``
replaces the status, the description and the customer metadata with whatever it is sent, so every update
sends all three. An approval given in SageMaker itself (Studio, another tool) is read back with the identity
SageMaker reports (``LastModifiedBy``) and counts where ``approval_required`` asks.
"""
from __future__ import annotations

import logging
from typing import Any

from pipeline.backends.sagemaker.errors import not_found
from pipeline.backends.sagemaker.session import AwsSession
from pipeline.training.jobs import TrainingJob

log = logging.getLogger(__name__)

TO_REGISTRY = {"approved": "Approved", "rejected": "Rejected", "pending": "PendingManualApproval"}
FROM_REGISTRY = {value: key for key, value in TO_REGISTRY.items()}


class ModelRegistry:
    def __init__(self, aws: AwsSession, group: str) -> None:
        self.aws = aws
        self.group = group

    def register(self, name: str, model_sha256: str, metrics: dict[str, Any], model_data_url: str, image: str) -> str:
        """A trained job as a model package awaiting approval; its ARN (recorded in the job's manifest)."""
        sagemaker = self.aws.sagemaker
        try:
            sagemaker.describe_model_package_group(ModelPackageGroupName=self.group)
        except Exception as err:  # ClientError: not there yet
            if not not_found(err):
                raise self.aws.error(err, f"read model package group {self.group}", "sagemaker") from None
            self.aws.call(sagemaker, "create_model_package_group", f"create model package group {self.group}",
                          ModelPackageGroupName=self.group,
                          ModelPackageGroupDescription="Training jobs of mlops-pipeline, by model_name_prefix")
        package = self.aws.call(
            sagemaker, "create_model_package", f"register training job {name}",
            ModelPackageGroupName=self.group, ModelPackageDescription=f"training job {name}",
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={"Containers": [{"Image": image, "ModelDataUrl": model_data_url}],
                                    "SupportedContentTypes": ["text/csv", "application/json"],
                                    "SupportedResponseMIMETypes": ["application/json", "text/csv"]},
            CustomerMetadataProperties=self._metadata(name, model_sha256, metrics))
        return str(package["ModelPackageArn"])

    @staticmethod
    def _metadata(name: str, model_sha256: str, metrics: dict[str, Any], **extra: str) -> dict[str, str]:
        numbers = {key: f"{value:.6g}" for key, value in metrics.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        return {"training_job": name, "model_sha256": model_sha256,
                **{f"metric_{key}"[:256]: value for key, value in list(numbers.items())[:20]}, **extra}

    def set_status(self, job: TrainingJob, status: str, by: str, reason: str) -> None:
        arn = job.manifest.get("model_package_arn")
        if not arn:
            log.warning("training job %s is not in the Model Registry (trained before jobs were registered): its "
                        "approval is recorded in the audit trail only", job.name)
            return
        self.aws.call(self.aws.sagemaker, "update_model_package", f"set the approval of {job.name}",
                      ModelPackageArn=arn, ModelApprovalStatus=TO_REGISTRY[status],
                      ApprovalDescription=f"{reason} (by {by})"[:1024],
                      CustomerMetadataProperties=self._metadata(job.name, job.model_sha256, job.metrics,
                                                                decided_by=by[:256]))

    def decision(self, job: TrainingJob) -> dict[str, Any] | None:
        """What the registry says of the job now: status, who set it (as SageMaker reports them), when, why."""
        arn = job.manifest.get("model_package_arn")
        if not arn:
            return None
        package = self.aws.call(self.aws.sagemaker, "describe_model_package", f"read the approval of {job.name}",
                                ModelPackageName=arn)
        status = FROM_REGISTRY.get(str(package.get("ModelApprovalStatus")), "pending")
        if status == "pending":
            return None
        identity = package.get("LastModifiedBy") or {}
        by = identity.get("UserProfileName") or (identity.get("IamIdentity") or {}).get("Arn") or \
            package.get("CustomerMetadataProperties", {}).get("decided_by") or "someone in SageMaker"
        when = package.get("LastModifiedTime") or package.get("CreationTime")
        return {"status": status, "by": str(by), "at": when.isoformat() if hasattr(when, "isoformat") else None,
                "reason": package.get("ApprovalDescription") or "(no description)"}
