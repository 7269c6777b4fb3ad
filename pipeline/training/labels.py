"""A model's class labels as its clients receive them: each with its kind, so 0 and "0" stay apart.

Recorded with every training job (``output_schema`` in its manifest), compared by the contract check
and the champion comparison.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def label_of(value: Any) -> tuple[str, str]:
    """A class label with its kind (``number``, ``str``, ``bool``): what a client receives, typed."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "bool", str(value)
    if isinstance(value, (int, float)):
        return "number", repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))
    return type(value).__name__, str(value)


def output_schema(labels: Any) -> dict[str, Any]:
    """What a job records of its labels at training (``output_schema`` in its manifest)."""
    classes = sorted({label_of(value) for value in np.unique(np.asarray(labels))}, key=label_order)
    return {"classes": [{"kind": kind, "label": label} for kind, label in classes]}


def label_order(item: tuple[str, str]) -> tuple[str, float, str]:
    kind, label = item
    try:
        return kind, float(label), label
    except ValueError:
        return kind, 0.0, label
