"""Create-and-bind in one request (``PUT .../binding?create=true``), labels and ``if_revision``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

NET = "/api/v1/networks/n"
EPS = f"{NET}/endpoints"
ATTACH = "/binding?create=true"


@pytest.fixture
def world(client: TestClient) -> TestClient:
    """A /24 network ``n`` and hosts h1, h2."""
    assert client.post("/api/v1/networks", json={"name": "n", "subnet": "10.0.0.0/24"}).is_success
    for i in (1, 2):
        client.put(f"/api/v1/hosts/h{i}", json={"underlay_ip": f"198.18.0.{i}"})
    return client


def _events(client: TestClient, after: int) -> list[str]:
    body = client.get("/api/v1/events/recent", params={"after": after}).json()
    return [e["type"] for e in body["events"]]


def _last_event(client: TestClient) -> int:
    return int(client.get("/api/v1/events/recent").json()["last_id"])


def _unchanged(client: TestClient, sync: RecordingSync) -> Any:
    """What a refused request must leave as it was: endpoints, revision, notifications."""
    return (
        client.get("/api/v1/endpoints").json(),
        client.get("/healthz").json()["revision"],
        list(sync.notified),
        _last_event(client),
    )


def test_new_name_is_created_bound_and_ready(world: TestClient, sync: RecordingSync) -> None:
    after = _last_event(world)
    r = world.put(
        f"{EPS}/default/pod-1{ATTACH}&wait_ready=30",
        json={"host": "h1", "ofport": 7, "port_name": "vx1", "labels": {"app": "web"}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body == body | {
        "network": "n", "name": "default/pod-1", "ip": "10.0.0.2", "mac": "0a:58:0a:00:00:02",
        "host": "h1", "ofport": 7, "port_name": "vx1", "state": "ready",
        "labels": {"app": "web"},
    }  # fmt: skip
    assert body["ready_at"] is not None
    revision = body["revision"]
    assert sync.notified[-1] == revision == world.get("/healthz").json()["revision"]
    assert sync.waits == [(revision, 2.0)] and sync.wait_hosts == [["h1"]]  # capped, own host
    assert _events(world, after) == ["endpoint.created", "endpoint.bound"]
    history = world.get(f"{EPS}/default/pod-1/history").json()
    assert [(m["kind"], m["host"], m["revision"]) for m in history] == [("bound", "h1", revision)]


def test_new_name_pending_when_flows_are_not_applied(
    world: TestClient, sync: RecordingSync
) -> None:
    sync.applied = False
    r = world.put(f"{EPS}/web{ATTACH}&wait_ready=1", json={"host": "h1", "ofport": 7})
    assert r.status_code == 201 and r.json()["state"] == "pending" and r.json()["ready_at"] is None
    assert sync.waits == [(r.json()["revision"], 1.0)]


def test_existing_name_is_bound_with_200(world: TestClient, sync: RecordingSync) -> None:
    made = world.post(EPS, json={"name": "web", "labels": {"tier": "front"}}).json()
    after = _last_event(world)
    r = world.put(f"{EPS}/web{ATTACH}", json={"host": "h2", "ofport": 3, "ip": made["ip"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["ip"], body["host"], body["state"]) == (made["ip"], "h2", "pending")
    assert body["labels"] == {"tier": "front"}  # not given: kept
    assert _events(world, after) == ["endpoint.bound"]
    again = world.put(f"{EPS}/web{ATTACH}", json={"host": "h2", "ofport": 3})
    assert again.status_code == 200 and again.json()["revision"] == body["revision"]
    assert sync.notified[-1] == body["revision"]  # the same binding: nothing new to push


def test_create_and_bind_matches_the_two_calls(world: TestClient, sync: RecordingSync) -> None:
    """Same address, MAC, block and events as POST then PUT, with one notification."""
    world.post("/api/v1/networks", json={"name": "m", "subnet": "10.0.0.0/24"})
    two = "/api/v1/networks/m/endpoints"
    for eps in (EPS, two):  # h1 holds the first block of both networks
        world.post(eps, json={"name": "first", "host": "h1"})
    after = _last_event(world)
    world.post(two, json={"name": "a", "host": "h2"})
    old = world.put(f"{two}/a/binding", json={"host": "h2", "ofport": 4}).json()
    steps = len(sync.notified)
    middle = _last_event(world)
    new = world.put(f"{EPS}/a{ATTACH}", json={"host": "h2", "ofport": 5})
    assert new.status_code == 201 and len(sync.notified) == steps + 1
    pair = ("10.0.0.64", "0a:58:0a:00:00:40")  # from a block claimed for h2
    assert (new.json()["ip"], new.json()["mac"]) == (old["ip"], old["mac"]) == pair
    assert _events(world, after) == ["endpoint.created", "endpoint.bound"] * 2
    assert _events(world, middle) == ["endpoint.created", "endpoint.bound"]


def test_without_create_an_unknown_name_is_404(world: TestClient, sync: RecordingSync) -> None:
    before = _unchanged(world, sync)
    for query in ("", "?create=false"):
        r = world.put(f"{EPS}/ghost/binding{query}", json={"host": "h1", "ofport": 11})
        assert r.status_code == 404 and "ghost" in r.json()["detail"], r.text
    assert _unchanged(world, sync) == before


def test_unknown_network_is_404(world: TestClient) -> None:
    r = world.put(f"/api/v1/networks/nope/endpoints/x{ATTACH}", json={"host": "h1", "ofport": 11})
    assert r.status_code == 404 and r.json() == {"detail": "network 'nope' does not exist"}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"host": "h9", "ofport": 11}, 404, "host 'h9' is not registered"),
        ({"host": "h1", "ofport": 11, "ip": "10.0.0.9"}, 409, "held by endpoint 'db'"),
        ({"host": "h1", "ofport": 11, "ip": "10.0.1.9"}, 422, "outside subnet"),
        ({"host": "h1", "ofport": 11, "ip": "10.0.0.1"}, 422, "gateway"),
        ({"host": "h1", "ofport": 0}, 422, "ofport"),
        ({"host": "h1", "ofport": 11, "if_revision": True}, 422, "if_revision"),
        ({"host": "h1", "ofport": 11, "if_revision": -1}, 422, "if_revision"),
        ({"host": "h1", "ofport": 11, "mtu": 1400}, 422, "mtu"),
    ],
)
def test_refused_create_and_bind_makes_nothing(
    world: TestClient, sync: RecordingSync, body: dict[str, Any], status: int, words: str
) -> None:
    world.post(EPS, json={"name": "db", "ip": "10.0.0.9"})
    before = _unchanged(world, sync)
    r = world.put(f"{EPS}/web{ATTACH}", json=body)
    assert r.status_code == status and words in r.json()["detail"], r.text
    assert _unchanged(world, sync) == before


def test_existing_name_with_another_ip_is_409(world: TestClient, sync: RecordingSync) -> None:
    world.post(EPS, json={"name": "web"})
    before = _unchanged(world, sync)
    r = world.put(f"{EPS}/web{ATTACH}", json={"host": "h1", "ofport": 11, "ip": "10.0.0.50"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == (
        "endpoint 'web' of network 'n' already holds 10.0.0.2, not 10.0.0.50: "
        "delete it first to change its address"
    )
    assert _unchanged(world, sync) == before


def test_requested_ip_is_given_to_a_new_name(world: TestClient) -> None:
    r = world.put(f"{EPS}/db{ATTACH}", json={"host": "h1", "ofport": 11, "ip": "10.0.0.77"})
    assert r.status_code == 201 and (r.json()["ip"], r.json()["mac"]) == (
        "10.0.0.77",
        "0a:58:0a:00:00:4d",
    )


def test_if_revision_mismatch_answers_the_current_endpoint(
    world: TestClient, sync: RecordingSync
) -> None:
    before = _unchanged(world, sync)
    r = world.put(f"{EPS}/web{ATTACH}", json={"host": "h1", "ofport": 11, "if_revision": 5})
    assert r.status_code == 409, r.text
    assert r.json() == {
        "detail": "endpoint 'web' of network 'n' does not exist (revision 0), not 5: "
        "read it again and retry",
        "endpoint": None,
    }
    assert _unchanged(world, sync) == before

    made = world.put(f"{EPS}/web{ATTACH}", json={"host": "h1", "ofport": 11, "if_revision": 0})
    assert made.status_code == 201, made.text
    current = made.json()
    before = _unchanged(world, sync)
    stale = world.put(
        f"{EPS}/web{ATTACH}",
        json={"host": "h2", "ofport": 2, "labels": {"a": "b"}, "if_revision": 0},
    )
    assert stale.status_code == 409, stale.text
    assert stale.json() == {
        "detail": f"endpoint 'web' of network 'n' is at revision {current['revision']}, not 0: "
        "read it again and retry",
        "endpoint": current,
    }
    assert _unchanged(world, sync) == before
    stale = world.put(f"{EPS}/web/binding", json={"host": "h2", "ofport": 2, "if_revision": 0})
    assert stale.status_code == 409 and stale.json()["endpoint"] == current  # without create too

    moved = world.put(
        f"{EPS}/web/binding",
        json={"host": "h2", "ofport": 2, "if_revision": current["revision"]},
    )
    assert moved.status_code == 200 and moved.json()["host"] == "h2"
    assert moved.json()["revision"] > current["revision"]


def test_labels_stored_replaced_and_listed(world: TestClient) -> None:
    assert world.post(EPS, json={"name": "plain"}).json()["labels"] == {}
    labels = {"app.kubernetes.io/name": "web", "tier": "", "x_y-z.w": "A-1_b.c"}
    r = world.post(EPS, json={"name": "web", "labels": labels})
    assert r.status_code == 201 and r.json()["labels"] == labels
    assert world.get(f"{EPS}/web").json()["labels"] == labels
    again = world.post(EPS, json={"name": "web", "labels": {"tier": "back"}})
    assert again.status_code == 200 and again.json()["labels"] == {"tier": "back"}
    bound = world.put(f"{EPS}/web/binding", json={"host": "h1", "ofport": 11, "labels": {}})
    assert bound.json()["labels"] == {}
    listed = {e["name"]: e["labels"] for e in world.get("/api/v1/endpoints").json()}
    assert listed == {"plain": {}, "web": {}}


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ({f"k{i}": "v" for i in range(65)}, "65 labels: at most 64"),
        ({"k" * 64: "v"}, "not a valid label key"),
        ({"": "v"}, "not a valid label key"),
        ({"-x": "v"}, "not a valid label key"),
        ({"a b": "v"}, "not a valid label key"),
        ({"é": "v"}, "not a valid label key"),
        ({"k": "v" * 64}, "not a valid label value"),
        ({"k": "a/b"}, "not a valid label value"),
        ({"k": "a b"}, "not a valid label value"),
        ({"k": 1}, "labels.k: Input should be a valid string"),
        ({"k": None}, "labels.k: Input should be a valid string"),
        (["k", "v"], "labels: Input should be a valid dictionary"),
    ],
)
def test_bad_labels_are_422(
    world: TestClient, sync: RecordingSync, labels: Any, words: str
) -> None:
    before = _unchanged(world, sync)
    attach = world.put(f"{EPS}/web{ATTACH}", json={"host": "h1", "ofport": 11, "labels": labels})
    create = world.post(EPS, json={"name": "web", "labels": labels})
    for r in (attach, create):
        assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert _unchanged(world, sync) == before


def test_label_limits_are_inclusive(world: TestClient) -> None:
    labels = {f"k{i}": "v" * 63 for i in range(63)} | {"k" * 63: ""}
    r = world.put(f"{EPS}/web{ATTACH}", json={"host": "h1", "ofport": 11, "labels": labels})
    assert r.status_code == 201 and r.json()["labels"] == labels
    assert world.get(f"{EPS}/web").json()["labels"] == labels


def test_openapi_documents_the_contract(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][
        "/api/v1/networks/{network}/endpoints/{name}/binding"
    ]["put"]
    assert {"200", "201", "409", "422"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"]} >= {"create", "wait_ready"}


@pytest.mark.parametrize("move", [False, True])
def test_concurrent_create_and_binds_create_once(world: TestClient, move: bool) -> None:
    """Parallel requests for one new name to different ports: one creates it (201), never a
    500. The others, each elsewhere, move it only if they say so (200); otherwise they are
    409 with the endpoint as the winner bound it (before: all 200, the last silently won)."""
    answers: list[Any] = []
    start = threading.Barrier(6)

    def attach(index: int) -> None:
        start.wait()
        body = {"host": f"h{index % 2 + 1}", "ofport": index + 2, "move": move}
        answers.append(world.put(f"{EPS}/web{ATTACH}", json=body))

    threads = [threading.Thread(target=attach, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.status_code for r in answers) == sorted([200 if move else 409] * 5 + [201])
    assert [e["name"] for e in world.get("/api/v1/endpoints").json()] == ["web"]
    assert len(world.get(f"{EPS}/web/history").json()) == (6 if move else 1)
    if not move:
        (won,) = [r.json() for r in answers if r.status_code == 201]
        for lost in (r.json() for r in answers if r.status_code == 409):
            assert lost["endpoint"]["host"] == won["host"] and "move" in lost["detail"]


@pytest.mark.parametrize(
    "key",
    ["a/b/c", "Example.com/x", "example.com/", "-a.com/x", "x" * 254 + "/k", "k-", "k."],
)
def test_kubernetes_key_syntax_is_enforced(world: TestClient, key: str) -> None:
    r = world.post(EPS, json={"name": "web", "labels": {key: "v"}})
    assert r.status_code == 422 and "not a valid label key" in r.json()["detail"], r.text


@pytest.mark.parametrize("value", ["v-", "_v", ".v"])
def test_kubernetes_value_syntax_is_enforced(world: TestClient, value: str) -> None:
    r = world.post(EPS, json={"name": "web", "labels": {"k": value}})
    assert r.status_code == 422 and "not a valid label value" in r.json()["detail"], r.text


def test_long_dns_prefix_is_a_valid_key(world: TestClient) -> None:
    key = ".".join(["a" * 63] * 3) + ".example.com/" + "n" * 63
    r = world.post(EPS, json={"name": "web", "labels": {key: "v"}})
    assert r.status_code == 201 and r.json()["labels"] == {key: "v"}


def test_patch_replaces_labels_and_logs_a_change(world: TestClient, sync: RecordingSync) -> None:
    made = world.put(
        f"{EPS}/web{ATTACH}", json={"host": "h1", "ofport": 11, "labels": {"app": "web"}}
    ).json()
    r = world.patch(f"{EPS}/web", json={"labels": {"app": "db", "tier": "back"}})
    assert r.status_code == 200, r.text
    assert r.json()["labels"] == {"app": "db", "tier": "back"}
    assert world.get(f"{EPS}/web").json()["labels"] == {"app": "db", "tier": "back"}
    assert sync.notified[-1] > made["revision"]  # flow-relevant: the engine is told
    before = len(sync.notified)
    same = world.patch(f"{EPS}/web", json={"labels": {"tier": "back", "app": "db"}})
    assert same.status_code == 200 and len(sync.notified) == before  # nothing changed


@pytest.mark.parametrize(
    ("path", "body", "code", "words"),
    [
        (f"{EPS}/nope", {"labels": {}}, 404, "does not exist"),
        (f"{EPS}/web", {"labels": {"a b": "v"}}, 422, "not a valid label key"),
        (f"{EPS}/web", {}, 422, "labels"),
        (f"{EPS}/web", {"labels": {}, "ip": "10.0.0.9"}, 422, "ip"),
    ],
)
def test_bad_patch_changes_nothing(
    world: TestClient, sync: RecordingSync, path: str, body: Any, code: int, words: str
) -> None:
    world.post(EPS, json={"name": "web", "labels": {"app": "web"}})
    before = _unchanged(world, sync)
    r = world.patch(path, json=body)
    assert r.status_code == code and words in r.json()["detail"], r.text
    assert _unchanged(world, sync) == before
