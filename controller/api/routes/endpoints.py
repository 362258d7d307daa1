"""Endpoints: create (allocate), show, bind (or create and bind), unbind, delete, list,
history; wait for ready.

The routes that may wait for readiness (``wait_ready``) are ``async``: they do their database
work in a worker thread, then await the flow engine's future in the event loop, so a waiting
request holds no thread and many waits cannot starve the other requests.

Endpoint names may contain '/', so the name is a ``path`` parameter; the ``/binding`` and
``/history`` routes are registered first so they win over a name ending in them (such names
are refused).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from controller.api import stale
from controller.api.auth import PrincipalDep, allow
from controller.api.deps import SessionDep, SettingsDep, SyncDep, WriterDep
from controller.api.paging import DEFAULT_LIMIT, LINK_HEADER, After, Limit, page
from controller.api.schemas import (
    BindingUpdate,
    EndpointConflict,
    EndpointCreate,
    EndpointPatch,
    EndpointPublic,
    MovePublic,
)
from controller.api.writer import Writer
from controller.auth import Principal, Role, require_endpoint_scope, require_host
from controller.config import Settings
from controller.db import bindings, repo
from controller.db.base import begin_write
from controller.db.records import EndpointRecord
from controller.errors import InvalidRequest, NotFound
from controller.hostwatch import is_alive
from controller.model import EndpointState
from controller.sync import FlowSync
from vxcommon.tpoints import mark

router = APIRouter(prefix="/api/v1", tags=["endpoints"])

WaitReady = Annotated[
    float | None,
    Query(ge=0, description="seconds to wait for the endpoint to be ready (capped by settings)"),
]
ITEM = "/networks/{network}/endpoints/{name:path}"
NDJSON = "application/x-ndjson"


async def await_ready(
    request: Request,
    background: BackgroundTasks,
    sync: FlowSync,
    settings: Settings,
    record: EndpointRecord,
    seconds: float | None,
) -> EndpointRecord:
    """Wait up to ``seconds`` for a pending endpoint's flows; once they are applied, answer
    with the endpoint ready and record that in the database right after the answer is sent
    (a write transaction less on the path of every attach: ~1.4 ms measured; a reader that
    comes in between finds it pending, and with ``wait_ready`` gets it ready at once)."""
    if seconds is None or record.state is not EndpointState.PENDING:
        return record
    hosts = [record.host] if record.host else []
    if not await sync.until_applied(record.revision, min(seconds, settings.ready_timeout), hosts):
        return record
    background.add_task(_mark_ready, request.app.state.writer, record.revision)
    return dataclasses.replace(record, state=EndpointState.READY, ready_at=datetime.now(UTC))


def public(record: EndpointRecord, sync: FlowSync) -> EndpointPublic:
    """The API view of an endpoint; a pending one says which hosts' switches it waits on."""
    shown = EndpointPublic.model_validate(record)
    if record.state is EndpointState.PENDING:
        shown.waiting_on = sync.waiting_on(record.revision)
    return shown


def check_scope(
    session: Session, settings: Settings, principal: Principal, network: str, name: str, what: str
) -> None:
    """An agent may touch only endpoints bound to its host, to none, or to a lost host.

    Takes the write lock first (SQLite), so the endpoint read here is still what the write
    that follows changes."""
    if principal.role is not Role.agent:
        return
    begin_write(session)
    try:
        record = repo.get_endpoint(session, network, name)
    except NotFound:
        return
    alive = True
    if record.host is not None and record.host != principal.host:
        host = repo.get_host(session, record.host)
        alive = is_alive(host.last_seen, datetime.now(UTC), settings.host_dead_after)
    require_endpoint_scope(principal, record.host, alive, what)


def scope_of(settings: Settings, principal: Principal) -> bindings.Scope | None:
    """``check_scope`` for ``controller.db.bindings.write``, on the rows that write reads
    (no read of its own): an agent may bind an endpoint bound to its host, to none, or to a
    lost host; an unbind "only if bound to my host" (``host`` its own) is in any scope."""
    if principal.role is not Role.agent:
        return None
    now = datetime.now(UTC)

    def scope(item: bindings.Binding, bound_host: str, last_seen: datetime | None) -> None:
        if bound_host == principal.host or (item.unbind and item.host == principal.host):
            return
        alive = is_alive(last_seen, now, settings.host_dead_after)
        require_endpoint_scope(principal, bound_host, alive, "unbind" if item.unbind else "bind")

    return scope


def write_one(
    session: Session, item: bindings.Binding, scope: bindings.Scope | None
) -> tuple[tuple[EndpointRecord, bool], int | None]:
    """``controller.db.bindings.write`` of one item, for the writer: its error raised (the
    writer rolls the write back)."""
    done = bindings.write(session, [item], scope=scope)[0]
    if done.error is not None:
        raise done.error
    assert done.record is not None
    return (done.record, done.created), done.revision


