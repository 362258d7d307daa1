"""The fakes of ``agentfakes.py`` keep the contract of what they stand for: the same verbs
with the same signatures, and the behaviour the agent relies on."""

from __future__ import annotations

import inspect
from ipaddress import IPv4Address, IPv4Interface

import pytest

from hostagent.client import ControllerClient, ControllerError
from hostagent.edges import BridgeSpec, LinkEdge, OvsEdge
from hostagent.errors import ControllerUnavailable, LinkError, NotFound, OvsError
from tests.unit.agentfakes import FakeController, FakeLinks, FakeOvs

CLIENT_VERBS = (
    "register_host", "heartbeat", "get_network", "create_network", "delete_network",
    "get_host", "create_endpoint", "get_endpoint", "bind", "unbind", "delete_endpoint",
    "list_endpoints", "close",
)  # fmt: skip


def protocol_verbs(proto: type) -> list[str]:
    return [n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")]


@pytest.mark.parametrize(
    ("real", "fake", "names"),
    [
        (OvsEdge, FakeOvs, protocol_verbs(OvsEdge)),
        (LinkEdge, FakeLinks, protocol_verbs(LinkEdge)),
        (ControllerClient, FakeController, CLIENT_VERBS),
    ],
)
def test_fakes_have_the_same_signatures(real: type, fake: type, names: list[str]) -> None:
    assert names
    for name in names:
        assert inspect.signature(getattr(fake, name)) == inspect.signature(getattr(real, name)), (
            name
        )
    assert FakeController().base_url.startswith("http")
    assert FakeOvs().on_port_down is None


def test_ovs_honours_ofport_request_unless_taken() -> None:
    ovs = FakeOvs()
    ovs.ensure_bridge(BridgeSpec("br-int", "netdev", ()))
    assert ovs.wait_ofport("vxlan0") == 1
    ovs.add_port("br-int", "a", {"k": "v"}, ofport_request=7)
    ovs.unavailable.add(2)
    ovs.add_port("br-int", "b", {}, ofport_request=7)
    ovs.add_port("br-int", "c", {})
    assert (ovs.wait_ofport("a"), ovs.wait_ofport("b"), ovs.wait_ofport("c")) == (7, 3, 4)
    assert ovs.max_ofport("br-int") == 7
    ovs.add_port("br-int", "a", {"x": "y"}, ofport_request=9)  # exists: ids replaced only
    assert ovs.port("a") == ovs.ports("br-int")[1] and ovs.wait_ofport("a") == 7
    assert ovs.ports("br-int")[1].external_ids == {"x": "y"} and ovs.added["a"] == {"k": "v"}
    with pytest.raises(OvsError):
        ovs.wait_ofport("nope")
    with pytest.raises(OvsError):
        ovs.add_port("br-nope", "d", {})


def test_ovs_dead_port_reported_once() -> None:
    ovs = FakeOvs()
    ovs.ensure_bridge(BridgeSpec("br-int", "netdev", ()))
    heard: list[str] = []
    ovs.on_port_down = heard.append
    ovs.add_port("br-int", "a", {})
    ovs.vanish("a")
    assert heard == ["a"] and ovs.wait_ofport("a") == 2  # vswitchd has not reconfigured yet
    ovs.vanish("a", reconfigured=True)
    assert heard == ["a"] and ovs.ports("br-int")[1].ofport is None
    with pytest.raises(OvsError):
        ovs.wait_ofport("a")
    ovs.fail("delete_port", OvsError("boom"), after=1)
    ovs.delete_port("br-int", "nope")
    with pytest.raises(OvsError):
        ovs.delete_port("br-int", "a")
    ovs.delete_port("br-int", "a")
    assert ovs.endpoint_ports() == {}


def test_links_veth_pairs_live_and_die_together() -> None:
    links = FakeLinks()
    with pytest.raises(NotFound):
        links.make_veth_into("vx1", "vp1", "c1", 1450)
    links.add_netns("c1")
    links.make_veth_into("vx1", "vp1", "c1", 1450)
    links.make_veth_into("vx1", "vp1", "c1", 1400)  # a retry replaces the pair
    assert links.names_in() == {"vx1"} and links.names_in("c1") == {"vp1"}
    assert links.dev("vp1", "c1").mtu == 1400
    links.configure(
        "c1", "vp1", "eth0", "0A:58:0A:00:00:02", IPv4Interface("10.0.0.2/24"), 1450,
        IPv4Address("10.0.0.1"),
    )  # fmt: skip
    info = links.get_link("eth0", "c1")
    assert info is not None and (info.mac, info.mtu) == ("0a:58:0a:00:00:02", 1450)
    assert links.ipv4_addresses("eth0", "c1") == [IPv4Interface("10.0.0.2/24")]
    with pytest.raises(LinkError):
        links.disable_tx_offload("vp1", "c1")
    links.delete("eth0", "c1")
    assert links.names_in() == set() and links.names_in("c1") == set()
    links.make_veth("vx2", "vp2", 1450)
    links.make_veth_into("vx3", "vp3", "c1", 1450)
    assert links.remove_netns("c1") == ["vx3"] and links.names_in() == {"vx2", "vp2"}
    links.delete("vp2")
    assert links.names_in() == set()
    links.delete("vx9", "gone")  # a no-op


def test_controller_allocates_binds_and_refuses() -> None:
    ctl = FakeController()
    ctl.register_host("h1", "198.18.0.1")
    net, created = ctl.create_network("blue", "10.0.0.0/24")
    assert created and net.gateway == "10.0.0.1" and ctl.create_network("blue", "x")[1] is False
    ep, created = ctl.bind("blue", "a", "h1", 5, "vxa", create=True, wait_ready=1)
    assert created and (str(ep.ip), ep.mac, ep.state) == ("10.0.0.2", "0a:58:0a:00:00:02", "ready")
    ep, created = ctl.bind("blue", "b", "h1", 6, create=True)
    assert str(ep.ip) == "10.0.0.3" and ep.state == "pending"  # the answer did not wait
    assert ctl.view()[("blue", "b")][3] == "ready"
    revision = ctl.revision
    assert ctl.bind("blue", "a", "h1", 5, wait_ready=1) == (ctl.ep("blue", "a"), False)
    assert ctl.revision == revision  # the same binding again changes nothing
    for ofport in (-1, 0, None):
        with pytest.raises(ControllerError) as info:
            ctl.bind("blue", "a", "h1", ofport)  # type: ignore[arg-type]
        assert info.value.status == 422
    with pytest.raises(ControllerError) as info:
        ctl.bind("blue", "a", "h1", 5, ip="10.0.0.9")
    assert info.value.status == 409
    with pytest.raises(ControllerError) as info:
        ctl.create_endpoint("blue", "c", ip="10.0.0.2")
    assert info.value.status == 409
    with pytest.raises(ControllerError) as info:
        ctl.bind("blue", "zz", "h1", 5)
    assert info.value.status == 404
    assert ctl.unbind("blue", "a", host="h2").host == "h1"  # bound elsewhere: a no-op
    assert ctl.unbind("blue", "a").state == "reserved"
    with pytest.raises(ControllerError):
        ctl.delete_network("blue")  # b is bound
    ctl.down = True
    with pytest.raises(ControllerUnavailable):
        ctl.list_endpoints()
