"""Hosts: register (idempotent PUT), heartbeat, list, show, delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import AfterValidator

from controller.api.deps import SessionDep, SettingsDep, SyncDep
from controller.api.schemas import HostPublic, HostRegister, SwitchPublic, check_name
from controller.api.tx import commit
from controller.config import Settings
from controller.db import repo
from controller.db.base import format_dpid
from controller.db.records import HostRecord
from controller.sync import FlowSync

router = APIRouter(prefix="/api/v1/hosts", tags=["hosts"])

HostName = Annotated[str, Path(description="host name"), AfterValidator(check_name)]


def to_public(record: HostRecord, sync: FlowSync, settings: Settings) -> HostPublic:
    """The API view of a host: alive from its heartbeat, switch from the flow side."""
    now = datetime.now(UTC)
    alive = (
        record.last_seen is not None
        and (now - record.last_seen).total_seconds() <= settings.host_dead_after
    )
    switch = None
    if record.dpid is not None:
        found = next((s for s in sync.switches() if s.dpid == record.dpid), None)
        switch = SwitchPublic.model_validate(found) if found is not None else None
    return HostPublic(
        name=record.name,
        underlay_ip=record.underlay_ip,
        dpid=format_dpid(record.dpid) if record.dpid is not None else None,
        tunnel_port=record.tunnel_port,
        last_seen=record.last_seen,
        alive=alive,
        switch=switch,
    )


@router.put("/{name}")
def register_host(
    name: HostName, body: HostRegister, session: SessionDep, sync: SyncDep, settings: SettingsDep
) -> HostPublic:
    """Register or update a host (409 if another host has its underlay IP or dpid)."""
    dpid = body.dpid if "dpid" in body.model_fields_set else repo.KEEP
    record, revision = repo.register_host(
        session, name, body.underlay_ip, dpid=dpid, tunnel_port=body.tunnel_port
    )
    commit(session, sync, revision)
    return to_public(record, sync, settings)


@router.post("/{name}/heartbeat")
def heartbeat(name: str, session: SessionDep, sync: SyncDep, settings: SettingsDep) -> HostPublic:
    """Record that the host is alive (404 if unknown)."""
    record = repo.heartbeat(session, name)
    session.commit()
    return to_public(record, sync, settings)


@router.get("")
def list_hosts(session: SessionDep, sync: SyncDep, settings: SettingsDep) -> list[HostPublic]:
    """Every host."""
    return [to_public(record, sync, settings) for record in repo.list_hosts(session)]


@router.get("/{name}")
def get_host(name: str, session: SessionDep, sync: SyncDep, settings: SettingsDep) -> HostPublic:
    """One host (404 if unknown)."""
    return to_public(repo.get_host(session, name), sync, settings)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_host(name: str, session: SessionDep, sync: SyncDep) -> Response:
    """Forget a host: its endpoints become reserved, its blocks are released."""
    commit(session, sync, repo.delete_host(session, name))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
