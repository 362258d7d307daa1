"""Events published by the API's writes, the endpoint history, host convergence, the SSE
stream (against a real uvicorn) and the dashboard's static routes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.api.routes.events import _stream
from controller.config import Settings
from controller.events import EventHub
from controller.sync import SwitchStatus
from tests.liveserver import serve

NETS = "/api/v1/networks"
EPS = "/api/v1/networks/blue/endpoints"


def _types(client: TestClient, after: int = 0) -> list[str]:
    body = client.get("/api/v1/events/recent", params={"after": after}).json()
    return [e["type"] for e in body["events"]]


@pytest.fixture
def world(client: TestClient) -> TestClient:
    client.post(NETS, json={"name": "blue", "subnet": "10.0.0.0/24"})
    for i in (1, 2):
        client.put(f"/api/v1/hosts/h{i}", json={"underlay_ip": f"198.18.0.{i}", "dpid": i})
    return client


def test_writes_publish_events_after_commit(world: TestClient) -> None:
    assert _types(world) == ["network.created", "host.registered", "host.registered"]
    last = world.get("/api/v1/events/recent").json()["last_id"]
    world.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})  # no change
    world.post(f"{EPS}", json={"name": "web", "host": "h1"})
    world.put(f"{EPS}/web/binding", json={"host": "h1", "ofport": 3})
    world.put(f"{EPS}/web/binding", json={"host": "h1", "ofport": 3})  # same: no event
    world.put(f"{EPS}/web/binding", json={"host": "h2", "ofport": 4, "move": True})
    world.delete(f"{EPS}/web/binding", params={"host": "h1"})  # stale: no-op, no event
    world.delete(f"{EPS}/web/binding")
    world.delete(f"{EPS}/web")
    assert _types(world, last) == [
        "endpoint.created",
        "endpoint.bound",
        "endpoint.moved",
        "endpoint.unbound",
        "endpoint.deleted",
    ]
    moved = world.get("/api/v1/events/recent", params={"types": "endpoint.moved"}).json()
    assert moved["events"][0]["data"] == {
        "network": "blue", "endpoint": "web", "ip": "10.0.0.2", "host": "h2",
        "from_host": "h1", "ofport": 4, "revision": moved["events"][0]["data"]["revision"],
        "by": moved["events"][0]["data"]["by"],
    }  # fmt: skip
    assert moved["events"][0]["data"]["by"].startswith("admin:")
    assert moved["events"][0]["summary"] == "endpoint blue/web (10.0.0.2) moved from h1 to h2"
    world.delete("/api/v1/hosts/h2")
    world.delete(f"{NETS}/blue")
    assert _types(world)[-2:] == ["host.deleted", "network.deleted"]


def test_failed_writes_publish_nothing(world: TestClient) -> None:
    before = _types(world)
    assert world.post(NETS, json={"name": "blue", "subnet": "10.1.0.0/24"}).status_code == 409
    world.post(f"{EPS}", json={"name": "web"})
    world.put(f"{EPS}/web/binding", json={"host": "h1", "ofport": 3})
    assert world.delete(f"{NETS}/blue").status_code == 409
    assert _types(world) == [*before, "endpoint.created", "endpoint.bound"]


def test_recent_filters_and_limits(world: TestClient) -> None:
    body = world.get("/api/v1/events/recent", params={"types": "host", "limit": 1}).json()
    assert [e["data"]["host"] for e in body["events"]] == ["h2"]
    assert body["last_id"] == 3 and body["epoch"]
    assert world.get("/api/v1/events/recent", params={"limit": 0}).status_code == 422


def test_endpoint_history(world: TestClient) -> None:
    world.post(f"{EPS}", json={"name": "ns/pod"})
    assert world.get(f"{EPS}/ns/pod/history").json() == []
    world.put(f"{EPS}/ns/pod/binding", json={"host": "h1", "ofport": 3})
    world.put(f"{EPS}/ns/pod/binding", json={"host": "h2", "ofport": 5, "move": True})
    world.delete(f"{EPS}/ns/pod/binding")
    world.put(f"{EPS}/ns/pod/binding", json={"host": "h1", "ofport": 6})
    world.delete("/api/v1/hosts/h1")  # its endpoints are released: an unbind step
    steps = world.get(f"{EPS}/ns/pod/history").json()
    assert [(s["kind"], s["from_host"], s["host"], s["ofport"]) for s in steps] == [
        ("unbound", "h1", None, None),
        ("bound", None, "h1", 6),
        ("unbound", "h2", None, None),
        ("moved", "h1", "h2", 5),
        ("bound", None, "h1", 3),
    ]
    assert steps[0]["revision"] > steps[-1]["revision"]
    assert len(world.get(f"{EPS}/ns/pod/history", params={"limit": 2}).json()) == 2
    r = world.get(f"{EPS}/nope/history")
    assert r.status_code == 404 and "'nope' does not exist" in r.json()["detail"]
    r = world.post(f"{EPS}", json={"name": "x/history"})
    assert r.status_code == 422 and "ambiguous" in r.json()["detail"]
    world.delete(f"{EPS}/ns/pod")  # the history goes with the endpoint
    world.post(f"{EPS}", json={"name": "ns/pod"})
    assert world.get(f"{EPS}/ns/pod/history").json() == []


def test_host_status_and_convergence(world: TestClient, sync: RecordingSync) -> None:
    world.post(f"{EPS}", json={"name": "web", "host": "h1"})
    world.put(f"{EPS}/web/binding", json={"host": "h1", "ofport": 3})
    wanted = world.get("/healthz").json()["revision"]
    sync.status = [  # converged and lagging are defined on generations, not revisions
        SwitchStatus(1, True, "198.18.0.1:4000", wanted - 1, 20, "h1", 0, 7, 7),
        SwitchStatus(2, True, "198.18.0.2:4000", wanted, 18, "h2", 0, 7, 6),
    ]
    hosts = {h["name"]: h for h in world.get("/api/v1/hosts").json()}
    assert (hosts["h1"]["status"], hosts["h1"]["converged"], hosts["h1"]["endpoints"]) == (
        "converged", True, 1,
    )  # fmt: skip
    assert hosts["h2"]["status"] == "lagging" and hosts["h2"]["wanted_revision"] == wanted
    sync.status[0] = SwitchStatus(1, False, None, wanted, 20, "h1", 0, 7, 7)
    assert world.get("/api/v1/hosts/h1").json()["status"] == "disconnected"
    world.put("/api/v1/hosts/h3", json={"underlay_ip": "198.18.0.3"})
    assert world.get("/api/v1/hosts/h3").json()["status"] == "disconnected"  # never connected


def test_stale_heartbeat_is_lost(make_client) -> None:  # type: ignore[no-untyped-def]
    strict = make_client(host_dead_after=0.0, host_watch_interval=0.05)
    strict.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"})
    assert strict.get("/api/v1/hosts/h1").json()["status"] == "lost"


def test_host_watch_publishes_lost_and_alive(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(host_dead_after=0.3, host_watch_interval=0.05)
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"})
    deadline = time.monotonic() + 5
    while "host.lost" not in _types(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "host.lost" in _types(client)
    client.post("/api/v1/hosts/h1/heartbeat")
    while "host.alive" not in _types(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Not the last two: with no further heartbeat the host is lost again 0.3 s later, and a
    # loaded machine may poll only after that. What must hold is the order lost, then alive.
    types = _types(client)
    assert "host.alive" in types[types.index("host.lost") :]


def test_dashboard_routes_do_not_shadow_the_api(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/app.js">' in page.text
    assets = ("app.js", "api.js", "dom.js", "topology.js", "cluster.js", "style.css", "favicon.svg")
    for asset in assets:
        assert client.get(f"/static/{asset}").status_code == 200, asset
    assert "http://" not in client.get("/static/app.js").text  # nothing from the internet
    assert client.get("/favicon.ico").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/" not in schema["paths"]
    for path in ("/api/v1/events", "/api/v1/events/recent",
                 "/api/v1/networks/{network}/endpoints/{name}/history"):  # fmt: skip
        assert path in schema["paths"], path
    assert (
        "text/event-stream"
        in schema["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]
    )
    host = schema["components"]["schemas"]["HostPublic"]["properties"]
    assert {"status", "converged", "wanted_revision", "endpoints"} <= set(host)


async def _frames(hub: EventHub, start: int | None, count: int, types: str | None = None):  # type: ignore[no-untyped-def]
    stream = _stream(hub, start, types, keepalive=0.05)
    out = [await asyncio.wait_for(stream.__anext__(), 2) for _ in range(count)]
    await stream.aclose()
    return out


def test_stream_replays_filters_resyncs_and_keeps_alive() -> None:
    hub = EventHub(capacity=2)
    for i in range(3):
        hub.publish("host.lost" if i else "network.created", host=f"h{i}", network="n")
    hello, first = asyncio.run(_frames(hub, 2, 2))
    assert hello.startswith("retry: 2000\nevent: hello\n") and '"last_id":3' in hello
    assert first.startswith("id: 3\ndata: ") and json.loads(first.split("data: ")[1])["id"] == 3
    _, resync, replay = asyncio.run(_frames(hub, 0, 3))  # 1 fell out of the ring
    assert resync.startswith("event: resync") and replay.startswith("id: 2\n")
    _, stale = asyncio.run(_frames(hub, 99, 2))  # an id from before a controller restart
    assert stale.startswith("event: resync")
    _, keepalive = asyncio.run(_frames(hub, None, 2))
    assert keepalive == ": keep-alive\n\n"
    frames = asyncio.run(_frames(hub, 1, 3, types="host.lost"))
    assert [f.split("\n")[0] for f in frames[1:]] == ["id: 2", "id: 3"]


@pytest.fixture
def live_api(
    db_file_url: str, make_token: Callable[..., str]
) -> Iterator[tuple[str, EventHub, str]]:
    """The app on a real uvicorn (the TestClient cannot follow an endless stream), its event
    hub and an admin token."""
    hub = EventHub()
    app = create_app(Settings(db_url=db_file_url, events_keepalive=0.2), events=hub)  # type: ignore[call-arg]
    with serve(app) as url:
        yield url, hub, make_token("admin")


def test_sse_stream_over_http_with_last_event_id(live_api: tuple[str, EventHub, str]) -> None:
    url, hub, token = live_api
    auth = {"Authorization": f"Bearer {token}"}
    body = {"name": "blue", "subnet": "10.0.0.0/24"}
    httpx.post(f"{url}{NETS}", json=body, headers=auth).raise_for_status()
    headers = {"Last-Event-ID": "0", **auth}
    with httpx.stream("GET", f"{url}/api/v1/events", headers=headers, timeout=5) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-cache"
        lines = resp.iter_lines()
        got: list[str] = []
        threading.Timer(0.1, lambda: hub.publish("host.lost", host="h9")).start()
        for line in lines:
            got.append(line)
            if line.startswith("data: ") and "h9" in line:
                break
    datas = [json.loads(x[6:]) for x in got if x.startswith('data: {"id"')]
    assert [d["type"] for d in datas] == ["network.created", "host.lost"]
    assert got[0] == "retry: 2000" and got[1] == "event: hello"


def test_a_closed_stream_gives_its_subscriber_slot_back(
    live_api: tuple[str, EventHub, str],
) -> None:
    url, hub, token = live_api
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{url}/api/v1/events", timeout=5, headers=auth) as resp:
        lines = resp.iter_lines()
        assert next(lines) == "retry: 2000"
        assert hub.subscribers == 1
    deadline = time.monotonic() + 5
    while hub.subscribers and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub.subscribers == 0


def test_event_stream_needs_a_token(
    live_api: tuple[str, EventHub, str], make_token: Callable[..., str]
) -> None:
    url, hub, _ = live_api
    refused = httpx.get(f"{url}/api/v1/events", timeout=5)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert hub.subscribers == 0
    for role, host in (("viewer", None), ("agent", "h1")):
        auth = {"Authorization": f"Bearer {make_token(role, host=host)}"}
        with httpx.stream("GET", f"{url}/api/v1/events", timeout=5, headers=auth) as resp:
            assert resp.status_code == 200
            assert next(resp.iter_lines()) == "retry: 2000"


class _WriteBetweenReads(EventHub):
    """A hub where a write lands between ``/recent``'s read of ``last_id`` and of the events
    (a concurrent write, pinned at that point)."""

    def since(self, after: int, limit: int | None = None) -> tuple[list[Any], bool]:
        if self.last_id == 1:
            self.publish("host.lost", host="h9")
        return super().since(after, limit)


def test_recent_lists_nothing_past_its_last_id(
    db_file_url: str, sync: RecordingSync, make_token: Callable[..., str]
) -> None:
    """A client that shows ``/recent`` and then follows from its ``last_id`` (``vxplane
    events -f``) would show an event listed past ``last_id`` twice."""
    hub = _WriteBetweenReads()
    hub.publish("network.created", network="blue")
    settings = Settings(db_url=db_file_url, allowed_hosts=["testserver"])  # type: ignore[call-arg]
    with TestClient(create_app(settings=settings, sync=sync, events=hub)) as client:
        client.headers["Authorization"] = f"Bearer {make_token('admin')}"
        body = client.get("/api/v1/events/recent").json()
        assert [e["id"] for e in body["events"]] == [1] and body["last_id"] == 1
        assert [e["id"] for e in client.get("/api/v1/events/recent").json()["events"]] == [1, 2]
