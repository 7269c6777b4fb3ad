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

import json
import logging
import os
import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from pipeline.backends.base import Backend, DeploymentError, IntervalTraffic, Outcome, Server, Staged, TrafficStep
from pipeline.backends.local.pointers import CAPTURE_DIR, EndpointFiles, routes_as
from pipeline.backends.local.servers import LocalEndpointClient, free_port, launch_server, port_in_use
from pipeline.backends.local.traffic import TrafficReading, interval, read_metrics
from pipeline.container.verified_files import write_atomically
from pipeline.errors import PipelineError
from pipeline.outcomes import FinalState
from pipeline.serving.client import EndpointDown, Reply, poll_ping
from pipeline.serving.contract import SHA_HEADER, TOKEN_ENV, VERSION_HEADER
from pipeline.serving.metrics import EndpointMetrics
from pipeline.state.processes import (
    Owner,
    ServerProcess,
    find_servers,
    owner_path,
    pid_file_argument,
    process_alive,
    stop_process,
    stop_server,
)
from pipeline.training.jobs import TrainingJob

if TYPE_CHECKING:
    from pipeline.training.fitting import TrainingPipeline

log = logging.getLogger(__name__)
PORT_RELEASE_SECONDS = 10.0  # how long a restart waits for a dead server's port to be let go


