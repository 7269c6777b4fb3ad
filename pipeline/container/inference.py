"""Inference code as the four SageMaker serving hooks.

SageMaker's scikit-learn container calls ``model_fn`` once per worker and then
``input_fn -> predict_fn -> output_fn`` per request; the local endpoint server
(``pipeline.serving.app``) calls the very same functions, so what is tested locally
is what runs on SageMaker. Like ``train.py`` this file imports only what the
container has.

Each error class carries the HTTP status it stands for (as in
aws/sagemaker-inference-toolkit), so a server can answer a client's mistake
with a 4xx instead of a 500.

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
import functools
import hashlib
import io
import json
import logging
import os
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import joblib
import numpy as np
import sklearn

MODEL_FILENAME = "model.joblib"
MODEL_SHA256_SUFFIX = ".sha256"  # model.joblib.sha256, written beside the model at training
MODEL_SHA256_ENV = "MLOPS_MODEL_SHA256"  # set on a SageMaker model from the hash the store recorded
INPUT_SCHEMA_FILENAME = "input_schema.json"  # the training features' names, order and dtypes (train.save_model)
PROBABILITIES_PARAMETER = "probabilities"  # Accept: application/json; probabilities=true
CSV = "text/csv"
JSON = "application/json"
log = logging.getLogger(__name__)


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_file(model_dir: str | os.PathLike[str], expected_sha256: str | None = None,
                      use: str = "load") -> str:
    """The model file's path, once its sha256 matches the recorded one; else ModelIntegrityError naming it.

    The recorded hash is, in order: the one the caller has from the store, the one SageMaker's model
    environment carries, the one written beside the model at training.
    """
    path = os.path.join(model_dir, MODEL_FILENAME)
    expected = expected_sha256 or os.environ.get(MODEL_SHA256_ENV)
    if not expected:
        try:
            with open(path + MODEL_SHA256_SUFFIX, encoding="ascii") as handle:
                expected = handle.read().strip()
        except OSError:
            raise ModelIntegrityError(f"model file {path} has no recorded sha256: refusing to {use} it") from None
    try:
        actual = file_sha256(path)
    except OSError as err:
        raise ModelIntegrityError(f"model file {path} cannot be read: {err.strerror or err}") from None
    if actual != expected:
        raise ModelIntegrityError(f"model file {path} has sha256 {actual[:12]}..., expected {expected[:12]}... "
                                  f"as recorded at training: refusing to {use} it")
    return path


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
    # Rows reach the model as bare numbers, named columns already put in its order: the column names it
    # was fitted with have been applied by predict_fn.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    model = joblib.load(path)
    schema = _schema_for(model, model_dir, input_schema)
    try:
        fast, reason = _compile(model)
    except Exception as err:
        fast, reason = None, f"preparing it failed: {type(err).__name__}: {err}"
    if fast is not None:
        fast, reason = _verified(model, fast)
    if fast is None:  # model_fn runs once per worker: so is this said
        log.warning("fast predict path not used, scikit-learn's predict serves %s: %s", _describe(model), reason)
    try:
        _FAST_PREDICT[model] = fast
        if schema is not None:
            _INPUT_SCHEMAS[model] = schema
    except TypeError:  # an object that cannot be weakly referenced: scikit-learn's predict it is
        pass
    return model


# Fast paths for the fitted pipelines train.py builds: StandardScaler followed by
# LogisticRegression, RandomForestClassifier or GradientBoostingClassifier. They do
# scikit-learn's own predict arithmetic -- the same operations in the same order, so the same
# answers bit for bit -- without its per-call input validation, which input_fn has already done
# and which costs ~250 us per call in scikit-learn 1.9 (some 25 times the arithmetic for one
# row). A fast path is used only after it gave exactly model.predict's answers on probe rows.
_FAST_PREDICT: "weakref.WeakKeyDictionary[Any, Callable[[np.ndarray], np.ndarray] | None]" = \
    weakref.WeakKeyDictionary()
_INPUT_SCHEMAS: "weakref.WeakKeyDictionary[Any, InputSchema]" = weakref.WeakKeyDictionary()
# Up to this many (row, tree) walks the trees are walked all at once (_TreeTable); above it one tree
# after another is faster (measured: 100 forest trees cross over at ~40 rows, 300 boosting trees at ~12).
_TABLE_WALKS = 4096
Compiled = tuple[Callable[[np.ndarray], np.ndarray] | None, str]


def _describe(model: Any) -> str:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in steps) + ")"
    return type(model).__name__


class _TreeTable:
    """Many fitted trees as one node table, walked for every row and every tree at once.

    scikit-learn walks one tree at a time, paying a fixed cost per tree per call; for the few
    rows of a typical request that fixed cost is most of the time (100-300 trees). Here each
    level of all the trees is one numpy step: a node's feature and threshold are looked up,
    ``row[feature] <= threshold`` picks the child, exactly the comparison scikit-learn's
    ``Tree.apply`` makes (a float32 feature against a float64 threshold). Leaves are their own
    children, so after ``depth`` steps every walk has reached its leaf.
    """

    def __init__(self, trees: list[Any]) -> None:
        sizes = [tree.node_count for tree in trees]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        self.roots = offsets
        self.feature = np.concatenate([np.maximum(tree.feature, 0) for tree in trees]).astype(np.intp)
        self.threshold = np.concatenate([tree.threshold for tree in trees]).astype(np.float64)
        children = []
        for tree, offset in zip(trees, offsets):
            own = np.arange(tree.node_count, dtype=np.intp) + offset
            leaf = tree.children_left < 0
            left = np.where(leaf, own, tree.children_left + offset)
            right = np.where(leaf, own, tree.children_right + offset)
            children.append(np.stack([left, right], axis=1))
        self.children = np.concatenate(children).ravel()  # [2 * node] left, [2 * node + 1] right
        self.values = np.concatenate([tree.value for tree in trees])  # (nodes, outputs, classes)
        self.depth = max(int(tree.max_depth) for tree in trees)

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree: (rows, trees) indices into the table."""
        rows, width = matrix.shape
        flat = np.ascontiguousarray(matrix).ravel()
        row_start = (np.arange(rows, dtype=np.intp) * width)[:, None]
        node = np.broadcast_to(self.roots, (rows, self.roots.size))
        for _ in range(self.depth):
            goes_right = flat[row_start + self.feature[node]] > self.threshold[node]
            node = self.children[2 * node + goes_right]
        return node

    @property
    def size(self) -> int:
        return int(self.roots.size)


