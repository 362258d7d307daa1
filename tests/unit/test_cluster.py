"""Issue 8: the agent keeps its cluster's id in br-int and refuses a controller whose database
is another cluster's (an empty database after a wrong ``--db`` replaced every flow of every
switch); reconciliation binds are compare-and-set on what it read."""

from __future__ import annotations

from typing import Any

import pytest

from hostagent.agent import EXT_CLUSTER, Agent
from hostagent.client import ControllerError
from hostagent.plug import PlugRequest
from tests.unit.agentfakes import BRIDGE, FakeHost

OTHER = "0b5e6f1a-0000-4000-8000-000000000000"


@pytest.fixture
def host() -> FakeHost:
    h = FakeHost()
    h.links.add_netns("c1")
    return h


def _up(host: FakeHost, **settings: Any) -> Agent:
    agent = host.agent(**settings)
    agent.setup_bridge()
    agent.register()
    return agent


def _sent(host: FakeHost) -> list[Any]:
    return [kwargs.get("cluster_id") for _, kwargs in host.ctl.calls_of("register_host")]


def test_a_new_agent_joins_the_controllers_cluster(host: FakeHost) -> None:
    _up(host)
    assert host.ovs.bridge_ids(BRIDGE) == {EXT_CLUSTER: host.ctl.cluster_id}
    assert _sent(host)[-1] is None
    _up(host)  # restarted: now it says which cluster it is in
    assert _sent(host)[-1] == host.ctl.cluster_id


def test_an_agent_refuses_a_controller_of_another_cluster(host: FakeHost) -> None:
    agent = _up(host)
    agent.attach(PlugRequest(network="blue", name="a", netns="c1"))
    binds = len(host.ctl.calls_of("bind"))
    # the controller restarts on an empty (or another cluster's) database
    host.ctl.cluster_id = OTHER
    host.ctl.endpoints.clear()
    agent.registered = False
    with pytest.raises(ControllerError) as refused:
        agent.register()
    assert refused.value.status == 409 and OTHER in refused.value.detail
    assert not agent.registered
    assert len(host.ctl.calls_of("bind")) == binds  # nothing re-created in that database
    assert host.ovs.bridge_ids(BRIDGE)[EXT_CLUSTER] != OTHER


def test_the_control_loop_keeps_refusing_and_says_why(host: FakeHost) -> None:
    _up(host)
    host.ctl.cluster_id = OTHER
    agent = host.agent()
    agent.start()
    try:
        deadline = 50
        while deadline and not (agent.last_error and OTHER in agent.last_error):
            deadline -= 1
            agent._stop.wait(0.1)
        assert agent.last_error and "cluster" in agent.last_error
        assert not agent.registered
    finally:
        agent.stop()


def test_adopt_cluster_joins_on_purpose_once(host: FakeHost) -> None:
    _up(host)
    host.ctl.cluster_id = OTHER
    agent = _up(host, adopt_cluster=True)
    assert agent.registered and _sent(host)[-1] is None
    assert host.ovs.bridge_ids(BRIDGE) == {EXT_CLUSTER: OTHER}
    agent.registered = False
    agent.register()  # later registrations of the same process check the new id
    assert _sent(host)[-1] == OTHER


def test_reconcile_does_not_undo_a_move_made_after_it_read(host: FakeHost) -> None:
    """Before: the reconciliation bound the endpoint back here unconditionally (last write
    won silently); now its bind carries the revision it read and loses (409)."""
    agent = _up(host)
    agent.attach(PlugRequest(network="blue", name="a", netns="c1"))
    host.ctl.unbind("blue", "a")  # the controller lost our binding...
    host.ctl.register_host("h2", "198.18.0.2")
    read = host.ctl.get_endpoint

    def read_then_moved(network: str, name: str, wait_ready: float | None = None) -> Any:
        ep = read(network, name, wait_ready)
        host.ctl.bind(network, name, "h2", 7)  # ...and h2 took it right after we read
        return ep

    host.ctl.get_endpoint = read_then_moved  # type: ignore[method-assign]
    agent.reconcile()
    assert host.ctl.view()[("blue", "a")][1:3] == ("h2", 7)
    _, kwargs = host.ctl.calls_of("bind")[-1]
    assert kwargs["if_revision"] is not None
