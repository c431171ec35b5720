"""The initial schema: definitions, execution logs, step metrics, connections.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same as tables.AutoId, spelled out so this migration never changes when the models do.
AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "definitions",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_definitions")),
    )

    op.create_table(
        "execution_logs",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("step_path", sa.String(500), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_execution_logs")),
    )
    op.create_index("ix_execution_logs_execution_id_id", "execution_logs", ["execution_id", "id"])
    op.create_index(
        "ix_execution_logs_execution_id_timestamp", "execution_logs", ["execution_id", "timestamp"]
    )

    op.create_table(
        "step_metrics",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("execution_id", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("definition_id", sa.String(200), nullable=False),
        sa.Column("step_path", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=True),
        sa.Column("bytes_out", sa.BigInteger(), nullable=True),
        sa.Column("tokens_prompt", sa.Integer(), nullable=True),
        sa.Column("tokens_completion", sa.Integer(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_category", sa.String(50), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_metrics")),
    )
    op.create_index(op.f("ix_step_metrics_execution_id"), "step_metrics", ["execution_id"])

    op.create_table(
        "connections",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_fields", sa.JSON(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
    )


def downgrade() -> None:
    op.drop_table("connections")
    op.drop_index(op.f("ix_step_metrics_execution_id"), table_name="step_metrics")
    op.drop_table("step_metrics")
    op.drop_index("ix_execution_logs_execution_id_timestamp", table_name="execution_logs")
    op.drop_index("ix_execution_logs_execution_id_id", table_name="execution_logs")
    op.drop_table("execution_logs")
    op.drop_table("definitions")
