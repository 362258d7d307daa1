"""Endpoint reads and writes: create, bind, create-and-bind in one step, unbind, delete.

Same conventions as ``controller.db.repo`` (which re-exports these): the caller commits,
a write is the first call of its transaction, flow-relevant writes return the new revision.
Allocation of a new endpoint's address lives in ``controller.db.allocate``.

A host port serves one endpoint: a bind to a (host, ofport) another endpoint holds, or to
the host's tunnel port, is a ``Conflict`` (a unique index backs it against races), and
ofport is 1..65279 (what OVS gives). Deletes can be conditional (``if_unbound``,
``if_revision``), checked under the row lock in the deleting transaction.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from controller.db import bindings
from controller.db.allocate import new_endpoint
from controller.db.base import (
    begin_write,
    bump,
    endpoint_record,
    host_row,
    network_row,
    utcnow,
)
from controller.db.bindings import Binding, RevisionMismatch
from controller.db.changelog import log_change, log_endpoint
from controller.db.changes import note
from controller.db.models import EndpointMoveRow, EndpointRow, HostRow, NetworkRow
from controller.db.records import EndpointRecord, MoveRecord
from controller.errors import Conflict, NotFound
from controller.intent import BLOCKS
from controller.model import EndpointState


def _find_row(
    session: Session, net: NetworkRow, name: str, lock: bool = False
) -> EndpointRow | None:
    query = select(EndpointRow).where(EndpointRow.network_id == net.id, EndpointRow.name == name)
    if lock:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def _endpoint_row(session: Session, net: NetworkRow, name: str, lock: bool = False) -> EndpointRow:
    row = _find_row(session, net, name, lock)
    if row is None:
        raise NotFound(f"endpoint {name!r} does not exist in network {net.name!r}")
    return row


def _record(session: Session, row: EndpointRow, net: NetworkRow) -> EndpointRecord:
    host = session.get(HostRow, row.host_id) if row.host_id is not None else None
    return endpoint_record(row, net, host.name if host is not None else None)


def _check_same_ip(row: EndpointRow, ip: IPv4Address | None, network: str) -> None:
    if ip is not None and str(ip) != row.ip:
        raise Conflict(
            f"endpoint {row.name!r} of network {network!r} already holds {row.ip}, "
            f"not {ip}: delete it first to change its address"
        )


def _set_labels(row: EndpointRow, labels: dict[str, str] | None, now: datetime) -> bool:
    """Replace the row's labels with ``labels`` (None: keep them); True if they changed.

    Labels are flow-relevant (policies select by them): the caller logs a changed bound
    endpoint (:func:`_log_relabel`)."""
    if labels is not None and labels != row.labels:
        row.labels = dict(labels)
        row.updated_at = now
        return True
    return False


def _log_relabel(session: Session, network: str, row: EndpointRow) -> int:
    """Bump the revision and log ``row`` after a change of its labels; the new revision."""
    revision = bump(session)
    log_endpoint(session, revision, network, row.name)
    return revision


def set_endpoint_labels(
    session: Session,
    network: str,
    name: str,
    labels: dict[str, str],
    now: datetime | None = None,
) -> tuple[EndpointRecord, int | None]:
    """Replace the labels of the endpoint ``name`` (``NotFound`` if unknown); the endpoint and
    the new revision (None when the labels were already these)."""
    begin_write(session)
    net = network_row(session, network, lock="update")
    row = _endpoint_row(session, net, name, lock=True)
    revision = None
    if _set_labels(row, labels, now or utcnow()):
        revision = _log_relabel(session, network, row)
    return _record(session, row, net), revision


def create_endpoint(
    session: Session,
    network: str,
    name: str,
    ip: IPv4Address | None = None,
    host: str | None = None,
    now: datetime | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[EndpointRecord, bool, int | None]:
    """Find or create the endpoint ``name`` of ``network`` (state reserved).

    Returns the endpoint, whether it was created, and the revision if a block was claimed.
    An existing name keeps its address (``Conflict`` if ``ip`` asks for another one);
    ``labels``, when given, replace its labels.
    """
    begin_write(session)
    net = network_row(session, network, lock="update")
    now = now or utcnow()
    existing = _find_row(session, net, name)
    if existing is not None:
        _check_same_ip(existing, ip, network)
        relabelled = None
        if _set_labels(existing, labels, now):
            relabelled = _log_relabel(session, network, existing)
        return _record(session, existing, net), False, relabelled
    target = host_row(session, host) if host is not None else None
    row, claimed = new_endpoint(session, net, name, ip, target, labels or {}, now)
    revision = bump(session) if claimed else None
    if revision is not None:
        log_change(session, revision, BLOCKS, network)
    return _record(session, row, net), True, revision


def get_endpoint(session: Session, network: str, name: str) -> EndpointRecord:
    """The endpoint ``name`` of ``network``, else ``NotFound``."""
    net = network_row(session, network)
    return _record(session, _endpoint_row(session, net, name), net)


def list_endpoints(
    session: Session,
    network: str | None = None,
    host: str | None = None,
    state: EndpointState | None = None,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
) -> list[EndpointRecord]:
    """Endpoints, optionally filtered by network, host and state, by network then name: at
    most ``limit``, those after the (network, name) ``after`` (paging)."""
    query = (
        select(EndpointRow, NetworkRow, HostRow.name)
        .join(NetworkRow, EndpointRow.network_id == NetworkRow.id)
        .outerjoin(HostRow, EndpointRow.host_id == HostRow.id)
        .order_by(NetworkRow.name, EndpointRow.name)
        .limit(limit)
    )
    if after is not None:
        net_after, name_after = after
        query = query.where(
            or_(
                NetworkRow.name > net_after,
                and_(NetworkRow.name == net_after, EndpointRow.name > name_after),
            )
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
    """Bind (or move) an existing endpoint to a host's OpenFlow port: ``attach_endpoint``
    without creation, moving it if bound elsewhere. Returns the endpoint and the revision
    (None: no change)."""
    record, _, revision = attach_endpoint(
        session, network, name, host, ofport, port_name=port_name, now=now, move=True
    )
    return record, revision


def attach_endpoint(
    session: Session,
    network: str,
    name: str,
    host: str,
    ofport: int,
    *,
    port_name: str | None = None,
    ip: IPv4Address | None = None,
    labels: dict[str, str] | None = None,
    if_revision: int | None = None,
    create: bool = False,
    move: bool = False,
    now: datetime | None = None,
) -> tuple[EndpointRecord, bool, int | None]:
    """Bind the endpoint ``name`` to a host's OpenFlow port, creating it first if ``create``.

    Allocation, bind and one revision bump happen in this transaction: the endpoint is
    ``pending`` with ``revision`` = the new revision. Returns the endpoint, whether it was
    created, and the revision (None when binding again to the same host and port changed
    nothing the dataplane sees). Checks, before anything changes:

    - ``NotFound`` for an unknown network or host, or an unknown name without ``create``;
    - ``RevisionMismatch`` when ``if_revision`` is given and is not the endpoint's current
      ``revision`` (a name that does not exist has revision 0);
    - ``Conflict`` when an existing endpoint holds another address than ``ip``, or (new name)
      ``ip`` is held by another endpoint; allocation errors as ``create_endpoint``;
    - ``RevisionMismatch`` when the endpoint is bound to another (host, ofport) and neither
      ``if_revision`` nor ``move`` says to move it: of two binds racing for one endpoint, the
      second does not silently undo the first;
    - ``Conflict`` when another endpoint holds the port, or it is the host's tunnel port.

    ``labels``, when given, replace the endpoint's labels. A new name is allocated as
    ``create_endpoint(host=host)`` would, and notes ``endpoint.created`` then
    ``endpoint.bound``, as the two calls would. One item of ``controller.db.bindings.write``.
    """
    item = Binding(
        network, name, host, ofport, port_name=port_name, ip=ip, labels=labels,
        if_revision=if_revision, move=move, create=create,
    )  # fmt: skip
    done = bindings.write(session, [item], now=now)[0]
    if done.error is not None:
        raise done.error
    assert done.record is not None
    return done.record, done.created, done.revision


def unbind_endpoint(
    session: Session,
    network: str,
    name: str,
    host: str | None = None,
    now: datetime | None = None,
) -> tuple[EndpointRecord, int | None]:
    """Unbind an endpoint (it keeps its address, state reserved).

    A no-op (no revision) when it is not bound, or bound to another host than ``host``.
    One item of ``controller.db.bindings.write``.
    """
    done = bindings.write(session, [Binding(network, name, host)], now=now)[0]
    if done.error is not None:
        raise done.error
    assert done.record is not None
    return done.record, done.revision


def release(
    session: Session, network: str, row: EndpointRow, host: str, revision: int, now: datetime
) -> None:
    """Unbind the (locked) ``row`` from ``host`` at ``revision``: history and note."""
    row.host_id = None
    row.ofport = None
    row.port_name = None
    row.state = EndpointState.RESERVED.value
    row.ready_at = None
    row.released_at = now
    row.updated_at = now
    _add_move(session, row.id, "unbound", None, host, None, revision, now)
    session.flush()
    log_endpoint(session, revision, network, row.name)
    note(
        session,
        "endpoint.unbound",
        network=network,
        endpoint=row.name,
        ip=row.ip,
        host=host,
        revision=revision,
    )


def delete_endpoint(
    session: Session,
    network: str,
    name: str,
    *,
    if_unbound: bool = False,
    if_revision: int | None = None,
) -> int | None:
    """Forget an endpoint and free its address; the revision if it was bound.

    The conditions are checked under the endpoint's row lock, in this transaction, so no
    bind can come in between: ``if_unbound`` -> ``Conflict`` while it is bound to a host;
    ``if_revision`` -> ``RevisionMismatch`` unless it is the endpoint's current revision.
    """
    begin_write(session)
    net = network_row(session, network, lock="share")
    row = _endpoint_row(session, net, name, lock=True)
    host = session.get(HostRow, row.host_id) if row.host_id is not None else None
    if if_revision is not None and if_revision != row.bound_rev:
        raise RevisionMismatch(
            f"endpoint {name!r} of network {network!r} is at revision {row.bound_rev}, not "
            f"{if_revision}: not deleted (read it again and retry)",
            _record(session, row, net),
        )
    if if_unbound and host is not None:
        raise RevisionMismatch(
            f"endpoint {name!r} of network {network!r} is bound to host {host.name!r} "
            f"(ofport {row.ofport}): not deleted (if_unbound)",
            _record(session, row, net),
        )
    ip = row.ip
    session.delete(row)
    session.flush()
    revision = bump(session) if host is not None else None
    if revision is not None:
        log_endpoint(session, revision, network, name)
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
    session: Session, network: str, name: str, limit: int = 100, after: int | None = None
) -> list[MoveRecord]:
    """The endpoint's binds, moves and unbinds, newest first (at most ``limit``, those listed
    after step ``after``, i.e. older: paging); ``NotFound`` if unknown."""
    net = network_row(session, network)
    row = _endpoint_row(session, net, name)
    query = (
        select(EndpointMoveRow)
        .where(EndpointMoveRow.endpoint_id == row.id)
        .order_by(EndpointMoveRow.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(EndpointMoveRow.id < after)
    return [
        MoveRecord(m.id, m.kind, m.host, m.from_host, m.ofport, m.revision, m.at)
        for m in session.execute(query).scalars()
    ]
