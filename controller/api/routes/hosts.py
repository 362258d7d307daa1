"""Hosts: register (idempotent PUT), heartbeat, list, show, delete; status and convergence."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from controller.api import stale
from controller.api.auth import PrincipalDep, allow
from controller.api.deps import EventsDep, SessionDep, SettingsDep, SyncDep
from controller.api.paging import DEFAULT_LIMIT, LINK_HEADER, After, Limit, page
from controller.api.schemas import (
    HostPublic,
    HostRegister,
    HostStatus,
    SwitchMaster,
    SwitchPublic,
)
from controller.api.tx import commit
from controller.auth import Role, require_host
from controller.config import Settings
from controller.db import members, repo
from controller.db.base import format_dpid
from controller.db.records import HostRecord
from controller.errors import NotFound
from controller.hostwatch import is_alive
from controller.model import Host, Snapshot
from controller.sync import FlowSync, SwitchStatus
from vxcommon.names import NAME_PATTERN, check_name

router = APIRouter(prefix="/api/v1/hosts", tags=["hosts"])

HostName = Annotated[
    str,
    Path(description="host name", json_schema_extra={"pattern": NAME_PATTERN}),
    AfterValidator(check_name),
]


def host_status(alive: bool, switch: SwitchStatus | None) -> HostStatus:
    """lost, disconnected, lagging or converged (in that order of precedence); converged:
    the switch confirmed the generation of desired flows the engine wants for it."""
    if not alive:
        return "lost"
    if switch is None or not switch.connected:
        return "disconnected"
    return "converged" if switch.applied_generation >= switch.wanted_generation else "lagging"


def to_public(
    record: HostRecord | Host,
    sync: FlowSync,
    settings: Settings,
    wanted: int,
    endpoints: int,
    switches: Mapping[int, SwitchStatus] | None = None,
    masters: Mapping[int, members.SwitchMaster] | None = None,
    me: str | None = None,
) -> HostPublic:
    """The API view of a host: alive from its heartbeat, switch from the flow side, master
    from the database (``masters``: dpid -> master, None when the database could not be
    read; ``me``: the answering member's id; ``switches``: dpid -> status, read from ``sync``
    when not given)."""
    alive = is_alive(record.last_seen, datetime.now(UTC), settings.host_dead_after)
    found = None
    if record.dpid is not None:
        if switches is None:
            switches = _by_dpid(sync)
        found = switches.get(record.dpid)
    state = host_status(alive, found)
    master = (masters or {}).get(record.dpid) if record.dpid is not None else None
    return HostPublic(
        name=record.name,
        underlay_ip=record.underlay_ip,
        dpid=format_dpid(record.dpid) if record.dpid is not None else None,
        tunnel_port=record.tunnel_port,
        last_seen=record.last_seen,
        alive=alive,
        switch=SwitchPublic.model_validate(found) if found is not None else None,
        wanted_revision=wanted,
        converged=state == "converged",
        status=state,
        endpoints=endpoints,
        egress_ip=record.egress_ip,
        gateway_port=record.gateway_port,
        egress_ip6=record.egress_ip6,
        master=(
            SwitchMaster(
                id=master.controller_id,
                api_url=master.api_url,
                alive=master.alive,
                this=master.controller_id == me,
            )
            if master is not None
            else None
        ),
    )


def _member_id(request: Request) -> str | None:
    return getattr(request.app.state, "member_id", None)


def _one(
    session: Session, record: HostRecord, sync: FlowSync, settings: Settings, request: Request
) -> HostPublic:
    counts = repo.host_endpoint_counts(session, record.name)
    wanted = repo.current_revision(session)
    masters = members.masters_of(session, [record.dpid] if record.dpid is not None else [])
    return to_public(
        record, sync, settings, wanted, counts.get(record.name, 0),
        masters=masters, me=_member_id(request),
    )  # fmt: skip


@router.put("/{name}")
@allow(Role.agent)
def register_host(
    name: HostName,
    body: HostRegister,
    principal: PrincipalDep,
    session: SessionDep,
    sync: SyncDep,
    settings: SettingsDep,
    events: EventsDep,
    request: Request,
) -> HostPublic:
    """Register or update a host (409 if another host has its underlay IP or dpid, or if
    ``cluster_id`` is not this database's cluster). The answer holds the ``cluster_id``."""
    require_host(principal, name, "register")
    dpid = body.dpid if "dpid" in body.model_fields_set else repo.KEEP
    record, revision = repo.register_host(
        session, name, body.underlay_ip, dpid=dpid, tunnel_port=body.tunnel_port,
        cluster_id=body.cluster_id, egress_ip=body.egress_ip, gateway_port=body.gateway_port,
        egress_ip6=body.egress_ip6,
    )  # fmt: skip
    commit(session, sync, revision, events, by=principal)
    public = _one(session, record, sync, settings, request)
    public.cluster_id = repo.cluster_id(session)
    return public


@router.post("/{name}/heartbeat")
@allow(Role.agent)
def heartbeat(
    name: str,
    session: SessionDep,
    sync: SyncDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    request: Request,
) -> HostPublic:
    """Record that the host is alive (404 if unknown)."""
    require_host(principal, name, "heartbeat for")
    record = repo.heartbeat(session, name)
    session.commit()
    return _one(session, record, sync, settings, request)


@router.get("", responses={200: {"headers": LINK_HEADER}})
def list_hosts(
    session: SessionDep,
    sync: SyncDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[HostPublic]:
    """Hosts by name, with their switch's connection, flow count and convergence; paged (the
    key is the name)."""
    try:
        records: list[HostRecord] | list[Host] = page(
            request, response, repo.list_hosts(session, limit + 1, after), limit, lambda r: r.name
        )
        counts = repo.host_endpoint_counts(session)
        wanted = repo.current_revision(session)
        masters: dict[int, members.SwitchMaster] | None = members.masters_of(session)
    except Exception as exc:
        view = stale.fallback(exc, sync, response)
        records = stale.paged(
            request, response, view.hosts.values(), lambda h: h.name, limit, after
        )
        counts, wanted = _bound_counts(view), view.revision
        masters = None  # the database names the masters: unknown while it is unavailable
    switches = _by_dpid(sync)  # one lookup per host, not a scan of every switch per host
    me = _member_id(request)
    return [
        to_public(r, sync, settings, wanted, counts.get(r.name, 0), switches, masters, me)
        for r in records
    ]


def _by_dpid(sync: FlowSync) -> dict[int, SwitchStatus]:
    """dpid -> the first status listed for it (as the scan this replaces found it)."""
    found: dict[int, SwitchStatus] = {}
    for sw in sync.switches():
        found.setdefault(sw.dpid, sw)
    return found


def _bound_counts(view: Snapshot) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ep in view.endpoints:
        if ep.host is not None:
            counts[ep.host] = counts.get(ep.host, 0) + 1
    return counts


@router.get("/{name}")
def get_host(
    name: str,
    session: SessionDep,
    sync: SyncDep,
    settings: SettingsDep,
    response: Response,
    request: Request,
) -> HostPublic:
    """One host (404 if unknown); from memory while the database is unavailable (its
    ``master`` then null: the database names it)."""
    try:
        return _one(session, repo.get_host(session, name), sync, settings, request)
    except Exception as exc:
        view = stale.fallback(exc, sync, response)
        host = view.hosts.get(name)
        if host is None:
            raise NotFound(f"host {name!r} is not registered") from None
        count = _bound_counts(view).get(name, 0)
        return to_public(host, sync, settings, view.revision, count)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_host(
    name: str, session: SessionDep, sync: SyncDep, events: EventsDep, principal: PrincipalDep
) -> Response:
    """Forget a host: its endpoints become reserved, its blocks are released (admin only)."""
    commit(session, sync, repo.delete_host(session, name), events, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
