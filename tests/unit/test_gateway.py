"""The distributed gateway (external networks), packet by packet through the in-memory switch
with its conntrack: SNAT out of the host's gateway port, replies back to the right endpoint
of the right network, two networks with the same CIDR at once, sealed networks stay sealed.

The shared lab (see ``conftest``): red and blue both on 10.0.0.0/24; r1a (red) and b1a
(blue) are both 10.0.0.2 on h1 (ports 2 and 4). Here h1 has egress address 198.18.0.101 and
gateway port 9; red is external in zone 1, blue in zone 2 (unless a test says otherwise).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from controller.flows import CT_EST, CT_NEW, CT_TRK, Ct
from controller.model import (
    EGRESS_MAC_PREFIX,
    GATEWAY_PORT_MAC_PREFIX,
    SNAT_PORT_BASE,
    SNAT_RANGES,
    Endpoint,
    Publication,
    Snapshot,
    mac_for_ip,
    snat_ports,
)
from controller.oftable import (
    ETH_ARP,
    Switch,
    arp_request,
    icmp_packet,
    ipv4_packet,
    tcp_packet,
)
from controller.pipeline import CT_MARK_DNAT, CT_MARK_SNAT, desired_flows
from tests.unit.conftest import Lab

EGRESS = "198.18.0.101"
GW_PORT = 9
OUTSIDE = "198.18.0.253"
KERNEL_MAC = mac_for_ip(IPv4Address(EGRESS), GATEWAY_PORT_MAC_PREFIX)
EGRESS_MAC = mac_for_ip(IPv4Address(EGRESS), EGRESS_MAC_PREFIX)


def gateway_snap(lab: Lab, red: bool = True, blue: bool = True) -> Snapshot:
    s = lab.snap
    nets = dict(s.networks)
    nets["red"] = replace(nets["red"], external=red, zone=1 if red else None)
    nets["blue"] = replace(nets["blue"], external=blue, zone=2 if blue else None)
    hosts = dict(s.hosts)
    hosts["h1"] = replace(hosts["h1"], egress_ip=IPv4Address(EGRESS), gateway_port=GW_PORT)
    return replace(s, networks=nets, hosts=hosts)


def switch(snap: Snapshot, host: str = "h1") -> Switch:
    return Switch(host).load(desired_flows(snap, host))


def out_tcp(sw: Switch, ep: Endpoint, sport: int, dst: str = OUTSIDE, dport: int = 80) -> dict:
    """A TCP segment from ``ep`` to the outside; the one packet that leaves (asserted)."""
    assert ep.ofport is not None
    gw_mac = mac_for_ip(IPv4Address("10.0.0.1"))
    sent = sw.process(tcp_packet(ep.mac, str(ep.ip), dst, sport, dport, gw_mac), ep.ofport)
    assert len(sent) == 1, sw.trace
    assert sent[0].port == GW_PORT
    return sent[0].packet


def back_tcp(sw: Switch, dport: int, src: str = OUTSIDE, sport: int = 80) -> list:
    """A reply from the outside arriving at the egress address through the gateway port."""
    pkt = tcp_packet(KERNEL_MAC, src, EGRESS, sport, dport, EGRESS_MAC)
    return sw.process(pkt, GW_PORT)


def test_outbound_leaves_translated_to_the_egress_address_and_replies_come_back(
    lab: Lab,
) -> None:
    sw = switch(gateway_snap(lab))
    r1a = lab.ep("r1a")
    pkt = out_tcp(sw, r1a, 40000)
    lo, hi = snat_ports(1)
    assert pkt["ipv4_src"] == EGRESS and lo <= int(pkt["tcp_src"]) <= hi
    assert (pkt["ipv4_dst"], pkt["tcp_dst"]) == (OUTSIDE, 80)
    assert (pkt["eth_src"], pkt["eth_dst"]) == (EGRESS_MAC, KERNEL_MAC)
    (conn,) = sw.conntrack.in_zone(1)
    assert conn.mark == CT_MARK_SNAT

    back = back_tcp(sw, int(pkt["tcp_src"]))
    assert [e.port for e in back] == [r1a.ofport]
    got = back[0].packet
    assert (got["ipv4_src"], got["ipv4_dst"], got["tcp_dst"]) == (OUTSIDE, "10.0.0.2", 40000)
    assert got["eth_dst"] == r1a.mac and got["eth_src"] == mac_for_ip(IPv4Address("10.0.0.1"))

    again = out_tcp(sw, r1a, 40000)  # established now: same binding
    assert again["tcp_src"] == pkt["tcp_src"]
    assert sw.trace[-1][1] is not None and len(sw.conntrack.conns) == 1


def test_two_networks_with_the_same_addresses_on_one_host_both_work_at_once(lab: Lab) -> None:
    """r1a and b1a are both 10.0.0.2 on h1 and use the same source port to the same server."""
    sw = switch(gateway_snap(lab))
    r1a, b1a = lab.ep("r1a"), lab.ep("b1a")
    red = out_tcp(sw, r1a, 45000)
    blue = out_tcp(sw, b1a, 45000)
    assert red["tcp_src"] != blue["tcp_src"]  # distinct ranges: distinct outside tuples
    assert snat_ports(2)[0] <= int(blue["tcp_src"]) <= snat_ports(2)[1]
    for ep, pkt in ((b1a, blue), (r1a, red)):  # blue's reply is found in the second zone
        back = back_tcp(sw, int(pkt["tcp_src"]))
        assert [e.port for e in back] == [ep.ofport]
        assert back[0].packet["tcp_dst"] == 45000


def test_ping_goes_out_and_its_reply_comes_back(lab: Lab) -> None:
    sw = switch(gateway_snap(lab))
    r1a = lab.ep("r1a")
    assert r1a.ofport is not None
    sent = sw.process(icmp_packet(r1a.mac, "10.0.0.2", OUTSIDE), r1a.ofport)
    assert [(e.port, e.packet["ipv4_src"]) for e in sent] == [(GW_PORT, EGRESS)]
    reply = icmp_packet(KERNEL_MAC, OUTSIDE, EGRESS, EGRESS_MAC)
    reply["icmpv4_type"] = 0
    back = sw.process(reply, GW_PORT)
    assert [(e.port, e.packet["ipv4_dst"]) for e in back] == [(r1a.ofport, "10.0.0.2")]


def test_a_sealed_network_gets_nothing_out_beside_an_external_one(lab: Lab) -> None:
    sw = switch(gateway_snap(lab, red=True, blue=False))
    b1a = lab.ep("b1a")
    assert b1a.ofport is not None
    assert sw.process(tcp_packet(b1a.mac, "10.0.0.2", OUTSIDE, 4000, 80), b1a.ofport) == []
    assert sw.process(icmp_packet(b1a.mac, "10.0.0.2", OUTSIDE), b1a.ofport) == []
    assert sw.conntrack.conns == []
    # and red still works from the same address
    assert out_tcp(sw, lab.ep("r1a"), 4000)["ipv4_src"] == EGRESS


def test_nothing_gets_in_unasked(lab: Lab) -> None:
    sw = switch(gateway_snap(lab))
    assert back_tcp(sw, snat_ports(1)[0]) == []  # no connection: no zone has it
    assert back_tcp(sw, 22) == []
    # to an endpoint's own address through the gateway port: not the egress address
    pkt = tcp_packet(KERNEL_MAC, OUTSIDE, "10.0.0.2", 80, 40000, EGRESS_MAC)
    assert sw.process(pkt, GW_PORT) == []


def test_unknown_addresses_of_the_subnet_do_not_leave(lab: Lab) -> None:
    """Blue has no block at .192/26: 10.0.0.250 is nobody's, and stays inside."""
    sw = switch(gateway_snap(lab))
    b1a = lab.ep("b1a")
    assert b1a.ofport is not None
    assert sw.process(ipv4_packet(b1a.mac, "10.0.0.2", "10.0.0.250"), b1a.ofport) == []
    assert sw.conntrack.conns == []


