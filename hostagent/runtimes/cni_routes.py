"""The agent's ``/v1/cni/*`` routes, called by the ``vxplane-cni`` plugin.

- ``POST /v1/cni/add`` ``{netns, name, network, ifname, container_id, config, ip?, ports?}``
  -> ``{endpoint, mtu, port_name}`` once the endpoint is ready and its ``ports``
  (``[{host_port, port, proto}]``, the ``portMappings`` capability) are published.
- ``POST /v1/cni/del`` ``{name, network, ifname, container_id, config, release, netns?,
  ports?}``
- ``POST /v1/cni/check`` ``{netns, name, network, ifname, container_id, config}``
- ``POST /v1/cni/gc`` ``{config, valid: [{container_id, ifname}], release}`` -> ``{removed}``
- ``POST /v1/cni/status`` ``{network}``

Errors are ``{"detail", "cni_code"}``: the CNI code is decided here, once (``cni_code``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, IPvAnyAddress

from hostagent.agent import Agent
from hostagent.api.schemas import EndpointName, IfName, Labels, Name, Text
from hostagent.errors import AgentError, retry_headers
from hostagent.publish import PortMap
from hostagent.runtimes.cni_service import CniService, cni_code


class CniAttachment(BaseModel):
    """Who the attachment is: endpoint, network, and the runtime's own identity of it."""

    name: EndpointName
    network: Name
    ifname: IfName
    container_id: Text
    config: Text
    netns: Text | None = None


class CniPort(BaseModel):
    """One published port: ``host_port``/``proto`` of this host to the endpoint's ``port``."""

    host_port: int = Field(ge=1, le=32767)
    port: int = Field(ge=1, le=65535)
    proto: Literal["tcp", "udp"] = "tcp"


def _maps(ports: list[CniPort]) -> list[PortMap]:
    return sorted({PortMap(p.host_port, p.port, p.proto) for p in ports})


class CniAdd(CniAttachment):
    netns: Text
    ip: IPvAnyAddress | None = None
    labels: Labels | None = None  # args.cni.labels: replace the endpoint's; None: keep
    ports: list[CniPort] = Field(default=[], max_length=256)


class CniDel(CniAttachment):
    release: bool = True
    ports: list[CniPort] = Field(default=[], max_length=256)


class CniCheck(CniAttachment):
    netns: Text


class CniValid(BaseModel):
    container_id: str
    ifname: str = ""


class CniGc(BaseModel):
    config: Text
    valid: list[CniValid]
    release: bool = True


class CniStatus(BaseModel):
    network: Name


def _answer(call: Callable[[], dict[str, Any]]) -> dict[str, Any] | JSONResponse:
    """``call``'s result, or its AgentError as ``{"detail", "cni_code"}`` with its status."""
    try:
        return call()
    except AgentError as exc:
        return JSONResponse(
            status_code=exc.status,
            content={"detail": exc.detail, "cni_code": cni_code(exc)},
            headers=retry_headers(exc),
        )


def cni_router(agent: Agent) -> APIRouter:
    """The CNI routes bound to ``agent``."""
    svc = CniService(agent)
    router = APIRouter(prefix="/v1/cni")

    @router.post("/add", response_model=None)
    def add(req: CniAdd) -> dict[str, Any] | JSONResponse:
        ip = str(req.ip) if req.ip is not None else None
        return _answer(
            lambda: svc.add(
                req.netns, req.name, req.network, req.ifname, req.container_id, req.config,
                ip=ip, labels=req.labels, ports=_maps(req.ports),
            )
        )  # fmt: skip

    @router.post("/del", response_model=None)
    def delete(req: CniDel) -> dict[str, Any] | JSONResponse:
        return _answer(
            lambda: svc.delete(
                req.name,
                req.network,
                req.ifname,
                req.container_id,
                req.config,
                req.release,
                published=_maps(req.ports),
            )
        )

    @router.post("/check", response_model=None)
    def check(req: CniCheck) -> dict[str, Any] | JSONResponse:
        return _answer(
            lambda: svc.check(
                req.netns, req.name, req.network, req.ifname, req.container_id, req.config
            )
        )

    @router.post("/gc", response_model=None)
    def gc(req: CniGc) -> dict[str, Any] | JSONResponse:
        valid = [(v.container_id, v.ifname) for v in req.valid]
        return _answer(lambda: svc.gc(req.config, valid, req.release))

    @router.post("/status", response_model=None)
    def status(req: CniStatus) -> dict[str, Any] | JSONResponse:
        return _answer(lambda: svc.status(req.network))

    return router
