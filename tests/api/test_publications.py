"""Publications: publish a host port to an external network's endpoint, list where it is
reachable as the endpoint moves, taken host ports, bad input, unpublish."""

from __future__ import annotations

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

NETS = "/api/v1/networks"
PUBS = "/api/v1/networks/shop/publications"


@pytest.fixture
def shop(client: TestClient) -> TestClient:
    """Network shop (external) with endpoint web, hosts h1 and h2 with egress addresses."""
    for i in (1, 2):
        body = {"underlay_ip": f"198.18.0.{i}", "egress_ip": f"198.18.0.10{i}", "gateway_port": 2}
        assert client.put(f"/api/v1/hosts/h{i}", json=body).status_code == 200
    body = {"name": "shop", "subnet": "10.5.0.0/24", "external": True}
    assert client.post(NETS, json=body).status_code == 201
    assert client.post(f"{NETS}/shop/endpoints", json={"name": "web"}).status_code == 201
    return client


def bind(client: TestClient, host: str, ofport: int) -> None:
    body = {"host": host, "ofport": ofport, "move": True}
    r = client.put(f"{NETS}/shop/endpoints/web/binding", json=body)
    assert r.status_code in (200, 201), r.text


def test_publish_list_follow_and_unpublish(shop: TestClient, sync: RecordingSync) -> None:
    before = len(sync.notified)
    r = shop.post(PUBS, json={"endpoint": "web", "host_port": 8080, "port": 80})
    assert r.status_code == 201, r.text
    pub = r.json()
    assert (pub["host_port"], pub["port"], pub["proto"]) == (8080, 80, "tcp")
    assert (pub["host"], pub["address"]) == (None, None)  # not bound anywhere yet
    assert len(sync.notified) == before + 1

    bind(shop, "h1", 5)
    (listed,) = shop.get(PUBS).json()
    assert (listed["host"], listed["address"]) == ("h1", "198.18.0.101")
    bind(shop, "h2", 7)  # it follows its endpoint
    (listed,) = shop.get(PUBS).json()
    assert (listed["host"], listed["address"]) == ("h2", "198.18.0.102")

    udp = shop.post(PUBS, json={"endpoint": "web", "host_port": 8080, "port": 53, "proto": "udp"})
    assert udp.status_code == 201  # the same number for the other protocol
    assert [p["proto"] for p in shop.get(PUBS).json()] == ["tcp", "udp"]

    assert shop.delete(f"{PUBS}/tcp/8080").status_code == 204
    assert shop.delete(f"{PUBS}/tcp/8080").status_code == 404
    assert [p["proto"] for p in shop.get(PUBS).json()] == ["udp"]


def test_a_taken_host_port_is_409_wherever_it_is_taken(shop: TestClient) -> None:
    assert (
        shop.post(PUBS, json={"endpoint": "web", "host_port": 8080, "port": 80}).status_code == 201
    )
    body = {"name": "other", "subnet": "10.6.0.0/24", "external": True}
    shop.post(NETS, json=body)
    shop.post(f"{NETS}/other/endpoints", json={"name": "api"})
    again = shop.post(f"{NETS}/other/publications", json={"endpoint": "api", "host_port": 8080,
                                                          "port": 9000})  # fmt: skip
    assert again.status_code == 409 and "shop/web" in again.json()["detail"]
    assert shop.get(f"{NETS}/other/publications").json() == []


