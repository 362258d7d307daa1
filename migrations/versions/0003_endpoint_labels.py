"""Endpoint labels: a JSON text map of string to string on each endpoint (``{}`` by default).

Plain ``ALTER TABLE`` on both backends (see ``downgrade`` for why not batch mode).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``endpoints.labels``; existing endpoints get ``{}``."""
    op.add_column("endpoints", sa.Column("labels", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    """Drop ``endpoints.labels`` in place (SQLite 3.35+ has ``DROP COLUMN``).

    Not in batch mode: on SQLite that copies the table, and dropping the old one with foreign
    keys on cascades into ``endpoint_moves``, which would lose every endpoint's history.
    """
    op.drop_column("endpoints", "labels")
