"""One typed, frozen configuration object, built and validated in one place.

Precedence, lowest first (each layer overrides the one before it):

1. defaults (the field defaults of ``PipelineConfig``)
2. the JSON config file (``--config-file``, else ``./pipeline_config.json`` if present)
3. environment variables (listed in ``ENV_VARS``)
4. the command line: flags (``--accuracy-threshold 0.9``) and ``--set KEY=VALUE``

Flags and ``--set`` are one layer: neither overrides the other. A key given by
both, or by ``--set`` twice, must have the same value; different values are a
contradiction and refused, because either choice would silently drop one of
them.

``load_config`` returns the config and, for every key, the source that set it
("default", "file:<path>", "env:<NAME>", "flag:<--name>", "set:<key>"); the
results JSON records those sources so a CI log shows why a threshold had the
value it had. Every validation error is one ``PipelineError`` line naming the
source, the key, the value and what was expected (``pipeline.config_messages``),
raised before any work starts. The rest of a run's request -- its mode and the
files it will write -- is checked by ``pipeline.run.invocation``.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.config_messages import describe_given, one_line, typed
from pipeline.errors import PipelineError
from pipeline.redaction import redact_password, redact_url

DEFAULT_CONFIG_FILE = "pipeline_config.json"

# The estimators pipeline/container/train.py builds, by the names the config uses. The container
# code cannot import this package, so a test checks that its ESTIMATORS table has exactly these.
MODEL_TYPES = ("logistic_regression", "random_forest", "gradient_boosting")
# The backends by name; pipeline/backends/__init__.py says where each lives (a test keeps the two in step),
# so the config knows the names without importing any backend.
BACKEND_NAMES = ("local", "sagemaker")
# How a tested version takes an endpoint's traffic, in SageMaker's words (pipeline/deployment/rollout.py).
TRAFFIC_ROUTINGS = ("ALL_AT_ONCE", "CANARY", "LINEAR", "SHADOW")


class PipelineConfig(BaseModel):
    """Every setting of a run. Frozen: phases read it, none changes it."""

    # allow_inf_nan=False: NaN or infinity in any float key is refused here, not met later as a
    # comparison that is always false (a NaN threshold) or a limit that is never reached.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    # --- the gate and the keys every pipeline_config.json may hold (the template in the repository) ---
    accuracy_threshold: float = Field(0.95, ge=0.0, le=1.0, description="deploy when the gated metric reaches this")
    minimum_accuracy: float = Field(0.90, ge=0.0, le=1.0, description="below this a model is rejected outright")
    aws_region: str = "us-east-1"
    instance_type: str = "ml.m5.large"
    auto_deploy_enabled: bool = True
    # No deployment of a model nobody approved (`approve JOB --reason TEXT`): the gate's deploy becomes
    # pending_approval (exit 0); --mode deployment of an unapproved model is held (exit 3).
    approval_required: bool = False
    rollback_on_failure: bool = True
    # pydantic checks ``pattern`` with Rust's regex engine, whose ``$`` matches only at the very end:
    # a trailing newline is refused (tests/test_settings.py holds it to that).
    model_name_prefix: str = Field("iris-classifier", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,40}$")
    endpoint_prefix: str = Field("iris-model", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,40}$")
    sns_topic_arn: str | None = None
    slack_webhook_url: SecretStr | None = None
    email_recipients: tuple[str, ...] = ()

    # --- backend ---
    backend: Literal[BACKEND_NAMES] | None = None  # type: ignore[valid-type]  # None: sagemaker with role_arn, else local
    role_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,128}$")

    # --- data and model ---
    dataset: str = "iris"  # "iris" (bundled with scikit-learn) or a path to a CSV file
    label_column: str = "target"
    allow_label_leakage: bool = False  # true: train even when a feature is a one-to-one relabelling of the label
    model_type: Literal[MODEL_TYPES] = "logistic_regression"  # type: ignore[valid-type]
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    gate_metric: str = "accuracy"
    gate_policy: Literal["point", "confident"] = "point"  # confident: the 95% interval decides, not the point value
    # Compared with the version the endpoint serves, on the same evaluation rows (docs/DECISIONS.md).
    champion_policy: Literal["not_worse", "better", "off"] = "not_worse"
    champion_margin: float = Field(0.0, ge=0.0, lt=1.0)
    champion_alpha: float = Field(0.05, gt=0.0, lt=1.0)
    champion_min_rows: int = Field(30, ge=1)
    test_size: float = Field(0.2, gt=0.0, lt=1.0)
    random_seed: int = Field(42, ge=0)
    cv_folds: int = Field(5, ge=2, le=50)

    # --- state and the local endpoint ---
    store_dir: str = ".mlops"
    # A store a team shares (PostgreSQL, postgresql://user@host:port/dbname) instead of SQLite in store_dir. A secret
    # for its password: shown only as postgresql://user:***@host/db (``public_dict``).
    store_url: SecretStr | None = None
    endpoint_host: str = "127.0.0.1"
    endpoint_port: int = Field(0, ge=0, le=65535)  # 0: a free port is chosen at first deployment
    endpoint_workers: int = Field(2, ge=1, le=64)
    max_payload_mb: float = Field(6.0, gt=0.0)
    # A request whose headers or body take longer than this to arrive is cut off (408 or a close), so slow
    # or idle clients cannot hold the endpoint's workers.
    client_timeout_seconds: float = Field(5.0, gt=0.0, allow_inf_nan=False)
    # Data capture (pipeline/serving/telemetry.py): the share of answered requests recorded with their
    # predictions (drawn at random per request; 0 records nothing), and the most the endpoint's capture
    # files may take on disk, oldest files deleted first. On SageMaker the percent is the endpoint
    # config's DataCaptureConfig sampling; the files go to S3 there (S3 keeps them), and the size bound is
    # what `monitor` downloads of them, newest hours first.
    capture_percent: int = Field(100, ge=0, le=100)
    capture_max_mb: float = Field(100.0, gt=0.0, allow_inf_nan=False)
    lock_timeout_seconds: float = Field(600.0, ge=0.0)  # how long a deployment waits for another one
    retain_versions: int = Field(5, ge=1)  # cleanup keeps the artifacts of this many newest versions per endpoint

    # --- progressive delivery (pipeline/deployment/rollout.py, docs/PROGRESSIVE_DELIVERY.md) ---
    # How a tested version takes the endpoint's traffic: all at once; CANARY (canary_percent for one
    # baking interval, then all); LINEAR (linear_step_percent more each interval until all); SHADOW (a copy
    # of every request, never answered by it). The names SageMaker uses; one key for both backends.
    traffic_routing: Literal[TRAFFIC_ROUTINGS] = "ALL_AT_ONCE"  # type: ignore[valid-type]
    canary_percent: int = Field(10, ge=1, le=99)
    linear_step_percent: int = Field(20, ge=1, le=99)
    baking_seconds: float = Field(60.0, gt=0.0, le=3600.0, allow_inf_nan=False)  # one analysis interval
    analysis_min_requests: int = Field(50, ge=1)  # live candidate requests an interval needs for a verdict
    insufficient_traffic: Literal["hold", "promote"] = "hold"  # too little traffic is never a pass unless "promote"
    max_error_rate_increase: float = Field(0.01, ge=0.0, le=1.0)  # candidate non-2xx rate over the serving one's
    max_latency_ratio: float = Field(2.0, ge=1.0, allow_inf_nan=False)  # candidate p95 / serving p95
    shadow_min_agreement: float = Field(0.95, ge=0.0, le=1.0)  # SHADOW: share of rows both versions predict alike

    # --- testing the live endpoint ---
    # Before the switch, this many of the endpoint's most recent captured client requests that the serving
    # version answered 2xx are sent to the candidate, which must answer each 2xx too (0: no replay).
    replay_requests: int = Field(200, ge=0, le=100_000)
    health_timeout_seconds: float = Field(60.0, gt=0.0)
    test_batch_size: int = Field(5000, ge=1)  # rows per request of the accuracy test (capped by max_payload_mb)
    performance_requests: int = Field(200, ge=1)
    performance_concurrency: int = Field(4, ge=1, le=256)
    min_success_rate: float = Field(1.0, ge=0.0, le=1.0)
    max_p95_latency_ms: float | None = Field(1000.0, gt=0.0)  # None: no latency limit
    request_timeout_seconds: float = Field(10.0, gt=0.0)

    # --- monitoring after deployment (`monitor`; pipeline/monitoring/drift.py, docs/MONITORING.md) ---
    # Fewer captured rows, or fewer effective ones than a one-standard-deviation move needs to be seen (repeated
    # rows are one row's evidence): "insufficient data", never "no drift".
    monitor_min_rows: int = Field(100, ge=1)
    monitor_min_labels: int = Field(30, ge=1)  # fewer labelled predictions: no verdict on live accuracy
    drift_alpha: float = Field(0.05, gt=0.0, lt=1.0)  # false-alarm rate of one monitor run, all tests together
    drift_psi_threshold: float = Field(0.1, ge=0.0)  # the smallest PSI that counts as a move
    drift_missing_rate_threshold: float = Field(0.05, ge=0.0, le=1.0)
    drift_out_of_range_threshold: float = Field(0.05, ge=0.0, le=1.0)
    drift_prediction_threshold: float = Field(0.1, ge=0.0, le=1.0)
    drift_wrong_width_threshold: float = Field(0.01, ge=0.0, le=1.0)

    # --- notifications (pipeline/notifications/) ---
    notify_events: tuple[str, ...] = ("gate_decision", "tests_failed", "rolled_back", "rollback_failed",
                                      "pipeline_finished", "drift_detected", "live_accuracy_breach",
                                      "approval_needed")
    notify_strict: bool = False  # true: a notification that was not delivered fails the run (exit 1)
    notification_timeout_seconds: float = Field(5.0, gt=0.0)
    notification_retries: int = Field(3, ge=0, le=10)
    # the most a run spends delivering notifications, retries and waits included; delivery runs in the background
    notification_budget_seconds: float = Field(10.0, gt=0.0, allow_inf_nan=False)

    # --- SageMaker (pipeline/backends/sagemaker/) ---
    s3_bucket: str | None = None  # None: the SDK's convention, sagemaker-<region>-<account>
    sklearn_framework_version: str = "1.9-0"  # the container's scikit-learn matches requirements.txt, for parity
    training_instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1)
    baking_period_minutes: int = Field(0, ge=0, le=120)
    rollback_alarm_names: tuple[str, ...] = ()
    sagemaker_timeout_minutes: float = Field(60.0, gt=0.0)

    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: str | None = None  # None: /tmp/mlops_pipeline_<timestamp>.log
    tmp_retention_count: int = Field(20, ge=0)  # default-named logs/results kept in /tmp per kind; 0: keep all

    @field_validator("endpoint_host")
    @classmethod
    def _local_ipv4_or_localhost(cls, value: str) -> str:
        """The local endpoint binds here and clients call ``http://<host>:<port>``: an address that cannot
        be bound, or an IPv6 literal (which needs brackets in a URL), would fail only at the first deployment."""
        if value != "localhost":
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ValueError("expected an IPv4 address such as 127.0.0.1, or 'localhost'") from None
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((value, 0))
        except OSError as err:
            raise ValueError(f"expected an address of this machine (cannot listen on it: {err.strerror})") from None
        return value

    @field_validator("store_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"postgres(ql)?(\+psycopg)?://[^\s/]+/[^\s/?]+(\?\S*)?",
                                                  value.get_secret_value()):
            raise ValueError("expected postgresql://user@host:port/dbname")
        return value

    @property
    def shared_store_url(self) -> str | None:
        """``store_url`` in clear, for the one place that connects with it (``pipeline.state.database``)."""
        return self.store_url.get_secret_value() if self.store_url is not None else None

    @field_validator("log_level", "traffic_routing", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("email_recipients", "notify_events", "rollback_alarm_names", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _minimum_not_above_threshold(self) -> PipelineConfig:
        if self.minimum_accuracy > self.accuracy_threshold:
            raise ValueError(
                f"minimum_accuracy ({self.minimum_accuracy}) must not be above "
                f"accuracy_threshold ({self.accuracy_threshold})"
            )
        return self

    @property
    def backend_name(self) -> str:
        """The backend in force: the explicit choice, else sagemaker with a role ARN, else local."""
        if self.backend:
            return self.backend
        return "sagemaker" if self.role_arn else "local"

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data with secrets redacted, for results and logs."""
        data = self.model_dump(mode="json")
        if self.slack_webhook_url is not None:
            data["slack_webhook_url"] = redact_url(self.slack_webhook_url.get_secret_value())
        if self.store_url is not None:
            data["store_url"] = redact_password(self.store_url.get_secret_value())
        return data


