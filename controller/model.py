"""Intent snapshot: frozen values read from the database, the only input of the flow pipeline.

No ORM objects and no os-ken types here, so the pure core (``ipam``, ``pipeline``,
``reconcile``) can be tested in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from vxcommon.addr6 import embed


class EndpointState(StrEnum):
    """Lifecycle of an endpoint.

    reserved: the name holds an address but is bound to no host (new, or unplugged: the
    address is kept so the same name finds it again on any host).
    pending: bound to a host port, flows not yet confirmed on every switch that needs them.
    ready: flows confirmed by a barrier on every connected switch.
    """

    RESERVED = "reserved"
    PENDING = "pending"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class Publication:
    """A host port forwarded to an endpoint's port: wherever the endpoint is bound, its host
    accepts ``proto`` connections to ``host_port`` on its egress address for it."""

    endpoint: str
    host_port: int
    port: int
    proto: str = "tcp"


Pairs = tuple[tuple[str, str], ...]  # sorted (key, value) labels or matchLabels


@dataclass(frozen=True, slots=True)
class PolicyPeer:
    """A rule's peer: the network's endpoints whose labels include every pair of
    ``selector`` (``()`` selects them all), or the addresses in ``cidr``."""

    selector: Pairs | None = None
    cidr: IPv4Network | None = None


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """``protocol`` (tcp or udp) to ``port`` (None: any port of that protocol)."""

    protocol: str = "tcp"
    port: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """Allows traffic from (ingress) or to (egress) any of ``peers`` (empty: any peer) on
    any of ``ports`` (empty: any protocol and port)."""

    peers: tuple[PolicyPeer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """A network policy (Kubernetes NetworkPolicy semantics): the endpoints whose labels
    include ``selector`` accept (``ingress`` not None) or send (``egress`` not None) only
    what some rule of that direction allows. None: the direction is not in its policy types
    (not restricted by this policy); ``()``: nothing allowed."""

    name: str
    selector: Pairs = ()
    ingress: tuple[PolicyRule, ...] | None = ()
    egress: tuple[PolicyRule, ...] | None = None


@dataclass(frozen=True, slots=True)
class Network:
    """A virtual network: one VNI, one IPv4 subnet, isolated from every other network.

    ``external``: its endpoints reach addresses outside the overlay through their own host's
    gateway, translated in conntrack ``zone`` (allocated while external, else None);
    ``publications`` are its endpoints' published ports (used while external); ``policies``
    its network policies, by name. ``subnet6`` (None: IPv4 only) makes it dual stack: a
    prefix of at most /96 whose addresses carry the IPv4 ones in their low 32 bits
    (``vxcommon.addr6``).
    """

    name: str
    vni: int
    subnet: IPv4Network
    gateway: IPv4Address
    block_prefix: int = 26
    external: bool = False
    zone: int | None = None
    publications: tuple[Publication, ...] = ()
    policies: tuple[Policy, ...] = ()
    subnet6: IPv6Network | None = None
    # What the API shows and flows do not depend on: kept for reads served from memory while
    # the database is unavailable; left out of equality (the audit, memoized flows).
    reclaim: bool = field(default=False, compare=False)
    reservation_ttl: int = field(default=0, compare=False)
    created_at: datetime | None = field(default=None, compare=False)

    @property
    def gateway6(self) -> IPv6Address | None:
        """The IPv6 gateway: ``subnet6`` plus the IPv4 gateway as its low 32 bits."""
        return None if self.subnet6 is None else embed(self.subnet6, self.gateway)

    def ip6(self, ip: IPv4Address) -> IPv6Address | None:
        """The IPv6 address of the endpoint holding ``ip`` (None: IPv4 only)."""
        return None if self.subnet6 is None else embed(self.subnet6, ip)


@dataclass(frozen=True, slots=True)
class Host:
    """A host running OVS with br-int; ``dpid`` is its bridge's datapath id once known.

    ``egress_ip`` and ``gateway_port``: the host's egress address (its agent's
    ``--egress-ip``) and the OpenFlow port of its gateway port into its own stack; external
    networks' endpoints leave through them (None: this host gives no external access).
    ``egress_ip6`` (``--egress-ip6``, only with ``egress_ip``): the IPv6 address the
    endpoints of external dual-stack networks leave with (None: no IPv6 way out here).
    """

    name: str
    underlay_ip: IPv4Address
    dpid: int | None = None
    tunnel_port: int = 1
    last_seen: datetime | None = None
    egress_ip: IPv4Address | None = None
    gateway_port: int | None = None
    egress_ip6: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """An address block of a network with affinity to one host (routes as one flow)."""

    network: str
    cidr: IPv4Network
    host: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A named attachment to a network; keeps its IP and MAC wherever it is bound."""

    network: str
    name: str
    ip: IPv4Address
    mac: str
    host: str | None = None
    ofport: int | None = None
    state: EndpointState = EndpointState.RESERVED
    bound_rev: int = 0
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs: policies select by them
    # Shown by the API, not used by flows (see ``Network``): out of equality.
    port_name: str | None = field(default=None, compare=False)
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)
    ready_at: datetime | None = field(default=None, compare=False)

    def label_map(self) -> dict[str, str]:
        """The labels as a dict."""
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the flow pipeline needs, read in one transaction at ``revision``."""

    revision: int
    networks: dict[str, Network] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    def host_by_dpid(self, dpid: int) -> Host | None:
        """The host whose bridge has this datapath id, if any."""
        for host in self.hosts.values():
            if host.dpid == dpid:
                return host
        return None


def mac_for_ip(ip: IPv4Address, prefix: str = "0a:58") -> str:
    """The MAC derived from an IPv4 address: ``0a:58`` (or ``prefix``) followed by the four
    address bytes."""
    return prefix + ":" + ":".join(f"{b:02x}" for b in ip.packed)


EGRESS_MAC_PREFIX = "0a:59"  # the gateway's side of a host's gateway port (OVS answers it)
GATEWAY_PORT_MAC_PREFIX = "0a:5a"  # the host stack's side (the agent sets it on vxgw0)
SNAT_PORT_BASE = 32768  # source ports 32768..65535 are the gateway's, split among zones
SNAT_PORTS_PER_ZONE = 512
SNAT_RANGES = (65536 - SNAT_PORT_BASE) // SNAT_PORTS_PER_ZONE  # 64 disjoint ranges
MAX_ZONE = 0xFFFF  # conntrack zones are 16 bits (VNIs 24: a VNI is no zone id)


def snat_ports(zone: int) -> tuple[int, int]:
    """The source-port range of ``zone``'s translated connections (ranges repeat every
    ``SNAT_RANGES`` zones; zones are allocated lowest first)."""
    lo = SNAT_PORT_BASE + ((zone - 1) % SNAT_RANGES) * SNAT_PORTS_PER_ZONE
    return lo, lo + SNAT_PORTS_PER_ZONE - 1


def label_pairs(labels: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``Endpoint.labels`` from a dict (sorted, hashable)."""
    return tuple(sorted((labels or {}).items()))


