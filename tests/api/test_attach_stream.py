"""The streamed create-and-bind (``PUT .../binding?create=true&wait_ready=S&stream=true``):
the endpoint as bound comes first, before the wait for the flows, then the endpoint after it."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.api.app import create_app
from controller.config import Settings

EPS = "/api/v1/networks/n/endpoints"
STREAM = "/binding?create=true&wait_ready=5&stream=true"


class OrderedSync(RecordingSync):
    """Records, in ``order``, when a wait for the flows starts."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order

    async def until_applied(
        self, revision: int, timeout: float, hosts: Collection[str] = ()
    ) -> bool:
        self.order.append("wait")
        return self.wait_applied(revision, timeout, hosts)


class BodyChunks:
    """ASGI wrapper that records, in ``order``, each body chunk the app sends."""

    def __init__(self, app: ASGIApp, order: list[str]) -> None:
        self.app, self.order = app, order

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recorded(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                self.order.append("chunk")
            await send(message)

        await self.app(scope, receive, recorded)


@pytest.fixture
def order() -> list[str]:
    return []


@pytest.fixture
def world(db_file_url: str, make_token: Callable[..., str], order: list[str]) -> Any:
    sync = OrderedSync(order)
    settings = Settings(db_url=db_file_url, allowed_hosts=["testserver"], ready_timeout=2.0)
    with TestClient(BodyChunks(create_app(settings=settings, sync=sync), order)) as client:
        client.headers["Authorization"] = f"Bearer {make_token('admin')}"
        assert client.post("/api/v1/networks", json={"name": "n", "subnet": "10.0.0.0/24"})
        client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"}).raise_for_status()
        yield client, sync


def _lines(r: Any) -> list[dict[str, Any]]:
    assert r.headers["content-type"].startswith("application/x-ndjson"), r.headers
    return [json.loads(line) for line in r.text.splitlines()]


def test_bound_endpoint_is_sent_before_the_wait(world: Any, order: list[str]) -> None:
    client, sync = world
    order.clear()
    r = client.put(f"{EPS}/web{STREAM}", json={"host": "h1", "ofport": 7, "port_name": "vx1"})
    assert r.status_code == 201, r.text
    first, last = _lines(r)
    assert first["state"] == "pending" and first["ready_at"] is None
    assert first["ip"] == last["ip"] == "10.0.0.2" and first["mac"] == last["mac"]
    assert last["state"] == "ready" and last["revision"] == first["revision"]
    assert sync.waits == [(first["revision"], 2.0)]  # capped by ready_timeout
    assert order == ["chunk", "wait", "chunk"]  # the address went out before the wait


def test_stream_answers_pending_when_the_wait_times_out(world: Any) -> None:
    client, sync = world
    sync.applied = False
    r = client.put(f"{EPS}/web{STREAM}", json={"host": "h1", "ofport": 7})
    assert r.status_code == 201
    assert [line["state"] for line in _lines(r)] == ["pending", "pending"]


def test_stream_of_a_bind_that_changes_nothing_is_one_line(world: Any, order: list[str]) -> None:
    client, _ = world
    body = {"host": "h1", "ofport": 7}
    assert client.put(f"{EPS}/web{STREAM}", json=body).status_code == 201
    order.clear()
    r = client.put(f"{EPS}/web{STREAM}", json=body)
    assert r.status_code == 200
    [only] = _lines(r)
    assert only["state"] == "ready" and order == ["chunk"]  # nothing to wait for


def test_stream_errors_are_plain_json(world: Any) -> None:
    client, _ = world
    r = client.put(f"{EPS}/web{STREAM}", json={"host": "nohost", "ofport": 7})
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert "nohost" in r.json()["detail"]
    assert client.get(f"{EPS}/web").status_code == 404  # nothing made


def test_without_wait_ready_stream_is_ignored(world: Any) -> None:
    client, _ = world
    r = client.put(f"{EPS}/web/binding?create=true&stream=true", json={"host": "h1", "ofport": 7})
    assert r.status_code == 201 and r.headers["content-type"] == "application/json"
    assert r.json()["state"] == "pending"