# Environment variables the project documents, and the key each one sets.
ENV_VARS: dict[str, str] = {
    "ACCURACY_THRESHOLD": "accuracy_threshold",
    "MINIMUM_ACCURACY": "minimum_accuracy",
    "AWS_REGION": "aws_region",
    "INSTANCE_TYPE": "instance_type",
    "AUTO_DEPLOY_ENABLED": "auto_deploy_enabled",
    "APPROVAL_REQUIRED": "approval_required",
    "ROLLBACK_ON_FAILURE": "rollback_on_failure",
    "LOG_LEVEL": "log_level",
    "SNS_TOPIC_ARN": "sns_topic_arn",
    "SLACK_WEBHOOK_URL": "slack_webhook_url",
    "TRAFFIC_ROUTING": "traffic_routing",
    "REPLAY_REQUESTS": "replay_requests",
    "MLOPS_STORE_URL": "store_url",
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _field_names() -> list[str]:
    return list(PipelineConfig.model_fields)


def _parse_env_value(name: str, key: str, raw: str) -> Any:
    """Environment values are strings; turn them into the key's type, or say why not."""
    annotation = PipelineConfig.model_fields[key].annotation
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise PipelineError(
            f"environment variable {name}={raw!r}: expected a boolean (true/false, 1/0, yes/no)"
        )
    if annotation is float:
        try:
            return float(raw)
        except ValueError:
            raise PipelineError(f"environment variable {name}={raw!r}: expected a number") from None
    if annotation is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise PipelineError(f"environment variable {name}={raw!r}: expected a whole number") from None
    return raw


# SageMaker's rule for endpoint names. Used with fullmatch: ``$`` would also match before a trailing newline.
ENDPOINT_NAME_PATTERN = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}")


