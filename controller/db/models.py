"""SQLAlchemy 2.0 models of the intent database; they never leave ``controller.db``.

Addresses are stored as text (portable across SQLite and PostgreSQL); timestamps are
timezone-aware UTC. ``migrations/versions`` must match this file exactly (a test compares).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    insert,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ENDPOINT_STATES = ("reserved", "pending", "ready")
DEFAULT_RESERVATION_TTL = 86400  # seconds an unbound endpoint keeps its address for sure
MOVE_KINDS = ("bound", "moved", "unbound")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always reads back as UTC (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    # SQLite: the text in one step each way, the same text SQLAlchemy's DATETIME writes
    # ("YYYY-MM-DD HH:MM:SS.ffffff", compared as text in SQL) and reads (its regex parse and
    # then ``process_result_value`` were a fifth of a 50,000-endpoint read, and per row of a
    # write's executemany). Other dialects: SQLAlchemy's processors and the methods above.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_bind

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_result


def _sqlite_bind(value: datetime | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"a datetime is stored, not {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _sqlite_result(value: str | None) -> datetime | None:
    if value is None:
        return None
    read = datetime.fromisoformat(value)
    return read.replace(tzinfo=UTC) if read.tzinfo is None else read.astimezone(UTC)


class JSONDoc(TypeDecorator[dict[str, Any]]):
    """A JSON object stored as text (sorted keys), read back as a dict."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str:
        return json.dumps(value or {}, sort_keys=True, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, Any]:
        return dict(json.loads(value)) if value else {}


class JSONLabels(TypeDecorator[dict[str, str]]):
    """A map of string to string stored as JSON text (sorted keys), read back as a dict."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, str] | None, dialect: Dialect) -> str:
        return json.dumps(value or {}, sort_keys=True, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, str]:
        if not value or value == "{}":  # most endpoints: no JSON parse
            return {}
        return dict(json.loads(value))


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention the migrations use."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Revision(Base):
    """The single-row intent revision counter, bumped by every flow-relevant write."""

    __tablename__ = "revision"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ClusterRow(Base):
    """The single row naming this database's cluster: agents refuse a controller whose
    database has another id (an empty or wrong database would wipe their flows)."""

    __tablename__ = "cluster"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class NetworkRow(Base):
    """A virtual network (VNI + IPv4 subnet + gateway).

    ``external``: its endpoints reach the outside through their host's gateway, in conntrack
    ``zone`` (1..65535, allocated lowest free while external, NULL otherwise).

    ``subnet6``: its IPv6 prefix (at most /96; NULL: IPv4 only); IPv6 subnets of networks
    do not overlap (checked on create; the unique index catches equal ones).

    ``reclaim``: a full subnet may take back the address of any unbound reservation (else
    only of one unbound for ``reservation_ttl`` seconds or more; 0: never).
    """

    __tablename__ = "networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    vni: Mapped[int] = mapped_column(Integer, nullable=False, unique=True)
    subnet: Mapped[str] = mapped_column(String(18), nullable=False)
    gateway: Mapped[str] = mapped_column(String(15), nullable=False)
    block_prefix: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    reclaim: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    reservation_ttl: Mapped[int] = mapped_column(
        Integer,
        nullable=False,
        default=DEFAULT_RESERVATION_TTL,
        server_default=text(str(DEFAULT_RESERVATION_TTL)),
    )
    external: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    zone: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True, index=True)
    subnet6: Mapped[str | None] = mapped_column(String(43), nullable=True, unique=True, index=True)
    publications: Mapped[list[PublicationRow]] = relationship(
        lazy="selectin",
        order_by="PublicationRow.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    policies: Mapped[list[PolicyRow]] = relationship(
        lazy="selectin",
        order_by="PolicyRow.name",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class PublicationRow(Base):
    """A published host port: ``host_port``/``proto`` on the endpoint's host (wherever it is
    bound) forwarded to the endpoint's ``port``. Host ports are unique in the cluster, so a
    publication can always follow its endpoint; the endpoint is named, not referenced (the
    name is its identity: the same name finds the same publication again)."""

    __tablename__ = "publications"
    __table_args__ = (
        UniqueConstraint("host_port", "proto"),
        CheckConstraint("proto IN ('tcp', 'udp')", name="proto"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    endpoint: Mapped[str] = mapped_column(String(255), nullable=False)
    host_port: Mapped[int] = mapped_column(Integer, nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False)
    proto: Mapped[str] = mapped_column(String(3), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class PolicyRow(Base):
    """A network policy: ``spec`` is the API body (selector, policy_types, ingress, egress)
    as JSON; ``model.policy_from_spec`` reads it."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("network_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class HostRow(Base):
    """A host running br-int; ``dpid`` is 16 lowercase hex digits once known.

    ``egress_ip`` and ``gateway_port``: the address external networks leave with and the
    OpenFlow port of the host's gateway port (both NULL: no external access there);
    ``egress_ip6`` the IPv6 address they leave with (NULL: no IPv6 way out there)."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    underlay_ip: Mapped[str] = mapped_column(String(15), nullable=False, unique=True)
    dpid: Mapped[str | None] = mapped_column(String(16), nullable=True, unique=True)
    tunnel_port: Mapped[int] = mapped_column(Integer, nullable=False)
    egress_ip: Mapped[str | None] = mapped_column(
        String(15), nullable=True, unique=True, index=True
    )
    gateway_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    egress_ip6: Mapped[str | None] = mapped_column(
        String(39), nullable=True, unique=True, index=True
    )
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class BlockRow(Base):
    """An address block of a network with affinity to one host."""

    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("network_id", "cidr"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), nullable=False
    )
    cidr: Mapped[str] = mapped_column(String(18), nullable=False)
    host_id: Mapped[int] = mapped_column(
        ForeignKey("hosts.id", ondelete="CASCADE"), nullable=False, index=True
    )


class EndpointRow(Base):
    """A named attachment to a network holding one address, bound to a host port or not.

    One endpoint per (host, ofport): unbound rows have both NULL, which never collide.
    """

    __tablename__ = "endpoints"
    __table_args__ = (
        UniqueConstraint("network_id", "name"),
        UniqueConstraint("network_id", "ip"),
        CheckConstraint("state IN ('reserved', 'pending', 'ready')", name="state"),
        Index("ix_endpoints_host_id_ofport", "host_id", "ofport", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    ip: Mapped[str] = mapped_column(String(15), nullable=False)
    mac: Mapped[str] = mapped_column(String(17), nullable=False)
    # no index of its own: ix_endpoints_host_id_ofport serves lookups by host (migration 0015)
    host_id: Mapped[int | None] = mapped_column(
        ForeignKey("hosts.id", ondelete="SET NULL"), nullable=True
    )
    ofport: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    port_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    # indexed: the ready marks find a revision's pending endpoints by it (migration 0014)
    bound_rev: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(
        JSONLabels(), nullable=False, default=dict, server_default="{}"
    )


class EndpointMoveRow(Base):
    """One step of an endpoint's history: bound to a host, moved between hosts, unbound.

    Lives as long as the endpoint (cascade); the newest ``HISTORY_KEEP`` per endpoint are kept.
    Host names are copied, not referenced, so the history outlives a deleted host.
    """

    __tablename__ = "endpoint_moves"
    __table_args__ = (CheckConstraint("kind IN ('bound', 'moved', 'unbound')", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    host: Mapped[str | None] = mapped_column(String(63), nullable=True)
    from_host: Mapped[str | None] = mapped_column(String(63), nullable=True)
    ofport: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class EventRow(Base):
    """One event of the cluster-wide log (``controller.db.events``): ids from ``event_seq``,
    committed in id order; the newest ``PRUNE_KEEP`` are kept."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), nullable=False)


