"""The distributed gateway for IPv6, packet by packet through the in-memory switch with its
conntrack: an external dual-stack network's IPv6 leaves translated to the host's IPv6 egress
address, replies come back to the right endpoint of the right network, sealed networks and
hosts without an IPv6 egress address let nothing out.

The shared lab (see ``conftest``), both networks dual stack (red fd00:100::/64, blue
fd00:200::/64): r1a (red) and b1a (blue) are both 10.0.0.2 on h1 (ports 2 and 4). h1 has
egress addresses 198.18.0.101 and fd00:18::101 and gateway port 9; red is external in zone
1, blue in zone 2 (unless a test says otherwise).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from controller.flows import Ct
from controller.model import (
    EGRESS_MAC_PREFIX,
    GATEWAY_PORT_MAC_PREFIX,
    Endpoint,
    Publication,
    Snapshot,
    mac_for_ip,
    snat_ports,
)
from controller.oftable import Switch, icmp6_packet, tcp6_packet, tcp_packet
from controller.pipeline import CT_MARK_DNAT, CT_MARK_SNAT, desired_flows
from hostagent.settings import AgentSettings
from tests.unit.conftest import Lab
from vxcommon.addr6 import derive_ip6

EGRESS = "198.18.0.101"
EGRESS6 = "fd00:18::101"
OUTSIDE6 = "fd00:18::fd"
OUTSIDE = "198.18.0.253"
GW_PORT = 9
KERNEL_MAC = mac_for_ip(IPv4Address(EGRESS), GATEWAY_PORT_MAC_PREFIX)
EGRESS_MAC = mac_for_ip(IPv4Address(EGRESS), EGRESS_MAC_PREFIX)
GW_MAC = mac_for_ip(IPv4Address("10.0.0.1"))
PREFIX = {"red": IPv6Network("fd00:100::/64"), "blue": IPv6Network("fd00:200::/64")}
ECHO_REQUEST, ECHO_REPLY = 128, 129


def snap6(lab: Lab, red: bool = True, blue: bool = True, egress6: str | None = EGRESS6) -> Snapshot:
    s = lab.snap
    nets = dict(s.networks)
    for name, external, zone in (("red", red, 1), ("blue", blue, 2)):
        nets[name] = replace(
            nets[name], subnet6=PREFIX[name], external=external, zone=zone if external else None
        )
    hosts = dict(s.hosts)
    hosts["h1"] = replace(
        hosts["h1"],
        egress_ip=IPv4Address(EGRESS),
        gateway_port=GW_PORT,
        egress_ip6=IPv6Address(egress6) if egress6 else None,
    )
    return replace(s, networks=nets, hosts=hosts)


def switch(snap: Snapshot, host: str = "h1") -> Switch:
    return Switch(host).load(desired_flows(snap, host))


def ip6(ep: Endpoint) -> str:
    return derive_ip6(PREFIX[ep.network], ep.ip)


def out6(sw: Switch, ep: Endpoint, sport: int, dst: str = OUTSIDE6, dport: int = 80) -> list:
    assert ep.ofport is not None
    return sw.process(tcp6_packet(ep.mac, ip6(ep), dst, sport, dport, GW_MAC), ep.ofport)


def back6(sw: Switch, dport: int, src: str = OUTSIDE6, sport: int = 80) -> list:
    """A reply from the outside arriving at the IPv6 egress address through vxgw0."""
    return sw.process(tcp6_packet(KERNEL_MAC, src, EGRESS6, sport, dport, EGRESS_MAC), GW_PORT)


def test_ipv6_leaves_translated_to_the_egress6_address_and_replies_come_back(lab: Lab) -> None:
    sw = switch(snap6(lab))
    r1a = lab.ep("r1a")
    (sent,) = out6(sw, r1a, 40000)
    pkt = sent.packet
    lo, hi = snat_ports(1)
    assert sent.port == GW_PORT
    assert pkt["ipv6_src"] == EGRESS6 and lo <= int(pkt["tcp_src"]) <= hi
    assert (pkt["ipv6_dst"], pkt["tcp_dst"]) == (OUTSIDE6, 80)
    assert (pkt["eth_src"], pkt["eth_dst"]) == (EGRESS_MAC, KERNEL_MAC)
    (conn,) = sw.conntrack.in_zone(1)
    assert conn.mark == CT_MARK_SNAT

    back = back6(sw, int(pkt["tcp_src"]))
    assert [e.port for e in back] == [r1a.ofport]
    got = back[0].packet
    assert (got["ipv6_src"], got["ipv6_dst"], got["tcp_dst"]) == (OUTSIDE6, ip6(r1a), 40000)
    assert (got["eth_dst"], got["eth_src"]) == (r1a.mac, GW_MAC)

    (again,) = out6(sw, r1a, 40000)  # established now: same binding, no new connection
    assert again.packet["tcp_src"] == pkt["tcp_src"] and len(sw.conntrack.conns) == 1


def test_ipv4_and_ipv6_of_one_endpoint_leave_side_by_side(lab: Lab) -> None:
    """Same zone, same ports: conntrack keeps the families apart."""
    sw = switch(snap6(lab))
    r1a = lab.ep("r1a")
    assert r1a.ofport is not None
    (v4,) = sw.process(tcp_packet(r1a.mac, "10.0.0.2", OUTSIDE, 41000, 80, GW_MAC), r1a.ofport)
    (v6,) = out6(sw, r1a, 41000)
    assert (v4.packet["ipv4_src"], v6.packet["ipv6_src"]) == (EGRESS, EGRESS6)
    assert [e.port for e in back6(sw, int(v6.packet["tcp_src"]))] == [r1a.ofport]


def test_two_networks_with_the_same_addresses_on_one_host_both_get_out_over_ipv6(
    lab: Lab,
) -> None:
    """r1a and b1a: the same IPv4 address (their IPv6 prefixes differ), the same source port
    to the same server at once; each reply reaches its own (blue's in the second zone)."""
    sw = switch(snap6(lab))
    r1a, b1a = lab.ep("r1a"), lab.ep("b1a")
    (red,) = out6(sw, r1a, 45000)
    (blue,) = out6(sw, b1a, 45000)
    assert red.packet["tcp_src"] != blue.packet["tcp_src"]
    assert snat_ports(2)[0] <= int(blue.packet["tcp_src"]) <= snat_ports(2)[1]
    for ep, sent in ((b1a, blue), (r1a, red)):
        back = back6(sw, int(sent.packet["tcp_src"]))
        assert [e.port for e in back] == [ep.ofport]
        assert (back[0].packet["ipv6_dst"], back[0].packet["tcp_dst"]) == (ip6(ep), 45000)


def test_ping6_goes_out_and_its_reply_comes_back(lab: Lab) -> None:
    sw = switch(snap6(lab))
    r1a = lab.ep("r1a")
    assert r1a.ofport is not None
    ping = icmp6_packet(r1a.mac, ip6(r1a), OUTSIDE6, ECHO_REQUEST, GW_MAC)
    sent = sw.process(ping, r1a.ofport)
    assert [(e.port, e.packet["ipv6_src"]) for e in sent] == [(GW_PORT, EGRESS6)]
    reply = icmp6_packet(KERNEL_MAC, OUTSIDE6, EGRESS6, ECHO_REPLY, EGRESS_MAC)
    back = sw.process(reply, GW_PORT)
    assert [(e.port, e.packet["ipv6_dst"]) for e in back] == [(r1a.ofport, ip6(r1a))]


def test_a_sealed_dual_stack_network_gets_nothing_out_over_ipv6(lab: Lab) -> None:
    sw = switch(snap6(lab, red=True, blue=False))
    b1a = lab.ep("b1a")
    assert b1a.ofport is not None
    assert out6(sw, b1a, 4000) == []
    assert sw.process(icmp6_packet(b1a.mac, ip6(b1a), OUTSIDE6, ECHO_REQUEST), b1a.ofport) == []
    assert sw.conntrack.conns == []
    assert [e.packet["ipv6_src"] for e in out6(sw, lab.ep("r1a"), 4000)] == [EGRESS6]


def test_a_host_without_an_ipv6_egress_address_lets_only_ipv4_out(lab: Lab) -> None:
    sw = switch(snap6(lab, egress6=None))
    r1a = lab.ep("r1a")
    assert r1a.ofport is not None
    assert out6(sw, r1a, 4000) == [] and sw.conntrack.conns == []
    (v4,) = sw.process(tcp_packet(r1a.mac, "10.0.0.2", OUTSIDE, 4000, 80, GW_MAC), r1a.ofport)
    assert v4.port == GW_PORT


def test_nothing_gets_in_unasked_and_the_own_prefix_does_not_leave(lab: Lab) -> None:
    sw = switch(snap6(lab))
    assert back6(sw, snat_ports(1)[0]) == []  # no connection in any zone
    r1a = lab.ep("r1a")
    # an address of its own prefix outside its IPv4 subnet's twin, and multicast, stay inside
    assert out6(sw, r1a, 4000, dst="fd00:100::1:a00:99") == []
    assert out6(sw, r1a, 4000, dst="ff05::2") == []
    assert sw.conntrack.conns == []


def published6(lab: Lab, egress6: str | None = EGRESS6) -> Snapshot:
    """r1a publishes 8080 -> 80 and 8443 -> 443 (two ports of one endpoint)."""
    snap = snap6(lab, egress6=egress6)
    nets = dict(snap.networks)
    pubs = (Publication("r1a", 8080, 80, "tcp"), Publication("r1a", 8443, 443, "tcp"))
    nets["red"] = replace(nets["red"], publications=pubs)
    return replace(snap, networks=nets)


def test_a_published_port_is_reached_over_ipv6_and_answers_as_the_host(lab: Lab) -> None:
    sw = switch(published6(lab))
    r1a = lab.ep("r1a")
    assert r1a.ofport is not None
    for host_port, port in ((8080, 80), (8443, 443)):  # every publication of the endpoint
        back = back6(sw, host_port, sport=50000)  # a new connection from the outside
        assert [e.port for e in back] == [r1a.ofport], host_port
        got = back[0].packet
        assert (got["ipv6_src"], got["tcp_src"]) == (OUTSIDE6, 50000)  # the client as it is
        assert (got["ipv6_dst"], got["tcp_dst"], got["eth_dst"]) == (ip6(r1a), port, r1a.mac)
        reply = tcp6_packet(r1a.mac, ip6(r1a), OUTSIDE6, port, 50000, GW_MAC)
        out = sw.process(reply, r1a.ofport)
        assert [e.port for e in out] == [GW_PORT]
        assert (out[0].packet["ipv6_src"], out[0].packet["tcp_src"]) == (EGRESS6, host_port)
    assert {c.mark for c in sw.conntrack.in_zone(1)} == {CT_MARK_DNAT}
    assert back6(sw, 8081, sport=50000) == []  # other ports stay closed


def test_no_ipv6_egress_address_no_ipv6_publication(lab: Lab) -> None:
    sw = switch(published6(lab, egress6=None))
    assert back6(sw, 8080, sport=50000) == []
    assert sw.conntrack.conns == []


def test_ipv6_nat_encodes_as_openflow_and_parses_back(lab: Lab) -> None:
    """The IPv6 SNAT and DNAT ranges go out as NXActionNAT's IPv6 range (the real switch
    takes them: the lab tests), and os-ken parses them back the same."""
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    from controller.ofmsg import _action, add_bytes

    nats = [
        (f, a)
        for f in desired_flows(published6(lab), "h1")
        for a in f.actions
        if isinstance(a, Ct) and a.nat is not None and ":" in a.nat.ip
    ]
    assert {a.nat.kind for _, a in nats if a.nat} == {"src", "dst"}
    for f, want in nats:
        assert want.nat is not None and add_bytes(f, 7)
        buf = bytearray()
        _action(want).serialize(buf, 0)
        got = parser.OFPAction.parser(bytes(buf), 0)
        (nat,) = [a for a in got.actions if type(a).__name__ == "NXActionNAT"]
        assert nat.range_ipv6_min == nat.range_ipv6_max == want.nat.ip
        assert not nat.range_ipv4_min or nat.range_ipv4_min == "0.0.0.0"
        assert (nat.range_proto_min, nat.range_proto_max) == (want.nat.port_lo, want.nat.port_hi)


def test_agent_settings_take_egress_ip6_only_with_egress_ip() -> None:
    base = {"controller": "http://a:8080", "host": "h1", "underlay_ip": "198.18.0.1"}
    s = AgentSettings(**base, egress_ip=EGRESS, egress_ip6=EGRESS6)
    assert str(s.egress_ip6) == EGRESS6
    with pytest.raises(ValueError, match="--egress-ip6 needs --egress-ip"):
        AgentSettings(**base, egress_ip6=EGRESS6)
    with pytest.raises(ValueError, match="unicast global"):
        AgentSettings(**base, egress_ip=EGRESS, egress_ip6="fe80::1")
