"""SageMaker's scikit-learn container, emulated at moto's boundary.

moto records SageMaker calls but runs nothing: a training job is ``Completed``
at once with no output, an endpoint is ``InService`` at once, and
``invoke_endpoint`` answers from a queue. ``SageMakerEmulation`` patches moto's
classes (so it applies in-process under ``mock_aws`` and inside a
``ThreadedMotoServer`` started in the test process alike) to do what the
container would:

- Training: ``create_training_job`` runs the entry point (``sagemaker_program``)
  from the uploaded ``sourcedir.tar.gz`` in a fresh Python process, as the
  sagemaker-training toolkit does: channels downloaded, ``SM_MODEL_DIR``,
  ``SM_OUTPUT_DATA_DIR``, ``SM_CHANNEL_*``, ``SM_HPS``, hyperparameters
  JSON-decoded and passed as ``--name value`` arguments, ``sagemaker_*`` ones
  left out. It then puts ``model.tar.gz`` and ``output.tar.gz`` under
  ``<S3OutputPath>/<job>/output/``. The job reads ``InProgress`` once, then
  ``Completed``; a failing script makes it ``Failed`` with the script's last
  error line in ``FailureReason``.
- Serving: ``invoke_endpoint`` loads the endpoint's current model
  (``ModelDataUrl``, ``SAGEMAKER_PROGRAM``, ``SAGEMAKER_SUBMIT_DIRECTORY``; the
  program imported with the other files of the sourcedir importable as
  top-level modules, as the container's pip install of the sourcedir makes
  them) and answers as the scikit-learn container's single-model server does
  (``sagemaker_sklearn_container.serving`` over ``sagemaker_containers``'
  ``Transformer`` and Flask ``Worker``): through the program's
  ``transform_fn`` if it has one (a program with ``transform_fn`` and any of
  ``input_fn``/``predict_fn``/``output_fn`` is refused), else through
  ``input_fn -> predict_fn -> output_fn``. The body reaches the hooks as text
  when the Content-Type is exactly ``application/json`` or ``text/csv``
  (decoded with replacement characters, as werkzeug does), else as bytes. Any
  exception a hook raises is a 500, whatever status it carries (the container
  re-raises it as its own ``ClientError``); a ``(body, content_type)`` result
  is a 200; a response object is sent with its own status. A 4xx/5xx from the
  container is a ``ModelError`` with that ``OriginalStatusCode`` and the body
  as ``OriginalMessage``. The answer names the production variant.
- Data capture: moto stores an endpoint config's ``DataCaptureConfig`` but captures
  nothing, so a test could not see that the pipeline's capture settings work. An
  answered request is written as SageMaker's capture does: sampled at random at
  ``InitialSamplingPercentage``, the input and/or output per ``CaptureOptions`` (text
  for the ``CaptureContentTypeHeader`` types, else base64), ``eventId`` a fresh uuid and
  ``inferenceId`` only when the client sent one, as one JSON line under
  ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl``
  (SageMaker batches several lines per file; one per file is the same layout).
  Training is deterministic (the random seed is a hyperparameter), so a run with the
  same script, data and hyperparameters as an earlier one in this test session
  reuses that run's outputs instead of fitting again.
- Endpoints read ``Creating``/``Updating`` once before they settle.
- moto 5.2.5 has no ``update_endpoint`` and no ``stop_training_job``; both are
  added here (the endpoint swaps to the new config when it settles; a stopped
  job reads ``Stopped``).
- Variants (SHADOW routing needs them; moto keeps the names and weights but routes
  nothing): ``invoke_endpoint`` picks a production variant by weight, or the one named
  in ``TargetVariant`` (a production variant only, as the runtime's reference says);
  moto drops an endpoint config's ``ShadowProductionVariants``, so they are kept here
  (one production and one shadow variant, as SageMaker allows) and shown by both
  describes; a request is copied to the shadow at the share its weight is of the
  production variant's, answered there, captured under the shadow's name with the
  request's ``eventId`` and ``inferenceId``, and its answer dropped.
- Metrics: moto's SageMaker publishes nothing to CloudWatch, so each answer (a
  shadow's too) puts SageMaker's per-variant invocation metrics into moto's
  CloudWatch: ``Invocations``, ``Invocation4XXErrors``, ``Invocation5XXErrors`` and
  ``ModelLatency`` (microseconds), namespace ``AWS/SageMaker``, dimensions
  ``EndpointName`` and ``VariantName``, timestamped by ``clock`` (a test can set it).
  moto's CloudWatch computes no percentile statistic; ``pNN`` is added (nearest rank).

Faults a test can ask for: a failing endpoint creation, an update that AWS
rolls back, a model whose hooks fail at request time, and an error (access
denied, throttling, a limit) returned by any SageMaker API action.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from moto.cloudwatch.models import Statistics, cloudwatch_backends
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.s3.models import s3_backends
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """The model's container Environment, as os.environ, while its hooks load the model."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

