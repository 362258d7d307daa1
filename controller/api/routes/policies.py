"""Network policies (Kubernetes NetworkPolicy semantics, see docs/architecture.md):
``/api/v1/networks/{network}/policies``. Writes are the admin's; any token reads."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from controller.api.auth import PrincipalDep
from controller.api.deps import EventsDep, SessionDep, SyncDep
from controller.api.schemas import PolicyCreate, PolicyPublic
from controller.api.tx import commit
from controller.db import policies

router = APIRouter(prefix="/api/v1/networks/{network}/policies", tags=["policies"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_policy(
    network: str,
    body: PolicyCreate,
    principal: PrincipalDep,
    session: SessionDep,
    sync: SyncDep,
    events: EventsDep,
) -> PolicyPublic:
    """Create a policy (admin only): the endpoints its ``selector`` selects accept (Ingress)
    or send (Egress) only what some rule allows, from the engine's next pass on (existing
    connections that no rule allows any more are cut). 404 if the network is unknown, 409 if
    the name is taken."""
    spec = body.model_dump(mode="json", by_alias=True, exclude={"name"})
    record, revision = policies.create_policy(session, network, body.name, spec)
    commit(session, sync, revision, events, by=principal)
    return PolicyPublic.model_validate(record)


@router.get("")
def list_policies(network: str, session: SessionDep) -> list[PolicyPublic]:
    """The network's policies by name (404 if the network is unknown)."""
    return [PolicyPublic.model_validate(r) for r in policies.list_policies(session, network)]


@router.get("/{name}")
def get_policy(network: str, name: str, session: SessionDep) -> PolicyPublic:
    """One policy (404 if unknown)."""
    return PolicyPublic.model_validate(policies.get_policy(session, network, name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(
    network: str,
    name: str,
    principal: PrincipalDep,
    session: SessionDep,
    sync: SyncDep,
    events: EventsDep,
) -> Response:
    """Delete a policy (admin only; 404 if unknown): what it alone restricted is open again."""
    commit(session, sync, policies.delete_policy(session, network, name), events, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
