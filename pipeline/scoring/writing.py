"""Predictions written as CSV: a header, the id (or row number), ``prediction``, and ``probability_<class>`` columns.

The file is written beside its target under a temporary name and renamed over it only when every row is done
(``commit``), as every file the pipeline writes: a run that stops -- a row the model cannot score, an endpoint
that fails, Ctrl-C -- leaves no output file, never half of one (``discard``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

PREDICTION_COLUMN = "prediction"
ROW_COLUMN = "row"  # the id column when the input names none: the row number
PROBABILITY_PREFIX = "probability_"
_NEEDS_QUOTES = (",", '"', "\n", "\r")


def csv_field(text: str) -> str:
    """A value as one CSV field: quoted when it holds a comma, a quote or a line end."""
    if any(mark in text for mark in _NEEDS_QUOTES):
        return '"' + text.replace('"', '""') + '"'
    return text


def label_text(value: Any) -> str:
    """A predicted label as the endpoint's JSON gives it to a client: 1 for an integer class, "setosa" for a string."""
    if isinstance(value, np.generic):
        value = value.item()
    return csv_field(str(value))


def label_texts_of(labels: Sequence[Any] | np.ndarray) -> list[str]:
    """Each label's text, made once per class rather than once per row."""
    if isinstance(labels, np.ndarray) and labels.dtype != object and labels.ndim == 1:
        unique, inverse = np.unique(labels, return_inverse=True)
        return np.array([label_text(value) for value in unique.tolist()], dtype=object)[inverse].tolist()
    texts: dict[Any, str] = {}
    return [texts[label] if label in texts else texts.setdefault(label, label_text(label))
            for label in (labels.tolist() if isinstance(labels, np.ndarray) else labels)]


def probability_columns(classes: Sequence[Any]) -> list[str]:
    return [PROBABILITY_PREFIX + str(label.item() if isinstance(label, np.generic) else label) for label in classes]


class PredictionWriter:
    """Rows of predictions into a temporary file beside ``path``, renamed over it by ``commit``."""

    def __init__(self, path: str | os.PathLike[str], id_column: str | None) -> None:
        self.path = Path(path)
        self.id_column = id_column or ROW_COLUMN
        self.temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.classes: list[Any] | None = None
        self.rows = 0
        self.header_written = False
        self._handle: BinaryIO | None = None

    def __enter__(self) -> PredictionWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.temporary, "wb")  # closed by commit or discard
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def header(self, classes: Sequence[Any] | None) -> None:
        """The header, once: with ``classes``, a probability column for each, in that order."""
        assert self._handle is not None and not self.header_written
        self.header_written = True
        self.classes = list(classes) if classes is not None else None
        names = [self.id_column, PREDICTION_COLUMN, *(probability_columns(classes) if classes is not None else [])]
        self._handle.write((",".join(csv_field(name) for name in names) + "\n").encode())

    def write(self, ids: Sequence[str] | range, labels: Sequence[Any] | np.ndarray, probabilities: Any = None) -> None:
        """One block of rows: ids as text (or row numbers), labels, and a (rows, classes) matrix when asked for."""
        assert self._handle is not None
        label_texts = label_texts_of(labels)
        id_texts: Sequence[Any] = ids
        if not isinstance(ids, range) and ids and isinstance(ids[0], str):
            joined = "\x00".join(ids)  # one scan for the rare id that needs quotes, not one per id
            if any(mark in joined for mark in _NEEDS_QUOTES):
                id_texts = [csv_field(value) for value in ids]
        if probabilities is None:
            lines = [f"{row_id},{label}\n" for row_id, label in zip(id_texts, label_texts)]
        else:
            rows = probabilities.tolist() if hasattr(probabilities, "tolist") else probabilities
            lines = [f"{row_id},{label},{','.join(map(repr, row))}\n"
                     for row_id, label, row in zip(id_texts, label_texts, rows)]
        self._handle.write("".join(lines).encode())
        self.rows += len(lines)

    def commit(self) -> None:
        assert self._handle is not None
        self._handle.close()
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self.temporary.unlink(missing_ok=True)
