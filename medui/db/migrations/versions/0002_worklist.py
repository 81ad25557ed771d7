"""Jobs (batch scoring and training: state, progress, ETA) and the scored studies of the worklist.

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


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("total", sa.Integer, nullable=True),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("eta_s", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("started_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jobs_kind", "jobs", ["kind"])
    op.create_table(
        "study_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(96), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("study_uid", sa.String(128), nullable=False),
        sa.Column("series_uid", sa.String(128), nullable=False, server_default=""),
        sa.Column("accession", sa.String(64), nullable=False, server_default=""),
        sa.Column("modality", sa.String(16), nullable=False, server_default=""),
        sa.Column("study_date", sa.String(8), nullable=False, server_default=""),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("label", sa.String(64), nullable=False, server_default=""),
        sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("probabilities", sa.Text, nullable=False, server_default="{}"),
        sa.Column("slice_scores", sa.Text, nullable=True),
        sa.Column("writes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("job_id", "study_uid", name="uq_study_results_job_study"),
    )
    op.create_index("ix_study_results_study_uid", "study_results", ["study_uid"])
    op.create_index("ix_study_results_score", "study_results", ["score"])


def downgrade() -> None:
    op.drop_table("study_results")
    op.drop_table("jobs")
