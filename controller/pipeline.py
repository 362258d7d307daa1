"""PURE: the desired flows of one host's br-int, computed from an intent snapshot.

Tables (everything not explicitly allowed is dropped; no MAC learning, no flooding):

  0 CLASSIFY    traffic from the tunnel port is accepted only from known hosts' underlay
                IPs (-> TUNNEL_IN); traffic from a local endpoint's port passes port
                security (source MAC and IP, ARP sender MAC and IP must be its own), gets
                its network's VNI in ``metadata`` and goes to ARP (ARP) or LOCAL (IPv4, with
                reg6=1 marking "came from a local port"). An endpoint bound to the tunnel's
                port number gets no flows: its own would admit tunnel traffic from anywhere.
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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from controller.flows import OFPP_IN_PORT, Action, Flow, Output, RegMove, SetField, flow
from controller.model import Block, Endpoint, Host, Network, Snapshot

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
CACHE = 1 << 18  # memoized flow values (a few hundred bytes each)


class IntentView(Protocol):
    """What :func:`desired_flows` reads: a ``Snapshot``, or the engine's ``intent.Intent``."""

    @property
    def networks(self) -> Mapping[str, Network]: ...
    @property
    def hosts(self) -> Mapping[str, Host]: ...
    @property
    def blocks(self) -> Iterable[Block]: ...


@dataclass(frozen=True, slots=True)
class SnapshotIndex:
    """What every host's computation shares, built once per snapshot: endpoints bound with a
    port, by host, and the endpoints living away from their block's host (exceptions).
    ``intent.Intent`` keeps one up to date change by change."""

    local: Mapping[str, Iterable[tuple[Network, Endpoint]]]
    exceptions: Iterable[tuple[Network, Endpoint]]


def index(snapshot: Snapshot) -> SnapshotIndex:
    """Index ``snapshot`` for :func:`desired_flows` (O(endpoints), once per snapshot)."""
    owners = block_owners(snapshot)
    local: dict[str, list[tuple[Network, Endpoint]]] = {}
    exceptions: list[tuple[Network, Endpoint]] = []
    for ep in snapshot.endpoints:
        net = snapshot.networks.get(ep.network)
        if net is None or ep.host is None:
            continue
        if ep.ofport is not None:
            local.setdefault(ep.host, []).append((net, ep))
        if owner_of(owners, net, ep.ip) != ep.host:
            exceptions.append((net, ep))
    return SnapshotIndex(local, exceptions)


def desired_flows(
    snapshot: IntentView, host_name: str, idx: SnapshotIndex | None = None
) -> frozenset[Flow]:
    """All flows br-int of ``host_name`` should hold for this snapshot.

    Costs O(local endpoints + networks + hosts + blocks + exceptions) given ``idx`` (build it
    once with :func:`index` when computing several hosts); flow values are memoized, so a
    flow that did not change is not rebuilt.
    """
    host = snapshot.hosts.get(host_name)
    if host is None:
        return frozenset()
    if idx is None:
        assert isinstance(snapshot, Snapshot), "only a Snapshot is indexed here"
        idx = index(snapshot)
    flows: list[Flow] = list(_base_flows())
    for peer in snapshot.hosts.values():
        if peer.name != host.name:
            flows.append(_tunnel_from(host.tunnel_port, str(peer.underlay_ip)))
    for net in snapshot.networks.values():
        flows.append(_vni_to_metadata(net.vni))
        flows.append(_arp_responder(net.vni, net.subnet))
    for net, ep in idx.local.get(host.name, ()):
        assert ep.ofport is not None
        if ep.ofport == host.tunnel_port:  # would admit tunnel traffic from any underlay source
            continue
        flows.extend(_local_endpoint(net.vni, str(ep.ip), ep.mac, ep.ofport))
    for block in snapshot.blocks:
        bnet = snapshot.networks.get(block.network)
        owner = snapshot.hosts.get(block.host)
        if bnet is None or owner is None or owner.name == host.name:
            continue
        flows.append(
            _route(bnet.vni, block.cidr, PRIO_NORMAL, str(owner.underlay_ip), host.tunnel_port)
        )
    for net, ep in idx.exceptions:
        there = snapshot.hosts.get(ep.host or "")
        if there is None or there.name == host.name:
            continue
        flows.append(
            _route(
                net.vni,
                IPv4Network(ep.ip),
                PRIO_EXCEPTION,
                str(there.underlay_ip),
                host.tunnel_port,
            )
        )
    return frozenset(flows)


