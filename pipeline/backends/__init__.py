"""Backends by name, imported only when chosen.

The local path must not import boto3 or the SageMaker SDK, so each backend
lives in its own module and is loaded by name here; the CLI's ``--backend``
choices and the config's ``backend`` values are ``pipeline.config.BACKEND_NAMES``, which names
the same backends as ``BACKENDS`` (a test checks it).
"""
from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any

from pipeline.errors import ExitCode, PipelineError

if TYPE_CHECKING:
    from pipeline.backends.base import Backend
    from pipeline.config import PipelineConfig
    from pipeline.state.store import DeploymentStore

# name -> "module:Class"
BACKENDS: dict[str, str] = {
    "local": "pipeline.backends.local:LocalBackend",
    "sagemaker": "pipeline.backends.sagemaker:SageMakerBackend",
}


def chosen_backend(config: PipelineConfig, recorded: Mapping[str, Any] | None = None) -> str:
    """The backend's name: ``--backend`` or ``--role-arn`` decide; otherwise the backend that made what the
    command acts on (``recorded``: the store's row of the training job or endpoint), else the default."""
    if config.backend or config.role_arn:
        return config.backend_name
    return (recorded or {}).get("backend") or config.backend_name


def load_backend(name: str, config: PipelineConfig, store: DeploymentStore,
                 run_id: str | None = None) -> Backend:
    if name not in BACKENDS:
        raise PipelineError(f"backend {name!r}: expected one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise PipelineError(
                f"backend {name!r} is not available in this version; use --backend local", ExitCode.USAGE
            ) from None
        raise PipelineError(
            f"backend {name!r} needs the Python package {err.name!r}: pip install -r requirements.txt"
        ) from None
    return getattr(module, class_name)(config, store, run_id)
