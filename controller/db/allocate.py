"""A new endpoint's row: its address from the pure allocator (``ipam``), a block claimed for
its host if needed, reclaiming a reservation only when the subnet is full.

A reservation is an unbound endpoint: it keeps its address so that its name finds it again.
A full subnet takes back the oldest one (by when it was unbound, or made if never bound)
only if the network allows it: with ``reclaim`` any of them, otherwise only one unbound for
at least the network's ``reservation_ttl`` seconds (0: never), so churned names do not fill
a subnet for good but a stopped container's address is kept for that long. Else the create
answers 409 and nothing changes.

Used by ``controller.db.endpoints`` (create, create-and-bind) inside their write transaction,
with the network row already locked ``FOR UPDATE``; nothing here bumps the revision or commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller import ipam
from controller.db.changes import note
from controller.db.models import BlockRow, EndpointRow, HostRow, NetworkRow
from controller.errors import AddressExhausted, Conflict, InvalidRequest
from controller.model import Block, EndpointState, Network
from vxcommon.names import endpoint_name_error

OWN_BLOCKS_MAX = 4096  # addresses of a host's blocks looked up one by one (a /26 block: 64)


class HostRef(Protocol):
    """What a new endpoint needs of its host: a ``HostRow`` or its columns."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


def new_endpoint(
    session: Session,
    net: NetworkRow,
    name: str,
    ip: IPv4Address | None,
    host: HostRef | None,
    labels: dict[str, str],
    now: datetime,
    bind: tuple[int, str | None, int] | None = None,
) -> tuple[EndpointRow, bool]:
    """Insert the reserved endpoint ``name``; also whether a block was claimed for ``host``.

    ``bind`` (ofport, port_name, revision): insert it bound to ``host``'s port instead,
    pending at that revision (create-and-bind in one INSERT; the caller writes its history).

    ``Conflict`` if ``ip`` is held by another name or the name or address was taken by a
    concurrent writer; ``InvalidRequest`` for a bad name (the binding route takes it from
    the URL) or from the allocator, ``AddressExhausted``. Notes ``endpoint.created``; the
    caller bumps the revision if a block was claimed.
    """
    error = endpoint_name_error(name)
    if error:
        raise InvalidRequest(error)
    if ip is not None:
        holder = session.execute(
            select(EndpointRow.name).where(
                EndpointRow.network_id == net.id, EndpointRow.ip == str(ip)
            )
        ).scalar_one_or_none()
        if holder is not None:
            raise Conflict(f"{ip} is already held by endpoint {holder!r} of network {net.name!r}")

    allocation = _allocate(session, net, host.name if host is not None else None, ip, now)
    if allocation.reclaimed is not None:
        session.execute(
            delete(EndpointRow).where(
                EndpointRow.network_id == net.id,
                EndpointRow.name == allocation.reclaimed.name,
                EndpointRow.host_id.is_(None),
            )
        )
    block = allocation.block  # only ever chosen for a host
    if block is not None and host is not None:
        session.add(BlockRow(network_id=net.id, cidr=str(block.cidr), host_id=host.id))
    row = EndpointRow(
        network_id=net.id,
        name=name,
        ip=str(allocation.ip),
        mac=allocation.mac,
        state=EndpointState.RESERVED.value,
        bound_rev=0,
        created_at=now,
        updated_at=now,
        labels=dict(labels),
    )
    if bind is not None and host is not None:
        row.host_id, row.state = host.id, EndpointState.PENDING.value
        row.ofport, row.port_name, row.bound_rev = bind
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        if bind is not None and host is not None and "ofport" in str(exc.orig):
            raise Conflict(
                f"ofport {bind[0]} of host {host.name!r} is bound to another endpoint: a port "
                "serves one endpoint (unbind that one first)"
            ) from exc
        raise Conflict(f"endpoint {name!r} or {allocation.ip} was taken concurrently") from exc
    note(session, "endpoint.created", network=net.name, endpoint=name, ip=row.ip)
    return row, block is not None