def selects(selector: Pairs, labels: Pairs) -> bool:
    """True if ``labels`` include every pair of ``selector`` (``()`` selects everything)."""
    have = dict(labels)
    return all(have.get(key) == value for key, value in selector)


def policy_from_spec(name: str, spec: dict[str, Any]) -> Policy:
    """The ``Policy`` of a stored spec (the API body as JSON: ``selector.matchLabels``,
    ``policy_types``, ``ingress[].from``, ``egress[].to``, ``ports``)."""

    def peer(doc: dict[str, Any]) -> PolicyPeer:
        if doc.get("cidr") is not None:
            return PolicyPeer(cidr=IPv4Network(doc["cidr"]))
        return PolicyPeer(selector=label_pairs((doc.get("selector") or {}).get("matchLabels")))

    def rules(docs: list[dict[str, Any]], side: str) -> tuple[PolicyRule, ...]:
        return tuple(
            PolicyRule(
                peers=tuple(peer(p) for p in doc.get(side) or ()),
                ports=tuple(
                    PolicyPort(p.get("protocol") or "tcp", p.get("port"))
                    for p in doc.get("ports") or ()
                ),
            )
            for doc in docs
        )

    types = spec.get("policy_types") or ["Ingress"]
    return Policy(
        name=name,
        selector=label_pairs((spec.get("selector") or {}).get("matchLabels")),
        ingress=rules(spec.get("ingress") or [], "from") if "Ingress" in types else None,
        egress=rules(spec.get("egress") or [], "to") if "Egress" in types else None,
    )