def test_arp_for_the_egress_address_is_answered_on_the_gateway_port(lab: Lab) -> None:
    sw = switch(gateway_snap(lab))
    out = sw.process(arp_request(KERNEL_MAC, "198.18.0.1", EGRESS), GW_PORT)
    assert [e.port for e in out] == [GW_PORT]
    reply = out[0].packet
    assert (reply["arp_op"], reply["arp_sha"], reply["arp_spa"]) == (2, EGRESS_MAC, EGRESS)
    assert (reply["arp_tha"], reply["arp_tpa"], reply["eth_dst"]) == (
        KERNEL_MAC,
        "198.18.0.1",
        KERNEL_MAC,
    )
    assert reply["eth_type"] == ETH_ARP
    assert sw.process(arp_request(KERNEL_MAC, "198.18.0.1", "198.18.0.102"), GW_PORT) == []


def test_gateway_flows_only_where_an_external_network_has_endpoints(lab: Lab) -> None:
    snap = gateway_snap(lab, red=False, blue=False)
    ct_flows = [f for f in desired_flows(snap, "h1") if any(isinstance(a, Ct) for a in f.actions)]
    assert ct_flows == []
    # h2 is external-capable too, but has no egress address: nothing there either
    snap = gateway_snap(lab)
    assert not [f for f in desired_flows(snap, "h2") if any(isinstance(a, Ct) for a in f.actions)]
    # and a sealed lab's flows are exactly those of before
    assert desired_flows(gateway_snap(lab, False, False), "h1") == desired_flows(lab.snap, "h1")