def _compile(model: Any) -> Compiled:
    """A fast predict for ``model`` and why not, when there is none."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if type(model) is not Pipeline or len(model.steps) != 2 or type(model.steps[0][1]) is not StandardScaler:
        return None, "only a StandardScaler followed by one estimator has one"
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

        return predict_linear, ""
    if type(estimator) is RandomForestClassifier:
        if estimator.n_outputs_ != 1 or estimator.n_jobs not in (None, 1):
            return None, (f"a forest with n_outputs_={estimator.n_outputs_} and n_jobs={estimator.n_jobs} "
                          f"(one output and n_jobs 1 have one: threads add the trees' votes in any order)")
        trees = [tree.tree_ for tree in estimator.estimators_]
        table = _TreeTable(trees)
        n_classes = int(estimator.n_classes_)

        def predict_forest(rows: np.ndarray) -> np.ndarray:
            matrix = np.asarray(scaled(rows), dtype=np.float32)  # trees predict on float32, as the forest does
            if matrix.shape[0] * table.size <= _TABLE_WALKS:
                votes = table.values[table.leaves(matrix), 0, :n_classes]  # (rows, trees, classes)
                # Added tree after tree, as ForestClassifier.predict_proba adds them (accumulate is sequential).
                proba = np.add.accumulate(votes, axis=1)[:, -1]
            else:
                proba = np.zeros((matrix.shape[0], n_classes), dtype=np.float64)
                for tree in trees:  # ForestClassifier.predict_proba, summed in the same (sequential) order
                    proba += tree.predict(matrix)[:, :n_classes]
            proba /= len(trees)
            return classes.take(proba.argmax(axis=1), axis=0)

        return predict_forest, ""
    if type(estimator) is GradientBoostingClassifier:
        return _compile_boosting(estimator, scaled)
    return None, f"no fast path for {type(estimator).__name__}"


def _compile_boosting(estimator: Any, scaled: Callable[[np.ndarray], np.ndarray]) -> Compiled:
    """GradientBoostingClassifier.predict: the init estimator's raw scores plus every stage's trees,
    added by scikit-learn's own stage loop (``predict_stages``, one C loop over all the trees)."""
    from sklearn.dummy import DummyClassifier

    try:
        from sklearn.ensemble._gradient_boosting import predict_stages
    except ImportError as err:
        return None, f"scikit-learn's stage loop for gradient boosting is not importable: {err}"
    init = estimator.init_
    if not (isinstance(init, str) and init == "zero") and \
            not (type(init) is DummyClassifier and init.strategy == "prior"):
        return None, f"gradient boosting with init={init!r} (the default prior, or 'zero', has one)"
    width = int(estimator.n_features_in_)
    # The default init predicts the class priors whatever the row: one row of raw scores serves all.
    start = estimator._raw_predict_init(np.zeros((1, width), dtype=np.float32))
    stages, learning_rate, classes = estimator.estimators_, float(estimator.learning_rate), estimator.classes_
    table = _TreeTable([tree.tree_ for tree in stages.ravel()])  # stage by stage, class by class within one

    def predict_boosting(rows: np.ndarray) -> np.ndarray:
        matrix = np.ascontiguousarray(scaled(rows), dtype=np.float32)  # as decision_function converts it
        if matrix.shape[0] * table.size <= _TABLE_WALKS:
            steps = learning_rate * table.values[table.leaves(matrix), 0, 0].reshape(matrix.shape[0], *stages.shape)
            terms = np.concatenate([np.broadcast_to(start[:, None, :], (matrix.shape[0], 1, start.shape[1])),
                                    steps], axis=1)
            raw = np.add.accumulate(terms, axis=1)[:, -1]  # init, then each stage added in order, as the C loop does
        else:
            raw = np.repeat(start, matrix.shape[0], axis=0)
            predict_stages(stages, matrix, learning_rate, raw)
        if raw.shape[1] == 1:
            return classes.take((raw[:, 0] >= 0).astype(np.intp), axis=0)
        return classes.take(raw.argmax(axis=1), axis=0)

    return predict_boosting, ""


