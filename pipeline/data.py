"""Loading a dataset and refusing, with one clear line, data a model cannot learn from."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

IRIS = "iris"
IRIS_LABEL = "target"


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame  # features and the label column
    label_column: str
    source: str
    known_fingerprint: dict[str, Any] | None = None  # set by without_rows(), when the rows are gone

    @property
    def features(self) -> pd.DataFrame:
        return self.frame.drop(columns=[self.label_column])

    @property
    def labels(self) -> pd.Series:
        return self.frame[self.label_column]

    def without_rows(self) -> "Dataset":
        """The same dataset described (columns, source, fingerprint) without holding its rows.

        Training keeps this instead of the whole frame once the split has copied the rows
        it needs, so the frame is not held in memory beside them while the model is fitted.
        """
        # .copy(): a zero-row slice is still a view that would keep the whole array alive.
        return Dataset(self.frame.iloc[:0].copy(), self.label_column, self.source, self.fingerprint())

    def fingerprint(self) -> dict[str, Any]:
        """What data a model was trained on: a content hash and the shape."""
        if self.known_fingerprint is not None:
            return self.known_fingerprint
        digest = hashlib.sha256(pd.util.hash_pandas_object(self.frame, index=False).values.tobytes())
        digest.update(",".join(map(str, self.frame.columns)).encode())
        return {"sha256": digest.hexdigest(), "rows": int(self.frame.shape[0]), "columns": int(self.frame.shape[1])}


def load_dataset(spec: str, label_column: str) -> Dataset:
    """``iris`` (bundled with scikit-learn) or a CSV file with a header row and a label column."""
    if spec == IRIS:
        from sklearn.datasets import load_iris

        frame = load_iris(as_frame=True).frame
        return Dataset(frame=frame, label_column=IRIS_LABEL, source=IRIS)
    return _load_csv(Path(spec), label_column)


def _load_csv(path: Path, label_column: str) -> Dataset:
    name = repr(str(path))
    if not path.is_file():
        raise PipelineError(f"dataset {name} not found: expected 'iris' or a CSV file with a header row")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PipelineError(f"dataset {name} is not a readable CSV file: {reason}") from None
    if label_column not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:12]))
        raise PipelineError(
            f"dataset {name} has no label column {label_column!r} (columns: {columns}); set label_column"
        )
    features = frame.drop(columns=[label_column])
    if features.shape[1] == 0:
        raise PipelineError(f"dataset {name} has no feature columns besides the label {label_column!r}")
    for column in frame.columns:
        missing = frame[column].isna()
        if missing.any():
            first_line = int(missing.to_numpy().argmax()) + 2  # +1 for the header, +1 for 1-based lines
            raise PipelineError(
                f"dataset {name}: column {column!r} has {int(missing.sum())} missing value(s), "
                f"the first on line {first_line}; fill or drop them"
            )
    for column in features.columns:
        if not pd.api.types.is_numeric_dtype(features[column]) or pd.api.types.is_bool_dtype(features[column]):
            numeric = pd.to_numeric(features[column], errors="coerce")
            bad = int(numeric.isna().to_numpy().argmax())
            raise PipelineError(
                f"dataset {name}: feature column {column!r} is not numeric "
                f"({features[column].iloc[bad]!r} on line {bad + 2}); encode it as numbers"
            )
    for column in features.columns:
        finite = np.isfinite(features[column].to_numpy(dtype=float))
        if not finite.all():
            line = int((~finite).argmax()) + 2
            raise PipelineError(f"dataset {name}: feature column {column!r} has an infinite value on line {line}")
    if frame[label_column].nunique() < 2:
        raise PipelineError(f"dataset {name}: label column {label_column!r} has fewer than 2 classes")
    return Dataset(frame=frame, label_column=label_column, source=str(path))
