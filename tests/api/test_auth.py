"""Authentication and authorization: the role matrix over every route, tokens, the dashboard
session, the Host header check and the bootstrap admin token."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient
from sqlalchemy import update

from controller.api.app import create_app
from controller.auth import Role
from controller.config import Settings
from controller.db import migrate, tokens
from controller.db.models import HostRow, TokenRow
from controller.db.session import make_engine, make_session_factory

WHO = ("none", "viewer", "agent-h1", "agent-h2", "admin")
NETS = "/api/v1/networks"
EPS = "/api/v1/networks/blue/endpoints"


@dataclass(frozen=True)
class Case:
    """One request, and the status each principal gets (on a fresh copy of the world)."""

    method: str
    path: str
    route: str  # the route's path template (to prove every route is covered)
    expect: dict[str, int]
    body: Any = None
    params: dict[str, Any] | None = None
    items: dict[str, list[int]] | None = None  # a batch's per-item statuses, when it is 200


def by_role(none: int, viewer: int, h1: int, h2: int, admin: int) -> dict[str, int]:
    return dict(zip(WHO, (none, viewer, h1, h2, admin), strict=True))


READ = by_role(401, 200, 200, 200, 200)
ADMIN_ONLY_READ = by_role(401, 403, 403, 403, 200)
E = "/api/v1/networks/{network}/endpoints/{name}"
CASES = [
    Case("GET", "/healthz", "/healthz", by_role(200, 200, 200, 200, 200)),
    Case("GET", "/api/v1/session", "/api/v1/session", READ),
    Case("DELETE", "/api/v1/session", "/api/v1/session", by_role(204, 204, 204, 204, 204)),
    Case("GET", NETS, NETS, READ),
    Case("POST", NETS, NETS, by_role(401, 403, 201, 201, 201),
         body={"name": "red", "subnet": "10.9.0.0/24"}),
    Case("POST", NETS, NETS, by_role(401, 403, 403, 403, 201),
         body={"name": "out", "subnet": "10.9.0.0/24", "external": True}),
    Case("GET", f"{NETS}/blue", NETS + "/{name}", READ),
    Case("PATCH", f"{NETS}/blue", NETS + "/{name}", by_role(401, 403, 403, 403, 200),
         body={"external": True}),
    # blue is sealed: the admin and e1's agent get as far as the 409
    Case("POST", f"{NETS}/blue/publications", NETS + "/{network}/publications",
         by_role(401, 403, 409, 403, 409),
         body={"endpoint": "e1", "host_port": 8080, "port": 80, "proto": "tcp"}),
    Case("GET", f"{NETS}/blue/publications", NETS + "/{network}/publications", READ),
    Case("DELETE", f"{NETS}/blue/publications/tcp/8080",
         NETS + "/{network}/publications/{proto}/{host_port}", by_role(401, 403, 404, 404, 404)),
    # shop is external: an agent publishes for endpoints in its scope (p1 on h1, p0 unbound)
    Case("POST", f"{NETS}/shop/publications", NETS + "/{network}/publications",
         by_role(401, 403, 201, 403, 201),
         body={"endpoint": "p1", "host_port": 8081, "port": 80, "proto": "tcp"}),
    Case("POST", f"{NETS}/shop/publications", NETS + "/{network}/publications",
         by_role(401, 403, 201, 201, 201),
         body={"endpoint": "p0", "host_port": 8082, "port": 80, "proto": "tcp"}),
    # the same publication again is found (200); the port taken by another endpoint is 409
    Case("POST", f"{NETS}/shop/publications", NETS + "/{network}/publications",
         by_role(401, 403, 200, 403, 200),
         body={"endpoint": "p1", "host_port": 9001, "port": 80, "proto": "tcp"}),
    Case("POST", f"{NETS}/shop/publications", NETS + "/{network}/publications",
         by_role(401, 403, 409, 409, 409),
         body={"endpoint": "p0", "host_port": 9001, "port": 80, "proto": "tcp"}),
    Case("DELETE", f"{NETS}/shop/publications/tcp/9001",
         NETS + "/{network}/publications/{proto}/{host_port}", by_role(401, 403, 204, 403, 204)),
    # conditional: only if published for p0; p1 holds it, so it stays (409), whoever asks
    # (a late CNI DEL on h2 after its ADD found the port taken)
    Case("DELETE", f"{NETS}/shop/publications/tcp/9001",
         NETS + "/{network}/publications/{proto}/{host_port}", by_role(401, 403, 409, 409, 409),
         params={"endpoint": "p0"}),
    Case("POST", f"{NETS}/blue/policies", NETS + "/{network}/policies",
         by_role(401, 403, 403, 403, 201), body={"name": "p1"}),
    Case("GET", f"{NETS}/blue/policies", NETS + "/{network}/policies", READ),
    Case("GET", f"{NETS}/blue/policies/p1", NETS + "/{network}/policies/{name}",
         by_role(401, 404, 404, 404, 404)),
    Case("DELETE", f"{NETS}/blue/policies/p1", NETS + "/{network}/policies/{name}",
         by_role(401, 403, 403, 403, 404)),
    Case("DELETE", f"{NETS}/empty", NETS + "/{name}", by_role(401, 403, 204, 204, 204)),
    Case("DELETE", f"{NETS}/blue", NETS + "/{name}", by_role(401, 403, 409, 409, 409)),
    Case("GET", "/api/v1/hosts", "/api/v1/hosts", READ),
    Case("GET", "/api/v1/hosts/h1", "/api/v1/hosts/{name}", READ),
    Case("PUT", "/api/v1/hosts/h1", "/api/v1/hosts/{name}", by_role(401, 403, 200, 403, 200),
         body={"underlay_ip": "198.18.0.1", "dpid": 1}),
    # the takeover of the issue: another underlay IP for h1
    Case("PUT", "/api/v1/hosts/h1", "/api/v1/hosts/{name}", by_role(401, 403, 200, 403, 200),
         body={"underlay_ip": "198.18.0.66", "dpid": 1}),
    Case("POST", "/api/v1/hosts/h1/heartbeat", "/api/v1/hosts/{name}/heartbeat",
         by_role(401, 403, 200, 403, 200)),
    Case("DELETE", "/api/v1/hosts/h1", "/api/v1/hosts/{name}", by_role(401, 403, 403, 403, 204)),
    Case("GET", "/api/v1/endpoints", "/api/v1/endpoints", READ),
    Case("POST", EPS, "/api/v1/networks/{network}/endpoints", by_role(401, 403, 201, 201, 201),
         body={"name": "new"}),
    Case("POST", EPS, "/api/v1/networks/{network}/endpoints", by_role(401, 403, 201, 403, 201),
         body={"name": "new", "host": "h1"}),
    Case("GET", f"{EPS}/e1", E, READ),
    Case("GET", f"{EPS}/e1/history", E + "/history", READ),
    Case("PATCH", f"{EPS}/e1", E, by_role(401, 403, 403, 403, 200),
         body={"labels": {"app": "db"}}),
    Case("PUT", f"{EPS}/e1/binding", E + "/binding", by_role(401, 403, 200, 403, 200),
         body={"host": "h1", "ofport": 7, "move": True}),
    # agent h2 may not move h1's (alive) endpoint to itself
    Case("PUT", f"{EPS}/e1/binding", E + "/binding", by_role(401, 403, 403, 403, 200),
         body={"host": "h2", "ofport": 7, "move": True}),
    Case("PUT", f"{EPS}/e0/binding", E + "/binding", by_role(401, 403, 200, 403, 200),
         body={"host": "h1", "ofport": 7}),
    Case("PUT", f"{EPS}/fresh/binding", E + "/binding", by_role(401, 403, 403, 201, 201),
         body={"host": "h2", "ofport": 9}, params={"create": "true"}),
    Case("DELETE", f"{EPS}/e1/binding", E + "/binding", by_role(401, 403, 200, 403, 200)),
    Case("DELETE", f"{EPS}/e0/binding", E + "/binding", by_role(401, 403, 200, 200, 200)),
    # "only if bound to h2": a no-op on h1's endpoint, so in h2's scope too (a late CNI DEL)
    Case("DELETE", f"{EPS}/e1/binding", E + "/binding", by_role(401, 403, 200, 200, 200),
         params={"host": "h2"}),
    # but h2 may not name h1 for an endpoint h1 holds
    Case("DELETE", f"{EPS}/e1/binding", E + "/binding", by_role(401, 403, 200, 403, 200),
         params={"host": "h1"}),
    Case("DELETE", f"{EPS}/e1", E, by_role(401, 403, 204, 403, 204)),
    Case("DELETE", f"{EPS}/e0", E, by_role(401, 403, 204, 204, 204)),
    # conditional: only if bound to no host; h1's endpoint stays, whoever asks (409)
    Case("DELETE", f"{EPS}/e1", E, by_role(401, 403, 409, 409, 409),
         params={"if_unbound": "true"}),
    # batch: the request is 200 for writers, each item authorized on its own
    Case("POST", "/api/v1/bindings", "/api/v1/bindings", by_role(401, 403, 200, 200, 200),
         body={"items": [{"network": "blue", "name": "e1", "host": "h1", "ofport": 7},
                         {"network": "blue", "name": "e2", "host": "h2", "ofport": 7}]},
         items={"agent-h1": [409, 403], "agent-h2": [403, 409], "admin": [409, 409]}),
    Case("POST", "/api/v1/bindings", "/api/v1/bindings", by_role(401, 403, 200, 200, 200),
         body={"items": [{"network": "blue", "name": "e1", "host": "h1", "ofport": 7,
                          "move": True},
                         {"network": "blue", "name": "e0", "host": "h2", "ofport": 8}]},
         items={"agent-h1": [200, 403], "agent-h2": [403, 200], "admin": [200, 200]}),
    # h2 may not move h1's (alive) endpoint to itself, nor unbind it there
    Case("POST", "/api/v1/bindings", "/api/v1/bindings", by_role(401, 403, 200, 200, 200),
         body={"items": [{"network": "blue", "name": "e1", "host": "h2", "ofport": 9,
                          "move": True},
                         {"network": "blue", "name": "e1", "host": "h1", "unbind": True}]},
         items={"agent-h1": [403, 200], "agent-h2": [403, 403], "admin": [200, 200]}),
    Case("GET", "/api/v1/events/recent", "/api/v1/events/recent", READ),
    Case("GET", "/metrics", "/metrics", READ),
    Case("GET", "/api/v1/controllers", "/api/v1/controllers", READ),
    Case("GET", f"{NETS}/blue/trace", NETS + "/{network}/trace", READ,
         params={"src": "e1", "dst": "e2", "protocol": "tcp", "port": 80, "switches": "false"}),
    Case("GET", "/api/v1/hosts/h1/tasks", "/api/v1/hosts/{name}/tasks",
         by_role(401, 403, 200, 403, 200)),
    Case("PUT", "/api/v1/hosts/h1/tasks/nope", "/api/v1/hosts/{name}/tasks/{task_id}",
         by_role(401, 403, 404, 403, 404), body={"output": ""}),
    Case("GET", "/api/v1/tokens", "/api/v1/tokens", ADMIN_ONLY_READ),
    Case("POST", "/api/v1/tokens", "/api/v1/tokens", by_role(401, 403, 403, 403, 201),
         body={"role": "viewer"}),
    Case("DELETE", "/api/v1/tokens/{viewer}", "/api/v1/tokens/{token_id}",
         by_role(401, 403, 403, 403, 200)),
    Case("POST", "/api/v1/tokens/{viewer}/rotate", "/api/v1/tokens/{token_id}/rotate",
         by_role(401, 403, 403, 403, 201), body={}),
]  # fmt: skip
# Checked elsewhere: the endless event stream over a real server
# (test_events.py::test_event_stream_needs_a_token), and login with a token in the body
# (test_dashboard_session_cookie below).
ELSEWHERE = {("GET", "/api/v1/events"), ("POST", "/api/v1/session")}


@dataclass
class World:
    """A template database (network blue, hosts h1 and h2, endpoints e0 reserved, e1 on h1,
    e2 on h2, network empty; external network shop with p0 reserved and p1 on h1, whose
    tcp/9001 is published) and a token per principal."""

    template: Path
    tokens: dict[str, str | None]
    viewer_id: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("world")
    url = f"sqlite:///{base}/vx.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    made: dict[str, str | None] = {"none": None}
    with factory() as session:
        for who, role, host in (
            ("viewer", Role.viewer, None),
            ("agent-h1", Role.agent, "h1"),
            ("agent-h2", Role.agent, "h2"),
            ("admin", Role.admin, None),
        ):
            record, made[who] = tokens.create_token(session, role, host=host)
            if who == "viewer":
                viewer_id = record.id
        session.commit()
    engine.dispose()
    app = create_app(Settings(db_url=url, allowed_hosts=["testserver"]), sync=RecordingSync())
    with TestClient(app, headers={"Authorization": f"Bearer {made['admin']}"}) as admin:
        for req in (
            ("POST", NETS, {"name": "blue", "subnet": "10.0.0.0/24"}),
            ("POST", NETS, {"name": "empty", "subnet": "10.1.0.0/24"}),
            ("PUT", "/api/v1/hosts/h1", {"underlay_ip": "198.18.0.1", "dpid": 1}),
            ("PUT", "/api/v1/hosts/h2", {"underlay_ip": "198.18.0.2", "dpid": 2}),
            ("POST", "/api/v1/hosts/h1/heartbeat", None),
            ("POST", "/api/v1/hosts/h2/heartbeat", None),
            ("POST", EPS, {"name": "e0"}),
            ("PUT", f"{EPS}/e1/binding?create=true", {"host": "h1", "ofport": 3}),
            ("PUT", f"{EPS}/e2/binding?create=true", {"host": "h2", "ofport": 3}),
            ("POST", NETS, {"name": "shop", "subnet": "10.2.0.0/24", "external": True}),
            ("POST", f"{NETS}/shop/endpoints", {"name": "p0"}),
            ("PUT", f"{NETS}/shop/endpoints/p1/binding?create=true", {"host": "h1", "ofport": 4}),
            (
                "POST",
                f"{NETS}/shop/publications",
                {"endpoint": "p1", "host_port": 9001, "port": 80},
            ),
        ):
            assert admin.request(req[0], req[1], json=req[2]).status_code < 300, req
    return World(base / "vx.db", made, viewer_id)


@pytest.fixture
def fresh(world: World, tmp_path: Path) -> Iterator[Callable[[str | None], TestClient]]:
    """A client on a copy of the world carrying ``token``."""
    shutil.copy(world.template, tmp_path / "vx.db")
    url = f"sqlite:///{tmp_path}/vx.db"
    engine = make_engine(url)
    with engine.begin() as conn:  # the hosts are alive now, however long ago the world was made
        conn.execute(update(HostRow).values(last_seen=datetime.now(UTC)))
    engine.dispose()
    clients: list[TestClient] = []

    def build(token: str | None) -> TestClient:
        app = create_app(Settings(db_url=url, allowed_hosts=["testserver"]), sync=RecordingSync())
        client = TestClient(app)
        if token:
            client.headers["Authorization"] = f"Bearer {token}"
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def test_the_matrix_covers_every_route(world: World) -> None:
    app = create_app(Settings(db_url=f"sqlite:///{world.template}"), sync=RecordingSync())
    routes = {
        (method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    covered = {(case.method, case.route) for case in CASES} | ELSEWHERE
    assert routes - covered == set(), "routes missing from the role matrix"
    assert covered - routes == set(), "the matrix names routes that do not exist"


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path} {c.body or ''}")
def test_role_matrix(
    case: Case, who: str, world: World, fresh: Callable[[str | None], TestClient]
) -> None:
    client = fresh(world.tokens[who])
    path = case.path.replace("{viewer}", world.viewer_id)
    before = fresh(world.tokens["admin"]).get("/api/v1/events/recent").json()["last_id"]
    resp = client.request(case.method, path, json=case.body, params=case.params)
    assert resp.status_code == case.expect[who], resp.text
    if resp.status_code in (401, 403):
        assert resp.json()["detail"]
        after = fresh(world.tokens["admin"]).get("/api/v1/events/recent").json()["last_id"]
        assert after == before, "a refused request changed something"
    if resp.status_code == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
    if case.items is not None and resp.status_code == 200:
        statuses = [outcome["status"] for outcome in resp.json()["items"]]
        assert statuses == case.items[who], resp.text
        if set(statuses) <= {403}:
            after = fresh(world.tokens["admin"]).get("/api/v1/events/recent").json()["last_id"]
            assert after == before, "refused items changed something"


def test_refused_host_takeover_leaves_the_underlay(
    world: World, fresh: Callable[[str | None], TestClient]
) -> None:
    attacker = fresh(world.tokens["agent-h2"])
    body = {"underlay_ip": "198.18.0.66", "dpid": 1}
    assert attacker.put("/api/v1/hosts/h1", json=body).status_code == 403
    assert fresh(None).put("/api/v1/hosts/h1", json=body).status_code == 401
    host = fresh(world.tokens["viewer"]).get("/api/v1/hosts/h1").json()
    assert host["underlay_ip"] == "198.18.0.1"


def test_agent_may_take_over_an_endpoint_of_a_lost_host(
    world: World, fresh: Callable[[str | None], TestClient], tmp_path: Path
) -> None:
    h2 = fresh(world.tokens["agent-h2"])
    body = {"host": "h2", "ofport": 7, "move": True}
    assert h2.put(f"{EPS}/e1/binding", json=body).status_code == 403
    engine = make_engine(f"sqlite:///{tmp_path}/vx.db")
    with engine.begin() as conn:  # h1's heartbeat is an hour old: h1 is lost
        old = datetime.now(UTC) - timedelta(hours=1)
        conn.execute(update(HostRow).where(HostRow.name == "h1").values(last_seen=old))
    engine.dispose()
    moved = h2.put(f"{EPS}/e1/binding", json=body)
    assert moved.status_code == 200 and moved.json()["host"] == "h2"


def test_events_record_the_principal(
    world: World, fresh: Callable[[str | None], TestClient]
) -> None:
    h1 = fresh(world.tokens["agent-h1"])
    assert h1.put(f"{EPS}/e0/binding", json={"host": "h1", "ofport": 8}).status_code == 200
    last = h1.get("/api/v1/events/recent").json()["events"][-1]
    agent_id = world.tokens["agent-h1"].split("_")[1]  # type: ignore[union-attr]
    assert last["type"] == "endpoint.bound" and last["data"]["by"] == f"agent:{agent_id}"


def test_tokens_create_list_revoke_and_expire(
    world: World, fresh: Callable[[str | None], TestClient], tmp_path: Path
) -> None:
    admin = fresh(world.tokens["admin"])
    made = admin.post("/api/v1/tokens", json={"role": "agent", "host": "h9"}).json()
    assert made["token"].startswith(f"vxp_{made['id']}_") and made["host"] == "h9"
    listed = {t["id"]: t for t in admin.get("/api/v1/tokens").json()}
    assert made["id"] in listed and "token" not in listed[made["id"]]
    assert "secret" not in str(listed) and made["token"] not in str(listed)
    agent = fresh(made["token"])
    assert agent.get("/api/v1/networks").status_code == 200
    assert admin.delete(f"/api/v1/tokens/{made['id']}").status_code == 200
    # the revoking controller forgets it at once; a new one never knew it
    assert fresh(made["token"]).get("/api/v1/networks").status_code == 401
    bad = admin.post("/api/v1/tokens", json={"role": "agent"})
    assert bad.status_code == 422 and "host" in bad.json()["detail"]
    assert admin.post("/api/v1/tokens", json={"role": "viewer", "host": "h1"}).status_code == 422
    short = admin.post("/api/v1/tokens", json={"role": "viewer", "expires_in": 60}).json()
    assert fresh(short["token"]).get("/api/v1/networks").status_code == 200
    engine = make_engine(f"sqlite:///{tmp_path}/vx.db")
    with engine.begin() as conn:
        old = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(update(TokenRow).where(TokenRow.id == short["id"]).values(expires_at=old))
    engine.dispose()
    expired = fresh(short["token"]).get("/api/v1/networks")
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer vxp_000000000000_" + "a" * 43,  # well-formed, unknown
        "Bearer nonsense",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer ",
    ],
)
def test_bad_credentials_answer_401(
    header: str, world: World, fresh: Callable[[str | None], TestClient]
) -> None:
    resp = fresh(None).get("/api/v1/networks", headers={"Authorization": header})
    assert resp.status_code == 401 and resp.json()["detail"]


def test_dashboard_session_cookie(world: World, fresh: Callable[[str | None], TestClient]) -> None:
    browser = fresh(None)
    assert browser.post("/api/v1/session", json={"token": "vxp_bad"}).status_code == 401
    login = browser.post("/api/v1/session", json={"token": world.tokens["admin"]})
    assert login.status_code == 200 and login.json()["role"] == "admin"
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert browser.get("/api/v1/networks").status_code == 200
    # a write carried by the cookie must come from the page's own origin
    body = {"name": "red", "subnet": "10.9.0.0/24"}
    assert browser.post(NETS, json=body).status_code == 403
    cross = browser.post(NETS, json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    evil = browser.post(NETS, json=body, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    same = browser.post(NETS, json=body, headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 201
    assert browser.delete("/api/v1/session").status_code == 204
    assert browser.get("/api/v1/networks").status_code == 401


@pytest.mark.parametrize(
    ("allowed", "host", "status"),
    [
        ([], "127.0.0.1:8080", 200),
        ([], "localhost", 200),
        ([], "[::1]:8080", 200),
        ([], "evil.example", 400),
        ([], "evil.example:8080", 400),
        (["vx.example.org"], "vx.example.org:8443", 200),
        (["vx.example.org"], "127.0.0.1", 400),
        (["*"], "anything.example", 200),
    ],
)
def test_host_header_is_checked(
    allowed: list[str], host: str, status: int, db_file_url: str
) -> None:
    app = create_app(Settings(db_url=db_file_url, allowed_hosts=allowed), sync=RecordingSync())
    with TestClient(app) as client:
        resp = client.get("/healthz", headers={"Host": host})
    assert resp.status_code == status
    if status == 400:
        assert "--allowed-host" in resp.json()["detail"]


def test_listen_address_is_loopback_by_default() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.api_host == "127.0.0.1" and settings.openflow_host == "127.0.0.1"
    with_addr = Settings(api_host="198.18.0.254")
    assert with_addr.allowed_hosts_or_default()[0] == "198.18.0.254"


def test_openapi_states_the_bearer_requirement(world: World) -> None:
    app = create_app(Settings(db_url=f"sqlite:///{world.template}"), sync=RecordingSync())
    spec = app.openapi()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in spec["paths"]["/api/v1/networks"]["post"]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if operation.get("security") != []:
                assert "401" in operation["responses"], (method, path)


def test_rotation_replaces_a_token_now_or_after_a_grace(
    world: World, fresh: Callable[[str | None], TestClient]
) -> None:
    admin = fresh(world.tokens["admin"])
    old = admin.post("/api/v1/tokens", json={"role": "agent", "host": "h1"}).json()
    new = admin.post(f"/api/v1/tokens/{old['id']}/rotate", json={}).json()
    assert (new["role"], new["host"]) == ("agent", "h1") and new["token"] != old["token"]
    assert fresh(old["token"]).get("/api/v1/networks").status_code == 401
    assert (
        fresh(new["token"])
        .put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})
        .status_code
        == 200
    )
    again = admin.post(f"/api/v1/tokens/{old['id']}/rotate", json={})
    assert again.status_code == 409 and "no longer works" in again.json()["detail"]
    graced = admin.post(f"/api/v1/tokens/{new['id']}/rotate", json={"grace": 60}).json()
    assert fresh(new["token"]).get("/api/v1/networks").status_code == 200  # still, for 60 s
    assert fresh(graced["token"]).get("/api/v1/networks").status_code == 200
    listed = {t["id"]: t for t in admin.get("/api/v1/tokens").json()}
    assert listed[new["id"]]["expires_at"] is not None
    assert admin.post("/api/v1/tokens/nope/rotate", json={}).status_code == 404
