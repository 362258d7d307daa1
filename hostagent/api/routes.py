"""The agent's own routes: attach, detach, the endpoints plugged here, health.

- ``POST /v1/attach`` ``{netns, name, network, ip?, ifname="eth0", labels?, ready_timeout?}``
  -> the controller's Endpoint, once ready.
- ``POST /v1/detach`` ``{name, network}`` -> ``{network, name, detached, unbound}``.
- ``GET /v1/endpoints`` -> endpoints plugged on this host.
- ``GET /v1/healthz`` -> agent status (bridge, registration, last error).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hostagent.agent import Agent
from hostagent.api.schemas import AttachRequest, DetachRequest
from hostagent.plug import PlugRequest
from vxcommon.tpoints import mark


def agent_router(agent: Agent) -> APIRouter:
    """The routes bound to ``agent``."""
    router = APIRouter(prefix="/v1")

    @router.post("/attach", response_class=JSONResponse)
    def attach(req: AttachRequest) -> JSONResponse:
        mark("a_route", req.name)
        plug = PlugRequest(
            network=req.network,
            name=req.name,
            netns=req.netns,
            ifname=req.ifname,
            ip=str(req.ip) if req.ip is not None else None,
            labels=req.labels or None,  # none given: the endpoint keeps its labels
            ready_timeout=req.ready_timeout,
        )
        # A JSONResponse skips FastAPI's re-validation of a plain dict (on every attach).
        ans = JSONResponse(agent.attach(plug).to_api())
        mark("a_answer", req.name)
        return ans

    @router.post("/detach")
    def detach(req: DetachRequest) -> dict[str, Any]:
        return agent.detach(req.network, req.name)

    @router.get("/endpoints")
    def endpoints() -> list[dict[str, Any]]:
        return agent.local_endpoints()

    @router.get("/healthz")
    def healthz() -> dict[str, Any]:
        return agent.health()

    return router
