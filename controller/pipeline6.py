"""PURE: the IPv6 flows of a dual-stack network (``Network.subnet6``), for ``pipeline``.

Every IPv6 address of a network is its prefix with the IPv4 address as the low 32 bits
(``vxcommon.addr6``), so IPv6 reuses what IPv4 has: the derived MAC (``0a:58`` + the IPv4
address), the host-affinity blocks (a block a.b.c.d/n is prefix::a.b.c.d/(96 + n)), the
VNI in ``metadata``, reg6 and the tables LOCAL and REMOTE. IPv6 crosses hosts inside the
same IPv4 VXLAN tunnels. Added tables:

  0 CLASSIFY    a local endpoint's port: IPv6 from its MAC and its ip6 -> LOCAL (reg6=1,
                metadata = VNI); a neighbour solicitation from its MAC and its ip6 or its
                MAC-derived link-local address (modified EUI-64, what Linux gives it)
                -> ND6. Everything else IPv6 from the port is dropped: other sources,
                duplicate address detection's solicitations from :: (never answered, so
                the endpoint's DAD succeeds), and, whatever the source, router
                solicitations and advertisements, neighbour advertisements (the switch is
                the only one that answers solicitations: an endpoint's NA can only be a
                forgery), redirects and multicast listener messages (no multicast in the
                overlay; the agent gives the endpoint its default route to gateway6, so
                no router advertisement is needed).
 11 ND6         a solicitation (ICMPv6 135, code 0) whose target is an address of the
                network (prefix::subnet, one masked match per network, as ARP) becomes an
                advertisement: type 136, flags solicited + override (+ router for
                gateway6, one exact flow above), option type 2 (target link-layer
                address) -> ND6_REPLY. OVS refuses to write the
                target link-layer address in a flow that matches a solicitation, hence
                two tables (measured, ../shared/ovs-facts.md section 5).
 12 ND6_REPLY   one flow for every network: eth_dst = the requester, eth_src and the
                target link-layer address = 0a:58 + the target's low 32 bits (register
                moves), ipv6_dst = the requester, ipv6_src = the target, out the port it
                came in on.
 30 LOCAL       IPv6 to a local endpoint's ip6 -> eth_dst = its MAC, out its port.
 40 REMOTE      IPv6 to a block of another host (or a moved endpoint's /128) -> tunnel.

Flows: per network 2 (ND6: the subnet's, and gateway6's with the router flag: it is every
endpoint's default router), per local endpoint 4, per remote block or moved endpoint 1,
plus 11 for the whole switch (8 CLASSIFY drops, ND6_REPLY's rewrite, the two tables' default
drops) while some network is dual
stack. Not done here: IPv6 of endpoints a network policy isolates is dropped (policies
are compiled for IPv4 only: fail closed, not open); link-local unicast between endpoints
is not delivered (only ND uses it). External access over IPv6 (egress to the host's
egress6, published ports) is in ``pipeline``'s gateway (``_gateway6_flows``).
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from controller.flows import OFPP_IN_PORT, Action, Flow, MatchValue, Output, RegMove, SetField, flow
from vxcommon.addr6 import embed, link_local

T_ND6 = 11
T_ND6_REPLY = 12
ETH_IPV6 = 0x86DD
IP_ICMPV6 = 58
ICMP6_MLD = (130, 131, 132, 143)  # query, v1 report, done, v2 report
ICMP6_RS, ICMP6_RA, ICMP6_NS, ICMP6_NA, ICMP6_REDIRECT = 133, 134, 135, 136, 137
DROPPED_ICMP6 = (*ICMP6_MLD, ICMP6_RS, ICMP6_RA, ICMP6_NA, ICMP6_REDIRECT)
NA_FLAGS = 0x60000000  # solicited + override (router: no)
NA_ROUTER = 0x80000000  # the gateway's advertisement: router
ND_OPT_TLL = 2  # target link-layer address
MAC_PREFIX = "0a:58:00:00:00:00"
META_MASK = 0xFFFFFFFFFFFFFFFF


def embed_net(subnet6: IPv6Network, net4: IPv4Network) -> IPv6Network:
    """The IPv6 twin of an IPv4 block or subnet: prefix::a.b.c.d/(96 + n)."""
    first = int(subnet6.network_address) | int(net4.network_address)
    return IPv6Network((first, 96 + net4.prefixlen))


def masked6(net: IPv6Network) -> str | tuple[str, str]:
    """A match value for ``net`` (exact for a /128)."""
    if net.prefixlen == 128:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


@lru_cache(maxsize=1)
def base_flows6(t_classify: int, prio: int) -> tuple[Flow, ...]:
    """The switch-wide IPv6 flows: CLASSIFY's drops and the ND6_REPLY rewrite."""
    icmp6: dict[str, MatchValue] = {"eth_type": ETH_IPV6, "ip_proto": IP_ICMPV6}
    drops = tuple(flow(t_classify, prio, {**icmp6, "icmpv6_type": t}) for t in DROPPED_ICMP6)
    reply: list[Action] = [
        RegMove("eth_src", "eth_dst", 48),
        SetField("eth_src", MAC_PREFIX),
        RegMove("ipv6_nd_target", "eth_src", 32),
        RegMove("ipv6_src", "ipv6_dst", 128),
        RegMove("ipv6_nd_target", "ipv6_src", 128),
        RegMove("eth_src", "ipv6_nd_tll", 48),
        Output(OFPP_IN_PORT),
    ]
    advert = {**icmp6, "icmpv6_type": ICMP6_NA, "icmpv6_code": 0}
    defaults = (flow(T_ND6, 0), flow(T_ND6_REPLY, 0))
    return (*drops, flow(T_ND6_REPLY, prio, advert, reply), *defaults)


