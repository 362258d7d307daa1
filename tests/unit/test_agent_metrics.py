"""The agent's metrics: plug steps, OVS verbs and reconcile repairs counted through the fakes
of ``agentfakes.py``; ``--metrics`` served on a real socket, its token checked with a real
controller app (and refused without one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.api.app import create_app
from controller.auth import Role
from controller.config import Settings
from controller.db import migrate, tokens
from controller.db.session import make_engine, make_session_factory
from hostagent.agent import Agent
from hostagent.api.metrics import MetricsServer, TokenCheck, create_metrics_app, parse_address
from hostagent.errors import OvsError
from hostagent.metrics import AgentMetrics, TimedOvs
from hostagent.plug import PlugRequest
from hostagent.settings import AgentSettings
from tests.liveserver import serve
from tests.unit.agentfakes import FakeHost, as_client


def samples(metrics: AgentMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def agent_with_metrics(host: FakeHost) -> tuple[Agent, AgentMetrics]:
    metrics = AgentMetrics()
    agent = Agent(
        host.settings(), client=as_client(host.ctl), ovs=TimedOvs(host.ovs, metrics),
        links=host.links, metrics=metrics,
    )  # fmt: skip
    metrics.watch(agent)
    agent.setup_bridge()
    agent.register()
    return agent, metrics


def test_plug_steps_ovs_verbs_and_repairs_are_counted() -> None:
    host = FakeHost()
    for ns in ("c1", "c2"):
        host.links.add_netns(ns)
    agent, metrics = agent_with_metrics(host)
    assert value(metrics, "vxplane_agent_registered") == 1
    assert value(metrics, "vxplane_agent_bridge_ready") == 1
    assert value(metrics, "vxplane_agent_plug_seconds_count") == 0
    agent.attach(PlugRequest(network="blue", name="a", netns="c1"))
    for step in ("veth", "bind", "configure", "port"):
        assert value(metrics, "vxplane_agent_plug_step_seconds_count", step=step) == 1, step
    assert value(metrics, "vxplane_agent_plug_seconds_count") == 1
    assert value(metrics, "vxplane_agent_ovs_op_seconds_count", op="add_port") == 1
    assert value(metrics, "vxplane_agent_ovs_op_seconds_count", op="wait_ofport") >= 2
    # a plug that fails in OVS: counted as a failure, its OVS error too, no plug observed
    host.ovs.fail("add_port", OvsError("ovsdb said no"))
    with pytest.raises(OvsError):
        agent.attach(PlugRequest(network="blue", name="b", netns="c2"))
    assert value(metrics, "vxplane_agent_plug_failures_total") == 1
    assert value(metrics, "vxplane_agent_ovs_errors_total", op="add_port") == 1
    assert value(metrics, "vxplane_agent_plug_seconds_count") == 1
    # the container of a dies: reconciliation removes its port and unbinds it
    reconciles = value(metrics, "vxplane_agent_reconciles_total")
    host.kill("c1")
    actions = agent.reconcile()
    assert actions
    assert value(metrics, "vxplane_agent_reconciles_total") == reconciles + 1
    repaired = {
        dict(labels)["action"]: n
        for (name, labels), n in samples(metrics).items()
        if name == "vxplane_agent_reconcile_repairs_total"
    }
    assert sum(repaired.values()) == len(actions) and set(repaired) <= {
        "recreate", "bind", "unbind", "remove_local", "drop_stale", "conflict"
    }  # fmt: skip
    assert agent.reconcile() == []
    assert value(metrics, "vxplane_agent_reconciles_total") == reconciles + 2


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real controller app on loopback, and a token per role."""
    url = f"sqlite:///{tmp_path}/vx.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    made = {}
    with make_session_factory(engine)() as session:
        for role in ("viewer", "admin"):
            _, made[role] = tokens.create_token(session, Role(role))
        _, made["agent"] = tokens.create_token(session, Role.agent, host="h1")
        session.commit()
    engine.dispose()
    app = create_app(Settings(db_url=url, allowed_hosts=["127.0.0.1"]))
    with serve(app) as base:
        yield base, made


def test_metrics_endpoint_needs_a_token_the_controller_takes(
    controller: tuple[str, dict[str, str]],
) -> None:
    base, made = controller
    metrics = AgentMetrics()
    check = TokenCheck(base)
    server = MetricsServer(create_metrics_app(metrics, check.check), "127.0.0.1:0")
    stop = server.start()
    host, port = server.address
    url = f"http://{host}:{port}/metrics"
    try:
        anonymous = httpx.get(url, timeout=10)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert "vxplane_agent" not in anonymous.text
        wrong = httpx.get(url, headers={"Authorization": "Bearer vxp_nope"}, timeout=10)
        assert wrong.status_code == 401 and wrong.json()["detail"]
        for role in ("viewer", "agent", "admin"):
            ok = httpx.get(url, headers={"Authorization": f"Bearer {made[role]}"}, timeout=10)
            assert ok.status_code == 200, (role, ok.text)
            assert ok.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert "vxplane_agent_plug_seconds_count 0.0" in ok.text
        assert httpx.get(url.replace("/metrics", "/"), timeout=10).status_code == 404
    finally:
        stop()
        check.close()


def test_a_confirmed_token_outlives_a_controller_outage(
    controller: tuple[str, dict[str, str]],
) -> None:
    base, made = controller
    now = [1000.0]
    check = TokenCheck(base, clock=lambda: now[0])
    assert check.check(made["viewer"]) is None
    assert check.check("vxp_never_seen") is not None
    check._http = httpx.Client(base_url="http://127.0.0.1:9", timeout=1)  # nobody listens
    now[0] += 120  # past FRESH: asked again, unreachable, confirmed before: still fine
    assert check.check(made["viewer"]) is None
    refused = check.check(made["admin"])  # never confirmed: cannot be checked now
    assert refused is not None and refused.status == 503
    now[0] += 3600  # past STALE_OK
    gone = check.check(made["viewer"])
    assert gone is not None and gone.status == 503
    check.close()


@pytest.mark.parametrize(
    ("address", "ok"),
    [("127.0.0.1:9101", True), ("[::1]:9101", True), (":9101", False), ("host", False),
     ("127.0.0.1:0x10", False), ("127.0.0.1:70000", False)],
)  # fmt: skip
def test_metrics_address_is_checked(address: str, ok: bool) -> None:
    if ok:
        assert parse_address(address)[1] == 9101
    else:
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(address)


def test_metrics_are_off_by_default_and_tls_needs_both_files() -> None:
    base = ["--controller", "http://127.0.0.1:8080", "--host", "h1", "--underlay-ip", "198.18.0.1"]
    assert AgentSettings.from_cli(base).metrics is None
    on = AgentSettings.from_cli([*base, "--metrics", "198.18.0.1:9101"])
    assert on.metrics == "198.18.0.1:9101"
    with pytest.raises(ValueError, match="go together"):
        AgentSettings.from_cli([*base, "--metrics", "127.0.0.1:1", "--metrics-cert", "c.pem"])
    with pytest.raises(ValueError, match="HOST:PORT"):
        AgentSettings.from_cli([*base, "--metrics", ":9101"])
