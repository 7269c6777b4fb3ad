"""The errors the serving hooks raise, each carrying the HTTP status it stands for (as in
aws/sagemaker-inference-toolkit), so a server answers a client's mistake with a 4xx instead of a 500.

Shipped to SageMaker's container with the hooks: standard library only.
"""
from __future__ import annotations

import json


class InferenceError(Exception):
    status_code = 500


class BadRequestError(InferenceError):
    """The request body is not rows of finite numbers of the right width."""

    status_code = 400


class UnsupportedContentTypeError(InferenceError):
    status_code = 415


class UnsupportedAcceptError(InferenceError):
    status_code = 406


def error_body(status: int, message: str, error: str) -> str:
    """The JSON body of an error the hooks raised, as the SageMaker container answers it (``serve.py``), and
    as the local endpoint quotes it as a ``ModelError``'s ``OriginalMessage``."""
    return json.dumps({"error": error, "message": message, "status": status})


class ModelIntegrityError(InferenceError):
    """The model file is not the one recorded at training. Unpickling runs code, so it is never loaded."""
