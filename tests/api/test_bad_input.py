"""Issue 8's bad inputs: each is answered 4xx with a clear message and changes nothing."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

NETS = "/api/v1/networks"
EPS = f"{NETS}/n/endpoints"
HOSTS = "/api/v1/hosts"


@pytest.fixture
def world(client: TestClient) -> TestClient:
    """A /24 network ``n`` and host h1 (tunnel port 1)."""
    assert client.post(NETS, json={"name": "n", "subnet": "10.0.0.0/24"}).is_success
    assert client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1"}).is_success
    return client


def _detail(resp: object) -> str:
    detail = resp.json()["detail"]  # type: ignore[attr-defined]
    assert isinstance(detail, str)
    return detail


@pytest.mark.parametrize(
    ("subnet", "words"),
    [
        ("255.255.255.255/32", "too small"),  # answered 500 before
        ("0.0.0.0/1", "'this network'"),
        ("126.0.0.0/7", "loopback"),
        ("127.0.0.0/24", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("169.0.0.0/8", "link-local"),
        ("224.0.0.0/24", "multicast"),
        ("192.0.0.0/2", "multicast"),
        ("255.255.255.0/24", "reserved and broadcast"),
    ],
)
def test_special_purpose_subnets_are_refused(
    client: TestClient, sync: RecordingSync, subnet: str, words: str
) -> None:
    r = client.post(NETS, json={"name": "x", "subnet": subnet})
    assert r.status_code == 422, r.text
    assert words in _detail(r) and subnet in _detail(r)
    assert client.get(NETS).json() == [] and sync.notified == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("vni", True), ("vni", 7.0), ("vni", "7"), ("block_prefix", True), ("block_prefix", 26.0)],
)
def test_network_numbers_are_strict_integers(client: TestClient, field: str, value: object) -> None:
    r = client.post(NETS, json={"name": "x", "subnet": "10.0.0.0/24", field: value})
    assert r.status_code == 422, r.text  # "vni": true became vni 1 before
    assert field in _detail(r)
    assert client.get(NETS).json() == []


@pytest.mark.parametrize(
    ("ip", "words"),
    [
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("224.0.0.1", "multicast"),
        ("127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("240.0.0.1", "reserved"),
        ("0.1.2.3", "this network"),
    ],
)
def test_underlay_ip_must_be_unicast(client: TestClient, ip: str, words: str) -> None:
    r = client.put(f"{HOSTS}/h1", json={"underlay_ip": ip})
    assert r.status_code == 422, r.text
    assert words in _detail(r) and ip in _detail(r)
    assert client.get(HOSTS).json() == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"ofport": 65280}, "ofport"),  # OVS stops at 65279
        ({"ofport": 0xFFFFFF00}, "ofport"),
        ({"ofport": True}, "ofport"),
        ({"ofport": 5, "port_name": "vx\x00evil"}, "control characters"),
        ({"ofport": 5, "port_name": "vx\nx"}, "control characters"),
        ({"ofport": 5, "port_name": "a b"}, "white space"),
    ],
)
def test_bind_refuses_bad_ports(world: TestClient, body: dict[str, object], words: str) -> None:
    world.post(EPS, json={"name": "web"})
    r = world.put(f"{EPS}/web/binding", json={"host": "h1", **body})
    assert r.status_code == 422, r.text
    assert words in _detail(r)
    assert world.get(f"{EPS}/web").json()["state"] == "reserved"


def test_highest_ofport_ovs_takes_is_accepted(world: TestClient) -> None:
    world.post(EPS, json={"name": "web"})
    r = world.put(f"{EPS}/web/binding", json={"host": "h1", "ofport": 65279})
    assert r.status_code == 200, r.text


def test_tunnel_port_beyond_ovs_range_is_refused(client: TestClient) -> None:
    r = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "tunnel_port": 65280})
    assert r.status_code == 422 and "tunnel_port" in _detail(r), r.text


@pytest.mark.parametrize("name", ["a/../b", "a/./b", "a/..", "a/.", "../b", "./a"])
def test_dot_segments_in_endpoint_names_are_refused(world: TestClient, name: str) -> None:
    r = world.post(EPS, json={"name": name})
    assert r.status_code == 422, r.text
    assert "not a valid endpoint name" in _detail(r)
    bind = world.put(
        f"{EPS}/{quote(name, safe='')}/binding?create=true", json={"host": "h1", "ofport": 5}
    )
    assert bind.status_code == 422, bind.text
    assert world.get("/api/v1/endpoints").json() == []


def test_dots_inside_segments_are_still_names(world: TestClient) -> None:
    for name in ("a.b/c..d", "web.1", "ns/..x", "x../y"):
        assert world.post(EPS, json={"name": name}).status_code == 201, name


def test_create_and_bind_checks_the_name_from_the_url(world: TestClient) -> None:
    r = world.put(f"{EPS}/{quote('-x y', safe='')}/binding?create=true", json={
        "host": "h1", "ofport": 5
    })  # fmt: skip
    assert r.status_code == 422 and "not a valid endpoint name" in _detail(r), r.text


@pytest.mark.parametrize("header", ["\u00b2", "1" * 5000, "-1", "1e3", "9223372036854775808"])
def test_bad_last_event_id_is_422(client: TestClient, header: str) -> None:
    r = client.get("/api/v1/events", headers={"Last-Event-ID": header.encode()})
    assert r.status_code == 422, r.text
    assert "Last-Event-ID" in _detail(r) and "not an event id" in _detail(r)


@pytest.mark.parametrize("after", ["1" * 5000, "\u00b2", str(2**63)])
def test_bad_after_is_422(client: TestClient, after: str) -> None:
    for path in ("/api/v1/events", "/api/v1/events/recent"):
        r = client.get(path, params={"after": after})
        assert r.status_code == 422, r.text
