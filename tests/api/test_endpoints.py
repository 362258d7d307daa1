"""Endpoint routes: allocation, static IPs, exhaustion, bind/move/unbind, wait_ready, delete."""

from __future__ import annotations

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

NET = "/api/v1/networks/n"
EPS = f"{NET}/endpoints"


@pytest.fixture
def world(client: TestClient) -> TestClient:
    """A /24 network ``n`` and hosts h1, h2."""
    assert client.post("/api/v1/networks", json={"name": "n", "subnet": "10.0.0.0/24"}).is_success
    for i in (1, 2):
        client.put(f"/api/v1/hosts/h{i}", json={"underlay_ip": f"198.18.0.{i}"})
    return client


def _bind(
    client: TestClient, name: str, host: str, ofport: int, query: str = "", move: bool = False
) -> dict:
    body = {"host": host, "ofport": ofport, **({"move": True} if move else {})}
    r = client.put(f"{EPS}/{name}/binding{query}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_create_then_find_again(world: TestClient, sync: RecordingSync) -> None:
    before = list(sync.notified)
    r = world.post(EPS, json={"name": "web"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body == body | {
        "network": "n",
        "name": "web",
        "ip": "10.0.0.2",
        "prefixlen": 24,
        "gateway": "10.0.0.1",
        "mac": "0a:58:0a:00:00:02",
        "vni": 1,
        "host": None,
        "ofport": None,
        "port_name": None,
        "state": "reserved",
        "revision": 0,
        "ready_at": None,
    }
    assert sync.notified == before  # no block claimed: nothing for the dataplane
    again = world.post(EPS, json={"name": "web"})
    assert again.status_code == 200 and again.json()["ip"] == "10.0.0.2"
    assert world.post(EPS, json={"name": "web", "ip": "10.0.0.2"}).status_code == 200


def test_host_affinity_claims_blocks(world: TestClient, sync: RecordingSync) -> None:
    a = world.post(EPS, json={"name": "a", "host": "h1"}).json()
    b = world.post(EPS, json={"name": "b", "host": "h2"}).json()
    c = world.post(EPS, json={"name": "c", "host": "h1"}).json()
    assert (a["ip"], b["ip"], c["ip"]) == ("10.0.0.2", "10.0.0.64", "10.0.0.3")
    assert len(sync.notified) == 1 + 2 + 2  # network, two hosts, one block per host
    assert world.post(EPS, json={"name": "d", "host": "h9"}).status_code == 404


def test_names_with_slashes_and_colons(world: TestClient) -> None:
    assert world.post(EPS, json={"name": "default/pod-1"}).status_code == 201
    assert world.post(EPS, json={"name": "docker:" + "f" * 64}).status_code == 201
    assert world.get(f"{EPS}/default/pod-1").json()["name"] == "default/pod-1"
    body = _bind(world, "default/pod-1", "h1", 3)
    assert body["host"] == "h1"
    assert world.delete(f"{EPS}/default/pod-1/binding").json()["state"] == "reserved"
    assert world.delete(f"{EPS}/default/pod-1").status_code == 204
    assert world.get(f"{EPS}/default/pod-1").status_code == 404


@pytest.mark.parametrize("name", ["-x", "x/binding", "x//y", "x/", "a" * 256, "sp ace"])
def test_bad_endpoint_names(world: TestClient, name: str) -> None:
    r = world.post(EPS, json={"name": name})
    assert r.status_code == 422 and "endpoint name" in r.json()["detail"], r.text


def test_static_ip_honoured(world: TestClient) -> None:
    r = world.post(EPS, json={"name": "db", "ip": "10.0.0.77"})
    assert r.status_code == 201 and r.json()["mac"] == "0a:58:0a:00:00:4d"
    assert world.post(EPS, json={"name": "next"}).json()["ip"] == "10.0.0.2"


@pytest.mark.parametrize(
    ("ip", "words"),
    [
        ("10.0.1.5", "outside subnet"),
        ("10.0.0.0", "network address"),
        ("10.0.0.255", "broadcast address"),
        ("10.0.0.1", "gateway"),
        ("10.0.0.256", "not an IPv4 address"),
    ],
)
def test_static_ip_refused(world: TestClient, ip: str, words: str) -> None:
    r = world.post(EPS, json={"name": "db", "ip": ip})
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert world.get("/api/v1/endpoints").json() == []


def test_static_ip_conflicts(world: TestClient) -> None:
    world.post(EPS, json={"name": "db", "ip": "10.0.0.77"})
    r = world.post(EPS, json={"name": "other", "ip": "10.0.0.77"})
    assert r.status_code == 409 and "'db'" in r.json()["detail"]
    r = world.post(EPS, json={"name": "db", "ip": "10.0.0.78"})
    assert r.status_code == 409 and "already holds 10.0.0.77" in r.json()["detail"]
    assert [e["name"] for e in world.get("/api/v1/endpoints").json()] == ["db"]


def test_unknown_network(client: TestClient) -> None:
    r = client.post("/api/v1/networks/nope/endpoints", json={"name": "x"})
    assert r.status_code == 404 and r.json() == {"detail": "network 'nope' does not exist"}
    assert client.get("/api/v1/networks/nope/endpoints/x").status_code == 404
    r = client.put("/api/v1/networks/nope/endpoints/x/binding", json={"host": "h", "ofport": 1})
    assert r.status_code == 404


def test_exhausted_subnet_allocates_nothing(client: TestClient, sync: RecordingSync) -> None:
    client.post("/api/v1/networks", json={"name": "tiny", "subnet": "10.9.0.0/29"})
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"})
    for i in range(5):  # .2 .. .6 usable
        r = client.post("/api/v1/networks/tiny/endpoints", json={"name": f"e{i}", "host": "h1"})
        assert r.status_code == 201
        client.put(
            f"/api/v1/networks/tiny/endpoints/e{i}/binding", json={"host": "h1", "ofport": i + 2}
        )
    notified = list(sync.notified)
    r = client.post("/api/v1/networks/tiny/endpoints", json={"name": "late", "host": "h1"})
    assert (
        r.status_code == 409
        and "10.9.0.0/29" in r.json()["detail"]
        and "exhausted" in r.json()["detail"]
    )
    assert client.get("/api/v1/networks/tiny/endpoints/late").status_code == 404
    assert client.get("/api/v1/networks/tiny").json()["endpoints"] == 5
    assert sync.notified == notified and client.get("/healthz").json()["revision"] == notified[-1]


def test_full_subnet_reclaims_an_unbound_reservation(client: TestClient) -> None:
    body = {"name": "tiny", "subnet": "10.9.0.0/30", "reclaim": True}
    assert client.post("/api/v1/networks", json=body).json()["reclaim"] is True
    assert (
        client.post("/api/v1/networks/tiny/endpoints", json={"name": "old"}).json()["ip"]
        == "10.9.0.2"
    )
    r = client.post("/api/v1/networks/tiny/endpoints", json={"name": "new"})
    assert r.status_code == 201 and r.json()["ip"] == "10.9.0.2"
    assert client.get("/api/v1/networks/tiny/endpoints/old").status_code == 404


def test_bind_pending_then_ready(world: TestClient, sync: RecordingSync) -> None:
    world.post(EPS, json={"name": "web", "host": "h1"})
    sync.applied = False
    body = _bind(world, "web", "h1", 7)
    assert body["state"] == "pending" and body["revision"] == sync.notified[-1]
    assert sync.waits == []  # no wait asked
    assert world.get(f"{EPS}/web?wait_ready=1").json()["state"] == "pending"
    assert sync.waits == [(body["revision"], 1.0)]
    sync.applied = True
    ready = world.get(f"{EPS}/web?wait_ready=0.5").json()
    assert ready["state"] == "ready" and ready["ready_at"] is not None


def test_bind_wait_ready_true_and_capped(world: TestClient, sync: RecordingSync) -> None:
    world.post(EPS, json={"name": "web"})
    body = _bind(world, "web", "h1", 7, "?wait_ready=30")
    assert body["state"] == "ready" and body["host"] == "h1" and body["ofport"] == 7
    assert sync.waits == [(body["revision"], 2.0)]  # capped by ready_timeout
    assert sync.wait_hosts == [["h1"]], "readiness needs the endpoint's own host's switch"
    again = _bind(world, "web", "h1", 7, "?wait_ready=1")  # same binding: nothing to do
    assert again["state"] == "ready" and again["revision"] == body["revision"]
    assert len(sync.waits) == 1


def test_bind_wait_ready_false_stays_pending(world: TestClient, sync: RecordingSync) -> None:
    world.post(EPS, json={"name": "web"})
    sync.applied = False
    body = _bind(world, "web", "h1", 7, "?wait_ready=1")
    assert body["state"] == "pending" and body["ready_at"] is None


def test_a_pending_endpoint_says_which_switches_it_waits_on(
    world: TestClient, sync: RecordingSync
) -> None:
    world.post(EPS, json={"name": "web"})
    sync.applied = False
    revision = world.get("/healthz").json()["revision"] + 1
    sync.waiting[revision] = ["h1", "h3"]
    body = _bind(world, "web", "h1", 7, "?wait_ready=0.1")
    assert (body["state"], body["revision"], body["waiting_on"]) == (
        "pending",
        revision,
        ["h1", "h3"],
    )
    listed = world.get("/api/v1/endpoints", params={"state": "pending"}).json()
    assert [e["waiting_on"] for e in listed] == [["h1", "h3"]]
    world.delete(f"{EPS}/web/binding")
    assert world.get(f"{EPS}/web").json()["waiting_on"] is None, "not pending: waits on none"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"host": "h9", "ofport": 1}, 404),
        ({"host": "h1", "ofport": 0}, 422),
        ({"host": "h1", "ofport": 2**32}, 422),
        ({"host": "h1"}, 422),
    ],
)
def test_bind_refused(world: TestClient, body: dict[str, object], status: int) -> None:
    world.post(EPS, json={"name": "web"})
    r = world.put(f"{EPS}/web/binding", json=body)
    assert r.status_code == status, r.text
    assert world.get(f"{EPS}/web").json()["state"] == "reserved"