def _verified(model: Any, fast: Callable[[np.ndarray], np.ndarray]) -> Compiled:
    width = int(getattr(model, "n_features_in_", 0) or 0)
    if width <= 0:
        return None, "the model does not say how many features it takes"
    generator = np.random.default_rng(0)
    scaler = model.steps[0][1]
    center = getattr(scaler, "mean_", None)
    spread = getattr(scaler, "scale_", None)
    probe = generator.standard_normal((512, width)) * (1.0 if spread is None else spread) * 2.0 + \
        (0.0 if center is None else center)
    try:
        with sklearn.config_context(assume_finite=True):
            expected = model.predict(probe)
        # Single rows, small batches and one large one: each way a fast path may walk its trees.
        same = all(np.array_equal(fast(probe[i:i + size]), expected[i:i + size])
                   for size, end in ((1, 16), (16, 512), (512, 512)) for i in range(0, end, size))
    except Exception as err:
        return None, f"the fast path failed on probe rows: {type(err).__name__}: {err}"
    if not same:
        return None, "the fast path's answers differ from scikit-learn's predict on probe rows"
    return fast, ""


@functools.lru_cache(maxsize=256)  # a client sends the same few headers again and again
def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


# Above this size a CSV body is parsed with pandas' C parser, 2-3x faster than np.loadtxt per
# row (about 740,000 against 350,000 rows/s of 20 features here); below it np.loadtxt's
# lower fixed cost per call (~15 against ~550 us) wins. They break even at about 16 KB
# (1,000 rows of 4 features). pandas is already imported with scikit-learn.
_PANDAS_CSV_BYTES = 24 * 1024


