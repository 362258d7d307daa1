"""Publications: a host port forwarded to an endpoint of an external network (inbound).

``POST /api/v1/networks/{network}/publications`` names the endpoint in the body, not in the
path: endpoint names may contain '/'. A publication follows its endpoint: its flows live on
whichever host the endpoint is bound to, reached at that host's egress address.

Admins publish anything; an agent publishes and unpublishes for the endpoints in its scope,
as for the endpoint routes (bound to its host, to none, or to a lost host): that is how
Docker's ``-p`` and the CNI ``portMappings`` capability reach the API. Whether a network is
external at all stays the admin's decision.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from controller.api.auth import PrincipalDep, allow
from controller.api.deps import EventsDep, SessionDep, SettingsDep, SyncDep
from controller.api.routes.endpoints import check_scope
from controller.api.schemas import PublicationCreate, PublicationPublic
from controller.api.tx import commit
from controller.auth import Role
from controller.db import repo
from controller.db.base import begin_write

router = APIRouter(prefix="/api/v1/networks/{network}/publications", tags=["publications"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PublicationPublic, "description": "found again (the same one)"}},
)
@allow(Role.agent)
def create_publication(
    network: str,
    body: PublicationCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    sync: SyncDep,
    events: EventsDep,
    response: Response,
) -> PublicationPublic:
    """Publish ``host_port`` (1..32767; 32768 and up are the gateway's source ports) of the
    endpoint's host to the endpoint's ``port``. 404 if the network or endpoint is unknown,
    409 if the network is not external or the host port is taken (host ports are unique
    across the cluster, so a publication can always follow its endpoint); the same
    publication again is 200. An agent token: only for an endpoint in its scope (403)."""
    check_scope(session, settings, principal, network, body.endpoint, "publish ports of")
    record, revision = repo.create_publication(
        session, network, body.endpoint, body.host_port, body.port, body.proto
    )
    commit(session, sync, revision, events, by=principal)
    if revision is None:
        response.status_code = status.HTTP_200_OK
    return PublicationPublic.model_validate(record)


@router.get("")
def list_publications(network: str, session: SessionDep) -> list[PublicationPublic]:
    """The network's publications by host port, each with where it is reachable now (the
    endpoint's host and its egress address; null while unbound)."""
    return [PublicationPublic.model_validate(r) for r in repo.list_publications(session, network)]


@router.delete("/{proto}/{host_port}", status_code=status.HTTP_204_NO_CONTENT)
@allow(Role.agent)
def delete_publication(
    network: str,
    proto: Literal["tcp", "udp"],
    host_port: int,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    sync: SyncDep,
    events: EventsDep,
    endpoint: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="only if published for this endpoint (else 409, nothing changes)",
        ),
    ] = None,
) -> Response:
    """Stop publishing ``host_port``/``proto`` (404 if not published). An agent token: only
    for an endpoint in its scope (403)."""
    if principal.role is Role.agent:
        begin_write(session)  # what is read here is what the delete below removes
        held_by = repo.publication_endpoint(session, network, proto, host_port)
        if endpoint is None or endpoint == held_by:  # else a 409 below, nothing changes
            check_scope(session, settings, principal, network, held_by, "unpublish ports of")
    revision = repo.delete_publication(session, network, proto, host_port, endpoint=endpoint)
    commit(session, sync, revision, events, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