def test_bind_unknown_endpoint(world: TestClient) -> None:
    r = world.put(f"{EPS}/ghost/binding", json={"host": "h1", "ofport": 1})
    assert r.status_code == 404 and "ghost" in r.json()["detail"]


def test_negative_wait_ready_is_refused(world: TestClient) -> None:
    world.post(EPS, json={"name": "web"})
    r = world.get(f"{EPS}/web?wait_ready=-1")
    assert r.status_code == 422 and "wait_ready" in r.json()["detail"]


def test_move_and_stale_unbind_is_a_noop(world: TestClient, sync: RecordingSync) -> None:
    first = world.post(EPS, json={"name": "web", "host": "h1"}).json()
    on_h1 = _bind(world, "web", "h1", 7)
    on_h2 = _bind(world, "web", "h2", 9, move=True)
    assert on_h2["host"] == "h2" and on_h2["ip"] == first["ip"]
    assert on_h2["revision"] > on_h1["revision"] and on_h2["state"] == "pending"
    notified = list(sync.notified)
    stale = world.delete(f"{EPS}/web/binding?host=h1")  # old host cleaning up late
    assert stale.status_code == 200 and stale.json()["host"] == "h2"
    assert sync.notified == notified


def test_same_name_same_ip_after_unbind_and_rebind(world: TestClient, sync: RecordingSync) -> None:
    ip = world.post(EPS, json={"name": "web", "host": "h1"}).json()["ip"]
    _bind(world, "web", "h1", 7)
    r = world.delete(f"{EPS}/web/binding?host=h1")
    body = r.json()
    assert r.status_code == 200 and body["state"] == "reserved" and body["host"] is None
    assert sync.notified[-1] == world.get("/healthz").json()["revision"]
    assert world.delete(f"{EPS}/web/binding").json()["state"] == "reserved"  # not bound: no-op
    assert world.post(EPS, json={"name": "web", "host": "h2"}).json()["ip"] == ip
    moved = _bind(world, "web", "h2", 3)
    assert (moved["ip"], moved["mac"], moved["host"]) == (ip, "0a:58:0a:00:00:02", "h2")


