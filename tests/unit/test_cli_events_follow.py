"""``vxplane events -f`` given two controllers: a stream that breaks after it delivered events
(its controller killed) is resumed on the other one after the last event printed, so nothing
is printed twice and nothing is missed. A real httpx client against a scripted server
(MockTransport) whose first stream drops mid-way, as a SIGKILLed controller's does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from controller.cli import output
from controller.cli.main import app

EPOCH = "e1"
LOG = [
    {"id": i, "time": "2026-01-01T00:00:00+00:00", "type": "network.created",
     "summary": f"network n{i} created", "data": {"network": f"n{i}"}}
    for i in range(1, 6)
]  # fmt: skip


def _sse(event: dict[str, Any]) -> bytes:
    return f"id: {event['id']}\ndata: {json.dumps(event)}\n\n".encode()


def _hello() -> bytes:
    return f"event: hello\ndata: {json.dumps({'epoch': EPOCH, 'last_id': 5})}\n\n".encode()


def test_a_stream_broken_after_delivering_events_resumes_after_the_last_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, int]] = []  # (controller, after) of each stream opened

    def recent(method: str, url: str, **kw: Any) -> httpx.Response:
        assert url == "http://a/api/v1/events/recent"
        return httpx.Response(200, json={"epoch": EPOCH, "last_id": 1, "events": LOG[:1]})

    def dying() -> Iterator[bytes]:  # a: n2 and n3 sent, then the process is killed
        yield _hello()
        yield _sse(LOG[1])
        yield _sse(LOG[2])
        raise httpx.RemoteProtocolError("peer closed connection: incomplete chunked read")

    def stream(request: httpx.Request) -> httpx.Response:
        host, after = request.url.host, int(request.url.params["after"])
        asked.append((host, after))
        if len(asked) == 3:
            raise KeyboardInterrupt  # the user's Ctrl-C ends the test's follow
        if host == "a":
            return httpx.Response(200, content=dying())
        rest = [_sse(e) for e in LOG if e["id"] > after]  # b replays what came after `after`
        return httpx.Response(200, content=iter([_hello(), *rest]))

    real_client = httpx.Client
    transport = httpx.MockTransport(stream)
    monkeypatch.setattr(output.httpx, "request", recent)
    monkeypatch.setattr(
        httpx, "Client", lambda **kw: real_client(transport=transport, timeout=kw["timeout"])
    )
    argv = ["events", "-f", "-o", "json", "--api", "http://a,http://b", "--token", "t"]
    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 0, result.output
    printed = [json.loads(line)["data"]["network"] for line in result.stdout.splitlines()]
    assert printed == ["n1", "n2", "n3", "n4", "n5"]  # once each, in order
    assert asked[:2] == [("a", 1), ("b", 3)]  # b asked for what came after n3, the last printed


def test_an_event_listed_by_recent_beyond_its_last_id_is_not_printed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An older controller's ``/recent`` may list an event newer than its ``last_id`` (one
    that landed between its two reads): the follow starts after the newest one printed."""
    asked: list[int] = []

    def recent(method: str, url: str, **kw: Any) -> httpx.Response:
        return httpx.Response(200, json={"epoch": EPOCH, "last_id": 1, "events": LOG[:2]})

    def stream(request: httpx.Request) -> httpx.Response:
        asked.append(int(request.url.params["after"]))
        if len(asked) == 2:
            raise KeyboardInterrupt
        after = asked[-1]
        return httpx.Response(200, content=iter([_hello(), *(_sse(e) for e in LOG[after:3])]))

    real_client = httpx.Client
    transport = httpx.MockTransport(stream)
    monkeypatch.setattr(output.httpx, "request", recent)
    monkeypatch.setattr(
        httpx, "Client", lambda **kw: real_client(transport=transport, timeout=kw["timeout"])
    )
    result = CliRunner().invoke(app, ["events", "-o", "json", "--api", "http://a", "--token", "t"])

    assert result.exit_code == 0, result.output
    printed = [json.loads(line)["data"]["network"] for line in result.stdout.splitlines()]
    assert printed == ["n1", "n2", "n3"] and asked[0] == 2
