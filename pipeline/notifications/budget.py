"""How long a run may spend on notifications, in total.

The budget is charged only while a notification is being delivered (the
delivery worker's busy time, backoff waits included), not while the run trains
or deploys with nothing to send. A wall-clock budget counted from the start of
the run would be spent by a long training job before the final notification
was even queued; busy time bounds exactly what notifications can add: the
worker never waits past what is left, and ``Notifier.close`` never waits longer
than what is left either.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class NotificationBudget:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._spent = 0.0
        self._since: float | None = None  # when the current charge began; None while nothing is delivered
        self._exhausted = False
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return f"notification budget of {self.seconds:g}s"

    @property
    def exhausted_text(self) -> str:
        return f"{self} exhausted"

    def remaining(self) -> float:
        with self._lock:
            if self._exhausted:
                return 0.0
            running = self._clock() - self._since if self._since is not None else 0.0
            return max(0.0, self.seconds - self._spent - running)

    @contextmanager
    def charging(self) -> Iterator[None]:
        """Charge the time spent inside; one delivery at a time, so charges never overlap."""
        with self._lock:
            self._since = self._clock()
        try:
            yield
        finally:
            with self._lock:
                if self._since is not None:
                    self._spent += self._clock() - self._since
                self._since = None

    def exhaust(self) -> None:
        """Nothing is left once the notifier has given up on what was queued, whatever the clock says."""
        with self._lock:
            self._exhausted = True
