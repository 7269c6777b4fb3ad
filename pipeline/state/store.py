"""Pipeline state: runs, training jobs, endpoints, versions, deployments and the audit trail.

One code path for both places the state can live (``pipeline.state.database``): SQLite in ``store_dir`` (one
person, zero set-up) or a PostgreSQL database a team and its CI pipelines share (``store_url``), through
SQLAlchemy Core. Several pipeline processes -- and on PostgreSQL several machines -- read and write the same
state at once; every change of endpoint state is one transaction together with the event that records it.

The ``events`` table is the audit trail (``pipeline.state.audit_trail``): append-only (the database refuses
UPDATE, DELETE and, on PostgreSQL, TRUNCATE) and each event carries the sha256 of the one before it, so
``verify_events`` can tell when someone edited or removed a row by hand.

Schema (also in docs/RESULTS_AND_REPORTS.md; its revisions in ``pipeline/state/migrations``):

- runs(run_id, started_at, finished_at, mode, backend, status, exit_code, results_file, pid,
  pid_start, host, results_sha256, results_url, report_url, report_sha256)
- training_jobs(name, run_id, created_at, backend, model_type, directory (a path, or the artifact store's
  s3:// URL), model_sha256,
  metrics_json, data_sha256, gate_decision, artifacts_json, gate_metric, gate_value, gate_interval_json,
  dataset, pruned_at)
- endpoints(name, backend, url, host, port, pid, serving_version, created_at, updated_at, machine)
- versions(version, endpoint_name, training_job, model_sha256, created_at, pruned_at)
- deployments(id, run_id, endpoint_name, from_version, to_version, training_job, status,
  reason, started_at, finished_at)
- events(id, at, run_id, kind, endpoint_name, detail, prev_hash, hash)
- lock_holders(endpoint_name, holder, host, pid, since)
"""
from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError

from pipeline.container.verified_files import sha256_of, write_recorded
from pipeline.errors import ExitCode, PipelineError
from pipeline.state import audit_trail
from pipeline.state.artifacts import RUNS, ArtifactCache, Artifacts, LocalArtifacts
from pipeline.state.database import lost, prepare, redacted, sqlite_url
from pipeline.state.processes import Owner
from pipeline.state.sql import run_sql, utc_now

if TYPE_CHECKING:
    from pipeline.state.locking import EndpointLock

log = logging.getLogger(__name__)

DB_FILENAME = "state.db"


class StoreError(PipelineError):
    """The state cannot be used; the message says what to do (exit 2: nothing was changed)."""


