"""The store on both of its databases: SQLite in store_dir and a real PostgreSQL server (one code path).

Transactions, the hash-chained audit trail under concurrent writers, append-only enforced by the database, the
schema's revisions (created on first use, upgraded only when asked on a shared store, a newer one refused), the
deployment lock, and a password that never shows."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DatabaseError

from pipeline.cli import cli
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.state import database
from pipeline.state.store import DeploymentStore
from tests.conftest import REPO
from tests.postgres_fixtures import PASSWORD


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str | None:
    """None: SQLite in the test's store directory; else a fresh PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


def _store(tmp_path: Path, url: str | None) -> DeploymentStore:
    return DeploymentStore(tmp_path / ".mlops", url)


def _raw(store: DeploymentStore, sql: str) -> None:
    """A statement sent around the store, as someone editing the database by hand would."""
    with create_engine(store.url.replace("postgresql://", "postgresql+psycopg://")).begin() as connection:
        connection.execute(text(sql))


def _append_many(url: str | None, directory: str, worker: int, count: int) -> None:
    store = DeploymentStore(directory, url)
    for number in range(count):
        store.record_event("concurrent", run_id=f"worker-{worker}", number=number)


# --------------------------------------------------------------------------- the audit trail
def test_appends_from_many_processes_at_once_never_fork_the_chain(tmp_path, store_url):
    store = _store(tmp_path, store_url)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(store_url, str(store.directory), worker, 40))
               for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=180)
        assert process.exitcode == 0
    events = [event for event in store.events() if event["kind"] == "concurrent"]
    assert len(events) == 160
    assert store.verify_events() == []


@pytest.mark.parametrize("statement", ["UPDATE events SET kind='edited'", "DELETE FROM events"])
def test_the_database_refuses_to_change_or_remove_an_event(tmp_path, store_url, statement):
    store = _store(tmp_path, store_url)
    store.record_event("kept")
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(store, statement)
    assert [event["kind"] for event in store.events()] == ["kept"]


def test_postgres_refuses_to_truncate_the_audit_trail(tmp_path, postgres_url):
    store = _store(tmp_path, postgres_url)
    store.record_event("kept")
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(store, "TRUNCATE events")


def test_an_edited_event_is_found_by_the_chain(tmp_path, store_url):
    store = _store(tmp_path, store_url)
    for number in range(3):
        store.record_event("step", number=number)
    _raw(store, "DROP TRIGGER events_append_only_update" if store_url is None else
         "ALTER TABLE events DISABLE TRIGGER events_append_only_rows")
    _raw(store, "UPDATE events SET detail='{\"number\": 7}' WHERE id = (SELECT MIN(id) + 1 FROM events)")
    assert any("was edited" in problem for problem in store.verify_events())


def test_two_appends_after_the_same_event_cannot_both_land(tmp_path, store_url):
    store = _store(tmp_path, store_url)
    store.record_event("first")
    head = store.events()[0]["hash"]
    with pytest.raises(DatabaseError):
        _raw(store, f"INSERT INTO events (at, run_id, kind, endpoint_name, detail, prev_hash, hash) VALUES "
                    f"('2026-01-01', NULL, 'a', NULL, '{{}}', '{head}', 'x1')")
        _raw(store, f"INSERT INTO events (at, run_id, kind, endpoint_name, detail, prev_hash, hash) VALUES "
                    f"('2026-01-01', NULL, 'b', NULL, '{{}}', '{head}', 'x2')")


# --------------------------------------------------------------------------- rows
def test_version_names_stay_unique_and_deployments_get_ids(tmp_path, store_url):
    store = _store(tmp_path, store_url)
    names = [store.claim_version("e", "e-1", "job", "sha") for _ in range(3)]
    assert names == ["e-1", "e-1-2", "e-1-3"]
    first = store.start_deployment("run", "e", None, names[0], "job")
    assert store.start_deployment("run", "e", names[0], names[1], "job") == first + 1
    assert [row["to_version"] for row in store.deployments("e")] == names[1::-1]


# --------------------------------------------------------------------------- the schema's revisions
def _first_use(url: str, directory: str) -> None:
    DeploymentStore(directory, url).record_event("first use")


def test_two_first_uses_of_an_empty_shared_store_at_once_create_it_once(tmp_path, postgres_url):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_first_use, args=(postgres_url, str(tmp_path / f"m{n}"))) for n in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)
        assert process.exitcode == 0
    store = _store(tmp_path, postgres_url)
    assert database.revision_of(postgres_url) == database.HEAD
    assert len(store.events()) == 3 and store.verify_events() == []


