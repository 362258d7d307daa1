"""IPv6 dual stack in the flow pipeline (issue 11 item 3), packet by packet through the
in-memory switch: delivery on a host and across hosts inside the IPv4 VXLAN underlay, the
neighbour discovery responder, port security for IPv6 and ND, isolation between networks.

The shared lab (``conftest``) with both networks dual stack: red fd00:100::/64 and blue
fd00:200::/64, so every endpoint's IPv6 address is its prefix plus its IPv4 address.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest

from controller.flows import OFPP_IN_PORT, Output, RegMove, SetField, flow
from controller.model import Endpoint, Network, Policy, PolicyRule, Snapshot, mac_for_ip
from controller.oftable import (
    ETH_IPV6,
    Fabric,
    FlowRejected,
    Switch,
    icmp6_packet,
    nd_solicit,
    tcp6_packet,
    tunnelled,
)
from controller.pipeline import desired_flows
from controller.pipeline6 import DROPPED_ICMP6, ICMP6_NA, NA_FLAGS, NA_ROUTER, ND_OPT_TLL
from tests.unit.conftest import TUNNEL_PORT, Lab
from vxcommon.addr6 import derive_ip6, link_local

PREFIX = {"red": IPv6Network("fd00:100::/64"), "blue": IPv6Network("fd00:200::/64")}


@pytest.fixture
def dual(lab: Lab) -> Lab:
    """The lab with both networks dual stack."""
    nets = {n: replace(net, subnet6=PREFIX[n]) for n, net in lab.snap.networks.items()}
    return Lab(replace(lab.snap, networks=nets))


def ip6(ep: Endpoint) -> str:
    return derive_ip6(PREFIX[ep.network], ep.ip)


def send6(
    fabric: Fabric, src: Endpoint, dst: str, src_ip: str | None = None
) -> list[tuple[str, int]]:
    """Send IPv6 TCP from ``src`` (from its own ip6 unless told); where it lands."""
    assert src.host is not None and src.ofport is not None
    pkt = tcp6_packet(src.mac, src_ip or ip6(src), dst, 40000, 80)
    return sorted((d.host, d.port) for d in fabric.send(src.host, pkt, src.ofport))


def bound(snap: Snapshot) -> list[Endpoint]:
    return [e for e in snap.endpoints if e.host is not None and e.ofport is not None]


# -- delivery --------------------------------------------------------------------------------


def test_same_host_goes_port_to_port_with_the_peer_mac(dual: Lab) -> None:
    r1a, r1b = dual.ep("r1a"), dual.ep("r1b")
    out = dual.switch("h1").process(tcp6_packet(r1a.mac, ip6(r1a), ip6(r1b), 1, 2), 2)
    assert [e.port for e in out] == [r1b.ofport]
    assert out[0].packet["eth_dst"] == r1b.mac
    assert (out[0].packet["ipv6_src"], out[0].packet["ipv6_dst"]) == (ip6(r1a), ip6(r1b))


def test_across_hosts_inside_the_ipv4_tunnel(dual: Lab) -> None:
    r1a, r2a = dual.ep("r1a"), dual.ep("r2a")
    out = dual.switch("h1").process(tcp6_packet(r1a.mac, ip6(r1a), ip6(r2a), 1, 2), 2)
    assert [e.port for e in out] == [TUNNEL_PORT]
    assert (out[0].packet["tunnel_id"], out[0].packet["tun_ipv4_dst"]) == (100, "198.18.0.2")
    fabric = dual.fabric()
    assert send6(fabric, r1a, ip6(r2a)) == [("h2", 2)]
    assert fabric.hops == [("h1", "h2", 100)]


@pytest.mark.parametrize("src", ["r1a", "r1b", "r3a", "r2a"])
def test_moved_endpoint_keeps_its_ipv6_address_reachable(dual: Lab, src: str) -> None:
    """rmv (10.0.0.10, h1's block) is bound on h2 port 5: its /128 exception."""
    rmv = dual.ep("rmv")
    assert send6(dual.fabric(), dual.ep(src), ip6(rmv)) == [("h2", 5)]
    moved = dual.rebind("rmv", "h3", 9)  # moves again: the same address follows it
    assert send6(dual.fabric(moved), dual.ep(src), ip6(rmv)) == [("h3", 9)]


def test_every_pair_reaches_exactly_its_own_network(dual: Lab) -> None:
    fabric = dual.fabric()
    eps = bound(dual.snap)
    for src in eps:
        for dst in dual.snap.endpoints:
            addr = derive_ip6(PREFIX[src.network], dst.ip)
            want = sorted(
                (e.host, e.ofport)
                for e in eps
                if e.network == src.network and e.ip == dst.ip and e is not src
            )
            got = send6(fabric, src, addr)
            assert got == [w for w in want if w[0] is not None], (src.name, addr)


def test_isolation_other_networks_prefix_is_dropped(dual: Lab) -> None:
    """red r1a to blue's b2a address (and to blue's prefix at all) reaches nothing."""
    fabric = dual.fabric()
    assert send6(fabric, dual.ep("r1a"), ip6(dual.ep("b2a"))) == []
    assert send6(fabric, dual.ep("r1a"), ip6(dual.ep("b1a"))) == []  # same host, same IPv4
    assert fabric.lost == []


def test_tunnelled_ipv6_with_another_vni_lands_in_that_network_only(dual: Lab) -> None:
    b1a = dual.ep("b1a")
    inner = tcp6_packet("0a:58:0a:00:00:42", "fd00:200::a00:42", ip6(b1a), 1, 2)
    sw = dual.switch("h1")
    assert [e.port for e in sw.process(tunnelled(inner, "198.18.0.2", "198.18.0.1", 200), 1)] == [4]
    red = tunnelled(inner, "198.18.0.2", "198.18.0.1", 100)  # red's VNI, blue's address
    assert sw.process(red, 1) == []
    stranger = tunnelled(inner, "198.18.0.99", "198.18.0.1", 200)  # not a known host
    assert sw.process(stranger, 1) == []


def test_ipv4_only_networks_get_no_ipv6_flows(lab: Lab, dual: Lab) -> None:
    assert not [
        f for f in desired_flows(lab.snap, "h1") if f.match_dict().get("eth_type") == ETH_IPV6
    ]
    r1a, r1b = lab.ep("r1a"), lab.ep("r1b")
    pkt = tcp6_packet(r1a.mac, "fd00:100::a00:2", "fd00:100::a00:3", 1, 2)
    assert lab.switch("h1").process(pkt, 2) == []
    assert [e.port for e in dual.switch("h1").process(pkt, 2)] == [r1b.ofport]


# -- neighbour discovery ---------------------------------------------------------------------


@pytest.mark.parametrize("source", ["global", "link-local"])
@pytest.mark.parametrize(("target_ip", "name"), [("10.0.0.66", "r2a"), ("10.0.0.1", "gateway")])
def test_solicitation_answered_on_the_spot(
    dual: Lab, source: str, target_ip: str, name: str
) -> None:
    r1a = dual.ep("r1a")
    src = ip6(r1a) if source == "global" else link_local(r1a.mac)
    target = derive_ip6(PREFIX["red"], target_ip)
    out = dual.switch("h1").process(nd_solicit(r1a.mac, src, target), 2)
    assert [e.port for e in out] == [2]  # back out the port it came in on
    na = out[0].packet
    mac = mac_for_ip(IPv4Address(target_ip))
    assert (na["icmpv6_type"], na["icmpv6_code"], na["ipv6_nd_target"]) == (ICMP6_NA, 0, target)
    assert (na["eth_src"], na["ipv6_nd_tll"], na["eth_dst"]) == (mac, mac, r1a.mac)
    assert (na["ipv6_src"], na["ipv6_dst"]) == (target, src)
    flags = NA_FLAGS | (NA_ROUTER if name == "gateway" else 0)  # gateway6: the router
    assert (na["nd_reserved"], na["nd_options_type"]) == (flags, ND_OPT_TLL)


def test_unicast_probe_is_answered_too(dual: Lab) -> None:
    r1a, r2a = dual.ep("r1a"), dual.ep("r2a")
    probe = nd_solicit(r1a.mac, ip6(r1a), ip6(r2a), unicast=ip6(r2a))
    out = dual.switch("h1").process(probe, 2)
    assert [e.port for e in out] == [2] and out[0].packet["ipv6_nd_tll"] == r2a.mac


@pytest.mark.parametrize(
    "target",
    [
        "fd00:200::a00:42",  # blue's prefix, asked on red
        "fd00:100::1:a00:42",  # red's /64 but not prefix::IPv4
        "fd00:100::a01:42",  # prefix + 10.1.0.66: outside red's IPv4 subnet
        "fe80::858:aff:fe00:42",  # a link-local address
    ],
)
def test_solicitation_for_a_foreign_target_gets_no_answer(dual: Lab, target: str) -> None:
    r1a = dual.ep("r1a")
    assert dual.switch("h1").process(nd_solicit(r1a.mac, ip6(r1a), target), 2) == []


def test_duplicate_address_detection_gets_no_answer(dual: Lab) -> None:
    """DAD's solicitation (from ::) for its own address, or any: never answered, so the
    endpoint's address is not declared a duplicate; and it goes nowhere else."""
    r1a, r2a = dual.ep("r1a"), dual.ep("r2a")
    fabric = dual.fabric()
    for target in (ip6(r1a), ip6(r2a)):
        assert fabric.send("h1", nd_solicit(r1a.mac, "::", target), 2) == []
        assert fabric.hops == []


# -- port security -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoof",
    [
        "fd00:100::a00:42",  # r2a's address, same network
        "fd00:200::a00:2",  # blue b1a's address (same IPv4, other network)
        "fd00:100::1",  # in the prefix, not derived
        "2001:db8::1",  # anything
        "fe80::858:aff:fe00:2",  # its own link-local: not for data
    ],
)
def test_spoofed_ipv6_source_is_dropped(dual: Lab, spoof: str) -> None:
    r1a, r1b, r2a = dual.ep("r1a"), dual.ep("r1b"), dual.ep("r2a")
    fabric = dual.fabric()
    for dst in (ip6(r1b), ip6(r2a)):
        assert send6(fabric, r1a, dst, src_ip=spoof) == []
    assert fabric.hops == []


