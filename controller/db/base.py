"""Shared repository helpers: write locks, the revision counter, lookups and row conversion.

Locking, so allocation is safe with many API threads on SQLite and on PostgreSQL:

- SQLite has one writer: a write transaction takes the lock with its first statement
  (``begin_write``), so the reads that follow see the latest commit and nobody interleaves.
- PostgreSQL locks rows, always in this order: network, endpoints (by id), host, then the
  revision row last (``bump``), so writers queue instead of deadlocking. Allocation holds
  the network row ``FOR UPDATE``; network creation serializes on the revision row.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from socket import inet_aton
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from controller.db.models import EndpointRow, HostRow, NetworkRow, Revision
from controller.db.records import EndpointRecord, HostRecord, NetworkRecord
from controller.errors import NotFound
from controller.model import EndpointState, Network, Publication, policy_from_spec
from vxcommon.addr6 import embed


def stored_ipv4(text: str) -> IPv4Address:
    """An IPv4 address as this controller stores it (dotted quad, written from an
    ``IPv4Address``): parsed by the C ``inet_aton``, 4 times faster than ``IPv4Address(text)``
    (a third of a 50,000-endpoint read). Not for input from outside: ``inet_aton`` also
    takes short forms such as "10.1"."""
    return IPv4Address(inet_aton(text))


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def dialect(session: Session) -> str:
    """The backend name of the session's engine ("sqlite", "postgresql")."""
    return session.get_bind().dialect.name


_LOCKED = "vxplane.write_locked"  # session.info: the transaction that holds the write lock


def begin_write(session: Session, *, serialize: bool = False) -> None:
    """Take the locks a write transaction needs before it reads (call it first).

    On SQLite a no-op write takes the database write lock at once (waiting up to the busy
    timeout). On PostgreSQL, ``serialize`` locks the revision row for the whole transaction.
    """
    if dialect(session) == "sqlite":
        # once per transaction: the lock is held until it ends (a ROLLBACK TO a savepoint,
        # a group-commit write that failed, keeps it), so the next writes of a batch skip it
        txn = session.get_transaction()
        if txn is not None and session.info.get(_LOCKED) is txn:
            return
        session.execute(update(Revision).where(Revision.id == 1).values(value=Revision.value))
        session.info[_LOCKED] = session.get_transaction()
    elif serialize:
        session.execute(select(Revision.value).where(Revision.id == 1).with_for_update())


REVISION_CHANNEL = "vxplane_revision"


def bump(session: Session) -> int:
    """Increment the revision in this transaction and return the new value."""
    session.flush()
    value = session.execute(
        update(Revision)
        .where(Revision.id == 1)
        .values(value=Revision.value + 1)
        .returning(Revision.value)
    ).scalar_one_or_none()
    if value is None:  # a database made by hand without the seeded row
        session.add(Revision(id=1, value=1))
        session.flush()
        value = 1
    if dialect(session) == "postgresql":
        # Delivered at commit (never for a rolled-back write) to every controller process
        # listening on this database (controller/db/listen.py).
        session.execute(select(func.pg_notify(REVISION_CHANNEL, str(value))))
    return int(value)


def read_revision(session: Session) -> int:
    """The current revision (0 before the first flow-relevant write)."""
    value = session.execute(select(Revision.value).where(Revision.id == 1)).scalar_one_or_none()
    return int(value) if value is not None else 0


def network_row(session: Session, name: str, lock: str | None = None) -> NetworkRow:
    """The network named ``name`` (``lock``: None, "share" or "update"), else ``NotFound``."""
    query = select(NetworkRow).where(NetworkRow.name == name)
    if lock is not None:
        query = query.with_for_update(read=lock == "share")
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"network {name!r} does not exist")
    return row


def host_row(session: Session, name: str, lock: bool = False) -> HostRow:
    """The host named ``name``, else ``NotFound``."""
    query = select(HostRow).where(HostRow.name == name)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"host {name!r} is not registered")
    return row