def validate_endpoint_name(name: str) -> str:
    """Endpoint names become file and resource names: letters, digits and hyphens only."""
    if not ENDPOINT_NAME_PATTERN.fullmatch(name):
        raise PipelineError(f"--endpoint-name {name!r}: expected letters, digits and hyphens "
                            f"(at most 63 characters, starting with a letter or digit)")
    return name


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the JSON config file; a missing file or broken JSON is one clear line."""
    file = Path(path)
    if not file.is_file():
        raise PipelineError(f"config file {str(file)!r} not found: expected a JSON file (see pipeline_config.json)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"config file {str(file)!r} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except UnicodeDecodeError:
        raise PipelineError(f"config file {str(file)!r} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise PipelineError(f"config file {str(file)!r}: expected a JSON object of settings, got {type(data).__name__}")
    return data


def _check_keys(data: Mapping[str, Any], source: str) -> None:
    known = _field_names()
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PipelineError(f"{source}: unknown key {key!r}{hint}")


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    *,
    settings: Iterable[str] = (),
    search_default_file: bool = True,
) -> tuple[PipelineConfig, dict[str, str]]:
    """Build the config from defaults < JSON file < environment < command line (flags and ``--set``).

    Returns the config and the source of every key. ``flags`` maps keys to flag values; a value
    of None was not given and does not count. A key with a command-line flag (``FLAGS``) is
    recorded as ``flag:<flag>``, any other key as ``set:<key>``, as ``--set`` would give it.
    ``settings`` are the ``--set KEY=VALUE`` items as typed.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {key: "default" for key in _field_names()}

    if config_file is None and search_default_file and Path(DEFAULT_CONFIG_FILE).is_file():
        config_file = DEFAULT_CONFIG_FILE
    if config_file is not None:
        file_source = f"file:{config_file}"
        data = read_config_file(config_file)
        _check_keys(data, f"config file {str(config_file)!r}")
        values.update(data)
        sources.update({key: file_source for key in data})

    for name, key in ENV_VARS.items():
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        values[key] = _parse_env_value(name, key, raw)
        sources[key] = f"env:{name}"

    command_line = _command_line(flags or {}, parse_settings(settings))
    for key, (value, source) in command_line.items():
        values[key] = value
        sources[key] = source

    _name_after_the_dataset(values, sources)
    try:
        config = PipelineConfig.model_validate(values)
    except ValidationError as err:
        raise PipelineError(one_line(err, values, sources, PipelineConfig.model_fields)) from None
    return config, sources


