"""Columns added since the first tables: the run's process and results hash, a job's artifact hashes, gate numbers,
dataset and pruning, a version's pruning.

A store made before revisions were recorded may have any of these already (each was added when a tool that
knew it opened the store), so only those missing are added.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ADDED = {
    "runs": {"pid": sa.Integer, "pid_start": sa.BigInteger, "host": sa.Text, "results_sha256": sa.Text},
    "training_jobs": {"artifacts_json": sa.Text, "gate_metric": sa.Text, "gate_value": sa.Float,
                      "gate_interval_json": sa.Text, "dataset": sa.Text, "pruned_at": sa.Text},
    "versions": {"pruned_at": sa.Text},
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, columns in ADDED.items():
        present = {column["name"] for column in inspector.get_columns(table)}
        missing = {name: kind for name, kind in columns.items() if name not in present}
        if missing:
            with op.batch_alter_table(table) as batch:
                for name, kind in missing.items():
                    batch.add_column(sa.Column(name, kind))
