"""The SageMaker backend: training jobs, models, endpoint configs and endpoints, through boto3.

Every SageMaker, SageMaker Runtime and S3 call goes through boto3 (standard
retry mode, so throttling is retried with backoff). The SageMaker SDK is used
for one thing only: ``sagemaker.core.image_uris``, whose bundled table gives
the scikit-learn framework image offline. Nothing on the local path imports
this module.

Training
    The dataset is written to CSV and uploaded as the ``train`` channel; the
    files of ``pipeline/container/`` (``train.py``, ``inference.py``,
    ``serve.py``) are uploaded as ``sourcedir.tar.gz``; ``create_training_job`` runs
    ``train.py`` in the framework image (script mode). When the job is done,
    ``model.tar.gz`` and ``output.tar.gz`` (the ``metrics.json`` and held-out
    rows the script wrote) are downloaded into a local job directory with the
    same artifacts a local training job has, so the gate, the offline parity
    check and ``--mode deployment``/``--mode testing`` work unchanged. S3
    layout, one prefix per job::

        s3://<bucket>/<job>/input/train/train.csv
        s3://<bucket>/<job>/source/sourcedir.tar.gz
        s3://<bucket>/<job>/output/{model,output}.tar.gz

Deployment
    A version is a model and an endpoint config, both named after the
    version (``<endpoint_prefix>-YYYYmmdd-HHMMSS``) and served by the image
    that trained it, running ``serve.py`` (its ``transform_fn`` answers a
    malformed request with a 4xx, which the container would otherwise turn
    into a 500); its production variant carries the same name, so every
    answer says which version gave it. The
    endpoint keeps a stable name: ``create_endpoint`` the first time,
    afterwards ``update_endpoint`` with a blue/green ``DeploymentConfig``.
    After ``InService`` the endpoint must run the intended config and carry
    no ``FailureReason``: an update that AWS rolled back is a failed
    deployment. The endpoint tests run after the update (on SageMaker the
    blue/green update is the switch); ``discard`` updates back to the
    previous config, or deletes a first endpoint.

Traffic routing
    CANARY and LINEAR are SageMaker's blue/green ``TrafficRoutingConfiguration``
    (``canary_percent`` / ``linear_step_percent`` of the capacity per step, one
    step every ``baking_seconds`` rounded up to whole seconds, the old fleet
    kept ``baking_period_minutes`` after the last shift), ``rollback_alarm_names``
    its ``AutoRollbackConfiguration``: SageMaker bakes them inside
    ``update_endpoint``. SHADOW is baked by the pipeline: the candidate is
    tested beside the serving version (a production variant of weight 0 that
    only ``TargetVariant`` reaches), then attached as its shadow variant while
    ``traffic`` reads CloudWatch and the captures of both, then promoted by an
    update to its own config, or dropped by one to the previous config.

Waiting is polling with backoff under ``sagemaker_timeout_minutes``; AWS
errors become one-line ``PipelineError`` messages that say what to change.

The backend delegates to two parts that share one ``AwsSession`` (``session``:
the boto3 clients, bucket, image, S3 transfers and polling): ``TrainingJobs``
(``training``) and ``Endpoints`` (``endpoints``, with the models and endpoint
configs of ``versions``). ``captures`` brings an endpoint's captured requests from S3
for ``monitor``. ``traffic`` reads a SHADOW bake. ``batch_transform`` scores an S3 file (``predict --backend
sagemaker``). ``client`` is the endpoint tests' client, ``errors``
turns AWS errors into one line, ``artifacts`` builds and unpacks the tarballs.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.backends.base import Backend, IntervalTraffic, Outcome, Server, Staged, TrafficStep
from pipeline.backends.sagemaker.captures import CaptureDownload
from pipeline.backends.sagemaker.client import SageMakerEndpointClient
from pipeline.backends.sagemaker.endpoints import MAX_WAIT_SECONDS, Endpoints
from pipeline.backends.sagemaker.errors import WaitTimeout, aws_error
from pipeline.backends.sagemaker.registry import ModelRegistry
from pipeline.backends.sagemaker.session import AwsSession, Polling
from pipeline.backends.sagemaker.training import TrainingJobs
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.scoring.predict import PredictReport
    from pipeline.state.store import DeploymentStore
    from pipeline.training.fitting import TrainingPipeline
    from pipeline.training.jobs import TrainingJob

__all__ = ["SageMakerBackend", "SageMakerEndpointClient", "WaitTimeout", "aws_error"]


class SageMakerBackend(Backend):
    """Training jobs and endpoints on SageMaker, each in its own part over one shared AWS session."""

    TYPE = "sagemaker"

    # The files shipped as sourcedir.tar.gz: the script-mode entry point, the serving hooks and program.
    SOURCE_DIR = Path(__file__).resolve().parents[2] / "container"
    # Polling: first wait, growth factor, longest wait (seconds). Training and endpoint updates take minutes.
    POLL_INITIAL_SECONDS = 0.5
    POLL_FACTOR = 1.5
    POLL_MAX_SECONDS = 20.0

    def __init__(self, config: PipelineConfig, store: DeploymentStore, run_id: str | None = None) -> None:
        super().__init__(config, store, run_id)
        if config.baking_period_minutes * 60 > MAX_WAIT_SECONDS:
            raise PipelineError(f"baking_period_minutes {config.baking_period_minutes}: SageMaker allows at most "
                                f"{MAX_WAIT_SECONDS // 60} minutes; lower it")
        self.aws = AwsSession(config, run_id, self.SOURCE_DIR,
                              Polling(self.POLL_INITIAL_SECONDS, self.POLL_FACTOR, self.POLL_MAX_SECONDS))
        self.registry = ModelRegistry(self.aws, config.model_name_prefix)
        self.training_jobs = TrainingJobs(self.aws, store, self.TYPE, self.registry)
        self.endpoints = Endpoints(self.aws, store, self.TYPE)

    def train(self, training: TrainingPipeline) -> TrainingJob:
        return self.training_jobs.train(training)

    def registered_approval(self, job: TrainingJob) -> dict[str, Any] | None:
        return self.registry.decision(job)

    def record_approval(self, job: TrainingJob, status: str, by: str, reason: str) -> None:
        self.registry.set_status(job, status, by, reason)

    def stage(self, endpoint_name: str, version: str, job: TrainingJob) -> Staged:
        return self.endpoints.stage(endpoint_name, version, job)

    def client(self, endpoint_name: str, server: Server) -> SageMakerEndpointClient:
        return self.endpoints.client(endpoint_name, server)

    def serving(self, endpoint_name: str) -> Server:
        return self.endpoints.serving(endpoint_name)

    def serving_model(self, endpoint_name: str, scratch: Path) -> tuple[str, Path] | None:
        return self.endpoints.serving_model(endpoint_name, scratch)

    def capture_directory(self, endpoint_name: str, version: str, scratch: Path,
                          since: datetime | None = None) -> Path | None:
        """The version's captures from S3 (``captures``); with ``since``, older hours are not even listed."""
        return CaptureDownload(self.aws, endpoint_name, version).into(scratch, since)

    def promote(self, staged: Staged) -> Outcome:
        return self.endpoints.promote(staged)

    def bakes_on_the_endpoint(self, traffic_routing: str) -> bool:
        """SHADOW only: CANARY and LINEAR are SageMaker's blue/green routing, shifted (and rolled back on an alarm)
        inside ``update_endpoint``, so ``stage`` has already baked them when it returns."""
        return traffic_routing == "SHADOW"

    def split_traffic(self, staged: Staged, step: TrafficStep) -> None:
        self.endpoints.split_traffic(staged, step)

    def traffic_mark(self, staged: Staged) -> Any:
        return self.endpoints.traffic_mark(staged)

    def traffic_since(self, staged: Staged, mark: Any) -> IntervalTraffic:
        return self.endpoints.traffic_since(staged, mark)

    def reconcile(self, endpoint_name: str, deployment: dict[str, Any]) -> Outcome:
        return self.endpoints.reconcile(endpoint_name, deployment)

    def discard(self, staged: Staged) -> Outcome:
        return self.endpoints.discard(staged)

    def rollback(self, endpoint_name: str, to_version: str) -> Outcome:
        return self.endpoints.rollback(endpoint_name, to_version)

    def remove(self, endpoint_name: str) -> None:
        self.endpoints.remove(endpoint_name)

    def remove_by_prefix(self, prefix: str) -> dict[str, list[str]]:
        return self.endpoints.remove_by_prefix(prefix)

    def describe(self, endpoint_name: str) -> dict[str, Any]:
        return self.endpoints.describe(endpoint_name)

    def batch_transform(self, job: TrainingJob, request: Any) -> PredictReport:
        """``predict --backend sagemaker``: a Batch Transform job (``batch_transform``)."""
        from pipeline.backends.sagemaker.batch_transform import BatchTransform

        return BatchTransform(self.aws, self.store).run(job, request)
