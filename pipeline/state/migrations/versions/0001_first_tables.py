"""The store's first tables: runs, training jobs, endpoints, versions, deployments and the audit trail.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Text, primary_key=True), sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Text), sa.Column("mode", sa.Text, nullable=False),
        sa.Column("backend", sa.Text, nullable=False), sa.Column("status", sa.Text, nullable=False),
        sa.Column("exit_code", sa.Integer), sa.Column("results_file", sa.Text))
    op.create_table(
        "training_jobs",
        sa.Column("name", sa.Text, primary_key=True), sa.Column("run_id", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False), sa.Column("backend", sa.Text, nullable=False),
        sa.Column("model_type", sa.Text), sa.Column("directory", sa.Text, nullable=False),
        sa.Column("model_sha256", sa.Text, nullable=False), sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("data_sha256", sa.Text), sa.Column("gate_decision", sa.Text))
    op.create_table(
        "endpoints",
        sa.Column("name", sa.Text, primary_key=True), sa.Column("backend", sa.Text, nullable=False),
        sa.Column("url", sa.Text), sa.Column("host", sa.Text), sa.Column("port", sa.Integer),
        sa.Column("pid", sa.Integer), sa.Column("serving_version", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False), sa.Column("updated_at", sa.Text, nullable=False))
    op.create_table(
        "versions",
        sa.Column("version", sa.Text, primary_key=True), sa.Column("endpoint_name", sa.Text, nullable=False),
        sa.Column("training_job", sa.Text, nullable=False), sa.Column("model_sha256", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False))
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True), sa.Column("run_id", sa.Text),
        sa.Column("endpoint_name", sa.Text, nullable=False), sa.Column("from_version", sa.Text),
        sa.Column("to_version", sa.Text, nullable=False), sa.Column("training_job", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False), sa.Column("reason", sa.Text),
        sa.Column("started_at", sa.Text, nullable=False), sa.Column("finished_at", sa.Text),
        sqlite_autoincrement=True)
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True), sa.Column("at", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text), sa.Column("kind", sa.Text, nullable=False), sa.Column("endpoint_name", sa.Text),
        sa.Column("detail", sa.Text, nullable=False), sa.Column("prev_hash", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sqlite_autoincrement=True)
    if op.get_context().dialect.name == "sqlite":
        op.execute("CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events "
                   "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
        op.execute("CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events "
                   "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
