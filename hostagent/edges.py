"""The agent's two edges to the host, as Protocols: Open vSwitch and network devices.

``hostagent.ovs.OvsdbOps`` and ``hostagent.netlink.LinkOps`` are the real ones; the unit
tests drive the plug sequence and reconciliation through in-memory fakes of the same shape
(``tests/unit/agentfakes.py``). Every verb is idempotent, so a retry finds what a crashed
attempt made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BridgeSpec:
    """What br-int must look like."""

    name: str
    datapath_type: str
    controllers: tuple[str, ...]  # OpenFlow targets set when br-int has none of them
    dpid: str | None = None  # 16 hex digits; None: OVS derives it
    ssl: tuple[str, str, str] | None = None  # (key, certificate, CA) for ssl: targets


@dataclass(frozen=True, slots=True)
class PortRecord:
    """A port on a bridge: its OpenFlow number (None while unassigned or when its device is
    gone) and its ``external_ids``."""

    name: str
    ofport: int | None
    external_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the agent needs to know of a device inside a namespace."""

    index: int
    ifname: str
    mac: str
    mtu: int
    kind: str | None


class OvsEdge(Protocol):
    """The agent's verbs on its Open vSwitch."""

    on_port_down: Callable[[str], None] | None  # a port's link went down: check it

    def ensure_bridge(self, spec: BridgeSpec) -> None: ...
    def controllers(self, bridge: str) -> list[str]: ...
    def set_controllers(self, bridge: str, targets: Sequence[str]) -> None: ...
    def bridge_dpid(self, name: str) -> int: ...
    def bridge_ids(self, name: str) -> dict[str, str]: ...
    def set_bridge_ids(self, name: str, external_ids: Mapping[str, str]) -> None: ...
    def add_port(
        self,
        bridge: str,
        name: str,
        external_ids: Mapping[str, str],
        ofport_request: int | None = None,
    ) -> None: ...
    def add_internal_port(self, bridge: str, name: str) -> None: ...
    def wait_ofport(self, name: str, timeout: float | None = None) -> int: ...
    def set_port_ids(self, name: str, external_ids: Mapping[str, str]) -> None: ...
    def delete_port(self, bridge: str, name: str) -> None: ...
    def ports(self, bridge: str) -> list[PortRecord]: ...
    def max_ofport(self, bridge: str) -> int: ...
    def close(self) -> None: ...


class LinkEdge(Protocol):
    """The agent's verbs on network devices, in its own namespace and in containers'."""

    def make_veth_into(self, host_if: str, peer_if: str, netns: str, mtu: int) -> None: ...
    def make_veth(self, host_if: str, peer_if: str, mtu: int) -> None: ...
    def disable_tx_offload(self, ifname: str, netns: str | None = None) -> None: ...
    def configure(
        self,
        netns: str,
        current: str,
        ifname: str,
        mac: str,
        address: IPv4Interface,
        mtu: int,
        gateway: IPv4Address | None,
        address6: IPv6Interface | None = None,
        gateway6: IPv6Address | None = None,
    ) -> None: ...
    def get_link(self, ifname: str, netns: str | None = None) -> LinkInfo | None: ...
    def ipv4_addresses(self, ifname: str, netns: str | None = None) -> list[IPv4Interface]: ...
    def ipv6_addresses(self, ifname: str, netns: str | None = None) -> list[IPv6Interface]: ...
    def remove_address6(self, ifname: str, netns: str | None, address: IPv6Address) -> None: ...
    def delete(self, ifname: str, netns: str | None = None) -> None: ...
    def netns_exists(self, netns: str) -> bool: ...
    def check_netns(self, netns: str) -> None: ...
    def names(self) -> set[str]: ...
