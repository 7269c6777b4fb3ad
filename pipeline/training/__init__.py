"""Training: fitting a model (``fitting``), the job it leaves behind (``jobs``), and the data it reads
(``datasets``). ``TrainingPipeline`` is importable from here, as custom training steps subclass it.

The names from ``fitting`` load on first use: fitting brings in scikit-learn, pandas and scipy (about two
seconds), and the commands that only read the store (``history``, ``runs``, ``jobs``, ``status``) reach
``pipeline.training.job_files`` without ever fitting a model."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.container.model_files import BUILTIN_METRICS

if TYPE_CHECKING:
    from pipeline.training.fitting import CustomEvaluation, TrainingPipeline

__all__ = ["BUILTIN_METRICS", "CustomEvaluation", "TrainingPipeline"]


def __getattr__(name: str) -> Any:
    if name in ("CustomEvaluation", "TrainingPipeline"):
        from pipeline.training import fitting
        return getattr(fitting, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