def test_other_mac_is_dropped_even_with_the_right_address(dual: Lab) -> None:
    r1a, r1b = dual.ep("r1a"), dual.ep("r1b")
    sw = dual.switch("h1")
    assert sw.process(tcp6_packet("0a:58:0a:00:00:99", ip6(r1a), ip6(r1b), 1, 2), 2) == []
    assert sw.process(nd_solicit("0a:58:0a:00:00:99", ip6(r1a), ip6(r1b)), 2) == []
    assert sw.process(tcp6_packet(r1a.mac, ip6(r1a), ip6(r1b), 1, 2), 3) == []  # r1b's port


@pytest.mark.parametrize("icmp_type", DROPPED_ICMP6)
def test_forged_na_ra_rs_redirect_and_mld_are_dropped(dual: Lab, icmp_type: int) -> None:
    """Even from the endpoint's own MAC and address, to a peer or to all nodes."""
    r1a, r1b, r2a = dual.ep("r1a"), dual.ep("r1b"), dual.ep("r2a")
    fabric = dual.fabric()
    for src in (ip6(r1a), link_local(r1a.mac)):
        for dst in (ip6(r1b), ip6(r2a), "ff02::1"):
            pkt = icmp6_packet(r1a.mac, src, dst, icmp_type)
            if icmp_type == ICMP6_NA:  # "the gateway is me"
                pkt.update(ipv6_nd_target=derive_ip6(PREFIX["red"], "10.0.0.1"))
                pkt.update(ipv6_nd_tll=r1a.mac, nd_reserved=0x20000000, nd_options_type=2)
            assert fabric.send("h1", pkt, 2) == [], (icmp_type, src, dst)
    assert fabric.hops == []


