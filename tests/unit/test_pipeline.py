"""The flow pipeline's behaviour, packet by packet, through the in-memory OpenFlow interpreter.

The lab (see ``conftest``): hosts h1..h3 on 198.18.0.1-3, networks red (VNI 100) and blue
(VNI 200) both on 10.0.0.0/24, /26 blocks with host affinity, endpoints on every host, and
one moved endpoint per network (an IP of h1's block bound on h2).
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller.flows import OFPP_IN_PORT, Output, RegMove, SetField, flow
from controller.model import Block, Endpoint, Snapshot, mac_for_ip
from controller.oftable import (
    BROADCAST_MAC,
    ETH_ARP,
    ETH_IP,
    ETH_IPV6,
    Ambiguity,
    Fabric,
    FlowRejected,
    Packet,
    Switch,
    arp_packet,
    arp_request,
    ipv4_packet,
    tunnelled,
)
from controller.pipeline import desired_flows
from tests.unit.conftest import TUNNEL_PORT, Lab, endpoint


def send_ip(fabric: Fabric, src: Endpoint, dst_ip: str, **over: str) -> list[tuple[str, int]]:
    """Send IPv4 from endpoint ``src`` (addressed as the ARP responder says); where it lands."""
    assert src.host is not None and src.ofport is not None
    pkt = ipv4_packet(src.mac, str(src.ip), dst_ip, mac_for_ip(IPv4Address(dst_ip)))
    pkt.update(over)
    return sorted((d.host, d.port) for d in fabric.send(src.host, pkt, src.ofport))


def bound(snap: Snapshot) -> list[Endpoint]:
    return [e for e in snap.endpoints if e.host is not None and e.ofport is not None]


# -- forwarding ------------------------------------------------------------------------------


def test_same_network_same_host_goes_port_to_port(lab: Lab) -> None:
    r1a, r1b = lab.ep("r1a"), lab.ep("r1b")
    sw = lab.switch("h1")
    out = sw.process(ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.3", "aa:bb:cc:dd:ee:ff"), 2)
    assert [e.port for e in out] == [r1b.ofport]
    pkt = out[0].packet
    assert pkt["eth_dst"] == r1b.mac
    assert (pkt["eth_src"], pkt["ipv4_src"], pkt["ipv4_dst"]) == (r1a.mac, "10.0.0.2", "10.0.0.3")


def test_to_remote_host_leaves_on_tunnel_with_vni_and_peer_underlay(lab: Lab) -> None:
    for src, dst_ip, vni, peer in [
        ("r1a", "10.0.0.66", 100, "198.18.0.2"),
        ("r1a", "10.0.0.130", 100, "198.18.0.3"),
        ("b1a", "10.0.0.66", 200, "198.18.0.2"),
        ("r3a", "10.0.0.3", 100, "198.18.0.1"),
        ("b3a", "10.0.0.70", 200, "198.18.0.2"),
    ]:
        ep = lab.ep(src)
        assert ep.host is not None and ep.ofport is not None
        out = lab.switch(ep.host).process(ipv4_packet(ep.mac, str(ep.ip), dst_ip), ep.ofport)
        assert [e.port for e in out] == [TUNNEL_PORT], (src, dst_ip)
        assert out[0].packet["tunnel_id"] == vni
        assert out[0].packet["tun_ipv4_dst"] == peer
        assert out[0].packet["ipv4_dst"] == dst_ip


def test_remote_delivery_end_to_end_lands_on_the_right_network(lab: Lab) -> None:
    fabric = lab.fabric()
    assert send_ip(fabric, lab.ep("r1a"), "10.0.0.66") == [("h2", 2)]  # r2a, not blue b2a
    assert fabric.hops == [("h1", "h2", 100)]
    assert send_ip(fabric, lab.ep("b1a"), "10.0.0.66") == [("h2", 3)]  # b2a, not red r2a
    assert fabric.hops == [("h1", "h2", 200)]
    assert send_ip(fabric, lab.ep("b3a"), "10.0.0.2") == [("h1", 4)]
    assert send_ip(fabric, lab.ep("r3a"), "10.0.0.2") == [("h1", 2)]


@pytest.mark.parametrize("src", ["r1a", "r1b", "r3a"])
def test_moved_endpoint_is_reached_on_its_host_through_the_exception(lab: Lab, src: str) -> None:
    """rmv (10.0.0.10) sits in h1's block but is bound on h2, port 5."""
    fabric = lab.fabric()
    assert send_ip(fabric, lab.ep(src), "10.0.0.10") == [("h2", 5)]
    assert fabric.hops == [(lab.ep(src).host, "h2", 100)]


