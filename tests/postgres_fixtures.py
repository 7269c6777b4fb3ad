"""A real PostgreSQL server for the shared-store tests: one per test session (per xdist worker), a fresh database
per test. PostgreSQL 15's binaries are on these machines (/usr/lib/postgresql/15/bin); the server refuses to run
as root, so it runs as the ``postgres`` user. Where there are no binaries the tests that need it skip, saying why.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("MLOPS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER_PASSWORD = "pg-super-5ecret"
USER, PASSWORD = "mlops", "mlops-5ecret-pw"


@dataclass
class PostgresServer:
    host: str
    port: int
    directory: Path

    def url(self, database: str, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run([str(PG_BIN / "psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres",
                                 "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                                env={**os.environ, "PGPASSWORD": SUPERUSER_PASSWORD}, capture_output=True, text=True,
                                timeout=60, check=True)
        return result.stdout.strip()

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def start(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-l",
                     str(self.directory / "server.log"), "-o",
                     f"-p {self.port} -h {self.host} -k {self.directory / 'socket'}", "-w", "start")


def _as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120, check=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_available() -> bool:
    return (PG_BIN / "initdb").is_file() and bool(shutil.which("runuser" if os.geteuid() == 0 else "id"))


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server in a temporary directory, with the pipeline's user, stopped and deleted afterwards
    (the session's fixture, and the shared-store benchmark)."""
    directory = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    try:
        (directory / "socket").mkdir()
        (directory / "password").write_text(SUPERUSER_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
            shutil.chown(directory / "socket", "postgres")
            shutil.chown(directory / "password", "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(directory / "data"), "-U", "postgres", "-A", "scram-sha-256",
                     f"--pwfile={directory / 'password'}", "--no-sync")
        server = PostgresServer("127.0.0.1", _free_port(), directory)
        server.start()
        try:
            server.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            yield server
        finally:
            server.stop()
    finally:  # also when initdb or the start failed: no directory left behind
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not postgres_available():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (set MLOPS_TEST_PG_BIN): shared-store tests skipped")
    with running_postgres() as server:
        yield server


def new_database(server: PostgresServer) -> str:
    """A new, empty database owned by the pipeline's user; its URL."""
    name = f"mlops_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name} OWNER {USER}")
    return server.url(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database owned by the pipeline's user, for one test."""
    return new_database(postgres_server)
