"""The program SageMaker serves with (``SAGEMAKER_PROGRAM``): the hooks of ``inference.py`` behind ``transform_fn``.

Why not serve ``inference.py`` directly: the scikit-learn container (single-model
endpoints: gunicorn + ``sagemaker_containers`` ``Worker``/``Transformer``) wraps
every user hook in ``error_wrapper``, which re-raises any exception as its own
``ClientError``; Flask then answers 500, whatever ``status_code`` the error
carries. Only the *result* of a hook can set the status: a ``(body,
content_type)`` tuple becomes a 200 response, a Flask/werkzeug response object
is sent as it is, status included. So ``transform_fn`` below runs ``input_fn ->
predict_fn -> output_fn`` and answers an ``inference.InferenceError`` with a
response of the error's own status (400, 406, 415) and a JSON body, which
SageMaker passes on as a ``ModelError`` with that ``OriginalStatusCode``. Any
other exception still propagates: the container answers 500, as it should for
a fault of ours.

Probabilities and named columns need nothing here: the switch for probabilities
is a parameter of the Accept header (``application/json; probabilities=true``),
which SageMaker passes on and ``output_fn`` reads, and the input schema comes
with the model (``input_schema.json`` in ``model.tar.gz``, read by ``model_fn``).

This module must define no ``input_fn``, ``predict_fn`` or ``output_fn``: the
container refuses a user module that has them together with ``transform_fn``.
It imports only ``inference`` (and Flask, which the container has, when
answering an error), so like ``train.py`` it runs without the ``pipeline``
package.
"""
from __future__ import annotations

from typing import Any

if __package__:  # imported as pipeline.container.serve
    from . import inference
else:  # in the container: the source dir's files are top-level modules
    import inference

model_fn = inference.model_fn

ERROR_CONTENT_TYPE = "application/json"


def transform_fn(model: Any, request_body: bytes | str, content_type: str, accept: str) -> Any:
    """Predictions as ``(body, content_type)``; a client's mistake as a response with its 4xx status."""
    try:
        rows = inference.input_fn(request_body, content_type)
        prediction = inference.predict_fn(rows, model)
        return inference.output_fn(prediction, accept)
    except inference.InferenceError as err:
        return error_response(err.status_code, str(err), type(err).__name__)
    except UnicodeDecodeError:  # a body sent as bytes (e.g. "text/csv; charset=...") that is not UTF-8
        return error_response(400, "request body is not UTF-8 text", "BadRequestError")


def error_response(status: int, message: str, error: str) -> Any:
    """A Flask response (werkzeug's where Flask is missing): the container sends it as it is."""
    try:
        from flask import Response
    except ImportError:
        from werkzeug.wrappers import Response
    return Response(inference.error_body(status, message, error), status=status, mimetype=ERROR_CONTENT_TYPE)
