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

import csv
import io
import json
import os
import warnings
import weakref
from typing import Any, Callable

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
    model = joblib.load(os.path.join(model_dir, MODEL_FILENAME))
    try:
        _FAST_PREDICT[model] = _verified(model, _compile(model))
    except TypeError:  # an object that cannot be weakly referenced: scikit-learn's predict it is
        pass
    return model


# Fast paths for the fitted pipelines train.py builds: StandardScaler followed by
# LogisticRegression or RandomForestClassifier. They do scikit-learn's own predict
# arithmetic -- the same numpy operations in the same order, so the same answers bit for
# bit -- without its per-call input validation, which input_fn has already done and which
# costs ~250 us per call in scikit-learn 1.9 (some 25 times the arithmetic for one row).
# A fast path is used only after it gave exactly model.predict's answers on probe rows.
_FAST_PREDICT: "weakref.WeakKeyDictionary[Any, Callable[[np.ndarray], np.ndarray] | None]" = \
    weakref.WeakKeyDictionary()


def _compile(model: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if type(model) is not Pipeline or len(model.steps) != 2 or type(model.steps[0][1]) is not StandardScaler:
        return None
    scaler, estimator = model.steps[0][1], model.steps[1][1]
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    classes = estimator.classes_

    def scaled(rows: np.ndarray) -> np.ndarray:
        rows = np.array(rows, dtype=np.float64, copy=True)  # StandardScaler.transform works on a copy
        if mean is not None:
            rows -= mean
        if scale is not None:
            rows /= scale
        return rows

    if type(estimator) is LogisticRegression:
        coef_t, intercept = estimator.coef_.T, estimator.intercept_

        def predict_linear(rows: np.ndarray) -> np.ndarray:
            scores = scaled(rows) @ coef_t + intercept  # LinearClassifierMixin.decision_function
            if scores.shape[1] == 1:
                return classes.take((scores[:, 0] > 0).astype(np.intp), axis=0)
            return classes.take(scores.argmax(axis=1), axis=0)

        return predict_linear
    if type(estimator) is RandomForestClassifier and estimator.n_outputs_ == 1 and estimator.n_jobs in (None, 1):
        trees = [tree.tree_ for tree in estimator.estimators_]
        n_classes = int(estimator.n_classes_)

        def predict_forest(rows: np.ndarray) -> np.ndarray:
            matrix = np.asarray(scaled(rows), dtype=np.float32)  # trees predict on float32, as the forest does
            proba = np.zeros((matrix.shape[0], n_classes), dtype=np.float64)
            for tree in trees:  # ForestClassifier.predict_proba, summed in the same (sequential) order
                proba += tree.predict(matrix)[:, :n_classes]
            proba /= len(trees)
            return classes.take(proba.argmax(axis=1), axis=0)

        return predict_forest
    return None


def _verified(model: Any, fast: Callable[[np.ndarray], np.ndarray] | None) -> Callable[[np.ndarray], np.ndarray] | None:
    if fast is None:
        return None
    width = int(getattr(model, "n_features_in_", 0) or 0)
    if width <= 0:
        return None
    generator = np.random.default_rng(0)
    scaler = model.steps[0][1]
    center = getattr(scaler, "mean_", None)
    spread = getattr(scaler, "scale_", None)
    probe = generator.standard_normal((512, width)) * (1.0 if spread is None else spread) * 2.0 + \
        (0.0 if center is None else center)
    try:
        with sklearn.config_context(assume_finite=True):
            expected = model.predict(probe)
        same = all(np.array_equal(fast(probe[i:i + size]), expected[i:i + size])
                   for size in (1, 512) for i in range(0, 512 if size == 512 else 16, size))
    except Exception:  # noqa: BLE001 -- any surprise: keep scikit-learn's own predict
        return None
    return fast if same else None


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


# Above this size a CSV body is parsed with pandas' C parser, 2x faster than np.loadtxt per
# row (about 740,000 against 350,000 rows/s of 20 features here); below it np.loadtxt's
# lower fixed cost per call wins. pandas is already imported with scikit-learn.
_PANDAS_CSV_BYTES = 64 * 1024


def _fast_csv(input_data: bytes | str) -> np.ndarray | None:
    """A big CSV body as a finite float matrix, or None to let np.loadtxt parse it (and
    report what is wrong with it): only a clean result of pandas is taken."""
    import pandas as pd

    raw = input_data.encode() if isinstance(input_data, str) else bytes(input_data)
    try:
        frame = pd.read_csv(io.BytesIO(raw), header=None, dtype=np.float64, engine="c", quoting=3)  # QUOTE_NONE
    except Exception:  # noqa: BLE001 -- any doubt: the strict parser decides
        return None
    rows = np.ascontiguousarray(frame.to_numpy(dtype=np.float64))  # row-major, as np.loadtxt gives
    if rows.ndim != 2 or rows.shape[0] == 0 or not np.isfinite(rows).all():
        return None
    return rows


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
            rows = _fast_csv(input_data) if len(text) >= _PANDAS_CSV_BYTES else None
            if rows is None:  # small bodies, and anything pandas finds odd: numpy's strict parser
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
    except RecursionError:  # json's parser and numpy both recurse once per level of nesting
        raise BadRequestError("JSON nested too deeply: send a list of rows of numbers") from None
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
    try:
        fast = _FAST_PREDICT.get(model)
    except TypeError:  # not weak-referenceable
        fast = None
    if fast is not None:
        return fast(input_data)
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
    if media_type == CSV:  # quoted where needed: a label such as "Barolo, DOCG" stays one field
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([value] for value in values)
        return text.getvalue(), CSV
    raise UnsupportedAcceptError(f"unsupported Accept {accept!r}: ask for application/json or text/csv")
