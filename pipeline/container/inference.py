"""Inference code as the four SageMaker serving hooks.

SageMaker's scikit-learn container calls ``model_fn`` once per worker and then
``input_fn -> predict_fn -> output_fn`` per request; the local endpoint server
(``pipeline.serving.app``) calls the very same functions, so what is tested locally
is what runs on SageMaker. Like ``train.py`` this file imports only what the
container has.

Beside it, shipped with it: ``payloads.py`` decodes request bodies and reads the
Accept header, ``fast_predict.py`` is the verified fast predict path,
``inference_errors.py`` the errors (each carries the HTTP status it stands for,
as in aws/sagemaker-inference-toolkit, so a server answers a client's mistake
with a 4xx instead of a 500) and ``verified_files.py`` the sha256 check made
before a model is unpickled.

How a request for probabilities travels through the hooks: SageMaker hands
``input_fn`` the Content-Type and ``output_fn`` the Accept header, and nothing
else of the request (``InvokeEndpoint`` forwards no query string and no header
of the caller's own). So the switch is a parameter of the Accept header --
``Accept: application/json; probabilities=true``, which SageMaker passes on
as it is -- read where the Accept is read, in ``output_fn``. ``predict_fn``
answers a ``Prediction``: the labels, and the model and rows the probabilities
would need, so ``predict_proba`` runs only when the answer asks for it and the
labels keep their fast path.

Named columns travel the same way: ``input_fn`` does not see the model, so it
answers ``NamedRows`` (the names and the values), and ``predict_fn`` matches the
names to the model's input schema (recorded at training in ``input_schema.json``
beside the model) and puts the columns in the model's order.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import joblib
import numpy as np
import sklearn

if __package__:  # imported as pipeline.container.inference
    from .fast_predict import describe_model, fast_predict
    from .inference_errors import (
        BadRequestError,
        InferenceError,
        ModelIntegrityError,
        UnsupportedAcceptError,
        UnsupportedContentTypeError,
        error_body,
    )
    from .model_files import INPUT_SCHEMA_FILENAME, verify_model_file
    from .payloads import (
        CSV,
        JSON,
        PROBABILITIES_PARAMETER,
        NamedRows,
        accept_asks_for_probabilities,
        decode_body,
        negotiate,
    )
else:  # in SageMaker's container: the source dir's files are top-level modules
    from fast_predict import describe_model, fast_predict
    from inference_errors import (  # noqa: F401
        BadRequestError,
        InferenceError,
        ModelIntegrityError,
        UnsupportedAcceptError,
        UnsupportedContentTypeError,
        error_body,
    )
    from model_files import INPUT_SCHEMA_FILENAME, verify_model_file
    from payloads import (  # noqa: F401
        CSV,
        JSON,
        PROBABILITIES_PARAMETER,
        NamedRows,
        accept_asks_for_probabilities,
        decode_body,
        negotiate,
    )

# scikit-learn's warning when a model fitted on named columns is given bare numbers: rows reach the model that way on
# purpose (named columns already put in its order by predict_fn), so it is silenced where scikit-learn predicts.
FEATURE_NAMES_WARNING = "X does not have valid feature names"
log = logging.getLogger(__name__)


# A filter as warnings.filterwarnings("ignore", message=FEATURE_NAMES_WARNING, category=UserWarning) makes it, built
# once: filterwarnings itself costs some 5 us a call (its regular expression, its search for a duplicate).
_FEATURE_NAMES_FILTER = ("ignore", re.compile(FEATURE_NAMES_WARNING, re.I), UserWarning, None, 0)


class BareRows:
    """``with BareRows():`` scikit-learn given bare rows, its feature-names warning silenced there only, never
    process-wide: ``warnings.catch_warnings`` restores the filters on the way out (about 2.5 us in all). The hooks
    use it where scikit-learn predicts; so may a caller that gives a model from ``model_fn`` bare rows itself. The
    fast predict path has no such warning and goes without this."""

    __slots__ = ("_saved",)

    def __enter__(self) -> None:
        self._saved = warnings.catch_warnings()
        self._saved.__enter__()
        warnings.filters.insert(0, _FEATURE_NAMES_FILTER)  # into catch_warnings' own copy of the list

    def __exit__(self, *exc_info: Any) -> None:
        self._saved.__exit__(*exc_info)


@dataclass(frozen=True)
class InputSchema:
    """The columns a model takes, in its order: how named columns in a request are put in place."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    positions: dict[str, int]


