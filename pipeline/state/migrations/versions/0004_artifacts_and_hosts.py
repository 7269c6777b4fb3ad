"""What another machine needs to follow a run: where its files went, which host a local endpoint runs on, and
indexes that keep the listings fast on a store that has seen many runs.

- ``runs.results_url``, ``runs.report_url``, ``runs.report_sha256``: the copies of a run's results file and HTML
  report in the artifact store (``artifact_url``), read back on any machine against the recorded sha256.
  (A training job's ``directory`` holds its artifact store URL the same way, ``s3://bucket/prefix/jobs/<name>``.)
- ``endpoints.machine``: the host a local endpoint's server runs on. ``endpoints.host`` is the address it listens
  on (127.0.0.1 on every machine), so it cannot tell one machine's endpoint from another's.
- Indexes for the newest-first listings (``runs``, ``jobs``, ``history``) and the lookups by endpoint, run and
  kind, so they answer in the same time over ten thousand runs as over ten.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = {
    "runs_started_at": ("runs", ["started_at"]),
    "training_jobs_created_at": ("training_jobs", ["created_at"]),
    "training_jobs_run_id": ("training_jobs", ["run_id"]),
    "deployments_endpoint_name": ("deployments", ["endpoint_name", "id"]),
    "deployments_run_id": ("deployments", ["run_id"]),
    "deployments_training_job": ("deployments", ["training_job"]),
    "deployments_status": ("deployments", ["status"]),
    "versions_endpoint_name": ("versions", ["endpoint_name", "created_at"]),
    "events_endpoint_name": ("events", ["endpoint_name", "id"]),
    "events_run_id": ("events", ["run_id", "id"]),
    "events_kind": ("events", ["kind", "id"]),
}


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in ("results_url", "report_url", "report_sha256"):
            batch.add_column(sa.Column(name, sa.Text))
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("machine", sa.Text))
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)
