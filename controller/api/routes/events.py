"""The live event stream (server-sent events) and the recent events as JSON.

``GET /api/v1/events`` is ``text/event-stream``: first a ``hello`` event (the hub's epoch and
last id), then one unnamed message per event, its ``id:`` field the event id, its data the
event as JSON; a ``: keep-alive`` comment when idle. A client that reconnects with
``Last-Event-ID`` (browsers' EventSource do it by themselves) or ``?after=`` gets what it
missed from the ring buffer; ids are the cluster's (``controller.events``), so it may reconnect
to any controller of the cluster. When those events are gone, or the id is unknown, it
receives a ``resync`` event and should reload its state from the REST API.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from controller.api.auth import PrincipalDep
from controller.api.deps import EventsDep, SettingsDep
from controller.api.schemas import EventPublic, EventsRecent, Problem
from controller.errors import InvalidRequest
from controller.events import Event, EventHub, _Subscriber

router = APIRouter(prefix="/api/v1/events", tags=["events"])

Types = Annotated[
    str | None,
    Query(
        description="only these types or families, comma-separated "
        "(`endpoint`, `host.lost`, `switch`, ...)",
        examples=["endpoint,host"],
    ),
]
STREAM_DOC = {
    200: {
        "description": "A stream of server-sent events (each `data:` is an Event as JSON).",
        "content": {
            "text/event-stream": {
                # Before OpenAPI 3.2 (itemSchema), the schema of a stream describes one event.
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {"enum": ["hello", "resync"], "description": "absent: an Event"},
                        "data": {
                            "type": "string",
                            "description": "JSON: an Event, or the hello's / resync's object",
                        },
                        "id": {"type": "string", "description": "the event id"},
                        "retry": {"type": "integer", "description": "reconnect delay (ms)"},
                    },
                    "required": ["data"],
                },
                "example": 'event: hello\ndata: {"epoch": "3f2a9c1d", "last_id": 41}\n\n'
                'id: 42\ndata: {"id": 42, "type": "endpoint.moved", ...}\n\n',
            }
        },
    },
    503: {
        "model": Problem,
        "description": "too many event streams open (`max_event_subscribers`): retry after "
        "the `Retry-After` header's seconds",
    },
}


MAX_EVENT_ID = 2**63 - 1
_EVENT_ID_RE = re.compile(r"[0-9]{1,19}")


def _event_id(header: str) -> int:
    """The event id of a ``Last-Event-ID`` header (ASCII digits, at most 2**63 - 1)."""
    text = header.strip()
    if _EVENT_ID_RE.fullmatch(text) and int(text) <= MAX_EVENT_ID:
        return int(text)
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    raise InvalidRequest(
        f"Last-Event-ID {shown} is not an event id: send the id of the last event received "
        "(a decimal number), or no header to follow new events only"
    )


def _matcher(types: str | None):  # type: ignore[no-untyped-def]
    wanted = [t.strip() for t in (types or "").split(",") if t.strip()]
    if not wanted:
        return lambda kind: True
    return lambda kind: any(kind == t or kind.startswith(t + ".") for t in wanted)


def _frame(event: Event) -> str:
    return f"id: {event.id}\ndata: {json.dumps(event.as_dict(), separators=(',', ':'))}\n\n"


def _named(name: str, data: dict[str, object]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class _EventStream(StreamingResponse):
    """A streaming response that gives its subscriber slot back however the response ends
    (also when the client left before the first byte, and the body never started)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _stream(
    hub: EventHub,
    start: int | None,
    types: str | None,
    keepalive: float,
    sub: _Subscriber | None = None,
) -> AsyncIterator[str]:
    wanted = _matcher(types)
    sub = sub or hub.subscribe()
    try:
        last = hub.last_id
        yield "retry: 2000\n" + _named("hello", {"epoch": hub.epoch, "last_id": last})
        cursor = last if start is None else start
        if cursor > last and hub.durable:  # seen on another controller, not read here yet
            await asyncio.to_thread(hub.catch_up)
            last = hub.last_id
        if cursor > last:  # an id this cluster never gave (another database, in memory: a restart)
            yield _named("resync", {"reason": "unknown event id", "last_id": last})
            cursor = last
        while True:
            sub.ready.clear()
            events, missed = hub.since(cursor)
            if missed:
                yield _named("resync", {"reason": "events were dropped", "last_id": hub.last_id})
            for event in events:
                cursor = event.id
                if wanted(event.type):
                    yield _frame(event)
            if events:
                continue
            try:
                await asyncio.wait_for(sub.ready.wait(), keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(sub)


@router.get("", response_class=StreamingResponse, responses=STREAM_DOC)  # type: ignore[arg-type]
async def event_stream(
    request: Request,
    hub: EventsDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    types: Types = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_EVENT_ID, description="replay events after this id (else: new only)"),
    ] = None,
    last_event_id: Annotated[
        str | None, Header(description="set by EventSource on reconnect; wins over `after`")
    ] = None,
) -> StreamingResponse:
    """Follow what changes: networks, endpoints (added, moved, removed), hosts, switches.

    At most ``max_event_subscribers`` streams (64 by default) are open at once, and at most
    ``max_event_subscribers_per_token`` (8) of one token; past that the answer is 503 with
    ``Retry-After``."""
    start = _event_id(last_event_id) if last_event_id and last_event_id.strip() else after
    sub = hub.subscribe(
        settings.max_event_subscribers,
        owner=principal.token_id,
        owner_limit=settings.max_event_subscribers_per_token,
    )
    return _EventStream(
        _stream(hub, start, types, settings.events_keepalive, sub),
        lambda: hub.unsubscribe(sub),
    )


@router.get("/recent")
def recent_events(
    hub: EventsDep,
    types: Types = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="at most this many")] = 100,
    after: Annotated[
        int, Query(ge=0, le=MAX_EVENT_ID, description="only events after this id")
    ] = 0,
) -> EventsRecent:
    """The newest events kept by the controller (oldest first)."""
    wanted = _matcher(types)
    last = hub.last_id
    # only up to ``last``: an event that lands between the two reads would be in ``events``
    # and after ``last_id``, so a client that follows on from ``last_id`` got it twice
    events = [e for e in hub.since(after)[0] if e.id <= last and wanted(e.type)][-limit:]
    return EventsRecent(
        epoch=hub.epoch,
        last_id=last,
        events=[EventPublic.model_validate(e.as_dict()) for e in events],
    )