def _fast_csv(input_data: bytes | str) -> np.ndarray | None:
    """A big CSV body as a finite float matrix, or None to let np.loadtxt parse it (and
    report what is wrong with it): only a clean result of pandas is taken."""
    import pandas as pd

    raw = input_data.encode() if isinstance(input_data, str) else bytes(input_data)
    try:
        frame = pd.read_csv(io.BytesIO(raw), header=None, dtype=np.float64, engine="c", quoting=3)  # QUOTE_NONE
    except Exception:
        return None
    rows = np.ascontiguousarray(frame.to_numpy(dtype=np.float64))  # row-major, as np.loadtxt gives
    if rows.ndim != 2 or rows.shape[0] == 0 or not np.isfinite(rows).all():
        return None
    return rows


@dataclass(frozen=True)
class NamedRows:
    """Rows whose values came with column names: ``predict_fn`` puts them in the model's order."""

    columns: tuple[str, ...]
    rows: np.ndarray  # (rows, columns) floats, finite, in the order of ``columns``


# MLflow's scoring server takes exactly one of these keys (and ``instances`` is TensorFlow Serving's).
_ENVELOPES = ("dataframe_split", "dataframe_records", "instances", "inputs")
_SPLIT_KEYS = ("columns", "data", "index")


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _named(columns: list[Any], rows: list[Any], where: str) -> NamedRows:
    """Values by row, ``columns`` naming their positions, as ``NamedRows``; a bad value is refused by its column."""
    if not columns:
        raise BadRequestError(f"{where}: no columns")
    if not all(isinstance(name, str) for name in columns):
        raise BadRequestError(f"{where}: column names must be strings")
    if len(set(columns)) != len(columns):
        twice = next(name for name in columns if columns.count(name) > 1)
        raise BadRequestError(f"{where}: column {twice!r} appears twice")
    if not isinstance(rows, list) or not rows:
        raise BadRequestError(f"{where}: expected a non-empty list of rows")
    width = len(columns)
    for index, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != width:
            count = f"{len(row)} values" if isinstance(row, (list, tuple)) else _shown(row)
            raise BadRequestError(f"{where}: row {index} has {count} for {width} columns")
    for position, name in enumerate(columns):
        for row in rows:
            value = row[position]
            if type(value) is not float and type(value) is not int:  # bool is not int here; None, str, list...
                raise BadRequestError(f"column {name!r}: values must be numbers, got {_shown(value)}")
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:
        name = next(name for position, name in enumerate(columns)
                    if any(type(row[position]) is int and abs(row[position]) > 1e308 for row in rows))
        raise BadRequestError(f"column {name!r}: a number too large for a float") from None
    finite = np.isfinite(matrix).all(axis=0)
    if not finite.all():
        raise BadRequestError(f"column {columns[int(np.argmin(finite))]!r}: values must not be NaN or infinity")
    return NamedRows(tuple(columns), matrix)


def _records(records: list[Any], where: str) -> NamedRows:
    """``[{column: value}, ...]`` (pandas' records orient): the columns are all the names, in order of appearance."""
    names: dict[str, None] = {}
    for index, record in enumerate(records):
        if type(record) is not dict:
            raise BadRequestError(f"{where}: row {index} is {_shown(record)}, not an object {{column: value}} "
                                  f"like the rows before it")
        for name in record:
            names.setdefault(name)
    columns = list(names)
    rows = []
    for index, record in enumerate(records):
        if len(record) != len(columns):
            name = next(name for name in columns if name not in record)
            raise BadRequestError(f"{where}: row {index} has no value for column {name!r}")
        rows.append([record[name] for name in columns])
    return _named(columns, rows, where)


