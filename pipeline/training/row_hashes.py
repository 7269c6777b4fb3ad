"""A 64-bit hash of every training row, stored with each job: which rows a model was trained on.

The champion comparison drops the evaluation rows the serving model trained on (``rows_not_trained_on``),
so the candidate is never judged on rows that favour the champion.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.util import hash_pandas_object

from pipeline.errors import PipelineError


def row_hashes(frame: pd.DataFrame, columns: Sequence[str]) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per row of ``frame[columns]`` (pandas' ``hash_pandas_object``, index ignored).

    Why hashes: a training job stores 8 bytes per row instead of the rows, and any later evaluation can
    tell which of its rows a model was trained on. The hash covers the values and their kinds, not the
    column names: pass the feature columns in training order and the label last, with the dtypes the
    model was trained on (pandas hashes 1 and 1.0 differently; int32 and int64 alike). It is stable
    across processes and machines for a given pandas version (fixed hash key).
    """
    if not columns:
        raise PipelineError("row hashes: no columns given (expected the training features and label)")
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise PipelineError(f"row hashes: column(s) {', '.join(map(repr, missing))} not in the data "
                            f"(expected the training features and label: {', '.join(map(str, columns))})")
    return hash_pandas_object(frame[list(columns)], index=False).to_numpy(dtype=np.uint64)


def labelled_row_hashes(features: pd.DataFrame, labels: pd.Series) -> npt.NDArray[np.uint64]:
    """``row_hashes`` of features and label with their kinds made uniform (features as 64-bit floats,
    labels as text), so the rows a job trained on and the same rows read back from a CSV file hash
    alike: a CSV round trip can turn ``1.0`` into ``1`` and a label column's dtype with it."""
    frame = features.astype(np.float64)
    frame = frame.assign(**{"\x00label": labels.astype(str).to_numpy()})
    return row_hashes(frame, list(frame.columns))


def rows_not_trained_on(evaluation_hashes: npt.ArrayLike, training_hashes: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Mask of evaluation rows whose hash is not among a model's training rows (duplicates included)."""
    return ~np.isin(np.asarray(evaluation_hashes, dtype=np.uint64), np.asarray(training_hashes, dtype=np.uint64))
