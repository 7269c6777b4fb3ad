"""SageMaker Batch Transform, emulated at moto's boundary beside ``tests/sagemaker_emulation.py``.

moto 5.2.6 records a transform job as ``Completed`` at once and runs nothing; it has no ``StopTransformJob``.
``TransformEmulation`` makes ``create_transform_job`` do what SageMaker does with the scikit-learn container:
every object under ``TransformInput``'s S3 prefix is split by line (``SplitType=Line``) into mini-batches of at
most ``MaxPayloadInMB`` (``BatchStrategy=MultiRecord``), each sent to the model's program as the serving container
would answer an invocation (``serve_request``: ``transform_fn`` of ``SAGEMAKER_PROGRAM`` from
``SAGEMAKER_SUBMIT_DIRECTORY``, the model from ``ModelDataUrl``, with the model's ``Environment``), with
``TransformOutput``'s ``Accept``; the answers are joined with a line end after each (``AssembleWith=Line``) into
``<S3OutputPath>/<input file name>.out``. A mini-batch answered with a 4xx or 5xx fails the job, as SageMaker does
("ClientError: ..."). The job reads ``InProgress`` once, then ``Completed`` or ``Failed``; ``hold`` keeps every
job ``InProgress`` until it is stopped (``stop_transform_job``, added here: ``Stopped``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from tests.sagemaker_emulation import MotoPatches, SageMakerEmulation, _Pending, serve_request, split_s3_uri


@dataclass
class TransformEmulation:
    emulation: SageMakerEmulation
    jobs: list[dict[str, Any]] = field(default_factory=list)  # what each create_transform_job asked for
    batches: list[int] = field(default_factory=list)  # rows per mini-batch, over every job
    hold: bool = False
    stopped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._saved = MotoPatches()

    def install(self) -> TransformEmulation:
        emulation, transforms = self.emulation, self
        original_create = SageMakerModelBackend.create_transform_job
        original_describe = SageMakerModelBackend.describe_transform_job

        def create_transform_job(backend: SageMakerModelBackend, **kwargs: Any) -> Any:
            job = original_create(backend, **kwargs)
            transforms._run(backend, job)
            return job

        def describe_transform_job(backend: SageMakerModelBackend, transform_job_name: str) -> Any:
            emulation._settle(backend, "transform-job", transform_job_name)
            return original_describe(backend, transform_job_name)

        def stop_transform_job_response(response: SageMakerResponse) -> ActionResult:
            backend, name = response.sagemaker_backend, response._get_param("TransformJobName")
            job = backend.transform_jobs.get(name)
            if job is None or job.transform_job_status != "InProgress":
                raise ValidationError(message=f"The transform job {name} is not in progress.")
            with emulation._lock:
                emulation._pending.pop(emulation._key(backend, "transform-job", name), None)
            job.transform_job_status = "Stopped"
            transforms.stopped.append(name)
            return ActionResult({})

        self._patch(SageMakerModelBackend, "create_transform_job", create_transform_job)
        self._patch(SageMakerModelBackend, "describe_transform_job", describe_transform_job)
        self._patch(SageMakerResponse, "stop_transform_job", stop_transform_job_response)
        return self

    def _patch(self, owner: type, name: str, value: Any) -> None:
        self._saved.set(owner, name, value)

    def uninstall(self) -> None:
        self._saved.restore()

    def __enter__(self) -> TransformEmulation:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _run(self, backend: SageMakerModelBackend, job: Any) -> None:
        account, region = backend.account_id, backend.region_name
        container = backend._models[job.model_name].primary_container
        self.jobs.append({"name": job.transform_job_name, "model": job.model_name, "input": job.transform_input,
                          "output": job.transform_output, "max_payload_mb": job.max_payload_in_mb,
                          "batch_strategy": job.batch_strategy, "environment": container.get("Environment", {})})
        _, served = self.emulation._model_for(account, region, {"ModelName": job.model_name,
                                                                "VariantName": "transform"})
        source = job.transform_input["DataSource"]["S3DataSource"]["S3Uri"]
        content_type = job.transform_input.get("ContentType") or "application/octet-stream"
        accept = job.transform_output.get("Accept") or "application/json"
        limit = int(job.max_payload_in_mb or 6) * 1024 * 1024
        bucket_name, prefix = split_s3_uri(source)
        s3 = self.emulation._s3(account)
        out_bucket, out_prefix = split_s3_uri(job.transform_output["S3OutputPath"])
        failure = None
        broken = self.emulation._broken_models.get(job.model_name)
        if broken:  # the container cannot run the model: every mini-batch is a 500
            failure = f"ClientError: See job logs for more information ({broken})"
        for key in ([] if failure else sorted(s3.get_bucket(bucket_name).keys.keys())):
            if not key.startswith(prefix) or key.endswith("/"):
                continue
            lines = self.emulation._read(account, f"s3://{bucket_name}/{key}").splitlines(keepends=True)
            answers, batch, size = [], [], 0
            for line in [*lines, None]:
                if line is not None and (not batch or size + len(line) <= limit):
                    batch.append(line)
                    size += len(line)
                    continue
                if batch:
                    self.batches.append(len(batch))
                    status, body, _ = serve_request(served, b"".join(batch), content_type, accept)
                    if status >= 400:
                        failure = (f"ClientError: See job logs for more information (the model answered {status} "
                                   f"to a mini-batch of {key})")
                        break
                    answers.append(body if isinstance(body, bytes) else str(body).encode())
                batch, size = ([line], len(line)) if line is not None else ([], 0)
            if failure:
                break
            name = key[len(prefix):].lstrip("/")
            s3.put_object(out_bucket, f"{out_prefix.rstrip('/')}/{name}.out".lstrip("/"),
                          b"".join(answer + b"\n" for answer in answers))
        job.transform_job_status = "InProgress"

        def settle() -> None:
            job.transform_job_status = "Failed" if failure else "Completed"
            job.failure_reason = failure or ""

        if not self.hold:
            with self.emulation._lock:
                self.emulation._pending[self.emulation._key(backend, "transform-job", job.transform_job_name)] = \
                    _Pending(settle)
