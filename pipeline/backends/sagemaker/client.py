"""The endpoint tests' client for a SageMaker endpoint: health from ``describe_endpoint``, answers from
``sagemaker-runtime``, both as the ``Reply`` an HTTP endpoint gives."""
from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.backends.sagemaker.errors import not_found
from pipeline.backends.sagemaker.session import AwsSession
from pipeline.errors import ExitCode
from pipeline.serving.client import VERSION_HEADER, EndpointDown, Reply
from pipeline.serving.contract import TEST_INFERENCE_ID_PREFIX

# Endpoint states that end by themselves; anything else is where an endpoint stays.
TRANSITIONAL = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


class SageMakerEndpointClient:
    """What the endpoint tests need, over ``describe_endpoint`` and ``sagemaker-runtime invoke_endpoint``.

    ``ping`` is 200 while the endpoint is ``InService`` and names its endpoint config (the version) in
    ``X-Model-Version``; ``invoke`` names the production variant that answered (also the version). A
    container error (``ModelError``) becomes a reply with the container's own status. boto3 clients are
    thread-safe, so the performance check may call ``invoke`` from several threads. Every invocation is
    the pipeline's own test traffic: its ``InferenceId`` (what SageMaker's capture records) says so, and
    ``monitor`` skips it.

    With ``target_variant`` (a SHADOW candidate beside the serving version, at weight 0) every invocation names
    it in ``TargetVariant``, and ``ping`` names it while the endpoint holds it as a production variant.
    """

    def __init__(self, aws: AwsSession, endpoint_name: str, url: str, target_variant: str | None = None) -> None:
        self.aws = aws
        self.endpoint_name = endpoint_name
        self.url = url
        self.target_variant = target_variant
        self.runtime = aws.runtime  # created here, once: the performance check invokes from threads

    def _version(self, description: dict[str, Any]) -> str:
        """The version this client reaches: its target variant while the endpoint has it, else the only
        production variant (variants are named after their versions), else the endpoint config's name."""
        variants = [variant.get("VariantName") for variant in description.get("ProductionVariants") or []]
        if self.target_variant and self.target_variant in variants:
            return self.target_variant
        if len(variants) == 1 and variants[0]:
            return str(variants[0])
        return str(description.get("EndpointConfigName", ""))

    def ping(self) -> Reply:
        try:
            description = self.aws.sagemaker.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError as err:
            if not_found(err):
                raise EndpointDown(f"SageMaker endpoint {self.endpoint_name!r} does not exist in "
                                   f"{self.aws.region}") from None
            problem = self.aws.error(err, f"describe endpoint {self.endpoint_name}")
            if problem.exit_code == ExitCode.USAGE:  # no permission, bad credentials: waiting cannot help
                raise EndpointDown(problem.message) from None
            raise problem from None
        except BotoCoreError as err:
            raise self.aws.error(err, f"describe endpoint {self.endpoint_name}") from None
        status = description["EndpointStatus"]
        headers = {VERSION_HEADER: self._version(description)}
        if status == "InService":
            return Reply(200, headers, b"")
        if status not in TRANSITIONAL:  # Failed, UpdateRollbackFailed, OutOfService: it will not heal
            raise EndpointDown(f"SageMaker endpoint {self.endpoint_name!r} is {status}: "
                               f"{description.get('FailureReason') or 'no reason given'}")
        return Reply(503, headers, status.encode())

    def invoke(self, body: bytes, content_type: str, accept: str = "application/json") -> Reply:
        try:
            target = {"TargetVariant": self.target_variant} if self.target_variant else {}
            answer = self.runtime.invoke_endpoint(EndpointName=self.endpoint_name, Body=body,
                                                  ContentType=content_type, Accept=accept,
                                                  InferenceId=f"{TEST_INFERENCE_ID_PREFIX}{uuid.uuid4().hex}", **target)
        except ClientError as err:
            error = err.response.get("Error", {})
            code = str(error.get("Code") or "")
            if code == "ModelError":  # the container answered, with a status of its own
                status = int(err.response.get("OriginalStatusCode") or 500)
                text = err.response.get("OriginalMessage") or error.get("Message") or ""
                return Reply(status, {"X-Amzn-ErrorType": code}, str(text).encode())
            if not_found(err):
                raise EndpointDown(f"SageMaker endpoint {self.endpoint_name!r} does not exist in "
                                   f"{self.aws.region}") from None
            status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
            return Reply(status, {"X-Amzn-ErrorType": code}, str(error.get("Message") or "").encode())
        headers = {"Content-Type": answer.get("ContentType") or ""}
        if answer.get("InvokedProductionVariant"):
            headers[VERSION_HEADER] = answer["InvokedProductionVariant"]
        return Reply(200, headers, answer["Body"].read())
