"""Inference code as the four SageMaker serving hooks.

SageMaker's scikit-learn container calls ``model_fn`` once per worker and then
``input_fn -> predict_fn -> output_fn`` per request; the local endpoint server
(``pipeline.serving``) calls the very same functions, so what is tested locally
is what runs on SageMaker. Like ``train.py`` this file imports only what the
container has.

Each error class carries the HTTP status it stands for (as in
aws/sagemaker-inference-toolkit), so a server can answer a client's mistake
with a 4xx instead of a 500.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any

import joblib
import numpy as np
import sklearn

MODEL_FILENAME = "model.joblib"
CSV = "text/csv"
JSON = "application/json"


class InferenceError(Exception):
    status_code = 500


class BadRequestError(InferenceError):
    """The request body is not rows of finite numbers of the right width."""

    status_code = 400


class UnsupportedContentTypeError(InferenceError):
    status_code = 415


class UnsupportedAcceptError(InferenceError):
    status_code = 406


def model_fn(model_dir: str) -> Any:
    """Load the fitted scikit-learn pipeline saved by ``train.py``."""
    # Rows arrive as bare numbers; the column names the model was fitted with do not apply.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    return joblib.load(os.path.join(model_dir, MODEL_FILENAME))


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def input_fn(input_data: bytes | str, content_type: str) -> np.ndarray:
    """Parse CSV rows or JSON (a list of rows, or ``{"instances": [...]}``) into a float matrix."""
    media_type = _media_type(content_type)
    if media_type not in (CSV, JSON):
        raise UnsupportedContentTypeError(
            f"unsupported content type {content_type!r}: send text/csv or application/json"
        )
    try:
        text = input_data.decode("utf-8") if isinstance(input_data, (bytes, bytearray)) else input_data
    except UnicodeDecodeError:
        raise BadRequestError("request body is not UTF-8 text") from None
    if not text.strip():
        raise BadRequestError("empty request body: send at least one row")
    try:
        if media_type == CSV:
            rows = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
        else:
            payload = json.loads(text)
            if isinstance(payload, dict):
                if "instances" not in payload:
                    raise BadRequestError('JSON object must have an "instances" list')
                payload = payload["instances"]
            if not isinstance(payload, list) or not payload:
                raise BadRequestError("JSON body must be a non-empty list of rows")
            if not isinstance(payload[0], list):
                payload = [payload]
            if any(isinstance(value, (bool, str)) or value is None for row in payload for value in row):
                raise ValueError("values must be numbers")
            rows = np.asarray(payload, dtype=np.float64)
    except BadRequestError:
        raise
    except json.JSONDecodeError as err:
        raise BadRequestError(f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except (ValueError, TypeError, OverflowError) as err:
        raise BadRequestError(f"rows must be numbers only, all of the same length: {err}") from None
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise BadRequestError("expected a non-empty list of rows")
    if not np.isfinite(rows).all():
        raise BadRequestError("rows must not contain NaN or infinity")
    return rows


def predict_fn(input_data: np.ndarray, model: Any) -> np.ndarray:
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and input_data.shape[1] != expected:
        raise BadRequestError(f"each row must have {expected} features, got {input_data.shape[1]}")
    with sklearn.config_context(assume_finite=True):  # input_fn has already checked
        return model.predict(input_data)


_ACCEPTABLE = {"": JSON, "*/*": JSON, JSON: JSON, "application/*": JSON, CSV: CSV, "text/*": CSV}


def _negotiate(accept: str | None) -> str | None:
    """The best of JSON and CSV for an Accept header such as ``text/csv, application/json;q=0.5``."""
    if not (accept or "").strip():
        return JSON
    offers = []
    for position, item in enumerate(accept.split(",")):
        media_type, *params = [part.strip() for part in item.split(";")]
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media_type.lower() in _ACCEPTABLE:
            offers.append((-quality, position, _ACCEPTABLE[media_type.lower()]))
    return min(offers)[2] if offers else None


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[str, str]:
    """Serialise predictions as JSON (``{"predictions": [...]}``) or CSV, one per line."""
    media_type = _negotiate(accept)
    values = prediction.tolist()
    if media_type == JSON:
        return json.dumps({"predictions": values}), JSON
    if media_type == CSV:
        return "\n".join(str(value) for value in values) + "\n", CSV
    raise UnsupportedAcceptError(f"unsupported Accept {accept!r}: ask for application/json or text/csv")
