"""Limits of the API: request body size."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from controller.api.limits import BodyLimit
from tests.liveserver import serve

MIB = 1024 * 1024
JSON = {"content-type": "application/json"}


def padded(size: int) -> bytes:
    """A valid network-create body of ``size`` bytes (JSON whitespace as padding)."""
    head = b'{"name": "blue", "subnet": "10.1.0.0/24"'
    return head + b" " * (size - len(head) - 1) + b"}"


def test_a_body_over_1_mib_is_refused_with_413(client: TestClient) -> None:
    r = client.post("/api/v1/networks", content=padded(MIB + 1), headers=JSON)
    assert r.status_code == 413
    assert r.json() == {"detail": "request body too large: at most 1048576 bytes are accepted"}
    assert client.get("/api/v1/networks").json() == []


def test_a_body_of_exactly_1_mib_is_taken(client: TestClient) -> None:
    r = client.post("/api/v1/networks", content=padded(MIB), headers=JSON)
    assert r.status_code == 201, r.text


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all() -> None:
    """No Content-Length: the middleware counts what it receives and stops at the limit."""
    received: list[int] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):  # reads the whole body, as a route would
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    async def receive() -> Message:
        received.append(1)
        return {"type": "http.request", "body": b"x" * MIB, "more_body": len(received) < 50}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(BodyLimit(app, max_bytes=MIB)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert b"too large" in sent[1]["body"]
    assert len(received) == 2  # 2 of the 50 MiB offered


def test_a_route_reading_a_chunked_body_answers_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "blue", "subnet": "10.1.0.0/24"'
        for _ in range(3):
            yield b" " * MIB
        yield b"}"

    r = client.post("/api/v1/networks", content=chunks(), headers=JSON)
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert client.get("/api/v1/networks").json() == []


def test_event_streams_past_the_limit_answer_503_with_retry_after(make_client) -> None:  # type: ignore[no-untyped-def]
    """The TestClient cannot follow an endless stream: hold the slots through the hub."""
    client = make_client(max_event_subscribers=2)
    hub = client.app.state.events  # type: ignore[attr-defined]

    async def fill() -> list[object]:
        return [hub.subscribe(2), hub.subscribe(2)]

    held = client.portal.call(fill)  # type: ignore[union-attr]
    r = client.get("/api/v1/events")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "10"
    assert "too many event streams open (2" in r.json()["detail"]
    hub.unsubscribe(held[0])
    assert hub.subscribers == 1


def test_one_token_may_not_take_every_event_stream(make_client, make_token) -> None:  # type: ignore[no-untyped-def]
    """At most ``max_event_subscribers_per_token`` streams per token: a viewer filling its
    share leaves the others' streams free."""
    viewer = make_token("viewer")
    viewer_id = viewer.split("_")[1]
    client = make_client(token=viewer, max_event_subscribers_per_token=2)
    hub = client.app.state.events  # type: ignore[attr-defined]

    async def fill() -> list[object]:
        return [hub.subscribe(64, owner=viewer_id, owner_limit=2) for _ in range(2)]

    client.portal.call(fill)  # type: ignore[union-attr]
    r = client.get("/api/v1/events")
    assert r.status_code == 503 and r.headers["retry-after"] == "10"
    assert "at most 2 per token" in r.json()["detail"]

    async def other() -> object:  # another token still gets one
        return hub.subscribe(64, owner="someoneelse", owner_limit=2)

    assert client.portal.call(other) is not None  # type: ignore[union-attr]
    assert hub.subscribers == 3


class SilentSwitch:
    """A connected switch that takes every message and never answers a barrier."""

    dpid = 1
    address = "198.18.0.1:40000"

    def send(self, data: bytes) -> bool:
        return True

    def request_flow_dump(self) -> None:
        pass


