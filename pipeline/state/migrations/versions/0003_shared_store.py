"""What a store shared by many machines needs: a chain that cannot fork, an append-only trail the database
enforces, and who holds each endpoint's deployment lock.

- ``UNIQUE(prev_hash)`` on events: two appends after the same event can never both land (the append itself is
  serialized by a transaction-scoped advisory lock on PostgreSQL and by ``BEGIN IMMEDIATE`` on SQLite; this is
  the backstop).
- PostgreSQL: row triggers refuse UPDATE and DELETE of events, a statement trigger refuses TRUNCATE (SQLite's
  triggers are in the first revision).
- ``lock_holders``: an advisory lock carries no name; this row says who holds it, for the message of a wait.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("events_prev_hash_unique", "events", ["prev_hash"], unique=True)
    op.create_table(
        "lock_holders",
        sa.Column("endpoint_name", sa.Text, primary_key=True), sa.Column("holder", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False), sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("since", sa.Text, nullable=False))
    if op.get_context().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'insufficient_privilege';
            END $$""")
        op.execute("CREATE TRIGGER events_append_only_rows BEFORE UPDATE OR DELETE ON events "
                   "FOR EACH ROW EXECUTE FUNCTION events_append_only()")
        op.execute("CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()")
