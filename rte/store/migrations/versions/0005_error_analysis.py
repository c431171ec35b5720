"""Error analysis: each failed step attempt keeps its message, fingerprint, details and target.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("error_message", sa.Text()),
    ("error_fingerprint", sa.String(32)),
    ("error_retryable", sa.Boolean()),
    ("error_details", sa.JSON()),
    ("connection_id", sa.String(100)),
    ("host", sa.String(255)),
)


def upgrade() -> None:
    # Nullable columns only: SQLite adds them in place, old rows read as "no analysis data".
    for name, type_ in COLUMNS:
        op.add_column("step_metrics", sa.Column(name, type_, nullable=True))
    op.create_index(op.f("ix_step_metrics_error_fingerprint"), "step_metrics", ["error_fingerprint"])
    op.create_index("ix_step_metrics_status_started_at", "step_metrics", ["status", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_step_metrics_status_started_at", table_name="step_metrics")
    op.drop_index(op.f("ix_step_metrics_error_fingerprint"), table_name="step_metrics")
    with op.batch_alter_table("step_metrics") as batch:
        for name, _type in reversed(COLUMNS):
            batch.drop_column(name)
