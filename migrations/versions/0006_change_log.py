"""Change log (one row per row a flow-relevant write changed) and per-switch generations.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``change_log`` and ``switch_state`` (both start empty: the engine reads
    everything once at start)."""
    op.create_table(
        "change_log",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(320), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_change_log")),
    )
    op.create_index(op.f("ix_change_log_revision"), "change_log", ["revision"])
    op.create_table(
        "switch_state",
        sa.Column("host", sa.String(63), nullable=False),
        sa.Column("wanted", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_switch_state")),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("switch_state")
    op.drop_index(op.f("ix_change_log_revision"), table_name="change_log")
    op.drop_table("change_log")
