"""A training job's artifacts: the one format both backends write and every later step reads.

A finished job is a directory under ``<store_dir>/jobs/<name>/``: the model and its sha256 and
input schema, metrics, held-out rows, and a manifest with the resolved config, a fingerprint of
the data, the library versions and the input schema. The store records every file's sha256 at
training (``record_job``), and ``TrainingJob.load`` refuses a job whose files changed since: the
gate, the deployment and the endpoint tests only ever see what training produced.
"""
from __future__ import annotations

import io
import json
import os
import platform
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import PipelineConfig
from pipeline.container.model_files import INPUT_SCHEMA_FILENAME, METRICS_FILENAME, MODEL_FILENAME
from pipeline.container.verified_files import FileChanged, file_sha256, verify_file, write_recorded
from pipeline.errors import ExitCode, PipelineError

# numpy, pandas, scikit-learn (through the container's train.py) and scipy (through the monitoring baseline) are
# imported where a job's data is read or written: the commands that only list jobs (``jobs``, ``history``,
# ``runs``, ``status``) reach this module and must answer without loading them (about two seconds).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipeline.monitoring import Baseline
    from pipeline.training.datasets import Dataset

MODEL_DIR = "model"
METRICS_FILE = METRICS_FILENAME  # the metrics the container writes, by the same name in the job
HELDOUT_FILE = "heldout.csv"
MANIFEST_FILE = "manifest.json"
# A 64-bit hash of every training row (features and label): which evaluation rows a model saw.
TRAINING_ROWS_FILE = "training_rows.npy"


@dataclass(frozen=True)
class TrainingJob:
    """A trained model and everything needed to judge, deploy and test it."""

    name: str
    directory: Path
    model_sha256: str
    metrics: dict[str, Any]
    label_column: str
    data_fingerprint: dict[str, Any]
    created_at: str
    model_type: str
    manifest: dict[str, Any] = field(default_factory=dict)
    artifact_sha256: dict[str, str] = field(default_factory=dict)  # file -> sha256, recorded in the store

    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    @property
    def model_path(self) -> Path:
        return self.model_dir / MODEL_FILENAME

    @property
    def input_schema(self) -> dict[str, Any] | None:
        """The training features' names, order and dtypes (``input_schema.json``), as the manifest holds
        them: the endpoint matches named columns with it. None for a job from before schemas were kept."""
        return self.manifest.get("input_schema")

    @property
    def heldout_path(self) -> Path:
        return self.directory / HELDOUT_FILE

    def heldout(self) -> tuple[pd.DataFrame, pd.Series]:
        import pandas as pd
        frame = pd.read_csv(self.heldout_path)
        return frame.drop(columns=[self.label_column]), frame[self.label_column]

    def baseline(self) -> Baseline | None:
        """The training data's baseline for the monitor, checked against the store; None for a job
        recorded before baselines were kept."""
        from pipeline.monitoring.baseline import BASELINE_FILE, read_baseline
        if BASELINE_FILE not in self.artifact_sha256:
            return None
        return read_baseline(self.directory / BASELINE_FILE, self.artifact_sha256[BASELINE_FILE])

    def training_row_hashes(self) -> np.ndarray | None:
        """The hashes of the rows the model was trained on (``row_hashes.labelled_row_hashes``), checked
        against the store with the job's other files; None for a job recorded before they were kept."""
        path = self.directory / TRAINING_ROWS_FILE
        if TRAINING_ROWS_FILE not in self.artifact_sha256 or not path.is_file():
            return None
        import numpy as np
        return np.load(path, allow_pickle=False)

    def heldout_feature_lines(self) -> list[str] | None:
        """The held-out features as the CSV lines the endpoint takes, cut from heldout.csv's own text.

        That text is what pandas wrote (shortest round-trip floats) and what ``heldout()``
        parsed, so the endpoint gets exactly the values the offline predictions used,
        without formatting a float again. None when the label is not the last column or a
        line is not plain (a quoted field), and the tester formats the rows itself.
        """
        lines = self.heldout_path.read_text().splitlines()
        if not lines:
            return None
        header = lines[0].split(",")
        if header[-1] != self.label_column or '"' in lines[0]:
            return None
        commas = len(header) - 1
        features = [line.rpartition(",")[0] for line in lines[1:] if line.count(",") == commas]
        return features if len(features) == len(lines) - 1 else None

    @classmethod
    def load(cls, directory: Path, recorded: dict[str, Any]) -> TrainingJob:
        """Read a job back from its artifacts, trusting nothing the store did not record.

        ``recorded`` is the job's row in the store. Every artifact's sha256 must match the one
        recorded at training, and the metrics are the store's, not the job directory's: an edited
        metrics.json can never change what the gate decides.
        """
        name = recorded["name"]
        # Jobs recorded before artifact hashes were kept: their model's hash is all there is to check.
        artifacts = json.loads(recorded.get("artifacts_json") or "null") or \
            {f"{MODEL_DIR}/{MODEL_FILENAME}": recorded["model_sha256"]}
        for relative, expected in sorted(artifacts.items()):
            path = directory / relative
            try:
                verify_file(path, expected)
            except OSError as err:
                raise PipelineError(f"training job {name!r}: {str(path)!r} cannot be read: {err.strerror or err}",
                                    ExitCode.FAILURE) from None
            except FileChanged as err:
                raise PipelineError(f"training job {name!r}: {str(path)!r} changed since training (sha256 "
                                    f"{err.actual[:12]}..., recorded {expected[:12]}...): refusing to use the job",
                                    ExitCode.FAILURE) from None
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        return cls(
            name=name, directory=directory, model_sha256=recorded["model_sha256"],
            metrics=json.loads(recorded["metrics_json"]), label_column=manifest["label_column"],
            data_fingerprint=manifest["data_fingerprint"], created_at=manifest["created_at"],
            model_type=manifest["model_type"], manifest=manifest, artifact_sha256=artifacts,
        )