def test_the_in_memory_conntrack_shows_why_ranges_must_differ(lab: Lab) -> None:
    """With one range for both zones (as if the zones shared a range), the two networks'
    connections get the same outside tuple: conntrack checks clashes per zone only."""
    snap = gateway_snap(lab)
    nets = dict(snap.networks)
    nets["blue"] = replace(nets["blue"], zone=1 + SNAT_RANGES)  # same range as zone 1
    sw = switch(replace(snap, networks=nets))
    red = out_tcp(sw, lab.ep("r1a"), 45000)
    blue = out_tcp(sw, lab.ep("b1a"), 45000)
    assert red["tcp_src"] == blue["tcp_src"]


@pytest.mark.parametrize("zone", [1, 2, 63, 64, 65, 0xFFFF])
def test_port_ranges(zone: int) -> None:
    lo, hi = snat_ports(zone)
    assert SNAT_PORT_BASE <= lo < hi <= 65535
    ranges = {snat_ports(z) for z in range(1, SNAT_RANGES + 1)}
    assert len(ranges) == SNAT_RANGES  # the first 64 zones: pairwise disjoint, aligned
    assert all((a[0] - SNAT_PORT_BASE) % (a[1] - a[0] + 1) == 0 for a in ranges)


def test_states_seen_by_the_flows(lab: Lab) -> None:
    sw = switch(gateway_snap(lab))
    r1a = lab.ep("r1a")
    pkt = out_tcp(sw, r1a, 41000)
    assert sw.trace[-1][1] is not None
    back_tcp(sw, int(pkt["tcp_src"]))
    out_tcp(sw, r1a, 41000)
    (conn,) = sw.conntrack.conns
    assert conn.seen_reply
    assert CT_EST | CT_TRK != CT_NEW | CT_TRK


