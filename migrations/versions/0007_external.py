"""External access: ``networks.external`` and its conntrack ``zone``; a host's egress address
and gateway port (``hosts.egress_ip``, ``hosts.gateway_port``).

Unique indexes rather than unique constraints, so that plain ``ALTER TABLE ... ADD COLUMN``
works on SQLite too (see 0003 for why not batch mode).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Existing networks stay sealed (``external`` false, no zone); hosts have no egress."""
    op.add_column(
        "networks",
        sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("networks", sa.Column("zone", sa.Integer(), nullable=True))
    op.create_index("ix_networks_zone", "networks", ["zone"], unique=True)
    op.add_column("hosts", sa.Column("egress_ip", sa.String(15), nullable=True))
    op.add_column("hosts", sa.Column("gateway_port", sa.Integer(), nullable=True))
    op.create_index("ix_hosts_egress_ip", "hosts", ["egress_ip"], unique=True)


def downgrade() -> None:
    """Drop the columns in place."""
    op.drop_index("ix_hosts_egress_ip", table_name="hosts")
    op.drop_column("hosts", "gateway_port")
    op.drop_column("hosts", "egress_ip")
    op.drop_index("ix_networks_zone", table_name="networks")
    op.drop_column("networks", "zone")
    op.drop_column("networks", "external")
