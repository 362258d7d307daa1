"""Backpressure of the write path: a full write queue and a locked SQLite database both
answer 503 with Retry-After, and nothing is written."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from controller.api.writer import Writer
from controller.db import session as db_session
from hostagent.client import ControllerClient
from hostagent.errors import ControllerUnavailable
from tests.liveserver import serve
from vxcommon.retry import BUSY_RETRIES

EPS = "/api/v1/networks/n/endpoints"


Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


def in_loop_of(client: TestClient) -> Runner:
    """Run a coroutine function in the event loop the app last started in (its lifespan:
    the TestClient's, or a live uvicorn's), where its writer's queue lives."""
    writer: Writer = client.app.state.writer  # type: ignore[attr-defined]

    def run(fn: Callable[[], Awaitable[Any]]) -> Any:
        assert writer._home is not None
        return asyncio.run_coroutine_threadsafe(fn(), writer._home).result(30)  # type: ignore[arg-type]

    return run


def fill(client: TestClient, queued: int) -> tuple[threading.Event, Callable[[], None]]:
    """Hold the app's writer (a write that waits for the returned event) and queue
    ``queued`` writes behind it, in the app's event loop; the callable waits until all
    of them are done (after the event is set)."""
    writer: Writer = client.app.state.writer  # type: ignore[attr-defined]
    call = in_loop_of(client)
    entered, release = threading.Event(), threading.Event()

    def hold(session: Session) -> tuple[None, None]:
        entered.set()
        assert release.wait(30)
        return None, None

    async def first() -> asyncio.Future[None]:
        return writer.submit(hold)

    async def behind() -> list[asyncio.Future[None]]:
        return [writer.submit(lambda s: (None, None)) for _ in range(queued)]

    futures = [call(first)]
    assert entered.wait(30)  # taken off the queue: the writer's thread holds it
    futures += call(behind)

    def drained() -> None:
        async def wait() -> None:
            await asyncio.gather(*futures)

        call(wait)

    return release, drained


def _world(client: TestClient) -> None:
    assert client.post("/api/v1/networks", json={"name": "n", "subnet": "10.0.0.0/24"}).is_success
    assert client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"}).is_success


def test_a_full_write_queue_answers_503_with_retry_after(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(write_queue_max=2)
    _world(client)
    release, drained = fill(client, 2)  # the queue (2) is full
    try:
        r = client.put(f"{EPS}/web/binding?create=true", json={"host": "h1", "ofport": 5})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert "write queue is full (2 writes waiting)" in r.json()["detail"]
    finally:
        release.set()
    drained()
    assert client.get(f"{EPS}/web").status_code == 404  # nothing was written
    r = client.put(f"{EPS}/web/binding?create=true", json={"host": "h1", "ofport": 5})
    assert r.status_code == 201, r.text  # and once the queue drained, the same call succeeds


def test_a_locked_sqlite_database_answers_503_with_retry_after(
    make_client, db_file_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 200)  # don't wait 5 s for it
    client = make_client()
    _world(client)
    other = sqlite3.connect(str(make_url(db_file_url).database), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        r = client.post("/api/v1/networks", json={"name": "m", "subnet": "10.1.0.0/24"})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        r = client.put(f"{EPS}/web/binding?create=true", json={"host": "h1", "ofport": 5})
        assert r.status_code == 503, r.text  # through the writer too
        assert r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert client.get("/api/v1/networks/m").status_code == 404
    assert client.get(f"{EPS}/web").status_code == 404


def test_the_agents_client_waits_as_advised_and_retries(make_client, make_token) -> None:  # type: ignore[no-untyped-def]
    """The agent's ControllerClient against the real API on uvicorn: its bind meets a full
    write queue (503, Retry-After: 1), waits the advised second (here: the wait drains the
    queue), sends the bind again, and it succeeds."""
    client = make_client(write_queue_max=1, allowed_hosts=["testserver", "127.0.0.1"])
    _world(client)
    waits: list[float] = []
    with serve(client.app) as url:  # its lifespan: the writer now lives in uvicorn's loop
        release, drained = fill(client, 1)  # the queue (1) is full

        def sleep(seconds: float) -> None:  # the advised wait: let the writer drain meanwhile
            waits.append(seconds)
            release.set()
            drained()

        try:
            agent = ControllerClient(url, token=make_token("agent", host="h1"), sleep=sleep)
            with agent:
                endpoint, created = agent.bind("n", "web", "h1", 5, create=True)
        finally:
            release.set()
    assert created and endpoint.host == "h1"
    assert waits == [1.0] and agent.busy_waits == [1.0]


def test_the_agents_client_gives_up_after_bounded_retries(make_client, make_token) -> None:  # type: ignore[no-untyped-def]
    client = make_client(write_queue_max=1, allowed_hosts=["testserver", "127.0.0.1"])
    _world(client)
    with serve(client.app) as url:
        release, drained = fill(client, 1)
        try:
            token = make_token("agent", host="h1")
            with ControllerClient(url, token=token, sleep=lambda s: None) as agent:
                with pytest.raises(ControllerUnavailable, match="write queue is full") as caught:
                    agent.bind("n", "web", "h1", 5, create=True)
        finally:
            release.set()
        drained()
    assert caught.value.retry_after == 1.0
    assert agent.busy_waits == [1.0] * BUSY_RETRIES
