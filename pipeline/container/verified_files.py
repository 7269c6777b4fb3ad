"""Files that are trusted only as they were written: written whole, their sha256 recorded, checked on read.

Every file another process reads later -- a model, a job's artifacts, a drift baseline, a run's results,
a pointer the endpoint's workers follow -- is written atomically (a reader sees the old content or the
new, never half of either: a temporary file beside the target, renamed over it) and its sha256 is kept
where the writer records what it made (the store; for a model also ``model.joblib.sha256`` beside it,
which SageMaker's container reads when no recorded hash reaches it). A reader checks the bytes against
the recorded sha256 before it uses them (``read_verified``, ``verify_file``): unpickling a model runs
code, and a decision made on an edited file would be a decision nobody made.

Shipped to SageMaker's container with the hooks: standard library only.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

SHA256_SUFFIX = ".sha256"  # the recorded hash beside a model: model.joblib.sha256
_BLOCK = 1 << 20


class FileChanged(Exception):
    """A file's bytes are not the ones recorded when it was written."""

    def __init__(self, path: str | os.PathLike[str], actual: str, expected: str) -> None:
        super().__init__(f"{path}: sha256 {actual[:12]}..., recorded {expected[:12]}...")
        self.path = str(path)
        self.actual = actual
        self.expected = expected


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in blocks (a model may be larger than we want in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: str | os.PathLike[str], data: str | bytes, mode: int | None = None) -> Path:
    """Replace ``path`` with ``data`` in one step; ``mode`` (e.g. 0o600) is set before the rename, so
    the file is never readable more widely than asked, not even for a moment."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is None else mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
        os.chmod(temporary, 0o644 if mode is None else mode)  # as asked, whatever the umask
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
    return target


def write_recorded(path: str | os.PathLike[str], data: str | bytes, mode: int | None = None) -> str:
    """Write ``data`` atomically and answer its sha256, for the caller to record where it records the file."""
    payload = data.encode() if isinstance(data, str) else data
    write_atomically(path, payload, mode)
    return sha256_of(payload)


def read_verified(path: str | os.PathLike[str], expected_sha256: str) -> bytes:
    """The file's bytes, once they match the recorded sha256; ``FileChanged`` if not (``OSError`` if unreadable).
    The bytes checked are the bytes answered: nothing can change between the check and the use."""
    data = Path(path).read_bytes()
    actual = sha256_of(data)
    if actual != expected_sha256:
        raise FileChanged(path, actual, expected_sha256)
    return data


def verify_file(path: str | os.PathLike[str], expected_sha256: str) -> None:
    """``FileChanged`` unless the file has the recorded sha256 (``OSError`` if unreadable); for files a library
    opens itself (joblib, numpy, pandas)."""
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise FileChanged(path, actual, expected_sha256)
