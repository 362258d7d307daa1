"""Endpoint reads and writes: allocation (through ``ipam``), bind, unbind, delete.

Same conventions as ``controller.db.repo`` (which re-exports these): the caller commits,
a write is the first call of its transaction, flow-relevant writes return the new revision.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address, IPv4Network

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller import ipam
from controller.db.base import (
    begin_write,
    bump,
    endpoint_record,
    host_row,
    network_row,
    to_network,
    utcnow,
)
from controller.db.changes import note
from controller.db.models import BlockRow, EndpointMoveRow, EndpointRow, HostRow, NetworkRow
from controller.db.records import EndpointRecord, MoveRecord
from controller.errors import AddressExhausted, Conflict, NotFound
from controller.model import Block, EndpointState


def _endpoint_row(session: Session, net: NetworkRow, name: str, lock: bool = False) -> EndpointRow:
    query = select(EndpointRow).where(EndpointRow.network_id == net.id, EndpointRow.name == name)
    if lock:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"endpoint {name!r} does not exist in network {net.name!r}")
    return row


def _record(session: Session, row: EndpointRow, net: NetworkRow) -> EndpointRecord:
    host = session.get(HostRow, row.host_id) if row.host_id is not None else None
    return endpoint_record(row, net, host.name if host is not None else None)


def create_endpoint(
    session: Session,
    network: str,
    name: str,
    ip: IPv4Address | None = None,
    host: str | None = None,
    now: datetime | None = None,
) -> tuple[EndpointRecord, bool, int | None]:
    """Find or create the endpoint ``name`` of ``network`` (state reserved).

    Returns the endpoint, whether it was created, and the revision if a block was claimed.
    An existing name keeps its address (``Conflict`` if ``ip`` asks for another one).
    """
    begin_write(session)
    net = network_row(session, network, lock="update")
    existing = session.execute(
        select(EndpointRow).where(EndpointRow.network_id == net.id, EndpointRow.name == name)
    ).scalar_one_or_none()
    if existing is not None:
        if ip is not None and str(ip) != existing.ip:
            raise Conflict(
                f"endpoint {name!r} of network {network!r} already holds {existing.ip}, "
                f"not {ip}: delete it first to change its address"
            )
        return _record(session, existing, net), False, None
    host_id = host_row(session, host).id if host is not None else None
    if ip is not None:
        holder = session.execute(
            select(EndpointRow.name).where(
                EndpointRow.network_id == net.id, EndpointRow.ip == str(ip)
            )
        ).scalar_one_or_none()
        if holder is not None:
            raise Conflict(f"{ip} is already held by endpoint {holder!r} of network {network!r}")

    allocation = _allocate(session, net, host, ip)
    if allocation.reclaimed is not None:
        session.execute(
            delete(EndpointRow).where(
                EndpointRow.network_id == net.id,
                EndpointRow.name == allocation.reclaimed.name,
                EndpointRow.host_id.is_(None),
            )
        )
    if allocation.block is not None and host_id is not None:
        session.add(BlockRow(network_id=net.id, cidr=str(allocation.block.cidr), host_id=host_id))
    now = now or utcnow()
    row = EndpointRow(
        network_id=net.id,
        name=name,
        ip=str(allocation.ip),
        mac=allocation.mac,
        state=EndpointState.RESERVED.value,
        bound_rev=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"endpoint {name!r} or {allocation.ip} was taken concurrently") from exc
    revision = bump(session) if allocation.block is not None else None
    record = _record(session, row, net)
    note(session, "endpoint.created", network=network, endpoint=name, ip=str(record.ip))
    return record, True, revision


def _allocate(
    session: Session, net: NetworkRow, host: str | None, ip: IPv4Address | None
) -> ipam.Allocation:
    """Run the pure allocator on what the network holds; reclaim only when it is full."""
    network = to_network(net)
    used = {
        IPv4Address(value)
        for value in session.execute(
            select(EndpointRow.ip).where(EndpointRow.network_id == net.id)
        ).scalars()
    }
    blocks = [
        Block(net.name, IPv4Network(cidr), host_name)
        for cidr, host_name in session.execute(
            select(BlockRow.cidr, HostRow.name)
            .join(HostRow, BlockRow.host_id == HostRow.id)
            .where(BlockRow.network_id == net.id)
        )
    ]
    try:
        return ipam.allocate(network, used, blocks, host=host, requested=ip)
    except AddressExhausted:
        if ip is not None:
            raise
    oldest = func.coalesce(EndpointRow.released_at, EndpointRow.created_at)
    reclaimable = [
        ipam.Reservation(name, IPv4Address(value))
        for name, value in session.execute(
            select(EndpointRow.name, EndpointRow.ip)
            .where(EndpointRow.network_id == net.id, EndpointRow.host_id.is_(None))
            .order_by(oldest, EndpointRow.id)
            .limit(1)
        )
    ]
    return ipam.allocate(network, used, blocks, host=host, reclaimable=reclaimable)


def get_endpoint(session: Session, network: str, name: str) -> EndpointRecord:
    """The endpoint ``name`` of ``network``, else ``NotFound``."""
    net = network_row(session, network)
    return _record(session, _endpoint_row(session, net, name), net)


def list_endpoints(
    session: Session,
    network: str | None = None,
    host: str | None = None,
    state: EndpointState | None = None,
) -> list[EndpointRecord]:
    """Endpoints, optionally filtered by network, host and state, by network then name."""
    query = (
        select(EndpointRow, NetworkRow, HostRow.name)
        .join(NetworkRow, EndpointRow.network_id == NetworkRow.id)
        .outerjoin(HostRow, EndpointRow.host_id == HostRow.id)
        .order_by(NetworkRow.name, EndpointRow.name)
    )
    if network is not None:
        query = query.where(NetworkRow.name == network)
    if host is not None:
        query = query.where(HostRow.name == host)
    if state is not None:
        query = query.where(EndpointRow.state == state.value)
    return [endpoint_record(row, net, name) for row, net, name in session.execute(query)]


def bind_endpoint(
    session: Session,
    network: str,
    name: str,
    host: str,
    ofport: int,
    port_name: str | None = None,
    now: datetime | None = None,
) -> tuple[EndpointRecord, int | None]:
    """Bind (or move) an endpoint to a host's OpenFlow port: state pending, bound_rev = revision.

    Binding again to the same host and port changes nothing and returns no revision.
    """
    begin_write(session)
    net = network_row(session, network, lock="share")
    row = _endpoint_row(session, net, name, lock=True)
    target = host_row(session, host)
    if (
        row.host_id == target.id
        and row.ofport == ofport
        and (port_name is None or port_name == row.port_name)
    ):
        return endpoint_record(row, net, target.name), None
    revision = bump(session)
    previous = session.get(HostRow, row.host_id) if row.host_id is not None else None
    moved = previous is not None and previous.id != target.id
    now = now or utcnow()
    row.host_id = target.id
    row.ofport = ofport
    row.port_name = port_name
    row.state = EndpointState.PENDING.value
    row.bound_rev = revision
    row.ready_at = None
    row.released_at = None
    row.updated_at = now
    from_host = previous.name if moved and previous is not None else None
    try:
        session.flush()
        kind = "moved" if moved else "bound"
        _add_move(session, row.id, kind, target.name, from_host, ofport, revision, now)
    except IntegrityError as exc:  # the host was deleted concurrently
        raise NotFound(f"host {host!r} is not registered") from exc
    note(
        session,
        "endpoint.moved" if moved else "endpoint.bound",
        network=network,
        endpoint=name,
        ip=row.ip,
        host=target.name,
        from_host=from_host,
        ofport=ofport,
        revision=revision,
    )
    return endpoint_record(row, net, target.name), revision


def unbind_endpoint(
    session: Session,
    network: str,
    name: str,
    host: str | None = None,
    now: datetime | None = None,
) -> tuple[EndpointRecord, int | None]:
    """Unbind an endpoint (it keeps its address, state reserved).

    A no-op (no revision) when it is not bound, or bound to another host than ``host``.
    """
    begin_write(session)
    net = network_row(session, network, lock="share")
    row = _endpoint_row(session, net, name, lock=True)
    current = session.get(HostRow, row.host_id) if row.host_id is not None else None
    if current is None or (host is not None and current.name != host):
        return endpoint_record(row, net, current.name if current else None), None
    revision = bump(session)
    now = now or utcnow()
    row.host_id = None
    row.ofport = None
    row.port_name = None
    row.state = EndpointState.RESERVED.value
    row.ready_at = None
    row.released_at = now
    row.updated_at = now
    _add_move(session, row.id, "unbound", None, current.name, None, revision, now)
    session.flush()
    note(
        session,
        "endpoint.unbound",
        network=network,
        endpoint=name,
        ip=row.ip,
        host=current.name,
        revision=revision,
    )
    return endpoint_record(row, net, None), revision


def delete_endpoint(session: Session, network: str, name: str) -> int | None:
    """Forget an endpoint and free its address; the revision if it was bound."""
    begin_write(session)
    net = network_row(session, network, lock="share")
    row = _endpoint_row(session, net, name, lock=True)
    host = session.get(HostRow, row.host_id) if row.host_id is not None else None
    ip = row.ip
    session.delete(row)
    session.flush()
    revision = bump(session) if host is not None else None
    note(
        session,
        "endpoint.deleted",
        network=network,
        endpoint=name,
        ip=ip,
        host=host.name if host is not None else None,
        revision=revision,
    )
    return revision


def _add_move(
    session: Session,
    endpoint_id: int,
    kind: str,
    host: str | None,
    from_host: str | None,
    ofport: int | None,
    revision: int,
    at: datetime,
) -> None:
    session.execute(
        insert(EndpointMoveRow).values(
            endpoint_id=endpoint_id,
            kind=kind,
            host=host,
            from_host=from_host,
            ofport=ofport,
            revision=revision,
            at=at,
        )
    )


def endpoint_history(
    session: Session, network: str, name: str, limit: int = 100
) -> list[MoveRecord]:
    """The endpoint's binds, moves and unbinds, newest first; ``NotFound`` if unknown."""
    net = network_row(session, network)
    row = _endpoint_row(session, net, name)
    query = (
        select(EndpointMoveRow)
        .where(EndpointMoveRow.endpoint_id == row.id)
        .order_by(EndpointMoveRow.id.desc())
        .limit(limit)
    )
    return [
        MoveRecord(m.kind, m.host, m.from_host, m.ofport, m.revision, m.at)
        for m in session.execute(query).scalars()
    ]
