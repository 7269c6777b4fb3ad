"""Loading a dataset and refusing, with one clear line, data a model cannot learn from."""
from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype, is_bool_dtype, is_float_dtype, is_numeric_dtype, is_object_dtype

from pipeline.errors import PipelineError

IRIS = "iris"
IRIS_LABEL = "target"

# The largest integer a 64-bit float holds exactly. Class labels beyond it do not survive the
# float round trips between the CSV, scikit-learn, the endpoint's JSON and back.
EXACT_FLOAT_INTEGER_LIMIT = 2**53
# Leakage is first looked for in this many leading rows: a column that is not a relabelling there
# is not one in the whole file, so only columns that pass need the full pass.
LEAKAGE_SAMPLE_ROWS = 1_000


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

    def without_rows(self) -> Dataset:
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


def load_dataset(spec: str, label_column: str, *, allow_label_leakage: bool = False) -> Dataset:
    """``iris`` (bundled with scikit-learn) or a CSV file with a header row and a label column.

    ``allow_label_leakage``: accept a feature that is a one-to-one relabelling of the label
    (config key ``allow_label_leakage``), for a column that really is known at prediction time.
    """
    if spec == IRIS:
        from sklearn.datasets import load_iris

        frame = load_iris(as_frame=True).frame
        return Dataset(frame=frame, label_column=IRIS_LABEL, source=IRIS)
    return _load_csv(Path(spec), label_column, allow_label_leakage)


def _load_csv(path: Path, label_column: str, allow_label_leakage: bool) -> Dataset:
    name = repr(str(path))
    if not path.is_file():
        raise PipelineError(f"dataset {name} not found: expected 'iris' or a CSV file with a header row")
    header, first_row = _read_header_and_first_row(path, name)
    refuse_duplicate_column_names(header, name)
    refuse_unnamed_columns(header, name)
    refuse_first_row_longer_than_header(header, first_row, name)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PipelineError(f"dataset {name} is not a readable CSV file: {reason}") from None
    frame = validate_frame(frame, name, label_column, allow_label_leakage)
    return Dataset(frame=frame, label_column=label_column, source=str(path))


def _read_header_and_first_row(path: Path, name: str) -> tuple[list[str], list[str] | None]:
    """The header as the file spells it: pandas renames a repeated name (``target`` -> ``target.1``),
    so duplicates can only be seen here. Blank lines are skipped, as pandas does."""
    rows: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for row in csv.reader(handle):
                if row:
                    rows.append(row)
                if len(rows) == 2:
                    break
    except UnicodeDecodeError:
        raise PipelineError(f"dataset {name} is not a readable CSV file: expected UTF-8 text") from None
    except csv.Error as err:
        raise PipelineError(f"dataset {name} is not a readable CSV file: {err}") from None
    if not rows:
        raise PipelineError(f"dataset {name} is empty: expected a CSV file with a header row")
    return rows[0], rows[1] if len(rows) > 1 else None


# --- validation: one function per rule, in the order they are applied -------------------------

def refuse_duplicate_column_names(header: list[str], name: str) -> None:
    """Pandas would silently rename a second ``target`` to ``target.1`` and train on it as a feature."""
    counts = Counter(header)
    repeated = [column for column, count in counts.items() if count > 1]
    if repeated:
        where = "; ".join(
            f"{column!r} in columns {', '.join(str(i + 1) for i, c in enumerate(header) if c == column)}"
            for column in repeated
        )
        raise PipelineError(f"dataset {name} has duplicate column names in its header: {where}; "
                            f"expected every column name once")


def refuse_unnamed_columns(header: list[str], name: str) -> None:
    """Pandas would call it ``Unnamed: N`` and train on it: often a row index (``to_csv`` writes one
    with an empty name) or a column of nothing from a trailing comma."""
    for position, column in enumerate(header):
        if not column.strip():
            raise PipelineError(
                f"dataset {name}: column {position + 1} has no name in the header (a row index written by "
                f"to_csv without index=False, or a trailing comma); expected a name for every column"
            )


def refuse_first_row_longer_than_header(header: list[str], first_row: list[str] | None, name: str) -> None:
    """Given one field more in the first data row, pandas takes the first column as the row index and
    shifts every column one place left under the header's names -- silently, e.g. for a trailing comma."""
    if first_row is not None and len(first_row) > len(header):
        raise PipelineError(
            f"dataset {name}: the first data row has {len(first_row)} fields but the header has {len(header)} "
            f"(a trailing comma adds an empty field); expected the same number of fields on every line"
        )


