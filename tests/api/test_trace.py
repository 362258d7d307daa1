"""GET /api/v1/networks/{network}/trace through the API on a real database: the model's
verdict and path, and the question's errors as clear 4xx."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from controller.api.app import create_app
from controller.cli.main import app as cli
from controller.config import Settings
from tests.liveserver import serve

NETS = "/api/v1/networks"


@pytest.fixture
def world(client: TestClient) -> TestClient:
    for net in ("blue", "red"):
        client.post(NETS, json={"name": net, "subnet": "10.0.0.0/24"}).raise_for_status()
    for host, dpid in (("h1", 1), ("h2", 2)):
        body = {"underlay_ip": f"198.18.0.{dpid}", "dpid": dpid}
        client.put(f"/api/v1/hosts/{host}", json=body).raise_for_status()
    for net, name, host, ofport, ip in (
        ("blue", "web", "h1", 3, "10.0.0.10"), ("blue", "db", "h2", 4, "10.0.0.20"),
        ("red", "other", "h2", 5, "10.0.0.30"),
    ):  # fmt: skip
        client.put(
            f"{NETS}/{net}/endpoints/{name}/binding",
            json={"host": host, "ofport": ofport, "ip": ip}, params={"create": "true"},
        ).raise_for_status()  # fmt: skip
    client.post(f"{NETS}/blue/endpoints", json={"name": "idle"}).raise_for_status()
    return client


def test_delivered_across_hosts_with_the_path(world: TestClient) -> None:
    params = {"src": "web", "dst": "db", "protocol": "tcp", "port": 5432, "switches": "false"}
    got = world.get(f"{NETS}/blue/trace", params=params)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["verdict"] == "delivered" and body["dst"] == "db"
    vni = world.get(f"{NETS}/blue").json()["vni"]
    assert body["model"]["hops"] == [{"from_host": "h1", "to_host": "h2", "vni": vni}]
    hosts = [s["host"] for s in body["model"]["steps"]]
    assert hosts[0] == "h1" and hosts[-1] == "h2"
    assert all(len(s["cookie"]) == 16 for s in body["model"]["steps"] if s["cookie"])
    assert "on h2 port 4" in body["reason"]


def test_dropped_by_isolation_says_where(world: TestClient) -> None:
    # 10.0.0.30 is red's, on h2: blue's packet to it goes nowhere
    params = {"src": "web", "dst": "10.0.0.30", "switches": "false"}
    got = world.get(f"{NETS}/blue/trace", params=params).json()
    assert got["verdict"] == "dropped" and got["dst"] is None
    assert got["decided_by"]["host"] in ("h1", "h2") and "dropped on" in got["reason"]


def test_the_policy_rule_that_decided_is_named(world: TestClient) -> None:
    for name, role in (("web", "web"), ("db", "db")):
        r = world.patch(f"{NETS}/blue/endpoints/{name}", json={"labels": {"role": role}})
        assert r.status_code == 200, r.text
    policy = {
        "name": "db-from-web",
        "selector": {"matchLabels": {"role": "db"}},
        "ingress": [{"from": [{"selector": {"matchLabels": {"role": "web"}}}],
                     "ports": [{"protocol": "tcp", "port": 5432}]}],
    }  # fmt: skip
    assert world.post(f"{NETS}/blue/policies", json=policy).status_code == 201
    params = {"src": "web", "dst": "db", "protocol": "tcp", "switches": "false"}
    allowed = world.get(f"{NETS}/blue/trace", params={**params, "port": 5432}).json()
    assert allowed["verdict"] == "delivered"
    assert allowed["policy"] == [
        "ingress of db on h2: allowed by policy db-from-web ingress rule 1"
    ]
    denied = world.get(f"{NETS}/blue/trace", params={**params, "port": 80}).json()
    assert denied["verdict"] == "dropped" and denied["decided_by"]["table"] == 31
    assert denied["reason"].startswith(
        "dropped by policy (ingress of db on h2): isolated by db-from-web; no rule allows tcp/80 "
        "from 10.0.0.10"
    ), denied["reason"]


@pytest.mark.parametrize(
    ("network", "params", "status", "text"),
    [
        ("green", {"src": "web", "dst": "db"}, 404, "no network 'green'"),
        ("blue", {"src": "nobody", "dst": "db"}, 404, "no endpoint 'nobody'"),
        ("blue", {"src": "web", "dst": "nope"}, 404, "not an IPv4 address"),
        ("blue", {"src": "idle", "dst": "db"}, 409, "bound to no host"),
        ("blue", {"src": "web", "dst": "db", "protocol": "tcp"}, 422, "destination port"),
        ("blue", {"src": "web", "dst": "db", "port": 80}, 422, "ICMP has no ports"),
        ("blue", {"src": "web", "dst": "db", "protocol": "sctp"}, 422, "protocol"),
        ("blue", {"src": "web", "dst": "db", "protocol": "tcp", "port": 0}, 422, "port"),
        ("blue", {"src": "web"}, 422, "dst"),
        ("blue", {"src": "web", "dst": "db", "src_ip": "10.0.0.256"}, 422, "src_ip"),
    ],
)
def test_bad_questions_get_a_clear_4xx(
    world: TestClient, network: str, params: dict, status: int, text: str
) -> None:
    got = world.get(f"{NETS}/{network}/trace", params=params)
    assert got.status_code == status and text in got.json()["detail"], got.text


@pytest.fixture
def server(world: TestClient, db_file_url: str) -> Iterator[str]:
    app = create_app(Settings(db_url=db_file_url), sync=RecordingSync())
    with serve(app) as url:
        yield url


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["blue", "web", "db", "--tcp", "5432"], 0, "delivered"),
        (["blue", "web", "10.0.0.30", "--udp", "53"], 1, "dropped on"),
        (["blue", "web", "db", "--src-ip", "10.0.0.99"], 1, "dropped by port security"),
        (["blue", "web", "db"], 0, "icmp"),
        (["blue", "web", "nobody"], 2, "HTTP 404"),
        (["green", "web", "db"], 2, "no network"),
        (["blue", "idle", "db"], 2, "HTTP 409"),
        (["blue", "web", "db", "--tcp", "1", "--udp", "2"], 2, "one of"),
        (["blue", "web"], 2, ""),
    ],
)
def test_the_cli_exit_status_says_the_verdict(
    server: str, make_token: Callable[..., str], args: list[str], code: int, text: str
) -> None:
    env = {"VXPLANE_API": server, "VXPLANE_TOKEN": make_token("viewer")}
    result = CliRunner().invoke(cli, ["trace", *args, "--model-only"], env=env)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert text in result.stdout + result.stderr


def test_the_cli_json_is_the_api_answer(server: str, make_token: Callable[..., str]) -> None:
    env = {"VXPLANE_API": server, "VXPLANE_TOKEN": make_token("viewer")}
    args = ["trace", "blue", "web", "db", "-o", "json", "--model-only"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0
    body = json.loads(result.stdout)
    assert body["verdict"] == "delivered" and body["model"]["steps"]


def fake_ofproto_trace(steps: list[dict]) -> str:
    """What ``ovs-appctl ofproto/trace`` prints for these table visits (OVS 3.1's layout)."""
    lines = ["Flow: ip,in_port=3", "", 'bridge("br-int")', "----------------"]
    for s in steps:
        if s["cookie"] is None:
            lines += [f"{s['table']:2d}. No match.", "    drop"]
        else:
            lines += [f"{s['table']:2d}. ip, priority {s['priority']}, cookie 0x{s['cookie']}"]
    return "\n".join([*lines, "", "Datapath actions: 4"])


@pytest.fixture
def live(world: TestClient, db_file_url: str) -> Iterator[str]:
    settings = Settings(db_url=db_file_url, allowed_hosts=["127.0.0.1"], trace_timeout=3.0)
    with serve(create_app(settings, sync=RecordingSync())) as url:
        yield url


def test_switches_are_asked_over_their_agents_poll(
    live: str, make_token: Callable[..., str]
) -> None:
    viewer = {"Authorization": f"Bearer {make_token('viewer')}"}
    agents = {h: {"Authorization": f"Bearer {make_token('agent', host=h)}"} for h in ("h1", "h2")}
    query = {"src": "web", "dst": "db", "protocol": "tcp", "port": 5432}
    model = httpx.get(f"{live}{NETS}/blue/trace", params={**query, "switches": "false"},
                      headers=viewer).json()  # fmt: skip
    by_host = {h: [s for s in model["model"]["steps"] if s["host"] == h] for h in ("h1", "h2")}

    def ask() -> httpx.Response:
        return httpx.get(f"{live}{NETS}/blue/trace", params=query, headers=viewer, timeout=30)

    def serve_tasks(tamper: str | None = None, silent: str | None = None) -> list[dict]:
        taken = []
        for host in ("h1", "h2"):
            tasks = httpx.get(f"{live}/api/v1/hosts/{host}/tasks", params={"wait": 10},
                              headers=agents[host], timeout=30).json()  # fmt: skip
            assert [t["kind"] for t in tasks] == ["ofproto/trace"], tasks
            taken += tasks
            if host == silent:
                continue
            steps = by_host[host]
            if host == tamper:  # the switch misses in its first table
                steps = [{**steps[0], "cookie": None}]
            body = {"output": fake_ofproto_trace(steps)}
            where = f"{live}/api/v1/hosts/{host}/tasks/{tasks[0]['id']}"
            put = httpx.put(where, json=body, headers=agents[host])
            assert put.status_code == 204, put.text
        return taken

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask)
        taken = serve_tasks()
        agreed = pending.result().json()
    first, second = (t["args"]["flow"] for t in taken)
    assert first.startswith("in_port=3,") and "nw_dst=10.0.0.20" in first
    assert second.startswith("in_port=1,") and "tun_id=" in second
    assert agreed["agree"] is True and [s["host"] for s in agreed["switches"]] == ["h1", "h2"]
    assert all(s["agrees"] and s["answered"] for s in agreed["switches"])

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask)
        serve_tasks(tamper="h2")
        tampered = pending.result().json()
    assert tampered["agree"] is False
    assert [s["agrees"] for s in tampered["switches"]] == [True, False]

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ask)
        serve_tasks(silent="h2")
        silent = pending.result().json()
    assert silent["agree"] is False and silent["switches"][1]["answered"] is False
    # the asker gave up: a late answer finds nobody waiting
    late = httpx.put(f"{live}/api/v1/hosts/h2/tasks/{'0' * 16}", json={"output": ""},
                     headers=agents["h2"])  # fmt: skip
    assert late.status_code == 404


