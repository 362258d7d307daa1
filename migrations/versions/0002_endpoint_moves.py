"""Endpoint history: one row per bind, move and unbind of an endpoint.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``endpoint_moves``."""
    op.create_table(
        "endpoint_moves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=63), nullable=True),
        sa.Column("from_host", sa.String(length=63), nullable=True),
        sa.Column("ofport", sa.BigInteger(), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('bound', 'moved', 'unbound')", name=op.f("ck_endpoint_moves_kind")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_endpoint_moves_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_moves")),
    )
    op.create_index(
        op.f("ix_endpoint_moves_endpoint_id"), "endpoint_moves", ["endpoint_id"], unique=False
    )


def downgrade() -> None:
    """Drop ``endpoint_moves``."""
    op.drop_index(op.f("ix_endpoint_moves_endpoint_id"), table_name="endpoint_moves")
    op.drop_table("endpoint_moves")
