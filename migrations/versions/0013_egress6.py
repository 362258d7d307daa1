"""IPv6 external access: a host's IPv6 egress address (``hosts.egress_ip6``, its agent's
``--egress-ip6``).

A unique index rather than a unique constraint, so that plain ``ALTER TABLE ... ADD COLUMN``
works on SQLite too (as 0007).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Existing hosts have no IPv6 egress until their agent registers one."""
    op.add_column("hosts", sa.Column("egress_ip6", sa.String(39), nullable=True))
    op.create_index("ix_hosts_egress_ip6", "hosts", ["egress_ip6"], unique=True)


def downgrade() -> None:
    """Drop the column in place."""
    op.drop_index("ix_hosts_egress_ip6", table_name="hosts")
    op.drop_column("hosts", "egress_ip6")
