"""Ctrl-C and SIGTERM (a cancelled CI job) while a run works, and while it records how it ended.

The first interrupt stops the work where it is: it is raised as ``KeyboardInterrupt``, and the run
drops an unfinished candidate and records ``kept_previous``. Every later one, and any interrupt once
the run has started to record how it ended (``defer``), is only noted (``pending``): the rollback,
the results file, the CI reports and the store's records are finished whatever else arrives, and the
process exits with the run's own code (0-3), never a signal's. A wait that may be cut short -- the
notifications still in flight at the end -- asks ``pending`` and stops waiting; it never raises.

Handlers are installed only in the main thread, by ``handled`` (a run) and ``install_for_process``
(the command line, so a SIGTERM before or after a run is an orderly exit 1 rather than 143).
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"installed": False, "deferred": False}
_pending: list[str] = []


def _handler(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if _state["deferred"]:
        _pending.append(name)
        return
    _state["deferred"] = True  # one interrupt stops the work; the rest wait for the run to record how it ended
    raise KeyboardInterrupt(name)


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM as described above for the length of a run (nested: the outer one decides)."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _handler) for number in SIGNALS}
    _state.update(installed=True, deferred=False)
    _pending.clear()
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _state.update(installed=False, deferred=False)
        if _pending:
            log.warning("%s received while the run recorded how it ended: the run's outcome stands",
                        " and ".join(dict.fromkeys(_pending)))
        _pending.clear()


def defer() -> None:
    """From now on interrupts are noted, not raised: the run is recording how it ended."""
    _state["deferred"] = True


def pending() -> str | None:
    """The first interrupt noted while deferred (``SIGINT``, ``SIGTERM``), or None."""
    return _pending[0] if _pending else None


def install_for_process() -> None:
    """The command line's own handling: SIGTERM outside a run ends the process like Ctrl-C (exit 1, not 143)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