def test_moved_endpoint_from_its_own_host_is_local(lab: Lab) -> None:
    fabric = lab.fabric()
    assert send_ip(fabric, lab.ep("r2a"), "10.0.0.10") == [("h2", 5)]
    assert fabric.hops == []


def test_blue_moved_endpoint_with_a_red_twin_address(lab: Lab) -> None:
    """10.0.0.3 is red r1b on h1 (in its block) and blue b2c on h2 (moved)."""
    fabric = lab.fabric()
    assert send_ip(fabric, lab.ep("b1a"), "10.0.0.3") == [("h2", 8)]
    assert send_ip(fabric, lab.ep("b3a"), "10.0.0.3") == [("h2", 8)]
    assert send_ip(fabric, lab.ep("r3a"), "10.0.0.3") == [("h1", 3)]
    assert send_ip(fabric, lab.ep("r2a"), "10.0.0.3") == [("h1", 3)]


def test_every_pair_reaches_exactly_its_own_network(lab: Lab) -> None:
    """For every bound source and every address in use: lands once, on the same network."""
    fabric = lab.fabric()
    eps = bound(lab.snap)
    for src in eps:
        for ip in sorted({str(e.ip) for e in lab.snap.endpoints}):
            want = sorted(
                (e.host, e.ofport)
                for e in eps
                if e.network == src.network and str(e.ip) == ip and e is not src
            )
            got = send_ip(fabric, src, ip)
            assert got == want, (src.name, ip)


def test_unbound_and_unknown_addresses_are_dropped(lab: Lab) -> None:
    fabric = lab.fabric()
    for ip in ["10.0.0.11", "10.0.0.50", "10.0.0.200", "10.0.1.1", "192.0.2.1"]:
        for src in ("r1a", "r3a", "b2a"):
            assert send_ip(fabric, lab.ep(src), ip) == [], (src, ip)


# -- from the tunnel -------------------------------------------------------------------------


def from_peer(lab: Lab, peer: str, vni: int, dst_ip: str, src_ip: str = "10.0.0.99") -> Packet:
    inner = ipv4_packet(mac_for_ip(IPv4Address(src_ip)), src_ip, dst_ip)
    return tunnelled(inner, lab.underlay(peer), lab.underlay("h2"), vni)


def test_tunnel_traffic_is_delivered_to_its_own_network_only(lab: Lab) -> None:
    sw = lab.switch("h2")
    for peer in ("h1", "h3"):
        red = sw.process(from_peer(lab, peer, 100, "10.0.0.66"), TUNNEL_PORT)
        assert [e.port for e in red] == [2]
        assert red[0].packet["eth_dst"] == lab.ep("r2a").mac
        blue = sw.process(from_peer(lab, peer, 200, "10.0.0.66"), TUNNEL_PORT)
        assert [e.port for e in blue] == [3]
        # the moved ones, and the blue-only address
        assert [e.port for e in sw.process(from_peer(lab, peer, 100, "10.0.0.10"), 1)] == [5]
        assert [e.port for e in sw.process(from_peer(lab, peer, 200, "10.0.0.3"), 1)] == [8]
        assert sw.process(from_peer(lab, peer, 100, "10.0.0.70"), TUNNEL_PORT) == []
        assert [e.port for e in sw.process(from_peer(lab, peer, 200, "10.0.0.70"), 1)] == [6]


def test_tunnel_traffic_from_unknown_source_or_vni_is_dropped(lab: Lab) -> None:
    sw = lab.switch("h2")
    inner = ipv4_packet(mac_for_ip(IPv4Address("10.0.0.2")), "10.0.0.2", "10.0.0.66")
    for tun_src in ("198.18.0.99", "198.18.0.2", "10.0.0.2"):
        assert sw.process(tunnelled(inner, tun_src, "198.18.0.2", 100), TUNNEL_PORT) == []
    assert sw.process(tunnelled(inner, "198.18.0.1", "198.18.0.2", 300), TUNNEL_PORT) == []
    # a known peer's frame arriving on a container port is not tunnel traffic
    assert sw.process(tunnelled(inner, "198.18.0.1", "198.18.0.2", 100), 7) == []


