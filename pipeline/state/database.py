"""Where the store's tables live, and which revision of them: SQLite in ``store_dir`` or a shared PostgreSQL.

``store_url`` chooses: unset, the store is ``<store_dir>/state.db`` (SQLite, zero set-up, for one person);
``postgresql://user@host:port/dbname`` is a database a team and its CI pipelines share (psycopg 3). Both
are reached through SQLAlchemy Core, and both schemas are Alembic's revisions
(``pipeline/state/migrations``), with one difference in who may upgrade:

- a SQLite store upgrades itself in place when a newer tool opens it (one person, one tool);
- a shared PostgreSQL store is created on first use, under an advisory lock (two first uses at once: one
  creates, the other waits), but an older revision is upgraded only by ``db upgrade``: a team member's newer
  tool upgrading it unasked would break everyone else's older one. Until then every command says so in one
  line. A store newer than the tool is refused by both, naming both revisions.

The password never leaves this module in clear: ``redacted`` shows ``postgresql://user:***@host/db``. It may
also come from ``PGPASSWORD`` or ``~/.pgpass``, which libpq reads when the URL has none.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from pipeline.errors import ExitCode, PipelineError
from pipeline.redaction import redact_password

DB_FILENAME = "state.db"
MIGRATIONS = Path(__file__).with_name("migrations")
# The schema's revisions in order, as pipeline/state/migrations/versions has them (a test keeps the two in step):
# opening a store compares its revision with these, and imports Alembic only when there is something to do.
REVISIONS = ("0001", "0002", "0003", "0004")
HEAD = REVISIONS[-1]
CONNECT_TIMEOUT_SECONDS = 5  # an unreachable server is one line, not a long hang
# A machine that dies while it holds a lock: its connection is found dead (and the lock released) after
# about idle + interval * count seconds, by both ends' TCP keepalives.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def advisory_key(*parts: str) -> int:
    """A PostgreSQL advisory-lock key (a signed 64-bit integer) for a name: the same on every machine."""
    digest = hashlib.sha256("\x00".join(("mlops-pipeline", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


MIGRATION_LOCK = advisory_key("schema")


def store_path(store_dir: str | Path) -> Path:
    return Path(store_dir).resolve()


def sqlite_url(store_dir: Path) -> str:
    return f"sqlite:///{store_dir / DB_FILENAME}"


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///`` URL."""
    return Path(make_url(url).database or "")


def redacted(url: str) -> str:
    """The URL as it may be shown: ``postgresql://user:***@host:5432/db`` (no password, whatever it holds)."""
    return redact_password(url)


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


def engine_for(url: str) -> Engine:
    """One engine per store URL in a process. SQLite: a connection per use, each write transaction ``BEGIN
    IMMEDIATE`` (one writer at a time, waiting up to 30 s). PostgreSQL: a small pool, keepalives set."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _create(url)
        return engine


def _create(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(parsed, poolclass=NullPool, connect_args={"timeout": 30, "isolation_level": None})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _immediate(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        return create_engine(parsed.set(drivername="postgresql+psycopg"), pool_size=2, max_overflow=4,
                             pool_pre_ping=True, connect_args=postgres_connect_args())
    raise PipelineError(f"store_url {redacted(url)!r}: expected postgresql://user@host:port/dbname (or no store_url: "
                        f"SQLite in store_dir)")


def postgres_connect_args() -> dict[str, Any]:
    return {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE,
            "keepalives_interval": KEEPALIVE_INTERVAL, "keepalives_count": KEEPALIVE_COUNT,
            "application_name": "mlops-pipeline"}


class StoreLost(PipelineError):
    """The shared store answered when the command started and stopped answering since (exit 1): what the command
    did from then on is not recorded, and the next command with this store reconciles it."""


def _server_and_reason(url: str, err: Exception) -> tuple[str, str]:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}", " ".join(str(getattr(err, "orig", err)).split())[:300]


def unreachable(url: str, err: Exception) -> PipelineError:
    where, reason = _server_and_reason(url, err)
    return PipelineError(f"store_url {redacted(url)}: the PostgreSQL server at {where} cannot be reached or refused "
                         f"the connection ({reason}); nothing was done", ExitCode.USAGE)


def lost(url: str, err: Exception) -> StoreLost:
    where, reason = _server_and_reason(url, err)
    return StoreLost(f"store_url {redacted(url)}: the PostgreSQL server at {where} stopped answering during the "
                     f"command ({reason}); what was done since is not recorded: the next command with this store "
                     f"reconciles it", ExitCode.FAILURE)


# --------------------------------------------------------------------------- the schema's revision
def _migrate(connection: Any, action: str, revision: str) -> None:
    """Alembic's ``upgrade`` or ``stamp`` on a connection the caller has opened and locked."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


