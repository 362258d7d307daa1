"""PURE: what an (re)starting agent must do so the controller and the local ports agree.

Inputs are the local ports found on br-int (each tagged with the endpoint it serves) and the
controller's view of the endpoints bound to this host plus those the local ports name. The
local dataplane wins where it is alive (the container is plugged, keep it working): endpoints
the controller lost or unbound are re-created with their address and bound again. The
controller wins on placement: an endpoint it knows bound to another host has moved, so the
local leftover port is removed. Endpoints the controller thinks are here but have no port are
unbound.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

Key = tuple[str, str]  # (network, endpoint name)


@dataclass(frozen=True, slots=True)
class LocalPort:
    """An OVS port on br-int that carries the vxplane external_ids."""

    network: str
    name: str
    port_name: str
    ofport: int | None
    ip: IPv4Address | None
    ip6: IPv6Address | None = None  # the IPv6 address the container was given (dual stack)

    @property
    def key(self) -> Key:
        return (self.network, self.name)


@dataclass(frozen=True, slots=True)
class RemoteEndpoint:
    """The controller's record of an endpoint (``host`` None when unbound)."""

    network: str
    name: str
    ip: IPv4Address
    host: str | None
    ofport: int | None
    ip6: IPv6Address | None = None

    @property
    def key(self) -> Key:
        return (self.network, self.name)


@dataclass(frozen=True, slots=True)
class Recreate:
    """The controller lost the endpoint: create it again with its address, then bind."""

    port: LocalPort


@dataclass(frozen=True, slots=True)
class Bind:
    """The controller has the endpoint but not bound here (or at another ofport): bind it."""

    port: LocalPort


@dataclass(frozen=True, slots=True)
class Unbind:
    """The controller thinks the endpoint is here, but there is no port: unbind it."""

    network: str
    name: str


@dataclass(frozen=True, slots=True)
class RemoveLocal:
    """The endpoint lives on another host now: remove the local port and veth."""

    port: LocalPort
    now_on: str


@dataclass(frozen=True, slots=True)
class DropStale:
    """The port's device is gone (no ofport, e.g. its container died): remove the port."""

    port: LocalPort


@dataclass(frozen=True, slots=True)
class Conflict:
    """The local port and the controller disagree on the address (IPv4, or the IPv6 address
    the container was given): leave it, report it."""

    port: LocalPort
    controller_ip: IPv4Address
    controller_ip6: IPv6Address | None = None


Action = Recreate | Bind | Unbind | RemoveLocal | DropStale | Conflict


def plan(
    host: str, wanted: Iterable[RemoteEndpoint], observed: Iterable[LocalPort]
) -> list[Action]:
    """Actions that reconcile this ``host``'s ports (``observed``) with the controller.

    ``wanted`` holds the controller's endpoints bound to ``host`` and any other controller
    endpoint named by a local port; a local port whose key is absent from ``wanted`` is an
    endpoint the controller does not know (a local port without ``ip`` cannot be re-created
    and is left alone). Actions come sorted by key, local removals first.
    """
    remote = {ep.key: ep for ep in wanted}
    local = {port.key: port for port in observed}
    actions: list[Action] = []
    for key in sorted(local):
        port = local[key]
        ep = remote.get(key)
        if port.ofport is None:
            actions.append(DropStale(port))
        elif ep is None:
            if port.ip is not None:
                actions.append(Recreate(port))
        elif ep.host is not None and ep.host != host:
            actions.append(RemoveLocal(port, now_on=ep.host))
        elif (port.ip is not None and port.ip != ep.ip) or (
            port.ip6 is not None and port.ip6 != ep.ip6
        ):
            actions.append(Conflict(port, controller_ip=ep.ip, controller_ip6=ep.ip6))
        elif ep.host != host or ep.ofport != port.ofport:
            actions.append(Bind(port))
    for key in sorted(remote):
        ep = remote[key]
        if ep.host == host and (key not in local or local[key].ofport is None):
            actions.append(Unbind(ep.network, ep.name))
    order = {RemoveLocal: 0, DropStale: 0, Unbind: 1, Conflict: 2, Recreate: 3, Bind: 4}
    return sorted(actions, key=lambda a: order[type(a)])


def controller_targets(members: Iterable[Mapping[str, Any]]) -> list[str]:
    """br-int's OpenFlow targets for the cluster's ``members`` (``GET /api/v1/controllers``):
    every live member's advertised target, sorted. Empty when none is live (a database
    outage makes every lease look lapsed): the caller then keeps what br-int has."""
    return sorted({str(m["openflow"]) for m in members if m.get("alive") and m.get("openflow")})
