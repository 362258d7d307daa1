"""Host routes: register (idempotent), conflicts, heartbeat, alive, switch status, delete."""

from __future__ import annotations

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

from controller.sync import SwitchStatus

HOSTS = "/api/v1/hosts"


def test_register_is_idempotent(client: TestClient, sync: RecordingSync) -> None:
    r = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "dpid": "0xAB"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dpid"] == "00000000000000ab" and body["tunnel_port"] == 1
    assert body["alive"] is True and body["switch"] is None and body["last_seen"]
    assert sync.notified == [1]
    again = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "dpid": 171})
    assert again.status_code == 200 and again.json()["dpid"] == "00000000000000ab"
    assert sync.notified == [1]  # nothing the dataplane sees changed


def test_update_changes_notify_and_omitted_dpid_is_kept(
    client: TestClient, sync: RecordingSync
) -> None:
    client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "dpid": "00:00:00:00:00:00:00:0c"})
    r = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.9", "tunnel_port": 10})
    body = r.json()
    assert (body["underlay_ip"], body["dpid"], body["tunnel_port"]) == (
        "198.18.0.9",
        "000000000000000c",
        10,
    )
    assert sync.notified == [1, 2]
    r = client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.9", "dpid": None})
    assert r.json()["dpid"] is None and sync.notified == [1, 2, 3]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"underlay_ip": "198.18.0.300"}, "not an IPv4 address"),
        ({}, "underlay_ip: Field required"),
        ({"underlay_ip": "198.18.0.1", "dpid": "xyz"}, "not a dpid"),
        ({"underlay_ip": "198.18.0.1", "dpid": "1" * 17}, "not a dpid"),
        ({"underlay_ip": "198.18.0.1", "dpid": -1}, "64 bits"),
        ({"underlay_ip": "198.18.0.1", "tunnel_port": 0}, "tunnel_port"),
    ],
)
def test_register_refuses_bad_input(
    client: TestClient, body: dict[str, object], words: str
) -> None:
    r = client.put(f"{HOSTS}/h1", json=body)
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert client.get(HOSTS).json() == []


def test_register_refuses_bad_name(client: TestClient) -> None:
    r = client.put(f"{HOSTS}/-h", json={"underlay_ip": "198.18.0.1"})
    assert r.status_code == 422 and "not a valid name" in r.json()["detail"]


def test_underlay_ip_and_dpid_conflicts(client: TestClient) -> None:
    client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "dpid": "1"})
    r = client.put(f"{HOSTS}/h2", json={"underlay_ip": "198.18.0.1"})
    assert r.status_code == 409 and "'h1'" in r.json()["detail"]
    r = client.put(f"{HOSTS}/h2", json={"underlay_ip": "198.18.0.2", "dpid": 1})
    assert r.status_code == 409 and "dpid" in r.json()["detail"]
    assert [h["name"] for h in client.get(HOSTS).json()] == ["h1"]


def test_heartbeat_list_get(client: TestClient) -> None:
    assert client.post(f"{HOSTS}/h1/heartbeat").status_code == 404
    client.put(f"{HOSTS}/h2", json={"underlay_ip": "198.18.0.2"})
    client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1"})
    first = client.get(f"{HOSTS}/h1").json()["last_seen"]
    r = client.post(f"{HOSTS}/h1/heartbeat")
    assert r.status_code == 200 and r.json()["last_seen"] >= first
    assert [h["name"] for h in client.get(HOSTS).json()] == ["h1", "h2"]
    assert client.get(f"{HOSTS}/nope").status_code == 404


def test_alive_follows_host_dead_after(make_client) -> None:  # type: ignore[no-untyped-def]
    strict = make_client(host_dead_after=0.0)
    strict.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1"})
    assert strict.get(f"{HOSTS}/h1").json()["alive"] is False
    assert make_client().get(f"{HOSTS}/h1").json()["alive"] is True


def test_switch_status_matched_by_dpid(client: TestClient, sync: RecordingSync) -> None:
    sync.status = [
        SwitchStatus(
            0xAB, True, "198.18.0.1:40000", 3, 17, "h1", rejected_flows=2,
            wanted_generation=5, applied_generation=4, role="slave",
        )
    ]  # fmt: skip
    client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1", "dpid": "ab"})
    client.put(f"{HOSTS}/h2", json={"underlay_ip": "198.18.0.2", "dpid": "ac"})
    client.put(f"{HOSTS}/h3", json={"underlay_ip": "198.18.0.3"})
    hosts = {h["name"]: h["switch"] for h in client.get(HOSTS).json()}
    assert hosts["h1"] == {
        "connected": True,
        "address": "198.18.0.1:40000",
        "applied_revision": 3,
        "flow_count": 17,
        "rejected_flows": 2,
        "wanted_generation": 5,
        "applied_generation": 4,
        "role": "slave",
    }
    assert hosts["h2"] is None and hosts["h3"] is None


