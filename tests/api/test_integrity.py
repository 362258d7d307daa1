"""Issue 8's integrity findings through the API: one endpoint per host port, the tunnel port
reserved, conditional deletes, reclaiming reservations only when the network allows it, and
the cluster id of the registration answer."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

NETS = "/api/v1/networks"
HOSTS = "/api/v1/hosts"


def _eps(network: str) -> str:
    return f"{NETS}/{network}/endpoints"


@pytest.fixture
def world(client: TestClient) -> TestClient:
    """Networks ``blue`` and ``red`` (/24) and hosts h1, h2 (tunnel port 1)."""
    for i, name in enumerate(("blue", "red"), start=1):
        assert client.post(NETS, json={"name": name, "subnet": f"10.{i}.0.0/24"}).is_success
    for i in (1, 2):
        assert client.put(f"{HOSTS}/h{i}", json={"underlay_ip": f"198.18.0.{i}"}).is_success
    return client


def _bind(client: TestClient, network: str, name: str, host: str, ofport: int, **extra: Any) -> Any:
    return client.put(
        f"{_eps(network)}/{name}/binding?create=true",
        json={"host": host, "ofport": ofport, **extra},
    )


def _state(client: TestClient) -> Any:
    return (
        client.get("/api/v1/endpoints").json(),
        client.get("/healthz").json()["revision"],
    )


def test_one_port_serves_one_endpoint(world: TestClient, sync: RecordingSync) -> None:
    """Before: one port was bound to endpoints of two networks (both 200)."""
    assert _bind(world, "blue", "web", "h1", 5).status_code == 201
    before, notified = _state(world), list(sync.notified)
    r = _bind(world, "red", "evil", "h1", 5)
    assert r.status_code == 409, r.text
    assert (
        "ofport 5 of host 'h1' is bound to endpoint 'web' of network 'blue'" in r.json()["detail"]
    )
    assert _state(world) == before and sync.notified == notified
    world.post(_eps("red"), json={"name": "evil2"})
    assert (
        world.put(f"{_eps('red')}/evil2/binding", json={"host": "h1", "ofport": 5}).status_code
        == 409
    )
    # the same number on another host, or the same endpoint again, is fine
    assert _bind(world, "red", "evil", "h2", 5).status_code == 201
    assert _bind(world, "blue", "web", "h1", 5).status_code == 200
    # once unbound, the port is free again
    world.delete(f"{_eps('blue')}/web/binding")
    assert _bind(world, "red", "evil", "h1", 5, move=True).status_code == 200


def test_moving_within_a_host_frees_the_old_port(world: TestClient) -> None:
    assert _bind(world, "blue", "a", "h1", 5).status_code == 201
    assert _bind(world, "blue", "a", "h1", 6, move=True).status_code == 200
    assert _bind(world, "blue", "b", "h1", 5).status_code == 201


def test_the_tunnel_port_is_reserved(world: TestClient, sync: RecordingSync) -> None:
    """Before: a bind to the VXLAN port's number was accepted (a table-0 flow then took tunnel
    traffic from any underlay source into the network)."""
    before, notified = _state(world), list(sync.notified)
    r = _bind(world, "blue", "web", "h1", 1)
    assert r.status_code == 409, r.text
    assert "ofport 1 of host 'h1' is its VXLAN tunnel port" in r.json()["detail"]
    assert _state(world) == before and sync.notified == notified


def test_a_new_tunnel_port_unbinds_what_was_bound_to_it(world: TestClient) -> None:
    assert _bind(world, "blue", "web", "h1", 7).status_code == 201
    assert _bind(world, "blue", "db", "h1", 8).status_code == 201
    r = world.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "tunnel_port": 7})
    assert r.status_code == 200 and r.json()["tunnel_port"] == 7
    web = world.get(f"{_eps('blue')}/web").json()
    assert (web["host"], web["ofport"], web["state"]) == (None, None, "reserved")
    assert world.get(f"{_eps('blue')}/db").json()["host"] == "h1"
    kinds = [e["type"] for e in world.get("/api/v1/events/recent").json()["events"]][-2:]
    assert kinds == ["host.updated", "endpoint.unbound"]
    assert _bind(world, "blue", "web", "h1", 7).status_code == 409


# Conditional deletes


def test_delete_if_unbound_refuses_a_bound_endpoint(world: TestClient) -> None:
    """CNI DEL and the Docker driver delete only an unbound endpoint, in the deleting
    transaction: a bind that came in between keeps its address."""
    assert _bind(world, "blue", "web", "h1", 5).status_code == 201
    r = world.delete(f"{_eps('blue')}/web", params={"if_unbound": "true"})
    assert r.status_code == 409, r.text
    body = r.json()
    assert "bound to host 'h1'" in body["detail"] and "if_unbound" in body["detail"]
    assert body["endpoint"]["host"] == "h1" and body["endpoint"]["ip"] == "10.1.0.2"
    assert world.get(f"{_eps('blue')}/web").json()["state"] != "reserved"
    world.delete(f"{_eps('blue')}/web/binding")
    assert world.delete(f"{_eps('blue')}/web", params={"if_unbound": "true"}).status_code == 204
    assert world.get(f"{_eps('blue')}/web").status_code == 404


def test_delete_if_revision(world: TestClient) -> None:
    made = _bind(world, "blue", "web", "h1", 5).json()
    r = world.delete(f"{_eps('blue')}/web", params={"if_revision": made["revision"] - 1})
    assert r.status_code == 409 and r.json()["endpoint"]["revision"] == made["revision"]
    assert world.get(f"{_eps('blue')}/web").status_code == 200
    r = world.delete(f"{_eps('blue')}/web", params={"if_revision": made["revision"]})
    assert r.status_code == 204


def test_delete_conditions_in_the_openapi(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/api/v1/networks/{network}/endpoints/{name}"]
    params = {p["name"] for p in op["delete"]["parameters"]}
    assert {"if_unbound", "if_revision"} <= params and "409" in op["delete"]["responses"]


# Reservations


def _fill(client: TestClient, network: str, count: int) -> list[int]:
    return [client.post(_eps(network), json={"name": f"e{i}"}).status_code for i in range(count)]


def test_a_full_subnet_keeps_reservations_by_default(client: TestClient) -> None:
    """Before: 2,000 creates in a /24 all answered 201, each silently evicting the oldest."""
    assert client.post(NETS, json={"name": "n", "subnet": "10.5.0.0/24"}).json()["reclaim"] is False
    statuses = _fill(client, "n", 300)
    assert statuses == [201] * 253 + [409] * 47
    r = client.post(_eps("n"), json={"name": "late"})
    detail = r.json()["detail"]
    assert "subnet 10.5.0.0/24 of network 'n' is exhausted" in detail
    assert "253 of them by unbound reservations" in detail and "--reclaim" in detail
    assert client.get(f"{_eps('n')}/e0").status_code == 200  # nobody was evicted
    assert client.get(f"{NETS}/n").json()["endpoints"] == 253


def test_reclaim_on_takes_back_the_oldest_reservation(client: TestClient) -> None:
    body = {"name": "n", "subnet": "10.5.0.0/29", "reclaim": True, "reservation_ttl": 0}
    net = client.post(NETS, json=body).json()
    assert (net["reclaim"], net["reservation_ttl"]) == (True, 0)
    assert _fill(client, "n", 8) == [201] * 8
    # .2 to .6 are usable: e5, e6 and e7 took the addresses of e0, e1 and e2, oldest first
    assert [client.get(f"{_eps('n')}/e{i}").status_code for i in range(3)] == [404] * 3
    assert client.get(f"{_eps('n')}/e7").json()["ip"] == "10.5.0.4"


def test_reservation_ttl_defaults_from_the_settings(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(reservation_ttl=600)
    assert (
        client.post(NETS, json={"name": "n", "subnet": "10.5.0.0/24"}).json()["reservation_ttl"]
        == 600
    )
    r = client.post(NETS, json={"name": "m", "subnet": "10.6.0.0/24", "reservation_ttl": 5})
    assert r.json()["reservation_ttl"] == 5


@pytest.mark.parametrize(
    "extra", [{"reclaim": "yes"}, {"reclaim": 1}, {"reservation_ttl": -1}, {"reservation_ttl": 1.5}]
)
def test_bad_reservation_settings(client: TestClient, extra: dict[str, object]) -> None:
    r = client.post(NETS, json={"name": "n", "subnet": "10.5.0.0/24", **extra})
    assert r.status_code == 422, r.text


# Cluster id


def test_registration_answers_the_cluster_id(client: TestClient) -> None:
    r = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1"})
    cluster = r.json()["cluster_id"]
    assert isinstance(cluster, str) and len(cluster) == 36
    again = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "cluster_id": cluster})
    assert again.status_code == 200 and again.json()["cluster_id"] == cluster


def test_an_agent_of_another_cluster_is_refused(client: TestClient, sync: RecordingSync) -> None:
    """Before: a controller on an empty database took any host and replaced its flows."""
    ours = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1"}).json()["cluster_id"]
    before, notified = client.get(HOSTS).json(), list(sync.notified)
    other = "0b5e6f1a-0000-4000-8000-000000000000"
    r = client.put(
        f"{HOSTS}/h1",
        json={"underlay_ip": "198.18.0.9", "tunnel_port": 3, "cluster_id": other},
    )
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert other in detail and ours in detail and "--adopt-cluster" in detail
    assert "--db" in detail
    r = client.put(f"{HOSTS}/h2", json={"underlay_ip": "198.18.0.2", "cluster_id": other})
    assert r.status_code == 409
    assert client.get(HOSTS).json() == before and sync.notified == notified


def test_cluster_id_format_is_checked(client: TestClient) -> None:
    r = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "cluster_id": "a b"})
    assert r.status_code == 422 and "cluster_id" in r.json()["detail"]
