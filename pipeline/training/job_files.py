"""A training job's files where any machine with the same store can read them, and read back verified.

A job is trained into ``<store_dir>/jobs/<name>/`` on the machine that trains it (``TrainingPipeline.save``, or
the SageMaker backend's download). ``publish`` copies the files the store records a sha256 for -- the model and
its input schema, metrics, manifest, held-out rows, training-row hashes, drift baseline and constraints -- to the
artifact store (``pipeline.state.artifacts``) and answers the URL the store records as the job's ``directory``.

``load`` is the one way every later step reads a job back (the gate's champion, ``--mode deployment``, the
endpoint tests, ``monitor``): a job recorded with an ``s3://`` location is assembled in this machine's
``<store_dir>/jobs/<name>/`` from the files fetched by sha256 (each checked against the store's sha256 before it
is written there, ``ArtifactCache``), then ``TrainingJob.load`` checks them all once more. On the machine that
trained the job the files are already there, with those hashes, and nothing is fetched.
"""
from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path
from typing import Any

from pipeline.container.verified_files import FileChanged, file_sha256, read_verified
from pipeline.errors import ExitCode, PipelineError
from pipeline.state.artifacts import JOBS, delete, is_remote, place
from pipeline.state.store import DeploymentStore
from pipeline.training.jobs import TrainingJob

log = logging.getLogger(__name__)


def publish(store: DeploymentStore, job: TrainingJob) -> str:
    """Copy the job's recorded files to the artifact store; where the job's files are, for the store to record.
    Each file is read and checked against the sha256 taken when it was written: the copy is what was trained."""
    if not store.publishing:
        return str(job.directory)
    if store.training_job(job.name) is not None:  # never overwrite the files of a job another machine recorded
        raise PipelineError(f"training job name {job.name!r} is taken in {store.location} by a job another machine "
                            f"trained in the same second; run again", ExitCode.FAILURE)
    for relative, expected in sorted(job.artifact_sha256.items()):
        path = job.directory / relative
        try:
            data = read_verified(path, expected)
        except FileChanged:
            raise PipelineError(f"training job {job.name!r}: {str(path)!r} changed after it was written: not "
                                f"published", ExitCode.FAILURE) from None
        store.artifacts.put(f"{JOBS}/{job.name}/{relative}", data)
    location = store.artifacts.url(f"{JOBS}/{job.name}")
    log.info("training job %s: %d files published to %s", job.name, len(job.artifact_sha256), location)
    return location


def recorded(store: DeploymentStore, name: str, pruned_means: str) -> dict[str, Any]:
    """The store's row of training job ``name``; ``PipelineError`` when there is none, or when ``cleanup --prune``
    deleted its files (``pruned_means``: what that leaves impossible for the command that asked)."""
    row = store.training_job(name)
    if row is None:
        raise PipelineError(f"training job {name!r} not found in {store.location!r} (`run_pipeline.py jobs` lists "
                            f"them)")
    if row.get("pruned_at"):
        raise PipelineError(f"training job {name!r} was pruned on {row['pruned_at'][:19]} (cleanup --prune deleted "
                            f"its model and files): {pruned_means}")
    return row


def load(store: DeploymentStore, row: dict[str, Any]) -> TrainingJob:
    """The job the store recorded in ``row``, its files checked against the store's sha256 (fetched first when
    they live in an artifact store); ``PipelineError`` naming the file that is missing or changed."""
    location = row["directory"]
    if not is_remote(location):
        directory = Path(location)
        if store.shared and not directory.is_dir():
            raise PipelineError(f"training job {row['name']!r}: its files are in {location} on the machine that "
                                f"trained it, not on this one ({socket.gethostname()}): train with artifact_url "
                                f"(s3://bucket/prefix) set, so that every machine using this store can read them",
                                ExitCode.FAILURE)
        return TrainingJob.load(directory, row)
    directory = store.jobs_dir / row["name"]
    for relative, expected in sorted(_recorded_files(row).items()):
        target = directory / relative
        if target.is_file() and file_sha256(target) == expected:
            continue
        blob = store.cache.fetch(f"{location}/{relative}", expected, f"training job {row['name']!r}")
        place(blob, target)
    return TrainingJob.load(directory, row)


def _recorded_files(row: dict[str, Any]) -> dict[str, str]:
    files = json.loads(row.get("artifacts_json") or "null")
    if not files:  # only jobs recorded with their files' hashes are ever published
        raise PipelineError(f"training job {row['name']!r} recorded no sha256 of its files: it cannot be read "
                            f"from {row['directory']}", ExitCode.FAILURE)
    return files


def remove(store: DeploymentStore, row: dict[str, Any]) -> None:
    """Delete a job's files (``cleanup --prune``): in the artifact store, and this machine's copy."""
    location = row["directory"]
    if is_remote(location):
        delete(location, store.cache.region)
        shutil.rmtree(store.jobs_dir / row["name"], ignore_errors=True)
    else:
        shutil.rmtree(location, ignore_errors=True)