def test_gateway_flows_encode_and_decode_as_openflow(lab: Lab) -> None:
    """Every gateway flow's ct action encodes as Nicira ct that os-ken parses back the same."""
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    from controller.ofmsg import _action, add_bytes

    ct_flows = [
        f
        for f in desired_flows(gateway_snap(lab), "h1")
        if any(isinstance(a, Ct) for a in f.actions)
    ]
    assert len(ct_flows) >= 6
    for f in ct_flows:
        assert add_bytes(f, 7)
        for want in (a for a in f.actions if isinstance(a, Ct)):
            buf = bytearray()
            _action(want).serialize(buf, 0)
            got = parser.OFPAction.parser(bytes(buf), 0)
            table = 0xFF if want.table is None else want.table
            assert (got.zone_ofs_nbits, got.flags, got.recirc_table) == (
                want.zone,
                int(want.commit),
                table,
            )
            nats = [a for a in got.actions if type(a).__name__ == "NXActionNAT"]
            marks = [a.value for a in got.actions if type(a).__name__ == "OFPActionSetField"]
            assert len(nats) == (want.nat is not None)
            assert marks == ([want.mark] if want.mark is not None else [])
            if want.nat is not None and want.nat.kind:
                assert nats[0].range_ipv4_min == want.nat.ip
                assert (nats[0].range_proto_min, nats[0].range_proto_max) == (
                    want.nat.port_lo,
                    want.nat.port_hi,
                )


# -- published ports (inbound) -----------------------------------------------------------------


def published(lab: Lab, endpoint: str = "r1a", host_port: int = 8080, port: int = 80) -> Snapshot:
    snap = gateway_snap(lab)
    nets = dict(snap.networks)
    pub = Publication(endpoint, host_port, port, "tcp")
    nets["red"] = replace(nets["red"], publications=(pub,))
    return replace(snap, networks=nets)


def test_a_published_port_reaches_its_endpoint_and_the_reply_leaves_as_the_host(
    lab: Lab,
) -> None:
    sw = switch(published(lab))
    r1a = lab.ep("r1a")
    back = back_tcp(sw, 8080, sport=50000)  # a new connection from the outside
    assert [e.port for e in back] == [r1a.ofport]
    got = back[0].packet
    assert (got["ipv4_src"], got["tcp_src"]) == (OUTSIDE, 50000)  # the client as it is
    assert (got["ipv4_dst"], got["tcp_dst"], got["eth_dst"]) == ("10.0.0.2", 80, r1a.mac)
    (conn,) = sw.conntrack.in_zone(1)
    assert conn.mark == CT_MARK_DNAT

    assert r1a.ofport is not None
    reply = tcp_packet(r1a.mac, "10.0.0.2", OUTSIDE, 80, 50000)
    out = sw.process(reply, r1a.ofport)
    assert [e.port for e in out] == [GW_PORT]
    assert (out[0].packet["ipv4_src"], out[0].packet["tcp_src"]) == (EGRESS, 8080)

    again = back_tcp(sw, 8080, sport=50000)  # established now
    assert [(e.port, e.packet["tcp_dst"]) for e in again] == [(r1a.ofport, 80)]
    assert len(sw.conntrack.conns) == 1


def test_other_ports_stay_closed_and_sealed_networks_publish_nothing(lab: Lab) -> None:
    sw = switch(published(lab))
    assert back_tcp(sw, 8081) == [] and back_tcp(sw, 80) == []
    udp = tcp_packet(KERNEL_MAC, OUTSIDE, EGRESS, 50000, 8080, EGRESS_MAC)
    udp.update(ip_proto=17, udp_src=50000, udp_dst=8080)
    del udp["tcp_src"], udp["tcp_dst"]
    assert sw.process(udp, GW_PORT) == []  # published for TCP only
    snap = published(lab)
    nets = dict(snap.networks)
    nets["red"] = replace(nets["red"], external=False, zone=None)
    assert back_tcp(switch(replace(snap, networks=nets)), 8080) == []


def test_a_publication_lives_where_its_endpoint_is(lab: Lab) -> None:
    """r2a is on h2: h1 has no flows for its port; h2 (given an egress address) has."""
    snap = published(lab, "r2a")
    assert back_tcp(switch(snap), 8080) == []
    hosts = dict(snap.hosts)
    hosts["h2"] = replace(hosts["h2"], egress_ip=IPv4Address(EGRESS), gateway_port=GW_PORT)
    sw2 = switch(replace(snap, hosts=hosts), "h2")
    assert [e.port for e in back_tcp(sw2, 8080)] == [lab.ep("r2a").ofport]