def validate_frame(frame: pd.DataFrame, name: str, label_column: str, allow_label_leakage: bool) -> pd.DataFrame:
    """Every rule a parsed dataset must meet; returns the frame with numeric object columns as floats."""
    require_label_column(frame, name, label_column)
    require_feature_columns(frame, name, label_column)
    require_rows(frame, name)
    refuse_missing_values(frame, name)
    frame = require_numeric_features(frame, name, label_column)
    features = frame.drop(columns=[label_column])
    require_finite_features(features, name)
    refuse_features_too_large_to_scale(features, name)
    frame = require_class_labels(frame, name, label_column)
    require_two_classes(frame[label_column], name, label_column)
    if not allow_label_leakage:
        refuse_label_leakage(frame, name, label_column)
    return frame


def require_label_column(frame: pd.DataFrame, name: str, label_column: str) -> None:
    if label_column not in frame.columns:
        columns = [str(column) for column in frame.columns]
        # A near miss in spacing or case is named with its quotes, which show the spaces.
        close = [column for column in columns if column.strip().casefold() == label_column.strip().casefold()]
        hint = f"; did you mean {close[0]!r}?" if close else "; set label_column"
        if len(columns) == 1 and any(separator in columns[0] for separator in ";\t|"):
            hint = "; expected fields separated by commas"
        raise PipelineError(
            f"dataset {name} has no label column {label_column!r} (columns: {', '.join(columns[:12])}){hint}"
        )


def require_feature_columns(frame: pd.DataFrame, name: str, label_column: str) -> None:
    if frame.shape[1] < 2:
        raise PipelineError(f"dataset {name} has no feature columns besides the label {label_column!r}")


def require_rows(frame: pd.DataFrame, name: str) -> None:
    if frame.shape[0] == 0:
        raise PipelineError(f"dataset {name} has a header row but no data rows; expected at least one row per class")


def refuse_missing_values(frame: pd.DataFrame, name: str) -> None:
    for column in frame.columns:
        missing = frame[column].isna()
        if missing.any():
            first_line = int(missing.to_numpy().argmax()) + 2  # +1 for the header, +1 for 1-based lines
            raise PipelineError(
                f"dataset {name}: column {column!r} has {int(missing.sum())} missing value(s), "
                f"the first on line {first_line}; fill or drop them"
            )


def require_numeric_features(frame: pd.DataFrame, name: str, label_column: str) -> pd.DataFrame:
    """Text is refused. A column pandas left as Python objects although every value is a number
    (integers beyond 64 bits, or a large file read in chunks of different types) becomes floats,
    which is what the model would make of it anyway."""
    converted: dict[str, pd.Series] = {}
    for column in frame.columns:
        values = frame[column]
        if column == label_column or (is_numeric_dtype(values) and not is_bool_dtype(values)):
            continue
        if is_bool_dtype(values):
            raise PipelineError(f"dataset {name}: feature column {column!r} is not numeric "
                                f"({python_scalar(values.iloc[0])!r} on line 2); encode it as numbers")
        try:
            numeric = pd.to_numeric(values, errors="coerce")
        except OverflowError:
            line, value = next((row + 2, v) for row, v in enumerate(values) if isinstance(v, int) and abs(v) > 2**64)
            raise PipelineError(f"dataset {name}: feature column {column!r} has a number too large for a 64-bit "
                                f"float ({_short(value)} on line {line}); rescale the column") from None
        bad = numeric.isna().to_numpy()
        if bad.any():
            row = int(bad.argmax())
            raise PipelineError(f"dataset {name}: feature column {column!r} is not numeric "
                                f"({values.iloc[row]!r} on line {row + 2}); encode it as numbers")
        converted[column] = numeric.astype(float)
    return frame.assign(**converted) if converted else frame


def require_finite_features(features: pd.DataFrame, name: str) -> None:
    for column in features.columns:
        finite = np.isfinite(features[column].to_numpy(dtype=float))
        if not finite.all():
            line = int((~finite).argmax()) + 2
            raise PipelineError(f"dataset {name}: feature column {column!r} has an infinite value on line {line}")