class DeploymentStore:
    """The one place pipeline state is read and written."""

    def __init__(self, store_dir: str | Path, store_url: str | None = None) -> None:
        self.directory = Path(store_dir).resolve()  # endpoint processes run from another directory
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PipelineError(f"store_dir {str(self.directory)!r} cannot be created: {err.strerror}") from None
        self.path = self.directory / DB_FILENAME
        self.url = store_url or sqlite_url(self.directory)
        self.shared = store_url is not None
        self.location = redacted(self.url) if self.shared else str(self.path)  # what messages may show
        try:
            self.engine = prepare(self.url)
        except DatabaseError as err:  # SQLite: a file that is not a database
            raise self._unusable(err) from None
        self.dialect = self.engine.dialect.name
        # Where this command writes job and run files (``use_artifacts``), and the files it fetched, by sha256.
        self.artifacts: Artifacts = LocalArtifacts(self.directory)
        self.cache = ArtifactCache(self.directory / "cache")
        self.close_dead_runs()

    def use_artifacts(self, artifacts: Artifacts, region: str | None = None) -> None:
        """Write job and run files there from now on (``pipeline.state.artifacts.artifacts_for``)."""
        self.artifacts = artifacts
        self.cache.region = region

    @property
    def publishing(self) -> bool:
        """Whether job and run files are copied elsewhere than this store_dir (``artifact_url``, or SageMaker's
        bucket with a shared store), where other machines read them."""
        return not (isinstance(self.artifacts, LocalArtifacts) and self.artifacts.root == self.directory)

    def _unusable(self, err: Exception) -> StoreError:
        if self.shared:
            return StoreError(f"the store at {self.location} cannot be used: "
                              f"{' '.join(str(getattr(err, 'orig', err)).split())[:300]}")
        return StoreError(
            f"state file {str(self.path)!r} is not a usable SQLite database ({getattr(err, 'orig', err)}); move it "
            f"aside (the endpoints it recorded keep running: `run_pipeline.py status` lists them from their pid "
            f"files, `run_pipeline.py cleanup --all` stops them), or point --store-dir at another directory")

    @property
    def jobs_dir(self) -> Path:
        return self.directory / "jobs"

    @property
    def endpoints_dir(self) -> Path:
        return self.directory / "endpoints"

    def endpoint_lock(self, endpoint_name: str, holder: str, timeout: float) -> EndpointLock:
        """The endpoint's deployment lock, where the store is: a file lock beside SQLite, an advisory lock in a
        shared PostgreSQL (``pipeline.state.locking``; imported here, as the commands that only read take no lock)."""
        from pipeline.state.locking import AdvisoryEndpointLock, FileEndpointLock

        if self.dialect == "postgresql":
            return AdvisoryEndpointLock(self.url, endpoint_name, holder, timeout)
        return FileEndpointLock(self.directory / "locks", endpoint_name, holder, timeout)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: all of it lands, or none of it (SQLite: BEGIN IMMEDIATE, one writer at a time)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except OperationalError as err:
            raise (lost(self.url, err) if self.shared else self._unusable(err)) from None
        except DatabaseError as err:
            raise self._unusable(err) from None

    def _query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        try:
            with self.engine.connect() as conn:
                return [dict(row) for row in run_sql(conn, sql, *params).mappings()]
        except OperationalError as err:
            raise (lost(self.url, err) if self.shared else self._unusable(err)) from None
        except DatabaseError as err:
            raise self._unusable(err) from None

    # --- events (the audit trail) ---
    def append_event(self, conn: Connection, kind: str, *, run_id: str | None = None,
                     endpoint_name: str | None = None, **detail: Any) -> int:
        """Append one event inside the caller's transaction; its id (``pipeline.state.audit_trail``)."""
        return audit_trail.append(conn, kind, run_id=run_id, endpoint_name=endpoint_name, **detail)

    def record_event(self, kind: str, *, run_id: str | None = None, endpoint_name: str | None = None,
                     **detail: Any) -> int:
        """Append one event to the audit trail; its id."""
        with self.transaction() as conn:
            return self.append_event(conn, kind, run_id=run_id, endpoint_name=endpoint_name, **detail)

    def events_after(self, event_id: int, endpoint_name: str, kind: str) -> list[dict[str, Any]]:
        """Events of one kind for an endpoint appended after ``event_id``, oldest first (a bake asks each second)."""
        rows = self._query("SELECT * FROM events WHERE id > ? AND endpoint_name = ? AND kind = ? ORDER BY id",
                           event_id, endpoint_name, kind)
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def events_of_kinds(self, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every event of these kinds, newest first (approvals: a few per job)."""
        rows = self._query(f"SELECT * FROM events WHERE kind IN ({', '.join('?' * len(kinds))}) ORDER BY id DESC",
                           *kinds)
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def bake_in_progress(self, endpoint_name: str) -> dict[str, Any] | None:
        """The ``bake_started`` event of the bake now running on an endpoint (its run still running and its
        deployment still in progress), or None."""
        rows = self._query(
            "SELECT e.* FROM events e JOIN runs r ON r.run_id = e.run_id "
            "WHERE e.endpoint_name = ? AND e.kind = 'bake_started' AND r.status = 'running' "
            "AND EXISTS (SELECT 1 FROM deployments d WHERE d.run_id = e.run_id AND d.endpoint_name = e.endpoint_name "
            "AND d.status = 'in_progress') ORDER BY e.id DESC LIMIT 1", endpoint_name)
        if not rows:
            return None
        rows[0]["detail"] = json.loads(rows[0]["detail"])
        return rows[0]

    def events(self, endpoint_name: str | None = None, limit: int | None = None,
               run_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events"
        conditions = [(column, value) for column, value in (("endpoint_name", endpoint_name), ("run_id", run_id))
                      if value]
        params: tuple[Any, ...] = tuple(value for _, value in conditions)
        if conditions:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column, _ in conditions)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = self._query(sql, *params)
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def manual_events(self, endpoint_name: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Manual rollbacks (events ``manual_<status>``), newest first; only their details are decoded."""
        where = " AND endpoint_name = ?" if endpoint_name else ""
        rows = self._query(f"SELECT * FROM events WHERE kind LIKE 'manual!_%' ESCAPE '!'{where} "
                           f"ORDER BY id DESC LIMIT {int(limit)}", *([endpoint_name] if endpoint_name else []))
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def verify_events(self) -> list[str]:
        """Problems in the hash chain, oldest first; empty when the trail is intact."""
        with self.engine.connect() as conn:
            return audit_trail.verify(conn)

    # --- runs ---
    def start_run(self, run_id: str, mode: str, backend: str, results_file: str | None = None) -> None:
        """Record a run with the process that runs it, so a run killed before it could say so is
        recognised as interrupted by the next command (``close_dead_runs``)."""
        owner = Owner.this_process(run_id)
        with self.transaction() as conn:
            run_sql(conn, "INSERT INTO runs (run_id, started_at, mode, backend, status, results_file, pid, pid_start,"
                          " host) VALUES (?,?,?,?,?,?,?,?,?)", run_id, utc_now(), mode, backend, "running",
                    results_file, owner.pid, owner.start_time, socket.gethostname())
            self.append_event(conn, "run_started", run_id=run_id, mode=mode, backend=backend)

    def close_dead_runs(self) -> list[str]:
        """Mark ``interrupted`` the runs still ``running`` whose process on this host is gone."""
        host = socket.gethostname()
        dead = [row["run_id"] for row in self._query(
                    "SELECT run_id, pid, pid_start, host FROM runs WHERE status='running'")
                if row["pid"] and row["host"] == host and row["pid"] != os.getpid()
                and not Owner(row["pid"], row["pid_start"]).alive()]
        for run_id in dead:
            with self.transaction() as conn:
                cursor = run_sql(conn, "UPDATE runs SET finished_at=?, status='interrupted' WHERE run_id=? AND "
                                      "status='running'", utc_now(), run_id)
                if cursor.rowcount:
                    self.append_event(conn, "run_interrupted", run_id=run_id,
                                      reason="its process ended without finishing the run")
        return dead

    def finish_run(self, run_id: str, status: str, exit_code: int, results_file: str | None = None) -> None:
        with self.transaction() as conn:
            run_sql(conn, "UPDATE runs SET finished_at=?, status=?, exit_code=?, "
                          "results_file=COALESCE(?, results_file) WHERE run_id=?",
                    utc_now(), status, exit_code, results_file, run_id)
            self.append_event(conn, "run_finished", run_id=run_id, status=status, exit_code=exit_code)

    def write_run_file(self, run_id: str | None, path: str | os.PathLike[str], payload: str) -> None:
        """Write a run's results (or a monitor run's report) and record its sha256, so ``runs show`` can tell the
        file is still the run's own; with an artifact store, a copy goes there too, for ``runs show`` on another
        machine. A store that cannot take the hash costs the run nothing: ``runs show`` then says the file is
        unverified. A file that cannot be written raises ``OSError``."""
        digest = write_recorded(path, payload)
        if not run_id:
            return
        url = self._publish(run_id, "results.json", payload.encode(), "results file")
        try:
            self.record_results_hash(run_id, digest, url)
        except PipelineError as err:
            log.warning("the results file's sha256 was not recorded (%s): `runs show %s` will say it is unverified",
                        err.message, run_id)

    def publish_report(self, run_id: str, path: Path) -> None:
        """The run's HTML report, copied to the artifact store with its sha256 recorded (nothing without one)."""
        if not self.publishing or not path.is_file():
            return
        data = path.read_bytes()
        url = self._publish(run_id, path.name, data, "run report")
        if url is not None:
            with self.transaction() as conn:
                run_sql(conn, "UPDATE runs SET report_url=?, report_sha256=? WHERE run_id=?", url, sha256_of(data),
                        run_id)

    def _publish(self, run_id: str, name: str, data: bytes, what: str) -> str | None:
        if not self.publishing:
            return None
        try:
            return self.artifacts.put(f"{RUNS}/{run_id}/{name}", data)
        except PipelineError as err:
            log.warning("the %s was not copied to the artifact store (%s): other machines cannot read it", what,
                        err.message)
            return None

    def record_results_hash(self, run_id: str, sha256: str, url: str | None = None) -> None:
        """The sha256 of the results file a run just wrote (and where its copy is): ``runs show`` reads the file
        back only if it still has it (a file can be edited or replaced after the run; the store is where the run
        said so)."""
        with self.transaction() as conn:
            run_sql(conn, "UPDATE runs SET results_sha256=?, results_url=COALESCE(?, results_url) WHERE run_id=?",
                    sha256, url, run_id)

    def close_run(self, conn: Connection, run_id: str, status: str) -> None:
        """Close a run whose process died (only if it is still marked running)."""
        run_sql(conn, "UPDATE runs SET finished_at=?, status=? WHERE run_id=? AND status='running'", utc_now(), status,
                run_id)

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", limit)

    # --- training jobs ---
    def record_training_job(self, run_id: str, backend: str, job: Any, location: str | None = None) -> None:
        """A trained job, its files' sha256 and where they are (``location``: the artifact store's URL, else the
        job's directory)."""
        with self.transaction() as conn:
            try:
                run_sql(conn,
                    "INSERT INTO training_jobs (name, run_id, created_at, backend, model_type, directory, model_sha256,"
                    " metrics_json, data_sha256, artifacts_json, dataset) VALUES (?,?,?,?,?,?,?,?,?,?,?)", job.name,
                    run_id, job.created_at, backend, job.model_type, location or str(job.directory), job.model_sha256,
                    json.dumps(job.metrics, default=str), job.data_fingerprint.get("sha256"),
                    json.dumps(job.artifact_sha256, sort_keys=True), job.manifest.get("dataset"))
            except IntegrityError:  # the transaction is rolled back: nothing of it lands
                raise PipelineError(f"training job name {job.name!r} is taken in {self.location} by a job another "
                                    f"machine trained in the same second; run again", ExitCode.FAILURE) from None
            self.append_event(conn, "training_completed", run_id=run_id, training_job=job.name,
                              accuracy=job.metrics.get("accuracy"), model_sha256=job.model_sha256,
                              artifacts=job.artifact_sha256)

    def record_pruned(self, run_id: str | None, endpoint_name: str, versions: list[str], jobs: list[str],
                      **detail: Any) -> None:
        """``cleanup --prune`` deleted these versions' artifacts and these jobs' directories: they can no longer
        be served or deployed, and the commands that would try say so."""
        now = utc_now()
        with self.transaction() as conn:
            for version in versions:
                run_sql(conn, "UPDATE versions SET pruned_at=? WHERE version=? AND pruned_at IS NULL", now, version)
            for job in jobs:
                run_sql(conn, "UPDATE training_jobs SET pruned_at=? WHERE name=? AND pruned_at IS NULL", now, job)
            self.append_event(conn, "artifacts_pruned", run_id=run_id, endpoint_name=endpoint_name,
                              versions=versions, jobs=jobs, **detail)

    def record_gate(self, run_id: str, training_job: str, decision: str, reason: str, metric: str | None = None,
                    value: float | None = None, interval: Any = None, **detail: Any) -> None:
        with self.transaction() as conn:
            run_sql(conn, "UPDATE training_jobs SET gate_decision=?, gate_metric=?, gate_value=?, gate_interval_json=? "
                         "WHERE name=?", decision, metric, value, json.dumps(list(interval)) if interval else None,
                                          training_job)
            self.append_event(conn, "gate_decision", run_id=run_id, training_job=training_job,
                              decision=decision, reason=reason, **detail)

    def training_jobs(self, prefix: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Training jobs newest first, each with the endpoint versions it was deployed as."""
        jobs = self._query("SELECT * FROM training_jobs WHERE name LIKE ? ESCAPE '\\' ORDER BY created_at DESC, "
                           "name DESC LIMIT ?", _like_prefix(prefix), limit)
        names = [job["name"] for job in jobs]
        deployed = self._query("SELECT training_job, endpoint_name, to_version FROM deployments WHERE status IN "
                               f"('deployed', 'failed') AND training_job IN ({_marks(names)}) ORDER BY id",
                               *names) if names else []
        for job in jobs:
            job["deployed_as"] = [{"endpoint_name": row["endpoint_name"], "version": row["to_version"]}
                                  for row in deployed if row["training_job"] == job["name"]]
        return jobs

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM runs WHERE run_id=?", run_id)
        return rows[0] if rows else None

    def run_overview(self, limit: int = 100) -> list[dict[str, Any]]:
        """Runs newest first, with the training job each trained or deployed and the version it deployed."""
        runs = self.runs(limit)
        ids = [run["run_id"] for run in runs]
        marks = _marks(ids)
        trained = {row["run_id"]: row["name"] for row in self._query(
            f"SELECT run_id, name FROM training_jobs WHERE run_id IN ({marks})", *ids)} if ids else {}
        deployments = self._query("SELECT run_id, training_job, endpoint_name, from_version, to_version, status "
                                  f"FROM deployments WHERE run_id IN ({marks}) ORDER BY id", *ids) if ids else []
        for run in runs:
            mine = [row for row in deployments if row["run_id"] == run["run_id"]]
            last = mine[-1] if mine else None
            run["training_job"] = trained.get(run["run_id"]) or (last["training_job"] if last else None)
            run["endpoint_name"] = last["endpoint_name"] if last else None
            run["version"] = last["to_version"] if last else None  # the version the run deployed, or tried to
            run["deployment_status"] = last["status"] if last else None
            run["from_version"] = last["from_version"] if last else None
        return runs

    def training_job(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM training_jobs WHERE name=?", name)
        return rows[0] if rows else None

    # --- endpoints and versions ---
    def endpoint(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM endpoints WHERE name=?", name)
        return rows[0] if rows else None

    def endpoints(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM endpoints ORDER BY name")

    def claim_version(self, endpoint_name: str, base_name: str, training_job: str, model_sha256: str) -> str:
        """Register a new version name, unique even for two deployments in one second."""
        for attempt in range(1, 1000):
            version = base_name if attempt == 1 else f"{base_name}-{attempt}"
            try:
                with self.transaction() as conn:
                    run_sql(conn,
                        "INSERT INTO versions (version, endpoint_name, training_job, model_sha256, created_at)"
                        " VALUES (?,?,?,?,?)", version, endpoint_name, training_job, model_sha256, utc_now())
                return version
            except IntegrityError:
                continue
        raise PipelineError(f"could not find a free version name for {base_name!r}")

    def versions(self, endpoint_name: str | None = None) -> list[dict[str, Any]]:
        """Versions, newest first."""
        if endpoint_name:
            return self._query("SELECT * FROM versions WHERE endpoint_name=? ORDER BY created_at DESC", endpoint_name)
        return self._query("SELECT * FROM versions ORDER BY created_at DESC")

    def version(self, version: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM versions WHERE version=?", version)
        return rows[0] if rows else None

    def set_endpoint(self, conn: Connection, name: str, **fields: Any) -> None:
        """Insert or update an endpoint row inside the caller's transaction."""
        now = utc_now()
        existing = run_sql(conn, "SELECT name FROM endpoints WHERE name=?", name).first()
        if existing is None:
            run_sql(conn, "INSERT INTO endpoints (name, backend, created_at, updated_at) VALUES (?,?,?,?)", name,
                    fields.get("backend", "local"), now, now)
        columns = {key: value for key, value in fields.items() if key != "backend"}
        if columns:
            assignments = ", ".join(f"{key}=?" for key in columns)
            run_sql(conn, f"UPDATE endpoints SET {assignments}, updated_at=? WHERE name=?", *columns.values(), now,
                    name)

    def delete_endpoint(self, conn: Connection, name: str) -> None:
        run_sql(conn, "DELETE FROM endpoints WHERE name=?", name)

    # --- deployments ---
    def start_deployment(self, run_id: str, endpoint_name: str, from_version: str | None, to_version: str,
                         training_job: str) -> int:
        with self.transaction() as conn:
            deployment_id = run_sql(
                conn, "INSERT INTO deployments (run_id, endpoint_name, from_version, to_version, training_job, status,"
                " started_at) VALUES (?,?,?,?,?,?,?) RETURNING id", run_id, endpoint_name, from_version, to_version,
                training_job, "in_progress", utc_now()).scalar_one()
            self.append_event(conn, "deployment_started", run_id=run_id, endpoint_name=endpoint_name,
                              from_version=from_version, to_version=to_version, training_job=training_job)
            return int(deployment_id)

    def finish_deployment(self, conn: Connection, deployment_id: int, status: str, reason: str | None,
                          run_id: str | None, endpoint_name: str, **detail: Any) -> None:
        run_sql(conn, "UPDATE deployments SET status=?, reason=?, finished_at=? WHERE id=?", status, reason, utc_now(),
                deployment_id)
        self.append_event(conn, f"deployment_{status}", run_id=run_id, endpoint_name=endpoint_name,
                          deployment_id=deployment_id, reason=reason, **detail)

    def deployments(self, endpoint_name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if endpoint_name:
            return self._query("SELECT * FROM deployments WHERE endpoint_name=? ORDER BY id DESC LIMIT ?",
                               endpoint_name, limit)
        return self._query("SELECT * FROM deployments ORDER BY id DESC LIMIT ?", limit)

    def endpoints_deploying(self) -> list[str]:
        """Endpoints with a deployment still ``in_progress``: a first deployment whose pipeline died has one
        before its endpoint has a row."""
        rows = self._query("SELECT DISTINCT endpoint_name FROM deployments WHERE status=? ORDER BY endpoint_name",
                           "in_progress")
        return [row["endpoint_name"] for row in rows]

    serving_moment = staticmethod(audit_trail.moment)  # ``--at``'s time, in UTC when it names no zone

    def serving_version_at(self, endpoint_name: str, at: str) -> str | None:
        """Which version served ``endpoint_name`` at time ``at``, from the audit trail alone."""
        return audit_trail.serving_at(reversed(self.events(endpoint_name)), audit_trail.moment(at))

    def knows_endpoint(self, name: str) -> bool:
        """Whether the store ever heard of ``name``: serving now, or in its history."""
        return bool(self.endpoint(name) or self._query(
            "SELECT 1 FROM deployments WHERE endpoint_name=? UNION SELECT 1 FROM events WHERE endpoint_name=? "
            "LIMIT 1", name, name))

    def require_endpoint(self, name: str) -> dict[str, Any]:
        endpoint = self.endpoint(name)
        if endpoint is None:
            known = ", ".join(row["name"] for row in self.endpoints()) or "none"
            raise PipelineError(f"endpoint {name!r} not found in {self.location!r} (known endpoints: {known})",
                                ExitCode.USAGE)
        return endpoint


def host_of(endpoint: dict[str, Any] | None) -> str | None:
    """The other host a local endpoint runs on (the store records it), or None when it runs on this one or is not
    bound to a host (SageMaker)."""
    machine = (endpoint or {}).get("machine")
    return machine if machine and machine != socket.gethostname() else None


def _marks(values: list[Any]) -> str:
    """``?,?,?``: one placeholder per value of an ``IN`` list."""
    return ",".join("?" * len(values))


def _like_prefix(prefix: str | None) -> str:
    """A SQL LIKE pattern matching names that start with ``prefix`` literally."""
    escaped = (prefix or "").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
