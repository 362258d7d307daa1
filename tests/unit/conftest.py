"""The lab the pipeline and reconcile tests share: 3 hosts, 2 networks with the same CIDR.

Networks ``red`` (VNI 100) and ``blue`` (VNI 200) are both 10.0.0.0/24 with /26 blocks:
.0/26 on h1, .64/26 on h2, .128/26 on h3 (and red .192/26 on h3 too). Endpoints (port on
their host):

    red   r1a .2 h1:2   r1b .3 h1:3   r2a .66 h2:2   r3a .130 h3:2
          rmv .10 h2:5  (moved: .10 is in h1's block)   rres .11 (reserved, unbound)
    blue  b1a .2 h1:4   b2a .66 h2:3  b2b .70 h2:6   b3a .130 h3:3
          b2c .3 h2:8   (moved: .3 is in h1's block)

so the same IP lives in both networks, sometimes on the same host.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot, mac_for_ip
from controller.oftable import Fabric, Node, Switch
from controller.pipeline import desired_flows

SUBNET = IPv4Network("10.0.0.0/24")
TUNNEL_PORT = 1

HOSTS = {
    name: Host(name, IPv4Address(f"198.18.0.{i}"), dpid=i, tunnel_port=TUNNEL_PORT)
    for i, name in enumerate(("h1", "h2", "h3"), start=1)
}
NETWORKS = {
    "red": Network("red", 100, SUBNET, IPv4Address("10.0.0.1")),
    "blue": Network("blue", 200, SUBNET, IPv4Address("10.0.0.1")),
}
BLOCKS = (
    Block("red", IPv4Network("10.0.0.0/26"), "h1"),
    Block("red", IPv4Network("10.0.0.64/26"), "h2"),
    Block("red", IPv4Network("10.0.0.128/26"), "h3"),
    Block("red", IPv4Network("10.0.0.192/26"), "h3"),
    Block("blue", IPv4Network("10.0.0.0/26"), "h1"),
    Block("blue", IPv4Network("10.0.0.64/26"), "h2"),
    Block("blue", IPv4Network("10.0.0.128/26"), "h3"),
)


def endpoint(
    network: str, name: str, ip: str, host: str | None = None, ofport: int | None = None
) -> Endpoint:
    """An endpoint with the MAC derived from its IP; bound ones are ready."""
    addr = IPv4Address(ip)
    state = EndpointState.READY if host else EndpointState.RESERVED
    return Endpoint(network, name, addr, mac_for_ip(addr), host, ofport, state)


ENDPOINTS = (
    endpoint("red", "r1a", "10.0.0.2", "h1", 2),
    endpoint("red", "r1b", "10.0.0.3", "h1", 3),
    endpoint("red", "r2a", "10.0.0.66", "h2", 2),
    endpoint("red", "r3a", "10.0.0.130", "h3", 2),
    endpoint("red", "rmv", "10.0.0.10", "h2", 5),
    endpoint("red", "rres", "10.0.0.11"),
    endpoint("blue", "b1a", "10.0.0.2", "h1", 4),
    endpoint("blue", "b2a", "10.0.0.66", "h2", 3),
    endpoint("blue", "b2b", "10.0.0.70", "h2", 6),
    endpoint("blue", "b3a", "10.0.0.130", "h3", 3),
    endpoint("blue", "b2c", "10.0.0.3", "h2", 8),
)


@dataclass(frozen=True)
class Lab:
    """The shared topology and helpers to vary it and to build switches from it."""

    snap: Snapshot

    def ep(self, name: str, snap: Snapshot | None = None) -> Endpoint:
        """The endpoint called ``name`` (in ``snap``, default the lab's snapshot)."""
        (found,) = [e for e in (snap or self.snap).endpoints if e.name == name]
        return found

    def vni(self, ep: Endpoint) -> int:
        """The VNI of the endpoint's network."""
        return self.snap.networks[ep.network].vni

    def underlay(self, host: str) -> str:
        """A host's underlay address as a string."""
        return str(self.snap.hosts[host].underlay_ip)

    def rebind(self, name: str, host: str | None, ofport: int | None) -> Snapshot:
        """The lab's snapshot, one revision later, with ``name`` bound elsewhere."""
        eps = tuple(
            replace(e, host=host, ofport=ofport) if e.name == name else e
            for e in self.snap.endpoints
        )
        return replace(self.snap, revision=self.snap.revision + 1, endpoints=eps)

    def with_endpoints(self, *extra: Endpoint, snap: Snapshot | None = None) -> Snapshot:
        """``snap`` (default the lab's) with more endpoints."""
        base = snap or self.snap
        return replace(base, revision=base.revision + 1, endpoints=base.endpoints + extra)

    def switch(self, host: str, snap: Snapshot | None = None) -> Switch:
        """A switch holding the desired flows of ``host``."""
        return Switch(host).load(desired_flows(snap or self.snap, host))

    def fabric(self, snap: Snapshot | None = None) -> Fabric:
        """Every host's switch loaded with its desired flows, joined by VXLAN."""
        s = snap or self.snap
        return Fabric(
            {
                name: Node(self.switch(name, s), str(h.underlay_ip), h.tunnel_port)
                for name, h in s.hosts.items()
            }
        )


@pytest.fixture
def lab() -> Lab:
    """The shared three-host, two-network lab."""
    snap = Snapshot(
        revision=1,
        networks=dict(NETWORKS),
        hosts=dict(HOSTS),
        blocks=BLOCKS,
        endpoints=ENDPOINTS,
    )
    return Lab(snap)
