"""Statements as the store writes them: plain SQL with ``?`` for each value, the same text on SQLite and
PostgreSQL, run through SQLAlchemy (which binds each value by name, for either driver)."""
from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, TextClause, text


def utc_now() -> str:
    """Every time the store records: ISO 8601 in UTC, to the microsecond (sorts as text on both databases)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=512)
def statement(sql: str) -> TextClause:
    """``WHERE name=? AND status=?`` as a bound statement (``:p0``, ``:p1``); never a ``?`` inside a literal."""
    pieces = sql.split("?")
    bound = [piece + (f":p{index}" if index < len(pieces) - 1 else "") for index, piece in enumerate(pieces)]
    return text("".join(bound))


def run_sql(conn: Connection, sql: str, *params: Any) -> CursorResult[Any]:
    return conn.execute(statement(sql), {f"p{index}": value for index, value in enumerate(params)})
