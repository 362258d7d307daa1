"""The agent's local HTTP API, served over a unix socket (see ``agent_client.py``).

- ``POST /v1/attach`` ``{netns, name, network, ip?, ifname="eth0", ready_timeout?}`` -> the
  controller's Endpoint, once ready.
- ``POST /v1/detach`` ``{name, network}`` -> ``{network, name, detached, unbound}``.
- ``GET /v1/endpoints`` -> endpoints plugged on this host.
- ``GET /v1/healthz`` -> agent status (bridge, registration, last error).
- ``POST /v1/cni/{add,del,check,gc,status}``: the CNI plugin's verbs (``cni_routes.py``).

Errors are ``{"detail": ...}`` with 4xx (bad input, unknown network or namespace, conflict),
503 (controller unreachable), 504 (not ready in time), 500 (local OVS/netlink failure).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, IPvAnyAddress

from hostagent.agent import Agent
from hostagent.errors import AgentError

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
ENDPOINT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,252}$"
IFNAME = r"^[A-Za-z0-9_.-]{1,15}$"

Name = Annotated[str, Field(pattern=NAME)]
EndpointName = Annotated[str, Field(pattern=ENDPOINT_NAME)]


class AttachRequest(BaseModel):
    """Plug a network namespace into a network."""

    netns: Annotated[str, Field(min_length=1, max_length=4096)]
    name: EndpointName
    network: Name
    ip: IPvAnyAddress | None = None
    ifname: Annotated[str, Field(pattern=IFNAME)] = "eth0"
    ready_timeout: Annotated[float, Field(gt=0, le=60)] | None = None


class DetachRequest(BaseModel):
    """Unplug an endpoint."""

    name: EndpointName
    network: Name


def create_app(agent: Agent) -> FastAPI:
    """The agent's FastAPI app, bound to ``agent``."""
    app = FastAPI(title="vxplane host agent", version="1")

    @app.exception_handler(AgentError)
    async def _agent_error(request: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = [
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "; ".join(msgs)})

    @app.post("/v1/attach")
    def attach(req: AttachRequest) -> dict[str, Any]:
        return agent.attach(
            req.netns,
            req.name,
            req.network,
            ip=str(req.ip) if req.ip is not None else None,
            ifname=req.ifname,
            ready_timeout=req.ready_timeout,
        )

    @app.post("/v1/detach")
    def detach(req: DetachRequest) -> dict[str, Any]:
        return agent.detach(req.name, req.network)

    @app.get("/v1/endpoints")
    def endpoints() -> list[dict[str, Any]]:
        return agent.local_endpoints()

    @app.get("/v1/healthz")
    def healthz() -> dict[str, Any]:
        return agent.health()

    from hostagent.cni_routes import cni_router  # imports this module's models

    app.include_router(cni_router(agent))

    return app
