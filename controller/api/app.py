"""Build the FastAPI application: routers, domain errors mapped once to HTTP codes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from controller.api import stale
from controller.api.auth import Authenticator, HostHeaderMiddleware, gate
from controller.api.limits import BodyLimit
from controller.api.routes import (
    bindings,
    controllers,
    endpoints,
    health,
    hosts,
    metrics,
    networks,
    policies,
    publications,
    session,
    tasks,
    tokens,
    trace,
    web,
)
from controller.api.routes import events as event_routes
from controller.api.schemas import EndpointConflict, Problem
from controller.api.status import status_of
from controller.api.writer import Writer
from controller.config import Settings, get_settings
from controller.db import events as db_events
from controller.db import repo
from controller.db.session import make_engine, make_session_factory
from controller.errors import Busy, VxplaneError
from controller.events import EventHub
from controller.hostwatch import HostWatch
from controller.membership import Membership
from controller.metrics import ApiLatency, ControllerMetrics
from controller.sync import FlowSync, NullSync
from controller.tasks import TaskBoard

log = logging.getLogger(__name__)

# Every error answer is ``{"detail": "<one sentence>"}`` (``Problem``), 422 included: FastAPI's
# own HTTPValidationError (a list of objects) is never sent, so the schema says what is.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text}
    for status, text in (
        (400, "the request body is not JSON in UTF-8"),
        (401, "no valid bearer token"),
        (403, "the token's role may not do this"),
        (404, "no such network, host or endpoint"),
        (409, "conflicts with existing state (taken, still bound, subnet full, ...)"),
        (413, "request body over `max_body_bytes` (1 MiB)"),
        (422, "malformed input: each bad field as `where: what`, joined by '; '"),
        (503, "the database is busy or unavailable, or a limit is reached: retry (after the "
         "`Retry-After` header's seconds when there is one)"),
    )
}  # fmt: skip


def create_app(
    settings: Settings | None = None,
    sync: FlowSync | None = None,
    session_factory: sessionmaker[Session] | None = None,
    events: EventHub | None = None,
    membership: Membership | None = None,
) -> FastAPI:
    """The API app and dashboard; without a session factory it opens ``settings.db_url`` (not
    migrated here). ``events`` is the hub the flow engine also publishes to; ``membership``
    is this controller's (``/api/v1/controllers`` marks it as ``this``)."""
    settings = settings or get_settings()
    hub = events if events is not None else EventHub(settings.events_capacity)
    engine: Engine | None = None
    if session_factory is None:
        engine = make_engine(settings.db_url)
        session_factory = make_session_factory(engine)
    sync = sync if sync is not None else NullSync()
    measured = ControllerMetrics(sync, session_factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        assert session_factory is not None
        bind = session_factory.kw.get("bind")  # its driver errors: vxplane_database_errors
        unwatch = measured.watch_database(bind) if bind is not None else None
        writer.attach(asyncio.get_running_loop())
        task = asyncio.create_task(_housekeeping(settings, session_factory, hub))
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await writer.close()
            if unwatch is not None:
                unwatch()
            if engine is not None:
                engine.dispose()

    app = FastAPI(
        title="vxplane",
        version="1",
        summary="Container networks over Open vSwitch and VXLAN",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.sync = sync
    app.state.metrics = measured
    app.state.tasks = TaskBoard()
    app.state.session_factory = session_factory
    app.state.events = hub
    batch_max, workers = settings.write_path(_dialect(session_factory))
    writer = Writer(
        session_factory,
        app.state.sync,
        hub,
        batch_max=batch_max,
        queue_max=settings.write_queue_max,
        workers=workers,
    )
    app.state.writer = writer
    app.state.member_id = membership.id if membership is not None else None
    app.state.auth = Authenticator(session_factory)
    app.include_router(health.router)
    app.include_router(session.router)
    for module in (
        networks,
        publications,
        policies,
        hosts,
        endpoints,
        bindings,
        event_routes,
        tokens,
        metrics,
        controllers,
        trace,
        tasks,
    ):
        app.include_router(module.router, dependencies=[Depends(gate)])
    web.mount(app)
    app.add_middleware(HostHeaderMiddleware, allowed=settings.allowed_hosts_or_default())
    _add_error_handlers(app)
    _document_bearer(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiLatency, metrics=measured)
    return app


DB_RETRY_AFTER = 1  # s a client is told to wait after "database busy or unavailable" (503)
PRUNE_EVERY = 300.0  # seconds between endpoint-history prunes


async def _housekeeping(
    settings: Settings, session_factory: sessionmaker[Session], hub: EventHub
) -> None:
    """Publish host.lost / host.alive as heartbeats go stale or come back; prune history."""
    watch = HostWatch()
    loop = asyncio.get_running_loop()
    pruned_at = loop.time()

    def read_hosts() -> list[Any]:
        with session_factory() as session:
            return repo.host_heartbeats(session)

    def prune() -> None:
        with session_factory() as session:
            repo.prune_history(session)
            if hub.durable:
                db_events.prune(session)
            session.commit()

    while True:
        try:
            hosts_now = await asyncio.to_thread(read_hosts)
            hub.publish_all(watch.check(hosts_now, datetime.now(UTC), settings.host_dead_after))
            if loop.time() - pruned_at > PRUNE_EVERY:
                pruned_at = loop.time()
                await asyncio.to_thread(prune)
        except Exception as exc:  # the database may be busy: try again next round
            log.warning("host watch: %s", exc)
        await asyncio.sleep(settings.host_watch_interval)


OPEN_OPERATIONS = {("/healthz", "get"), ("/api/v1/session", "post"), ("/api/v1/session", "delete")}


def _dialect(factory: sessionmaker[Session]) -> str:
    bind = factory.kw.get("bind")
    return str(bind.dialect.name) if bind is not None else "sqlite"


def _document_bearer(app: FastAPI) -> None:
    """State in the OpenAPI schema that every operation but the open ones needs a bearer
    token (``/docs`` then has its Authorize button)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token, vxp_<id>_<secret> (`vxplane token create`)",
                }
            }
            schema["security"] = [{"bearer": []}]
            for path, item in schema["paths"].items():
                for method, operation in item.items():
                    if (path, method) in OPEN_OPERATIONS:
                        operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VxplaneError)
    async def domain_error(_: Request, exc: VxplaneError) -> JSONResponse:
        status = status_of(exc)
        headers: dict[str, str] | None = None
        if isinstance(exc, Busy):
            headers = {"Retry-After": str(exc.retry_after)}
        elif status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)

    @app.exception_handler(repo.RevisionMismatch)
    async def revision_mismatch(request: Request, exc: repo.RevisionMismatch) -> JSONResponse:
        shown = None
        if exc.endpoint is not None:
            shown = endpoints.public(exc.endpoint, request.app.state.sync)
        body = EndpointConflict(detail=exc.message, endpoint=shown)
        return JSONResponse(body.model_dump(mode="json"), status_code=409)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        detail = exc.detail
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the request body is not JSON in UTF-8 (send Content-Type: application/json)"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(_describe(error) for error in exc.errors())
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(IntegrityError)
    async def integrity_error(_: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error: %s", exc.orig)
        return JSONResponse(
            {"detail": "the request conflicts with a concurrent change; retry it"},
            status_code=409,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def operational_error(_: Request, exc: DBAPIError) -> JSONResponse:
        # SQLite's "database is locked" (busy past its timeout) lands here too: nothing of
        # the request was written, and the client should come back in a moment.
        if not stale.unreachable(exc):
            log.warning("database busy: %s", exc.orig)
            return JSONResponse(
                {"detail": "the database is busy; nothing was written: retry shortly"},
                status_code=503,
                headers={"Retry-After": str(DB_RETRY_AFTER)},
            )
        log.error("database unavailable: %s", str(exc.orig).strip().splitlines()[0][:200])
        return JSONResponse(
            {
                "detail": "the database is unavailable: nothing was written; retry after "
                f"{stale.OUTAGE_RETRY_AFTER} s (reads of networks, hosts and bound endpoints "
                f"are answered from this controller's memory meanwhile, marked "
                f"{stale.STALE_HEADER}: 1)"
            },
            status_code=503,
            headers={"Retry-After": str(stale.OUTAGE_RETRY_AFTER)},
        )


def _describe(error: dict[str, Any]) -> str:
    """One validation error as ``where: what`` ("subnet: '10.0.0.1/24' has host bits set")."""
    loc = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if not loc:
        return message
    if loc[0] == "body":
        where = ".".join(loc[1:]) or "request body"
    else:
        where = f"{loc[0]} parameter " + ".".join(loc[1:])
    return f"{where}: {message}"