def _name_after_the_dataset(values: dict[str, Any], sources: dict[str, str]) -> None:
    """A CSV dataset names its jobs and endpoint (``breast_cancer.csv``: ``breast-cancer-classifier``,
    ``breast-cancer-model``) unless a prefix was chosen; iris keeps the names the project started with.
    Recorded as ``derived:dataset`` in the sources."""
    dataset = values.get("dataset", "iris")
    if not isinstance(dataset, str) or dataset == "iris":
        return
    stem = re.sub(r"[^a-z0-9]+", "-", Path(dataset).stem.lower()).strip("-")[:30].strip("-") or "dataset"
    for key, suffix in (("model_name_prefix", "classifier"), ("endpoint_prefix", "model")):
        if sources.get(key) == "default":
            values[key] = f"{stem}-{suffix}"
            sources[key] = "derived:dataset"


# The command-line flag of each key that has one, as the CLI spells it. ``auto_deploy_enabled``
# and ``log_level`` are switches: ``--disable-auto-deploy`` sets false, ``--verbose`` sets DEBUG.
FLAGS: dict[str, str] = {
    "accuracy_threshold": "--accuracy-threshold", "minimum_accuracy": "--minimum-accuracy",
    "aws_region": "--region", "instance_type": "--instance-type", "role_arn": "--role-arn",
    "backend": "--backend", "auto_deploy_enabled": "--disable-auto-deploy", "dataset": "--dataset",
    "label_column": "--label-column", "model_type": "--model-type", "random_seed": "--random-seed",
    "store_dir": "--store-dir", "endpoint_port": "--endpoint-port", "log_file": "--log-file",
    "log_level": "--verbose", "traffic_routing": "--traffic-routing", "replay_requests": "--replay-requests",
    "store_url": "--store-url", "approval_required": "--approval-required",
}


