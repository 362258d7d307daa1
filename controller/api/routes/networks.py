"""Networks: create, list, show, change (external access), delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from controller.api import stale
from controller.api.auth import PrincipalDep, allow
from controller.api.deps import EventsDep, SessionDep, SettingsDep, SyncDep
from controller.api.paging import DEFAULT_LIMIT, LINK_HEADER, After, Limit, page
from controller.api.schemas import NetworkCreate, NetworkPublic, NetworkUpdate
from controller.api.tx import commit
from controller.auth import Forbidden, Role
from controller.db import repo

router = APIRouter(prefix="/api/v1/networks", tags=["networks"])


@router.post("", status_code=status.HTTP_201_CREATED)
@allow(Role.agent)
def create_network(
    body: NetworkCreate,
    principal: PrincipalDep,
    session: SessionDep,
    sync: SyncDep,
    settings: SettingsDep,
    events: EventsDep,
) -> NetworkPublic:
    """Create a network (409 if the name or VNI is taken). Agents may create sealed
    networks only: giving one a way out (``external``) is an admin's decision (403)."""
    if body.external and principal.role is not Role.admin:
        raise Forbidden("only an admin token may create an external network")
    record, revision = repo.create_network(
        session,
        body.name,
        body.subnet,
        gateway=body.gateway,
        vni=body.vni,
        block_prefix=body.block_prefix or settings.default_block_prefix,
        reclaim=body.reclaim,
        reservation_ttl=(
            settings.reservation_ttl if body.reservation_ttl is None else body.reservation_ttl
        ),
        external=body.external,
        subnet6=body.subnet6,
    )
    commit(session, sync, revision, events, by=principal)
    return NetworkPublic.model_validate(record)


@router.get("", responses={200: {"headers": LINK_HEADER}})
def list_networks(
    session: SessionDep,
    sync: SyncDep,
    request: Request,
    response: Response,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[NetworkPublic]:
    """Networks by name; paged (the key is the name). While the database is unavailable,
    from memory (``X-Vxplane-Stale: 1``; ``endpoints`` counts bound endpoints only)."""
    try:
        records = repo.list_networks(session, limit=limit + 1, after=after)
    except Exception as exc:
        view = stale.fallback(exc, sync, response)
        nets = [stale.network_record(n, view) for n in view.networks.values()]
        shown = stale.paged(request, response, nets, lambda r: r.name, limit, after)
    else:
        shown = page(request, response, records, limit, lambda r: r.name)
    return [NetworkPublic.model_validate(record) for record in shown]


@router.get("/{name}")
def get_network(name: str, session: SessionDep, sync: SyncDep, response: Response) -> NetworkPublic:
    """One network (404 if unknown); from memory while the database is unavailable."""
    try:
        record = repo.get_network(session, name)
    except Exception as exc:
        view = stale.fallback(exc, sync, response)
        record = stale.network_record(stale.find_network(view, name), view)
    return NetworkPublic.model_validate(record)


@router.patch("/{name}")
def update_network(
    name: str,
    body: NetworkUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    sync: SyncDep,
    events: EventsDep,
) -> NetworkPublic:
    """Change a network: ``external`` gives its endpoints a way out through their hosts'
    gateways (a conntrack zone is allocated) or seals it again; ``subnet6`` makes it dual
    stack (null: IPv4 only again) (admin only; 404 if unknown)."""
    subnet6 = body.subnet6 if "subnet6" in body.model_fields_set else repo.KEEP
    record, revision = repo.update_network(session, name, external=body.external, subnet6=subnet6)
    commit(session, sync, revision, events, by=principal)
    return NetworkPublic.model_validate(record)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
@allow(Role.agent)
def delete_network(
    name: str, session: SessionDep, sync: SyncDep, events: EventsDep, principal: PrincipalDep
) -> Response:
    """Delete a network and its unbound endpoints (409 while endpoints are bound)."""
    commit(session, sync, repo.delete_network(session, name), events, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
