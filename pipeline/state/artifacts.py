"""Where the files a later command needs live: a training job's files, a run's results file and HTML report.

``artifact_url`` chooses where a command writes them (``artifacts_for``):

- unset: this machine's ``store_dir`` (``<store_dir>/jobs/<name>/``, ``<store_dir>/runs/<run_id>/``), as always;
- a directory: the same layout under it (a file system every machine mounts);
- ``s3://bucket/prefix``: the same layout under that prefix, for a team whose machines share a ``store_url``;
- unset, with the SageMaker backend and a shared ``store_url``: ``s3://<s3_bucket>/mlops-pipeline``, the bucket
  the backend trains into (``sagemaker-<region>-<account>`` when ``s3_bucket`` is unset).

The store records where each file went and its sha256. A reader on any machine fetches it from there, whatever
its own ``artifact_url``, and checks it against the store's sha256 -- never against a hash kept beside the file --
before anything loads it: a file that is missing or changed is refused by name (``ArtifactRefused``). Fetched
files are kept in ``<store_dir>/cache/sha256/<sha256>`` (``ArtifactCache``): each is downloaded once per machine,
and a cached copy is used only while its bytes still have that hash. Only an ``s3://`` URL imports boto3
(``pipeline.state.s3_artifacts``); the local path never does.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.container.verified_files import FileChanged, sha256_of, verify_file, write_atomically
from pipeline.errors import ExitCode, PipelineError

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig

log = logging.getLogger(__name__)

JOBS, RUNS = "jobs", "runs"  # the layout under every artifact location
DEFAULT_PREFIX = "mlops-pipeline"  # under the SageMaker backend's bucket, when artifact_url is unset


class ArtifactMissing(Exception):
    """No file at that URL."""


class ArtifactRefused(PipelineError):
    """A recorded file that is missing or not the one recorded: never loaded (exit 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.FAILURE)


def is_remote(location: str | None) -> bool:
    return bool(location) and str(location).startswith("s3://")


class Artifacts:
    """Where this command writes job and run files: ``put`` a file under a key, answer its URL."""

    remote = False

    def url(self, key: str) -> str:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        return self.url("")


class LocalArtifacts(Artifacts):
    """A directory of this machine: ``store_dir`` by default, or a directory given as ``artifact_url``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def url(self, key: str) -> str:
        return str(self.root / key) if key else str(self.root)

    def put(self, key: str, data: bytes) -> str:
        path = self.root / key
        try:
            write_atomically(path, data)
        except OSError as err:
            raise PipelineError(f"artifact_url {str(self.root)!r}: {str(path)!r} cannot be written: "
                                f"{err.strerror or err}", ExitCode.FAILURE) from None
        return str(path)


def artifacts_for(config: PipelineConfig, backend_name: str, store_dir: str | os.PathLike[str]) -> Artifacts:
    """Where a command with this config, deploying with ``backend_name``, writes its files (see the module)."""
    url = config.artifact_url
    if url is None and backend_name == "sagemaker" and config.store_url is not None:
        bucket = config.s3_bucket
        return _s3(bucket, DEFAULT_PREFIX, config.aws_region)
    if url is None:
        return LocalArtifacts(store_dir)
    if is_remote(url):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return _s3(bucket, prefix.strip("/"), config.aws_region)
    return LocalArtifacts(url)


def _s3(bucket: str | None, prefix: str, region: str) -> Artifacts:
    from pipeline.state.s3_artifacts import S3Artifacts

    return S3Artifacts(bucket, prefix, region)  # type: ignore[return-value]  # an Artifacts, by its methods


def read(url: str, region: str | None = None) -> bytes:
    """The bytes at a recorded URL (an ``s3://`` object or a file); ``ArtifactMissing`` when there are none."""
    if is_remote(url):
        from pipeline.state.s3_artifacts import ObjectMissing, get

        try:
            return get(url, region)
        except ObjectMissing:
            raise ArtifactMissing(url) from None
    try:
        return Path(url).read_bytes()
    except FileNotFoundError:
        raise ArtifactMissing(url) from None
    except OSError as err:
        raise PipelineError(f"{url!r} cannot be read: {err.strerror or err}", ExitCode.FAILURE) from None


def delete(url: str, region: str | None = None) -> None:
    """Delete what a recorded URL holds, a file or everything under a prefix (retention); gone already is fine."""
    if is_remote(url):
        from pipeline.state.s3_artifacts import delete_prefix

        delete_prefix(url, region)
    elif Path(url).is_dir():
        shutil.rmtree(url, ignore_errors=True)
    else:
        Path(url).unlink(missing_ok=True)


class ArtifactCache:
    """Files fetched from where the store recorded them, kept by their sha256 (see the module)."""

    def __init__(self, directory: Path, region: str | None = None) -> None:
        self.directory = directory / "sha256"
        self.region = region

    def fetch(self, url: str, sha256: str, what: str) -> Path:
        """A local file with exactly the recorded bytes of ``url``: from the cache while it still has them, else
        downloaded and checked first. ``ArtifactRefused`` names ``what`` and the URL when the file is missing
        or not the one recorded; nothing is written then, so nothing can load it."""
        blob = self.directory / sha256
        if blob.is_file():
            try:
                verify_file(blob, sha256)
                return blob
            except (FileChanged, OSError):  # edited in the cache: fetched again
                log.warning("cached copy of %s changed: fetching it again", url)
                blob.unlink(missing_ok=True)
        try:
            data = read(url, self.region)
        except ArtifactMissing:
            raise ArtifactRefused(f"{what}: {url} is missing from the artifact store: refused (the store recorded "
                                  f"sha256 {sha256[:12]}...; deleted or never uploaded)") from None
        actual = sha256_of(data)
        if actual != sha256:
            raise ArtifactRefused(f"{what}: {url} is not the file the store recorded (sha256 {actual[:12]}..., "
                                  f"recorded {sha256[:12]}...): changed since it was written; refused, never loaded")
        write_atomically(blob, data)
        return blob

    def read(self, url: str, sha256: str, what: str) -> bytes:
        """``fetch``'s bytes."""
        return self.fetch(url, sha256, what).read_bytes()


def place(blob: Path, target: Path) -> None:
    """Put a cached file at ``target`` (a hard link when the file system allows one, else a copy), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(blob, temporary)
    except OSError:
        shutil.copyfile(blob, temporary)
    os.replace(temporary, target)
