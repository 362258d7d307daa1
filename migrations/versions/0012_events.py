"""The cluster-wide event log: ``events`` (id, time, type, summary, data) and ``event_seq``,
the single row that hands out event ids (``controller.db.events``), so every controller
serves one stream and a client resumes it on any of them with ``Last-Event-ID``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``events`` (empty) and ``event_seq`` (last = 0)."""
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    seq = op.create_table(
        "event_seq",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_event_seq_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_seq")),
    )
    op.bulk_insert(seq, [{"id": 1, "last": 0}])


def downgrade() -> None:
    """Drop ``event_seq`` and ``events``."""
    op.drop_table("event_seq")
    op.drop_table("events")
