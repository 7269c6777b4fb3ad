"""Writing a file so that a reader sees the old content or the new, never half of either.

Results, reports, pointers the endpoint servers read, owner files, job artifacts: each is
written to a temporary file beside its target and renamed over it (``os.replace`` is atomic on
one filesystem), so a CI job, a server worker or a crash never meets a torn file.
"""
from __future__ import annotations

import os
from pathlib import Path


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
