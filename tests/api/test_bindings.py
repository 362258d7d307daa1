"""POST /api/v1/bindings: many binds and unbinds in one request and one transaction, with
per-item outcomes; a failing item changes nothing and announces nothing, the others apply; a
malformed request changes nothing at all."""

from __future__ import annotations

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

from controller.api.schemas import MAX_BATCH_ITEMS
from controller.db import bindings

EPS = "/api/v1/networks/n/endpoints"
BATCH = "/api/v1/bindings"


@pytest.fixture
def world(make_client, make_token) -> dict[str, TestClient]:  # type: ignore[no-untyped-def]
    """Network ``n``, hosts h1 and h2 (alive), ``old`` bound to h1 port 3; an admin client
    and h1's agent."""
    admin = make_client()
    assert admin.post("/api/v1/networks", json={"name": "n", "subnet": "10.0.0.0/24"}).is_success
    for i in (1, 2):
        assert admin.put(f"/api/v1/hosts/h{i}", json={"underlay_ip": f"198.18.0.{i}"}).is_success
        assert admin.post(f"/api/v1/hosts/h{i}/heartbeat").is_success
    r = admin.put(f"{EPS}/old/binding?create=true", json={"host": "h1", "ofport": 3})
    assert r.status_code == 201
    return {"admin": admin, "h1": make_client(token=make_token("agent", host="h1"))}


def item(name: str, host: str = "h1", **kw: object) -> dict[str, object]:
    return {"network": "n", "name": name, "host": host, **kw}


def names(client: TestClient) -> dict[str, tuple[str | None, int | None]]:
    eps = client.get("/api/v1/endpoints").json()
    return {e["name"]: (e["host"], e["ofport"]) for e in eps}


def test_items_apply_each_on_its_own(world: dict[str, TestClient], sync: RecordingSync) -> None:
    h1 = world["h1"]
    before = h1.get("/api/v1/events/recent").json()["last_id"]
    notified = len(sync.notified)
    r = h1.post(
        BATCH,
        json={
            "items": [
                item("a", ofport=10, create=True),  # 201
                item("b", ofport=10, create=True),  # 409: a holds port 10 now (a's bind stays)
                item("c", host="h2", ofport=11, create=True),  # 403: h1's agent, h2's port
                {**item("d", ofport=12, create=True), "network": "nope"},  # 404
                item("old", ofport=4),  # 409: bound to port 3 without move / if_revision
                item("old", ofport=3, if_revision=999),  # 409 with the endpoint
                item("e", ofport=13, create=True),  # 201
                item("e", ofport=13),  # 200: again, no change
            ]
        },
    )
    assert r.status_code == 200, r.text
    got = r.json()["items"]
    assert [o["status"] for o in got] == [201, 409, 403, 404, 409, 409, 201, 200]
    assert "ofport 10" in got[1]["detail"] and got[1]["endpoint"] is None
    assert "may not bind endpoints to host 'h2'" in got[2]["detail"]
    assert "network 'nope' does not exist" in got[3]["detail"]
    assert got[5]["endpoint"]["name"] == "old" and "revision" in got[5]["detail"]
    assert got[0]["endpoint"]["state"] == "pending" and got[0]["endpoint"]["ofport"] == 10
    now = names(world["admin"])
    assert now == {"a": ("h1", 10), "e": ("h1", 13), "old": ("h1", 3)}  # no b, c, d
    assert len(sync.notified) == notified + 1  # one transaction, one notification
    assert sync.notified[-1] == got[6]["endpoint"]["revision"]
    events = h1.get("/api/v1/events/recent").json()["events"]
    new = [(e["type"], e["data"]["endpoint"]) for e in events if e["id"] > before]
    assert new == [
        ("endpoint.created", "a"),
        ("endpoint.bound", "a"),
        ("endpoint.created", "e"),
        ("endpoint.bound", "e"),
    ]  # nothing from the items rolled back


def test_unbind_items(world: dict[str, TestClient]) -> None:
    h1 = world["h1"]
    r = h1.post(
        BATCH, json={"items": [item(f"x{i}", ofport=20 + i, create=True) for i in range(3)]}
    )
    assert [o["status"] for o in r.json()["items"]] == [201, 201, 201]
    r = h1.post(
        BATCH,
        json={
            "items": [
                item("x0", unbind=True),
                item("x1", unbind=True),
                item("x2", host="h2", unbind=True),  # 403: h1's agent may not name h2
                item("ghost", unbind=True),  # 404
            ]
        },
    )
    got = r.json()["items"]
    assert [o["status"] for o in got] == [200, 200, 403, 404]
    assert got[0]["endpoint"]["state"] == "reserved" and got[0]["endpoint"]["host"] is None
    assert names(world["admin"])["x2"] == ("h1", 22)
    assert names(world["admin"])["x0"] == (None, None)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"items": []}, "items: List should have at least 1 item"),
        ({"items": [item("a")]}, "a bind item needs ofport"),
        ({"items": [item("a", unbind=True, ofport=3)]}, "takes network, name and host only"),
        ({"items": [item("a", ofport=3), item("b/../", ofport=4)]}, "items.1.name"),
        ({"items": [item("a", ofport=3, colour="red")]}, "items.0.colour"),
        ({"items": [item(f"m{i}", ofport=2 + i) for i in range(MAX_BATCH_ITEMS + 1)]},
         f"at most {MAX_BATCH_ITEMS} items"),
    ],
)  # fmt: skip
def test_malformed_batches_change_nothing(
    world: dict[str, TestClient], body: dict[str, object], words: str
) -> None:
    before = names(world["admin"])
    r = world["h1"].post(BATCH, json=body)
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert names(world["admin"]) == before


def test_a_viewer_may_not_batch(world: dict[str, TestClient], make_client, make_token) -> None:  # type: ignore[no-untyped-def]
    viewer = make_client(token=make_token("viewer"))
    r = viewer.post(BATCH, json={"items": [item("a", ofport=3, create=True)]})
    assert r.status_code == 403
    assert "a" not in names(world["admin"])


def test_a_conflict_behind_the_reads_runs_each_item_alone(
    world: dict[str, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the unique index catches a port taken behind the set-based write's reads (a
    concurrent bind on PostgreSQL), the batch runs again item by item: the item that
    conflicts answers 409, the others apply."""
    real = bindings._Write._targets

    def blind(self: bindings._Write) -> dict[tuple[int, int], tuple[int, str, str]]:
        real(self)
        return {}  # as if nobody held any port

    admin = world["admin"]
    assert admin.post(EPS, json={"name": "x", "host": "h1"}).status_code == 201
    monkeypatch.setattr(bindings._Write, "_targets", blind)
    r = world["h1"].post(
        BATCH, json={"items": [item("a", ofport=10, create=True), item("x", ofport=3)]}
    )
    got = r.json()["items"]
    assert [o["status"] for o in got] == [201, 409], got
    assert "ofport 3 of host 'h1' is bound to another endpoint" in got[1]["detail"]
    assert names(admin) == {"a": ("h1", 10), "old": ("h1", 3), "x": (None, None)}