def test_delete_host_unbinds_its_endpoints(client: TestClient, sync: RecordingSync) -> None:
    client.post("/api/v1/networks", json={"name": "n", "subnet": "10.0.0.0/24"})
    client.put(f"{HOSTS}/h1", json={"underlay_ip": "198.18.0.1"})
    ip = client.post("/api/v1/networks/n/endpoints", json={"name": "web", "host": "h1"}).json()[
        "ip"
    ]
    client.put("/api/v1/networks/n/endpoints/web/binding", json={"host": "h1", "ofport": 4})
    before = len(sync.notified)
    assert client.delete(f"{HOSTS}/h1").status_code == 204
    assert len(sync.notified) == before + 1
    endpoint = client.get("/api/v1/networks/n/endpoints/web").json()
    assert (endpoint["host"], endpoint["state"], endpoint["ip"]) == (None, "reserved", ip)
    assert client.get(f"{HOSTS}/h1").status_code == 404
    assert client.delete(f"{HOSTS}/h1").status_code == 404
    assert client.delete("/api/v1/networks/n").status_code == 204


def test_egress_address_and_gateway_port_go_together(client: TestClient) -> None:
    url = "/api/v1/hosts/h1"
    r = client.put(url, json={"underlay_ip": "198.18.0.1", "egress_ip": "198.18.0.101",
                              "gateway_port": 2})  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["egress_ip"], r.json()["gateway_port"]) == ("198.18.0.101", 2)
    for body in (
        {"underlay_ip": "198.18.0.1", "egress_ip": "198.18.0.101"},
        {"underlay_ip": "198.18.0.1", "gateway_port": 2},
        {"underlay_ip": "198.18.0.1", "egress_ip": "nope", "gateway_port": 2},
        {"underlay_ip": "198.18.0.1", "egress_ip": "198.18.0.101", "gateway_port": 0},
    ):
        assert client.put(url, json=body).status_code == 422, body
    # another host may not take h1's egress address, nor use its own underlay address
    taken = {"underlay_ip": "198.18.0.2", "egress_ip": "198.18.0.101", "gateway_port": 2}
    assert client.put("/api/v1/hosts/h2", json=taken).status_code == 409
    own = {"underlay_ip": "198.18.0.2", "egress_ip": "198.18.0.2", "gateway_port": 2}
    assert client.put("/api/v1/hosts/h2", json=own).status_code == 409
    assert client.get("/api/v1/hosts/h2").status_code == 404  # nothing half-made
    # registered again without them: no external access from h1 any more
    r = client.put(url, json={"underlay_ip": "198.18.0.1"})
    assert r.json()["egress_ip"] is None and r.json()["gateway_port"] is None


def test_an_ipv6_egress_address_comes_with_an_egress_address(client: TestClient) -> None:
    url = "/api/v1/hosts/h1"
    body = {"underlay_ip": "198.18.0.1", "egress_ip": "198.18.0.101", "gateway_port": 2,
            "egress_ip6": "fdfa::c612:65"}  # fmt: skip
    r = client.put(url, json=body)
    assert r.status_code == 200, r.text
    assert r.json()["egress_ip6"] == "fdfa::c612:65"
    assert client.get(url).json()["egress_ip6"] == "fdfa::c612:65"
    for bad in (
        {"underlay_ip": "198.18.0.1", "egress_ip6": "fdfa::c612:65"},  # no egress_ip
        {**body, "egress_ip6": "198.18.0.101"},
        {**body, "egress_ip6": "fe80::1"},
        {**body, "egress_ip6": "ff02::1"},
        {**body, "egress_ip6": "::"},
    ):
        r = client.put(url, json=bad)
        assert r.status_code == 422, bad
        assert "egress_ip6" in r.text, r.text
    taken = {"underlay_ip": "198.18.0.2", "egress_ip": "198.18.0.102", "gateway_port": 2,
             "egress_ip6": "fdfa::c612:65"}  # fmt: skip
    r = client.put("/api/v1/hosts/h2", json=taken)
    assert r.status_code == 409 and "fdfa::c612:65" in r.text, r.text
    assert client.get("/api/v1/hosts/h2").status_code == 404  # nothing half-made
    r = client.put(url, json={k: v for k, v in body.items() if k != "egress_ip6"})
    assert r.json()["egress_ip6"] is None  # registered again without it: no IPv6 way out
