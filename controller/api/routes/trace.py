"""GET /api/v1/networks/{network}/trace: "why can't A reach B", answered by the model.

One packet from endpoint SRC to DST (names or addresses) runs through the controller's model
of every host's switch (``controller.trace``): table by table, host by host, the verdict and
the flow that decided. A read: any token may ask.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from controller import trace
from controller.api.deps import SessionDep, SettingsDep
from controller.api.routes.tasks import board
from controller.db import repo
from controller.tasks import BoardFull

router = APIRouter(prefix="/api/v1/networks", tags=["trace"])


class TraceStep(BaseModel):
    """One table visit on one host; ``cookie`` null: no flow matched (a table miss)."""

    host: str
    table: int
    table_name: str
    cookie: str | None = Field(description="the matching flow's cookie, 16 hex digits")
    priority: int | None
    match: str
    actions: str


class TraceHop(BaseModel):
    """The packet crossed the VXLAN overlay."""

    from_host: str
    to_host: str
    vni: int


class TraceSide(BaseModel):
    """What one side (the model, or the real switches) says happens."""

    verdict: Literal["delivered", "dropped"]
    reason: str
    steps: list[TraceStep]
    hops: list[TraceHop]


class SwitchTracePublic(BaseModel):
    """What one host's real switch did (``ovs-appctl ofproto/trace``), and whether it is what
    the model says."""

    host: str
    answered: bool
    agrees: bool
    steps: list[TraceStep] = Field(description="table visits (match and actions not parsed)")
    outputs: list[int]
    datapath_actions: str
    error: str | None


class TracePublic(BaseModel):
    """The answer: the verdict, and the model's path to it."""

    network: str
    src: str = Field(description="the source endpoint's name")
    src_ip: str = Field(
        description="the packet's source address (the endpoint's own unless "
        "the question gave src_ip)"
    )
    dst: str | None = Field(description="the destination endpoint's name (null: an address)")
    dst_ip: str
    protocol: Literal["tcp", "udp", "icmp"]
    port: int | None
    verdict: Literal["delivered", "dropped"]
    reason: str
    decided_by: TraceStep | None = Field(description="the flow (or table miss) that decided")
    policy: list[str] = Field(
        default_factory=list,
        description="what each policy stage on the path decided, in order: the rule that "
        "allowed the packet (`policy P ingress rule 1`), or the policies that isolate the "
        "endpoint when none allowed it",
    )
    model: TraceSide
    switches: list[SwitchTracePublic] | None = Field(
        description="each host on the model's path, asked to trace the packet as it enters "
        "there (null: not asked)"
    )
    agree: bool | None = Field(
        description="every host answered and did what the model says (null: not asked); "
        "false means a bug, a lagging or a tampered switch"
    )


def _step(step: trace.Step) -> TraceStep:
    return TraceStep(
        host=step.host,
        table=step.table,
        table_name=step.table_name,
        cookie=None if step.cookie is None else f"{step.cookie:016x}",
        priority=step.priority,
        match=step.match,
        actions=step.actions,
    )


def _switch(s: trace.SwitchTrace) -> SwitchTracePublic:
    return SwitchTracePublic(
        host=s.host,
        answered=s.answered,
        agrees=s.agrees,
        steps=[_step(trace.Step(s.host, table, cookie)) for table, cookie in s.steps],
        outputs=list(s.outputs),
        datapath_actions=s.datapath_actions,
        error=s.error,
    )


async def ask_switches(
    request: Request, got: trace.ModelTrace, timeout: float
) -> list[trace.SwitchTrace]:
    """Ask every host the packet enters to trace it on its switch; compare with the model."""
    tasks = board(request)

    async def one(entry: trace.Entry) -> trace.SwitchTrace:
        args = {"bridge": "br-int", "flow": trace.ovs_flow(entry)}
        try:
            answer = await tasks.ask(entry.host, "ofproto/trace", args, timeout)
        except BoardFull as exc:
            return trace.SwitchTrace(entry.host, False, error=str(exc))
        return trace.compare(got, entry.host, answer)

    return list(await asyncio.gather(*(one(e) for e in got.entries)))


@router.get("/{network}/trace")
async def trace_packet(
    network: str,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    src: Annotated[str, Query(max_length=255, description="source endpoint: name, IPv4 or ip6")],
    dst: Annotated[str, Query(max_length=255, description="destination: endpoint or address")],
    protocol: Annotated[Literal["tcp", "udp", "icmp"], Query()] = "icmp",
    port: Annotated[int | None, Query(ge=1, le=65535, description="tcp/udp port")] = None,
    switches: Annotated[
        bool, Query(description="also ask the real switches on the path (ofproto/trace)")
    ] = True,
    src_ip: Annotated[
        str | None,
        Query(
            max_length=45,
            description="send from SRC's port with this source address instead of its own "
            "(ask what port security does)",
        ),
    ] = None,
) -> TracePublic:
    """Run one packet from SRC to DST through the model of the switches and, unless
    ``switches=false``, through the real switches of the hosts on its path, each asked over
    its agent's connection (404: unknown network or endpoint; 409: the source is bound to no
    host; 422: a port for ICMP, none for TCP, a src_ip not of the traced family)."""

    def model() -> tuple[trace.Probe, trace.ModelTrace]:
        snap = repo.load_snapshot(session)
        session.commit()
        probe = trace.resolve(snap, network, src, dst, protocol, port, src_ip)
        return probe, trace.trace_model(snap, probe)

    probe, got = await run_in_threadpool(model)
    real = await ask_switches(request, got, settings.trace_timeout) if switches else None
    return TracePublic(
        network=network,
        src=probe.src.name,
        src_ip=str(probe.packet.get("ipv6_src") or probe.packet["ipv4_src"]),
        dst=probe.dst.name if probe.dst is not None else None,
        dst_ip=str(probe.dst_ip),
        protocol=protocol,
        port=port,
        verdict=got.verdict,
        reason=got.reason,
        decided_by=_step(got.decided_by) if got.decided_by is not None else None,
        policy=list(got.policy),
        model=TraceSide(
            verdict=got.verdict,
            reason=got.reason,
            steps=[_step(s) for s in got.steps],
            hops=[TraceHop(from_host=a, to_host=b, vni=v) for a, b, v in got.hops],
        ),
        switches=[_switch(s) for s in real] if real is not None else None,
        agree=all(s.agrees for s in real) if real is not None else None,
    )
