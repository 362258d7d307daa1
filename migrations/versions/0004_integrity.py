"""Integrity: one endpoint per (host, ofport), reclaim and reservation TTL per network, and
the cluster id.

Before the unique index, bindings the old code let in are undone (the endpoints become
reserved and keep their address; the agent of a host binds a live port again): a port
number above 65279 (OVS has none), the host's tunnel port, and all but the newest binding of
a (host, ofport) bound twice. The revision is bumped if any was undone.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_OFPORT = 65279
DEFAULT_RESERVATION_TTL = 86400

_BAD_BINDINGS = f"""
    host_id IS NOT NULL AND (
        ofport IS NULL OR ofport < 1 OR ofport > {MAX_OFPORT}
        OR ofport = (SELECT hosts.tunnel_port FROM hosts WHERE hosts.id = endpoints.host_id)
        OR EXISTS (
            SELECT 1 FROM endpoints AS newer
            WHERE newer.host_id = endpoints.host_id AND newer.ofport = endpoints.ofport
            AND (newer.bound_rev > endpoints.bound_rev
                 OR (newer.bound_rev = endpoints.bound_rev AND newer.id > endpoints.id))
        )
    )
"""


def upgrade() -> None:
    """Undo bad bindings, add the (host_id, ofport) index, the network columns, the cluster."""
    now = datetime.now(UTC)
    conn = op.get_bind()
    undone = conn.execute(
        sa.text(
            "UPDATE endpoints SET host_id = NULL, ofport = NULL, port_name = NULL,"
            " state = 'reserved', ready_at = NULL, released_at = :now, updated_at = :now"
            f" WHERE {_BAD_BINDINGS}"
        ),
        {"now": now if conn.dialect.name != "sqlite" else now.replace(tzinfo=None)},
    ).rowcount
    if undone:
        conn.execute(sa.text("UPDATE revision SET value = value + 1 WHERE id = 1"))
    op.create_index("ix_endpoints_host_id_ofport", "endpoints", ["host_id", "ofport"], unique=True)
    op.add_column(
        "networks",
        sa.Column("reclaim", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "networks",
        sa.Column(
            "reservation_ttl",
            sa.Integer(),
            nullable=False,
            server_default=sa.text(str(DEFAULT_RESERVATION_TTL)),
        ),
    )
    cluster = op.create_table(
        "cluster",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_cluster_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster")),
    )
    op.bulk_insert(
        cluster,
        [
            {
                "id": 1,
                "cluster_id": str(uuid.uuid4()),
                "created_at": now if conn.dialect.name != "sqlite" else now.replace(tzinfo=None),
            }
        ],
    )


def downgrade() -> None:
    """Drop the cluster, the network columns and the index in place (see 0003: no batch)."""
    op.drop_table("cluster")
    op.drop_column("networks", "reservation_ttl")
    op.drop_column("networks", "reclaim")
    op.drop_index("ix_endpoints_host_id_ofport", table_name="endpoints")