def test_an_endpoint_bound_to_the_tunnel_port_opens_no_way_in(lab: Lab) -> None:
    """r2a bound to h2's tunnel port number: its port security flows would take tunnel
    traffic from any underlay source carrying r2a's inner addresses into red."""
    sw = lab.switch("h2", lab.rebind("r2a", "h2", TUNNEL_PORT))
    r2a = lab.ep("r2a")
    inner = ipv4_packet(r2a.mac, str(r2a.ip), "10.0.0.10")  # to rmv, red, bound on h2
    for tun_src in ("198.18.0.99", "10.9.9.9"):
        assert sw.process(tunnelled(inner, tun_src, "198.18.0.2", 100), TUNNEL_PORT) == []
    # a known peer still gets in
    assert [e.port for e in sw.process(from_peer(lab, "h1", 100, "10.0.0.10"), TUNNEL_PORT)] == [5]


def test_tunnel_traffic_is_never_sent_back_into_the_overlay(lab: Lab) -> None:
    """h2 receives red traffic for an address of h3's block and for h1's: dropped, not relayed."""
    sw = lab.switch("h2")
    for dst in ("10.0.0.130", "10.0.0.2", "10.0.0.11", "10.0.0.200", "10.0.0.255"):
        for vni in (100, 200):
            assert sw.process(from_peer(lab, "h1", vni, dst), TUNNEL_PORT) == []
            assert sw.suppressed == []
            assert 40 not in sw.tables_visited(), "tunnel traffic reached the REMOTE table"


def test_arp_from_the_tunnel_is_dropped(lab: Lab) -> None:
    sw = lab.switch("h2")
    req = arp_request(mac_for_ip(IPv4Address("10.0.0.2")), "10.0.0.2", "10.0.0.66")
    assert sw.process(tunnelled(req, "198.18.0.1", "198.18.0.2", 100), TUNNEL_PORT) == []


# -- isolation -------------------------------------------------------------------------------


def test_networks_are_isolated_even_with_the_same_addresses(lab: Lab) -> None:
    fabric = lab.fabric()
    eps = bound(lab.snap)
    for src in eps:
        for dst in eps:
            if dst.network == src.network:
                continue
            landed = send_ip(fabric, src, str(dst.ip))
            assert (dst.host, dst.ofport) not in landed, (src.name, dst.name)


def test_red_cannot_reach_a_blue_only_address(lab: Lab) -> None:
    fabric = lab.fabric()
    for src in ("r1a", "r2a", "r3a"):
        assert send_ip(fabric, lab.ep(src), "10.0.0.70") == []


# -- port security ---------------------------------------------------------------------------


