"""Network routes: create with defaults and checks, list, show, delete."""

from __future__ import annotations

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

NETS = "/api/v1/networks"


def test_create_with_defaults_notifies(client: TestClient, sync: RecordingSync) -> None:
    r = client.post(NETS, json={"name": "blue", "subnet": "10.1.0.0/24"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "blue" and body["vni"] == 1
    assert (body["subnet"], body["gateway"]) == ("10.1.0.0/24", "10.1.0.1")
    assert body["block_prefix"] == 26 and body["endpoints"] == 0 and body["created_at"]
    assert sync.notified == [1]
    assert client.get("/healthz").json() == {"status": "ok", "revision": 1}


def test_create_with_everything_given(client: TestClient) -> None:
    r = client.post(
        NETS,
        json={
            "name": "red",
            "subnet": "172.16.0.0/16",
            "gateway": "172.16.255.254",
            "vni": 5000,
            "block_prefix": 24,
        },
    )
    assert r.status_code == 201, r.text
    assert (r.json()["gateway"], r.json()["vni"], r.json()["block_prefix"]) == (
        "172.16.255.254",
        5000,
        24,
    )
    assert client.post(NETS, json={"name": "green", "subnet": "10.0.0.0/24"}).json()["vni"] == 1


def test_default_block_prefix_comes_from_settings(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client(default_block_prefix=28)
    r = client.post(NETS, json={"name": "blue", "subnet": "10.1.0.0/24"})
    assert r.json()["block_prefix"] == 28


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "x", "subnet": "10.0.0.1/24"}, "host bits set: did you mean 10.0.0.0/24"),
        ({"name": "x", "subnet": "10.0.0.0"}, "no prefix length"),
        ({"name": "x", "subnet": "banana/24"}, "not an IPv4 subnet"),
        ({"name": "x", "subnet": "10.0.0.0/33"}, "not an IPv4 subnet"),
        ({"name": "x", "subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, "outside subnet"),
        ({"name": "x", "subnet": "10.0.0.0/24", "gateway": "10.0.0.255"}, "broadcast"),
        ({"name": "x", "subnet": "10.0.0.0/24", "gateway": "nope"}, "not an IPv4 address"),
        ({"name": "x", "subnet": "10.0.0.0/31"}, "too small"),
        ({"name": "x", "subnet": "10.0.0.0/24", "vni": 0}, "vni"),
        ({"name": "x", "subnet": "10.0.0.0/24", "vni": 16777216}, "vni"),
        ({"name": "x", "subnet": "10.0.0.0/24", "block_prefix": 33}, "block_prefix"),
        ({"name": "-bad", "subnet": "10.0.0.0/24"}, "not a valid name"),
        ({"name": "a" * 64, "subnet": "10.0.0.0/24"}, "not a valid name"),
        ({"subnet": "10.0.0.0/24"}, "name: Field required"),
        ({"name": "x", "subnet": "10.0.0.0/24", "colour": "red"}, "colour"),
    ],
)
def test_create_refuses_bad_input(
    client: TestClient, sync: RecordingSync, body: dict[str, object], words: str
) -> None:
    r = client.post(NETS, json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail
    assert client.get(NETS).json() == [] and sync.notified == []


def test_duplicate_name_and_vni_conflict(client: TestClient) -> None:
    assert (
        client.post(NETS, json={"name": "a", "subnet": "10.0.0.0/24", "vni": 7}).status_code == 201
    )
    r = client.post(NETS, json={"name": "a", "subnet": "10.9.0.0/24"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    r = client.post(NETS, json={"name": "b", "subnet": "10.9.0.0/24", "vni": 7})
    assert r.status_code == 409 and "vni 7" in r.json()["detail"]


def test_two_networks_same_cidr(client: TestClient) -> None:
    for name in ("a", "b"):
        assert client.post(NETS, json={"name": name, "subnet": "10.0.0.0/24"}).status_code == 201
    for name in ("a", "b"):
        r = client.post(f"{NETS}/{name}/endpoints", json={"name": "web"})
        assert r.json()["ip"] == "10.0.0.2"
    assert [n["vni"] for n in client.get(NETS).json()] == [1, 2]


def test_list_get_and_unknown(client: TestClient) -> None:
    client.post(NETS, json={"name": "b", "subnet": "10.0.0.0/24"})
    client.post(NETS, json={"name": "a", "subnet": "10.0.1.0/24"})
    assert [n["name"] for n in client.get(NETS).json()] == ["a", "b"]
    assert client.get(f"{NETS}/a").json()["subnet"] == "10.0.1.0/24"
    r = client.get(f"{NETS}/nope")
    assert r.status_code == 404 and r.json() == {"detail": "network 'nope' does not exist"}


def test_delete_removes_reserved_endpoints(client: TestClient, sync: RecordingSync) -> None:
    client.post(NETS, json={"name": "a", "subnet": "10.0.0.0/24"})
    client.post(f"{NETS}/a/endpoints", json={"name": "idle"})
    assert client.get(f"{NETS}/a").json()["endpoints"] == 1
    r = client.delete(f"{NETS}/a")
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"{NETS}/a").status_code == 404
    assert client.get("/api/v1/endpoints").json() == []
    assert sync.notified == [1, 2]
    assert client.delete(f"{NETS}/a").status_code == 404


def test_delete_with_bound_endpoints_is_refused(client: TestClient) -> None:
    client.post(NETS, json={"name": "a", "subnet": "10.0.0.0/24"})
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"})
    client.post(f"{NETS}/a/endpoints", json={"name": "web"})
    client.put(f"{NETS}/a/endpoints/web/binding", json={"host": "h1", "ofport": 5})
    r = client.delete(f"{NETS}/a")
    assert r.status_code == 409 and "web" in r.json()["detail"]
    assert client.get(f"{NETS}/a").status_code == 200
    client.delete(f"{NETS}/a/endpoints/web/binding")
    assert client.delete(f"{NETS}/a").status_code == 204


def test_external_networks_get_their_own_zone_and_patch_changes_it(
    client: TestClient, sync: RecordingSync
) -> None:
    sealed = client.post(NETS, json={"name": "sealed", "subnet": "10.1.0.0/24"}).json()
    assert (sealed["external"], sealed["zone"]) == (False, None)
    a = client.post(NETS, json={"name": "a", "subnet": "10.2.0.0/24", "external": True})
    b = client.post(NETS, json={"name": "b", "subnet": "10.2.0.0/24", "external": True})
    assert a.status_code == b.status_code == 201, a.text + b.text
    assert (a.json()["zone"], b.json()["zone"]) == (1, 2)  # same CIDR, distinct zones

    before = list(sync.notified)
    off = client.patch(f"{NETS}/a", json={"external": False})
    assert off.status_code == 200 and (off.json()["external"], off.json()["zone"]) == (False, None)
    assert len(sync.notified) == len(before) + 1  # the dataplane changed
    same = client.patch(f"{NETS}/a", json={"external": False})
    assert same.status_code == 200 and len(sync.notified) == len(before) + 1  # no-op
    assert client.patch(f"{NETS}/a", json={}).json()["external"] is False  # nothing given

    on = client.patch(f"{NETS}/sealed", json={"external": True}).json()
    assert (on["external"], on["zone"]) == (True, 1)  # the lowest free zone, a's old one
    assert client.get(f"{NETS}/sealed").json()["zone"] == 1
    listed = {n["name"]: n["zone"] for n in client.get(NETS).json()}
    assert listed == {"a": None, "b": 2, "sealed": 1}


def test_patch_refuses_bad_input_and_unknown_networks(client: TestClient) -> None:
    client.post(NETS, json={"name": "n", "subnet": "10.1.0.0/24"})
    assert client.patch(f"{NETS}/nope", json={"external": True}).status_code == 404
    for body in ({"external": "yes"}, {"external": 1}, {"subnet": "10.9.0.0/24"}, []):
        r = client.patch(f"{NETS}/n", json=body)
        assert r.status_code == 422, (body, r.text)
    assert client.get(f"{NETS}/n").json()["external"] is False
    r = client.post(NETS, json={"name": "x", "subnet": "10.3.0.0/24", "external": "true"})
    assert r.status_code == 422 and client.get(f"{NETS}/x").status_code == 404
