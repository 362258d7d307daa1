"""Initial schema: revision counter, networks, hosts, blocks, endpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every table and seed the single revision row."""
    revision_table = op.create_table(
        "revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_revision_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revision")),
    )
    op.bulk_insert(revision_table, [{"id": 1, "value": 0}])

    op.create_table(
        "networks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("vni", sa.Integer(), nullable=False),
        sa.Column("subnet", sa.String(length=18), nullable=False),
        sa.Column("gateway", sa.String(length=15), nullable=False),
        sa.Column("block_prefix", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_networks")),
        sa.UniqueConstraint("name", name=op.f("uq_networks_name")),
        sa.UniqueConstraint("vni", name=op.f("uq_networks_vni")),
    )

    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("underlay_ip", sa.String(length=15), nullable=False),
        sa.Column("dpid", sa.String(length=16), nullable=True),
        sa.Column("tunnel_port", sa.Integer(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("name", name=op.f("uq_hosts_name")),
        sa.UniqueConstraint("underlay_ip", name=op.f("uq_hosts_underlay_ip")),
        sa.UniqueConstraint("dpid", name=op.f("uq_hosts_dpid")),
    )

    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("cidr", sa.String(length=18), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_blocks_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_blocks_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocks")),
        sa.UniqueConstraint("network_id", "cidr", name=op.f("uq_blocks_network_id_cidr")),
    )
    op.create_index(op.f("ix_blocks_host_id"), "blocks", ["host_id"], unique=False)

    op.create_table(
        "endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("ip", sa.String(length=15), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("ofport", sa.BigInteger(), nullable=True),
        sa.Column("port_name", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("bound_rev", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('reserved', 'pending', 'ready')", name=op.f("ck_endpoints_state")
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_endpoints_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_endpoints_host_id_hosts"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoints")),
        sa.UniqueConstraint("network_id", "name", name=op.f("uq_endpoints_network_id_name")),
        sa.UniqueConstraint("network_id", "ip", name=op.f("uq_endpoints_network_id_ip")),
    )
    op.create_index(op.f("ix_endpoints_host_id"), "endpoints", ["host_id"], unique=False)
    op.create_index(op.f("ix_endpoints_state"), "endpoints", ["state"], unique=False)


def downgrade() -> None:
    """Drop every table, dependents first."""
    op.drop_index(op.f("ix_endpoints_state"), table_name="endpoints")
    op.drop_index(op.f("ix_endpoints_host_id"), table_name="endpoints")
    op.drop_table("endpoints")
    op.drop_index(op.f("ix_blocks_host_id"), table_name="blocks")
    op.drop_table("blocks")
    op.drop_table("hosts")
    op.drop_table("networks")
    op.drop_table("revision")
