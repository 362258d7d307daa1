"""Publications: a host port of an external network's endpoint's host, forwarded to the
endpoint (``POST /api/v1/networks/{network}/publications``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``publications`` (empty)."""
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(255), nullable=False),
        sa.Column("host_port", sa.Integer(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("proto", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("proto IN ('tcp', 'udp')", name="ck_publications_proto"),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name="fk_publications_network_id_networks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_publications"),
        sa.UniqueConstraint("host_port", "proto", name="uq_publications_host_port_proto"),
    )
    op.create_index("ix_publications_network_id", "publications", ["network_id"])


def downgrade() -> None:
    """Drop ``publications``."""
    op.drop_index("ix_publications_network_id", table_name="publications")
    op.drop_table("publications")