def _by_column(columns: dict[str, Any]) -> NamedRows:
    """MLflow's ``{"inputs": {column: [values...]}}`` (or one value per column: one row)."""
    values = list(columns.values())
    if values and all(isinstance(value, list) for value in values):
        if len({len(value) for value in values}) != 1:
            raise BadRequestError('"inputs": every column must have the same number of values')
        return _named(list(columns), [list(row) for row in zip(*values)], '"inputs"')
    if any(isinstance(value, list) for value in values):
        raise BadRequestError('"inputs": give every column a list of values, or every column one value')
    return _named(list(columns), [values], '"inputs"')


def _split(frame: Any) -> list[Any] | NamedRows:
    """pandas' split orient: ``{"columns": [...], "data": [[...]]}`` (``index`` is ignored, as MLflow does)."""
    if type(frame) is not dict:
        raise BadRequestError('"dataframe_split" must be an object {"columns": [...], "data": [[...]]}')
    unknown = [key for key in frame if key not in _SPLIT_KEYS]
    if unknown:
        raise BadRequestError(f'"dataframe_split": unexpected key {unknown[0]!r} (it takes columns, data and index)')
    data = frame.get("data")
    if not isinstance(data, list) or not data:
        raise BadRequestError('"dataframe_split" needs "data": a non-empty list of rows')
    if "columns" not in frame:
        return data  # no names: rows by position
    if not isinstance(frame["columns"], list):
        raise BadRequestError('"dataframe_split": "columns" must be a list of column names')
    return _named(frame["columns"], data, '"dataframe_split"')


def _unwrap(payload: dict[str, Any]) -> Any:
    """The rows inside one of MLflow's JSON objects: a list (rows or records) or ``NamedRows``."""
    if len(payload) == 1:  # {"inputs": [[...]]}, MLflow's fastest, and {"instances": [[...]]}: no more checks
        rows = payload.get("inputs") or payload.get("instances")
        if type(rows) is list and rows and type(rows[0]) is list:
            return rows
    keys = [key for key in payload if key in _ENVELOPES]
    others = [key for key in payload if key not in _ENVELOPES]
    if len(keys) != 1 or others:
        what = f"unexpected key {others[0]!r}" if others else f"{len(keys)} of them"
        raise BadRequestError('JSON object must have exactly one of "dataframe_split", "dataframe_records", '
                              f'"instances" or "inputs" ({what})')
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        return _split(value)
    if key == "inputs" and type(value) is dict:
        return _by_column(value)
    if key == "dataframe_records" and not (isinstance(value, list) and value and type(value[0]) is dict):
        raise BadRequestError('"dataframe_records" must be a non-empty list of objects {column: value}')
    if not isinstance(value, list) or not value:
        raise BadRequestError(f'"{key}" must be a non-empty list of rows')
    return value


def input_fn(input_data: bytes | str, content_type: str) -> np.ndarray | NamedRows:
    """Parse CSV rows, or JSON rows by position or by name, into a float matrix (``NamedRows`` when named).

    JSON: a list of rows; ``{"instances": [...]}`` or ``{"inputs": [...]}`` of rows or of objects
    ``{column: value}``; ``{"inputs": {column: [values]}}``; ``{"dataframe_split": {"columns": [...],
    "data": [[...]]}}``; ``{"dataframe_records": [{column: value}, ...]}``.
    """
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
            if type(payload) is dict:
                payload = _unwrap(payload)
                if type(payload) is NamedRows:
                    return payload
            if not isinstance(payload, list) or not payload:
                raise BadRequestError("JSON body must be a non-empty list of rows")
            if type(payload[0]) is dict:
                return _records(payload, "rows")
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
            raise UnsupportedAcceptError(f"this model ({_describe(self.model)}) gives no probabilities: "
                                         f"ask for its predictions only")
        with sklearn.config_context(assume_finite=True):  # input_fn has already checked
            return np.asarray(predict_proba(self.rows)), np.asarray(classes)


