"""Drop ``ix_endpoints_host_id``: the unique index on (host_id, ofport) already serves every
lookup by host (its first column), and keeping a second index on host_id made the bind
write's UPDATE 2.5 times as dear on SQLite (with foreign keys on, 0.65 -> 0.26 ms for 50 rows
of a 50,000-endpoint table; docs/benchmarks.md "Churn at 1,000 x 50: controller CPU per
event"). Every bind and unbind changes host_id.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The composite index stays (it is the one-endpoint-per-port rule too)."""
    op.drop_index("ix_endpoints_host_id", table_name="endpoints")


def downgrade() -> None:
    """Make the index again."""
    op.create_index("ix_endpoints_host_id", "endpoints", ["host_id"], unique=False)