@lru_cache(maxsize=1)
def _base_flows() -> tuple[Flow, ...]:
    return (
        *(flow(t, PRIO_DEFAULT) for t in TABLES),
        flow(T_LOCAL, PRIO_FALLTHROUGH, {FROM_LOCAL_REG: 1}, goto=T_REMOTE),
    )


@lru_cache(maxsize=CACHE)
def _tunnel_from(tunnel_port: int, peer_ip: str) -> Flow:
    return flow(
        T_CLASSIFY,
        PRIO_NORMAL,
        {"in_port": tunnel_port, "tun_ipv4_src": peer_ip},
        goto=T_TUNNEL_IN,
    )


@lru_cache(maxsize=CACHE)
def _vni_to_metadata(vni: int) -> Flow:
    return flow(
        T_TUNNEL_IN,
        PRIO_NORMAL,
        {"tunnel_id": vni},
        write_metadata=(vni, META_MASK),
        goto=T_LOCAL,
    )


@lru_cache(maxsize=CACHE)
def _arp_responder(vni: int, subnet: IPv4Network) -> Flow:
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
            "metadata": vni,
            "eth_type": ETH_ARP,
            "arp_op": ARP_REQUEST,
            "arp_tpa": (str(subnet.network_address), str(subnet.netmask)),
        },
        actions,
    )


@lru_cache(maxsize=CACHE)
def _local_endpoint(vni: int, ip: str, mac: str, ofport: int) -> tuple[Flow, ...]:
    meta = (vni, META_MASK)
    return (
        flow(
            T_CLASSIFY,
            PRIO_NORMAL,
            {"in_port": ofport, "eth_src": mac, "eth_type": ETH_IP, "ipv4_src": ip},
            [SetField(FROM_LOCAL_REG, 1)],
            write_metadata=meta,
            goto=T_LOCAL,
        ),
        flow(
            T_CLASSIFY,
            PRIO_NORMAL,
            {"in_port": ofport, "eth_src": mac, "eth_type": ETH_ARP, "arp_spa": ip, "arp_sha": mac},
            write_metadata=meta,
            goto=T_ARP,
        ),
        flow(
            T_ARP,
            PRIO_EXCEPTION,
            {"metadata": vni, "eth_type": ETH_ARP, "arp_spa": ip, "arp_tpa": ip},
        ),
        flow(
            T_LOCAL,
            PRIO_NORMAL,
            {"metadata": vni, "eth_type": ETH_IP, "ipv4_dst": ip},
            [SetField("eth_dst", mac), Output(ofport)],
        ),
    )


def block_owners(snapshot: Snapshot) -> dict[tuple[str, int], str]:
    """(network, block's first address as an int) -> host of every block."""
    return {(b.network, int(b.cidr.network_address)): b.host for b in snapshot.blocks}


def owner_of(owners: dict[tuple[str, int], str], net: Network, ip: IPv4Address) -> str | None:
    """The host whose block of ``net`` holds ``ip``, if any (blocks are aligned)."""
    prefix = max(net.block_prefix, net.subnet.prefixlen)
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return owners.get((net.name, int(ip) & mask))


@lru_cache(maxsize=CACHE)
def _route(vni: int, cidr: IPv4Network, priority: int, peer_ip: str, tunnel_port: int) -> Flow:
    dst: str | tuple[str, str]
    if cidr.prefixlen == 32:
        dst = str(cidr.network_address)
    else:
        dst = (str(cidr.network_address), str(cidr.netmask))
    return flow(
        T_REMOTE,
        priority,
        {"metadata": vni, "eth_type": ETH_IP, "ipv4_dst": dst},
        [SetField("tunnel_id", vni), SetField("tun_ipv4_dst", peer_ip), Output(tunnel_port)],
    )