def _advertise(vni: int, target: str | tuple[str, str], flags: int, prio: int) -> Flow:
    """A flow turning solicitations for ``target`` (an address or a masked prefix) in the
    network into advertisements with ``flags`` (finished by ND6_REPLY)."""
    return flow(
        T_ND6,
        prio,
        {
            "metadata": vni,
            "eth_type": ETH_IPV6,
            "ip_proto": IP_ICMPV6,
            "icmpv6_type": ICMP6_NS,
            "icmpv6_code": 0,
            "ipv6_nd_target": target,
        },
        [
            SetField("icmpv6_type", ICMP6_NA),
            SetField("nd_reserved", flags),
            SetField("nd_options_type", ND_OPT_TLL),
        ],
        goto=T_ND6_REPLY,
    )


@lru_cache(maxsize=1 << 16)
def nd_responder(vni: int, subnet6: IPv6Network, subnet: IPv4Network, prio: int) -> Flow:
    """One flow turning every solicitation for an address of the network into an
    advertisement (finished by ND6_REPLY)."""
    return _advertise(vni, masked6(embed_net(subnet6, subnet)), NA_FLAGS, prio)


@lru_cache(maxsize=1 << 16)
def gateway_nd(vni: int, subnet6: IPv6Network, gateway: IPv4Address, prio: int) -> Flow:
    """ND6 for the network's gateway6 (above ``nd_responder``): the same advertisement with
    the router flag, since gateway6 is every endpoint's default router."""
    return _advertise(vni, str(embed(subnet6, gateway)), NA_FLAGS | NA_ROUTER, prio)


@lru_cache(maxsize=1 << 18)
def local_endpoint6(
    vni: int,
    ip6: IPv6Address,
    mac: str,
    ofport: int,
    tables: tuple[int, int],
    prios: tuple[int, int],
    data: bool = True,
) -> tuple[Flow, ...]:
    """CLASSIFY and LOCAL flows of a local endpoint of a dual-stack network (``tables``:
    CLASSIFY and LOCAL; ``prios``: normal and exception); ``data`` false (isolated by a
    policy): neighbour discovery only."""
    t_classify, t_local = tables
    normal, exception = prios
    meta = (vni, META_MASK)
    port: dict[str, MatchValue] = {"in_port": ofport, "eth_src": mac, "eth_type": ETH_IPV6}
    solicit: dict[str, MatchValue] = {
        **port,
        "ip_proto": IP_ICMPV6,
        "icmpv6_type": ICMP6_NS,
        "icmpv6_code": 0,
    }
    out = [
        flow(t_classify, exception, {**solicit, "ipv6_src": src}, write_metadata=meta, goto=T_ND6)
        for src in (str(ip6), link_local(mac))
    ]
    if data:
        out += [
            flow(
                t_classify,
                normal,
                {**port, "ipv6_src": str(ip6)},
                [SetField("reg6", 1)],
                write_metadata=meta,
                goto=t_local,
            ),
            flow(
                t_local,
                normal,
                {"metadata": vni, "eth_type": ETH_IPV6, "ipv6_dst": str(ip6)},
                [SetField("eth_dst", mac), Output(ofport)],
            ),
        ]
    return tuple(out)


@lru_cache(maxsize=1 << 18)
def route6(
    t_remote: int, vni: int, cidr: IPv6Network, priority: int, peer_ip: str, tunnel_port: int
) -> Flow:
    """REMOTE: IPv6 to ``cidr`` of network ``vni`` -> the tunnel to ``peer_ip``."""
    return flow(
        t_remote,
        priority,
        {"metadata": vni, "eth_type": ETH_IPV6, "ipv6_dst": masked6(cidr)},
        [SetField("tunnel_id", vni), SetField("tun_ipv4_dst", peer_ip), Output(tunnel_port)],
    )
