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

IPv6 (dual-stack networks, ``Network.subnet6``; the flows in ``controller.pipeline6``, whose
docstring is the detail): every IPv6 address is the prefix plus the IPv4 address, so
CLASSIFY, LOCAL and REMOTE carry IPv6 twins of the IPv4 flows (port security on the source
MAC and ip6, delivery to ip6, blocks as prefix::block/(96 + n), /128 exceptions), inside the
same IPv4 VXLAN tunnels, and:

 11 ND6         a neighbour solicitation for an address of the network (one masked flow per
                network; one more above it for gateway6, with the router flag) becomes an
                advertisement (type, flags, option type) -> ND6_REPLY.
 12 ND6_REPLY   one flow: the advertisement's MAC (0a:58 + the target's low 32 bits, by
                register moves), addresses swapped, out the port it came in on.

CLASSIFY drops (whatever the source) router solicitations and advertisements, neighbour
advertisements, redirects and multicast listener messages; a solicitation is taken only
from the endpoint's MAC with its ip6 or MAC-derived link-local source (DAD's from :: is
never answered).

Flows per host grow with local endpoints, networks, hosts, blocks and moved endpoints, not
with every endpoint of the cluster.

External access (the distributed gateway, ``gateway_flows``): a host with an egress address
(``Host.egress_ip``) and a gateway port into its own stack (``Host.gateway_port``, vxgw0)
gives the endpoints of external networks living on it a way out, each network in its own
conntrack zone (``Network.zone``, allocated in the database) so that two networks with the
same CIDR on one host never mix:

  0 CLASSIFY    from the gateway port: ARP for the egress address is answered with the
                egress MAC (0a:59 + egress IP); IPv4 to the egress address -> GW_IN.
 20 GW_IN       a published host port (item 2) -> ct(zone of its endpoint's network, nat,
                table=GW_CT); everything else -> ct(first local external zone, nat,
                table=GW_CT).
 21 GW_CT       (after conntrack) +est or +rel in zone Z: the reply, already translated
                back to the endpoint's address -> metadata = Z's VNI, eth_src = the
                network's gateway MAC -> LOCAL (delivered only to a local port). A miss in
                zone Z -> ct(next local zone, nat, table=GW_CT): one more recirculation per
                external network with endpoints on this host. A new connection to a
                published port (zone Z) -> ct(commit, zone Z, nat(dst=endpoint:port),
                ct_mark = CT_MARK_DNAT, table=GW_CT): recirculated, since a translation
                is visible to matches only after one; +new with CT_MARK_DNAT in zone Z to
                the network's subnet -> LOCAL. Nothing else gets in.
 40 REMOTE      (lowest priority, external networks only) a miss from a local port -> EGRESS
 50 EGRESS      IPv4 to the network's own subnet is dropped (no route for an unknown
                address); anything else -> ct(zone, nat, table=EGRESS_CT).
 51 EGRESS_CT   +new: ct(commit, zone, nat(src=egress IP:the zone's port range),
                ct_mark = CT_MARK_SNAT); +new, +est and +rel leave on the gateway port from
                the egress MAC to vxgw0's MAC (0a:5a + egress IP); +inv is dropped.

IPv6 external access (``_gateway6_flows``; a host with ``Host.egress_ip6`` as well, its
external networks with a ``subnet6``): every gateway table above has an IPv6 twin matching
eth_type 0x86dd, in the same zone with the same port range (conntrack keeps the families
apart), from the same egress MAC out the same gateway port:

  0 CLASSIFY    from the gateway port: IPv6 to egress6 -> GW_IN (the host's kernel knows
                egress6 on vxgw0 by a permanent neighbour entry: no ND flow).
 20 GW_IN       a published host port -> its zone; the rest -> the first zone (IPv6 chain).
 21 GW_CT       +est/+rel in zone Z to Z's endpoints (prefix::subnet) -> LOCAL; a miss ->
                the next zone with a dual-stack network; a new connection to a published
                port -> ct(commit, nat(dst=endpoint ip6:port), CT_MARK_DNAT) and delivered.
 40 REMOTE      a miss from a local port -> EGRESS.
 50 EGRESS      to the network's own prefix or to multicast: dropped; the rest -> ct.
 51 EGRESS_CT   +new: ct(commit, nat(src=egress6:the zone's port range), CT_MARK_SNAT).

Network policy (``controller.policy``; Kubernetes NetworkPolicy semantics): a local endpoint
a policy of its network selects (isolated for ingress, egress or both) has both directions
tracked in its network's policy zone (``policy.policy_zone``: 0x8000 | (VNI & 0x7fff)):

  0 CLASSIFY    its IPv4 goes to POL_OUT instead of LOCAL.
 22 POL_OUT     ct(policy zone, table=POL_OUT_CT) (one flow per network).
 23 POL_OUT_CT  +est+rpl with CT_MARK_BLOCKED dropped; other +est+rpl, +rel -> LOCAL; +inv
                dropped; a rule's conjunction (the endpoint's ipv4_src, the peers' ipv4_dst,
                the ports) or, not isolated for egress, the endpoint alone -> ct(commit,
                policy zone, ct_mark = CT_MARK_POLICY) -> LOCAL; +est the rest ->
                ct(commit, ct_mark = CT_MARK_POLICY | CT_MARK_BLOCKED), dropped (the cut);
                the rest is dropped.
 30 LOCAL       IPv4 to it -> ct(policy zone, table=POL_IN_CT).
 31 POL_IN_CT   the same for ingress (the endpoint's ipv4_dst, the peers' ipv4_src) -> DELIVER.
 32 DELIVER     to it -> eth_dst = its MAC, out its port.

Every original-direction packet is checked (not only +new), so removing a rule cuts a live
connection at its next packet, and its replies from then on (``policy``'s docstring says why
a blocked mark); conjunctive matches keep a rule's flows at selected
endpoints + peers + ports. Policy zones and external zones (allocated from 1) meet only past
32767 external networks; VNIs equal modulo 32768 share a policy zone (two such networks with
overlapping addresses on one host could then mix connections).

Registers, metadata and connection marks (network policy builds on these; keep them):

  metadata      the packet's network (VNI), written by CLASSIFY, TUNNEL_IN or GW_CT
  reg0          scratch of the ARP responder (only inside one flow's actions)
  reg6          1: the packet came from a local endpoint's port (CLASSIFY); 0: tunnel or
                gateway port
  reg1-reg5, reg7   free
  ct_zone       one per external network, for both families (16 bits; zone 0 never used)
  ct_mark       bit 0 (CT_MARK_SNAT): committed by EGRESS_CT, an endpoint's connection
                out; bit 1 (CT_MARK_DNAT): committed by GW_CT, a connection in to a published
                port; bit 2 (policy.CT_MARK_POLICY): committed by a policy stage (in the
                policy zone); bit 3 (policy.CT_MARK_BLOCKED): no rule allows the
                connection any more, its replies are dropped; bits 4-31 free
  conj_id       the conjunction a policy check completed (POL_OUT_CT, POL_IN_CT)
  ct_label      free
  IPv6          through ct only in the gateway tables (external networks: the same zones
                and marks as IPv4); policy is IPv4 only (an endpoint a policy isolates
                gets no IPv6 data flows)
  tables        1-4, 6-9, 13-19, 24-29, 33-39, 41-49, 52-254 free

SNAT source ports: 32768-65535, 512 per zone (``model.snat_ports``): conntrack in the
userspace datapath checks that a translated tuple is free only within its own zone, so two
zones must never pick the same port to the same destination. Zones are allocated lowest
first; zone ids more than 64 apart share a range (a collision then needs both networks on
one host to the same destination address and port with the same chosen port). ICMP echo ids
are not translated: two endpoints of different networks on one host pinging the same
outside address with the same id at the same time mix their replies (ordinary ``ping``
picks distinct ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Protocol

from controller.flows import (
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_REL,
    CT_TRK,
    OFPP_IN_PORT,
    Action,
    Ct,
    Flow,
    MatchValue,
    Nat,
    Output,
    RegMove,
    SetField,
    flow,
)
from controller.model import (
    EGRESS_MAC_PREFIX,
    GATEWAY_PORT_MAC_PREFIX,
    Block,
    Endpoint,
    Host,
    Network,
    Publication,
    Snapshot,
    mac_for_ip,
    snat_ports,
)
from controller.pipeline6 import (
    ETH_IPV6,
    base_flows6,
    embed_net,
    gateway_nd,
    local_endpoint6,
    masked6,
    nd_responder,
    route6,
)
from controller.policy import (
    Stage,
    isolation,
    members_of,
    open_flows,
    policy_zone,
    stage_flows,
)
from vxcommon.addr6 import embed

T_CLASSIFY = 0
T_TUNNEL_IN = 5
T_ARP = 10
T_GW_IN = 20
T_GW_CT = 21
T_POL_OUT = 22
T_POL_OUT_CT = 23
T_LOCAL = 30
T_POL_IN_CT = 31
T_DELIVER = 32
T_REMOTE = 40
T_EGRESS = 50
T_EGRESS_CT = 51
TABLES = (
    T_CLASSIFY,
    T_TUNNEL_IN,
    T_ARP,
    T_GW_IN,
    T_GW_CT,
    T_POL_OUT,
    T_POL_OUT_CT,
    T_LOCAL,
    T_POL_IN_CT,
    T_DELIVER,
    T_REMOTE,
    T_EGRESS,
    T_EGRESS_CT,
)

ETH_IP = 0x0800
ETH_ARP = 0x0806
IP_TCP = 6
IP_UDP = 17
CT_MARK_SNAT = 0x1
CT_MARK_DNAT = 0x2
ARP_REQUEST = 1
ARP_REPLY = 2
MAC_PREFIX = "0a:58:00:00:00:00"
META_MASK = 0xFFFFFFFFFFFFFFFF
FROM_LOCAL_REG = "reg6"

PRIO_DEFAULT = 0
PRIO_EGRESS = 1
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
    snapshot: IntentView,
    host_name: str,
    idx: SnapshotIndex | None = None,
    remote: RemoteFlows | None = None,
) -> frozenset[Flow]:
    """All flows br-int of ``host_name`` should hold for this snapshot.

    Costs O(local endpoints + networks + hosts + blocks + exceptions) given ``idx`` (build it
    once with :func:`index` when computing several hosts); flow values are memoized, so a
    flow that did not change is not rebuilt. ``remote`` (a :class:`RemoteFlows` of this
    snapshot) shares the flows towards other hosts between the hosts computed with it.
    """
    return frozenset(desired_list(snapshot, host_name, idx, remote))


class RemoteFlows:
    """The flows a host gets because of each *other* host (its tunnel, its blocks' routes,
    the exceptions living there), by that host and by the computing host's tunnel port:
    built once per tunnel port and shared by every host computed with it. A host's flows
    towards the rest of the cluster are then one list per peer, not one ``str`` of an
    address and one memo lookup per peer and block (at 1,000 hosts those were 2 million
    per full computation). Valid for one state of the snapshot: make a new one after any
    change."""

    def __init__(self, snapshot: IntentView, idx: SnapshotIndex) -> None:
        self._snapshot = snapshot
        self._idx = idx
        self._by_port: dict[int, list[tuple[str, list[Flow]]]] = {}

    def by_peer(self, tunnel_port: int) -> list[tuple[str, list[Flow]]]:
        """(host name, the flows every other host with ``tunnel_port`` gets for it)."""
        found = self._by_port.get(tunnel_port)
        if found is None:
            found = self._by_port[tunnel_port] = list(
                _by_peer(self._snapshot, self._idx, tunnel_port).items()
            )
        return found


def _by_peer(snapshot: IntentView, idx: SnapshotIndex, tunnel_port: int) -> dict[str, list[Flow]]:
    hosts = snapshot.hosts
    underlay = {h.name: str(h.underlay_ip) for h in hosts.values()}
    by: dict[str, list[Flow]] = {
        name: [_tunnel_from(tunnel_port, ip)] for name, ip in underlay.items()
    }
    for block in snapshot.blocks:
        bnet = snapshot.networks.get(block.network)
        if bnet is None or block.host not in by:
            continue
        owner_ip = underlay[block.host]
        there = by[block.host]
        there.append(_route(bnet.vni, block.cidr, PRIO_NORMAL, owner_ip, tunnel_port))
        if bnet.subnet6 is not None:
            there.append(
                route6(
                    T_REMOTE,
                    bnet.vni,
                    embed_net(bnet.subnet6, block.cidr),
                    PRIO_NORMAL,
                    owner_ip,
                    tunnel_port,
                )
            )
    for net, ep in idx.exceptions:
        if ep.host not in by:
            continue
        there_ip = underlay[ep.host]
        there = by[ep.host]
        there.append(_route(net.vni, IPv4Network(ep.ip), PRIO_EXCEPTION, there_ip, tunnel_port))
        if net.subnet6 is not None:
            there.append(
                route6(
                    T_REMOTE,
                    net.vni,
                    embed_net(net.subnet6, IPv4Network(ep.ip)),
                    PRIO_EXCEPTION,
                    there_ip,
                    tunnel_port,
                )
            )
    return by


def desired_list(
    snapshot: IntentView,
    host_name: str,
    idx: SnapshotIndex | None = None,
    remote: RemoteFlows | None = None,
) -> list[Flow]:
    """:func:`desired_flows` as a list, which may hold a flow twice (equal flows have equal
    cookies: the engine keeps one per cookie without hashing every ``Flow``)."""
    host = snapshot.hosts.get(host_name)
    if host is None:
        return []
    if idx is None:
        assert isinstance(snapshot, Snapshot), "only a Snapshot is indexed here"
        idx = index(snapshot)
    if remote is None:
        remote = RemoteFlows(snapshot, idx)
    flows = _own_flows(snapshot, host, idx)
    for peer, theirs in remote.by_peer(host.tunnel_port):
        if peer != host.name:
            flows.extend(theirs)
    return flows


def _own_flows(snapshot: IntentView, host: Host, idx: SnapshotIndex) -> list[Flow]:
    """``host``'s flows but those towards other hosts (:class:`RemoteFlows` gives those)."""
    flows: list[Flow] = list(_base_flows())
    dual = False
    for net in snapshot.networks.values():
        flows.append(_vni_to_metadata(net.vni))
        flows.append(_arp_responder(net.vni, net.subnet))
        if net.subnet6 is not None:
            dual = True
            flows.append(nd_responder(net.vni, net.subnet6, net.subnet, PRIO_NORMAL))
            flows.append(gateway_nd(net.vni, net.subnet6, net.gateway, PRIO_EXCEPTION))
    if dual:
        flows.extend(base_flows6(T_CLASSIFY, PRIO_EXCEPTION))
    guarded: dict[str, tuple[Network, list[Endpoint]]] = {}
    for net, ep in idx.local.get(host.name, ()):
        assert ep.ofport is not None
        if ep.ofport in (host.tunnel_port, host.gateway_port):  # would admit foreign traffic
            continue
        isolated = bool(net.policies) and any(isolation(net, ep))
        if isolated:
            guarded.setdefault(net.name, (net, []))[1].append(ep)
        flows.extend(endpoint_flows(host, net, ep, isolated))
    for net, eps in guarded.values():
        flows.extend(policy_flows(net, eps, members_of(net, idx.local)))
    flows.extend(gateway_flows(host, idx.local.get(host.name, ())))
    return flows


def endpoint_flows(
    host: Host, net: Network, ep: Endpoint, isolated: bool = False
) -> tuple[Flow, ...]:
    """The flows a local endpoint ``ep`` of ``net`` has on its own ``host`` by itself
    (CLASSIFY, ARP, LOCAL and their IPv6 twins; none without a port or on the tunnel's or
    gateway's port); ``isolated`` by a policy: its packets go through the policy stages.
    What else depends on it (policy stages, the gateway's flows, other hosts' /32 routes
    when it lives away from its block) is not here: see ``intent.Deltas``."""
    if ep.ofport is None or ep.ofport in (host.tunnel_port, host.gateway_port):
        return ()
    flows = _local_endpoint(net.vni, str(ep.ip), ep.mac, ep.ofport, isolated)
    if net.subnet6 is None:
        return flows
    return flows + local_endpoint6(
        net.vni,
        embed(net.subnet6, ep.ip),
        ep.mac,
        ep.ofport,
        (T_CLASSIFY, T_LOCAL),
        (PRIO_NORMAL, PRIO_EXCEPTION),
        not isolated,  # policies are IPv4 only: an isolated endpoint's IPv6 is dropped
    )


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


INGRESS = Stage(T_LOCAL, T_POL_IN_CT, T_DELIVER, "ipv4_dst", "ipv4_src")
EGRESS = Stage(T_POL_OUT, T_POL_OUT_CT, T_LOCAL, "ipv4_src", "ipv4_dst")


def policy_flows(net: Network, eps: list[Endpoint], members: list[Endpoint]) -> list[Flow]:
    """The policy stages of ``net`` for its local endpoints ``eps`` isolated in some
    direction (``members``: the network's bound endpoints, the peers selectors name)."""
    zone = policy_zone(net.vni)
    meta: dict[str, MatchValue] = {"metadata": net.vni, "eth_type": ETH_IP}
    out = [flow(T_POL_OUT, PRIO_NORMAL, {**meta, FROM_LOCAL_REG: 1}, [Ct(zone, T_POL_OUT_CT)])]
    ins = [ep for ep in eps if isolation(net, ep)[0]]
    outs = [ep for ep in eps if isolation(net, ep)[1]]
    out += stage_flows(INGRESS, net, ins, members, "ingress")
    out += open_flows(INGRESS, net, [ep for ep in eps if ep not in ins])
    out += stage_flows(EGRESS, net, outs, members, "egress")
    out += open_flows(EGRESS, net, [ep for ep in eps if ep not in outs])
    for ep in eps:
        assert ep.ofport is not None
        out.append(
            flow(
                T_DELIVER,
                PRIO_NORMAL,
                {**meta, "ipv4_dst": str(ep.ip)},
                [SetField("eth_dst", ep.mac), Output(ep.ofport)],
            )
        )
    return out


@lru_cache(maxsize=CACHE)
def _local_endpoint(
    vni: int, ip: str, mac: str, ofport: int, guarded: bool = False
) -> tuple[Flow, ...]:
    """CLASSIFY, ARP and LOCAL flows of a local endpoint; ``guarded`` (isolated by a policy
    in some direction): its packets go through the policy stages (``policy_flows``)."""
    meta = (vni, META_MASK)
    deliver: list[Action] = (
        [Ct(policy_zone(vni), T_POL_IN_CT)]
        if guarded
        else [SetField("eth_dst", mac), Output(ofport)]
    )
    return (
        flow(
            T_CLASSIFY,
            PRIO_NORMAL,
            {"in_port": ofport, "eth_src": mac, "eth_type": ETH_IP, "ipv4_src": ip},
            [SetField(FROM_LOCAL_REG, 1)],
            write_metadata=meta,
            goto=T_POL_OUT if guarded else T_LOCAL,
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
        flow(T_LOCAL, PRIO_NORMAL, {"metadata": vni, "eth_type": ETH_IP, "ipv4_dst": ip}, deliver),
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


# -- the distributed gateway (external networks) ----------------------------------------------


def gateway_flows(host: Host, local: Iterable[tuple[Network, Endpoint]]) -> list[Flow]:
    """The gateway's flows on ``host`` for the external networks with endpoints bound there
    (see the module docstring); none without an egress address and gateway port."""
    if host.egress_ip is None or host.gateway_port is None:
        return []
    local = list(local)
    nets = {net.name: net for net, _ in local if net.external and net.zone}
    if not nets:
        return []
    ordered = sorted(nets.values(), key=lambda n: n.zone or 0)
    egress, port = str(host.egress_ip), host.gateway_port
    out: list[Flow] = [*_gateway_port_flows(egress, port)]
    zones = [n.zone for n in ordered if n.zone]
    out.append(flow(T_GW_IN, PRIO_NORMAL, {"eth_type": ETH_IP}, [Ct(zones[0], T_GW_CT, nat=Nat())]))
    for i, net in enumerate(ordered):
        nxt = zones[i + 1] if i + 1 < len(zones) else None
        out.extend(_zone_flows(net.vni, net.zone or 0, net.subnet, str(net.gateway), nxt))
        out.extend(_egress_flows(net.vni, net.zone or 0, net.subnet, egress, port))
    if host.egress_ip6 is not None:
        out.extend(_gateway6_flows(str(host.egress_ip6), egress, port, ordered))
    published: dict[tuple[str, str], list[Publication]] = {}
    for net in ordered:
        for pub in net.publications:
            published.setdefault((net.name, pub.endpoint), []).append(pub)
    if published:
        egress6 = str(host.egress_ip6) if host.egress_ip6 is not None else None
        for net, ep in local:
            if net.name not in nets:
                continue
            for pub in published.get((net.name, ep.name), ()):
                out.extend(
                    _publication_flows(
                        net.vni,
                        net.zone or 0,
                        str(net.gateway),
                        egress,
                        str(ep.ip),
                        pub.host_port,
                        pub.port,
                        pub.proto,
                    )  # fmt: skip
                )
                if egress6 is not None and net.subnet6 is not None:
                    out.extend(
                        _publication_flows6(
                            net.zone or 0,
                            egress6,
                            str(embed(net.subnet6, ep.ip)),
                            pub.host_port,
                            pub.port,
                            pub.proto,
                        )
                    )
    return out


@lru_cache(maxsize=CACHE)
def _publication_flows(
    vni: int,
    zone: int,
    gateway: str,
    egress: str,
    ip: str,
    host_port: int,
    port: int,
    proto: str,
) -> tuple[Flow, ...]:
    """GW_IN and GW_CT for one published port of a local endpoint: its packets go to its
    network's zone at once; a new connection is committed there, translated to the
    endpoint's address and port, and recirculated (``_zone_flows`` delivers it)."""
    ip_proto, dst = (IP_TCP, "tcp_dst") if proto == "tcp" else (IP_UDP, "udp_dst")
    match: dict[str, MatchValue] = {"eth_type": ETH_IP, "ip_proto": ip_proto, dst: host_port}
    # recirculated: a translation is visible to later lookups only after a recirculation
    dnat = Ct(zone, T_GW_CT, commit=True, nat=Nat("dst", ip, port, port), mark=CT_MARK_DNAT)
    new = (CT_NEW | CT_TRK, CT_NEW | CT_TRK | CT_INV)
    return (
        flow(T_GW_IN, PRIO_EXCEPTION, match, [Ct(zone, T_GW_CT, nat=Nat())]),
        flow(
            T_GW_CT,
            PRIO_EXCEPTION,
            {**match, "ct_zone": zone, "ct_state": new, "ipv4_dst": egress},
            [dnat],
        ),
    )


@lru_cache(maxsize=CACHE)
def _gateway_port_flows(egress: str, port: int) -> tuple[Flow, ...]:
    """ARP for the egress address from the host's stack, and what comes back to it."""
    mac = mac_for_ip(IPv4Address(egress), EGRESS_MAC_PREFIX)
    arp: list[Action] = [
        RegMove("eth_src", "eth_dst", 48),
        SetField("eth_src", mac),
        SetField("arp_op", ARP_REPLY),
        RegMove("arp_sha", "arp_tha", 48),
        RegMove("arp_spa", "arp_tpa", 32),
        SetField("arp_sha", mac),
        SetField("arp_spa", egress),
        Output(OFPP_IN_PORT),
    ]
    return (
        flow(
            T_CLASSIFY,
            PRIO_NORMAL,
            {"in_port": port, "eth_type": ETH_ARP, "arp_op": ARP_REQUEST, "arp_tpa": egress},
            arp,
        ),
        flow(
            T_CLASSIFY,
            PRIO_NORMAL,
            {"in_port": port, "eth_type": ETH_IP, "ipv4_dst": egress},
            goto=T_GW_IN,
        ),
    )


@lru_cache(maxsize=CACHE)
def _zone_flows(
    vni: int, zone: int, subnet: IPv4Network, gateway: str, next_zone: int | None
) -> tuple[Flow, ...]:
    """GW_CT for one zone: deliver its replies, else try the next zone."""
    return _zone_table_flows(ETH_IP, {"ipv4_dst": _masked(subnet)}, vni, zone, gateway, next_zone)


def _zone_table_flows(
    eth_type: int,
    dst: dict[str, MatchValue],
    vni: int,
    zone: int,
    gateway: str,
    next_zone: int | None,
) -> tuple[Flow, ...]:
    """GW_CT for one zone and family (``eth_type``): replies to ``dst`` (the network's
    addresses) in ``zone`` are delivered from the gateway's MAC, and so is a new connection
    to a published port after its translation; anything else in the zone tries
    ``next_zone``. Shared by IPv4 (``_zone_flows``) and IPv6 (``_zone_flows6``)."""
    deliver: list[Action] = [SetField("eth_src", mac_for_ip(IPv4Address(gateway)))]
    meta = (vni, META_MASK)
    base: dict[str, MatchValue] = {"eth_type": eth_type, "ct_zone": zone, **dst}
    out = [
        flow(
            T_GW_CT,
            PRIO_NORMAL - i,
            {**base, "ct_state": (bit | CT_TRK, bit | CT_TRK)},
            deliver,
            write_metadata=meta,
            goto=T_LOCAL,
        )
        for i, bit in enumerate((CT_EST, CT_REL))
    ]
    out.append(  # a new connection to a published port, after its translation
        flow(
            T_GW_CT,
            PRIO_NORMAL - 2,
            {
                **base,
                "ct_state": (CT_NEW | CT_TRK, CT_NEW | CT_TRK | CT_INV),
                "ct_mark": (CT_MARK_DNAT, CT_MARK_DNAT),
            },
            deliver,
            write_metadata=meta,
            goto=T_LOCAL,
        )
    )
    if next_zone is not None:
        out.append(
            flow(
                T_GW_CT,
                PRIO_FALLTHROUGH,
                {"eth_type": eth_type, "ct_zone": zone},
                [Ct(next_zone, T_GW_CT, nat=Nat())],
            )
        )
    return tuple(out)


@lru_cache(maxsize=CACHE)
def _egress_flows(
    vni: int, zone: int, subnet: IPv4Network, egress: str, port: int
) -> tuple[Flow, ...]:
    """REMOTE's fallthrough to EGRESS, and EGRESS/EGRESS_CT for one network."""
    meta: dict[str, MatchValue] = {"metadata": vni, "eth_type": ETH_IP}
    return _egress_table_flows(meta, zone, egress, egress, port, ({"ipv4_dst": _masked(subnet)},))


def _egress_table_flows(
    meta: dict[str, MatchValue],
    zone: int,
    nat_to: str,
    egress: str,
    port: int,
    sealed: tuple[dict[str, MatchValue], ...],
) -> tuple[Flow, ...]:
    """The egress tables for one network and address family (``meta`` matches both):
    destinations in ``sealed`` are dropped, the rest is SNATed to ``nat_to`` in the
    network's zone and source-port range and leaves through the gateway port; the MACs
    come from the host's IPv4 egress address for both families."""
    lo, hi = snat_ports(zone)
    ip = IPv4Address(egress)
    out: list[Action] = [
        SetField("eth_src", mac_for_ip(ip, EGRESS_MAC_PREFIX)),
        SetField("eth_dst", mac_for_ip(ip, GATEWAY_PORT_MAC_PREFIX)),
        Output(port),
    ]
    snat = Ct(zone, commit=True, nat=Nat("src", nat_to, lo, hi), mark=CT_MARK_SNAT)
    return (
        flow(T_REMOTE, PRIO_EGRESS, {**meta, FROM_LOCAL_REG: 1}, goto=T_EGRESS),
        *(flow(T_EGRESS, PRIO_EXCEPTION, {**meta, **dst}) for dst in sealed),
        flow(T_EGRESS, PRIO_NORMAL, meta, [Ct(zone, T_EGRESS_CT, nat=Nat())]),
        flow(
            T_EGRESS_CT,
            PRIO_NORMAL,
            {**meta, "ct_state": (CT_NEW | CT_TRK, CT_NEW | CT_TRK | CT_INV)},
            [snat, *out],
        ),
        flow(
            T_EGRESS_CT,
            PRIO_NORMAL - 1,
            {**meta, "ct_state": (CT_EST | CT_TRK, CT_EST | CT_TRK | CT_INV)},
            out,
        ),
        flow(
            T_EGRESS_CT,
            PRIO_NORMAL - 2,
            {**meta, "ct_state": (CT_REL | CT_TRK, CT_REL | CT_TRK | CT_INV)},
            out,
        ),
    )


# -- the distributed gateway for IPv6 (external dual-stack networks) ---------------------------


def _gateway6_flows(egress6: str, egress: str, port: int, ordered: list[Network]) -> list[Flow]:
    """The IPv6 twins of the gateway's flows for the external dual-stack networks of
    ``ordered`` (by zone): IPv6 leaves translated to ``egress6``, from the same egress MAC
    and out the same gateway port as IPv4; replies try the zones in turn."""
    nets = [n for n in ordered if n.subnet6 is not None and n.zone]
    if not nets:
        return []
    zones = [n.zone or 0 for n in nets]
    out: list[Flow] = [
        flow(
            T_CLASSIFY,
            PRIO_NORMAL,
            {"in_port": port, "eth_type": ETH_IPV6, "ipv6_dst": egress6},
            goto=T_GW_IN,
        ),
        flow(T_GW_IN, PRIO_NORMAL, {"eth_type": ETH_IPV6}, [Ct(zones[0], T_GW_CT, nat=Nat())]),
    ]
    for i, net in enumerate(nets):
        assert net.subnet6 is not None
        nxt = zones[i + 1] if i + 1 < len(zones) else None
        ours = embed_net(net.subnet6, net.subnet)
        out.extend(_zone_flows6(net.vni, zones[i], ours, str(net.gateway), nxt))
        out.extend(_egress_flows6(net.vni, zones[i], net.subnet6, egress6, egress, port))
    return out


@lru_cache(maxsize=CACHE)
def _publication_flows6(
    zone: int, egress6: str, ip6: str, host_port: int, port: int, proto: str
) -> tuple[Flow, ...]:
    """GW_IN and GW_CT for one published port over IPv6 (``_publication_flows``' twins:
    the endpoint's ip6 behind the host's IPv6 egress address; ``_zone_flows6`` delivers)."""
    ip_proto, dst = (IP_TCP, "tcp_dst") if proto == "tcp" else (IP_UDP, "udp_dst")
    match: dict[str, MatchValue] = {"eth_type": ETH_IPV6, "ip_proto": ip_proto, dst: host_port}
    dnat = Ct(zone, T_GW_CT, commit=True, nat=Nat("dst", ip6, port, port), mark=CT_MARK_DNAT)
    new = (CT_NEW | CT_TRK, CT_NEW | CT_TRK | CT_INV)
    return (
        flow(T_GW_IN, PRIO_EXCEPTION, match, [Ct(zone, T_GW_CT, nat=Nat())]),
        flow(
            T_GW_CT,
            PRIO_EXCEPTION,
            {**match, "ct_zone": zone, "ct_state": new, "ipv6_dst": egress6},
            [dnat],
        ),
    )


@lru_cache(maxsize=CACHE)
def _zone_flows6(
    vni: int, zone: int, ours: IPv6Network, gateway: str, next_zone: int | None
) -> tuple[Flow, ...]:
    """GW_CT for one zone's IPv6: deliver its replies (to the endpoints' addresses,
    ``ours``), else try the next zone."""
    return _zone_table_flows(ETH_IPV6, {"ipv6_dst": masked6(ours)}, vni, zone, gateway, next_zone)


@lru_cache(maxsize=CACHE)
def _egress_flows6(
    vni: int, zone: int, subnet6: IPv6Network, egress6: str, egress: str, port: int
) -> tuple[Flow, ...]:
    """REMOTE's IPv6 fallthrough to EGRESS, and EGRESS/EGRESS_CT for one network's IPv6:
    the same zone and source ports as its IPv4 (conntrack keeps the families apart)."""
    meta: dict[str, MatchValue] = {"metadata": vni, "eth_type": ETH_IPV6}
    sealed: tuple[dict[str, MatchValue], ...] = (
        {"ipv6_dst": masked6(subnet6)},
        {"ipv6_dst": masked6(MULTICAST6)},
    )
    return _egress_table_flows(meta, zone, egress6, egress, port, sealed)


MULTICAST6 = IPv6Network("ff00::/8")


def _masked(net: IPv4Network) -> str | tuple[str, str]:
    if net.prefixlen == 32:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))
