"""A local endpoint's files: the version pointers its workers follow, and its token's hash.

Each version has a pointer (``versions/<version>.json``: the model's directory and sha256, its input
schema and the serving settings); ``current.json`` is the one the stable server's workers load, and during
a bake it names the candidate beside the serving version (``split``). Every pointer is written atomically
and only after the model it names was checked against the sha256 recorded at training: a worker that
refused a tampered model would otherwise take the endpoint down on its next reload.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.backends.base import DeploymentError, TrafficStep
from pipeline.config import PipelineConfig
from pipeline.container.inference_errors import ModelIntegrityError
from pipeline.container.model_files import verify_model_file
from pipeline.container.verified_files import write_atomically
from pipeline.serving.contract import TOKEN_ENV, token_sha256
from pipeline.training.jobs import TrainingJob

log = logging.getLogger(__name__)

CURRENT_POINTER = "current.json"
AUTH_FILE = "auth.json"
CAPTURE_DIR = "capture"  # the endpoint's captured requests (pipeline/serving/telemetry.py)


class EndpointFiles:
    """The files of one local endpoint, in its directory under the store."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory

    @property
    def current(self) -> Path:
        return self.directory / CURRENT_POINTER

    def version_pointer(self, version: str) -> Path:
        return self.directory / "versions" / f"{version}.json"

    def write_version(self, version: str, job: TrainingJob, config: PipelineConfig) -> Path:
        name = self.name
        path = self.version_pointer(version)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = {"endpoint": name, "version": version, "training_job": job.name,
                "model_dir": str(job.model_dir.resolve()), "sha256": job.model_sha256,
                "input_schema": job.input_schema,  # from the manifest the store verified: the server reads no file
                "max_payload_mb": config.max_payload_mb,
                "client_timeout_seconds": config.client_timeout_seconds,
                "capture_percent": config.capture_percent, "capture_max_mb": config.capture_max_mb,
                "capture_dir": str((self.directory / CAPTURE_DIR).resolve()),
                "auth_file": str((self.directory / AUTH_FILE).resolve())}
        write_atomically(path, json.dumps(spec, indent=2))
        return path

    def write_auth(self) -> None:
        """The endpoint's token is a setting of the endpoint, not of a version: every worker (re)start
        reads it, so a token set by a later deployment or rollback applies at once. Only its hash is
        kept, readable by this user alone."""
        token = os.environ.get(TOKEN_ENV)
        name, path = self.name, self.directory / AUTH_FILE
        if token:
            write_atomically(path, json.dumps({"token_sha256": token_sha256(token)}), mode=0o600)
        elif path.is_file():
            log.warning("endpoint %s is token-protected and %s is not set: requests without the token get 401 "
                        "(delete %s to open it)", name, TOKEN_ENV, path)

    def point_current(self, version: str) -> None:
        """Point the stable server at ``version``, after checking that its model is intact.

        Checked here, before the switch: a worker that refuses a tampered model would
        otherwise take the whole endpoint down on the next reload.
        """
        name, source = self.name, self.version_pointer(version)
        if not source.is_file():
            raise DeploymentError(f"version {version!r} of endpoint {name!r} has no pointer file {str(source)!r}")
        try:
            verify_pointer(json.loads(source.read_text()))
        except (ModelIntegrityError, OSError) as err:
            raise DeploymentError(f"version {version!r}: {err}") from None
        write_atomically(self.current, source.read_text())

    def point_split(self, serving: str, candidate: str, step: TrafficStep) -> None:
        """Point the stable server at ``serving`` with ``candidate`` beside it, both models checked first."""
        specs = []
        for version in (serving, candidate):
            source = self.version_pointer(version)
            try:
                spec = json.loads(source.read_text())
                verify_pointer(spec)
            except (ModelIntegrityError, OSError, ValueError) as err:
                raise DeploymentError(f"version {version!r}: {err}") from None
            specs.append(spec)
        pointer = {**specs[0], "split": {"mode": step.mode, "percent": step.percent, "candidate": specs[1],
                                         # for `status`: which interval of the bake, since when, how long
                                         "interval": step.interval, "intervals": step.intervals,
                                         "seconds": step.seconds,
                                         "since": datetime.now(UTC).isoformat(timespec="seconds")}}
        write_atomically(self.current, json.dumps(pointer, indent=2))

    def serving_pointer(self) -> dict[str, Any] | None:
        """The version the stable server is pointed at (what it serves after its next reload)."""
        return json.loads(self.current.read_text()) if self.current.is_file() else None


def routes_as(ping_body: bytes, split: dict[str, Any] | None) -> bool:
    """A ping's answer shows the split expected (each of its keys), or no split when none is expected."""
    try:
        shown = json.loads(ping_body).get("split")
    except (ValueError, AttributeError):
        return False
    if split is None:
        return not shown
    return bool(shown) and all(shown.get(key) == value for key, value in split.items()) and \
        shown.get("candidate_healthy") is not False


def verify_pointer(spec: dict[str, Any]) -> None:
    """A pointer names a model the endpoint may serve only if its bytes are what training recorded."""
    verify_model_file(spec["model_dir"], spec["sha256"], use="serve")
