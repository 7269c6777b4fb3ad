"""The local backend: training in this process, endpoints as gunicorn servers on loopback.

An endpoint is one long-lived gunicorn master on a stable port, detached from
the CLI so it keeps serving after the pipeline exits. It serves the version
named in ``<store>/endpoints/<name>/current.json``. A new version first runs
as a *candidate* server on a port of its own; only after its tests pass is
``current.json`` replaced and the stable master sent SIGHUP, which starts
fresh workers on the same listening socket and retires the old ones after
their requests finish: no request is dropped. Rolling back is the same
switch in the other direction.

Imports neither boto3 nor the SageMaker SDK.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from pipeline.backends.base import Backend, DeploymentError, Outcome, Staged
from pipeline.errors import PipelineError
from pipeline.serving import (
    POINTER_ENV,
    POINTER_WAIT_ENV,
    SHA_HEADER,
    TOKEN_ENV,
    VERSION_HEADER,
    ModelIntegrityError,
    verified_model_dir,
)
from pipeline.testing import EndpointDown, HttpEndpointClient, Reply
from pipeline.training import TrainingJob, TrainingPipeline

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CURRENT_POINTER = "current.json"
AUTH_FILE = "auth.json"
START_MARKER = "=== mlops: starting"
# Environment variables an endpoint process does not need and must not inherit.
_SECRET_ENV = re.compile(r"(SECRET|PASSWORD|WEBHOOK|SESSION_TOKEN|ACCESS_KEY)", re.IGNORECASE)


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


def process_alive(pid: int | None, marker: str | None = None) -> bool:
    """True for a running (not zombie) process, whose command line has ``marker`` if given."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        if state in (b"Z", b"X"):
            return False
        if marker is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                return marker.encode() in handle.read()
        return True
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def stop_process(pid: int | None, marker: str | None = None, timeout: float = 10.0) -> None:
    """SIGTERM the server's process group (master and workers), SIGKILL after ``timeout``."""
    if not process_alive(pid, marker):
        return
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class LocalEndpointClient(HttpEndpointClient):
    """HTTP client that gives up at once when the server process has died."""

    def __init__(self, url: str, timeout: float, token: str | None, pid: int | None, marker: str,
                 log_file: Path | None) -> None:
        super().__init__(url, timeout, token)
        self.pid = pid
        self.marker = marker
        self.log_file = log_file

    def ping(self) -> Reply:
        if self.pid is not None:
            _reap(self.pid)
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