def to_network(row: NetworkRow) -> Network:
    """The snapshot value of a network row."""
    return Network(
        name=row.name,
        vni=row.vni,
        subnet=IPv4Network(row.subnet),
        gateway=IPv4Address(row.gateway),
        block_prefix=row.block_prefix,
        external=row.external,
        zone=row.zone,
        publications=tuple(
            Publication(p.endpoint, p.host_port, p.port, p.proto) for p in row.publications
        ),
        policies=tuple(policy_from_spec(p.name, p.spec) for p in row.policies),
        subnet6=IPv6Network(row.subnet6) if row.subnet6 else None,
        reclaim=row.reclaim,
        reservation_ttl=row.reservation_ttl,
        created_at=row.created_at,
    )


def network_record(row: NetworkRow, endpoints: int) -> NetworkRecord:
    """The API view of a network row."""
    return NetworkRecord(
        name=row.name,
        vni=row.vni,
        subnet=IPv4Network(row.subnet),
        gateway=IPv4Address(row.gateway),
        block_prefix=row.block_prefix,
        endpoints=endpoints,
        created_at=row.created_at,
        reclaim=row.reclaim,
        reservation_ttl=row.reservation_ttl,
        external=row.external,
        zone=row.zone,
        subnet6=IPv6Network(row.subnet6) if row.subnet6 else None,
        gateway6=embed(row.subnet6, row.gateway) if row.subnet6 else None,
    )


def host_record(row: HostRow) -> HostRecord:
    """The API view of a host row."""
    return HostRecord(
        name=row.name,
        underlay_ip=IPv4Address(row.underlay_ip),
        dpid=int(row.dpid, 16) if row.dpid is not None else None,
        tunnel_port=row.tunnel_port,
        last_seen=row.last_seen,
        created_at=row.created_at,
        egress_ip=IPv4Address(row.egress_ip) if row.egress_ip else None,
        gateway_port=row.gateway_port,
        egress_ip6=IPv6Address(row.egress_ip6) if row.egress_ip6 else None,
    )


@dataclass(slots=True)
class EndpointCols:
    """An endpoint row's columns read as a tuple (the set-based writes of
    ``controller.db.bindings``), changed in place as the write plans its updates."""

    id: int
    network_id: int
    name: str
    ip: str
    mac: str
    host_id: int | None
    ofport: int | None
    port_name: str | None
    state: str
    bound_rev: int
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    released_at: datetime | None
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class _NetFacts:
    prefixlen: int
    gateway: IPv4Address
    prefixlen6: int | None
    gateway6: IPv6Address | None


@lru_cache(maxsize=1024)
def _net_facts(subnet: str, gateway: str, subnet6: str | None) -> _NetFacts:
    """What an endpoint's record takes from its network, parsed once per network, not once
    per record: ``IPv4Network`` parsing was 7 % of the controller's samples in a batch churn
    (docs/benchmarks.md "Churn at 1,000 x 50: controller CPU per event"). Immutable values of
    immutable strings, so a cached answer is always right."""
    return _NetFacts(
        IPv4Network(subnet).prefixlen,
        IPv4Address(gateway),
        IPv6Network(subnet6).prefixlen if subnet6 else None,
        embed(subnet6, gateway) if subnet6 else None,
    )


class NetworkRef(Protocol):
    """What an endpoint's record needs of its network: a ``NetworkRow`` or its columns."""

    @property
    def name(self) -> str: ...

    @property
    def vni(self) -> int: ...

    @property
    def subnet(self) -> str: ...

    @property
    def gateway(self) -> str: ...

    @property
    def subnet6(self) -> str | None: ...


def endpoint_record(
    row: EndpointRow | EndpointCols, net: NetworkRef, host: str | None
) -> EndpointRecord:
    """The API view of an endpoint row."""
    facts = _net_facts(net.subnet, net.gateway, net.subnet6)
    return EndpointRecord(
        network=net.name,
        name=row.name,
        ip=stored_ipv4(row.ip),
        prefixlen=facts.prefixlen,
        gateway=facts.gateway,
        mac=row.mac,
        vni=net.vni,
        host=host,
        ofport=row.ofport,
        port_name=row.port_name,
        state=EndpointState(row.state),
        revision=row.bound_rev,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ready_at=row.ready_at,
        released_at=row.released_at,
        labels=dict(row.labels),
        ip6=embed(net.subnet6, row.ip) if net.subnet6 else None,
        prefixlen6=facts.prefixlen6,
        gateway6=facts.gateway6,
    )


def format_dpid(dpid: int) -> str:
    """A datapath id as stored: 16 lowercase hex digits."""
    return f"{dpid:016x}"
