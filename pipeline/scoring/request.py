"""What ``predict`` is asked to do (``PredictRequest``) and the bounds of its options.

Standard library only: the command line builds its ``predict`` options from these before any model, data
library or backend is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass

ON_BAD_ROW = ("fail", "skip")  # a row the model cannot score: stop (exit 2), or leave it out and report it
MAX_CONCURRENCY = 64  # requests in flight to an endpoint


@dataclass(frozen=True)
class PredictRequest:
    input: str
    output: str
    training_job: str | None = None
    endpoint_name: str | None = None
    backend: str = "local"  # sagemaker: a Batch Transform job (s3:// input and output)
    id_column: str | None = None
    probabilities: bool = False
    on_bad_row: str = "fail"
    concurrency: int = 4
