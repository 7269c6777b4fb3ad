"""What an endpoint and its clients agree on, beyond SageMaker's ``/ping`` and ``/invocations``.

Kept apart from the server (``pipeline.serving.app``) and the clients (``pipeline.serving.client``)
so each imports only these names, not the other's dependencies.
"""
from __future__ import annotations

import hashlib

VERSION_HEADER = "X-Model-Version"  # the version that answered, on every response
SHA_HEADER = "X-Model-Sha256"  # the sha256 of the model file that answered
INFERENCE_ID_HEADER = "X-Inference-Id"  # on every answered invocation: the key of its captured record
# The client's own inference id, as boto3's ``invoke_endpoint(InferenceId=...)`` sends it: the endpoint answers
# with it (``INFERENCE_ID_HEADER``) and captures the request under it, as SageMaker's capture records it.
SAGEMAKER_INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
SAGEMAKER_RUNTIME_ROUTE = "/endpoints/{name}/invocations"  # the path boto3's sagemaker-runtime client posts to
# SageMaker's runtime answers a container's refusal with this status (a ``ModelError``), the container's own
# status carried as ``OriginalStatusCode``.
MODEL_ERROR_STATUS = 424
# On the pipeline's own endpoint-test requests (health, parity, performance, robustness): the endpoint
# answers and counts them, but never captures them, so ``monitor`` judges only live traffic.
TEST_TRAFFIC_HEADER = "X-Mlops-Test-Traffic"
# SageMaker's runtime forwards no header of ours to its capture; it records the client's ``InferenceId``.
# The pipeline's own test requests there carry an id with this prefix, and ``monitor`` skips them.
TEST_INFERENCE_ID_PREFIX = "mlops-test-traffic-"
POINTER_ENV = "MLOPS_MODEL_POINTER"  # the endpoint's pointer file (current.json): the version its workers load
POINTER_WAIT_ENV = "MLOPS_POINTER_WAIT"  # seconds a prestarted server waits for its pointer
TOKEN_ENV = "MLOPS_ENDPOINT_TOKEN"  # the bearer token a deployment sets; servers keep only its hash


def token_sha256(token: str) -> str:
    """What the endpoint keeps of its token (``auth.json``) and compares a request's token with."""
    return hashlib.sha256(token.encode()).hexdigest()