def read_input_schema(raw: Any, model: Any, source: str) -> InputSchema:
    """``{"columns": [{"name": ..., "dtype": ...}, ...]}`` as an ``InputSchema``, once it agrees with the model.

    The names and their order are checked against the ones scikit-learn recorded in the (verified) model
    when it was fitted, and their number against the model's width: a schema file that was edited, or
    belongs to another model, is refused instead of putting columns in the wrong places.
    """
    columns = raw.get("columns") if isinstance(raw, dict) else None
    if not isinstance(columns, list) or not columns or not all(
            isinstance(column, dict) and isinstance(column.get("name"), str) and isinstance(column.get("dtype"), str)
            for column in columns):
        raise ModelIntegrityError(f"input schema {source}: expected {{\"columns\": [{{\"name\": ..., \"dtype\": ...}}, "
                                  f"...]}}: refusing to serve with it")
    names = tuple(column["name"] for column in columns)
    if len(set(names)) != len(names):
        raise ModelIntegrityError(f"input schema {source}: a column name appears twice: refusing to serve with it")
    fitted = getattr(model, "feature_names_in_", None)
    width = getattr(model, "n_features_in_", None)
    if fitted is not None and tuple(str(name) for name in fitted) != names:
        raise ModelIntegrityError(f"input schema {source}: columns {list(names)} differ from the features the model "
                                  f"was fitted with {[str(name) for name in fitted]}: refusing to serve with it")
    if width is not None and int(width) != len(names):
        raise ModelIntegrityError(f"input schema {source}: {len(names)} columns for a model of {width} features: "
                                  f"refusing to serve with it")
    return InputSchema(names, tuple(column["dtype"] for column in columns),
                       {name: position for position, name in enumerate(names)})


def _schema_for(model: Any, model_dir: str, input_schema: dict[str, Any] | None) -> InputSchema | None:
    """The schema the caller has (the local server's, from the version's pointer), else the file beside the
    model (SageMaker's container: it is in model.tar.gz), else None (a job from before schemas were kept)."""
    if input_schema is not None:
        return read_input_schema(input_schema, model, "of the served version")
    path = os.path.join(model_dir, INPUT_SCHEMA_FILENAME)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ModelIntegrityError(f"input schema {path} cannot be read: {err}") from None
    return read_input_schema(raw, model, path)


def model_fn(model_dir: str, expected_sha256: str | None = None, input_schema: dict[str, Any] | None = None) -> Any:
    """Load the fitted scikit-learn pipeline saved by ``train.py``, after checking it is that file, with
    its fast predict path if it has one, and its input schema if one was recorded."""
    path = verify_model_file(model_dir, expected_sha256)
    model = joblib.load(path)
    schema = _schema_for(model, model_dir, input_schema)
    with BareRows():  # the fast path is checked against scikit-learn's predict on bare probe rows
        fast, reason = fast_predict(model)
    if fast is None:  # model_fn runs once per worker: so is this said
        log.warning("fast predict path not used, scikit-learn's predict serves %s: %s", describe_model(model), reason)
    try:
        _FAST_PREDICT[model] = fast
        if schema is not None:
            _INPUT_SCHEMAS[model] = schema
    except TypeError:  # an object that cannot be weakly referenced: scikit-learn's predict it is
        pass
    return model


# What model_fn prepared for each loaded model: its verified fast predict (or None) and its input schema.
_FAST_PREDICT: "weakref.WeakKeyDictionary[Any, Callable[[np.ndarray], np.ndarray] | None]" = \
    weakref.WeakKeyDictionary()
_INPUT_SCHEMAS: "weakref.WeakKeyDictionary[Any, InputSchema]" = weakref.WeakKeyDictionary()


def input_fn(input_data: bytes | str, content_type: str) -> np.ndarray | NamedRows:
    """Parse CSV rows, or JSON rows by position or by name, into a float matrix (``NamedRows`` when named).

    JSON: a list of rows; ``{"instances": [...]}`` or ``{"inputs": [...]}`` of rows or of objects
    ``{column: value}``; ``{"inputs": {column: [values]}}``; ``{"dataframe_split": {"columns": [...],
    "data": [[...]]}}``; ``{"dataframe_records": [{column: value}, ...]}`` (``payloads.decode_body``).
    """
    return decode_body(input_data, content_type)


def _in_model_order(named: NamedRows, model: Any) -> np.ndarray:
    """Named columns in the order the model was trained with; missing or unexpected ones refused by name."""
    try:
        schema = _INPUT_SCHEMAS.get(model)
    except TypeError:  # not weak-referenceable
        schema = None
    if schema is None:
        raise BadRequestError("this model has no recorded input schema (it was trained before schemas were kept): "
                              "send rows of values by position, without column names")
    if named.columns == schema.names:
        return named.rows
    missing = [name for name in schema.names if name not in named.columns]
    unexpected = [name for name in named.columns if name not in schema.positions]
    if missing or unexpected:
        problems = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + \
            ([f"unexpected {', '.join(map(repr, unexpected))}"] if unexpected else [])
        raise BadRequestError(f"columns do not match the model's: {'; '.join(problems)} "
                              f"(expected {', '.join(map(repr, schema.names))})")
    return named.rows[:, [named.columns.index(name) for name in schema.names]]


