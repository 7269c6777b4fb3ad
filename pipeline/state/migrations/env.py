"""Alembic's entry point for the store's schema: always run by the tool (``pipeline.state.database``) on a
connection it has opened and locked, never from an alembic.ini."""
from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
# Batch mode: SQLite changes a table's columns by copying the table, which Alembic's batch operations do.
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
