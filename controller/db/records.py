"""Plain, frozen read results of the repository (what the API turns into its schemas)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from controller.model import EndpointState


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    """A network with its endpoint count."""

    name: str
    vni: int
    subnet: IPv4Network
    gateway: IPv4Address
    block_prefix: int
    endpoints: int
    created_at: datetime
    reclaim: bool = False
    reservation_ttl: int = 86400
    external: bool = False
    zone: int | None = None
    subnet6: IPv6Network | None = None
    gateway6: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class HostRecord:
    """A registered host; ``dpid`` is an int once the bridge is known."""

    name: str
    underlay_ip: IPv4Address
    dpid: int | None
    tunnel_port: int
    last_seen: datetime | None
    created_at: datetime
    egress_ip: IPv4Address | None = None
    gateway_port: int | None = None
    egress_ip6: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """An endpoint with what a host needs to configure it; ``revision`` is its bound revision.

    ``labels`` is the endpoint's own copy: treat it as read-only."""

    network: str
    name: str
    ip: IPv4Address
    prefixlen: int
    gateway: IPv4Address
    mac: str
    vni: int
    host: str | None
    ofport: int | None
    port_name: str | None
    state: EndpointState
    revision: int
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    released_at: datetime | None
    labels: dict[str, str]
    ip6: IPv6Address | None = None
    prefixlen6: int | None = None
    gateway6: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class MoveRecord:
    """One step of an endpoint's history (``kind``: bound, moved, unbound)."""

    id: int
    kind: str
    host: str | None
    from_host: str | None
    ofport: int | None
    revision: int
    at: datetime


@dataclass(frozen=True, slots=True)
class PublicationRecord:
    """A publication and where it is reachable now (``host``, its egress ``address``)."""

    network: str
    endpoint: str
    host_port: int
    port: int
    proto: str
    host: str | None
    address: IPv4Address | None
    created_at: datetime
    address6: IPv6Address | None = None  # the host's IPv6 egress address (dual stack)