def refuse_features_too_large_to_scale(features: pd.DataFrame, name: str) -> None:
    """The model standardises every feature; a value whose square (or a column whose sum) overflows
    a 64-bit float makes the mean or variance infinite and the model's input NaN."""
    # Sums of n squared deviations stay finite when every magnitude is below this: a check of the
    # column's extremes, which costs no copy, clears nearly every column without computing its variance.
    safe_magnitude = np.sqrt(np.finfo(float).max / (4 * max(len(features), 1)))
    for column in features.columns:
        values = features[column].to_numpy(dtype=float)
        if max(abs(values.min()), abs(values.max())) < safe_magnitude:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            mean = values.mean()
            variance = values.var()
            if np.isfinite(mean) and np.isfinite(variance):
                continue
            row = int(np.abs(values - (mean if np.isfinite(mean) else 0.0)).argmax())
        raise PipelineError(
            f"dataset {name}: feature column {column!r} has a value too large to standardise "
            f"({python_scalar(values[row])!r} on line {row + 2}): its mean or variance overflows a 64-bit float; "
            f"expected magnitudes below about 1e150, rescale the column"
        )


def require_class_labels(frame: pd.DataFrame, name: str, label_column: str) -> pd.DataFrame:
    """Labels are classes: integers (1.0 counts as 1) or strings, not measurements such as 0.5.
    A text column pandas read in chunks may hold both ``'1'`` and ``1``; it is made all text,
    as the file is, so they stay one class."""
    labels = frame[label_column]
    where = f"dataset {name}: label column {label_column!r}"
    if is_float_dtype(labels):
        values = labels.to_numpy()
        with np.errstate(invalid="ignore"):
            fractional = ~np.isfinite(values) | (values != np.round(values))
        if fractional.any():
            row = int(fractional.argmax())
            raise PipelineError(f"{where} holds continuous numbers ({python_scalar(values[row])!r} on line {row + 2}); "
                                f"expected classes: integers or strings")
    if is_numeric_dtype(labels) and not is_bool_dtype(labels):
        values = labels.to_numpy()
        too_large = (values >= EXACT_FLOAT_INTEGER_LIMIT) | (values <= -EXACT_FLOAT_INTEGER_LIMIT)
        if too_large.any():
            row = int(too_large.argmax())
            raise _label_too_large(where, python_scalar(values[row]), row)
        return frame
    if is_object_dtype(labels) and infer_dtype(labels, skipna=False) != "string":
        for row, value in enumerate(labels):
            if isinstance(value, (int, float)) and abs(value) >= EXACT_FLOAT_INTEGER_LIMIT:
                raise _label_too_large(where, value, row)
        return frame.assign(**{label_column: labels.astype(str)})
    return frame


def _label_too_large(where: str, value: Any, row: int) -> PipelineError:
    return PipelineError(f"{where} has the value {_short(value)} on line {row + 2}, beyond 2**53 where 64-bit floats "
                         f"stop holding integers exactly; expected class labels of smaller magnitude, or strings")


def require_two_classes(labels: pd.Series, name: str, label_column: str) -> None:
    if labels.nunique() < 2:
        raise PipelineError(f"dataset {name}: label column {label_column!r} has fewer than 2 classes")


def refuse_label_leakage(frame: pd.DataFrame, name: str, label_column: str) -> None:
    """A feature that is the label under another name (equal to it, ``label * 10 + 3``, or string
    classes renumbered) gives a perfect score and a model that learned nothing else."""
    labels = frame[label_column].to_numpy()
    for column in frame.columns:
        if column != label_column and _is_relabelling(frame[column].to_numpy(), labels):
            raise PipelineError(
                f"dataset {name}: feature column {column!r} is a relabelling of the label {label_column!r} "
                f"(each class has exactly one value of it and each value one class); drop the column, or "
                f"set allow_label_leakage=true if it is really known when predicting"
            )


def _is_relabelling(feature: np.ndarray, labels: np.ndarray) -> bool:
    """One-to-one both ways: among the distinct (feature, label) pairs, no feature value and no label
    appears twice. One way is not enough: a continuous feature with all-distinct values maps each
    value to one label, but not each label to one value. Any violation among some rows is one in
    all rows, so a sample settles most columns and only the rest get the full pass."""
    for rows in (slice(0, LEAKAGE_SAMPLE_ROWS), slice(None)):
        pairs = pd.DataFrame({"feature": feature[rows], "label": labels[rows]}).drop_duplicates()
        if pairs["feature"].duplicated().any() or pairs["label"].duplicated().any():
            return False
    return True


def python_scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _short(value: Any) -> str:
    """A value for a one-line message: a 400-digit integer is shown by its first digits and length."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
