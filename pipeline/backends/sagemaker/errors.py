"""AWS errors as one-line ``PipelineError`` messages that say what failed and what to change.

Exit 2 when the fix is the user's (credentials, permissions, quotas, a value AWS
rejected), 1 when it is not (AWS unreachable, throttled past the retries, a
container error). No message carries a credential: ``_scrub`` removes access key
ids by shape and the secrets of the environment by value.
"""
from __future__ import annotations

import re

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from pipeline.backends.base import DeploymentError
from pipeline.errors import ExitCode, PipelineError
from pipeline.redaction import scrub_known_secrets

_ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                  "Forbidden", "403"}
_BAD_CREDENTIALS = {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId",
                    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "AuthFailure",
                    "InvalidToken", "RequestExpired"}
_THROTTLING = {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
               "TooManyRequestsException", "RequestLimitExceeded", "SlowDown", "PriorRequestNotComplete",
               "ProvisionedThroughputExceededException", "BandwidthLimitExceeded"}
_VALIDATION = {"ValidationException", "ValidationError", "InvalidParameterValue", "InvalidParameterException",
               "InvalidRequest"}
# IAM actions of the S3 operations we call (the API name is not always the permission's).
_S3_PERMISSIONS = {"HeadBucket": "s3:ListBucket", "HeadObject": "s3:GetObject", "GetObject": "s3:GetObject",
                   "PutObject": "s3:PutObject", "CreateBucket": "s3:CreateBucket",
                   "ListObjectsV2": "s3:ListBucket"}
def shorten(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters: AWS messages can be long and span lines."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _validation_fix(message: str, region: str | None) -> str:
    lowered = message.lower()
    where = f" in {region}" if region else ""
    if "instance" in lowered and "type" in lowered or "instancetype" in lowered:
        return (f"choose an instance type SageMaker offers{where} for this use: --instance-type (endpoint) or "
                f"--set training_instance_type=... (training)")
    if "role" in lowered or "assume" in lowered:
        return ("check --role-arn: the role must exist in this account, trust sagemaker.amazonaws.com and "
                "allow S3 access to the bucket")
    if "already exist" in lowered or "must be unique" in lowered or "already in use" in lowered:
        return "the name is taken: change model_name_prefix or endpoint_prefix, or delete the old resource"
    if "bucket" in lowered or "s3" in lowered:
        return f"check s3_bucket: it must exist{where} and the role must be able to read and write it"
    if "image" in lowered or "ecr" in lowered:
        return "check sklearn_framework_version and aws_region"
    if "update in-progress" in lowered or "in progress" in lowered:
        return "another update of the endpoint is running: wait until it is InService and run again"
    return ("change the value the message names (instance_type, training_instance_type, instance_count, role_arn, "
            "aws_region, s3_bucket, traffic_routing, baking_period_minutes)")


def aws_error(err: Exception, action: str, service: str = "sagemaker", region: str | None = None) -> PipelineError:
    """One line saying what failed and what to change; exit 2 when the fix is the user's, else 1."""
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return PipelineError(f"cannot {action}: no AWS credentials found; run `aws configure` (or `aws sso login`), "
                             f"or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", ExitCode.USAGE)
    if isinstance(err, (EndpointConnectionError, ConnectTimeoutError)):
        return DeploymentError(f"cannot {action}: AWS is unreachable ({scrub_known_secrets(shorten(str(err), 200))}); "
                               f"check the network, the proxy and aws_region")
    if isinstance(err, ReadTimeoutError):
        return DeploymentError(f"cannot {action}: AWS did not answer in time; run again")
    if not isinstance(err, ClientError):
        return DeploymentError(f"cannot {action}: {type(err).__name__}: {scrub_known_secrets(shorten(str(err)))}")
    error = err.response.get("Error", {}) if isinstance(err.response, dict) else {}
    code = str(error.get("Code") or "")
    message = scrub_known_secrets(shorten(error.get("Message") or ""))
    operation = getattr(err, "operation_name", "") or ""
    if code in _ACCESS_DENIED:
        wanted = re.search(r"not authorized to perform:?\s*([\w-]+:[\w*-]+)", message)
        permission = wanted.group(1) if wanted else (
            _S3_PERMISSIONS.get(operation, f"s3:{operation}") if service == "s3" else f"{service}:{operation}")
        principal = re.search(r"User: (\S+)", message)
        who = f" to {principal.group(1)}" if principal else ""
        return PipelineError(
            f"cannot {action}: access denied, missing IAM permission {permission}; grant it{who} (for example attach "
            f"the AmazonSageMakerFullAccess policy, plus iam:PassRole on the SageMaker role)", ExitCode.USAGE)
    if code in _BAD_CREDENTIALS:
        return PipelineError(f"cannot {action}: AWS rejected the credentials ({code}); refresh them (`aws sso login`, "
                             f"`aws configure`) or check AWS_PROFILE", ExitCode.USAGE)
    if code in _THROTTLING:
        return DeploymentError(f"cannot {action}: AWS kept throttling the requests ({code}) after retries; run again "
                               f"later or raise the API rate quota in Service Quotas")
    if code == "ResourceLimitExceeded":
        return PipelineError(
            f"cannot {action}: an AWS account limit is reached ({message}); lower instance_count, choose another "
            f"instance type (--instance-type, training_instance_type), delete endpoints you no longer need "
            f"(--mode cleanup) or request a higher quota in Service Quotas (Amazon SageMaker)", ExitCode.USAGE)
    if code in _VALIDATION:
        return PipelineError(f"cannot {action}: AWS rejected the request ({message}); "
                             f"{_validation_fix(message, region)}", ExitCode.USAGE)
    if code == "ModelError":
        return DeploymentError(f"cannot {action}: the model container answered an error ({message})")
    return DeploymentError(f"cannot {action}: AWS {code or 'error'}: {message}")


class WaitTimeout(DeploymentError):
    """A SageMaker resource did not reach its end state within ``sagemaker_timeout_minutes``."""


def not_found(err: ClientError) -> bool:
    """The resource is gone (or never was): S3 says 404, SageMaker a ValidationException that says so."""
    error = err.response.get("Error", {})
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or "")
    if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound", "ResourceNotFound"):
        return True
    return code in _VALIDATION and bool(re.search(r"could not find|not found|does not exist", message, re.IGNORECASE))
