"""API tokens: hashed bearer tokens with a role (admin, agent of one host, viewer).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``api_tokens`` (empty: the controller makes the bootstrap admin token)."""
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("host", sa.String(63), nullable=True),
        sa.Column("description", sa.String(255), nullable=False, server_default=""),
        sa.Column("created_by", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bootstrap", sa.Integer(), nullable=True),
        sa.Column("bootstrap_secret", sa.String(128), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'agent', 'viewer')", name="ck_api_tokens_role"),
        sa.CheckConstraint(
            "(role = 'agent') = (host IS NOT NULL)", name="ck_api_tokens_agent_host"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("bootstrap", name="uq_api_tokens_bootstrap"),
    )


def downgrade() -> None:
    """Drop ``api_tokens`` (every token is lost)."""
    op.drop_table("api_tokens")
