"""What goes to S3 and comes back: the container's source files as ``sourcedir.tar.gz``, and tarballs.

``SERVE_PROGRAM`` is read as ``artifacts.SERVE_PROGRAM`` where it is used (the
training job records it, a model is created with it), so that one assignment
changes it everywhere.
"""
from __future__ import annotations

import gzip
import io
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path

from pipeline.backends.base import DeploymentError
from pipeline.errors import PipelineError

TRAIN_PROGRAM = "train.py"
SERVE_PROGRAM = "serve.py"  # SAGEMAKER_PROGRAM of every model: transform_fn over the hooks of inference.py
SOURCE_FILES = (TRAIN_PROGRAM, "inference.py", SERVE_PROGRAM)  # what sourcedir.tar.gz must hold


def split_s3_uri(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise PipelineError(f"{uri!r} is not an s3:// URI")
    return match.group(1), match.group(2)


def tar_gz(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A reproducible tar.gz (fixed times and owners): the same files give the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w") as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def extract(archive: Path, target: Path) -> None:
    """Unpack a tar.gz from S3, refusing links and paths that leave ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            resolved = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or (resolved != root and root not in resolved.parents):
                raise DeploymentError(f"{archive.name} contains an unsafe entry {member.name!r}: not unpacked")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the standard library checks too
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root)


def sourcedir(source_dir: Path) -> bytes:
    """``sourcedir.tar.gz`` of the ``*.py`` files of ``source_dir`` (all of ``SOURCE_FILES``, or PipelineError)."""
    files = sorted(path for path in Path(source_dir).glob("*.py") if path.name != "__init__.py")
    names = {path.name for path in files}
    missing = set(SOURCE_FILES) - names
    if missing:
        raise PipelineError(f"{', '.join(sorted(missing))} missing from {str(source_dir)!r}")
    return tar_gz((path.name, path.read_bytes()) for path in files)