class EventSeqRow(Base):
    """The single row handing out event ids: ``last`` is the newest id given."""

    __tablename__ = "event_seq"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ChangeRow(Base):
    """One row a flow-relevant write changed, logged in the writing transaction: the engines
    of every controller process read the rows after the last ``revision`` they applied and
    re-read only the rows named (``controller.db.changelog``, ``controller.intent``).

    ``kind``: network, host, blocks (``key`` = network), endpoint (``key`` = network/name).
    Pruned by revision; an engine that finds a gap reads everything again.
    """

    __tablename__ = "change_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    key: Mapped[str] = mapped_column(String(320), nullable=False)


class SwitchStateRow(Base):
    """Per host's switch: the generation of desired flows the engine wants (bumped when the
    host's desired flows change) and the one the switch confirmed with a barrier. Written by
    the engine that pushes flows; any controller process reads it (host status)."""

    __tablename__ = "switch_state"

    host: Mapped[str] = mapped_column(String(63), primary_key=True)
    wanted: Mapped[int] = mapped_column(BigInteger, nullable=False)
    applied: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class TokenRow(Base):
    """An API bearer token: only the SHA-256 of its secret is kept (``controller.auth``).

    ``role`` is admin, agent or viewer; an agent token names its ``host``. The bootstrap
    admin token (made at the first start, ``bootstrap`` = 1, unique, so concurrent first
    starts make exactly one) also keeps its secret in ``bootstrap_secret``, so every
    controller on the database can hand it to root on its machine; revoking it erases that.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'agent', 'viewer')", name="role"),
        CheckConstraint("(role = 'agent') = (host IS NOT NULL)", name="agent_host"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    role: Mapped[str] = mapped_column(String(8), nullable=False)
    host: Mapped[str | None] = mapped_column(String(63), nullable=True)
    description: Mapped[str] = mapped_column(String(255), nullable=False, server_default="")
    created_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    bootstrap: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    bootstrap_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ControllerMemberRow(Base):
    """A controller process of the cluster and its lease (``controller.membership``).

    ``expires_at`` is the database's clock at the last renewal plus the lease: a member is
    live while the database's clock is before it. Rows of dead members stay (their id is
    random per process start) until ``members.forget_dead`` removes them.
    """

    __tablename__ = "controllers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_url: Mapped[str] = mapped_column(String(255), nullable=False)
    openflow: Mapped[str] = mapped_column(String(255), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)


class SwitchMasterRow(Base):
    """Who masters a switch (by dpid, 16 lowercase hex digits) and the generation id its
    master sends in its OpenFlow role request: bumped on every change of master, never
    lowered (the switch refuses an older one as STALE). The row outlives its host."""

    __tablename__ = "switch_masters"

    dpid: Mapped[str] = mapped_column(String(16), primary_key=True)
    controller_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False)
    applied_revision: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default=text("0")
    )  # the intent revision its master last saw the switch confirm (readiness elsewhere)


@event.listens_for(Revision.__table__, "after_create")
def _seed_revision(target: Any, connection: Connection, **_: Any) -> None:
    """``metadata.create_all`` seeds the revision row as the migration does."""
    connection.execute(insert(Revision).values(id=1, value=0))


@event.listens_for(ClusterRow.__table__, "after_create")
def _seed_cluster(target: Any, connection: Connection, **_: Any) -> None:
    """``metadata.create_all`` gives the database a cluster id as the migration does."""
    connection.execute(
        insert(ClusterRow).values(id=1, cluster_id=str(uuid.uuid4()), created_at=datetime.now(UTC))
    )
