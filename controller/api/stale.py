"""Reads served from the flow engine's in-memory intent while the database is unavailable.

When a read route's database query fails because the database cannot be reached (PostgreSQL
stopped, restarting, partitioned away), the routes of networks, hosts and endpoints answer
from ``FlowSync.intent_view()``: the intent as this controller last read it from the change
log. Such an answer carries ``X-Vxplane-Stale: 1`` and ``X-Vxplane-Revision: N`` (the
revision it reflects). What memory holds, and so what a stale read shows:

- networks and hosts: all of them, as of that revision (a host's ``last_seen`` is its last
  heartbeat the controller read; heartbeats are not recorded while the database is away);
- endpoints: those *bound* to a host (the ones with flows). Reserved endpoints (bound to no
  host) are not kept in memory: they are not listed, and a GET of one answers 503. A stale
  network's ``endpoints`` counts its bound endpoints only.

Writes are not served: they fail with 503 and ``Retry-After`` (``controller.api.app``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from controller.api.paging import page
from controller.db.records import EndpointRecord, NetworkRecord
from controller.errors import Busy, NotFound
from controller.model import Endpoint, EndpointState, Network, Snapshot
from controller.sync import FlowSync

STALE_HEADER = "X-Vxplane-Stale"
REVISION_HEADER = "X-Vxplane-Revision"
OUTAGE_RETRY_AFTER = 5  # s a client is told to wait when the database is unreachable

T = TypeVar("T")


def unreachable(exc: BaseException) -> bool:
    """True if ``exc`` says the database could not be reached or the connection broke (not
    a conflict, not bad input, not SQLite's busy lock)."""
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        return "database is locked" not in str(exc.orig)
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def fallback(exc: BaseException, sync: FlowSync, response: Response) -> Snapshot:
    """The in-memory intent a read route answers from when its database read raised ``exc``,
    with ``response`` marked as served from memory at its revision. ``exc`` is raised again
    unless it says the database could not be reached, and when there is no intent to answer
    from (no flow engine in this process, or it never read the database).

    Every read route has this one shape::

        try:
            answer = <the database read>
        except Exception as exc:
            view = stale.fallback(exc, sync, response)
            answer = <the same answer built from view>
    """
    if not unreachable(exc):
        raise exc
    view = sync.intent_view()
    if view is None:
        raise exc
    response.headers[STALE_HEADER] = "1"
    response.headers[REVISION_HEADER] = str(view.revision)
    return view


def paged(
    request: Request,
    response: Response,
    items: Iterable[T],
    key: Callable[[T], str],
    limit: int,
    after: Any | None,
    order: Callable[[T], Any] | None = None,
) -> list[T]:
    """``items`` paged as the database-backed lists are: sorted by ``order`` (default
    ``key``), those after ``after`` (a value of ``order``), ``key`` in the Link header."""
    by: Callable[[T], Any] = order or key
    ordered: Sequence[T] = sorted((i for i in items if after is None or by(i) > after), key=by)
    return page(request, response, ordered[: limit + 1], limit, key)


def network_record(net: Network, view: Snapshot) -> NetworkRecord:
    """The API view of a network held in memory (``endpoints``: the bound ones)."""
    bound = sum(1 for e in view.endpoints if e.network == net.name)
    if net.created_at is None:  # every network read from the database has one
        raise Busy("the database is unavailable: retry shortly", OUTAGE_RETRY_AFTER)
    return NetworkRecord(
        name=net.name,
        vni=net.vni,
        subnet=net.subnet,
        gateway=net.gateway,
        block_prefix=net.block_prefix,
        endpoints=bound,
        created_at=net.created_at,
        reclaim=net.reclaim,
        reservation_ttl=net.reservation_ttl,
        external=net.external,
        zone=net.zone,
        subnet6=net.subnet6,
        gateway6=net.gateway6,
    )


def find_network(view: Snapshot, name: str) -> Network:
    """The network ``name`` in memory, else ``NotFound`` (memory holds every network)."""
    net = view.networks.get(name)
    if net is None:
        raise NotFound(f"network {name!r} does not exist")
    return net


def endpoint_record(ep: Endpoint, view: Snapshot, sync: FlowSync) -> EndpointRecord:
    """The API view of a bound endpoint held in memory; ready once every switch its revision
    needs confirmed it (the database's ready mark may be newer than the memory's row)."""
    net = view.networks[ep.network]
    state = ep.state
    if state is EndpointState.PENDING and sync.waiting_on(ep.bound_rev) == []:
        state = EndpointState.READY
    if ep.created_at is None or ep.updated_at is None:
        raise Busy("the database is unavailable: retry shortly", OUTAGE_RETRY_AFTER)
    return EndpointRecord(
        network=ep.network,
        name=ep.name,
        ip=ep.ip,
        prefixlen=net.subnet.prefixlen,
        gateway=net.gateway,
        mac=ep.mac,
        vni=net.vni,
        host=ep.host,
        ofport=ep.ofport,
        port_name=ep.port_name,
        state=state,
        revision=ep.bound_rev,
        created_at=ep.created_at,
        updated_at=ep.updated_at,
        ready_at=ep.ready_at,
        released_at=None,
        labels=ep.label_map(),
        ip6=net.ip6(ep.ip),
        prefixlen6=net.subnet6.prefixlen if net.subnet6 is not None else None,
        gateway6=net.gateway6,
    )


def find_endpoint(view: Snapshot, network: str, name: str) -> Endpoint:
    """The bound endpoint in memory; ``NotFound`` for an unknown network; 503 (``Busy``) for
    a name memory does not hold (it may be a reserved endpoint: only the database knows)."""
    find_network(view, network)
    for ep in view.endpoints:
        if ep.network == network and ep.name == name:
            return ep
    raise Busy(
        f"the database is unavailable and endpoint {name!r} of network {network!r} is not "
        "bound to a host (this controller keeps only bound endpoints in memory): retry when "
        "the database is back",
        OUTAGE_RETRY_AFTER,
    )
