"""IPv6 dual stack: ``networks.subnet6`` (an IPv6 prefix of at most /96, NULL: IPv4 only).

Endpoints' IPv6 addresses are derived (the prefix plus the IPv4 address as the low 32
bits, ``vxcommon.addr6``), so no endpoint column. A unique index rather than a unique
constraint, so that plain ``ALTER TABLE ... ADD COLUMN`` works on SQLite too (see 0003).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Existing networks stay IPv4 only."""
    op.add_column("networks", sa.Column("subnet6", sa.String(43), nullable=True))
    op.create_index("ix_networks_subnet6", "networks", ["subnet6"], unique=True)


def downgrade() -> None:
    """Drop the column in place."""
    op.drop_index("ix_networks_subnet6", table_name="networks")
    op.drop_column("networks", "subnet6")