class LocalBackend(Backend):
    TYPE = "local"

    # --- paths ---
    def endpoint_dir(self, name: str) -> Path:
        return self.store.endpoints_dir / name

    def pointer_path(self, name: str, version: str) -> Path:
        return self.endpoint_dir(name) / "versions" / f"{version}.json"

    def marker(self, name: str, role: str = "stable") -> str:
        return f"mlops-{name}-{role}"

    def url(self, port: int) -> str:
        return f"http://{self.config.endpoint_host}:{port}"

    # --- training ---
    def train(self, training: TrainingPipeline) -> TrainingJob:
        return training.run(self.store.jobs_dir)

    # --- serving processes ---
    def _write_pointer(self, name: str, version: str, job: TrainingJob) -> Path:
        path = self.pointer_path(name, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = {"endpoint": name, "version": version, "training_job": job.name,
                "model_dir": str(job.model_dir.resolve()), "sha256": job.model_sha256,
                "max_payload_mb": self.config.max_payload_mb,
                "client_timeout_seconds": self.config.client_timeout_seconds,
                "auth_file": str((self.endpoint_dir(name) / AUTH_FILE).resolve())}
        _atomic_write(path, json.dumps(spec, indent=2))
        return path

    def _write_auth(self, name: str) -> None:
        """The endpoint's token is a setting of the endpoint, not of a version: every worker (re)start
        reads it, so a token set by a later deployment or rollback applies at once. Only its hash is kept."""
        token = os.environ.get(TOKEN_ENV)
        path = self.endpoint_dir(name) / AUTH_FILE
        if token:
            _atomic_write(path, json.dumps({"token_sha256": hashlib.sha256(token.encode()).hexdigest()}))
        elif path.is_file():
            log.warning("endpoint %s is token-protected and %s is not set: requests without the token get 401 "
                        "(delete %s to open it)", name, TOKEN_ENV, path)

    def _point_current(self, name: str, version: str) -> None:
        """Point the stable server at ``version``, after checking that its model is intact.

        Checked here, before the switch: a worker that refuses a tampered model would
        otherwise take the whole endpoint down on the next reload.
        """
        source = self.pointer_path(name, version)
        if not source.is_file():
            raise DeploymentError(f"version {version!r} of endpoint {name!r} has no pointer file {str(source)!r}")
        try:
            verified_model_dir(json.loads(source.read_text()))
        except (ModelIntegrityError, OSError) as err:
            raise DeploymentError(f"version {version!r}: {err}") from None
        _atomic_write(self.endpoint_dir(name) / CURRENT_POINTER, source.read_text())

    def serving_pointer(self, name: str) -> dict[str, Any] | None:
        """The version the stable server is pointed at (what it serves after its next reload)."""
        path = self.endpoint_dir(name) / CURRENT_POINTER
        return json.loads(path.read_text()) if path.is_file() else None

    # --- prestarting: the server's imports overlap training ---
    _prestarted: dict[str, Any] | None = None

    def prestart(self, endpoint_name: str, run_id: str) -> None:
        """Start the next server now, waiting for its pointer, so its ~1 s of imports overlap training.

        Beside a live endpoint it is a candidate on a free port; for a new endpoint it is the stable
        server itself. ``stage`` uses it if nothing changed meanwhile; otherwise it is stopped.
        """
        row = self.store.endpoint(endpoint_name)
        if row and self._stable_alive(row):
            kind, role, port = "candidate", f"candidate-{run_id}", free_port(self.config.endpoint_host)
            pointer = self.endpoint_dir(endpoint_name) / "versions" / f".pending-{run_id}.json"
        elif row is None:
            kind, role = "direct", "stable"
            port = self.config.endpoint_port or free_port(self.config.endpoint_host)
            pointer = self.endpoint_dir(endpoint_name) / CURRENT_POINTER
            if port_in_use(self.config.endpoint_host, port) or pointer.exists():
                return  # stage() will say why
        else:
            return  # a dead endpoint: stage() restarts it on its verified version first
        pointer.parent.mkdir(parents=True, exist_ok=True)
        process = self._start_server(endpoint_name, role, port, pointer, wait_for_pointer=True)
        self._prestarted = {"endpoint": endpoint_name, "kind": kind, "role": role, "port": port,
                            "pointer": pointer, "pid": process.pid}

    def release_prestart(self) -> None:
        if self._prestarted is not None:
            prestarted, self._prestarted = self._prestarted, None
            stop_process(prestarted["pid"], self.marker(prestarted["endpoint"], prestarted["role"]))

    def _take_prestarted(self, endpoint_name: str, kind: str) -> dict[str, Any] | None:
        prestarted, self._prestarted = self._prestarted, None
        if prestarted and prestarted["endpoint"] == endpoint_name and prestarted["kind"] == kind and \
                process_alive(prestarted["pid"], self.marker(endpoint_name, prestarted["role"])):
            return prestarted
        if prestarted:
            self._prestarted = prestarted
            self.release_prestart()
        return None

    def _start_server(self, name: str, role: str, port: int, pointer: Path,
                      wait_for_pointer: bool = False) -> subprocess.Popen[bytes]:
        directory = self.endpoint_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        log_path = directory / f"{role}.log"
        command = [
            sys.executable, "-m", "gunicorn",
            "--config", "python:pipeline.gunicorn_conf",
            "--bind", f"{self.config.endpoint_host}:{port}",
            "--workers", str(self.config.endpoint_workers),
            "--name", self.marker(name, role),
            "--pid", str(directory / f"{role}.pid"),
            "pipeline.serving:create_app()",
        ]
        env = {key: value for key, value in os.environ.items()
               if not _SECRET_ENV.search(key) and key != TOKEN_ENV}  # the server knows only the token's hash
        env[POINTER_ENV] = str(pointer.resolve())
        if wait_for_pointer:  # a prestarted server gives up if no deployment comes within 10 minutes
            env[POINTER_WAIT_ENV] = "600"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        with open(log_path, "ab") as log:
            log.write(f"{START_MARKER} {role} on port {port}\n".encode())
            log.flush()
            return subprocess.Popen(
                command, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,  # keeps serving after the CLI exits
            )

    def client(self, url: str, endpoint_name: str | None = None,
               handle: dict[str, Any] | None = None) -> LocalEndpointClient:
        pid = (handle or {}).get("pid")
        role = (handle or {}).get("role", "stable")
        log_file = self.endpoint_dir(endpoint_name) / f"{role}.log" if endpoint_name else None
        marker = self.marker(endpoint_name, role) if endpoint_name else ""
        return LocalEndpointClient(url, self.config.request_timeout_seconds, os.environ.get(TOKEN_ENV), pid,
                                   marker, log_file)

    def _stable_alive(self, row: dict[str, Any] | None) -> bool:
        return bool(row) and process_alive(row["pid"], self.marker(row["name"]))

    # --- the deployment steps ---
    def stage(self, endpoint_name: str, version: str, job: TrainingJob) -> Staged:
        pointer = self._write_pointer(endpoint_name, version, job)
        self._write_auth(endpoint_name)
        row = self.store.endpoint(endpoint_name)
        previous = row["serving_version"] if row else None
        restarted = None
        if row and previous and not self._stable_alive(row):
            # The stable server died: bring back the verified version first, so the new one is still
            # tested beside it and never served untested.
            restarted = self._restart_stable(endpoint_name, row, previous)
            row = {**row, "pid": restarted}
        if self._stable_alive(row):
            prestarted = self._take_prestarted(endpoint_name, "candidate")
            if prestarted:  # hand the waiting server its version
                _atomic_write(prestarted["pointer"], pointer.read_text())
                pid, port, role = prestarted["pid"], prestarted["port"], prestarted["role"]
            else:
                port, role = free_port(self.config.endpoint_host), f"candidate-{version}"
                pid = self._start_server(endpoint_name, role, port, pointer).pid
            return Staged(endpoint_name, version, previous, self.url(port), row["url"], "candidate",
                          {"pid": pid, "port": port, "role": role,
                           "stable_pid": row["pid"], "stable_port": row["port"], "restarted_pid": restarted})
        prestarted = self._take_prestarted(endpoint_name, "direct") if row is None else None
        if prestarted:  # the new endpoint's server is up and waiting for current.json
            self._point_current(endpoint_name, version)
            port = prestarted["port"]
            return Staged(endpoint_name, version, previous, self.url(port), self.url(port), "direct",
                          {"pid": prestarted["pid"], "port": port, "role": "stable",
                           "stable_pid": prestarted["pid"], "stable_port": port})
        # A first deployment (or one whose endpoint never served a version): start the stable server with it.
        port = row["port"] if row and row["port"] else (self.config.endpoint_port or free_port(self.config.endpoint_host))
        if port_in_use(self.config.endpoint_host, port):
            raise PipelineError(
                f"endpoint_port {port} on {self.config.endpoint_host} is already in use by another program; "
                f"choose another endpoint_port")
        self._point_current(endpoint_name, version)
        process = self._start_server(endpoint_name, "stable", port, self.endpoint_dir(endpoint_name) / CURRENT_POINTER)
        return Staged(endpoint_name, version, previous, self.url(port), self.url(port), "direct",
                      {"pid": process.pid, "port": port, "role": "stable", "stable_pid": process.pid,
                       "stable_port": port})

    def _restart_stable(self, endpoint_name: str, row: dict[str, Any], version: str) -> int:
        """Start the stable server again on its port with ``version``; verified, returns its pid."""
        if port_in_use(self.config.endpoint_host, row["port"]):
            raise DeploymentError(f"endpoint {endpoint_name!r}: its port {row['port']} is taken by another "
                                  f"program; stop it, or run cleanup and deploy again")
        self._point_current(endpoint_name, version)
        pid = self._start_server(endpoint_name, "stable", row["port"],
                                 self.endpoint_dir(endpoint_name) / CURRENT_POINTER).pid
        self._verify(endpoint_name, row["url"], version, pid)
        return pid

    def promote(self, staged: Staged) -> Outcome:
        if staged.kind == "candidate":
            self._point_current(staged.endpoint_name, staged.version)
            self._reload(staged.handle["stable_pid"])
            try:
                self._verify(staged.endpoint_name, staged.stable_url, staged.version, staged.handle["stable_pid"])
            finally:
                stop_process(staged.handle["pid"], self.marker(staged.endpoint_name, staged.handle["role"]))
        else:
            self._verify(staged.endpoint_name, staged.stable_url, staged.version, staged.handle["stable_pid"])
        return Outcome("deployed", staged.version, f"{staged.version} serves at {staged.stable_url}")

    def discard(self, staged: Staged) -> Outcome:
        if staged.kind == "candidate":
            stop_process(staged.handle["pid"], self.marker(staged.endpoint_name, staged.handle["role"]))
            pointer = self.serving_pointer(staged.endpoint_name)
            if pointer and staged.previous_version and pointer["version"] != staged.previous_version:
                # The switch had happened (its verification failed): switch back.
                return self.rollback(staged.endpoint_name, staged.previous_version, pid=staged.handle["stable_pid"])
            self._verify(staged.endpoint_name, staged.stable_url, staged.previous_version, staged.handle["stable_pid"])
            return Outcome("kept_previous", staged.previous_version,
                           f"{staged.previous_version} kept serving; candidate {staged.version} stopped")
        if staged.previous_version:
            return self.rollback(staged.endpoint_name, staged.previous_version, pid=staged.handle["stable_pid"])
        stop_process(staged.handle["pid"], self.marker(staged.endpoint_name))
        return Outcome("removed", None, f"first deployment of {staged.endpoint_name} failed: endpoint removed")

    def rollback(self, endpoint_name: str, to_version: str, pid: int | None = None) -> Outcome:
        row = self.store.require_endpoint(endpoint_name)
        pid = pid or row["pid"]
        self._write_auth(endpoint_name)
        self._point_current(endpoint_name, to_version)
        if process_alive(pid, self.marker(endpoint_name)):
            self._reload(pid)
            self._verify(endpoint_name, row["url"], to_version, pid)
        else:  # the server died: bring the endpoint back on its port
            pid = self._restart_stable(endpoint_name, row, to_version)
        return Outcome("rolled_back", to_version, f"{to_version} serves again at {row['url']}", {"pid": pid})

    def remove(self, endpoint_name: str) -> None:
        row = self.store.endpoint(endpoint_name)
        if row:
            stop_process(row["pid"], self.marker(endpoint_name))
        self._stop_candidates(endpoint_name)

    def _stop_candidates(self, endpoint_name: str) -> list[str]:
        """Stop candidate servers left behind by a pipeline that died; returns their roles."""
        stopped = []
        for pidfile in self.endpoint_dir(endpoint_name).glob("candidate-*.pid"):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            if process_alive(pid, self.marker(endpoint_name, pidfile.stem)):
                stop_process(pid, self.marker(endpoint_name, pidfile.stem))
                stopped.append(pidfile.stem)
            pidfile.unlink(missing_ok=True)
        return stopped

    def reconcile(self, endpoint_name: str, deployment: dict[str, Any]) -> Outcome:
        """After a pipeline died mid-deployment: stop its candidates, serve the last verified version."""
        stopped = self._stop_candidates(endpoint_name)
        notes = [f"stopped orphaned {', '.join(stopped)}"] if stopped else []
        row = self.store.endpoint(endpoint_name)
        known_good = deployment["from_version"]
        if row is None:
            return Outcome("interrupted", None, "; ".join(notes + ["endpoint was not running"]))
        alive = self._stable_alive(row)
        if known_good is None:  # an interrupted first deployment was never verified: remove it
            stop_process(row["pid"], self.marker(endpoint_name))
            return Outcome("removed", None, "; ".join(notes + ["unverified first deployment removed"]))
        if not alive:
            return Outcome("interrupted", known_good, "; ".join(
                notes + ["server not running: the next deployment or rollback restarts it"]))
        pointer = self.serving_pointer(endpoint_name)
        if pointer is None or pointer["version"] != known_good:
            self._point_current(endpoint_name, known_good)
            self._reload(row["pid"])
            notes.append(f"switched back from {pointer['version'] if pointer else 'nothing'} to {known_good}")
        self._verify(endpoint_name, row["url"], known_good, row["pid"])
        return Outcome("interrupted", known_good, "; ".join(notes + [f"{known_good} serves, verified"]))

    def delete_version_artifacts(self, endpoint_name: str, version: str) -> None:
        self.pointer_path(endpoint_name, version).unlink(missing_ok=True)
        (self.endpoint_dir(endpoint_name) / f"candidate-{version}.log").unlink(missing_ok=True)

    def describe(self, endpoint_name: str) -> dict[str, Any]:
        row = self.store.require_endpoint(endpoint_name)
        alive = self._stable_alive(row)
        health: dict[str, Any] = {"healthy": False}
        if alive:
            try:
                reply = self.client(row["url"]).ping()
                health = {"healthy": reply.ok, "version": reply.headers.get(VERSION_HEADER)}
            except requests.RequestException as err:
                health = {"healthy": False, "error": type(err).__name__}
        return {"name": endpoint_name, "backend": self.TYPE, "url": row["url"], "pid": row["pid"],
                "process_alive": alive, "serving_version": row["serving_version"], **health}

    # --- switching and checking ---
    def _reload(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise DeploymentError(f"stable server process {pid} is gone; cannot switch versions") from None

    def _verify(self, endpoint_name: str, url: str, version: str | None, pid: int | None) -> None:
        """Healthy, and every one of several answers names ``version``: only then is a switch done."""
        client = self.client(url, endpoint_name, {"pid": pid, "role": "stable"})
        pointer = self.pointer_path(endpoint_name, version) if version else None
        expected_sha = json.loads(pointer.read_text())["sha256"] if pointer and pointer.is_file() else None
        deadline = time.monotonic() + self.config.health_timeout_seconds
        consecutive = 0
        seen = "no answer"
        while time.monotonic() < deadline:
            try:
                reply = client.ping()
                seen = f"/ping {reply.status} from {reply.headers.get(VERSION_HEADER)}"
                if expected_sha and reply.ok and reply.headers.get(VERSION_HEADER) == version \
                        and reply.headers.get(SHA_HEADER) != expected_sha:
                    raise DeploymentError(f"endpoint {endpoint_name!r} serves {version} with model sha256 "
                                          f"{reply.headers.get(SHA_HEADER)}, expected {expected_sha}")
                if reply.ok and reply.headers.get(VERSION_HEADER) == version:
                    consecutive += 1
                    # Old workers may still answer for a moment after a HUP; wait until they are gone.
                    if consecutive >= 2 * self.config.endpoint_workers + 2:
                        return
                    continue
            except EndpointDown as err:
                raise DeploymentError(f"endpoint {endpoint_name!r}: {err}") from None
            except requests.RequestException as err:
                seen = f"cannot reach {url}: {type(err).__name__}"
            consecutive = 0
            time.sleep(0.05)
        raise DeploymentError(
            f"endpoint {endpoint_name!r} did not serve version {version} at {url} within "
            f"{self.config.health_timeout_seconds:g}s (last: {seen})")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
