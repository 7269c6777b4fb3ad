"""The files of a model directory, and the check made before the model file is loaded.

One home for the training code that writes them, the serving hooks that read them, and the pipeline, which
deploys a job's model without importing scikit-learn. Shipped to SageMaker's container with the hooks: standard
library only.
"""
from __future__ import annotations

import os

if __package__:  # imported as pipeline.container.model_files
    from .inference_errors import ModelIntegrityError
    from .verified_files import SHA256_SUFFIX, FileChanged, verify_file
else:  # in SageMaker's container: the source dir's files are top-level modules
    from inference_errors import ModelIntegrityError
    from verified_files import SHA256_SUFFIX, FileChanged, verify_file

MODEL_FILENAME = "model.joblib"
METRICS_FILENAME = "metrics.json"
INPUT_SCHEMA_FILENAME = "input_schema.json"  # the training features' names, order and dtypes
MODEL_SHA256_ENV = "MLOPS_MODEL_SHA256"  # set on a SageMaker model from the hash the store recorded
# The metrics train.py writes into metrics.json: each a number a gate may be set on (``gate_metric``).
BUILTIN_METRICS = (
    "accuracy", "cv_mean_accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "balanced_accuracy",
)


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
            with open(path + SHA256_SUFFIX, encoding="ascii") as handle:
                expected = handle.read().strip()
        except OSError:
            raise ModelIntegrityError(f"model file {path} has no recorded sha256: refusing to {use} it") from None
    try:
        verify_file(path, expected)
    except OSError as err:
        raise ModelIntegrityError(f"model file {path} cannot be read: {err.strerror or err}") from None
    except FileChanged as err:
        raise ModelIntegrityError(f"model file {path} has sha256 {err.actual[:12]}..., expected {expected[:12]}... "
                                  f"as recorded at training: refusing to {use} it") from None
    return path
