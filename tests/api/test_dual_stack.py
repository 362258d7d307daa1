"""Dual stack (issue 11 item 3): ``subnet6`` on networks, ``ip6`` on every endpoint
representation, derived (prefix + IPv4 as the low 32 bits) and so the same on any host."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

NETS = "/api/v1/networks"
EPS = "/api/v1/networks/blue/endpoints"


@pytest.fixture
def dual(client: TestClient) -> TestClient:
    """Network blue 10.1.0.0/24 + fd00:10::/64, hosts h1 and h2."""
    r = client.post(NETS, json={"name": "blue", "subnet": "10.1.0.0/24", "subnet6": "fd00:10::/64"})
    assert r.status_code == 201, r.text
    for i in (1, 2):
        assert client.put(f"/api/v1/hosts/h{i}", json={"underlay_ip": f"198.18.0.{i}"}).is_success
    return client


def test_network_shows_subnet6_and_gateway6(dual: TestClient) -> None:
    body = dual.get(f"{NETS}/blue").json()
    assert (body["subnet6"], body["gateway6"]) == ("fd00:10::/64", "fd00:10::a01:1")
    assert dual.get(NETS).json()[0]["subnet6"] == "fd00:10::/64"


def test_gateway6_follows_a_given_ipv4_gateway(client: TestClient) -> None:
    r = client.post(
        NETS,
        json={
            "name": "g",
            "subnet": "10.2.0.0/16",
            "gateway": "10.2.255.254",
            "subnet6": "fd00:2::/96",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["gateway6"] == "fd00:2::a02:fffe"


def test_ipv4_only_network_has_no_ipv6(client: TestClient) -> None:
    client.post(NETS, json={"name": "v4", "subnet": "10.3.0.0/24"})
    assert client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"}).is_success
    net = client.get(f"{NETS}/v4").json()
    assert net["subnet6"] is None and net["gateway6"] is None
    ep = client.put(
        f"{NETS}/v4/endpoints/a/binding?create=true", json={"host": "h1", "ofport": 5}
    ).json()
    assert ep["ip6"] is None and ep["prefixlen6"] is None


def test_every_endpoint_representation_carries_ip6(dual: TestClient) -> None:
    created = dual.post(EPS, json={"name": "web", "ip": "10.1.0.5"})
    assert created.status_code == 201, created.text
    assert created.json()["ip6"] == "fd00:10::a01:5"
    bound = dual.put(f"{EPS}/db/binding?create=true", json={"host": "h1", "ofport": 7})
    assert bound.status_code == 201, bound.text
    db = bound.json()
    assert db["ip6"] == "fd00:10::" + _low(db["ip"])
    assert (db["prefixlen6"], db["gateway6"]) == (64, "fd00:10::a01:1")
    assert dual.get(f"{EPS}/web").json()["ip6"] == "fd00:10::a01:5"
    listed = {e["name"]: e["ip6"] for e in dual.get("/api/v1/endpoints").json()}
    assert listed == {"web": "fd00:10::a01:5", "db": db["ip6"]}
    batch = dual.post(
        "/api/v1/bindings",
        json={"items": [{"network": "blue", "name": "web", "host": "h2", "ofport": 9}]},
    ).json()["items"][0]
    assert batch["endpoint"]["ip6"] == "fd00:10::a01:5"


def test_same_name_keeps_its_ipv6_address_when_it_moves(dual: TestClient) -> None:
    first = dual.put(f"{EPS}/app/binding?create=true", json={"host": "h1", "ofport": 4}).json()
    moved = dual.put(f"{EPS}/app/binding", json={"host": "h2", "ofport": 8, "move": True})
    assert moved.status_code == 200, moved.text
    assert moved.json()["host"] == "h2" and moved.json()["ip6"] == first["ip6"]
    assert dual.delete(f"{EPS}/app/binding").status_code in (200, 204)
    again = dual.put(f"{EPS}/app/binding?create=true", json={"host": "h1", "ofport": 4}).json()
    assert again["ip6"] == first["ip6"]


def _low(ipv4: str) -> str:
    a, b, c, d = (int(x) for x in ipv4.split("."))
    return f"{a * 256 + b:x}:{c * 256 + d:x}"


@pytest.mark.parametrize(
    ("subnet6", "status", "words"),
    [
        ("fd00:10::/97", 422, "too long: use a prefix of /96 or shorter"),
        ("fd00:10::/128", 422, "too long"),
        ("fd00:10::1/64", 422, "host bits set: did you mean fd00:10::/64"),
        ("fd00:10::", 422, "no prefix length"),
        ("banana/64", 422, "not an IPv6 subnet"),
        ("fd00:10::/129", 422, "not an IPv6 subnet"),
        ("10.0.0.0/24", 422, "not an IPv6 subnet"),
        ("fe80::/64", 422, "link-local"),
        ("ff02::/64", 422, "multicast"),
        ("::ffff:0:0/96", 422, "reserved"),
        ("::/0", 422, "reserved"),
        ("fd00:10::/64", 409, "overlaps fd00:10::/64 of network 'blue'"),
        ("fd00:10::/96", 409, "overlaps"),
        ("fd00::/16", 409, "overlaps"),
    ],
)
def test_bad_subnet6_is_refused_and_nothing_is_made(
    dual: TestClient, subnet6: str, status: int, words: str
) -> None:
    r = dual.post(NETS, json={"name": "red", "subnet": "10.9.0.0/24", "subnet6": subnet6})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert dual.get(f"{NETS}/red").status_code == 404


def test_subnet6_must_be_a_string(client: TestClient) -> None:
    r = client.post(NETS, json={"name": "x", "subnet": "10.0.0.0/24", "subnet6": 64})
    assert r.status_code == 422


def test_ipv4_subnets_may_still_repeat_with_distinct_subnet6(dual: TestClient) -> None:
    r = dual.post(NETS, json={"name": "red", "subnet": "10.1.0.0/24", "subnet6": "fd00:11::/64"})
    assert r.status_code == 201, r.text
    assert r.json()["gateway6"] == "fd00:11::a01:1"


def test_patch_makes_a_network_dual_stack_and_ipv4_only_again(client: TestClient) -> None:
    client.post(NETS, json={"name": "late", "subnet": "10.7.0.0/24"})
    client.post(NETS, json={"name": "other", "subnet": "10.8.0.0/24", "subnet6": "fd00:8::/64"})
    assert client.post(f"{NETS}/late/endpoints", json={"name": "e", "ip": "10.7.0.9"}).is_success
    assert client.get(f"{NETS}/late/endpoints/e").json()["ip6"] is None
    before = client.get("/healthz").json()["revision"]
    r = client.patch(f"{NETS}/late", json={"subnet6": "fd00:7::/64"})
    assert r.status_code == 200, r.text
    assert (r.json()["subnet6"], r.json()["gateway6"]) == ("fd00:7::/64", "fd00:7::a07:1")
    assert client.get(f"{NETS}/late/endpoints/e").json()["ip6"] == "fd00:7::a07:9"
    assert client.get("/healthz").json()["revision"] == before + 1  # the dataplane changes
    same = client.patch(f"{NETS}/late", json={"subnet6": "fd00:7::/64"})  # no change
    assert same.status_code == 200 and client.get("/healthz").json()["revision"] == before + 1
    assert client.patch(f"{NETS}/late", json={"external": False}).json()["subnet6"] == "fd00:7::/64"
    for bad, status in (("fd00:8::/80", 409), ("fd00:7::/97", 422), ("fe80::/64", 422)):
        r = client.patch(f"{NETS}/late", json={"subnet6": bad})
        assert r.status_code == status, r.text
    assert client.get(f"{NETS}/late").json()["subnet6"] == "fd00:7::/64"  # nothing half-made
    r = client.patch(f"{NETS}/late", json={"subnet6": None})
    assert r.status_code == 200 and r.json()["subnet6"] is None and r.json()["gateway6"] is None
    assert client.get(f"{NETS}/late/endpoints/e").json()["ip6"] is None
    assert client.patch(f"{NETS}/nope", json={"subnet6": "fd00:9::/64"}).status_code == 404
