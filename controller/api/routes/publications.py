"""Publications: a host port forwarded to an endpoint of an external network (inbound).

``POST /api/v1/networks/{network}/publications`` names the endpoint in the body, not in the
path: endpoint names may contain '/'. A publication follows its endpoint: its flows live on
whichever host the endpoint is bound to, reached at that host's egress address.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status

from controller.api.auth import PrincipalDep
from controller.api.deps import EventsDep, SessionDep, SyncDep
from controller.api.schemas import PublicationCreate, PublicationPublic
from controller.api.tx import commit
from controller.db import repo

router = APIRouter(prefix="/api/v1/networks/{network}/publications", tags=["publications"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_publication(
    network: str,
    body: PublicationCreate,
    principal: PrincipalDep,
    session: SessionDep,
    sync: SyncDep,
    events: EventsDep,
) -> PublicationPublic:
    """Publish ``host_port`` (1..32767; 32768 and up are the gateway's source ports) of the
    endpoint's host to the endpoint's ``port`` (admin only). 404 if the network or endpoint
    is unknown, 409 if the network is not external or the host port is taken (host ports
    are unique across the cluster, so a publication can always follow its endpoint)."""
    record, revision = repo.create_publication(
        session, network, body.endpoint, body.host_port, body.port, body.proto
    )
    commit(session, sync, revision, events, by=principal)
    return PublicationPublic.model_validate(record)


@router.get("")
def list_publications(network: str, session: SessionDep) -> list[PublicationPublic]:
    """The network's publications by host port, each with where it is reachable now (the
    endpoint's host and its egress address; null while unbound)."""
    return [PublicationPublic.model_validate(r) for r in repo.list_publications(session, network)]


@router.delete("/{proto}/{host_port}", status_code=status.HTTP_204_NO_CONTENT)
def delete_publication(
    network: str,
    proto: Literal["tcp", "udp"],
    host_port: int,
    principal: PrincipalDep,
    session: SessionDep,
    sync: SyncDep,
    events: EventsDep,
) -> Response:
    """Stop publishing ``host_port``/``proto`` (admin only; 404 if not published)."""
    revision = repo.delete_publication(session, network, proto, host_port)
    commit(session, sync, revision, events, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
