"""The local endpoint's server processes: who they are, who owns them, and stopping them for good.

Every server the pipeline starts is recorded on disk *before* it is started: an
owner file (``<endpoint dir>/<role>.owner``) names the pipeline process that is
responsible for it. The server's master watches that file (``watch_owner``) and
shuts itself down when the named process has died, so a server that the store
does not own yet (a prestarted server, a candidate under test, a first
deployment before it is verified) never outlives a pipeline that was killed.
Once the store records a server as the endpoint's stable process, the owner
file is removed and the server serves on after the pipeline exits.

Servers are found by their command line, which names their pid file inside the
endpoint's directory: that path is unique to one store, one endpoint and one
role, so two checkouts with an endpoint of the same name never touch each
other's servers. Stopping a server stops its whole process group (master and
workers, ``start_new_session``), also when the master is already dead and only
workers remain holding the port.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.container.verified_files import write_atomically

OWNER_SUFFIX = ".owner"
PID_SUFFIX = ".pid"
OWNER_ENV = "MLOPS_OWNER_FILE"
WATCH_INTERVAL_SECONDS = 0.2


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_alive(pid: int | None, marker: str | None = None) -> bool:
    """True for a running (not zombie) process, whose command line has ``marker`` if given."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return False
    if marker is None:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return marker.encode() in handle.read()
    except OSError:
        return False


def reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# --------------------------------------------------------------------------- ownership
@dataclass(frozen=True)
class Owner:
    """The pipeline process responsible for a server the store does not own yet."""

    pid: int
    start_time: int | None
    run_id: str | None = None

    @classmethod
    def this_process(cls, run_id: str | None) -> Owner:
        return cls(os.getpid(), process_start_time(os.getpid()), run_id)

    def alive(self) -> bool:
        started = process_start_time(self.pid)
        return started is not None and (self.start_time is None or started == self.start_time)


def owner_path(endpoint_dir: Path, role: str) -> Path:
    return endpoint_dir / f"{role}{OWNER_SUFFIX}"


def write_owner(endpoint_dir: Path, role: str, owner: Owner) -> Path:
    return write_atomically(owner_path(endpoint_dir, role),
                            json.dumps({"pid": owner.pid, "start_time": owner.start_time, "run_id": owner.run_id}))


def read_owner(path: Path) -> Owner | None:
    """The owner a file names; None when there is no file (the store owns the server)."""
    try:
        data = json.loads(path.read_text())
        return Owner(int(data["pid"]), data.get("start_time"), data.get("run_id"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Owner(0, None)  # unreadable: nobody alive owns it


def recorded_as_serving(owner_file: Path, pid: int) -> bool:
    """Whether the store beside this endpoint directory records ``pid`` as the endpoint's server.

    Read-only, from the server's own process: ``<store>/endpoints/<name>/<role>.owner`` -> ``<store>/state.db``.
    """
    import sqlite3

    endpoint_dir = owner_file.parent
    database = endpoint_dir.parent.parent / "state.db"
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT pid FROM endpoints WHERE name=?", (endpoint_dir.name,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row) and row[0] == pid


def watch_owner(path: str | os.PathLike[str] | None, on_orphaned: Callable[[], None],
                interval: float = WATCH_INTERVAL_SECONDS) -> threading.Thread | None:
    """In a server's master: call ``on_orphaned`` once the pipeline named in ``path`` has died,
    unless the store records this server as its endpoint's (the pipeline died between recording
    it and removing the owner file: the server is the store's, and keeps serving).

    The file disappearing means the store took ownership: the watch ends and the server keeps serving.
    """
    if not path:
        return None
    owner_file = Path(path)

    def watch() -> None:
        while True:
            owner = read_owner(owner_file)
            if owner is None:
                return
            if not owner.alive():
                if recorded_as_serving(owner_file, os.getpid()):
                    owner_file.unlink(missing_ok=True)
                else:
                    on_orphaned()
                return
            time.sleep(interval)

    thread = threading.Thread(target=watch, name="mlops-owner-watch", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- finding and stopping
@dataclass(frozen=True)
class ServerProcess:
    """One server's process group, found by the pid file its command line names."""

    endpoint_dir: Path
    role: str
    group: int  # the process group id: the master's pid, which led the new session
    pids: tuple[int, ...]  # every live process of the group found (master and workers)

    @property
    def master_alive(self) -> bool:
        return self.group in self.pids

    @property
    def owner(self) -> Owner | None:
        return read_owner(owner_path(self.endpoint_dir, self.role))


def pid_file_argument(endpoint_dir: Path, role: str) -> str:
    """The ``--pid`` path a server is started with: its identity on the command line."""
    return str(endpoint_dir / f"{role}{PID_SUFFIX}")


def find_servers(endpoint_dir: Path) -> list[ServerProcess]:
    """Every live server process group started for this endpoint directory, by role."""
    needle = (str(endpoint_dir.resolve()) + os.sep).encode()
    groups: dict[tuple[str, int], list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if b"--pid" not in argv:
            continue
        pid_file = argv[argv.index(b"--pid") + 1] if argv.index(b"--pid") + 1 < len(argv) else b""
        if not pid_file.startswith(needle) or not pid_file.endswith(PID_SUFFIX.encode()):
            continue
        fields = _stat_fields(pid)
        if not fields or fields[0] in (b"Z", b"X"):
            continue
        role = Path(pid_file.decode(errors="replace")).name[: -len(PID_SUFFIX)]
        groups.setdefault((role, int(fields[3])), []).append(pid)
    return [ServerProcess(endpoint_dir, role, group, tuple(sorted(pids)))
            for (role, group), pids in sorted(groups.items())]


def stop_server(server: ServerProcess, timeout: float = 10.0) -> None:
    """Stop a server's whole process group: SIGTERM, then SIGKILL after ``timeout``."""
    stop_group(server.group, timeout)


def stop_group(group: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group (master and workers, dead master or not), SIGKILL after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            reap(group)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap(group)
            if not _group_alive(group):
                return
            time.sleep(0.05)


def _group_alive(group: int) -> bool:
    return bool(group_members(group))


def group_members(group: int, marker: str | None = None) -> list[int]:
    """Live processes of a process group (whose command line has ``marker``, if given)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if not fields or fields[0] in (b"Z", b"X") or int(fields[3]) != group:
            continue
        if marker is not None:
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    if marker.encode() not in handle.read():
                        continue
            except OSError:
                continue
        members.append(int(entry.name))
    return members


def stop_process(pid: int | None, marker: str | None = None, timeout: float = 10.0) -> None:
    """Stop the server whose master is ``pid``: its whole group, also when only its workers are left.

    With ``marker``, only a group whose processes carry it on their command line: a pid
    the OS gave to some other program since is never signalled.
    """
    if not pid:
        return
    if group_members(pid, marker):
        stop_group(pid, timeout)
    reap(pid)