def test_waits_for_a_switch_that_never_answers_hold_no_thread(
    db_file_url: str, make_token: Callable[..., str]
) -> None:
    """80 binds wait for readiness (more than the 40 worker threads): /healthz and the other
    requests still answer at once, and the waits end pending after their timeout."""
    import time

    import httpx

    from controller.api.app import create_app
    from controller.config import Settings
    from controller.db import repo
    from controller.db.session import make_engine, make_session_factory
    from controller.engine import Engine

    factory = make_session_factory(make_engine(db_file_url))
    engine = Engine(
        factory,
        repo.load_snapshot,
        repo.current_revision,
        repo.mark_ready_at,
        poll_interval=60,
    )
    settings = Settings(db_url=db_file_url, allowed_hosts=["api"], ready_timeout=30)
    app = create_app(settings, sync=engine, session_factory=factory)
    # The waits' own timeout is far above the time the 80 writes take to queue up, also on a
    # loaded machine (seen: over 5 s at load 20), so no wait can end before the checks run.
    waits, seconds, setup = 80, 20.0, 15.0
    auth = {"Authorization": f"Bearer {make_token('admin')}"}

    async def scenario() -> tuple[float, float, int, list[httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=auth
        ) as api:
            await api.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})
            await api.post("/api/v1/networks", json={"name": "blue", "subnet": "10.1.0.0/16"})
            engine.switch_connected(SilentSwitch())  # type: ignore[arg-type]
            engine.switch_dump(1, [], more=False)
            binds = [
                asyncio.create_task(
                    api.put(
                        f"/api/v1/networks/blue/endpoints/e{i}/binding",
                        params={"create": "true", "wait_ready": seconds},
                        json={"host": "h1", "ofport": i + 2},
                    )
                )
                for i in range(waits)
            ]
            deadline = time.monotonic() + setup  # 80 binds queue for the write path
            while engine.waiting < waits and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            start = time.monotonic()
            assert (await api.get("/healthz")).status_code == 200
            health = time.monotonic() - start
            start = time.monotonic()
            assert (await api.get("/api/v1/networks")).status_code == 200
            listing = time.monotonic() - start
            waiting = engine.waiting
            # answered while every wait still waits: had the waits held the worker threads,
            # these requests would have queued behind them until they timed out
            assert not any(bind.done() for bind in binds)
            return health, listing, waiting, await asyncio.gather(*binds)

    engine.start()
    try:
        health, listing, waiting, answers = asyncio.run(scenario())
    finally:
        engine.stop()
    assert health < seconds and listing < seconds, (health, listing)
    assert waiting == waits, "every bind was waiting for its barrier (in the event loop)"
    assert {(r.status_code, r.json()["state"]) for r in answers} == {(201, "pending")}
    assert engine.waiting == 0


def _exchange(port: int, head: bytes, chunks: int) -> tuple[bytes, int]:
    """Send ``head`` then up to ``chunks`` MiB while reading; the answer and MiB sent."""
    import socket

    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(0.05)
        answer = b""
        for _ in range(chunks):
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                pass
            if answer:
                break
            try:
                sock.sendall(b"100000\r\n" + b" " * MIB + b"\r\n" if b"chunked" in head
                             else b" " * MIB)  # fmt: skip
            except OSError:  # the server closed: it read no more
                break
            sent += 1
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    return answer, sent


def test_a_real_server_answers_413_before_reading_50_mib(make_client) -> None:  # type: ignore[no-untyped-def]
    """Over a real uvicorn: a declared 50 MiB body is answered at once, and a chunked one
    after about the limit; neither is read in full."""
    client = make_client(allowed_hosts=["127.0.0.1"])
    with serve(client.app) as url:
        port = int(url.rsplit(":", 1)[1])
        request = b"POST /api/v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
            f"{k}: {v}\r\n".encode() for k, v in client.headers.items() if k == "authorization"
        )
        answer, sent = _exchange(port, request + f"Content-Length: {50 * MIB}\r\n\r\n".encode(), 50)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 10, f"{sent} MiB sent before the answer"  # 0 or 1 unless the machine is busy
        answer, sent = _exchange(port, request + b"Transfer-Encoding: chunked\r\n\r\n", 50)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 25, f"{sent} MiB sent before the answer"  # 2 when the machine is idle
