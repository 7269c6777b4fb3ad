"""The audit trail: every change of state as an event, each carrying the sha256 of the one before it.

Appending reads the head of the chain and inserts after it, inside the caller's transaction. Two writers must
never both append after the same event (the chain would fork), so appends are serialized: on SQLite by the
write transaction itself (``BEGIN IMMEDIATE``, one writer at a time), on PostgreSQL, where many machines write
at once, by a transaction-scoped advisory lock taken before the head is read. ``UNIQUE(prev_hash)`` is the
backstop: an append that lost a race anyway fails rather than forks.

``verify`` walks the chain: an edited event's hash no longer matches, a removed one leaves its successor
pointing at a hash that is not there. On SQLite ids are never reused or skipped (AUTOINCREMENT), so a gap, or
a sequence ahead of the last row, is a removal too; PostgreSQL's sequences may skip a value when a
transaction rolls back, so there the chain alone decides (and the database refuses UPDATE, DELETE and
TRUNCATE of events in the first place).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from pipeline.errors import PipelineError
from pipeline.state.database import advisory_key
from pipeline.state.sql import run_sql, utc_now

GENESIS_HASH = "0" * 64
APPEND_LOCK = advisory_key("events")


def event_hash(prev_hash: str, at: str, run_id: str | None, kind: str, endpoint: str | None, detail: str) -> str:
    material = json.dumps([prev_hash, at, run_id, kind, endpoint, detail], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def append(conn: Connection, kind: str, *, run_id: str | None = None, endpoint_name: str | None = None,
           **detail: Any) -> int:
    """Append one event inside the caller's transaction; its id."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK})
    row = run_sql(conn, "SELECT hash FROM events ORDER BY id DESC LIMIT 1").first()
    prev_hash = row.hash if row else GENESIS_HASH
    at = utc_now()
    detail_text = json.dumps(detail, sort_keys=True, default=str)
    digest = event_hash(prev_hash, at, run_id, kind, endpoint_name, detail_text)
    return int(run_sql(conn, "INSERT INTO events (at, run_id, kind, endpoint_name, detail, prev_hash, hash) "
                             "VALUES (?,?,?,?,?,?,?) RETURNING id",
                       at, run_id, kind, endpoint_name, detail_text, prev_hash, digest).scalar_one())


def verify(conn: Connection) -> list[str]:
    """Problems in the hash chain, oldest first; empty when the trail is intact."""
    problems: list[str] = []
    prev_hash = GENESIS_HASH
    expected_id = None
    gaps_mean_removal = conn.dialect.name == "sqlite"
    for row in run_sql(conn, "SELECT * FROM events ORDER BY id ASC").mappings():
        if gaps_mean_removal and expected_id is not None and row["id"] != expected_id:
            problems.append(f"events {expected_id}..{row['id'] - 1} are missing")
        if row["prev_hash"] != prev_hash:
            problems.append(f"event {row['id']} does not follow the event before it")
        if event_hash(row["prev_hash"], row["at"], row["run_id"], row["kind"], row["endpoint_name"],
                      row["detail"]) != row["hash"]:
            problems.append(f"event {row['id']} was edited")
        prev_hash = row["hash"]
        expected_id = row["id"] + 1
    if gaps_mean_removal:
        # AUTOINCREMENT never reuses an id: a sequence ahead of the last row means rows were cut off the end.
        sequence = run_sql(conn, "SELECT seq FROM sqlite_sequence WHERE name='events'").first()
        last = (expected_id or 1) - 1
        if sequence and sequence.seq > last:
            problems.append(f"events {last + 1}..{sequence.seq} are missing")
    return problems


def moment(at: str) -> datetime:
    """An ISO time as given to ``--at``, in UTC when it names no zone."""
    try:
        parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise PipelineError(f"--at {at!r}: expected an ISO time such as 2026-11-26T10:00:00") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def serving_at(events: Iterable[dict[str, Any]], when: datetime) -> str | None:
    """The version an endpoint served at ``when``, replaying its events oldest first."""
    serving: str | None = None
    for event in events:
        if datetime.fromisoformat(event["at"]) > when:
            break
        detail = event["detail"]
        if event["kind"] == "endpoint_started":
            serving = detail.get("version")
        elif event["kind"].startswith("deployment_") and "serving_version" in detail:
            serving = detail["serving_version"]
        elif event["kind"] == "manual_rolled_back":
            serving = detail.get("to_version")
        elif event["kind"] == "endpoint_removed":
            serving = None
    return serving
