"""``predict`` as one library call: which model scores the file, where, and the checks made before any work.

``--training-job JOB`` scores in this process with the job's verified model (``offline``); ``--endpoint-name NAME``
through the live endpoint, local or SageMaker, whichever the store recorded it on (``remote``);
``--training-job JOB --backend sagemaker`` with ``s3://`` input and output runs a SageMaker Batch Transform job
(``pipeline.backends.sagemaker.batch_transform``, through the backend's ``batch_transform``). A driver like
``operations``: it asks the backends and the store for what it needs and hands the work to the scoring loops.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.backends import load_backend
from pipeline.errors import ExitCode, PipelineError
from pipeline.gate.approvals import latest_approval
from pipeline.gate.decision import ApprovalStatus
from pipeline.outcomes import Verdict
from pipeline.run.invocation import check_output_paths
from pipeline.scoring.offline import OfflineScorer, model_columns
from pipeline.scoring.predict import PredictReport, predict_endpoint, predict_offline
from pipeline.scoring.reading import CsvBlocks
from pipeline.scoring.remote import EndpointScorer
from pipeline.scoring.request import MAX_CONCURRENCY, ON_BAD_ROW, PredictRequest
from pipeline.training import job_files
from pipeline.training.jobs import TrainingJob

if TYPE_CHECKING:
    from pipeline.backends.base import Backend
    from pipeline.config import PipelineConfig
    from pipeline.deployment.steps import DeploymentPipeline
    from pipeline.state.store import DeploymentStore

log = logging.getLogger(__name__)


class Commands(Protocol):
    """What ``predict`` needs of ``Operations``: the config, the store, the backends."""

    config: PipelineConfig
    store: DeploymentStore
    run_id: str

    def backend(self, endpoint_name: str | None = None) -> Backend: ...

    def deployer(self, endpoint_name: str | None = None) -> DeploymentPipeline: ...


def is_s3(path: str) -> bool:
    return path.startswith("s3://")


def check_request(request: PredictRequest) -> None:
    """Everything that can be refused before the model or the endpoint is touched (exit 2, one line)."""
    if (request.training_job is None) == (request.endpoint_name is None):
        raise PipelineError("predict needs --training-job JOB (its model, in this process) or --endpoint-name NAME "
                            "(the live endpoint), not both")
    if request.on_bad_row not in ON_BAD_ROW:
        raise PipelineError(f"--on-bad-row {request.on_bad_row!r}: expected one of {', '.join(ON_BAD_ROW)}")
    if not 1 <= request.concurrency <= MAX_CONCURRENCY:
        raise PipelineError(f"--concurrency {request.concurrency}: expected 1 to {MAX_CONCURRENCY}")
    if request.backend == "sagemaker":
        if request.training_job is None:
            raise PipelineError("--backend sagemaker scores with a Batch Transform job of a training job's model: "
                                "give --training-job JOB (an endpoint is scored with --endpoint-name alone)")
        for flag, path in (("--input", request.input), ("--output", request.output)):
            if not is_s3(path):
                raise PipelineError(f"{flag} {path!r}: --backend sagemaker reads and writes S3, expected s3://bucket/key")
        if request.concurrency != PredictRequest.concurrency:
            raise PipelineError("--concurrency is for an endpoint; a Batch Transform job sets its own")
        return
    if request.backend != "local":
        raise PipelineError(f"--backend {request.backend!r}: expected local or sagemaker")
    for flag, path in (("--input", request.input), ("--output", request.output)):
        if is_s3(path):
            raise PipelineError(f"{flag} {path!r}: S3 files are scored by a Batch Transform job: add --backend "
                                f"sagemaker (with --training-job), or copy the file here")
    if not Path(request.input).is_file():
        raise PipelineError(f"--input {request.input!r}: no such file")
    if os.path.realpath(request.input) == os.path.realpath(request.output):
        raise PipelineError(f"--output {request.output!r} is the input file: give the predictions a file of their own")
    check_output_paths({"--output": request.output})


def load_job(store: DeploymentStore, name: str) -> TrainingJob:
    """A training job from the store, its files checked against the sha256 recorded at training."""
    row = job_files.recorded(store, name, "train again")
    job = job_files.load(store, row)  # fetched and verified when another machine trained it
    decision = latest_approval(store, name)
    refused = decision is not None and decision.status == ApprovalStatus.REJECTED
    if refused or row.get("gate_decision") == Verdict.REJECTED:
        # Scoring a file deploys nothing, so it is not refused; but whoever reads the output should know.
        why = f"by {decision.by}: {decision.reason}" if refused and decision is not None else "by the gate"
        log.warning("training job %s was rejected %s; its predictions are written all the same", name, why)
    return job


def predict(commands: Commands, request: PredictRequest) -> PredictReport:
    check_request(request)
    store = commands.store
    if request.backend == "sagemaker":
        job = load_job(store, request.training_job or "")
        backend = load_backend("sagemaker", commands.config, store, commands.run_id)
        return backend.batch_transform(job, request)
    size = Path(request.input).stat().st_size
    with open(request.input, "rb") as stream:
        blocks = CsvBlocks(stream, request.input)
        if request.training_job is not None:
            scorer = OfflineScorer(load_job(store, request.training_job))
            return predict_offline(blocks, request.output, scorer, id_column=request.id_column,
                                   probabilities=request.probabilities, on_bad_row=request.on_bad_row,
                                   total_bytes=size)
        return _through_endpoint(commands, request, blocks, size)


def _through_endpoint(commands: Commands, request: PredictRequest, blocks: CsvBlocks, size: int) -> PredictReport:
    name = request.endpoint_name or ""
    deployer = commands.deployer(name)
    job = deployer.serving_job(name)  # what serves, as the store recorded it: its input schema and labels
    backend = deployer.backend
    client = backend.client(name, backend.serving(name))
    scorer = EndpointScorer(client, name, probabilities=request.probabilities)
    classes = _recorded_classes(job)
    max_body = int(commands.config.max_payload_mb * 1024 * 1024)
    try:
        columns = model_columns(job)
    except PipelineError:
        raise PipelineError(f"endpoint {name!r} serves training job {job.name!r}, which recorded no input schema: "
                            f"its columns cannot be matched by name; score it with --training-job {job.name}",
                            ExitCode.USAGE) from None
    return predict_endpoint(blocks, request.output, scorer, columns, id_column=request.id_column,
                            probabilities=request.probabilities, on_bad_row=request.on_bad_row,
                            max_body_bytes=max_body, concurrency=request.concurrency, classes=classes,
                            total_bytes=size)


def _recorded_classes(job: TrainingJob) -> list[Any] | None:
    """The labels a job recorded (its output schema), for the header of a file without rows."""
    schema = job.manifest.get("output_schema") or {}
    classes = schema.get("classes")
    if not classes:
        return None
    return [int(item["label"]) if item.get("kind") == "number" and item["label"].lstrip("-").isdigit()
            else item["label"] for item in classes]
