"""Paging of every list route (``limit``, ``after``, ``Link: rel="next"``) and the clients in
the tree that follow it: the agent's client, the CLI, the lab's helper."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hostagent.client import ControllerClient
from vxcommon.paging import collect, next_url
from vxlab.launch import get_all

NETS = "/api/v1/networks"


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


@pytest.fixture
def many(client: TestClient) -> TestClient:
    """5 networks, 5 hosts, endpoints in two networks (names with '/' included)."""
    for n in ("n4", "n1", "n3", "n0", "n2"):
        assert client.post(NETS, json={"name": n, "subnet": f"10.{n[1]}.0.0/24"}).status_code == 201
    for i in (3, 1, 4, 0, 2):
        client.put(f"/api/v1/hosts/h{i}", json={"underlay_ip": f"198.18.0.{i + 1}"})
    for net in ("n1", "n0"):
        for ep in ("b", "a/x", "a", "c"):
            client.post(f"{NETS}/{net}/endpoints", json={"name": ep})
    return client


def test_a_list_is_paged_with_a_link_to_the_next_page(many: TestClient) -> None:
    r = many.get(NETS, params={"limit": 2})
    assert r.status_code == 200 and names(r.json()) == ["n0", "n1"]
    assert r.headers["link"] == f'<{NETS}?limit=2&after=n1>; rel="next"'
    r = many.get(next_url(r.headers["link"]))  # type: ignore[arg-type]
    assert names(r.json()) == ["n2", "n3"]
    r = many.get(next_url(r.headers["link"]))  # type: ignore[arg-type]
    assert names(r.json()) == ["n4"] and "link" not in r.headers
    whole = many.get(NETS)
    assert names(whole.json()) == ["n0", "n1", "n2", "n3", "n4"] and "link" not in whole.headers


@pytest.mark.parametrize("path", [NETS, "/api/v1/hosts", "/api/v1/endpoints"])
def test_every_list_route_pages_in_a_stable_order(many: TestClient, path: str) -> None:
    whole = many.get(path).json()
    assert len(whole) >= 5
    for limit in (1, 2, 3):
        paged = collect(lambda u, p: many.get(u, params=p), path, {"limit": limit})
        assert paged == whole


def test_endpoints_page_by_network_then_name_and_keep_their_filters(many: TestClient) -> None:
    r = many.get("/api/v1/endpoints", params={"network": "n1", "limit": 2})
    assert [(e["network"], e["name"]) for e in r.json()] == [("n1", "a"), ("n1", "a/x")]
    assert next_url(r.headers["link"]) == "/api/v1/endpoints?network=n1&limit=2&after=n1%2Fa%2Fx"
    rest = collect(lambda u, p: many.get(u, params=p), next_url(r.headers["link"]))  # type: ignore[arg-type]
    assert [(e["network"], e["name"]) for e in rest] == [("n1", "b"), ("n1", "c")]
    across = many.get("/api/v1/endpoints", params={"after": "n0/c"}).json()
    assert [(e["network"], e["name"]) for e in across][:1] == [("n1", "a")]


def test_history_is_paged_newest_first(many: TestClient) -> None:
    ep = f"{NETS}/n0/endpoints/a/binding"
    for i in range(5):
        many.put(ep, json={"host": f"h{i}", "ofport": 10 + i, "move": True})
    whole = many.get(f"{NETS}/n0/endpoints/a/history").json()
    assert [m["host"] for m in whole] == ["h4", "h3", "h2", "h1", "h0"]
    paged = collect(
        lambda u, p: many.get(u, params=p), f"{NETS}/n0/endpoints/a/history", {"limit": 2}
    )
    assert paged == whole


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "query parameter limit: Input should be greater than or equal to 1"),
        ({"limit": 10001}, "query parameter limit: Input should be less than or equal to 10000"),
        ({"limit": "many"}, "query parameter limit: Input should be a valid integer"),
    ],
)
@pytest.mark.parametrize("path", [NETS, "/api/v1/hosts", "/api/v1/endpoints"])
def test_a_limit_out_of_range_is_422(
    many: TestClient, path: str, params: dict[str, Any], message: str
) -> None:
    r = many.get(path, params=params)
    assert r.status_code == 422 and r.json()["detail"].startswith(message), r.text


def test_an_endpoint_key_without_its_network_is_422(many: TestClient) -> None:
    r = many.get("/api/v1/endpoints", params={"after": "web"})
    assert r.status_code == 422 and "write it as network/name" in r.json()["detail"]


def test_limits_of_10000_and_the_default_answer(many: TestClient) -> None:
    assert names(many.get(NETS, params={"limit": 10000}).json())[-1] == "n4"


def test_next_url_reads_the_link_header() -> None:
    assert next_url('</a?after=x>; rel="next"') == "/a?after=x"
    assert next_url('</p>; rel="prev", </n?after=y>; rel=next') == "/n?after=y"
    assert next_url('</p>; rel="prev"') is None and next_url(None) is None


def test_the_lab_helper_follows_the_pages(many: TestClient) -> None:
    assert names(get_all(many, NETS, {"limit": 2})) == ["n0", "n1", "n2", "n3", "n4"]


def test_the_agents_client_follows_the_pages() -> None:
    """1,001 endpoints behind a fake controller that pages them by 1,000."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        after = request.url.params.get("after")
        start = 0 if after is None else int(after.split("/e")[1]) + 1
        docs = [_endpoint(i) for i in range(start, min(start + 1000, 1001))]
        headers = {}
        if start + 1000 < 1001:
            headers["Link"] = f'</api/v1/endpoints?host=h1&after=n/e{start + 999}>; rel="next"'
        return httpx.Response(200, json=docs, headers=headers)

    client = ControllerClient("http://ctl")
    client._http = httpx.Client(base_url="http://ctl", transport=httpx.MockTransport(handler))
    endpoints = client.list_endpoints(host="h1")
    assert len(endpoints) == 1001 and endpoints[-1].name == "e1000"
    assert seen == [
        "http://ctl/api/v1/endpoints?host=h1",
        "http://ctl/api/v1/endpoints?host=h1&after=n/e999",
    ]


