"""Controllers: the members of the cluster, their leases and the switches each masters."""

from __future__ import annotations

from fastapi import APIRouter, Request

from controller.api.deps import SessionDep
from controller.api.schemas import ControllerPublic, MasteredSwitch
from controller.db import members, repo
from controller.db.base import format_dpid

router = APIRouter(prefix="/api/v1/controllers", tags=["controllers"])


@router.get("")
def list_controllers(session: SessionDep, request: Request) -> list[ControllerPublic]:
    """Every controller the database knows, live ones first (a dead one is listed for an
    hour after its lease lapsed), with its lease's age and the switches it masters."""
    me = getattr(request.app.state, "member_id", None)
    hosts = {r.dpid: r.name for r in repo.list_hosts(session) if r.dpid is not None}
    return [
        ControllerPublic(
            id=m.id,
            api_url=m.api_url,
            openflow=m.openflow,
            alive=m.alive,
            lease_age=round(m.lease_age, 3),
            started_at=m.started_at,
            renewed_at=m.renewed_at,
            expires_at=m.expires_at,
            this=m.id == me,
            switches=[MasteredSwitch(dpid=format_dpid(d), host=hosts.get(d)) for d in m.masters],
        )
        for m in members.list_members(session)
    ]