def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("scikit-learn", "numpy", "pandas", "scipy", "joblib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def timestamp_name(prefix: str, now: datetime | None = None) -> str:
    """``<prefix>-YYYYmmdd-HHMMSS``: the way SageMaker jobs and endpoint configs are named."""
    now = now or datetime.now(UTC)
    return f"{prefix}-{now:%Y%m%d-%H%M%S}"


def job_base_name(config: PipelineConfig, now: datetime | None = None) -> str:
    """A new training job's name before ``claim_unique_directory``: ``timestamp_name`` of ``model_name_prefix``.

    With a shared store (PostgreSQL) three random hex digits follow: pipelines on several machines that train in
    the same second claim their directories on their own machines, so the second would only learn of the first's
    name when the store refuses it. The tail keeps the name within SageMaker's 63 characters with ``-2``.
    """
    name = timestamp_name(config.model_name_prefix, now)
    url = config.shared_store_url
    if url and not url.startswith("sqlite"):
        name = f"{name}-{secrets.token_hex(2)[:3]}"
    return name


class HeldoutCsv:
    """The held-out rows' CSV (``HELDOUT_FILE``), formatted in a background thread while the model fits.

    pandas formats every value of the held-out rows: about 1.7 s for 100,000 rows x 20 features, the largest
    thing a job writes. The fit and the cross-validation spend most of their time in numpy and BLAS, which
    release the GIL, so the two overlap on the machine's other core (docs/PERFORMANCE.md §3). The file is
    written beside the jobs, under a temporary name; ``move_to`` waits for it and renames it into the job's
    directory, and ``discard`` (always called) waits for the thread and removes what no job took, so a failed
    or interrupted training leaves no file and no thread behind.
    """

    def __init__(self, rows: pd.DataFrame, scratch_dir: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        scratch_dir.mkdir(parents=True, exist_ok=True)
        self.rows = rows
        self._path = scratch_dir / f".{HELDOUT_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heldout-csv")
        self._written = self._executor.submit(rows.to_csv, self._path, index=False)

    def move_to(self, target: Path) -> None:
        self._written.result()  # the writer's error, if any, is the job's
        os.replace(self._path, target)

    def discard(self) -> None:
        self._executor.shutdown(wait=True)
        self._path.unlink(missing_ok=True)


def claim_unique_directory(parent: Path, base_name: str) -> Path:
    """Create ``parent/base_name`` (or ``-2``, ``-3``...): two jobs in one second never collide.

    ``mkdir`` is atomic, so this holds across processes too.
    """
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = parent / (base_name if attempt == 1 else f"{base_name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise PipelineError(f"could not find a free name for {base_name!r} in {str(parent)!r}")


def record_job(directory: Path, config: PipelineConfig, dataset: Dataset, metrics: dict[str, Any],
               X_train: pd.DataFrame, y_train: pd.Series, **extra: Any) -> TrainingJob:
    """Write what later steps need beside a saved model and held-out rows: the metrics, the
    manifest, a hash of every training row (the champion comparison) and the training data's
    baseline with its constraints (the monitor). The result is a training job either backend made,
    readable by ``TrainingJob.load``. ``extra`` goes into the manifest (e.g. AWS ARNs)."""
    import numpy as np

    from pipeline.monitoring import DriftThresholds, compute_baseline, write_baseline
    from pipeline.training.labels import output_schema
    from pipeline.training.row_hashes import labelled_row_hashes

    model_path = directory / MODEL_DIR / MODEL_FILENAME
    schema_path = directory / MODEL_DIR / INPUT_SCHEMA_FILENAME
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    # Each file's sha256 is taken of the bytes written (write_recorded), the model's and the held-out rows'
    # of the files other steps wrote; the store records them all and every later reader checks them.
    artifacts = {METRICS_FILE: _write_json(directory / METRICS_FILE, metrics)}
    row_hashes = io.BytesIO()
    np.save(row_hashes, labelled_row_hashes(X_train, y_train), allow_pickle=False)
    artifacts[TRAINING_ROWS_FILE] = write_recorded(directory / TRAINING_ROWS_FILE, row_hashes.getvalue())
    artifacts.update(write_baseline(directory, compute_baseline(X_train, y_train),
                                    DriftThresholds.from_mapping(config.model_dump())))
    manifest = {
        "training_job": directory.name,
        "created_at": created_at,
        "model_type": config.model_type,
        "model_file": str(model_path.relative_to(directory)),
        "model_sha256": file_sha256(model_path),
        "label_column": dataset.label_column,
        "data_fingerprint": dataset.fingerprint(),
        "dataset": dataset.source,
        "library_versions": library_versions(),
        "config": config.public_dict(),
        # Copied from the file save_model wrote beside the model (from model.tar.gz for a SageMaker job): a
        # deployment hands it to the local server in the version's pointer, so the server reads no file the
        # store has not verified. The file itself, which travels with the model to SageMaker, is hashed below.
        "input_schema": json.loads(schema_path.read_text()) if schema_path.is_file() else None,
        "output_schema": output_schema(y_train),  # the labels clients receive (the endpoint's contract)
        **extra,
    }
    artifacts[MANIFEST_FILE] = _write_json(directory / MANIFEST_FILE, manifest)
    artifacts[manifest["model_file"]] = manifest["model_sha256"]
    artifacts[HELDOUT_FILE] = file_sha256(directory / HELDOUT_FILE)
    if schema_path.is_file():
        artifacts[str(schema_path.relative_to(directory))] = file_sha256(schema_path)
    return TrainingJob(
        name=directory.name, directory=directory, model_sha256=manifest["model_sha256"], metrics=metrics,
        label_column=dataset.label_column, data_fingerprint=manifest["data_fingerprint"],
        created_at=created_at, model_type=config.model_type, manifest=manifest, artifact_sha256=artifacts,
    )


def _write_json(path: Path, data: Any) -> str:
    return write_recorded(path, json.dumps(data, indent=2, default=str))
