"""Dual stack at the agent: the plug sequence, its re-plug, reconciliation and the agent's
model of the controller's answers, through the in-memory fakes of ``agentfakes.py``.

Network ``blue`` is IPv4 only (10.0.0.0/24); ``green`` is dual stack (10.1.0.0/24 with
fd00:77::/64, gateway 10.1.0.1 and so fd00:77::a01:1)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, IPv6Interface, IPv6Network

import pytest

from hostagent import plan as planmod
from hostagent.agent import Agent
from hostagent.errors import ControllerUnavailable, LinkError
from hostagent.model import Endpoint
from hostagent.plug import EXT_IP, EXT_IP6, PlugRequest, device_names
from tests.unit.agentfakes import HOST, FakeHost
from vxcommon.addr6 import gateway6

NS = "c1"
GREEN_IF = device_names("green", "a")[0]
BLUE_IF = device_names("blue", "a")[0]


@pytest.fixture
def host() -> FakeHost:
    h = FakeHost()
    h.ctl.create_network("green", "10.1.0.0/24", subnet6="fd00:77::/64")
    h.links.add_netns(NS)
    h.links.add_netns("c2")
    return h


def req(network: str = "green", name: str = "a", netns: str = NS, **kw: object) -> PlugRequest:
    return PlugRequest(network=network, name=name, netns=netns, **kw)  # type: ignore[arg-type]


def up(host: FakeHost) -> Agent:
    agent = host.agent()
    agent.setup_bridge()
    agent.register()
    return agent


def test_dual_stack_plug_gives_the_container_both_families(host: FakeHost) -> None:
    ep = host.plugger().plug(req())

    assert (str(ep.ip), str(ep.ip6), ep.prefixlen6) == ("10.1.0.2", "fd00:77::a01:2", 64)
    assert ep.gateway6 == IPv6Address("fd00:77::a01:1")
    eth0 = host.links.dev("eth0", NS)
    assert eth0.addresses6 == [IPv6Interface("fd00:77::a01:2/64")]
    assert eth0.gateway6 == IPv6Address("fd00:77::a01:1")
    assert eth0.gateway == IPv4Address("10.1.0.1")  # IPv4 as before
    assert not eth0.dad  # unique by construction: usable at once
    # the link-local address is the kernel's EUI-64 one of the MAC the controller derived
    assert eth0.mac == "0a:58:0a:01:00:02"
    assert host.links.ipv6_addresses("eth0", NS) == [
        IPv6Interface("fd00:77::a01:2/64"), IPv6Interface("fe80::858:aff:fe01:2/64"),
    ]  # fmt: skip
    port = host.ovs.port(GREEN_IF)
    assert port is not None
    assert (port.external_ids[EXT_IP], port.external_ids[EXT_IP6]) == (
        "10.1.0.2",
        "fd00:77::a01:2",
    )
    assert ep.to_api()["ip6"] == "fd00:77::a01:2" and ep.to_api()["gateway6"] == "fd00:77::a01:1"


def test_ipv4_only_plug_leaves_ipv6_alone(host: FakeHost) -> None:
    ep = host.plugger().plug(req("blue"))

    assert ep.ip6 is None and ep.interface6 is None and ep.to_api()["ip6"] is None
    eth0 = host.links.dev("eth0", NS)
    assert eth0.addresses6 == [] and eth0.gateway6 is None and eth0.dad
    port = host.ovs.port(BLUE_IF)
    assert port is not None and EXT_IP6 not in port.external_ids


def test_same_name_same_ipv6_address_on_another_host(host: FakeHost) -> None:
    """The address follows the name: unplugged here, plugged into another container (as on
    another host after a move), the endpoint has the same IPv6 address."""
    plugger = host.plugger()
    first = plugger.plug(req())
    plugger.plug(req(name="b", netns="c2"))  # takes the next address meanwhile
    assert plugger.unplug("green", "a")

    again = plugger.plug(req(netns="c2", ifname="eth1"))

    assert (again.ip, again.ip6) == (first.ip, first.ip6)
    assert IPv6Interface("fd00:77::a01:2/64") in host.links.dev("eth1", "c2").addresses6


def test_a_failed_dual_stack_configuration_undoes_the_plug(host: FakeHost) -> None:
    host.links.fail("configure", LinkError("no IPv6 in this kernel or namespace"))

    with pytest.raises(LinkError):
        host.plugger().plug(req())

    assert host.is_empty() and host.links.names_in(NS) == set()
    assert host.ctl.ep("green", "a") is None  # created by this call: deleted again


def test_replug_gives_an_ipv4_only_plugged_container_its_ipv6_side(host: FakeHost) -> None:
    """A container plugged before its port recorded an IPv6 address (an older agent) gets
    its IPv6 side when the runtime plugs it again (idempotent configuration)."""
    plugger = host.plugger()
    plugger.plug(req())
    eth0 = host.links.dev("eth0", NS)
    eth0.addresses6.clear()
    eth0.gateway6 = None
    host.ovs.set_port_ids(GREEN_IF, {EXT_IP6: ""})

    again = plugger.plug(req())

    assert again.ready and host.links.dev("eth0", NS) is eth0  # the same device
    assert eth0.addresses6 == [IPv6Interface("fd00:77::a01:2/64")]
    assert eth0.gateway6 == IPv6Address("fd00:77::a01:1")
    port = host.ovs.port(GREEN_IF)
    assert port is not None and port.external_ids[EXT_IP6] == "fd00:77::a01:2"


@pytest.mark.parametrize("subnet6", ["fd00:78::/64", None])
def test_replug_after_a_new_subnet6_takes_the_stale_ipv6_address_away(
    host: FakeHost, subnet6: str | None
) -> None:
    """The network's subnet6 was changed (or removed) while the container ran: plugged
    again, it has the new address (or none) and not the old one beside it."""
    plugger = host.plugger()
    plugger.plug(req())
    eth0 = host.links.dev("eth0", NS)
    assert eth0.addresses6 == [IPv6Interface("fd00:77::a01:2/64")]
    net = host.ctl.networks["green"]
    six = gateway6(IPv6Network(subnet6), IPv4Address(net.gateway)) if subnet6 else None
    host.ctl.networks["green"] = replace(net, subnet6=subnet6, gateway6=six)

    again = plugger.plug(req())

    assert again.ready and host.links.dev("eth0", NS) is eth0
    port = host.ovs.port(GREEN_IF)
    assert port is not None
    if subnet6 is None:
        assert eth0.addresses6 == [] and eth0.gateway6 is None
        assert port.external_ids[EXT_IP6] == ""
    else:
        assert eth0.addresses6 == [IPv6Interface("fd00:78::a01:2/64")]
        assert eth0.gateway6 == IPv6Address("fd00:78::a01:1")
        assert port.external_ids[EXT_IP6] == "fd00:78::a01:2"


def test_replug_of_a_labelled_container_does_not_configure_again(host: FakeHost) -> None:
    plugger = host.plugger()
    plugger.plug(req())
    configured = len(host.links.calls_of("configure"))

    plugger.plug(req())

    assert len(host.links.calls_of("configure")) == configured


def test_detach_takes_both_families_away(host: FakeHost) -> None:
    agent = up(host)
    agent.attach(req())

    agent.detach("green", "a")

    assert host.links.names_in(NS) == set() and host.ovs.port(GREEN_IF) is None
    ep = host.ctl.ep("green", "a")
    assert ep is not None and ep.host is None and str(ep.ip6) == "fd00:77::a01:2"  # kept


def test_restart_recreates_a_lost_endpoint_with_the_same_ipv6_address(host: FakeHost) -> None:
    old = up(host)
    old.attach(req())
    host.ctl.delete_endpoint("green", "a")  # e.g. the controller's database was restored

    agent = up(host)

    ep = host.ctl.ep("green", "a")
    assert ep is not None and ep.ready and str(ep.ip6) == "fd00:77::a01:2"
    assert agent.reconcile() == []
    (local,) = agent.local_ports()
    assert local.ip6 == IPv6Address("fd00:77::a01:2")
    assert agent.local_endpoints()[0]["ip6"] == "fd00:77::a01:2"


def test_restart_reports_a_container_whose_ipv6_address_the_network_no_longer_has(
    host: FakeHost,
) -> None:
    """The network was made again with another IPv6 prefix while the container kept its
    address: the container's address is not the controller's any more. Like an IPv4
    conflict it is reported and left alone (not bound, not torn down)."""
    old = up(host)
    old.attach(req())
    host.ctl.unbind("green", "a")
    host.ctl.delete_network("green")
    host.ctl.create_network("green", "10.1.0.0/24", subnet6="fd00:78::/64")
    host.ctl.create_endpoint("green", "a", ip="10.1.0.2")

    agent = up(host)

    ep = host.ctl.ep("green", "a")
    assert ep is not None and ep.host is None and str(ep.ip6) == "fd00:78::a01:2"
    assert host.ovs.port(GREEN_IF) is not None  # the container keeps working
    (local,) = agent.local_ports()
    assert agent.reconcile() == [
        planmod.Conflict(local, IPv4Address("10.1.0.2"), IPv6Address("fd00:78::a01:2"))
    ]


def test_plan_tells_an_ipv6_conflict() -> None:
    ip, ip6 = IPv4Address("10.1.0.2"), IPv6Address("fd00:77::a01:2")
    port = planmod.LocalPort("green", "a", "vx1", 5, ip, ip6)
    same = planmod.RemoteEndpoint("green", "a", ip, HOST, 5, ip6)
    moved = planmod.RemoteEndpoint("green", "a", ip, HOST, 5, IPv6Address("fd00:78::a01:2"))
    unlabelled = planmod.LocalPort("green", "a", "vx1", 5, ip)

    assert planmod.plan(HOST, [same], [port]) == []
    assert planmod.plan(HOST, [moved], [port]) == [
        planmod.Conflict(port, controller_ip=ip, controller_ip6=moved.ip6)
    ]
    assert planmod.plan(HOST, [moved], [unlabelled]) == []  # nothing recorded: nothing to say


def test_endpoint_model_reads_the_ipv6_fields() -> None:
    doc = {
        "network": "green", "name": "a", "ip": "10.1.0.2", "prefixlen": 24,
        "gateway": "10.1.0.1", "mac": "0a:58:0a:01:00:02", "ip6": "fd00:77::a01:2",
        "prefixlen6": 64, "gateway6": "fd00:77::a01:1",
    }  # fmt: skip
    ep = Endpoint.from_api(doc)
    assert ep.interface6 == IPv6Interface("fd00:77::a01:2/64")
    assert Endpoint.from_api(ep.to_api()) == ep
    v4 = Endpoint.from_api({**doc, "ip6": None, "prefixlen6": None, "gateway6": None})
    assert (v4.ip6, v4.prefixlen6, v4.gateway6, v4.interface6) == (None, None, None, None)
    old = {k: v for k, v in doc.items() if k not in ("ip6", "prefixlen6", "gateway6")}
    assert Endpoint.from_api(old).ip6 is None  # a controller from before dual stack
    for bad in ({"prefixlen6": None}, {"prefixlen6": 129}, {"ip6": "10.1.0.2"}):
        with pytest.raises(ControllerUnavailable):
            Endpoint.from_api({**doc, **bad})