UTF8_TYPES = ("application/json", "text/csv")  # sagemaker_containers hands exactly these to the hooks as text
# What Flask answers when a view raises: the body SageMaker passes on for any hook exception.
FLASK_500_BODY = ('<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>500 Internal Server Error</title>\n'
                  '<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to '
                  'complete your request. Either the server is overloaded or there is an error in the '
                  'application.</p>\n')
HOOKS = ("input_fn", "predict_fn", "output_fn")
# Imports of served programs change sys.path and sys.modules: one at a time.
_IMPORT_LOCK = threading.Lock()


def split_s3_uri(uri: str) -> tuple[str, str]:
    assert uri.startswith("s3://"), uri
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line
    return lines[-1] if lines else "no output"


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """The sagemaker-training toolkit's ``mapping.to_cmd_args``: sorted ``--key value``, dicts as k=v,k=v."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        args += [f"--{key}", str(value)]
    return args


def decode_hyperparameter(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


@dataclass
class TrainingRun:
    """One emulated run of the entry point: what the container was given and what it did."""

    job_name: str
    argv: list[str]
    env: dict[str, str]
    returncode: int
    stdout: str
    stderr: str
    reused: bool = False  # the outputs of an identical earlier run


# Outputs of finished runs by a digest of (script, data, hyperparameters): returncode, stdout, stderr, tarballs.
_RUNS: dict[str, tuple[int, str, str, bytes, bytes]] = {}


@dataclass
class ServedModel:
    module: Any
    model: Any
    variant: str


@dataclass
class _Pending:
    """What an endpoint or training job becomes when next described."""

    apply: Any
    seen: bool = False


@dataclass(frozen=True)
class Answered:
    """One request a variant answered, as its metrics were published."""

    endpoint: str
    variant: str
    status: int
    latency_microseconds: float
    inference_id: str | None
    shadow: bool
    at: datetime


def nearest_rank(values: list[float], percent: float) -> float:
    """The ``percent``-th percentile by nearest rank: the smallest value with ``percent``% of them at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


class MotoPatches:
    """Methods of moto's classes replaced for an emulation's lifetime, and put back as they were (or removed)."""

    def __init__(self) -> None:
        self._saved: list[tuple[type, str, Any]] = []

    def set(self, owner: type, name: str, value: Any) -> None:
        self._saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, value in reversed(self._saved):
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
        self._saved.clear()