def predict_fn(input_data: np.ndarray | NamedRows, model: Any) -> Prediction:
    rows = _in_model_order(input_data, model) if type(input_data) is NamedRows else input_data
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and rows.shape[1] != expected:
        raise BadRequestError(f"each row must have {expected} features, got {rows.shape[1]}")
    try:
        fast = _FAST_PREDICT.get(model)
    except TypeError:  # not weak-referenceable
        fast = None
    if fast is not None:
        return Prediction(fast(rows), rows, model)
    with sklearn.config_context(assume_finite=True):  # input_fn has already checked
        return Prediction(model.predict(rows), rows, model)


_ACCEPTABLE = {"": JSON, "*/*": JSON, JSON: JSON, "application/*": JSON, CSV: CSV, "text/*": CSV}
_SWITCH = {"true": True, "false": False}


@functools.lru_cache(maxsize=256)
def _negotiate(accept: str | None) -> tuple[str, bool] | None:
    """The best of JSON and CSV for an Accept header such as ``text/csv, application/json;q=0.5``, and
    whether that choice asks for probabilities (``application/json; probabilities=true``)."""
    if not (accept or "").strip():
        return JSON, False
    offers = []
    for position, item in enumerate(accept.split(",")):
        media_type, *params = [part.strip() for part in item.split(";")]
        quality = 1.0
        probabilities = False
        for param in params:
            name, _, value = param.partition("=")
            name, value = name.strip().lower(), value.strip().strip('"')
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif name == PROBABILITIES_PARAMETER:
                if value.lower() not in _SWITCH:
                    raise UnsupportedAcceptError(f"Accept parameter {PROBABILITIES_PARAMETER}={value!r}: "
                                                 f"expected true or false")
                probabilities = _SWITCH[value.lower()]
        if quality > 0 and media_type.lower() in _ACCEPTABLE:
            offers.append((-quality, position, _ACCEPTABLE[media_type.lower()], probabilities))
    if not offers:
        return None
    _, _, media_type, probabilities = min(offers)
    return media_type, probabilities


def accept_asks_for_probabilities(accept: str | None) -> bool:
    """Whether the Accept header's chosen type carries ``probabilities=true`` (for a server with a switch of its
    own, which must not contradict it)."""
    negotiated = _negotiate(accept)
    return bool(negotiated and negotiated[1])


def output_fn(prediction: Prediction | np.ndarray, accept: str | None,
              probabilities: bool = False) -> tuple[str, str]:
    """Serialise predictions as JSON (``{"predictions": [...]}``) or CSV, one per line.

    With probabilities asked for (``Accept: application/json; probabilities=true``, or ``probabilities``
    from a server that has its own switch), JSON adds ``"probabilities"`` (one list per row) and
    ``"classes"`` (the order of each list).
    """
    negotiated = _negotiate(accept)
    if negotiated is None:
        raise UnsupportedAcceptError(f"unsupported Accept {accept!r}: ask for application/json or text/csv")
    media_type, asked = negotiated
    labels = prediction.labels if type(prediction) is Prediction else prediction
    if asked or probabilities:
        if media_type != JSON:
            raise UnsupportedAcceptError("probabilities are answered as JSON only: ask for "
                                         f"application/json; {PROBABILITIES_PARAMETER}=true")
        if type(prediction) is not Prediction:
            raise TypeError("probabilities need predict_fn's Prediction, not bare labels")
        proba, classes = prediction.probabilities()
        return json.dumps({"predictions": labels.tolist(), "probabilities": proba.tolist(),
                           "classes": classes.tolist()}), JSON
    values = labels.tolist()
    if media_type == JSON:
        return json.dumps({"predictions": values}), JSON
    # CSV, quoted where needed: a label such as "Barolo, DOCG" stays one field
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([value] for value in values)
    return text.getvalue(), CSV