def test_only_the_hosts_agent_takes_its_tasks(live: str, make_token: Callable[..., str]) -> None:
    url = f"{live}/api/v1/hosts/h1/tasks"
    viewer = httpx.get(url, headers={"Authorization": f"Bearer {make_token('viewer')}"})
    assert viewer.status_code == 403 and "viewer" in viewer.json()["detail"]
    other = httpx.get(url, headers={"Authorization": f"Bearer {make_token('agent', host='h2')}"})
    assert other.status_code == 403
    own = httpx.get(url, headers={"Authorization": f"Bearer {make_token('agent', host='h1')}"})
    assert own.status_code == 200 and own.json() == []


def test_ipv6_trace_names_the_source_by_its_ip6(make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client()
    body = {"name": "six", "subnet": "10.6.0.0/24", "subnet6": "fd00:6::/64"}
    assert client.post("/api/v1/networks", json=body).status_code == 201
    assert client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"}).is_success
    for name, port in (("a", 3), ("b", 4)):
        r = client.put(f"/api/v1/networks/six/endpoints/{name}/binding?create=true",
                       json={"host": "h1", "ofport": port})  # fmt: skip
        assert r.status_code == 201, r.text
    b6 = client.get("/api/v1/networks/six/endpoints/b").json()["ip6"]
    params = {"src": "a", "dst": b6, "protocol": "icmp", "switches": "false"}
    got = client.get("/api/v1/networks/six/trace", params=params)
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["src_ip"], body["dst_ip"], body["dst"]) == ("fd00:6::a06:2", b6, "b")
    assert body["verdict"] == "delivered"
