"""Progress of long steps as a person at a terminal sees it: a live line that replaces itself, through the
real script in a pseudo-terminal (in CI and with --log-format json they are log lines: test_ci_reports)."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.conftest import REPO


def _on_a_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """Run Python (run_pipeline.py and its arguments, or -c CODE) with stdout and stderr on a pseudo-terminal 120
    columns wide; its exit code and output."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([sys.executable, *args], cwd=cwd, stdin=follower, stdout=follower, stderr=follower,
                               close_fds=True)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed: the process has gone
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=300), output.decode("utf-8", "replace")


def test_training_folds_are_a_live_line_on_a_terminal(workdir):
    code, output = _on_a_terminal(str(REPO / "run_pipeline.py"), "--mode", "training", "--output-file",
                                  "results.json", "--log-file", str(workdir / "pipeline.log"), cwd=workdir)
    assert code == 0, output
    assert "\rtraining: cross-validation: 5/5, fold 5 of 5 [" in output  # redrawn in place, with the elapsed time
    assert "\rtraining: final fit, logistic_regression on 120 rows [" in output
    assert "training: cross-validation 1 of 5" not in output  # no log line per fold on a terminal
    assert "INFO training: cross-validation done" in output


def test_a_log_line_during_a_live_line_is_written_above_it_not_inside_it(workdir):
    # A SageMaker wait logs each new status while its live line shows; the console handler is the pipeline's own.
    program = f"""
import logging, sys
sys.path.insert(0, {str(REPO)!r})
from pipeline.logs import configure_logging
from pipeline.progress import configure
configure_logging("INFO", "pipeline.log")
progress = configure(live=True)
progress.report("waiting for training job job-1", detail="InProgress (Training)")
logging.getLogger("pipeline").info("training job job-1: Completed")
progress.done("waiting for training job job-1", "Completed")
"""
    code, output = _on_a_terminal("-c", program, cwd=workdir)
    assert code == 0, output
    assert "\rwaiting for training job job-1, InProgress (Training) [" in output
    assert "INFO training job job-1: Completed" in output
    assert all(before.endswith(("\r", "\n")) or not before for before in output.split("INFO ")[:-1]), output
