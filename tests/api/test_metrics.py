"""GET /metrics: Prometheus text, a token needed, gauges read from the engine and the database,
histograms fed by requests, attaches and engine passes, the route label a template."""

from __future__ import annotations

from collections.abc import Callable

from fakes import RecordingSync
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from controller.sync import SwitchStatus

ClientFactory = Callable[..., TestClient]  # the make_client fixture (conftest.py)
TokenFactory = Callable[..., str]  # the make_token fixture

EPS = "/api/v1/networks/blue/endpoints"


def scrape(client: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}."""
    resp = client.get("/metrics")  # type: ignore[attr-defined]
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_a_token_and_a_viewer_will_do(
    make_client: ClientFactory, make_token: TokenFactory
) -> None:
    anonymous = make_client(token=None)
    resp = anonymous.get("/metrics")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert "vxplane_" not in resp.text
    bad = anonymous.get("/metrics", headers={"Authorization": "Bearer vxp_nope"})
    assert bad.status_code == 401
    viewer = make_client(token=make_token("viewer"))
    assert value(scrape(viewer), "vxplane_switches_connected") == 0


def test_gauges_follow_the_engine_and_the_database(
    make_client: ClientFactory, sync: RecordingSync
) -> None:
    client = make_client(ready_timeout=2.0)
    client.post("/api/v1/networks", json={"name": "blue", "subnet": "10.0.0.0/24"})
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})
    before = scrape(client)
    assert value(before, "vxplane_endpoints", state="reserved") == 0
    assert value(before, "vxplane_endpoints", state="ready") == 0
    client.post(EPS, json={"name": "r1"})
    client.put(f"{EPS}/p1/binding", json={"host": "h1", "ofport": 5}, params={"create": "true"})
    wanted = client.get("/healthz").json()["revision"]
    sync.status = [
        SwitchStatus(1, True, "198.18.0.1:5000", wanted - 2, 17, host="h1", rejected_flows=1),
        SwitchStatus(2, False, None, 3, 0, host="h2"),
        SwitchStatus(3, True, "198.18.0.3:5000", 0, 0, host="h3", flow_dump="queued"),
        SwitchStatus(4, True, "198.18.0.4:5000", 0, 0, host="h4", flow_dump="under_way"),
        SwitchStatus(5, True, "198.18.0.5:5000", 0, 0, host="h5", flow_dump="queued"),
    ]
    after = scrape(client)
    assert value(after, "vxplane_endpoints", state="reserved") == 1
    assert value(after, "vxplane_endpoints", state="pending") == 1
    assert value(after, "vxplane_intent_revision") == wanted
    assert value(after, "vxplane_switches_connected") == 4
    assert value(after, "vxplane_switch_flow_dumps", state="queued") == 2
    assert value(after, "vxplane_switch_flow_dumps", state="under_way") == 1
    h1 = {"host": "h1", "dpid": f"{1:016x}"}
    h2 = {"host": "h2", "dpid": f"{2:016x}"}
    assert value(after, "vxplane_switch_connected", **h1) == 1
    assert value(after, "vxplane_switch_connected", **h2) == 0
    assert value(after, "vxplane_switch_revision_lag", **h1) == 2
    assert value(after, "vxplane_switch_revision_lag", **h2) == wanted - 3
    assert value(after, "vxplane_switch_flows", **h1) == 17
    assert value(after, "vxplane_switch_rejected_flows", **h1) == 1
    assert value(after, "vxplane_switch_applied_revision", **h1) == wanted - 2


def test_attach_to_ready_histogram_counts_waited_binds(
    make_client: ClientFactory, sync: RecordingSync
) -> None:
    client = make_client(ready_timeout=2.0)
    client.post("/api/v1/networks", json={"name": "blue", "subnet": "10.0.0.0/24"})
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})
    name = "vxplane_attach_ready_seconds_count"
    assert value(scrape(client), name) == 0
    ready = client.put(
        f"{EPS}/a1/binding", json={"host": "h1", "ofport": 5},
        params={"create": "true", "wait_ready": "1"},
    )  # fmt: skip
    assert ready.json()["state"] == "ready"
    # without wait_ready the bind is not an attach that waited: not counted
    client.put(f"{EPS}/a2/binding", json={"host": "h1", "ofport": 6}, params={"create": "true"})
    sync.applied = False  # the switch never confirms: the wait runs out
    late = client.put(
        f"{EPS}/a3/binding", json={"host": "h1", "ofport": 7},
        params={"create": "true", "wait_ready": "0.01"},
    )  # fmt: skip
    assert late.json()["state"] == "pending"
    samples = scrape(client)
    assert value(samples, name) == 1
    assert value(samples, "vxplane_attach_ready_seconds_sum") > 0
    assert value(samples, "vxplane_attach_not_ready_total") == 1


def test_api_latency_is_labelled_by_route_template(make_client: ClientFactory) -> None:
    client = make_client()
    client.post("/api/v1/networks", json={"name": "blue", "subnet": "10.0.0.0/24"})
    for name in ("a", "b", "c/d"):
        client.get(f"{EPS}/{name}")  # 404s, each a distinct raw path
    client.get("/api/v1/networks/blue")
    client.get("/no/such/path")
    samples = scrape(client)
    routes = {
        dict(labels)["route"]
        for (metric, labels) in samples
        if metric == "vxplane_api_request_seconds_count"
    }
    assert "/api/v1/networks/{network}/endpoints/{name:path}" in routes
    assert "/api/v1/networks/{name}" in routes
    assert "<unmatched>" in routes
    assert not [r for r in routes if "blue" in r or "c/d" in r], routes
    count = "vxplane_api_request_seconds_count"
    template = "/api/v1/networks/{network}/endpoints/{name:path}"
    assert value(samples, count, method="GET", route=template, status="404") == 3
    assert value(samples, count, method="POST", route="/api/v1/networks", status="201") == 1


def test_database_errors_are_counted(make_client: ClientFactory) -> None:
    client = make_client()
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with factory() as session:
        try:
            session.connection().exec_driver_sql("SELECT * FROM no_such_table")
        except OperationalError:
            pass
    samples = scrape(client)
    assert value(samples, "vxplane_database_errors_total", kind="OperationalError") == 1


SHOP = "/api/v1/networks/shop"
DB_FROM_WEB = {
    "name": "db-from-web",
    "selector": {"matchLabels": {"app": "db"}},
    "ingress": [
        {
            "from": [{"selector": {"matchLabels": {"app": "web"}}}],
            "ports": [{"protocol": "tcp", "port": 5432}],
        }
    ],
}
WEB_OUT = {"name": "web-out", "selector": {"matchLabels": {"app": "web"}}, "egress": [{}]}


def test_policy_flows_per_network_and_policy(make_client: ClientFactory) -> None:
    """Counts worked out by hand from the table map (controller/pipeline.py), not by the code
    under test: only bound endpoints count, a removed policy takes its series along."""
    client = make_client(ready_timeout=0.1)
    client.post("/api/v1/networks", json={"name": "shop", "subnet": "10.5.0.0/24"})
    client.post("/api/v1/networks", json={"name": "open", "subnet": "10.6.0.0/24"})
    for n, host in ((1, "h1"), (2, "h2")):
        client.put(f"/api/v1/hosts/{host}", json={"underlay_ip": f"198.18.0.{n}", "dpid": n})
    for port, (name, host, app) in enumerate(
        (("db1", "h1", "db"), ("web1", "h1", "web"), ("web2", "h2", "web"), ("x", "h2", "x")),
        start=5,
    ):
        r = client.put(
            f"{SHOP}/endpoints/{name}/binding",
            params={"create": "true"},
            json={"host": host, "ofport": port, "labels": {"app": app}},
        )
        assert r.status_code in (200, 201), r.text
    client.post(f"{SHOP}/endpoints", json={"name": "db9", "labels": {"app": "db"}})  # unbound
    samples = scrape(client)
    assert not [k for k in samples if k[0].startswith("vxplane_policy_")]  # no policy yet

    assert client.post(f"{SHOP}/policies", json=DB_FROM_WEB).status_code == 201
    one = scrape(client)
    # h1 holds db1, isolated for ingress: POL_OUT entry 1; POL_IN_CT blocked replies/replies/
    # related/invalid/cut 5 + the rule's clauses (db1; web1, web2; tcp/5432) 4 + its conj_id
    # flow 1; POL_OUT_CT the same 5 + db1's open egress 1; DELIVER 1. h2 isolates no one.
    assert value(one, "vxplane_policy_flows", network="shop") == 18
    assert value(one, "vxplane_policy_rule_flows", network="shop", policy="db-from-web") == 5
    selected = value(one, "vxplane_policy_selected_endpoints", network="shop", policy="db-from-web")
    assert selected == 1
    assert not [k for k in one if dict(k[1]).get("network") == "open"]

    assert client.post(f"{SHOP}/policies", json=WEB_OUT).status_code == 201
    two = scrape(client)
    # web-out is an Ingress and Egress policy (Kubernetes: Ingress always), so it isolates
    # web1 and web2 for ingress with no rule (nothing comes in) and passes all they send.
    # h1 (db1, web1): 1 + (5 + 5) + (5 + web1's plain pass 1) + db1's open egress 1 +
    # DELIVER 2 = 20; h2 (web2): 1 + 5 + (5 + 1) + DELIVER 1 = 13.
    assert value(two, "vxplane_policy_flows", network="shop") == 33
    assert value(two, "vxplane_policy_rule_flows", network="shop", policy="db-from-web") == 5
    assert value(two, "vxplane_policy_rule_flows", network="shop", policy="web-out") == 2
    assert value(two, "vxplane_policy_selected_endpoints", network="shop", policy="web-out") == 2

    assert client.delete(f"{SHOP}/policies/db-from-web").status_code == 204
    three = scrape(client)
    gone = ("vxplane_policy_rule_flows", (("network", "shop"), ("policy", "db-from-web")))
    assert gone not in three
    # h1 now isolates web1 alone, as h2 does web2: 13 each
    assert value(three, "vxplane_policy_flows", network="shop") == 26
