"""How far a long step has got: training folds, SageMaker waits, endpoint test batches.

On a terminal (text logs) each step shows a live line (tqdm on stderr) that replaces itself; in CI,
in a pipe, or with ``--log-format json`` it becomes plain log lines at a bounded rate: the first
report of a step, its last, and at most one every ``PROGRESS_LOG_SECONDS`` between.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

log = logging.getLogger("pipeline.progress")

PROGRESS_LOG_SECONDS = 5.0
LIVE_REDRAW_SECONDS = 0.1  # a live line is redrawn at most this often (and at a step's last report)


@dataclass
class _Step:
    started: float = field(default_factory=time.monotonic)
    logged: float = 0.0
    bar: Any = None
    drawn: float = 0.0


class Progress:
    """Reports from any thread; one live line or log stream per step name."""

    def __init__(self, live: bool = False, interval: float = PROGRESS_LOG_SECONDS) -> None:
        self.live = live
        self.interval = interval
        self._steps: dict[str, _Step] = {}
        self._lock = threading.Lock()

    def report(self, step: str, done: int | None = None, total: int | None = None, detail: str = "") -> None:
        """``step`` reached ``done`` of ``total`` (either may be unknown); ``detail`` says what is going on."""
        with self._lock:
            state = self._steps.setdefault(step, _Step())
            elapsed = time.monotonic() - state.started
            if self.live:
                self._draw(step, state, done, total, detail)
                return
            last = done is not None and total is not None and done >= total
            if state.logged and not last and time.monotonic() - state.logged < self.interval:
                return
            state.logged = time.monotonic()
        count = f" {done} of {total}" if done is not None and total is not None else \
            (f" {done}" if done is not None else "")
        log.info("%s%s%s (%.1fs)", step, count, f": {detail}" if detail else "", elapsed)

    def done(self, step: str, detail: str = "") -> None:
        """The step is over: its live line goes, and the log says how long it took."""
        with self._lock:
            state = self._steps.pop(step, None)
        if state is None:
            return
        if state.bar is not None:
            state.bar.close()
        log.info("%s done%s (%.1fs)", step, f": {detail}" if detail else "", time.monotonic() - state.started)

    def _draw(self, step: str, state: _Step, done: int | None, total: int | None, detail: str) -> None:
        if state.bar is None:
            from tqdm import tqdm  # only a person at a terminal needs it

            # tqdm puts ", " before the postfix: "fit: 3/5, fold 3 of 5 [00:01]", "final fit, 120 rows [00:00]"
            state.bar = tqdm(desc=step, total=total, file=sys.stderr, leave=False, dynamic_ncols=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt}{postfix} [{elapsed}]" if total else
                             "{desc}{postfix} [{elapsed}]")
        if done is not None:
            state.bar.n = done
        state.bar.set_postfix_str(detail, refresh=False)
        # a step reporting every request (thousands) must not write the terminal as often
        now = time.monotonic()
        if not state.drawn or now - state.drawn >= LIVE_REDRAW_SECONDS or (done is not None and done == total):
            state.drawn = now
            state.bar.refresh()


_current = Progress()


def progress() -> Progress:
    """The run's progress reporter (``configure`` chooses live lines or log lines)."""
    return _current


class _AboveTheLiveLines:
    """The console log handler's stream while live lines are shown: each log line is written above them (tqdm
    clears its lines, writes, and draws them again), so a log line never lands in the middle of one."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()


def configure(live: bool) -> Progress:
    """Live lines (a terminal, text logs) or log lines; with live lines, the console log writes above them."""
    global _current
    _current = Progress(live=live)
    if live:
        for handler in logging.getLogger("pipeline").handlers:
            if type(handler) is logging.StreamHandler and handler.stream is sys.stderr:
                handler.setStream(_AboveTheLiveLines(sys.stderr))
    return _current


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether a person reads ``stream`` (default stderr, where progress goes) at a terminal: live lines,
    emoji and colour are for them; CI logs, pipes and files get plain words."""
    try:
        return (stream if stream is not None else sys.stderr).isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
