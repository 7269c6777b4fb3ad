"""What ``unit`` means, enforced: a test marked ``pytest.mark.unit`` opens no socket and starts no process.

While a unit test's setup, call or teardown runs, a socket that connects, listens or sends a datagram, a host
name looked up, and every way of starting a process (``subprocess``, ``multiprocessing``, ``os.fork``,
``os.posix_spawn``, ``os.system``) raise ``UnitTierViolation`` instead; the test fails with that message even if
the code under test caught the error (a notifier recording a failed delivery, say).

Binding alone is allowed: the config's check that ``endpoint_host`` is an address of this machine, and the
free-port probe, bind a socket and close it; nothing can talk to a socket that neither listens nor connects.
Threads that were already running when the test started (left by an earlier integration test in the same
worker) are not the test's doing and pass through.
"""
from __future__ import annotations

import _posixsubprocess
import os
import socket
import subprocess
import threading
from typing import Any

import pytest


class UnitTierViolation(RuntimeError):
    pass


_SOCKET_METHODS = ("connect", "connect_ex", "listen", "sendto")
_LOOKUPS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")
_OS_FUNCTIONS = ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")


class UnitTierGuard:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.violations: list[str] = []
        self._saved: list[tuple[Any, str, Any]] = []
        self._threads_before: set[threading.Thread] = set()

    def _blocked(self, what: str, original: Any) -> Any:
        guard = self

        def refuse(*args: Any, **kwargs: Any) -> Any:
            thread = threading.current_thread()
            if thread is not threading.main_thread() and thread in guard._threads_before:
                return original(*args, **kwargs)
            message = (f"{guard.nodeid} is marked unit but {what}: a unit test opens no socket and starts no "
                       f"process; make it an integration test (no unit mark) or give the code a fake")
            guard.violations.append(message)
            raise UnitTierViolation(message)

        return refuse

    def _patch(self, owner: Any, name: str, what: str) -> None:
        original = getattr(owner, name)
        self._saved.append((owner, name, original))
        setattr(owner, name, self._blocked(what, original))

    def __enter__(self) -> UnitTierGuard:
        self._threads_before = set(threading.enumerate())
        for name in _SOCKET_METHODS:
            self._patch(socket.socket, name, f"called socket.{name}")
        for name in _LOOKUPS:
            self._patch(socket, name, f"looked up a host (socket.{name})")
        self._patch(subprocess.Popen, "__init__", "started a process (subprocess.Popen)")
        self._patch(_posixsubprocess, "fork_exec", "started a process (fork_exec)")
        for name in _OS_FUNCTIONS:
            if hasattr(os, name):
                self._patch(os, name, f"started a process (os.{name})")
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def check(self) -> None:
        if self.violations:
            pytest.fail(self.violations[0], pytrace=False)
