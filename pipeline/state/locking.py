"""One deployment per endpoint at a time, on one machine or many.

Two pipelines deploying to the same endpoint would race on its serving version. ``EndpointLock`` serializes
them: the second waits up to ``lock_timeout_seconds``, saying once who holds the lock, and then fails naming
the holder. Training takes no lock, so training runs in parallel are never blocked. The lock is re-entrant
within one process (a run takes it for its prestart and again for its deployment).

Where the store is, so is the lock (one lock for both backends, local and SageMaker):

- SQLite store: an OS file lock in ``<store_dir>/locks`` (``filelock``), released by the OS when its holder
  dies.
- PostgreSQL store: a session advisory lock (``pg_try_advisory_lock`` in a bounded retry loop), held on a
  connection of its own, never a pooled one, for as long as the lock is held. A holder that is killed closes
  its connection, and the server lets the lock go at once; a machine that dies stops answering the TCP
  keepalives both ends send, and the server lets it go within about ``KEEPALIVE_IDLE + KEEPALIVE_INTERVAL *
  KEEPALIVE_COUNT`` seconds: no stale lock, no manual unlock. An advisory lock has no name, so a row in
  ``lock_holders`` (host, pid, run, since) says who holds it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from pipeline.errors import ExitCode, PipelineError

log = logging.getLogger(__name__)


class EndpointLock:
    """The interface both locks share: a re-entrant context manager, ``try_acquire``, ``release_all``."""

    endpoint_name: str
    holder: str
    timeout: float

    def __enter__(self) -> EndpointLock:
        if not self._take(self.timeout):
            raise PipelineError(
                f"endpoint {self.endpoint_name!r} is locked by {self.current_holder()} "
                f"(waited {self.timeout:g}s, lock_timeout_seconds); try again when it finishes",
                ExitCode.FAILURE) from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

    def try_acquire(self) -> bool:
        """Take the lock only if it is free right now (for commands that must not wait)."""
        return self._take(0.0)

    def _take(self, timeout: float) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def release_all(self) -> None:
        """Let go however many times this object took the (re-entrant) lock."""
        raise NotImplementedError

    def current_holder(self) -> str:
        raise NotImplementedError

    def _waiting(self) -> None:
        log.warning("endpoint %s is locked by %s: waiting up to %gs (lock_timeout_seconds)", self.endpoint_name,
                    self.current_holder(), self.timeout)


class FileEndpointLock(EndpointLock):
    """A SQLite store's lock: a file lock beside the state file."""

    def __init__(self, locks_dir: Path, endpoint_name: str, holder: str, timeout: float) -> None:
        locks_dir.mkdir(parents=True, exist_ok=True)
        self.path = locks_dir / f"{endpoint_name}.lock"
        self.holder_file = locks_dir / f"{endpoint_name}.holder.json"
        self.endpoint_name = endpoint_name
        self.holder = holder
        self.timeout = timeout
        self._lock = FileLock(str(self.path))

    def _take(self, timeout: float) -> bool:
        if self._lock.is_locked:  # taken earlier by this same run (re-entrant)
            self._lock.acquire()
            return True
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            if timeout <= 0:
                return False
            self._waiting()  # say who it waits for, once, then wait
            try:
                self._lock.acquire(timeout=timeout)
            except Timeout:
                return False
        self.holder_file.write_text(json.dumps({"holder": self.holder, "pid": os.getpid(),
                                                "host": socket.gethostname()}))
        return True

    def release(self) -> None:
        self._lock.release()

    def release_all(self) -> None:
        self._lock.release(force=True)

    def current_holder(self) -> str:
        try:
            data = json.loads(self.holder_file.read_text())
            return f"{data['holder']} (pid {data['pid']})"
        except (OSError, ValueError, KeyError):
            return "another pipeline"


class AdvisoryEndpointLock(EndpointLock):
    """A PostgreSQL store's lock: a session advisory lock on a dedicated connection, with a holder row."""

    POLL_SECONDS = 0.25

    def __init__(self, url: str, endpoint_name: str, holder: str, timeout: float) -> None:
        from pipeline.state.database import advisory_key

        self.url = url
        self.endpoint_name = endpoint_name
        self.holder = holder
        self.timeout = timeout
        self.key = advisory_key("endpoint", endpoint_name)
        self._connection: Any = None  # the lock's own connection, open while the lock is held
        self._depth = 0

    def _connect(self) -> Any:
        import psycopg
        from sqlalchemy.engine import make_url

        from pipeline.state.database import postgres_connect_args, unreachable

        url = make_url(self.url)
        arguments = {"host": url.host, "port": url.port, "dbname": url.database, "user": url.username,
                     "password": url.password, **postgres_connect_args(), **url.query}
        try:
            connection = psycopg.connect(**{key: value for key, value in arguments.items() if value is not None},
                                         autocommit=True)
        except psycopg.OperationalError as err:
            raise unreachable(self.url, err) from None
        # The server notices a dead client machine by its own keepalives, and lets the lock go.
        connection.execute(f"SET tcp_keepalives_idle = {_keepalive('KEEPALIVE_IDLE')}")
        connection.execute(f"SET tcp_keepalives_interval = {_keepalive('KEEPALIVE_INTERVAL')}")
        connection.execute(f"SET tcp_keepalives_count = {_keepalive('KEEPALIVE_COUNT')}")
        return connection

    def _take(self, timeout: float) -> bool:
        if self._depth:
            self._depth += 1
            return True
        connection = self._connect()
        deadline = time.monotonic() + max(0.0, timeout)
        warned = False
        while not connection.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
            if time.monotonic() >= deadline:
                connection.close()
                return False
            if not warned:
                self._waiting()
                warned = True
            time.sleep(min(self.POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        from pipeline.state.sql import utc_now

        connection.execute(
            "INSERT INTO lock_holders (endpoint_name, holder, host, pid, since) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (endpoint_name) DO UPDATE SET holder = EXCLUDED.holder, host = EXCLUDED.host, "
            "pid = EXCLUDED.pid, since = EXCLUDED.since",
            (self.endpoint_name, self.holder, socket.gethostname(), os.getpid(), utc_now()))
        self._connection, self._depth = connection, 1
        return True

    def release(self) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            self._let_go()

    def release_all(self) -> None:
        if self._depth:
            self._depth = 0
            self._let_go()

    def _let_go(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute("DELETE FROM lock_holders WHERE endpoint_name = %s AND pid = %s AND host = %s",
                                (self.endpoint_name, os.getpid(), socket.gethostname()))
            connection.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except Exception:  # the connection is gone: so is the lock, with the session that held it
            log.debug("lock connection for %s was already closed", self.endpoint_name, exc_info=True)
        finally:
            connection.close()

    def current_holder(self) -> str:
        from pipeline.state.database import engine_for
        from pipeline.state.sql import run_sql

        try:
            with engine_for(self.url).connect() as connection:
                row = run_sql(connection, "SELECT holder, host, pid, since FROM lock_holders WHERE endpoint_name=?",
                              self.endpoint_name).first()
        except Exception:
            row = None
        if row is None:
            return "another pipeline"
        return f"{row.holder} (host {row.host}, pid {row.pid}, since {row.since[:19]})"


def _keepalive(name: str) -> int:
    from pipeline.state import database

    return int(getattr(database, name))