def _allocate(
    session: Session, net: NetworkRow, host: str | None, ip: IPv4Address | None, now: datetime
) -> ipam.Allocation:
    """Run the pure allocator on what the network holds; reclaim only when it is full, and
    only what the network allows (module docstring)."""
    # what the allocator reads of the network (not its publications and policies, which
    # would cost two more statements per creation)
    network = Network(net.name, net.vni, IPv4Network(net.subnet), IPv4Address(net.gateway),
                      net.block_prefix)  # fmt: skip
    if host is not None and ip is None:
        own = _in_own_blocks(session, net, network, host)
        if own is not None:
            return own
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
    since = func.coalesce(EndpointRow.released_at, EndpointRow.created_at)
    query = (
        select(EndpointRow.name, EndpointRow.ip)
        .where(EndpointRow.network_id == net.id, EndpointRow.host_id.is_(None))
        .order_by(since, EndpointRow.id)
        .limit(1)
    )
    if not net.reclaim:
        if net.reservation_ttl <= 0:
            raise _full(session, net, used, since)
        query = query.where(since <= now - timedelta(seconds=net.reservation_ttl))
    reclaimable = [ipam.Reservation(n, IPv4Address(v)) for n, v in session.execute(query)]
    if not reclaimable:
        raise _full(session, net, used, since)
    return ipam.allocate(network, used, blocks, host=host, reclaimable=reclaimable)


def _in_own_blocks(
    session: Session, net: NetworkRow, network: Network, host: str
) -> ipam.Allocation | None:
    """The allocator's first choice for ``host`` (the first free address of a block it owns)
    from the endpoints inside its blocks alone, looked up by address, instead of every address
    the network holds: a create costs the same however many endpoints the network has. None
    when its blocks are full (or too large to look up so: over ``OWN_BLOCKS_MAX`` addresses);
    the caller then reads everything."""
    mine = [
        Block(net.name, IPv4Network(cidr), host)
        for cidr in session.execute(
            select(BlockRow.cidr)
            .join(HostRow, BlockRow.host_id == HostRow.id)
            .where(BlockRow.network_id == net.id, HostRow.name == host)
        ).scalars()
    ]
    if not mine or sum(b.cidr.num_addresses for b in mine) > OWN_BLOCKS_MAX:
        return None
    addresses = [str(a) for b in mine for a in b.cidr]
    used: set[IPv4Address] = set()
    for i in range(0, len(addresses), 512):  # bound parameters per statement
        used.update(
            IPv4Address(value)
            for value in session.execute(
                select(EndpointRow.ip).where(
                    EndpointRow.network_id == net.id, EndpointRow.ip.in_(addresses[i : i + 512])
                )
            ).scalars()
        )
    return ipam.allocate_in_own_blocks(network, used, mine, host)


def _full(
    session: Session, net: NetworkRow, used: set[IPv4Address], since: Any
) -> AddressExhausted:
    """The 409 of a full subnet that may reclaim nothing: what holds it and what to do."""
    reserved, oldest = session.execute(
        select(func.count(), func.min(since)).where(
            EndpointRow.network_id == net.id, EndpointRow.host_id.is_(None)
        )
    ).one()
    text = (
        f"subnet {net.subnet} of network {net.name!r} is exhausted: every address is held by "
        f"an endpoint ({len(used)}), {reserved} of them by unbound reservations"
    )
    if reserved and net.reservation_ttl > 0:
        text += (
            f" (kept {net.reservation_ttl} s after they are unbound; the oldest, unbound at "
            f"{oldest:%Y-%m-%d %H:%M:%S}, can be reclaimed from "
            f"{oldest + timedelta(seconds=net.reservation_ttl):%Y-%m-%d %H:%M:%S} UTC)"
        )
    elif reserved:
        text += " (kept for good: reservation_ttl is 0)"
    return AddressExhausted(
        text + ". Delete endpoints no longer needed, or use a network created with reclaim "
        "on (`vxplane network create ... --reclaim`) to reuse unbound addresses"
    )
