"""PURE: the desired flows of one host's br-int, computed from an intent snapshot.

Tables (everything not explicitly allowed is dropped; no MAC learning, no flooding):

  0 CLASSIFY    traffic from the tunnel port is accepted only from known hosts' underlay
                IPs (-> TUNNEL_IN); traffic from a local endpoint's port passes port
                security (source MAC and IP, ARP sender MAC and IP must be its own), gets
                its network's VNI in ``metadata`` and goes to ARP (ARP) or LOCAL (IPv4, with
                reg6=1 marking "came from a local port").
  5 TUNNEL_IN   tun_id (VNI) of a known network -> metadata = VNI -> LOCAL.
 10 ARP         ARP requests for any address of the network's subnet are answered on the
                spot with the MAC derived from the address (0a:58 + IP), one flow per
                network, using set-field and Nicira register moves. Requests for the
                sender's own address are dropped (no reply to duplicate-address probes).
 30 LOCAL       IPv4 to an endpoint bound on this host -> its port. A miss from a local
                port (reg6=1) goes on to REMOTE; a miss from the tunnel is dropped, so
                nothing is ever sent back into the overlay.
 40 REMOTE      IPv4 to an address block with affinity to another host -> tunnel to that
                host with tun_id = VNI; /32 exceptions (endpoints living away from their
                block's host) win over blocks.

Flows per host grow with local endpoints, networks, hosts, blocks and moved endpoints, not
with every endpoint of the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from controller.flows import OFPP_IN_PORT, Action, Flow, Output, RegMove, SetField, flow
from controller.model import Endpoint, Host, Network, Snapshot

T_CLASSIFY = 0
T_TUNNEL_IN = 5
T_ARP = 10
T_LOCAL = 30
T_REMOTE = 40
TABLES = (T_CLASSIFY, T_TUNNEL_IN, T_ARP, T_LOCAL, T_REMOTE)

ETH_IP = 0x0800
ETH_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2
MAC_PREFIX = "0a:58:00:00:00:00"
META_MASK = 0xFFFFFFFFFFFFFFFF
FROM_LOCAL_REG = "reg6"

PRIO_DEFAULT = 0
PRIO_FALLTHROUGH = 10
PRIO_NORMAL = 100
PRIO_EXCEPTION = 200


def desired_flows(snapshot: Snapshot, host_name: str) -> frozenset[Flow]:
    """All flows br-int of ``host_name`` should hold for this snapshot."""
    host = snapshot.hosts.get(host_name)
    if host is None:
        return frozenset()
    flows: list[Flow] = [flow(t, PRIO_DEFAULT) for t in TABLES]
    flows.append(flow(T_LOCAL, PRIO_FALLTHROUGH, {FROM_LOCAL_REG: 1}, goto=T_REMOTE))
    flows.extend(_tunnel_ingress(snapshot, host))
    for net in snapshot.networks.values():
        flows.append(_vni_to_metadata(net))
        flows.append(_arp_responder(net))
    for ep in snapshot.endpoints:
        ep_net = snapshot.networks.get(ep.network)
        if ep_net is None or ep.host != host.name or ep.ofport is None:
            continue
        flows.extend(_local_endpoint(ep_net, ep))
    flows.extend(_remote_routes(snapshot, host))
    return frozenset(flows)


def _tunnel_ingress(snapshot: Snapshot, host: Host) -> Iterable[Flow]:
    for peer in snapshot.hosts.values():
        if peer.name == host.name:
            continue
        yield flow(
            T_CLASSIFY,
            PRIO_NORMAL,
            {"in_port": host.tunnel_port, "tun_ipv4_src": str(peer.underlay_ip)},
            goto=T_TUNNEL_IN,
        )


def _vni_to_metadata(net: Network) -> Flow:
    return flow(
        T_TUNNEL_IN,
        PRIO_NORMAL,
        {"tunnel_id": net.vni},
        write_metadata=(net.vni, META_MASK),
        goto=T_LOCAL,
    )


def _arp_responder(net: Network) -> Flow:
    """One flow answering every address of the subnet with its derived MAC."""
    actions: list[Action] = [
        RegMove("eth_src", "eth_dst", 48),
        SetField("eth_src", MAC_PREFIX),
        RegMove("arp_tpa", "eth_src", 32),
        SetField("arp_op", ARP_REPLY),
        RegMove("arp_sha", "arp_tha", 48),
        RegMove("arp_spa", "reg0", 32),
        RegMove("arp_tpa", "arp_spa", 32),
        RegMove("reg0", "arp_tpa", 32),
        SetField("arp_sha", MAC_PREFIX),
        RegMove("arp_spa", "arp_sha", 32),
        Output(OFPP_IN_PORT),
    ]
    return flow(
        T_ARP,
        PRIO_NORMAL,
        {
            "metadata": net.vni,
            "eth_type": ETH_ARP,
            "arp_op": ARP_REQUEST,
            "arp_tpa": (str(net.subnet.network_address), str(net.subnet.netmask)),
        },
        actions,
    )


def _local_endpoint(net: Network, ep: Endpoint) -> Iterable[Flow]:
    assert ep.ofport is not None
    ip, mac = str(ep.ip), ep.mac
    meta = (net.vni, META_MASK)
    yield flow(
        T_CLASSIFY,
        PRIO_NORMAL,
        {"in_port": ep.ofport, "eth_src": mac, "eth_type": ETH_IP, "ipv4_src": ip},
        [SetField(FROM_LOCAL_REG, 1)],
        write_metadata=meta,
        goto=T_LOCAL,
    )
    yield flow(
        T_CLASSIFY,
        PRIO_NORMAL,
        {
            "in_port": ep.ofport,
            "eth_src": mac,
            "eth_type": ETH_ARP,
            "arp_spa": ip,
            "arp_sha": mac,
        },
        write_metadata=meta,
        goto=T_ARP,
    )
    yield flow(
        T_ARP,
        PRIO_EXCEPTION,
        {"metadata": net.vni, "eth_type": ETH_ARP, "arp_spa": ip, "arp_tpa": ip},
    )
    yield flow(
        T_LOCAL,
        PRIO_NORMAL,
        {"metadata": net.vni, "eth_type": ETH_IP, "ipv4_dst": ip},
        [SetField("eth_dst", mac), Output(ep.ofport)],
    )


def _to_tunnel(net: Network, peer: Host, host: Host) -> list[Action]:
    return [
        SetField("tunnel_id", net.vni),
        SetField("tun_ipv4_dst", str(peer.underlay_ip)),
        Output(host.tunnel_port),
    ]


def block_owners(snapshot: Snapshot) -> dict[tuple[str, IPv4Network], str]:
    """(network, block) -> host of every block."""
    return {(b.network, b.cidr): b.host for b in snapshot.blocks}


def owner_of(
    owners: dict[tuple[str, IPv4Network], str], net: Network, ip: IPv4Address
) -> str | None:
    """The host whose block of ``net`` holds ``ip``, if any (blocks are aligned)."""
    prefix = max(net.block_prefix, net.subnet.prefixlen)
    return owners.get((net.name, IPv4Network((ip, prefix), strict=False)))


def _remote_routes(snapshot: Snapshot, host: Host) -> Iterable[Flow]:
    owners = block_owners(snapshot)
    for block in snapshot.blocks:
        net = snapshot.networks.get(block.network)
        peer = snapshot.hosts.get(block.host)
        if net is None or peer is None or peer.name == host.name:
            continue
        yield _route(net, block.cidr, PRIO_NORMAL, _to_tunnel(net, peer, host))
    for ep in snapshot.endpoints:
        if ep.host is None or ep.host == host.name:
            continue
        net = snapshot.networks.get(ep.network)
        peer = snapshot.hosts.get(ep.host)
        if net is None or peer is None:
            continue
        if owner_of(owners, net, ep.ip) == ep.host:
            continue
        yield _route(net, IPv4Network(ep.ip), PRIO_EXCEPTION, _to_tunnel(net, peer, host))


def _route(net: Network, cidr: IPv4Network, priority: int, actions: list[Action]) -> Flow:
    dst: str | tuple[str, str]
    if cidr.prefixlen == 32:
        dst = str(cidr.network_address)
    else:
        dst = (str(cidr.network_address), str(cidr.netmask))
    return flow(
        T_REMOTE,
        priority,
        {"metadata": net.vni, "eth_type": ETH_IP, "ipv4_dst": dst},
        actions,
    )