@dataclass
class SageMakerEmulation:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sagemaker-emulation-")))
    training_runs: list[TrainingRun] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    invocations: int = 0
    answered: list[Answered] = field(default_factory=list)  # every variant's answers, shadows' included
    clock: Any = field(default=lambda: datetime.now(UTC))  # the metrics' and captures' timestamps

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._pending: dict[tuple[str, str, str, str], _Pending] = {}
        self._served: dict[tuple[str, ...], ServedModel] = {}
        self._creation_faults: list[str] = []
        self._update_faults: list[tuple[str, bool]] = []
        self._broken_models: dict[str, str] = {}
        self._model_faults: list[str] = []
        self._hold_training = False
        self.stopped_training_jobs: list[str] = []
        self._injected: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._saved = MotoPatches()

    # ----------------------------------------------------------------- faults a test can ask for
    def fail_next_creation(self, reason: str) -> None:
        """The next new endpoint ends ``Failed`` with ``reason``."""
        self._creation_faults.append(reason)

    def fail_next_update(self, reason: str, keep_new_config: bool = False) -> None:
        """The next update ends ``InService`` with ``FailureReason``; AWS rolled it back unless ``keep_new_config``."""
        self._update_faults.append((reason, keep_new_config))

    def break_next_model(self, message: str = "ModuleNotFoundError: No module named 'sklearn.linear_model._base'") \
            -> None:
        """Every request to the next model created fails in the container (a 500 from its hooks), as when the
        container's libraries cannot run the model; the endpoint itself stays healthy."""
        self._model_faults.append(message)

    def hold_training_jobs(self) -> None:
        """Training jobs stay ``InProgress`` until stopped (a job slower than the pipeline's timeout)."""
        self._hold_training = True

    def inject_error(self, action: str, code: str, message: str, times: int = 1) -> None:
        """The next ``times`` calls of SageMaker API ``action`` (snake_case) fail with ``code``."""
        self._injected[action] += [(code, message)] * times

    # ----------------------------------------------------------------- installing
    def install(self) -> SageMakerEmulation:
        emulation = self
        original_create_job = SageMakerModelBackend.create_training_job
        original_describe_job = SageMakerModelBackend.describe_training_job
        original_create_endpoint = SageMakerModelBackend.create_endpoint
        original_describe_endpoint = SageMakerModelBackend.describe_endpoint
        original_call_action = SageMakerResponse.call_action
        original_create_model = SageMakerModelBackend.create_model
        original_create_endpoint_config = SageMakerResponse.create_endpoint_config
        original_statistic = Statistics.get_statistics_for_type

        # moto 5.2.5 drops ShadowProductionVariants; SHADOW routing puts the candidate there.
        def create_endpoint_config_response(response: SageMakerResponse) -> Any:
            shadows = response._get_param("ShadowProductionVariants") or []
            if shadows and (len(response._get_param("ProductionVariants") or []) != 1 or len(shadows) != 1):
                raise ValidationError(message="An endpoint config with ShadowProductionVariants must have exactly "
                                              "one production variant and one shadow variant.")
            result = original_create_endpoint_config(response)
            if shadows:
                config = response.sagemaker_backend.endpoint_configs[response._get_param("EndpointConfigName")]
                config.validate_production_variants(shadows)
                config.shadow_production_variants = shadows
            return result

        # moto's CloudWatch computes no percentile; the SHADOW bake reads ModelLatency at p95.
        def statistic(stats: Statistics, stat: str) -> Any:
            if stat.startswith("p") and stat[1:].replace(".", "", 1).isdigit():
                values = stats.metric_single_values_list
                return nearest_rank(values, float(stat[1:])) if values else None
            return original_statistic(stats, stat)

        def create_model(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
            model = original_create_model(backend, *args, **kwargs)
            with emulation._lock:
                if emulation._model_faults:
                    emulation._broken_models[model.model_name] = emulation._model_faults.pop(0)
            return model

        def create_training_job(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
            job = original_create_job(backend, *args, **kwargs)
            emulation._train(backend, job)
            return job

        def describe_training_job(backend: SageMakerModelBackend, training_job_name: str) -> Any:
            emulation._settle(backend, "training-job", training_job_name)
            return original_describe_job(backend, training_job_name)

        def create_endpoint(backend: SageMakerModelBackend, *args: Any, **kwargs: Any) -> FakeEndpoint:
            endpoint = original_create_endpoint(backend, *args, **kwargs)
            emulation._created(backend, endpoint)
            return endpoint

        def describe_endpoint(backend: SageMakerModelBackend, endpoint_name: str) -> Any:
            emulation._settle(backend, "endpoint", endpoint_name)
            return original_describe_endpoint(backend, endpoint_name)

        # moto 5.2.5 implements no UpdateEndpoint; the pipeline's blue/green deployments need it.
        def update_endpoint(backend: SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str,
                            deployment_config: dict[str, Any] | None = None) -> FakeEndpoint:
            return emulation._update(backend, endpoint_name, endpoint_config_name, deployment_config)

        def update_endpoint_response(response: SageMakerResponse) -> ActionResult:
            endpoint = response.sagemaker_backend.update_endpoint(
                endpoint_name=response._get_param("EndpointName"),
                endpoint_config_name=response._get_param("EndpointConfigName"),
                deployment_config=response._get_param("DeploymentConfig"))
            return ActionResult({"EndpointArn": endpoint.arn})

        # Nor StopTrainingJob, which the pipeline calls when a job outlasts its timeout.
        def stop_training_job(backend: SageMakerModelBackend, training_job_name: str) -> None:
            emulation._stop(backend, training_job_name)

        def stop_training_job_response(response: SageMakerResponse) -> ActionResult:
            response.sagemaker_backend.stop_training_job(training_job_name=response._get_param("TrainingJobName"))
            return ActionResult({})

        def call_action(response: SageMakerResponse) -> Any:
            from moto.core.utils import camelcase_to_underscores

            action = camelcase_to_underscores(response._get_action())
            with emulation._lock:
                injected = emulation._injected.get(action)
                fault = injected.pop(0) if injected else None
            if fault:
                code, message = fault
                status = 400
                body = json.dumps({"__type": code, "message": message})
                return status, {"status": status, "Content-Type": "application/x-amz-json-1.1",
                                "x-amzn-ErrorType": code}, body
            return original_call_action(response)

        def invoke_endpoint(response: SageMakerRuntimeResponse) -> Any:
            return emulation._invoke(response)

        self._patch(SageMakerModelBackend, "create_training_job", create_training_job)
        self._patch(SageMakerModelBackend, "describe_training_job", describe_training_job)
        self._patch(SageMakerModelBackend, "create_endpoint", create_endpoint)
        self._patch(SageMakerModelBackend, "create_model", create_model)
        self._patch(SageMakerModelBackend, "describe_endpoint", describe_endpoint)
        self._patch(SageMakerModelBackend, "update_endpoint", update_endpoint)
        self._patch(SageMakerResponse, "update_endpoint", update_endpoint_response)
        self._patch(SageMakerModelBackend, "stop_training_job", stop_training_job)
        self._patch(SageMakerResponse, "stop_training_job", stop_training_job_response)
        self._patch(SageMakerResponse, "call_action", call_action)
        self._patch(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
        self._patch(SageMakerResponse, "create_endpoint_config", create_endpoint_config_response)
        self._patch(Statistics, "get_statistics_for_type", statistic)
        return self

    def _patch(self, owner: type, name: str, value: Any) -> None:
        self._saved.set(owner, name, value)

    def uninstall(self) -> None:
        self._saved.restore()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SageMakerEmulation:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # ----------------------------------------------------------------- state changes
    def _key(self, backend: SageMakerModelBackend, kind: str, name: str) -> tuple[str, str, str, str]:
        return (backend.account_id, backend.region_name, kind, name)

    def _settle(self, backend: SageMakerModelBackend, kind: str, name: str) -> None:
        """A resource reads its in-between status once, then what it became."""
        with self._lock:
            pending = self._pending.get(self._key(backend, kind, name))
            if pending is None:
                return
            if not pending.seen:
                pending.seen = True
                return
            del self._pending[self._key(backend, kind, name)]
            pending.apply()

    def _created(self, backend: SageMakerModelBackend, endpoint: FakeEndpoint) -> None:
        with self._lock:
            fault = self._creation_faults.pop(0) if self._creation_faults else None
            endpoint.endpoint_status = "Creating"

            def settle() -> None:
                endpoint.endpoint_status = "Failed" if fault else "InService"
                endpoint.failure_reason = fault
                endpoint.last_modified_time = utcnow()
                self._show_shadow(endpoint, backend.endpoint_configs[endpoint.endpoint_config_name])

            self._pending[self._key(backend, "endpoint", endpoint.endpoint_name)] = _Pending(settle)

    def _update(self, backend: SageMakerModelBackend, name: str, config_name: str,
                deployment_config: dict[str, Any] | None) -> FakeEndpoint:
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            arn = FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)
            raise ValidationError(message=f"Could not find endpoint \"{arn}\".")
        config = backend.endpoint_configs.get(config_name)
        if config is None:
            raise ValidationError(message=f"Could not find endpoint configuration \"{config_name}\".")
        with self._lock:
            if endpoint.endpoint_status != "InService":
                raise ValidationError(message=f"Cannot update in-progress endpoint \"{endpoint.arn}\".")
            fault = self._update_faults.pop(0) if self._update_faults else None
            self.updates.append({"endpoint": name, "endpoint_config": config_name,
                                 "from_endpoint_config": endpoint.endpoint_config_name,
                                 "deployment_config": deployment_config})
            endpoint.endpoint_status = "Updating"
            endpoint.failure_reason = None

            def settle() -> None:
                if fault is None or fault[1]:
                    endpoint.endpoint_config_name = config_name
                    endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
                    self._show_shadow(endpoint, config)
                endpoint.endpoint_status = "InService"
                endpoint.failure_reason = fault[0] if fault else None
                endpoint.last_modified_time = utcnow()

            self._pending[self._key(backend, "endpoint", name)] = _Pending(settle)
        return endpoint

    @staticmethod
    def _show_shadow(endpoint: FakeEndpoint, config: Any) -> None:
        """describe_endpoint lists the shadow variant of the config the endpoint runs (moto knows none)."""
        shadows = getattr(config, "shadow_production_variants", None)
        if shadows:
            endpoint.shadow_production_variants = endpoint._process_production_variants(shadows)
        elif hasattr(endpoint, "shadow_production_variants"):
            del endpoint.shadow_production_variants

    # ----------------------------------------------------------------- S3 inside moto
    @staticmethod
    def _s3(account: str) -> Any:
        return s3_backends[account]["aws"]

    def _read(self, account: str, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        found = self._s3(account).get_object(bucket, key)
        if found is None:
            raise FileNotFoundError(uri)
        return bytes(found.value)

    def _download_prefix(self, account: str, uri: str, target: Path) -> None:
        bucket_name, prefix = split_s3_uri(uri)
        bucket = self._s3(account).get_bucket(bucket_name)
        for key in list(bucket.keys.keys()):
            if key.startswith(prefix) and not key.endswith("/"):
                path = target / key[len(prefix):].lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._read(account, f"s3://{bucket_name}/{key}"))

    @staticmethod
    def _untar(data: bytes, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.extractall(target, filter="data")

    @staticmethod
    def _tar(source: Path) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path in sorted(source.rglob("*")):
                archive.add(path, arcname=str(path.relative_to(source)), recursive=False)
        return buffer.getvalue()

    # ----------------------------------------------------------------- the training container
    def _train(self, backend: SageMakerModelBackend, job: Any) -> None:
        account = backend.account_id
        name = job.training_job_name
        hyperparameters = {key: decode_hyperparameter(value) for key, value in (job.hyper_parameters or {}).items()}
        program = hyperparameters["sagemaker_program"]
        user_hyperparameters = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
        base = self.root / "training" / name
        shutil.rmtree(base, ignore_errors=True)
        code, model_dir = base / "code", base / "model"
        output_dir, output_data = base / "output", base / "output" / "data"
        for directory in (code, model_dir, output_data):
            directory.mkdir(parents=True)
        self._untar(self._read(account, hyperparameters["sagemaker_submit_directory"]), code)
        channels = []
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        for channel in job.input_data_config:
            channel_dir = base / "input" / "data" / channel["ChannelName"]
            channel_dir.mkdir(parents=True)
            self._download_prefix(account, channel["DataSource"]["S3DataSource"]["S3Uri"], channel_dir)
            channels.append(channel["ChannelName"])
            env[f"SM_CHANNEL_{channel['ChannelName'].upper()}"] = str(channel_dir)
        args = to_cmd_args(user_hyperparameters)
        env.update({
            "SM_MODEL_DIR": str(model_dir), "SM_OUTPUT_DIR": str(output_dir), "SM_OUTPUT_DATA_DIR": str(output_data),
            "SM_INPUT_DIR": str(base / "input"), "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps(user_hyperparameters), "SM_USER_ARGS": json.dumps(args),
            "SM_CURRENT_HOST": "algo-1", "SM_HOSTS": json.dumps(["algo-1"]), "SM_NUM_GPUS": "0",
            "SM_NUM_CPUS": str(os.cpu_count() or 1), "SM_MODULE_NAME": Path(program).stem,
            "SM_MODULE_DIR": hyperparameters["sagemaker_submit_directory"], "SM_USER_ENTRY_POINT": program,
            "SM_FRAMEWORK_MODULE": "sagemaker_sklearn_container.training:main",
        })
        env.update({f"SM_HP_{key.upper()}": value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    for key, value in user_hyperparameters.items()})
        argv = [sys.executable, program, *args]
        digest = hashlib.sha256(json.dumps(args).encode())
        for path in sorted(p for p in base.rglob("*") if p.is_file() and model_dir not in p.parents):
            digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
        reused = digest.hexdigest() in _RUNS
        if not reused:
            # The container has no `pipeline` package: the script runs with only its own directory importable.
            result = subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True, timeout=300)
            done = result.returncode == 0
            _RUNS[digest.hexdigest()] = (result.returncode, result.stdout, result.stderr,
                                         self._tar(model_dir) if done else b"", self._tar(output_data) if done else b"")
        returncode, stdout, stderr, model_tar, output_tar = _RUNS[digest.hexdigest()]
        with self._lock:
            self.training_runs.append(TrainingRun(name, argv, env, returncode, stdout, stderr, reused))
        if returncode == 0:
            bucket, prefix = split_s3_uri(job.output_data_config["S3OutputPath"])
            prefix = f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""
            self._s3(account).put_object(bucket, f"{prefix}{name}/output/model.tar.gz", model_tar)
            self._s3(account).put_object(bucket, f"{prefix}{name}/output/output.tar.gz", output_tar)
            final = ("Completed", "Completed", None)
        else:
            line = last_error_line(stderr or stdout)
            final = ("Failed", "Failed", f"AlgorithmError: ExecuteUserScriptError: ExitCode {returncode} "
                                         f"ErrorMessage \"{line}\"")
        job.training_job_status, job.secondary_status = "InProgress", "Training"

        def settle() -> None:
            job.training_job_status, job.secondary_status, reason = final
            if reason:
                job.failure_reason = reason
            job.training_end_time = job.last_modified_time = utcnow()

        with self._lock:
            if not self._hold_training:
                self._pending[self._key(backend, "training-job", name)] = _Pending(settle)

    def _stop(self, backend: SageMakerModelBackend, name: str) -> None:
        job = backend.training_jobs.get(name)
        if job is None:
            raise ValidationError(message=f"Could not find training job '{name}'.")
        with self._lock:
            if job.training_job_status != "InProgress":
                raise ValidationError(message=f"The training job {name} is not in progress.")
            self._pending.pop(self._key(backend, "training-job", name), None)
            self.stopped_training_jobs.append(name)
            job.training_job_status = job.secondary_status = "Stopped"

    # ----------------------------------------------------------------- data capture
    @staticmethod
    def _sampled(config: Any) -> bool:
        """Whether a request is captured: drawn once per request, for its shadow copy as well."""
        capture = config.data_capture_config or {}
        if not capture or not capture.get("EnableCapture", True):
            return False
        return random.random() * 100 < capture["InitialSamplingPercentage"]

    def _capture(self, account: str, region: str, endpoint: FakeEndpoint, variant: str, raw: bytes,
                 content_type: str, body: Any, mimetype: str, inference_id: str | None, event_id: str) -> None:
        config = sagemaker_backends[account][region].endpoint_configs[endpoint.endpoint_config_name]
        capture = config.data_capture_config or {}
        modes = {option["CaptureMode"] for option in capture["CaptureOptions"]}
        header = capture.get("CaptureContentTypeHeader") or {}
        answer = body if isinstance(body, bytes) else str(body).encode()
        data: dict[str, Any] = {}
        if modes & {"Input", "InputAndOutput"}:
            data["endpointInput"] = _captured(raw, content_type, "INPUT", header)
        if modes & {"Output", "InputAndOutput"}:
            data["endpointOutput"] = _captured(answer, mimetype, "OUTPUT", header)
        now = self.clock()
        metadata = {"eventId": event_id,
                    "inferenceTime": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"}
        if inference_id:
            metadata["inferenceId"] = inference_id
        line = json.dumps({"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}) + "\n"
        bucket, prefix = split_s3_uri(capture["DestinationS3Uri"])
        key = "/".join(part for part in (prefix.strip("/"), endpoint.endpoint_name, variant,
                                         f"{now:%Y/%m/%d/%H}", f"{now:%M-%S}-{now.microsecond // 1000:03d}-"
                                                               f"{uuid.uuid4()}.jsonl") if part)
        self._s3(account).put_object(bucket, key, line.encode())

    # ----------------------------------------------------------------- the serving container
    def _model_for(self, account: str, region: str, variant: dict[str, Any]) -> tuple[str, ServedModel]:
        backend = sagemaker_backends[account][region]
        model_name = variant["ModelName"]
        container = backend._models[model_name].primary_container
        environment = container.get("Environment", {})
        key = (container["ModelDataUrl"], environment["SAGEMAKER_SUBMIT_DIRECTORY"], environment["SAGEMAKER_PROGRAM"],
               variant["VariantName"])
        with self._lock:
            if key not in self._served:
                base = Path(tempfile.mkdtemp(dir=self.root, prefix="serving-"))
                self._untar(self._read(account, container["ModelDataUrl"]), base / "model")
                self._untar(self._read(account, environment["SAGEMAKER_SUBMIT_DIRECTORY"]), base / "code")
                module = import_program(base / "code", environment["SAGEMAKER_PROGRAM"],
                                        f"served_{base.name.replace('-', '_')}")
                if getattr(module, "transform_fn", None) and any(getattr(module, hook, None) for hook in HOOKS):
                    # sagemaker_sklearn_container.serving raises UserError: the worker never serves.
                    raise RuntimeError("UserError: Cannot use transform_fn implementation with input_fn, predict_fn, "
                                       "and/or output_fn")
                # The container runs with the model's Environment; model_fn reads the recorded hash there.
                with _environment(environment):
                    model = module.model_fn(str(base / "model"))
                self._served[key] = ServedModel(module, model, variant["VariantName"])
            return model_name, self._served[key]

    def _invoke(self, response: SageMakerRuntimeResponse) -> Any:
        account, region = response.current_account, response.region
        name = unquote(response.path.split("/")[2])
        endpoint = sagemaker_backends[account][region].endpoints.get(name)
        with self._lock:
            self.invocations += 1
        if endpoint is None:
            return _runtime_error(400, "ValidationError", f"Endpoint {name} of account {account} not found.")
        if endpoint.endpoint_status not in ("InService", "Updating", "SystemUpdating", "RollingBack"):
            return _runtime_error(400, "ValidationError",
                                  f"Endpoint {name} of account {account} is {endpoint.endpoint_status}.")
        content_type = response.headers.get("Content-Type") or "application/json"
        accept = response.headers.get("Accept")
        if not accept or accept == "*/*":
            accept = "application/json"
        raw = response.raw_body if isinstance(response.raw_body, bytes) else str(response.raw_body or "").encode()
        config = sagemaker_backends[account][region].endpoint_configs[endpoint.endpoint_config_name]
        target = response.headers.get("X-Amzn-SageMaker-Target-Variant")
        variant = self._route(config, target)
        if variant is None:
            return _runtime_error(400, "ValidationError", f"Variant {target} of endpoint {name} is not a production "
                                                          f"variant of endpoint config {config.endpoint_config_name}.")
        inference_id = response.headers.get("X-Amzn-SageMaker-Inference-Id")
        event_id, sampled = str(uuid.uuid4()), self._sampled(config)
        status, body, mimetype = self._answer(account, region, endpoint, variant, raw, content_type, accept,
                                              inference_id, event_id, sampled, shadow=False)
        for shadow in getattr(config, "shadow_production_variants", None) or []:
            share = float(shadow.get("InitialVariantWeight", 1.0)) / float(variant.get("InitialVariantWeight", 1.0))
            if random.random() < share:  # a copy of the request, answered off the response path
                self._answer(account, region, endpoint, shadow, raw, content_type, accept, inference_id, event_id,
                             sampled, shadow=True)
        if status >= 400:  # SageMaker passes a container error on as a ModelError
            text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body)
            return _runtime_error(424, "ModelError",
                                  f"Received {'client' if status < 500 else 'server'} error ({status}) from primary "
                                  f"with message \"{text}\". See https://{region}.console.aws.amazon.com/cloudwatch/ "
                                  f"in account {account} for more information.",
                                  OriginalStatusCode=status, OriginalMessage=text,
                                  LogStreamArn=f"arn:aws:logs:{region}:{account}:log-group:"
                                               f"/aws/sagemaker/Endpoints/{name}")
        return 200, {"status": 200, "Content-Type": mimetype,
                     "x-Amzn-Invoked-Production-Variant": variant["VariantName"]}, body

    @staticmethod
    def _route(config: Any, target: str | None) -> dict[str, Any] | None:
        """The production variant that answers: the one ``TargetVariant`` names, else one drawn by weight."""
        variants = config.production_variants
        if target:
            return next((variant for variant in variants if variant["VariantName"] == target), None)
        weights = [float(variant.get("InitialVariantWeight", 1.0)) for variant in variants]
        if not any(weights):
            return variants[0]
        return random.choices(variants, weights=weights)[0]

    def _answer(self, account: str, region: str, endpoint: FakeEndpoint, variant: dict[str, Any], raw: bytes,
                content_type: str, accept: str, inference_id: str | None, event_id: str, sampled: bool,
                shadow: bool) -> tuple[int, Any, str]:
        """One variant's answer to a request: served, captured when sampled and answered, its metrics published."""
        started = time.perf_counter()
        try:
            model_name, served = self._model_for(account, region, variant)
            if model_name in self._broken_models:
                raise RuntimeError(self._broken_models[model_name])
        except Exception:  # the worker could not load the program or the model
            status, body, mimetype = 500, FLASK_500_BODY, "text/html"
        else:
            status, body, mimetype = serve_request(served, raw, content_type, accept)
            if status < 400 and sampled:
                self._capture(account, region, endpoint, variant["VariantName"], raw, content_type, body, mimetype,
                              inference_id, event_id)
        latency = (time.perf_counter() - started) * 1e6
        self._publish(account, region, endpoint.endpoint_name, variant["VariantName"], status, latency,
                      inference_id, shadow)
        return status, body, mimetype

    def _publish(self, account: str, region: str, endpoint: str, variant: str, status: int, latency: float,
                 inference_id: str | None, shadow: bool) -> None:
        """SageMaker's per-variant invocation metrics of one answer, into moto's CloudWatch."""
        now = self.clock()
        timestamp = now.astimezone(UTC).replace(tzinfo=None)  # moto keeps naive UTC times
        dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        data = [{"MetricName": "Invocations", "Value": 1.0, "Unit": "None"},
                {"MetricName": "Invocation4XXErrors", "Value": float(400 <= status < 500), "Unit": "None"},
                {"MetricName": "Invocation5XXErrors", "Value": float(status >= 500), "Unit": "None"},
                {"MetricName": "ModelLatency", "Value": latency, "Unit": "Microseconds"}]
        cloudwatch_backends[account][region].put_metric_data(
            "AWS/SageMaker", [{**datum, "Dimensions": dimensions, "Timestamp": timestamp} for datum in data])
        with self._lock:
            self.answered.append(Answered(endpoint, variant, status, latency, inference_id, shadow, now))


def _captured(data: bytes, content_type: str, mode: str, header: dict[str, list[str]]) -> dict[str, str]:
    """One side of a capture record: text for the content types the config lists as CSV or JSON, else base64."""
    encoding = ("CSV" if content_type in header.get("CsvContentTypes", []) else
                "JSON" if content_type in header.get("JsonContentTypes", []) else "BASE64")
    text = data.decode("utf-8", errors="replace") if encoding != "BASE64" else base64.b64encode(data).decode()
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def import_program(code: Path, program: str, module_name: str) -> Any:
    """Import ``program`` from an unpacked sourcedir with its sibling files importable as top-level modules (the
    container pip-installs the sourcedir, so ``import inference`` works there), without leaving them in
    ``sys.modules`` or ``sys.path`` for the next model."""
    siblings = {path.stem for path in code.glob("*.py")}
    with _IMPORT_LOCK:
        saved = {name: sys.modules.pop(name) for name in siblings if name in sys.modules}
        sys.path.insert(0, str(code))
        try:
            spec = importlib.util.spec_from_file_location(module_name, code / program)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(code))
            for name in siblings:
                sys.modules.pop(name, None)
            sys.modules.update(saved)
    return module


def serve_request(served: ServedModel, raw: bytes, content_type: str, accept: str) -> tuple[int, Any, str]:
    """What the container's Flask worker answers to one ``/invocations`` request: status, body, content type.

    As ``sagemaker_containers``' ``Transformer.transform``: the hooks are wrapped so that any exception becomes a
    500; a tuple result is ``(body, content_type)`` with 200; a response object is sent as it is, status included.
    """
    module = served.module
    content: Any = raw.decode("utf-8", errors="replace") if content_type in UTF8_TYPES else raw
    try:
        transform_fn = getattr(module, "transform_fn", None)
        if transform_fn is not None:
            result = transform_fn(served.model, content, content_type, accept)
        else:
            data = module.input_fn(content, content_type)
            result = module.output_fn(module.predict_fn(data, served.model), accept)
    except Exception:
        return 500, FLASK_500_BODY, "text/html"
    if isinstance(result, tuple):
        return 200, result[0], result[1]
    status = getattr(result, "status_code", None)
    if status is not None and hasattr(result, "get_data"):  # a Flask/werkzeug response
        return int(status), result.get_data(), result.mimetype or accept
    return 200, result, accept


def _runtime_error(status: int, code: str, message: str, **fields: Any) -> tuple[int, dict[str, Any], str]:
    body = json.dumps({"message": message, **fields})
    return status, {"status": status, "x-amzn-ErrorType": code, "Content-Type": "application/json"}, body


class _Missing:
    pass


_MISSING = _Missing()

__all__ = ["SageMakerEmulation", "TrainingRun", "import_program", "serve_request", "to_cmd_args"]
