"""The audit trail (append-only; on SQLite triggers refuse UPDATE and DELETE). A database made before
migrations (the table already there) is adopted as it is.

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

TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END" for verb in ("UPDATE", "DELETE"))

PG_FUNCTION = ("CREATE OR REPLACE FUNCTION medui_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN RAISE EXCEPTION 'audit rows are append-only'; END $$")


def upgrade() -> None:
    bind = op.get_bind()
    if "audit_events" not in sa.inspect(bind).get_table_names():
        op.create_table(
            "audit_events",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("time", sa.DateTime(timezone=True), nullable=False),
            sa.Column("subject", sa.String(255), nullable=False),
            sa.Column("display_name", sa.String(255), nullable=False),
            sa.Column("via", sa.String(16), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("target", sa.Text, nullable=False),
            sa.Column("outcome", sa.String(16), nullable=False),
            sa.Column("details", sa.Text, nullable=False),
        )
        for column in ("time", "subject", "action"):
            op.create_index(f"ix_audit_events_{column}", "audit_events", [column])
    if bind.dialect.name == "sqlite":
        for ddl in TRIGGERS:
            op.execute(ddl)
    elif bind.dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION medui_audit_append_only()")


def downgrade() -> None:
    op.drop_table("audit_events")