def _endpoint(i: int) -> dict[str, Any]:
    return {
        "network": "n", "name": f"e{i}", "ip": "10.0.0.2", "mac": "0a:58:0a:00:00:02",
        "prefixlen": 24, "gateway": "10.0.0.1", "vni": 7, "host": "h1", "ofport": 1,
        "port_name": None, "state": "ready", "revision": 1, "labels": {},
    }  # fmt: skip


def test_the_cli_follows_the_pages(many: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """``vxplane network ls`` and ``endpoint ls`` read every page (pages of 2 here)."""
    from controller.cli import output
    from controller.cli.main import app

    def request(method: str, url: str, timeout: float, **kw: Any) -> httpx.Response:
        url = url.removeprefix("http://ctl")
        kw.pop("verify", None)  # the TLS option of a real request
        if "limit=" not in url:
            kw["params"] = {**(kw.get("params") or {}), "limit": 2}
        return many.request(method, url, **kw)

    monkeypatch.setattr(output.httpx, "request", request)
    result = CliRunner().invoke(app, ["network", "ls", "--api", "http://ctl", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert names(json.loads(result.output)) == ["n0", "n1", "n2", "n3", "n4"]
    result = CliRunner().invoke(app, ["endpoint", "ls", "--api", "http://ctl", "-o", "json"])
    assert len(json.loads(result.output)) == 8
    for role in ("viewer", "viewer", "admin"):
        assert many.post("/api/v1/tokens", json={"role": role}).status_code == 201
    every = many.get("/api/v1/tokens", params={"limit": 10000}).json()
    assert len(every) >= 4
    result = CliRunner().invoke(app, ["token", "ls", "--api", "http://ctl", "-o", "json"])
    assert result.exit_code == 0, result.output
    assert [t["id"] for t in json.loads(result.output)] == [t["id"] for t in every]


def test_tokens_are_paged_oldest_first(many: TestClient) -> None:
    for role in ("viewer", "viewer", "admin", "viewer"):
        assert many.post("/api/v1/tokens", json={"role": role}).status_code == 201
    whole = many.get("/api/v1/tokens").json()
    assert len(whole) >= 5 and "link" not in many.get("/api/v1/tokens").headers
    for limit in (1, 2, 3):
        paged = collect(lambda u, p: many.get(u, params=p), "/api/v1/tokens", {"limit": limit})
        assert paged == whole
    r = many.get("/api/v1/tokens", params={"after": "nosuchtoken"})
    assert r.status_code == 422 and "no token 'nosuchtoken'" in r.json()["detail"]
