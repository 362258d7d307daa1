"""GET /api/v1/controllers: members, lease age, the switches each masters; readable with any
token, never without one."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from controller.db import members
from controller.db.session import make_engine, make_session_factory


def _tick(url: str, member: str, lease: float = 30.0) -> None:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as s:
            members.tick(s, member, f"http://{member}:8080", f"tcp:{member}:6653", lease)
            s.commit()
    finally:
        engine.dispose()


def test_members_and_their_switches(
    client: TestClient, db_file_url: str, make_client, make_token
) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/controllers").json() == []
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": "0000000000000001"})
    client.put("/api/v1/hosts/h2", json={"underlay_ip": "198.18.0.2", "dpid": "0000000000000002"})
    _tick(db_file_url, "aaaa")
    _tick(db_file_url, "bbbb")
    _tick(db_file_url, "aaaa")
    got = client.get("/api/v1/controllers").json()
    assert [m["id"] for m in got] == ["aaaa", "bbbb"]
    assert all(m["alive"] and 0 <= m["lease_age"] < 30 and not m["this"] for m in got)
    switches = {m["id"]: [(s["dpid"], s["host"]) for s in m["switches"]] for m in got}
    assert sorted(switches["aaaa"] + switches["bbbb"]) == [
        ("0000000000000001", "h1"), ("0000000000000002", "h2"),
    ]  # fmt: skip
    assert len(switches["aaaa"]) == len(switches["bbbb"]) == 1
    assert got[0]["api_url"] == "http://aaaa:8080" and got[0]["openflow"] == "tcp:aaaa:6653"
    viewer = make_client(token=make_token("viewer"))
    assert viewer.get("/api/v1/controllers").status_code == 200
    assert make_client(token=None).get("/api/v1/controllers").status_code == 401
    assert viewer.post("/api/v1/controllers").status_code == 405


def test_advertised_addresses_default_to_the_listen_address_never_a_wildcard() -> None:
    from controller.config import Settings

    plain = Settings(api_host="198.18.0.5", api_port=8081, openflow_host="198.18.0.5")
    assert (plain.api_url, plain.openflow_target) == (
        "http://198.18.0.5:8081",
        "tcp:198.18.0.5:6653",
    )
    wild = Settings(api_host="0.0.0.0", openflow_host="0.0.0.0")
    assert (wild.api_url, wild.openflow_target) == ("", "")  # agents keep their own targets
    told = Settings(
        api_host="0.0.0.0", openflow_host="0.0.0.0",
        advertise_api="https://c1.example:8443/", advertise_openflow="ssl:c1.example:6653",
    )  # fmt: skip
    assert (told.api_url, told.openflow_target) == (
        "https://c1.example:8443",
        "ssl:c1.example:6653",
    )
    for bad in ({"advertise_openflow": "c1:6653"}, {"advertise_api": "c1:8080"},
                {"lease": 1.0, "lease_renew": 1.0}):  # fmt: skip
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]


def test_each_host_names_its_master_and_a_lapsed_one_shows_as_such(
    client: TestClient, db_file_url: str
) -> None:
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": "0000000000000001"})
    client.put("/api/v1/hosts/h2", json={"underlay_ip": "198.18.0.2", "dpid": "0000000000000002"})
    client.put("/api/v1/hosts/h3", json={"underlay_ip": "198.18.0.3"})  # no switch yet
    assert {h["name"]: h["master"] for h in client.get("/api/v1/hosts").json()} == {
        "h1": None, "h2": None, "h3": None,
    }  # fmt: skip
    _tick(db_file_url, "aaaa")
    _tick(db_file_url, "bbbb")
    _tick(db_file_url, "aaaa")
    members_now = client.get("/api/v1/controllers").json()
    by_host = {s["host"]: m["id"] for m in members_now for s in m["switches"]}
    hosts = {h["name"]: h for h in client.get("/api/v1/hosts").json()}
    assert hosts["h3"]["master"] is None
    for name in ("h1", "h2"):
        master = hosts[name]["master"]
        assert master["id"] == by_host[name], name  # the same answer as the members' list
        assert master["api_url"] == f"http://{by_host[name]}:8080"
        assert master["this"] is False  # the test app is no member
        assert client.get(f"/api/v1/hosts/{name}").json()["master"] == master
    assert sorted(by_host.values()) == ["aaaa", "bbbb"]
    b_host = next(h for h, m in by_host.items() if m == "bbbb")
    # bbbb's last renewal asks for a short lease, which then lapses (no other tick meanwhile:
    # a short lease from the start could lapse between the ticks above on a loaded machine)
    _tick(db_file_url, "bbbb", lease=1.0)
    deadline = time.monotonic() + 20
    while client.get(f"/api/v1/hosts/{b_host}").json()["master"]["alive"]:
        assert time.monotonic() < deadline, "bbbb's 1 s lease never lapsed"
        time.sleep(0.05)
    assert client.get(f"/api/v1/hosts/{b_host}").json()["master"]["id"] == "bbbb"  # not moved yet
    _tick(db_file_url, "aaaa")  # the next renewal of a live member takes the switch over
    got = client.get(f"/api/v1/hosts/{b_host}").json()["master"]
    assert (got["id"], got["alive"]) == ("aaaa", True)
