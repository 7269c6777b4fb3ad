"""The Wilson score interval of an accuracy: the one the gate, the training metrics and live accuracy use.

Wilson's score interval rather than the textbook p +- z*se: it stays inside [0, 1] and keeps its
coverage near 100% accuracy, which is exactly where a gate's threshold sits.

Shipped to SageMaker's container with ``train.py``, which records it with every job: scipy only.
"""
from __future__ import annotations

CONFIDENCE = 0.95


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Where the true accuracy plausibly lies, given ``correct`` right answers out of ``total``."""
    if total < 1 or not 0 <= correct <= total:
        raise ValueError(f"wilson_interval({correct!r}, {total!r}): expected 0 <= correct <= total and total >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r}: expected a number between 0 and 1")
    from scipy.stats import binomtest  # on first use: a full run reaches this module before it needs scipy

    interval = binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)
