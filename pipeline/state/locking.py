"""One deployment per endpoint at a time.

Two pipelines deploying to the same endpoint would race on its pointer file and
its serving version. ``EndpointLock`` serializes them with an OS file lock
(``filelock``): the second waits up to ``lock_timeout_seconds`` and then fails
with a message naming the holder. Training takes no lock, so training runs in
parallel are never blocked. The lock is released by the OS when its holder
dies, so a killed pipeline never leaves a stale lock behind.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from pipeline.errors import ExitCode, PipelineError

log = logging.getLogger(__name__)


class EndpointLock:
    def __init__(self, locks_dir: Path, endpoint_name: str, holder: str, timeout: float) -> None:
        locks_dir.mkdir(parents=True, exist_ok=True)
        self.path = locks_dir / f"{endpoint_name}.lock"
        self.holder_file = locks_dir / f"{endpoint_name}.holder.json"
        self.endpoint_name = endpoint_name
        self.holder = holder
        self.timeout = timeout
        self._lock = FileLock(str(self.path))

    def __enter__(self) -> EndpointLock:
        if self._lock.is_locked:  # taken earlier by this same run (re-entrant)
            self._lock.acquire()
            return self
        try:
            if self.timeout > 0:
                try:
                    self._lock.acquire(timeout=0)
                except Timeout:  # say who it waits for, once, then wait
                    log.warning("endpoint %s is locked by %s: waiting up to %gs (lock_timeout_seconds)",
                                self.endpoint_name, self._current_holder(), self.timeout)
                    self._lock.acquire(timeout=self.timeout)
            else:
                self._lock.acquire(timeout=self.timeout)
        except Timeout:
            raise PipelineError(
                f"endpoint {self.endpoint_name!r} is locked by {self._current_holder()} "
                f"(waited {self.timeout:g}s, lock_timeout_seconds); try again when it finishes",
                ExitCode.FAILURE) from None
        self.holder_file.write_text(json.dumps({"holder": self.holder, "pid": os.getpid()}))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._lock.release()

    def try_acquire(self) -> bool:
        """Take the lock only if it is free right now (for commands that must not wait)."""
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        self.holder_file.write_text(json.dumps({"holder": self.holder, "pid": os.getpid()}))
        return True

    def release(self) -> None:
        self._lock.release()

    def release_all(self) -> None:
        """Let go however many times this object took the (re-entrant) lock."""
        self._lock.release(force=True)

    def _current_holder(self) -> str:
        try:
            data = json.loads(self.holder_file.read_text())
            return f"{data['holder']} (pid {data['pid']})"
        except (OSError, ValueError, KeyError):
            return "another pipeline"