class Prediction:
    """What ``predict_fn`` answers: the labels, and what their probabilities would take.

    ``output_fn`` is the hook that sees the Accept header, where a request for probabilities is;
    so they are computed there, from the rows and model kept here, and only when asked for.
    """

    __slots__ = ("labels", "rows", "model")

    def __init__(self, labels: np.ndarray, rows: np.ndarray, model: Any) -> None:
        self.labels = labels
        self.rows = rows
        self.model = model

    def probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's probability per class, and the classes in the same order (``model.classes_``)."""
        predict_proba = getattr(self.model, "predict_proba", None)  # absent where the estimator has none
        classes = getattr(self.model, "classes_", None)
        if predict_proba is None or classes is None:
            raise UnsupportedAcceptError(f"this model ({describe_model(self.model)}) gives no probabilities: "
                                         f"ask for its predictions only")
        with sklearn.config_context(assume_finite=True), BareRows():  # input_fn has already checked
            return np.asarray(predict_proba(self.rows)), np.asarray(classes)


def predict_fn(input_data: np.ndarray | NamedRows, model: Any) -> Prediction:
    try:
        fast = _FAST_PREDICT.get(model)
    except TypeError:  # not weak-referenceable
        fast = None
    return _predict(input_data, model, getattr(model, "n_features_in_", None), fast)


def predictor(model: Any) -> Callable[[np.ndarray | NamedRows], Prediction]:
    """``predict_fn`` for one model from ``model_fn``, with what it looks up on every call (the model's width,
    its fast predict path) looked up once: ``predictor(model)(rows)`` is ``predict_fn(rows, model)`` for a
    server that predicts with the same model again and again (the local endpoint's hot path)."""
    try:
        fast = _FAST_PREDICT.get(model)
    except TypeError:  # not weak-referenceable
        fast = None
    expected = getattr(model, "n_features_in_", None)

    def predict(input_data: np.ndarray | NamedRows) -> Prediction:
        return _predict(input_data, model, expected, fast)

    return predict


def _predict(input_data: np.ndarray | NamedRows, model: Any, expected: int | None,
             fast: Callable[[np.ndarray], np.ndarray] | None) -> Prediction:
    rows = _in_model_order(input_data, model) if type(input_data) is NamedRows else input_data
    if expected is not None and rows.shape[1] != expected:
        raise BadRequestError(f"each row must have {expected} features, got {rows.shape[1]}")
    if fast is not None:
        return Prediction(fast(rows), rows, model)
    with sklearn.config_context(assume_finite=True), BareRows():  # input_fn has already checked
        return Prediction(model.predict(rows), rows, model)


def _json_predictions(labels: Any, values: list[Any]) -> str:
    """``json.dumps({"predictions": values})``, the same text; for integer labels (a classifier's usual classes)
    written directly, a few microseconds less per answer than through json's encoder."""
    if type(labels) is np.ndarray and labels.dtype.kind in "iu":  # Python ints: json writes them as str() does
        return '{"predictions": [' + ", ".join(map(str, values)) + "]}"
    return json.dumps({"predictions": values})


def output_fn(prediction: Prediction | np.ndarray, accept: str | None,
              probabilities: bool = False) -> tuple[str, str]:
    """Serialise predictions as JSON (``{"predictions": [...]}``) or CSV, one per line.

    With probabilities asked for (``Accept: application/json; probabilities=true``, or ``probabilities``
    from a server that has its own switch), JSON adds ``"probabilities"`` (one list per row) and
    ``"classes"`` (the order of each list). Only JSON carries them: asked for by any type the Accept
    header lists, they are answered in JSON whenever it accepts JSON, and a 406 when it does not
    (``payloads.negotiate``), never dropped.
    """
    negotiated = negotiate(accept, probabilities)
    if negotiated is None:
        raise UnsupportedAcceptError(f"unsupported Accept {accept!r}: ask for application/json or text/csv")
    media_type, asked = negotiated
    labels = prediction.labels if type(prediction) is Prediction else prediction
    if asked:
        if media_type != JSON:
            raise UnsupportedAcceptError(f"probabilities are answered as JSON only, and Accept {accept!r} accepts no "
                                         f"JSON: ask for application/json; {PROBABILITIES_PARAMETER}=true")
        if type(prediction) is not Prediction:
            raise TypeError("probabilities need predict_fn's Prediction, not bare labels")
        proba, classes = prediction.probabilities()
        return json.dumps({"predictions": labels.tolist(), "probabilities": proba.tolist(),
                           "classes": classes.tolist()}), JSON
    values = labels.tolist()
    if media_type == JSON:
        return _json_predictions(labels, values), JSON
    # CSV, quoted where needed: a label such as "Barolo, DOCG" stays one field
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([value] for value in values)
    return text.getvalue(), CSV