def parse_settings(items: Iterable[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items: the value is JSON (``3``, ``true``, ``null``, ``[...]``), else a bare string.

    An unknown key is refused with the closest known one; the same key twice with different values
    is a contradiction (which one was meant?).
    """
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PipelineError(f"--set {item!r}: expected KEY=VALUE, e.g. --set cv_folds=3")
        _check_keys({key: None}, "--set")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare string
        if key in settings and not _same(key, settings[key], value):
            raise PipelineError(f"--set {key}={typed(settings[key])} and --set {key}={typed(value)} "
                                f"contradict each other: give {key} once")
        settings[key] = value
    return settings


def _command_line(flags: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """The command-line layer: each key's value and source; a flag and ``--set`` must agree."""
    layer: dict[str, tuple[Any, str]] = {}
    for key, value in flags.items():
        if value is None:
            continue
        if key not in PipelineConfig.model_fields:
            raise PipelineError(f"unknown setting {key!r}")
        layer[key] = (value, f"flag:{FLAGS[key]}" if key in FLAGS else f"set:{key}")
    for key, value in settings.items():
        if key in layer and not _same(key, layer[key][0], value):
            raise PipelineError(f"{describe_given(key, *layer[key])} and --set {key}={typed(value)} contradict each "
                                f"other: give {key} once")
        layer.setdefault(key, (value, f"set:{key}"))
    return layer


def _same(key: str, first: Any, second: Any) -> bool:
    """Equal as settings: 1 and 1.0 are, true and 1 are not; log levels ignore case."""
    if isinstance(first, bool) != isinstance(second, bool):
        return False
    if key == "log_level" and isinstance(first, str) and isinstance(second, str):
        return first.upper() == second.upper()
    return bool(first == second)