def test_a_shared_store_of_an_older_revision_is_upgraded_only_when_asked(tmp_path, postgres_url):
    with database.engine_for(postgres_url).begin() as connection:  # made by a tool whose newest revision was 0002
        database._migrate(connection, "upgrade", "0002")
    needs = rf"revision 0002; this tool needs {database.HEAD}: upgrade it once with .*db upgrade"
    with pytest.raises(PipelineError, match=needs):
        _store(tmp_path, postgres_url)
    result = CliRunner().invoke(cli, ["--store-url", postgres_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"upgraded from revision 0002 to {database.HEAD}" in result.output and PASSWORD not in result.output
    _store(tmp_path, postgres_url)  # usable again


def test_a_store_newer_than_the_tool_is_refused_naming_both_revisions(tmp_path, store_url):
    store = _store(tmp_path, store_url)
    if store_url is None:
        with sqlite3.connect(store.path) as connection:
            connection.execute("UPDATE alembic_version SET version_num='0099'")
    else:
        _raw(store, "UPDATE alembic_version SET version_num='0099'")
    with pytest.raises(PipelineError, match=f"schema revision 0099, newer than this tool's {database.HEAD}"):
        _store(tmp_path, store_url)


@pytest.mark.unit
def test_a_sqlite_store_from_before_revisions_upgrades_itself_in_place(tmp_path):
    directory = tmp_path / ".mlops"
    directory.mkdir()
    with sqlite3.connect(directory / "state.db") as connection:  # the first tables, with one later column
        connection.executescript("""
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, mode TEXT NOT NULL,
                backend TEXT NOT NULL, status TEXT NOT NULL, exit_code INTEGER, results_file TEXT, pid INTEGER);
            CREATE TABLE training_jobs (name TEXT PRIMARY KEY, run_id TEXT, created_at TEXT NOT NULL,
                backend TEXT NOT NULL, model_type TEXT, directory TEXT NOT NULL, model_sha256 TEXT NOT NULL,
                metrics_json TEXT NOT NULL, data_sha256 TEXT, gate_decision TEXT);
            CREATE TABLE endpoints (name TEXT PRIMARY KEY, backend TEXT NOT NULL, url TEXT, host TEXT, port INTEGER,
                pid INTEGER, serving_version TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
            CREATE TABLE versions (version TEXT PRIMARY KEY, endpoint_name TEXT NOT NULL, training_job TEXT NOT NULL,
                model_sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
            CREATE TABLE deployments (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, endpoint_name TEXT NOT NULL,
                from_version TEXT, to_version TEXT NOT NULL, training_job TEXT NOT NULL, status TEXT NOT NULL,
                reason TEXT, started_at TEXT NOT NULL, finished_at TEXT);
            CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, run_id TEXT,
                kind TEXT NOT NULL, endpoint_name TEXT, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL);
            INSERT INTO runs (run_id, started_at, mode, backend, status, pid) VALUES
                ('old', '2026-01-01', 'full', 'local', 'success', 1);
        """)
    store = DeploymentStore(directory)
    assert store.run("old")["status"] == "success" and store.run("old")["results_sha256"] is None
    assert store.version("nothing") is None
    store.record_event("after the upgrade")
    assert database.revision_of(store.url) == database.HEAD and store.verify_events() == []


@pytest.mark.unit
def test_the_tool_s_revisions_are_alembic_s():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(database.MIGRATIONS))
    assert tuple(reversed([revision.revision for revision in script.walk_revisions()])) == database.REVISIONS


# --------------------------------------------------------------------------- the lock
def _hold_lock(url: str, directory: str, ready: str) -> None:
    store = DeploymentStore(directory, url)
    lock = store.endpoint_lock("shared-model", "run holder-1", 0)
    assert lock.try_acquire()
    Path(ready).write_text("held")
    time.sleep(600)


def test_a_shared_store_s_lock_makes_others_wait_names_its_holder_and_is_free_once_the_holder_is_killed(
        tmp_path, postgres_url):
    store = _store(tmp_path, postgres_url)
    ready = tmp_path / "ready"
    holder = multiprocessing.get_context("spawn").Process(
        target=_hold_lock, args=(postgres_url, str(store.directory), str(ready)))
    holder.start()
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert time.monotonic() < deadline and holder.is_alive()
            time.sleep(0.05)
        waiting = store.endpoint_lock("shared-model", "run waiter", 0.5)
        with pytest.raises(PipelineError, match=r"locked by run holder-1 \(host .*, pid \d+, since"):
            with waiting:
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=30)
        with store.endpoint_lock("shared-model", "run after", 10):  # free at once: its session ended with it
            pass
    finally:
        if holder.is_alive():
            holder.kill()


# --------------------------------------------------------------------------- the setting and its secret
@pytest.mark.unit
@pytest.mark.parametrize(("how", "source"), [
    ("file", "file:config.json"), ("env", "env:MLOPS_STORE_URL"), ("flag", "flag:--store-url"),
    ("set", "set:store_url"),
])
def test_store_url_arrives_from_each_source_and_shows_without_its_password(tmp_path, monkeypatch, how, source):
    monkeypatch.chdir(tmp_path)
    url = "postgresql://team:s3cret-pw@db.example:5432/mlops"
    Path("config.json").write_text(json.dumps({"store_url": url} if how == "file" else {}))
    config, sources = load_config("config.json", {"MLOPS_STORE_URL": url} if how == "env" else {},
                                  {"store_url": url} if how == "flag" else {},
                                  settings=[f"store_url={url}"] if how == "set" else [])
    assert config.shared_store_url == url and sources["store_url"] == source
    assert config.public_dict()["store_url"] == "postgresql://team:***@db.example:5432/mlops"


@pytest.mark.unit
def test_a_store_url_that_is_not_postgres_is_refused_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--store-url", "mysql://x@y/z", "status"])
    assert result.exit_code == 2 and "flag --store-url: store_url: expected postgresql://" in result.output


def test_an_unreachable_server_is_one_line_naming_its_host_never_its_password(tmp_path, postgres_server):
    url = f"postgresql://mlops:{PASSWORD}@127.0.0.1:{postgres_server.port + 1}/nowhere"
    result = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--store-url", url, "--output-file",
                             "out.json"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and f"127.0.0.1:{postgres_server.port + 1}" in errors[0]
    assert PASSWORD not in result.stderr + result.stdout and not (tmp_path / ".mlops" / "endpoints").exists()