def test_delete_endpoint(world: TestClient, sync: RecordingSync) -> None:
    world.post(EPS, json={"name": "a"})
    notified = list(sync.notified)
    assert world.delete(f"{EPS}/a").status_code == 204
    assert sync.notified == notified  # was not bound
    assert world.delete(f"{EPS}/a").status_code == 404
    world.post(EPS, json={"name": "b"})
    _bind(world, "b", "h1", 11)
    notified = list(sync.notified)
    assert world.delete(f"{EPS}/b").status_code == 204
    assert len(sync.notified) == len(notified) + 1
    assert world.post(EPS, json={"name": "c"}).json()["ip"] == "10.0.0.2"  # freed


def test_list_filters(world: TestClient) -> None:
    world.post(EPS, json={"name": "a"})
    world.post(EPS, json={"name": "b"})
    _bind(world, "b", "h2", 11)
    world.post("/api/v1/networks", json={"name": "m", "subnet": "10.0.0.0/24"})
    world.post("/api/v1/networks/m/endpoints", json={"name": "c"})

    def names(query: str) -> list[str]:
        r = world.get(f"/api/v1/endpoints{query}")
        assert r.status_code == 200, r.text
        return [f"{e['network']}/{e['name']}" for e in r.json()]

    assert names("") == ["m/c", "n/a", "n/b"]
    assert names("?network=n") == ["n/a", "n/b"]
    assert names("?host=h2") == ["n/b"]
    assert names("?state=reserved") == ["m/c", "n/a"]
    assert names("?network=n&state=pending") == ["n/b"]
    assert names("?network=zzz") == []
    assert world.get("/api/v1/endpoints?state=up").status_code == 422
