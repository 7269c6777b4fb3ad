"""A fast predict for the fitted pipelines ``train.py`` builds, verified before it is used.

StandardScaler followed by LogisticRegression, RandomForestClassifier or GradientBoostingClassifier:
the same arithmetic as scikit-learn's predict -- the same operations in the same order, so the same
answers bit for bit -- without its per-call input validation, which ``input_fn`` has already done and
which costs ~250 us per call in scikit-learn 1.9 (some 25 times the arithmetic for one row). A fast
path is used only after it gave exactly ``model.predict``'s answers on probe rows (``fast_predict``);
anything else is served by scikit-learn's own predict.

Gradient boosting's raw scores start from scikit-learn's private ``_raw_predict_init`` and, for large
batches, its stage loop ``sklearn.ensemble._gradient_boosting.predict_stages``: both are checked by
the probe rows, and a scikit-learn where they moved loses the fast path, never an answer.

Shipped to SageMaker's container with the hooks: numpy and scikit-learn only.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import sklearn

# Up to this many (row, tree) walks the trees are walked all at once (_TreeTable); above it one tree
# after another is faster (measured: 100 forest trees cross over at ~40 rows, 300 boosting trees at ~12).
_TABLE_WALKS = 4096
Predict = Callable[[np.ndarray], np.ndarray]
Compiled = tuple[Predict | None, str]


def fast_predict(model: Any) -> Compiled:
    """A fast predict for ``model`` that gave exactly its answers on probe rows, or None and why not."""
    try:
        fast, reason = _compile(model)
    except Exception as err:
        return None, f"preparing it failed: {type(err).__name__}: {err}"
    if fast is None:
        return None, reason
    return _verified(model, fast)


def describe_model(model: Any) -> str:
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
        # StandardScaler.transform on a float64 copy: X -= mean_, then X /= scale_. The subtraction writes the
        # copy itself (the same values, one numpy call less for a single row).
        if mean is not None:
            rows = np.subtract(rows, mean, dtype=np.float64)
        else:
            rows = np.array(rows, dtype=np.float64, copy=True)
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


def _compile_boosting(estimator: Any, scaled: Predict) -> Compiled:
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


def _verified(model: Any, fast: Predict) -> Compiled:
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