async def _mark_ready(writer: Writer, revision: int) -> None:
    """Queue the ready mark (of the endpoints bound at ``revision``: every switch they need
    confirmed it) with the other writes; dropped when the queue is full (the engine marks
    them on its next housekeeping, and a reader with ``wait_ready`` gets them ready)."""

    def write(session: Session) -> tuple[None, None]:
        repo.mark_ready_at(session, [revision])
        return None, None

    writer.submit_threadsafe(write)


@router.post(
    "/networks/{network}/endpoints",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": EndpointPublic, "description": "found again (the name exists)"}},
)
@allow(Role.agent)
async def create_endpoint(
    network: str,
    body: EndpointCreate,
    response: Response,
    writer: WriterDep,
    principal: PrincipalDep,
) -> EndpointPublic:
    """Allocate (201) or find again (200) the endpoint; 409 on address conflicts or exhaustion."""
    if body.host is not None:
        require_host(principal, body.host, "create endpoints on")

    def write(session: Session) -> tuple[tuple[EndpointRecord, bool], int | None]:
        record, created, revision = repo.create_endpoint(
            session, network, body.name, ip=body.ip, host=body.host, labels=body.labels
        )
        return (record, created), revision

    record, created = await writer.run(write, principal)
    if not created:
        response.status_code = status.HTTP_200_OK
    return EndpointPublic.model_validate(record)  # reserved: waits on nothing


@router.put(
    ITEM + "/binding",
    response_model=EndpointPublic,
    responses={
        201: {"model": EndpointPublic, "description": "created (create=true) and bound"},
        409: {"model": EndpointConflict, "description": "address conflict or stale if_revision"},
    },
)
@allow(Role.agent)
async def bind_endpoint(
    network: str,
    name: str,
    body: BindingUpdate,
    principal: PrincipalDep,
    response: Response,
    writer: WriterDep,
    sync: SyncDep,
    settings: SettingsDep,
    request: Request,
    background: BackgroundTasks,
    wait_ready: WaitReady = None,
    create: Annotated[bool, Query(description="create the endpoint if the name is new")] = False,
    stream: Annotated[
        bool,
        Query(
            description="with wait_ready: answer two NDJSON lines, the endpoint as bound "
            "(its address, at once) and then as it is after the wait"
        ),
    ] = False,
) -> EndpointPublic | StreamingResponse:
    """Bind (or move) the endpoint to a host's OpenFlow port; pending until flows are applied.

    With ``create=true`` an unknown name is created and bound in the same transaction (201).
    With ``stream=true`` and ``wait_ready`` the answer is ``application/x-ndjson``: the
    endpoint as bound, sent as soon as the write committed (so the agent configures the
    container's interface while the switches install the flows), then the endpoint after the
    wait (``ready``, or ``pending`` if it timed out); errors are answered as without it.
    """
    started = time.perf_counter()
    mark("c_route", name)
    require_host(principal, body.host, "bind endpoints to")

    item = bindings.Binding(
        network, name, body.host, body.ofport, port_name=body.port_name, ip=body.ip,
        labels=body.labels, if_revision=body.if_revision, move=body.move, create=create,
    )  # fmt: skip
    scope = scope_of(settings, principal)

    def attach(session: Session) -> tuple[tuple[EndpointRecord, bool], int | None]:
        mark("c_write", name)
        return write_one(session, item, scope)

    record, created = await writer.run(attach, principal)
    mark("c_commit", name)
    if created:
        response.status_code = status.HTTP_201_CREATED

    async def waited() -> EndpointPublic:
        shown = await await_ready(request, background, sync, settings, record, wait_ready)
        mark("c_ready", name)
        if wait_ready is not None:
            request.app.state.metrics.observe_attach(
                started, record.state is EndpointState.PENDING, shown.state is EndpointState.READY
            )
        return public(shown, sync)

    if not (stream and wait_ready is not None):
        return await waited()

    async def lines() -> AsyncIterator[bytes]:
        mark("c_line1", name)
        yield public(record, sync).model_dump_json().encode() + b"\n"
        if record.state is EndpointState.PENDING:
            yield (await waited()).model_dump_json().encode() + b"\n"

    # FastAPI runs ``background`` (the ready mark) after the last line was sent.
    return StreamingResponse(
        lines(), status_code=response.status_code or status.HTTP_200_OK,
        media_type=NDJSON, background=background,
    )  # fmt: skip


@router.delete(ITEM + "/binding")
@allow(Role.agent)
async def unbind_endpoint(
    network: str,
    name: str,
    writer: WriterDep,
    sync: SyncDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    host: Annotated[str | None, Query(description="unbind only if bound to this host")] = None,
) -> EndpointPublic:
    """Unbind (state reserved, address kept); a no-op if bound elsewhere or not at all."""

    item = bindings.Binding(network, name, host)
    scope = scope_of(settings, principal)  # "only if bound here" (host its own): any scope
    record, _ = await writer.run(lambda s: write_one(s, item, scope), principal)
    return public(record, sync)


