"""The one exception type for errors a user can fix, and the documented exit codes.

Everything that is the user's to fix (a bad flag, a bad config value, a missing
file, a dataset the model cannot learn from) is raised as ``PipelineError`` with
a one-line message that names the field or file, the value and what was
expected.  The CLI prints it as ``Error: ...`` and exits with its code; a
traceback is shown only under ``--verbose``.
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes CI jobs can rely on (documented in README and ``--help``)."""

    SUCCESS = 0  # everything asked for was done and verified
    FAILURE = 1  # the pipeline ran but failed: a deployment rolled back, tests failed
    USAGE = 2  # bad flag, config, input file or dataset: nothing was changed
    GATE = 3  # the accuracy gate held or rejected the model: nothing was deployed


class PipelineError(Exception):
    """An error the user can fix; its message is one line, its exit code documented."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.USAGE, hint: str | None = None):
        super().__init__(message)
        self.message = " ".join(message.split())
        self.exit_code = ExitCode(exit_code)
        self.hint = hint

    def __str__(self) -> str:
        return self.message