def test_spoofed_sources_are_dropped(lab: Lab) -> None:
    sw = lab.switch("h1")
    r1a, r1b = lab.ep("r1a"), lab.ep("r1b")
    honest = ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.3")
    assert [e.port for e in sw.process(honest, 2)] == [3]
    spoofed = [
        ipv4_packet(r1b.mac, "10.0.0.2", "10.0.0.3"),  # someone else's MAC
        ipv4_packet("0a:58:0a:00:00:63", "10.0.0.2", "10.0.0.3"),  # made-up MAC
        ipv4_packet(r1a.mac, "10.0.0.3", "10.0.0.3"),  # someone else's IP
        ipv4_packet(r1a.mac, "10.0.0.99", "10.0.0.66"),  # made-up IP
    ]
    for pkt in spoofed:
        assert sw.process(pkt, 2) == [], pkt
    # r1a's honest frame on r1b's port is not r1b's
    assert sw.process(ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.66"), 3) == []


def test_spoofed_arp_sender_is_dropped(lab: Lab) -> None:
    sw = lab.switch("h1")
    r1a, r1b = lab.ep("r1a"), lab.ep("r1b")
    assert sw.process(arp_request(r1a.mac, "10.0.0.2", "10.0.0.66"), 2) != []
    for pkt in [
        arp_packet(r1b.mac, "10.0.0.2", "10.0.0.66", eth_src=r1a.mac),  # sha spoofed
        arp_packet(r1a.mac, "10.0.0.3", "10.0.0.66"),  # spa spoofed
        arp_packet(r1b.mac, "10.0.0.3", "10.0.0.66", eth_src=r1a.mac),  # both
        arp_packet(r1a.mac, "10.0.0.2", "10.0.0.66", eth_src=r1b.mac),  # eth_src spoofed
    ]:
        assert sw.process(pkt, 2) == [], pkt


def test_unknown_port_and_other_ethertypes_are_dropped(lab: Lab) -> None:
    sw = lab.switch("h1")
    r1a = lab.ep("r1a")
    assert sw.process(ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.3"), 99) == []
    assert sw.process(arp_request(r1a.mac, "10.0.0.2", "10.0.0.3"), 99) == []
    for eth_type in (ETH_IPV6, 0x8100, 0x88CC, 0x8035):
        pkt: Packet = {"eth_src": r1a.mac, "eth_dst": BROADCAST_MAC, "eth_type": eth_type}
        assert sw.process(pkt, 2) == []
    # an "IPv4" packet of a port whose frame says it is IPv6
    v6 = ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.3")
    v6["eth_type"] = ETH_IPV6
    assert sw.process(v6, 2) == []


def test_broadcast_ipv4_is_not_flooded(lab: Lab) -> None:
    fabric = lab.fabric()
    r1a = lab.ep("r1a")
    for dst in ("255.255.255.255", "10.0.0.255", "224.0.0.1", "10.0.0.0"):
        pkt = ipv4_packet(r1a.mac, "10.0.0.2", dst, "ff:ff:ff:ff:ff:ff")
        landed = fabric.send("h1", pkt, 2)
        assert landed == [], dst
        assert len(fabric.hops) <= 1, dst  # at most unicast to one block owner


# -- ARP responder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "asker,target",
    [
        ("r1a", "10.0.0.3"),  # local
        ("r1a", "10.0.0.66"),  # remote
        ("r1a", "10.0.0.10"),  # moved
        ("r1a", "10.0.0.1"),  # gateway
        ("r1a", "10.0.0.200"),  # unused, still in the subnet
        ("b1a", "10.0.0.70"),
        ("b2c", "10.0.0.2"),
        ("r3a", "10.0.0.254"),
    ],
)
def test_arp_request_is_answered_back_on_the_port(lab: Lab, asker: str, target: str) -> None:
    ep = lab.ep(asker)
    assert ep.host is not None and ep.ofport is not None
    sw = lab.switch(ep.host)
    out = sw.process(arp_request(ep.mac, str(ep.ip), target), ep.ofport)
    assert [e.port for e in out] == [ep.ofport]
    reply, answer = out[0].packet, mac_for_ip(IPv4Address(target))
    assert reply["eth_type"] == ETH_ARP and reply["arp_op"] == 2
    assert (reply["eth_src"], reply["arp_sha"], reply["arp_spa"]) == (answer, answer, target)
    assert (reply["eth_dst"], reply["arp_tha"], reply["arp_tpa"]) == (ep.mac, ep.mac, str(ep.ip))


def test_arp_request_via_in_port_reply(lab: Lab) -> None:
    """The reply uses OFPP_IN_PORT: a plain output to the ingress port would be dropped."""
    sw = lab.switch("h1")
    sw.process(arp_request(lab.ep("r1a").mac, "10.0.0.2", "10.0.0.66"), 2)
    assert sw.suppressed == []


def test_arp_for_own_address_and_probes_are_dropped(lab: Lab) -> None:
    sw = lab.switch("h1")
    r1a = lab.ep("r1a")
    assert sw.process(arp_request(r1a.mac, "10.0.0.2", "10.0.0.2"), 2) == []  # announcement
    assert sw.process(arp_request(r1a.mac, "0.0.0.0", "10.0.0.2"), 2) == []  # RFC 5227 probe
    b1a = lab.ep("b1a")  # same address, other network, same host
    assert sw.process(arp_request(b1a.mac, "10.0.0.2", "10.0.0.2"), 4) == []


def test_arp_outside_the_subnet_and_replies_are_dropped(lab: Lab) -> None:
    sw = lab.switch("h1")
    r1a = lab.ep("r1a")
    for target in ("10.0.1.1", "192.168.1.1", "198.18.0.2", "9.255.255.255"):
        assert sw.process(arp_request(r1a.mac, "10.0.0.2", target), 2) == [], target
    reply = arp_packet(r1a.mac, "10.0.0.2", "10.0.0.3", op=2, tha=lab.ep("r1b").mac)
    assert sw.process(reply, 2) == []


# -- what is computed, and for whom ----------------------------------------------------------


def test_unknown_host_gets_no_flows(lab: Lab) -> None:
    assert desired_flows(lab.snap, "h9") == frozenset()
    assert desired_flows(Snapshot(revision=7), "h1") == frozenset()
    no_hosts = replace(lab.snap, hosts={})
    assert desired_flows(no_hosts, "h1") == frozenset()


def test_desired_flows_have_distinct_keys_and_cookies(lab: Lab) -> None:
    for host in lab.snap.hosts:
        flows = desired_flows(lab.snap, host)
        assert len({f.key() for f in flows}) == len(flows), host
        assert len({f.cookie for f in flows}) == len(flows), host
        assert all(f.cookie >> 56 == 0x76 for f in flows)


def test_desired_flows_are_deterministic(lab: Lab) -> None:
    shuffled = replace(
        lab.snap,
        endpoints=tuple(reversed(lab.snap.endpoints)),
        blocks=tuple(reversed(lab.snap.blocks)),
        networks=dict(reversed(lab.snap.networks.items())),
    )
    for host in lab.snap.hosts:
        a, b = desired_flows(lab.snap, host), desired_flows(shuffled, host)
        assert {f.cookie for f in a} == {f.cookie for f in b}


def test_many_endpoints_in_a_hosts_own_blocks_do_not_touch_other_hosts(lab: Lab) -> None:
    """Host affinity: 100 endpoints on h2 inside h2's blocks leave h1's and h3's flows alone."""
    used = {(e.network, e.ip) for e in lab.snap.endpoints}
    extra: list[Endpoint] = []
    port = 100
    for net in ("red", "blue"):
        for ip in IPv4Network("10.0.0.64/26").hosts():
            if len(extra) == 100:
                break
            if (net, ip) in used:
                continue
            extra.append(endpoint(net, f"x{port}", str(ip), "h2", port))
            port += 1
    assert len(extra) == 100
    more = lab.with_endpoints(*extra)
    for host in ("h1", "h3"):
        assert desired_flows(more, host) == desired_flows(lab.snap, host), host
    grown = len(desired_flows(more, "h2")) - len(desired_flows(lab.snap, "h2"))
    assert 100 <= grown <= 100 * 4
    # and they work: from h1 into h2's block, and on h2 from port to port
    fabric = lab.fabric(more)
    assert send_ip(fabric, lab.ep("r1a"), str(extra[0].ip)) == [("h2", extra[0].ofport)]
    last = extra[-1]
    assert last.network == "blue"
    assert send_ip(fabric, lab.ep("b2a"), str(last.ip)) == [("h2", last.ofport)]


def test_flow_count_grows_with_local_endpoints_blocks_and_moves_only(lab: Lab) -> None:
    def count(snap: Snapshot) -> int:
        return len(desired_flows(snap, "h1"))

    base = count(lab.snap)
    remote_in_block = lab.with_endpoints(endpoint("red", "n", "10.0.0.140", "h3", 9))
    assert count(remote_in_block) == base
    remote_moved = lab.with_endpoints(endpoint("red", "n", "10.0.0.141", "h2", 9))
    assert count(remote_moved) == base + 1
    local = lab.with_endpoints(endpoint("red", "n", "10.0.0.40", "h1", 9))
    local_delta = count(local) - base
    assert local_delta >= 1
    local2 = lab.with_endpoints(endpoint("blue", "m", "10.0.0.41", "h1", 10), snap=local)
    assert count(local2) - count(local) == local_delta  # linear in local endpoints
    block = replace(
        lab.snap, blocks=lab.snap.blocks + (Block("blue", IPv4Network("10.0.0.192/26"), "h3"),)
    )
    assert count(block) == base + 1
    reserved = lab.with_endpoints(endpoint("red", "n", "10.0.0.42"))
    assert count(reserved) == base


def test_a_new_remote_block_routes_there(lab: Lab) -> None:
    snap = replace(
        lab.snap,
        blocks=lab.snap.blocks + (Block("blue", IPv4Network("10.0.0.192/26"), "h3"),),
        endpoints=lab.snap.endpoints + (endpoint("blue", "b3z", "10.0.0.200", "h3", 12),),
    )
    assert send_ip(lab.fabric(snap), lab.ep("b1a"), "10.0.0.200") == [("h3", 12)]


def test_endpoint_of_a_host_missing_from_the_snapshot_is_not_routed(lab: Lab) -> None:
    snap = lab.with_endpoints(endpoint("red", "ghost", "10.0.0.20", "h9", 2))
    assert desired_flows(snap, "h1") == desired_flows(lab.snap, "h1")


# -- the interpreter itself (so the checks above can fail) -----------------------------------


def test_interpreter_enforces_match_prerequisites() -> None:
    sw = Switch()
    with pytest.raises(FlowRejected):
        sw.add(flow(0, 1, {"arp_tpa": "10.0.0.1"}))
    with pytest.raises(FlowRejected):
        sw.add(flow(0, 1, {"eth_type": ETH_IP, "arp_op": 1}))
    with pytest.raises(FlowRejected):
        sw.add(flow(0, 1, {"ipv4_dst": ("10.0.0.0", "255.255.255.0")}))
    with pytest.raises(FlowRejected):
        sw.add(flow(0, 1, {"eth_type": ETH_IP}, [SetField("arp_op", 2)]))
    with pytest.raises(FlowRejected):
        sw.add(flow(0, 1, {}, [RegMove("reg0", "reg1", 32, src_ofs=1)]))
    with pytest.raises(FlowRejected):
        sw.add(flow(5, 1, {}, goto=5))
    with pytest.raises(FlowRejected):
        sw.add(flow(0, 1, {"in_port": (1, 1)}))
    assert sw.flows == {}


def test_interpreter_priority_ambiguity_and_replace() -> None:
    sw = Switch()
    sw.add(flow(0, 1, {"in_port": 1}, [Output(2)]))
    sw.add(flow(0, 1, {"eth_type": ETH_IP}, [Output(3)]))
    ip = ipv4_packet("0a:58:0a:00:00:02", "10.0.0.2", "10.0.0.3")
    assert [e.port for e in sw.process(ip, 4)] == [3]
    with pytest.raises(Ambiguity):
        sw.process(ip, 1)
    sw.add(flow(0, 1, {"in_port": 1}, [Output(5)]))  # same key: replaces
    assert len(sw.flows) == 2
    sw.add(flow(0, 2, {"in_port": 1}, [Output(OFPP_IN_PORT), Output(1), Output(6)]))
    assert [e.port for e in sw.process(ip, 1)] == [1, 6]
    assert [e.port for e in sw.suppressed] == [1]


def test_interpreter_masks_moves_metadata_and_goto() -> None:
    sw = Switch().load(
        [
            flow(0, 1, {}, [SetField("reg1", 0xABCD)], write_metadata=(0x12, 0xFF), goto=3),
            flow(
                3,
                1,
                {
                    "metadata": (0x10, 0xF0),
                    "ipv4_dst": ("10.1.0.0", "255.255.0.0"),
                    "eth_type": ETH_IP,
                },
                [RegMove("reg1", "eth_dst", 8, src_ofs=4, dst_ofs=40), Output(9)],
            ),
        ]
    )
    out = sw.process(ipv4_packet("0a:58:0a:00:00:02", "10.0.0.2", "10.1.2.3"), 2)
    assert [e.port for e in out] == [9]
    assert out[0].packet["eth_dst"] == "bc:00:00:00:00:00"
    assert out[0].packet["metadata"] == 0x12
    assert sw.process(ipv4_packet("0a:58:0a:00:00:02", "10.0.0.2", "10.2.2.3"), 2) == []
