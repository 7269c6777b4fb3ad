"""Logging to the console and a log file, with secrets scrubbed from every record.

Secrets are never logged on purpose; the ``SecretFilter`` is the second line
of defence, for a library that puts a URL in an exception message.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

SECRET_ENV_VARS = ("SLACK_WEBHOOK_URL", "SMTP_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "MLOPS_ENDPOINT_TOKEN")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class SecretFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.scrub(record.getMessage())
            record.args = ()
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def default_log_file() -> Path:
    return Path(f"/tmp/mlops_pipeline_{datetime.now():%Y%m%d_%H%M%S}.log")


def configure_logging(level: str, log_file: str | os.PathLike[str] | None, secrets: Iterable[str] = ()) -> Path:
    """Console (stderr) and file handlers on the ``pipeline`` logger; returns the log file path."""
    path = Path(log_file) if log_file else default_log_file()
    logger = logging.getLogger("pipeline")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)
    logger.propagate = False
    secret_filter = SecretFilter([*secrets, *(os.environ.get(name, "") for name in SECRET_ENV_VARS)])
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handlers: list[logging.Handler] = [console]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(FORMAT))
        handlers.append(file_handler)
    except OSError as err:
        logger.addHandler(console)
        logger.warning("cannot write log file %s: %s", path, err.strerror)
        logger.removeHandler(console)
    for handler in handlers:
        handler.addFilter(secret_filter)
        logger.addHandler(handler)
    return path