class LocalBackend(Backend):
    TYPE = "local"

    # --- paths ---
    def endpoint_dir(self, name: str) -> Path:
        return self.store.endpoints_dir / name

    def files(self, name: str) -> EndpointFiles:
        return EndpointFiles(name, self.endpoint_dir(name))

    def pointer_path(self, name: str, version: str) -> Path:
        return self.files(name).version_pointer(version)

    def marker(self, name: str, role: str = "stable") -> str:
        """What a server's command line carries: its pid file, unique to this store, endpoint and role."""
        return pid_file_argument(self.endpoint_dir(name), role)

    def url(self, port: int) -> str:
        return f"http://{self.config.endpoint_host}:{port}"

    # --- training ---
    def train(self, training: TrainingPipeline) -> TrainingJob:
        return training.run(self.store.jobs_dir)

    # --- serving processes ---
    # --- prestarting: the server's imports overlap training ---
    _prestarted: dict[str, Any] | None = None

    def prestart(self, endpoint_name: str) -> None:
        """Start the next server now, waiting for its pointer, so its ~1 s of imports overlap training.

        Called with the endpoint lock held. Beside a live endpoint it is a candidate on a free
        port; for a new endpoint it is the stable server itself. Either way it is owned by this
        pipeline (it dies with it) until the store records it. ``stage`` uses it if nothing
        changed meanwhile; otherwise it is stopped.
        """
        row = self.store.endpoint(endpoint_name)
        if row and self._stable_alive(row):
            kind, role, port = "candidate", f"candidate-{self.run_id}", free_port(self.config.endpoint_host)
            pointer = self.endpoint_dir(endpoint_name) / "versions" / f".pending-{self.run_id}.json"
        elif row is None:
            kind, role = "direct", "stable"
            port = self.config.endpoint_port or free_port(self.config.endpoint_host)
            pointer = self.files(endpoint_name).current
            if port_in_use(self.config.endpoint_host, port) or pointer.exists() or \
                    find_servers(self.endpoint_dir(endpoint_name)):
                return  # stage() will sort it out or say why
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
            owner_path(self.endpoint_dir(prestarted["endpoint"]), prestarted["role"]).unlink(missing_ok=True)
            if prestarted["kind"] == "candidate":
                Path(prestarted["pointer"]).unlink(missing_ok=True)

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
        """Start a server owned by this pipeline: it dies with the pipeline unless the store takes it
        over (``adopt``)."""
        return launch_server(self.endpoint_dir(name), name, role, self.config.endpoint_host, port,
                             self.config.endpoint_workers, pointer, Owner.this_process(self.run_id),
                             wait_for_pointer=wait_for_pointer)

    def adopt(self, endpoint_name: str) -> None:
        """The store now records the stable server: it no longer dies with this pipeline."""
        owner_path(self.endpoint_dir(endpoint_name), "stable").unlink(missing_ok=True)

    def client(self, endpoint_name: str, server: Server) -> LocalEndpointClient:
        role = server.role or "stable"
        return LocalEndpointClient(server.url, self.config.request_timeout_seconds, os.environ.get(TOKEN_ENV),
                                   server.pid, self.marker(endpoint_name, role),
                                   self.endpoint_dir(endpoint_name) / f"{role}.log")

    def serving(self, endpoint_name: str) -> Server:
        row = self.store.require_endpoint(endpoint_name)
        return self._server(row["port"], row["pid"], "stable")

    def capture_directory(self, endpoint_name: str, version: str, scratch: Path,
                          since: datetime | None = None) -> Path | None:  # read in place: the reader skips hours
        directory = self.endpoint_dir(endpoint_name) / CAPTURE_DIR
        # Something in its place (a file) is returned too: the reader says what it found there.
        return directory if directory.exists() else None

    def serving_model(self, endpoint_name: str, scratch: Path) -> tuple[str, Path] | None:
        row = self.store.endpoint(endpoint_name)
        if row is None or not row["serving_version"]:
            return None
        pointer = self.pointer_path(endpoint_name, row["serving_version"])
        if not pointer.is_file():
            return None
        return row["serving_version"], Path(json.loads(pointer.read_text())["model_dir"])

    def _server(self, port: int, pid: int | None, role: str) -> Server:
        return Server(self.url(port), self.config.endpoint_host, port, pid, role, machine=socket.gethostname())

    def _stable_alive(self, row: dict[str, Any] | None) -> bool:
        return bool(row) and process_alive(row["pid"], self.marker(row["name"]))

    # --- the deployment steps ---
    def stage(self, endpoint_name: str, version: str, job: TrainingJob) -> Staged:
        pointer = self.files(endpoint_name).write_version(version, job, self.config)
        self.files(endpoint_name).write_auth()
        row = self.store.endpoint(endpoint_name)
        previous = row["serving_version"] if row else None
        restarted = None
        if row and previous and not self._stable_alive(row):
            # The stable server died: bring back the verified version first, so the new one is still
            # tested beside it and never served untested.
            restarted = self._server(row["port"], self._restart_stable(endpoint_name, row, previous), "stable")
            row = {**row, "pid": restarted.pid}
        if self._stable_alive(row):
            prestarted = self._take_prestarted(endpoint_name, "candidate")
            if prestarted:  # hand the waiting server its version
                write_atomically(prestarted["pointer"], pointer.read_text())
                candidate = self._server(prestarted["port"], prestarted["pid"], prestarted["role"])
            else:
                port, role = free_port(self.config.endpoint_host), f"candidate-{version}"
                candidate = self._server(port, self._start_server(endpoint_name, role, port, pointer).pid, role)
            return Staged(endpoint_name, version, previous, candidate, self._server(row["port"], row["pid"], "stable"),
                          beside_stable=True, restarted=restarted)
        prestarted = self._take_prestarted(endpoint_name, "direct") if row is None else None
        if prestarted:  # the new endpoint's server is up and waiting for current.json
            self.files(endpoint_name).point_current(version)
            server = self._server(prestarted["port"], prestarted["pid"], "stable")
            return Staged(endpoint_name, version, previous, server, server, beside_stable=False)
        # A first deployment (or one whose endpoint never served a version): start the stable server with it.
        port = (row["port"] if row and row["port"] else None) or self.config.endpoint_port or \
            free_port(self.config.endpoint_host)
        self._clear_dead_stable(endpoint_name, port)
        self.files(endpoint_name).point_current(version)
        process = self._start_server(endpoint_name, "stable", port, self.files(endpoint_name).current)
        server = self._server(port, process.pid, "stable")
        return Staged(endpoint_name, version, previous, server, server, beside_stable=False)

    def _clear_dead_stable(self, endpoint_name: str, port: int) -> None:
        """Before a stable server starts on ``port``: stop what is left of an earlier one of this
        endpoint (workers keep the port for up to their timeout after their master was killed),
        then wait a moment for the port; another program on it is the user's to move."""
        for server in find_servers(self.endpoint_dir(endpoint_name)):
            if server.role == "stable" and not _owned_by_us(server):
                log.warning("endpoint %s: stopping what is left of a dead server (processes %s)", endpoint_name,
                            ", ".join(map(str, server.pids)))
                stop_server(server)
        deadline = time.monotonic() + PORT_RELEASE_SECONDS
        while port_in_use(self.config.endpoint_host, port):
            if time.monotonic() >= deadline:
                raise PipelineError(
                    f"endpoint_port {port} on {self.config.endpoint_host} is already in use by another program; "
                    f"choose another endpoint_port, or stop that program")
            time.sleep(0.1)

    def _restart_stable(self, endpoint_name: str, row: dict[str, Any], version: str) -> int:
        """Start the stable server again on its port with ``version``; verified, returns its pid."""
        try:
            self._clear_dead_stable(endpoint_name, row["port"])
        except PipelineError:
            raise DeploymentError(f"endpoint {endpoint_name!r}: its port {row['port']} is taken by another "
                                  f"program; stop it, or run cleanup and deploy again") from None
        self.files(endpoint_name).point_current(version)
        pid = self._start_server(endpoint_name, "stable", row["port"],
                                 self.files(endpoint_name).current).pid
        self._verify(endpoint_name, row["url"], version, pid)
        return pid

    def promote(self, staged: Staged) -> Outcome:
        stable = staged.stable
        if staged.beside_stable:
            self.files(staged.endpoint_name).point_current(staged.version)
            self._reload(stable.pid)
            try:
                self._verify(staged.endpoint_name, stable.url, staged.version, stable.pid)
            finally:
                self._stop_role(staged.endpoint_name, staged.candidate.pid, staged.candidate.role)
        else:
            self._verify(staged.endpoint_name, stable.url, staged.version, stable.pid)
        return Outcome(FinalState.DEPLOYED, staged.version, f"{staged.version} serves at {stable.url}", stable)

    # --- progressive delivery: the stable server's workers route between two models ---
    def bakes_on_the_endpoint(self, traffic_routing: str) -> bool:
        return traffic_routing in ("CANARY", "LINEAR", "SHADOW")

    def split_traffic(self, staged: Staged, step: TrafficStep) -> None:
        """Both models in the stable server's workers (a HUP, as for a switch: no request dropped), verified by
        pings until every worker routes as told. The candidate's own server is no longer needed."""
        if not staged.beside_stable or staged.previous_version is None:
            raise DeploymentError(f"endpoint {staged.endpoint_name!r} has no serving version to split traffic with")
        self._stop_role(staged.endpoint_name, staged.candidate.pid, staged.candidate.role)
        self.files(staged.endpoint_name).point_split(staged.previous_version, staged.version, step)
        self._reload(staged.stable.pid)
        expected = {"mode": step.mode, "percent": step.percent, "candidate_version": staged.version}
        self._verify(staged.endpoint_name, staged.stable.url, staged.previous_version, staged.stable.pid,
                     split=expected)

    def _stable_client(self, staged: Staged) -> LocalEndpointClient:
        return self.client(staged.endpoint_name, staged.stable)

    def traffic_mark(self, staged: Staged) -> TrafficReading:
        return self._read_traffic(staged)

    def traffic_since(self, staged: Staged, mark: TrafficReading) -> IntervalTraffic:
        # Every worker writes its counts within FLUSH_SECONDS: wait that long, the split still in place, so the
        # interval's last requests are in its reading rather than lost between two intervals.
        time.sleep(EndpointMetrics.FLUSH_SECONDS + 0.1)
        pointer = self.files(staged.endpoint_name).serving_pointer() or {}
        shadow = (pointer.get("split") or {}).get("mode") == "shadow"
        return interval(mark, self._read_traffic(staged), staged.previous_version or "", staged.version, shadow)

    def _read_traffic(self, staged: Staged) -> TrafficReading:
        try:
            reply = self._stable_client(staged).metrics()
        except requests.RequestException as err:
            raise DeploymentError(f"endpoint {staged.endpoint_name!r}: cannot read its metrics: "
                                  f"{type(err).__name__}") from None
        if not reply.ok:
            raise DeploymentError(f"endpoint {staged.endpoint_name!r}: /metrics answered {reply.status}")
        return read_metrics(reply.body.decode())

    def traffic_split(self, endpoint_name: str) -> dict[str, Any] | None:
        """The split the stable server is pointed at, if any (for ``status``)."""
        split = (self.files(endpoint_name).serving_pointer() or {}).get("split")
        if not split:
            return None
        return {"mode": split.get("mode"), "percent": split.get("percent"),
                "candidate_version": (split.get("candidate") or {}).get("version"),
                **{key: split.get(key) for key in ("interval", "intervals", "seconds", "since")}}

    def discard(self, staged: Staged) -> Outcome:
        stable = staged.stable
        if staged.beside_stable:
            self._stop_role(staged.endpoint_name, staged.candidate.pid, staged.candidate.role)
            pointer = self.files(staged.endpoint_name).serving_pointer()
            if pointer and pointer.get("split") and staged.previous_version:
                # A bake was on: every request goes back to the serving version at once.
                outcome = self.rollback(staged.endpoint_name, staged.previous_version, pid=stable.pid)
                return Outcome(FinalState.ROLLED_BACK, outcome.serving_version,
                               f"traffic split ended: {staged.previous_version} answers every request again at "
                               f"{stable.url}", outcome.stable)
            if pointer and staged.previous_version and pointer["version"] != staged.previous_version:
                # The switch had happened (its verification failed): switch back.
                return self.rollback(staged.endpoint_name, staged.previous_version, pid=stable.pid)
            self._verify(staged.endpoint_name, stable.url, staged.previous_version, stable.pid)
            return Outcome(FinalState.KEPT_PREVIOUS, staged.previous_version,
                           f"{staged.previous_version} kept serving; candidate {staged.version} stopped", stable)
        if staged.previous_version:
            return self.rollback(staged.endpoint_name, staged.previous_version, pid=stable.pid)
        self._stop_role(staged.endpoint_name, stable.pid, "stable")
        return Outcome(FinalState.REMOVED, None, f"first deployment of {staged.endpoint_name} failed: endpoint removed")

    def _stop_role(self, endpoint_name: str, pid: int | None, role: str | None) -> None:
        role = role or "stable"
        stop_process(pid, self.marker(endpoint_name, role))
        owner_path(self.endpoint_dir(endpoint_name), role).unlink(missing_ok=True)

    def rollback(self, endpoint_name: str, to_version: str, pid: int | None = None) -> Outcome:
        row = self.store.require_endpoint(endpoint_name)
        pid = pid or row["pid"]
        self.files(endpoint_name).write_auth()
        self.files(endpoint_name).point_current(to_version)
        if process_alive(pid, self.marker(endpoint_name)):
            self._reload(pid)
            self._verify(endpoint_name, row["url"], to_version, pid)
        else:  # the server died: bring the endpoint back on its port
            pid = self._restart_stable(endpoint_name, row, to_version)
        return Outcome(FinalState.ROLLED_BACK, to_version, f"{to_version} serves again at {row['url']}",
                       self._server(row["port"], pid, "stable"))

    def remove(self, endpoint_name: str) -> None:
        row = self.store.endpoint(endpoint_name)
        if row:
            stop_process(row["pid"], self.marker(endpoint_name))
        for server in find_servers(self.endpoint_dir(endpoint_name)):
            stop_server(server)
        for owner_file in self.endpoint_dir(endpoint_name).glob("*.owner"):
            owner_file.unlink(missing_ok=True)

    def sweep(self, endpoint_name: str) -> list[str]:
        """Stop every server of this endpoint that the store does not own and no live pipeline owns:
        orphaned candidates, prestarted servers, what is left of a killed master."""
        row = self.store.endpoint(endpoint_name)
        stable_pid = row["pid"] if row else None
        stopped = []
        for server in find_servers(self.endpoint_dir(endpoint_name)):
            if server.group == stable_pid and server.master_alive:
                continue
            owner = server.owner
            if owner is not None and owner.alive():
                continue  # its pipeline is still at work (and it dies with that pipeline)
            stop_server(server)
            owner_path(self.endpoint_dir(endpoint_name), server.role).unlink(missing_ok=True)
            stopped.append(f"{server.role} (pid {server.group})")
        return stopped

    def _endpoint_dirs(self) -> list[Path]:
        root = self.store.endpoints_dir
        return sorted(path for path in root.iterdir() if path.is_dir()) if root.is_dir() else []

    def unrecorded_servers(self) -> dict[str, list[str]]:
        """Servers running from this store's endpoint directories for endpoints the store does not
        know and no pipeline owns (the state file was deleted or replaced): name -> roles with pids."""
        known = {row["name"] for row in self.store.endpoints()}
        found: dict[str, list[str]] = {}
        for directory in self._endpoint_dirs():
            if directory.name in known:
                continue
            servers = [server for server in find_servers(directory) if server.owner is None]
            if servers:
                found[directory.name] = [f"{server.role} (pid {server.group})" for server in servers]
        return found

    def stop_abandoned(self) -> list[str]:
        """Stop the servers whose pipeline died before the store took them over. Each would stop
        itself within a moment (``watch_owner``); a command that reports on servers does it now."""
        stopped = []
        recorded = {row["pid"] for row in self.store.endpoints()}
        for directory in self._endpoint_dirs():
            for server in find_servers(directory):
                owner = server.owner
                if owner is None or owner.alive() or server.group in recorded:
                    continue
                stop_server(server)
                owner_path(directory, server.role).unlink(missing_ok=True)
                stopped.append(f"{directory.name} {server.role} (pid {server.group})")
        return stopped

    def reconcile(self, endpoint_name: str, deployment: dict[str, Any]) -> Outcome:
        """After a pipeline died mid-deployment: stop its servers, serve the last verified version."""
        stopped = self.sweep(endpoint_name)
        notes = [f"stopped orphaned {', '.join(stopped)}"] if stopped else []
        row = self.store.endpoint(endpoint_name)
        known_good = deployment["from_version"]
        if row is None:
            return Outcome(FinalState.INTERRUPTED, None, "; ".join(notes + ["endpoint was not running"]))
        alive = self._stable_alive(row)
        if known_good is None:  # an interrupted first deployment was never verified: remove it
            stop_process(row["pid"], self.marker(endpoint_name))
            return Outcome(FinalState.REMOVED, None, "; ".join(notes + ["unverified first deployment removed"]))
        if not alive:
            return Outcome(FinalState.INTERRUPTED, known_good, "; ".join(
                notes + ["server not running: the next deployment or rollback restarts it"]))
        pointer = self.files(endpoint_name).serving_pointer()
        if pointer is None or pointer["version"] != known_good or pointer.get("split"):
            self.files(endpoint_name).point_current(known_good)
            self._reload(row["pid"])
            if pointer and pointer.get("split") and pointer["version"] == known_good:
                notes.append(f"ended the traffic split with {pointer['split'].get('candidate', {}).get('version')}")
            else:
                notes.append(f"switched back from {pointer['version'] if pointer else 'nothing'} to {known_good}")
        self._verify(endpoint_name, row["url"], known_good, row["pid"])
        return Outcome(FinalState.INTERRUPTED, known_good, "; ".join(notes + [f"{known_good} serves, verified"]))

    def delete_version_artifacts(self, endpoint_name: str, version: str) -> None:
        self.pointer_path(endpoint_name, version).unlink(missing_ok=True)
        (self.endpoint_dir(endpoint_name) / f"candidate-{version}.log").unlink(missing_ok=True)

    def delete_stale_logs(self, endpoint_name: str, keep_versions: set[str]) -> list[str]:
        """Logs of candidate servers that are gone and whose version is not kept (prestarted
        candidates are named after their run, not a version)."""
        running = {server.role for server in find_servers(self.endpoint_dir(endpoint_name))}
        deleted = []
        for log_file in self.endpoint_dir(endpoint_name).glob("candidate-*.log"):
            role = log_file.stem
            if role in running or role.removeprefix("candidate-") in keep_versions:
                continue
            log_file.unlink(missing_ok=True)
            deleted.append(log_file.name)
        return deleted

    def describe(self, endpoint_name: str) -> dict[str, Any]:
        row = self.store.require_endpoint(endpoint_name)
        alive = self._stable_alive(row)
        health: dict[str, Any] = {"healthy": False}
        if alive:
            try:
                reply = self.client(endpoint_name, self._server(row["port"], row["pid"], "stable")).ping()
                health = {"healthy": reply.ok, "version": reply.headers.get(VERSION_HEADER)}
            except requests.RequestException as err:
                health = {"healthy": False, "error": type(err).__name__}
        others = [f"{server.role} (pid {server.group})" for server in find_servers(self.endpoint_dir(endpoint_name))
                  if not (server.group == row["pid"] and server.master_alive)]
        return {"name": endpoint_name, "backend": self.TYPE, "url": row["url"], "pid": row["pid"],
                "process_alive": alive, "serving_version": row["serving_version"], **health,
                "traffic_split": self.traffic_split(endpoint_name), "other_servers": others}

    # --- switching and checking ---
    def _reload(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            raise DeploymentError(f"stable server process {pid} is gone; cannot switch versions") from None

    def _verify(self, endpoint_name: str, url: str, version: str | None, pid: int | None,
                split: dict[str, Any] | None = None) -> None:
        """Healthy, and every one of several answers names ``version`` (and, during a bake, the ``split``, or
        no split at all when none is expected): only then is a switch done."""
        client = LocalEndpointClient(url, self.config.request_timeout_seconds, os.environ.get(TOKEN_ENV), pid,
                                     self.marker(endpoint_name), self.endpoint_dir(endpoint_name) / "stable.log")
        pointer = self.pointer_path(endpoint_name, version) if version else None
        expected_sha = json.loads(pointer.read_text())["sha256"] if pointer and pointer.is_file() else None

        def judge(reply: Reply) -> str | None:
            served = reply.headers.get(VERSION_HEADER)
            if expected_sha and reply.ok and served == version and reply.headers.get(SHA_HEADER) != expected_sha:
                raise DeploymentError(f"endpoint {endpoint_name!r} serves {version} with model sha256 "
                                      f"{reply.headers.get(SHA_HEADER)}, expected {expected_sha}")
            if reply.ok and served == version and routes_as(reply.body, split):
                return None
            return f"/ping {reply.status} from {served}"

        try:
            # Old workers may still answer for a moment after a HUP: several answers in a row must agree.
            poll = poll_ping(client, self.config.health_timeout_seconds, judge,
                             in_a_row=2 * self.config.endpoint_workers + 2)
        except EndpointDown as err:
            raise DeploymentError(f"endpoint {endpoint_name!r}: {err}") from None
        if not poll.ok:
            raise DeploymentError(
                f"endpoint {endpoint_name!r} did not serve version {version} at {url} within "
                f"{self.config.health_timeout_seconds:g}s (last: {poll.last})")


def _owned_by_us(server: ServerProcess) -> bool:
    owner = server.owner
    return owner is not None and owner.pid == os.getpid() and owner.alive()
