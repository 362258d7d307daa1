"""ControllerClient.bind with ``on_bound``: the streamed create-and-bind is read line by line,
each line handed over as it arrives (httpx's MockTransport: a real client, a scripted server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hostagent.client import ControllerClient, ControllerError
from hostagent.model import Endpoint


def _ep(state: str) -> dict[str, Any]:
    return {
        "network": "blue", "name": "a", "ip": "10.0.0.2", "prefixlen": 24,
        "gateway": "10.0.0.1", "mac": "0a:58:0a:00:00:02", "vni": 1, "host": "h1",
        "ofport": 5, "port_name": "vx1", "state": state, "revision": 3,
    }  # fmt: skip


def _client(handler: Any) -> ControllerClient:
    client = ControllerClient("http://ctl.test")
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    return client


def test_first_line_is_handed_over_before_the_second_is_sent() -> None:
    got: list[str] = []
    seen_when_second_sent: list[list[str]] = []
    asked: list[httpx.Request] = []

    def body() -> Iterator[bytes]:
        yield json.dumps(_ep("pending")).encode() + b"\n"
        seen_when_second_sent.append(list(got))  # the client asks for more only after it
        yield json.dumps(_ep("ready")).encode() + b"\n"

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(201, headers={"content-type": "application/x-ndjson"}, content=body())

    ep, created = _client(handler).bind(
        "blue", "a", "h1", 5, "vx1", create=True, wait_ready=2.0,
        on_bound=lambda e: got.append(e.state),
    )  # fmt: skip

    assert seen_when_second_sent == [["pending"]] and got == ["pending", "ready"]
    assert isinstance(ep, Endpoint) and ep.ready and created
    assert dict(asked[0].url.params) == {"wait_ready": "2.0", "create": "true", "stream": "true"}


def test_a_controller_that_does_not_stream_answers_once() -> None:
    got: list[Endpoint] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_ep("ready"))  # an older controller ignores stream=

    ep, created = _client(handler).bind(
        "blue", "a", "h1", 5, create=True, wait_ready=2.0, on_bound=got.append
    )
    assert ep.ready and not created and got == []


def test_errors_of_a_streamed_bind_are_raised_as_usual() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"detail": "taken", "endpoint": _ep("ready")})

    with pytest.raises(ControllerError) as err:
        _client(handler).bind("blue", "a", "h1", 5, wait_ready=2.0, on_bound=lambda e: None)
    assert err.value.status == 409 and err.value.endpoint is not None


def test_without_wait_ready_no_stream_is_asked_for() -> None:
    asked: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json=_ep("pending"))

    _client(handler).bind("blue", "a", "h1", 5, on_bound=lambda e: None)
    assert "stream" not in asked[0].url.params
