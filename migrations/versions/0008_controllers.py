"""Controllers (members with a lease) and switch mastership with generation ids.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``controllers`` and ``switch_masters`` (both empty)."""
    op.create_table(
        "controllers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("api_url", sa.String(255), nullable=False),
        sa.Column("openflow", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_controllers"),
    )
    op.create_index("ix_controllers_expires_at", "controllers", ["expires_at"])
    op.create_table(
        "switch_masters",
        sa.Column("dpid", sa.String(16), nullable=False),
        sa.Column("controller_id", sa.String(32), nullable=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("applied_revision", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("dpid", name="pk_switch_masters"),
    )


def downgrade() -> None:
    """Drop both tables (members re-register at their next renewal)."""
    op.drop_table("switch_masters")
    op.drop_index("ix_controllers_expires_at", table_name="controllers")
    op.drop_table("controllers")
