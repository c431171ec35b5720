"""Compilation records and run presets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "compilations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("filename", sa.String(500), nullable=False),
        sa.Column("definition_id", sa.String(200), nullable=True),
        sa.Column("source_format", sa.String(20), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("diagnostics", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("artifacts", sa.JSON(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compilations")),
    )
    op.create_index("ix_compilations_definition_id", "compilations", ["definition_id"])

    op.create_table(
        "presets",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("definition_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("connections", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_presets")),
        sa.UniqueConstraint("definition_id", "name", name=op.f("uq_presets_definition_id_name")),
    )


def downgrade() -> None:
    op.drop_table("presets")
    op.drop_index("ix_compilations_definition_id", table_name="compilations")
    op.drop_table("compilations")
