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
import functools
import hashlib
import io
import json
import logging
import os
import warnings
import weakref
from typing import Any, Callable

import joblib
import numpy as np
import sklearn

MODEL_FILENAME = "model.joblib"
MODEL_SHA256_SUFFIX = ".sha256"  # model.joblib.sha256, written beside the model at training
MODEL_SHA256_ENV = "MLOPS_MODEL_SHA256"  # set on a SageMaker model from the hash the store recorded
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


def model_fn(model_dir: str, expected_sha256: str | None = None) -> Any:
    """Load the fitted scikit-learn pipeline saved by ``train.py``, after checking it is that file, with
    its fast predict path if it has one."""
    path = verify_model_file(model_dir, expected_sha256)
    # Rows arrive as bare numbers; the column names the model was fitted with do not apply.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    model = joblib.load(path)
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


@functools.lru_cache(maxsize=256)
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