def test_echo_and_errors_pass_between_endpoints(dual: Lab) -> None:
    r1a, r2a = dual.ep("r1a"), dual.ep("r2a")
    fabric = dual.fabric()
    for icmp_type in (128, 129, 1, 2, 3):  # echo, echo reply, unreachable, too big, exceeded
        pkt = icmp6_packet(r1a.mac, ip6(r1a), ip6(r2a), icmp_type)
        assert [(d.host, d.port) for d in fabric.send("h1", pkt, 2)] == [("h2", 2)]


def test_policy_isolated_endpoint_gets_no_ipv6_but_nd(dual: Lab) -> None:
    """Policies are compiled for IPv4 only: an endpoint a policy isolates neither sends nor
    receives IPv6 (fail closed), though its solicitations are still answered."""
    deny = Policy("deny", selector=(), ingress=())
    nets = dict(dual.snap.networks)
    nets["red"] = replace(nets["red"], policies=(deny,))
    snap = replace(dual.snap, networks=nets)
    r1a, r2a, b1a = dual.ep("r1a"), dual.ep("r2a"), dual.ep("b1a")
    fabric = dual.fabric(snap)
    assert send6(fabric, r1a, ip6(r2a)) == []
    assert send6(fabric, dual.ep("r3a"), ip6(r1a)) == []
    assert send6(fabric, b1a, ip6(dual.ep("b2a"))) == [("h2", 3)]  # blue has no policy
    out = fabric.send("h1", nd_solicit(r1a.mac, ip6(r1a), ip6(r2a)), 2)
    assert [(d.host, d.port) for d in out] == [("h1", 2)]
    assert PolicyRule  # (imported for readers: a rule would allow IPv4 only)


