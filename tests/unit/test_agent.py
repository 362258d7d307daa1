"""hostagent.agent: bridge set-up, registration, attach/detach, and reconciliation of the
local ports with the controller after a restart or a dead port, through the fakes of
``agentfakes.py``."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator

import pytest

from hostagent import plan as planmod
from hostagent.agent import Agent
from hostagent.client import ControllerClient, ControllerError
from hostagent.errors import ControllerUnavailable, NotFound
from hostagent.plug import PlugRequest, device_names
from tests.unit.agentfakes import HOST, FakeHost

A_IF = device_names("blue", "a")[0]
B_IF = device_names("blue", "b")[0]


@pytest.fixture
def host() -> FakeHost:
    h = FakeHost()
    for ns in ("c1", "c2"):
        h.links.add_netns(ns)
    return h


def up(host: FakeHost) -> Agent:
    """A (new) agent on the host, past bridge set-up and registration."""
    agent = host.agent()
    agent.setup_bridge()
    agent.register()
    return agent


def plug(agent: Agent, name: str, netns: str) -> None:
    agent.attach(PlugRequest(network="blue", name=name, netns=netns))


def sent_ofports(host: FakeHost) -> list[object]:
    """The ofport of every bind the controller was sent, refused ones included."""
    sig = inspect.signature(ControllerClient.bind)
    return [
        sig.bind(None, *args, **kwargs).arguments["ofport"]
        for args, kwargs in host.ctl.calls_of("bind")
    ]


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


# -- set-up and the local verbs -------------------------------------------------------------


def test_setup_and_register(host: FakeHost) -> None:
    agent = host.agent()
    with pytest.raises(ControllerUnavailable):  # no bridge yet: nothing can be plugged
        plug(agent, "a", "c1")
    agent.setup_bridge()
    assert (agent.tunnel_port, agent.dpid) == (1, host.ovs.bridge_dpid("br-int"))
    assert not agent.registered and host.is_empty()
    plug(agent, "a", "c1")  # registers on the way instead of waiting for the control loop
    assert agent.registered and host.ctl.hosts[HOST]["tunnel_port"] == 1
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, 2, "ready")}
    assert agent.health()["bridge_ready"] and agent.local_endpoints() == [
        {"network": "blue", "name": "a", "ip": "10.0.0.2", "ip6": None, "port_name": A_IF,
         "ofport": 2}
    ]  # fmt: skip


def test_attach_into_a_missing_namespace_makes_nothing(host: FakeHost) -> None:
    agent = up(host)
    with pytest.raises(NotFound):
        plug(agent, "a", "gone")
    assert host.is_empty() and host.ctl.view() == {}


def test_detach_unbinds_and_keeps_the_address(host: FakeHost) -> None:
    agent = up(host)
    plug(agent, "a", "c1")
    out = agent.detach("blue", "a")
    assert out == {"network": "blue", "name": "a", "detached": True, "unbound": True}
    assert host.is_empty()
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", None, None, "reserved")}


def test_detach_while_the_controller_is_down_is_finished_by_reconciliation(
    host: FakeHost,
) -> None:
    agent = up(host)
    plug(agent, "a", "c1")
    host.ctl.down = True
    assert agent.detach("blue", "a")["unbound"] is False
    assert host.is_empty() and not agent.registered
    host.ctl.down = False
    agent.register()
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", None, None, "reserved")}


# -- reconciliation after a restart ----------------------------------------------------------


@pytest.mark.parametrize("reconfigured", [False, True], ids=["ofport-kept", "ofport-minus-1"])
def test_restart_drops_a_port_whose_device_vanished(host: FakeHost, reconfigured: bool) -> None:
    """A container died while the agent was down: its veth is gone. OVS keeps the port, with
    its old ofport until vswitchd reconfigures and -1 after. The port must go and the endpoint
    be unbound; binding it (at the old number or at -1) would leak the address and flows."""
    old = up(host)
    plug(old, "a", "c1")
    plug(old, "b", "c2")
    old.stop()
    assert host.kill("c1", reconfigured=reconfigured) == [A_IF]
    binds_before = len(host.ctl.calls_of("bind"))

    agent = up(host)

    assert host.ovs.port(A_IF) is None and host.links.names_in() == {B_IF}
    assert host.ctl.view() == {
        ("blue", "a"): ("10.0.0.2", None, None, "reserved"),  # unbound, address kept
        ("blue", "b"): ("10.0.0.3", HOST, 3, "ready"),
    }
    assert all(isinstance(p, int) and p > 0 for p in sent_ofports(host))
    assert len(host.ctl.calls_of("bind")) == binds_before  # nothing to bind: b is in place
    assert agent.reconcile() == []


@pytest.mark.parametrize("reconfigured", [False, True], ids=["ofport-kept", "ofport-minus-1"])
def test_a_dead_port_plugged_again_before_reconciliation_is_kept(
    host: FakeHost, reconfigured: bool
) -> None:
    agent = up(host)
    plug(agent, "a", "c1")
    host.kill("c1", reconfigured=reconfigured)
    plug(agent, "a", "c2")  # the pod's new sandbox, before the wake-up was handled

    assert agent.reconcile() == []
    port = host.ovs.port(A_IF)
    assert port is not None and port.ofport is not None
    assert host.links.names_in("c2") == {"eth0"}
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, port.ofport, "ready")}


def test_restart_recreates_an_endpoint_the_controller_lost(host: FakeHost) -> None:
    old = up(host)
    plug(old, "a", "c1")
    host.ctl.delete_endpoint("blue", "a")  # e.g. the controller's database was restored

    agent = up(host)

    ep = host.ctl.ep("blue", "a")
    assert ep is not None and (str(ep.ip), ep.host, ep.ofport, ep.port_name) == (
        "10.0.0.2", HOST, 2, A_IF,
    )  # fmt: skip
    assert ep.ready and host.ovs.port(A_IF) is not None
    assert agent.reconcile() == []


def test_restart_leaves_a_port_alone_when_its_address_went_to_another_name(
    host: FakeHost,
) -> None:
    old = up(host)
    plug(old, "a", "c1")
    host.ctl.delete_endpoint("blue", "a")
    host.ctl.create_endpoint("blue", "thief", ip="10.0.0.2")

    up(host)

    assert host.ctl.view() == {("blue", "thief"): ("10.0.0.2", None, None, "reserved")}
    assert host.ovs.port(A_IF) is not None  # the container keeps working; reported, not torn


def test_restart_binds_again_an_endpoint_unbound_meanwhile(host: FakeHost) -> None:
    old = up(host)
    plug(old, "a", "c1")
    host.ctl.unbind("blue", "a")

    up(host)

    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, 2, "ready")}


def test_a_bind_planned_for_a_port_unplugged_meanwhile_is_not_sent(host: FakeHost) -> None:
    """Reconciliation plans from one read, then takes each endpoint's lock: a port unplugged
    in between (Docker's DeleteEndpoint) must not be bound again."""
    agent = up(host)
    plug(agent, "a", "c1")
    host.ctl.unbind("blue", "a")
    (port,) = agent.local_ports()
    agent.plugger.remove_local(port.port_name)  # the unplug that won the lock
    binds = len(host.ctl.calls_of("bind"))

    agent._apply(planmod.Bind(port))

    assert len(host.ctl.calls_of("bind")) == binds
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", None, None, "reserved")}


def test_restart_removes_the_port_of_an_endpoint_that_moved(host: FakeHost) -> None:
    old = up(host)
    plug(old, "a", "c1")
    host.ctl.register_host("h2", "198.18.0.2")
    host.ctl.bind("blue", "a", "h2", 7, "vx-on-h2", move=True)

    up(host)

    assert host.is_empty()
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", "h2", 7, "ready")}


def test_restart_unbinds_an_endpoint_bound_here_without_a_port(host: FakeHost) -> None:
    host.ctl.bind("blue", "ghost", HOST, 9, "vx-ghost", create=True)
    host.ctl.register_host("h2", "198.18.0.2")
    host.ctl.bind("blue", "elsewhere", "h2", 4, create=True)

    agent = up(host)

    assert host.ctl.view() == {
        ("blue", "elsewhere"): ("10.0.0.3", "h2", 4, "ready"),
        ("blue", "ghost"): ("10.0.0.2", None, None, "reserved"),
    }
    assert agent.reconcile() == []


def test_reconcile_waits_for_an_unreachable_controller(host: FakeHost) -> None:
    old = up(host)
    plug(old, "a", "c1")
    host.kill("c1")
    agent = host.agent()
    agent.setup_bridge()
    host.ctl.down = True
    with pytest.raises(ControllerUnavailable):
        agent.register()
    assert not agent.registered
    host.ctl.down = False
    agent.register()
    assert host.ovs.endpoint_ports() == {}
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", None, None, "reserved")}


def test_reconcile_survives_a_refused_action(host: FakeHost) -> None:
    old = up(host)
    plug(old, "a", "c1")
    plug(old, "b", "c2")
    host.ctl.unbind("blue", "a")
    host.ctl.unbind("blue", "b")
    host.ctl.fail("bind", ControllerError(409, "refused"))  # the first re-bind (a's)

    up(host)

    assert host.ctl.view()[("blue", "a")][1] is None
    assert host.ctl.view()[("blue", "b")][1:] == (HOST, 3, "ready")


# -- a port going down while the agent runs ------------------------------------------------


@pytest.fixture
def running(host: FakeHost) -> Iterator[Agent]:
    agent = host.agent(heartbeat_interval=30.0)  # only a wake-up can make it reconcile soon
    agent.start()
    try:
        assert eventually(lambda: agent.registered)
        yield agent
    finally:
        agent.stop()
    assert host.ctl.closed and host.ovs.closed


def test_a_port_going_down_wakes_reconciliation(host: FakeHost, running: Agent) -> None:
    plug(running, "a", "c1")
    plug(running, "b", "c2")
    host.kill("c1")  # the link goes down; OVS still shows the old ofport

    assert eventually(lambda: host.ctl.view()[("blue", "a")][1] is None)
    assert eventually(lambda: host.ovs.port(A_IF) is None)
    assert host.ctl.view()[("blue", "b")] == ("10.0.0.3", HOST, 3, "ready")
    assert all(isinstance(p, int) and p > 0 for p in sent_ofports(host))