@router.get(ITEM + "/history", responses={200: {"headers": LINK_HEADER}})
def endpoint_history(
    network: str,
    name: str,
    session: SessionDep,
    request: Request,
    response: Response,
    limit: Limit = DEFAULT_LIMIT,
    after: Annotated[
        int | None, Query(ge=1, description="the id of the last step of the previous page")
    ] = None,
) -> list[MovePublic]:
    """Where the endpoint has been: its binds, moves between hosts and unbinds, newest first.

    The history lives as long as the endpoint; the newest 100 steps per endpoint are kept.
    """
    records = repo.endpoint_history(session, network, name, limit=limit + 1, after=after)
    shown = page(request, response, records, limit, lambda r: str(r.id))
    return [MovePublic.model_validate(record) for record in shown]


@router.get(ITEM)
async def get_endpoint(
    network: str,
    name: str,
    session: SessionDep,
    sync: SyncDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    wait_ready: WaitReady = None,
) -> EndpointPublic:
    """One endpoint; with ``wait_ready`` waits up to that many seconds for it to be ready.
    While the database is unavailable, a bound endpoint from memory (``X-Vxplane-Stale:
    1``, no wait); a reserved one answers 503."""

    def read() -> EndpointRecord:
        record = repo.get_endpoint(session, network, name)
        session.commit()
        return record

    try:
        record = await run_in_threadpool(read)
    except Exception as exc:
        view = stale.fallback(exc, sync, response)
        record = stale.endpoint_record(stale.find_endpoint(view, network, name), view, sync)
        return public(record, sync)  # no wait: its ready mark could not be written
    return public(await await_ready(request, background, sync, settings, record, wait_ready), sync)


@router.patch(ITEM)
async def update_endpoint(
    network: str,
    name: str,
    body: EndpointPatch,
    writer: WriterDep,
    principal: PrincipalDep,
) -> EndpointPublic:
    """Change an endpoint's labels (replaced as a whole; admin only, 404 if unknown). Policies
    select by labels: the flows of the endpoint's network follow in the engine's next pass."""

    def write(session: Session) -> tuple[EndpointRecord, int | None]:
        return repo.set_endpoint_labels(session, network, name, body.labels)

    return EndpointPublic.model_validate(await writer.run(write, principal))


@router.delete(
    ITEM,
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"model": EndpointConflict, "description": "a condition failed"}},
)
@allow(Role.agent)
async def delete_endpoint(
    network: str,
    name: str,
    writer: WriterDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    if_unbound: Annotated[
        bool, Query(description="delete only if bound to no host (else 409, nothing changes)")
    ] = False,
    if_revision: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="delete only at this revision")
    ] = None,
) -> Response:
    """Forget the endpoint and free its address; the conditions are checked in the deleting
    transaction (409 with the endpoint as it is when one fails)."""

    def write(session: Session) -> tuple[None, int | None]:
        if not if_unbound:  # with it only an endpoint bound to no host goes: any agent's scope
            check_scope(session, settings, principal, network, name, "delete")
        revision = repo.delete_endpoint(
            session, network, name, if_unbound=if_unbound, if_revision=if_revision
        )
        return None, revision

    await writer.run(write, principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/endpoints", responses={200: {"headers": LINK_HEADER}})
def list_endpoints(
    session: SessionDep,
    sync: SyncDep,
    request: Request,
    response: Response,
    network: str | None = None,
    host: str | None = None,
    state: EndpointState | None = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[EndpointPublic]:
    """Endpoints, filtered by network, host and state, by network then name; paged (the key
    is ``network/name``)."""
    key = None
    if after is not None:
        net, sep, ep = after.partition("/")
        if not sep:
            raise InvalidRequest(
                f"query parameter after: {after[:80]!r} is not an endpoint key: write it as "
                "network/name (the Link header of the previous page has it)"
            )
        key = (net, ep)
    try:
        records = repo.list_endpoints(
            session, network=network, host=host, state=state, limit=limit + 1, after=key
        )
    except Exception as exc:
        view = stale.fallback(exc, sync, response)
        if network is not None:
            stale.find_network(view, network)
        found = (
            stale.endpoint_record(ep, view, sync)
            for ep in view.endpoints
            if (network is None or ep.network == network) and (host is None or ep.host == host)
        )
        wanted = (r for r in found if state is None or r.state is state)
        records = stale.paged(
            request, response, wanted, lambda r: f"{r.network}/{r.name}", limit, key,
            order=lambda r: (r.network, r.name),
        )  # fmt: skip
        return [public(record, sync) for record in records]
    shown = page(request, response, records, limit, lambda r: f"{r.network}/{r.name}")
    return [public(record, sync) for record in shown]
