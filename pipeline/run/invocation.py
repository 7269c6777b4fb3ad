"""What a run's command line asks for beyond settings: its mode, and files it will write.

Settings are ``pipeline.config``'s business; this module checks the rest of a run's request
before any work starts: flags that contradict each other (``resolve_mode``) and output files the
run could not write at its end (``check_output_paths``). Both fail with one ``PipelineError`` line.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.config_messages import describe_given, describe_source
from pipeline.errors import PipelineError


def resolve_mode(mode: str | None, *, deployment_only: bool = False, training_job: str | None = None,
                 endpoint_name: str | None = None, config: PipelineConfig | None = None,
                 sources: Mapping[str, str] | None = None, allow_contract_change: bool = False) -> str:
    """The mode a run's flags ask for, or a ``PipelineError`` naming two flags that contradict each other.

    Each flag means something in some modes only; given where it means nothing, it would be
    silently dropped, so it is refused instead:

    - ``--deployment-only`` is ``--mode deployment``: with another ``--mode`` it contradicts it.
    - ``--training-job`` names what ``--mode deployment`` deploys; every other mode trains or
      deploys nothing, and deployment mode needs it.
    - ``--endpoint-name`` means nothing to ``--mode training``, which deploys nothing; nor to a full
      run with auto-deploy switched off.
    - auto-deploy switched off on the command line (``--disable-auto-deploy`` or ``--set
      auto_deploy_enabled=false``) contradicts ``--mode deployment``, an explicit request to deploy,
      and means nothing to testing or cleanup. Switched off in the config file or environment it is
      a standing policy, and ``--mode deployment`` is how an approved model is deployed despite it.
    """
    if deployment_only and mode not in (None, "deployment"):
        raise PipelineError(f"--deployment-only contradicts --mode {mode}: --deployment-only means --mode deployment")
    resolved = "deployment" if deployment_only else (mode or "full")
    asked = "--deployment-only" if deployment_only else f"--mode {resolved}"
    if resolved == "deployment" and not training_job:
        raise PipelineError(f"{asked} needs --training-job NAME (the names are in `jobs`)")
    if training_job and resolved != "deployment":
        raise PipelineError(f"--training-job contradicts --mode {resolved}: it names the job --mode deployment deploys"
                            if mode else "--training-job needs --mode deployment (without --mode the full pipeline "
                                         "trains a new model)")
    if endpoint_name and resolved == "training":
        raise PipelineError("--endpoint-name contradicts --mode training: training deploys nothing")
    if allow_contract_change and resolved in ("training", "testing", "cleanup"):
        raise PipelineError(f"--allow-contract-change contradicts --mode {resolved}: it deploys nothing")
    if config is None or sources is None:
        return resolved
    source = sources.get("auto_deploy_enabled", "default")
    switched_off = not config.auto_deploy_enabled
    if switched_off and source.startswith(("flag:", "set:")) and resolved in ("deployment", "testing", "cleanup"):
        why = ("deployment mode is an explicit request to deploy" if resolved == "deployment"
               else f"--mode {resolved} deploys nothing")
        raise PipelineError(f"{describe_given('auto_deploy_enabled', False, source)} contradicts {asked}: {why}")
    for flag, given in (("--endpoint-name", endpoint_name), ("--allow-contract-change", allow_contract_change)):
        if switched_off and given and resolved == "full":
            raise PipelineError(f"{flag} contradicts auto_deploy_enabled=false (from {describe_source(source)}): "
                                f"a full run with auto-deploy off deploys nothing")
    return resolved


def check_output_paths(paths: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Refuse, before any work, a file the run could not write at its end.

    ``paths`` maps how each file was asked for (``--output-file``) to its path; None was not asked
    for. Nothing is created: the nearest existing directory must accept a new file (probed with an
    unnamed temporary file), an existing file must be writable, and no two outputs may be one file.
    Missing directories are made when the file is written.
    """
    seen: dict[str, str] = {}
    for label, path in paths.items():
        if path is None or str(path) == "":
            continue
        problem = _why_unwritable(Path(path))
        if problem:
            raise PipelineError(f"{label} {str(path)!r}: {problem}")
        resolved = os.path.realpath(path)
        if resolved in seen:
            raise PipelineError(f"{seen[resolved]} and {label} are the same file {str(path)!r}: give each its own")
        seen[resolved] = label


def _why_unwritable(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory: expected a file path"
    if path.exists():
        return None if os.access(path, os.W_OK) else "the file exists and is not writable"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{str(ancestor)!r} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        return f"cannot create a file in {str(ancestor)!r} ({err.strerror or err})"
    return None


def output_label(key: str, source: str) -> str:
    """How a path-valued config key was given, e.g. ``--log-file`` or ``config file 'c.json': log_file``."""
    if source.startswith("flag:"):
        return source[5:]
    if source.startswith("set:"):
        return f"--set {key}"
    return f"{describe_source(source)}: {key}"
