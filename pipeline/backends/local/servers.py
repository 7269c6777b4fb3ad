"""Starting a local endpoint server, and talking to one that may have died.

An endpoint server is a gunicorn master with its workers, started in a session of its own so
it can outlive the CLI. Before it starts, its owner file is written (``server_processes``):
until the store records it, it dies with the pipeline that started it. It inherits an
allow-list of the environment, never the pipeline's secrets.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from pipeline.errors import ExitCode, PipelineError
from pipeline.serving.client import EndpointDown, HttpEndpointClient, Reply
from pipeline.serving.contract import POINTER_ENV, POINTER_WAIT_ENV
from pipeline.serving.metrics import METRICS_DIR_ENV
from pipeline.state.processes import (
    OWNER_ENV,
    Owner,
    group_members,
    pid_file_argument,
    process_alive,
    reap,
    write_owner,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
START_MARKER = "=== mlops: starting"
# The only environment a long-lived endpoint process inherits: what Python, the numeric
# libraries and the locale need. CI tokens, cloud keys and the like stay with the pipeline.
_SERVER_ENV_ALLOWED = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "SYSTEMROOT",
                       "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                       "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV")


def server_environment(source: dict[str, str] | None = None) -> dict[str, str]:
    """An allow-list, not a deny-list: a secret under a name nobody thought of never reaches a server."""
    source = dict(os.environ) if source is None else source
    return {key: value for key, value in source.items()
            if key in _SERVER_ENV_ALLOWED or key.startswith("LC_")}


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: connections it closed linger in TIME_WAIT and must not count as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


class LocalEndpointClient(HttpEndpointClient):
    """HTTP client that gives up at once when the server process has died."""

    def __init__(self, url: str, timeout: float, token: str | None, pid: int | None, marker: str | None,
                 log_file: Path | None) -> None:
        super().__init__(url, timeout, token)
        self.pid = pid
        self.marker = marker
        self.log_file = log_file

    def ping(self) -> Reply:
        if self.pid is not None:
            reap(self.pid)
            if not process_alive(self.pid, self.marker):
                raise EndpointDown(f"server process {self.pid} exited: {last_error_line(self.log_file)}")
        return super().ping()


def last_error_line(log_file: Path | None) -> str:
    """The most telling line of a server log, for a one-line failure reason."""
    if log_file is None or not log_file.is_file():
        return "no log"
    text = log_file.read_text(errors="replace").rsplit(START_MARKER, 1)[-1]  # this start's lines only
    lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "refusing" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else "empty log"



def launch_server(endpoint_dir: Path, endpoint_name: str, role: str, host: str, port: int, workers: int,
                  pointer: Path, owner: Owner, wait_for_pointer: bool = False) -> subprocess.Popen[bytes]:
    """Start a server for ``role``, recorded on disk (its owner file) before it exists."""
    endpoint_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_pid_file(endpoint_dir, endpoint_name, role)
    owner_file = write_owner(endpoint_dir, role, owner)
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:pipeline.serving.gunicorn_conf",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--name", f"mlops-{endpoint_name}-{role}",
        "--pid", pid_file_argument(endpoint_dir, role),
        "pipeline.serving.app:create_app()",
    ]
    env = server_environment()  # the server knows only the token's hash, and no other secret
    env[POINTER_ENV] = str(pointer.resolve())
    env[OWNER_ENV] = str(owner_file)
    # prometheus_client's multiprocess directory: one per endpoint and role (a candidate's counts are not the
    # stable server's); its master empties it at start and removes it when it stops.
    env[METRICS_DIR_ENV] = str((endpoint_dir / "metrics" / role).resolve())
    if wait_for_pointer:  # a prestarted server gives up if no deployment comes within 10 minutes
        env[POINTER_WAIT_ENV] = "600"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    with open(endpoint_dir / f"{role}.log", "ab") as log_file:
        log_file.write(f"{START_MARKER} {role} on port {port}\n".encode())
        log_file.flush()
        return subprocess.Popen(
            command, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True,  # may keep serving after the CLI exits
        )


def _clear_stale_pid_file(endpoint_dir: Path, endpoint_name: str, role: str) -> None:
    """gunicorn refuses to start over a pid file that names a live process, even an unrelated one
    that reused the pid: a pid file whose server is gone is removed first."""
    marker = pid_file_argument(endpoint_dir, role)
    pid_file = Path(marker)
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if group_members(pid, marker):
        raise PipelineError(f"endpoint {endpoint_name!r}: a {role} server (pid {pid}) is already running; run "
                            f"`run_pipeline.py status --endpoint-name {endpoint_name}`", ExitCode.FAILURE)
    pid_file.unlink(missing_ok=True)
