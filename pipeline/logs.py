"""Logging to the console and a log file, with secrets scrubbed from every record.

Secrets are never logged on purpose; the ``SecretFilter`` is the second line
of defence, for a library that puts a URL in an exception message.

Two formats: ``text`` (the default, for people) and ``json`` (``--log-format
json``): one JSON object per line with ``time``, ``level``, ``phase``,
``message``, ``run_id`` and ``logger``, for log collectors. The phase is the
one announced with ``log_phase`` (the orchestrator names each phase it runs:
``training``, ``gate``, ``rollback``, ...; the notifier's thread says
``notifications``), never a module's name, so moving code between modules
leaves the logs as they were; the run id is the one ``set_run_id`` was given.

A run that is not told where to write its log and results writes them to
``DEFAULT_DIR`` (/tmp) under timestamped names; ``prune_default_files`` keeps
the newest of those, so they do not pile up forever.
"""
from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

from pipeline.redaction import SECRET_ENV_VARS, SecretScrubber, url_password

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")

_RUN_ID: ContextVar[str | None] = ContextVar("mlops_run_id", default=None)
_process_run_id: str | None = None  # worker threads start with an empty context: they fall back to this


def set_run_id(run_id: str | None) -> None:
    """The run id every log line of this run carries (``run_id`` in JSON lines)."""
    global _process_run_id
    _process_run_id = run_id
    _RUN_ID.set(run_id)


def current_run_id() -> str | None:
    return _RUN_ID.get() or _process_run_id


_PHASE: ContextVar[str | None] = ContextVar("mlops_phase", default=None)


@contextmanager
def log_phase(name: str) -> Iterator[None]:
    """Lines logged inside carry ``phase`` = ``name``, whichever module logs them."""
    token = _PHASE.set(name)
    try:
        yield
    finally:
        _PHASE.reset(token)


def phase_of(record: logging.LogRecord) -> str:
    """The phase announced with ``log_phase``; a library's own lines (boto3, urllib3) by the library's name."""
    top = record.name.split(".", 1)[0]
    if top != "pipeline":
        return top
    return _PHASE.get() or "pipeline"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: never a raw newline inside a record, whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "phase": phase_of(record),
            "message": record.getMessage(),
            "run_id": current_run_id(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # the SecretFilter leaves the scrubbed traceback here
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class SecretFilter(logging.Filter):
    """Scrubs every record a handler writes, its traceback included."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.scrubber = SecretScrubber(secrets, min_length=6)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.scrubber:
            return True
        record.msg = self.scrubber.scrub(record.getMessage())
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrubber.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


DEFAULT_DIR = Path("/tmp")  # where default-named logs and results go (a module constant, so tests can move it)
DEFAULT_LOG_NAME = re.compile(r"mlops_pipeline_\d{8}_\d{6}\.log")
DEFAULT_RESULTS_NAME = re.compile(r"mlops_pipeline_results_\d{8}_\d{6}\.json")


def default_log_file() -> Path:
    return DEFAULT_DIR / f"mlops_pipeline_{datetime.now():%Y%m%d_%H%M%S}.log"


def default_results_file() -> Path:
    return DEFAULT_DIR / f"mlops_pipeline_results_{datetime.now():%Y%m%d_%H%M%S}.json"


def prune_default_files(retention: int, *, results_pending: bool = False,
                        protect: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Keep the newest ``retention`` default-named logs and results in ``DEFAULT_DIR``; delete older ones.

    Called at the start of a run, after its own log file was opened. ``results_pending``: this
    run will add one more default-named results file, so one fewer old one is kept. Only regular
    files whose names match the default pattern exactly and that the current user owns are
    touched, never the paths in ``protect`` (the files this run was told to write). The timestamp
    in the name orders them. ``retention`` 0 deletes nothing. Returns the files deleted.
    """
    if retention <= 0:
        return []
    protected = {os.path.realpath(path) for path in protect}
    deleted: list[Path] = []
    for pattern, keep in ((DEFAULT_LOG_NAME, retention), (DEFAULT_RESULTS_NAME, retention - int(results_pending))):
        try:
            names = sorted(entry.name for entry in os.scandir(DEFAULT_DIR) if pattern.fullmatch(entry.name))
        except OSError:
            return deleted
        for name in names[:max(len(names) - keep, 0)]:
            path = DEFAULT_DIR / name
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or \
                        os.path.realpath(path) in protected:
                    continue
                path.unlink()
            except OSError:  # gone already (another run pruned it), or not ours to delete
                continue
            deleted.append(path)
    return deleted


def configure_logging(level: str, log_file: str | os.PathLike[str] | None, secrets: Iterable[str | None] = (),
                      log_format: str = "text") -> Path:
    """Console (stderr) and file handlers on the ``pipeline`` logger; returns the log file path.

    ``log_format`` "json" makes both handlers write JSON lines (see ``JsonFormatter``).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    as_json = log_format == "json"
    path = Path(log_file) if log_file else default_log_file()
    logger = logging.getLogger("pipeline")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)
    logger.propagate = False
    secret_filter = SecretFilter([*(secret for secret in secrets if secret),
                                  *(os.environ.get(name, "") for name in SECRET_ENV_VARS),
                                  url_password(os.environ.get("MLOPS_STORE_URL")) or ""])
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(JsonFormatter() if as_json else logging.Formatter("%(levelname)s %(message)s"))
    handlers: list[logging.Handler] = [console]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(FORMAT))
        handlers.append(file_handler)
    except OSError as err:
        logger.addHandler(console)
        logger.warning("cannot write log file %s: %s", path, err.strerror)
        logger.removeHandler(console)
    for handler in handlers:
        handler.addFilter(secret_filter)
        logger.addHandler(handler)
    return path