def head_revision() -> str:
    return HEAD


def current_revision(connection: Any) -> str | None:
    """The store's revision (Alembic's ``alembic_version``), None for a store without one."""
    if connection.dialect.name == "sqlite":
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").first()
    else:
        exists = connection.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
    if not exists:
        return None
    row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return row[0] if row else None


def prepare(url: str) -> Engine:
    """The engine of a store whose schema this tool can use, created or upgraded where that is this tool's to do;
    else one ``PipelineError`` line."""
    engine = engine_for(url)
    try:
        if engine.dialect.name == "sqlite":
            _prepare_sqlite(engine, url)
        else:
            _prepare_postgres(engine, url)
    except OperationalError as err:
        if engine.dialect.name == "sqlite":
            raise
        raise unreachable(url, err) from None
    return engine


def _refuse_newer(url: str, found: str | None) -> None:
    if found is not None and found not in REVISIONS:
        raise PipelineError(f"the store at {redacted(url)} is at schema revision {found}, newer than this tool's "
                            f"{head_revision()}: use a newer mlops-pipeline with it", ExitCode.USAGE)


def _prepare_sqlite(engine: Engine, url: str) -> None:
    with engine.begin() as connection:  # BEGIN IMMEDIATE: two first uses never both create or upgrade it
        found = current_revision(connection)
        _refuse_newer(url, found)
        if found == head_revision():
            return
        if found is None and _has_tables(connection):
            # A store from before revisions were recorded: its tables are the first revision's, with whichever
            # later columns it was given; the next revision adds those it lacks.
            _migrate(connection, "stamp", "0001")
        _migrate(connection, "upgrade", "head")


def _has_tables(connection: Any) -> bool:
    return connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table' AND name='runs'").first() \
        is not None


def _prepare_postgres(engine: Engine, url: str) -> None:
    with engine.connect() as connection:
        found = current_revision(connection)
    _refuse_newer(url, found)
    if found == head_revision():
        return
    if found is not None:
        raise PipelineError(f"the shared store at {redacted(url)} is at schema revision {found}; this tool needs "
                            f"{head_revision()}: upgrade it once with `run_pipeline.py --store-url URL db upgrade` "
                            f"(every machine that uses it then needs this tool's version or newer)", ExitCode.USAGE)
    with engine.begin() as connection:  # an empty database: the first use creates the schema, under the lock
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        if current_revision(connection) is None:
            _migrate(connection, "upgrade", "head")


def revision_of(url: str) -> str | None:
    """The store's schema revision, read without changing anything."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return current_revision(connection)
    except OperationalError as err:
        if engine.dialect.name == "sqlite":
            raise
        raise unreachable(url, err) from None


def upgrade(url: str) -> tuple[str | None, str]:
    """``db upgrade``: the store's schema to this tool's revision, under the same lock as a first use. Answers
    the revision before and after."""
    engine = engine_for(url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            before = current_revision(connection)
            _refuse_newer(url, before)
            if before is None and engine.dialect.name == "sqlite" and _has_tables(connection):
                _migrate(connection, "stamp", "0001")
            if before != head_revision():
                _migrate(connection, "upgrade", "head")
    except OperationalError as err:
        if engine.dialect.name == "sqlite":
            raise
        raise unreachable(url, err) from None
    return before, head_revision()