def test_refusals(shop: TestClient) -> None:
    ok = {"endpoint": "web", "host_port": 8080, "port": 80}
    assert shop.post(f"{NETS}/nope/publications", json=ok).status_code == 404
    assert shop.post(PUBS, json={**ok, "endpoint": "ghost"}).status_code == 404
    shop.post(NETS, json={"name": "sealed", "subnet": "10.7.0.0/24"})
    shop.post(f"{NETS}/sealed/endpoints", json={"name": "web"})
    sealed = shop.post(f"{NETS}/sealed/publications", json=ok)
    assert sealed.status_code == 409 and "external" in sealed.json()["detail"]
    for bad in (
        {**ok, "host_port": 0},
        {**ok, "host_port": 32768},  # the gateway's source ports
        {**ok, "port": 65536},
        {**ok, "proto": "sctp"},
        {**ok, "host_port": "8080"},
        {"endpoint": "web", "port": 80},
        {**ok, "extra": 1},
    ):
        assert shop.post(PUBS, json=bad).status_code == 422, bad
    assert shop.get(PUBS).json() == []  # nothing half-made
    assert shop.get(f"{NETS}/nope/publications").status_code == 404
    assert shop.delete(f"{PUBS}/sctp/8080").status_code == 422


def test_a_network_takes_its_publications_with_it(shop: TestClient) -> None:
    shop.post(PUBS, json={"endpoint": "web", "host_port": 8080, "port": 80})
    assert shop.delete(f"{NETS}/shop").status_code == 204
    body = {"name": "shop", "subnet": "10.5.0.0/24", "external": True}
    shop.post(NETS, json=body)
    shop.post(f"{NETS}/shop/endpoints", json={"name": "web"})
    assert shop.get(PUBS).json() == []
    assert (
        shop.post(PUBS, json={"endpoint": "web", "host_port": 8080, "port": 80}).status_code == 201
    )


def test_the_same_publication_again_is_found_and_a_conditional_unpublish_spares_others(
    shop: TestClient, sync: RecordingSync
) -> None:
    ok = {"endpoint": "web", "host_port": 8080, "port": 80}
    assert shop.post(PUBS, json=ok).status_code == 201
    before = len(sync.notified)
    again = shop.post(PUBS, json=ok)  # a runtime programming the same port twice
    assert again.status_code == 200 and again.json()["host_port"] == 8080
    assert len(sync.notified) == before  # nothing written
    assert shop.post(PUBS, json={**ok, "port": 81}).status_code == 409  # another target
    spared = shop.delete(f"{PUBS}/tcp/8080", params={"endpoint": "api"})
    assert spared.status_code == 409 and "'web'" in spared.json()["detail"]
    assert [p["endpoint"] for p in shop.get(PUBS).json()] == ["web"]
    assert shop.delete(f"{PUBS}/tcp/8080", params={"endpoint": "web"}).status_code == 204
    assert shop.get(PUBS).json() == []


def test_a_dual_stack_publication_gives_the_hosts_ipv6_egress_address(client: TestClient) -> None:
    body = {"underlay_ip": "198.18.0.1", "egress_ip": "198.18.0.101", "gateway_port": 2,
            "egress_ip6": "fdfa::c612:65"}  # fmt: skip
    assert client.put("/api/v1/hosts/h1", json=body).status_code == 200
    for name, six in (("shop", "fd00:5::/64"), ("plain", None)):
        net = {"name": name, "subnet": "10.5.0.0/24", "external": True, "subnet6": six}
        assert client.post(NETS, json=net).status_code == 201
        assert client.post(f"{NETS}/{name}/endpoints", json={"name": "web"}).status_code == 201
        bind_to = {"host": "h1", "ofport": 5 if six else 6}
        r = client.put(f"{NETS}/{name}/endpoints/web/binding", json=bind_to)
        assert r.status_code in (200, 201), r.text
    r = client.post(PUBS, json={"endpoint": "web", "host_port": 8080, "port": 80})
    assert r.status_code == 201, r.text
    assert (r.json()["address"], r.json()["address6"]) == ("198.18.0.101", "fdfa::c612:65")
    r = client.post(f"{NETS}/plain/publications", json={"endpoint": "web", "host_port": 8081,
                                                        "port": 80})  # fmt: skip
    assert (r.json()["address"], r.json()["address6"]) == ("198.18.0.101", None)  # IPv4 only
