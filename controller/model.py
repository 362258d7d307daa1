"""Intent snapshot: frozen values read from the database, the only input of the flow pipeline.

No ORM objects and no os-ken types here, so the pure core (``ipam``, ``pipeline``,
``reconcile``) can be tested in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network


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
class Network:
    """A virtual network: one VNI, one IPv4 subnet, isolated from every other network."""

    name: str
    vni: int
    subnet: IPv4Network
    gateway: IPv4Address
    block_prefix: int = 26


@dataclass(frozen=True, slots=True)
class Host:
    """A host running OVS with br-int; ``dpid`` is its bridge's datapath id once known."""

    name: str
    underlay_ip: IPv4Address
    dpid: int | None = None
    tunnel_port: int = 1
    last_seen: datetime | None = None


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


def mac_for_ip(ip: IPv4Address) -> str:
    """The MAC derived from an IPv4 address: ``0a:58`` followed by the four address bytes."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)