# -- what the switch refuses (as OVS does) ---------------------------------------------------


def test_switch_refuses_the_one_table_responder() -> None:
    """OVS: "destination field nd_tll lacks correct prerequisites" when a flow matching a
    solicitation writes the target link-layer address (ovs-facts.md section 5)."""
    match = {"eth_type": ETH_IPV6, "ip_proto": 58, "icmpv6_type": 135, "icmpv6_code": 0}
    bad = flow(
        11, 100, match, [SetField("icmpv6_type", 136), RegMove("eth_src", "ipv6_nd_tll", 48)]
    )
    with pytest.raises(FlowRejected, match="lacks correct prerequisites"):
        Switch().add(bad)
    with pytest.raises(FlowRejected, match="icmpv6_code=0"):
        Switch().add(flow(11, 100, {**match, "icmpv6_code": 1}, [SetField("nd_reserved", 1)]))
    with pytest.raises(FlowRejected, match="eth_type"):
        Switch().add(
            flow(11, 100, {"eth_type": 0x0800, "ipv6_dst": "fd00::1"}, [Output(OFPP_IN_PORT)])
        )


def test_network_without_endpoints_here_still_answers_nd(dual: Lab) -> None:
    """The responder is per network, not per endpoint: O(1) flows for ND (the subnet's
    and the gateway's, which answers as a router)."""
    flows = desired_flows(dual.snap, "h1")
    nd = [f for f in flows if f.table == 11 and f.priority > 0]
    assert len(nd) == 2 * len(dual.snap.networks)
    more = dual.with_endpoints(
        *(
            replace(dual.ep("r1a"), name=f"x{i}", ip=IPv4Address(f"10.0.0.{20 + i}"), ofport=20 + i)
            for i in range(10)
        )
    )
    assert len([f for f in desired_flows(more, "h1") if f.table == 11 and f.priority > 0]) == len(
        nd
    )
    assert Network and IPv4Network  # noqa: B018
