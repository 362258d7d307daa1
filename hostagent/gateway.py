"""The host's gateway port (``--egress-ip``): where external networks' traffic enters and
leaves the host's own network stack.

vxgw0 is an OVS internal port on br-int. The controller's flows translate an external
network's connections to the egress address in a conntrack zone of the network's own, then
hand them to vxgw0 (to its MAC, 0a:5a + egress IP); the host's kernel routes them on like
any forwarded packet, so the next hop, the neighbour cache and the uplink are the kernel's
business. Replies to the egress address come back because the kernel

- answers ARP for the egress address on the uplink (a proxy neighbour entry: the kernel does
  not own the address, so no local socket ever collides with a translated port), and
- routes the egress address (/32) into vxgw0, where the flows answer its ARP and undo the
  translation.

The uplink is the interface holding an address whose subnet contains the egress address:
the egress address must be a spare address of one of the host's own subnets.

IPv6 (``--egress-ip6``, beside ``--egress-ip``) takes the same way: IPv6 is turned on for
vxgw0 and forwarding for the host, the kernel answers neighbour solicitations for the IPv6
egress address on its uplink (a proxy neighbour entry, ``proxy_ndp``), routes it (/128)
into vxgw0 and knows it there by a permanent neighbour entry with the egress MAC (the flows
answer no solicitation from the host's side). Turning IPv6 forwarding on makes the kernel
ignore router advertisements on interfaces left at ``accept_ra=1``: a host that configures
its own IPv6 from them needs ``accept_ra=2`` on its uplink.
"""

from __future__ import annotations

import logging
import os
from ipaddress import IPv4Address, IPv6Address, IPv6Interface

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hostagent.edges import OvsEdge
from hostagent.errors import AgentError
from hostagent.netlink import _set_tx_csum

log = logging.getLogger("hostagent")

GATEWAY_PORT = "vxgw0"
GATEWAY_PORT_MAC_PREFIX = "0a:5a"  # as controller.model: the host stack's side
EGRESS_MAC_PREFIX = "0a:59"  # as controller.model: the flows' side of vxgw0
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80
AF_INET6 = 10


def gateway_mac(egress: IPv4Address, prefix: str = GATEWAY_PORT_MAC_PREFIX) -> str:
    """vxgw0's MAC: 0a:5a followed by the egress address's bytes (``prefix`` 0a:59: the
    MAC the flows answer for the egress address)."""
    return prefix + ":" + ":".join(f"{b:02x}" for b in egress.packed)


def _sysctl(path: str, value: str) -> None:
    with open(os.path.join("/proc/sys", path), "w") as file:
        file.write(value)


def uplink_of(ipr: IPRoute, egress: IPv4Address) -> str:
    """The interface with an address whose subnet holds ``egress`` (AgentError if none, or
    if the host itself owns the address)."""
    for addr in ipr.get_addr(family=2):
        local = IPv4Address(addr.get_attr("IFA_ADDRESS"))
        if local == egress:
            raise AgentError(f"--egress-ip {egress} is the host's own address: use a spare one")
        prefix = addr["prefixlen"]
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0
        if prefix < 32 and int(local) & mask == int(egress) & mask:
            (link,) = ipr.get_links(addr["index"])
            return str(link.get_attr("IFLA_IFNAME"))
    raise AgentError(
        f"--egress-ip {egress}: no interface of this host has an address in its subnet"
    )


def uplink6_of(ipr: IPRoute, egress6: IPv6Address) -> str:
    """The interface with a global IPv6 address whose prefix holds ``egress6`` (AgentError
    if none, or if the host itself owns the address)."""
    for addr in ipr.get_addr(family=AF_INET6):
        local = IPv6Interface(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        if local.ip == egress6:
            raise AgentError(f"--egress-ip6 {egress6} is the host's own address: use a spare one")
        if local.ip.is_link_local or local.network.prefixlen == 128:
            continue
        if egress6 in local.network:
            (link,) = ipr.get_links(addr["index"])
            return str(link.get_attr("IFLA_IFNAME"))
    raise AgentError(
        f"--egress-ip6 {egress6}: no interface of this host has an IPv6 address in its prefix"
    )


def ensure_gateway(
    ovs: OvsEdge, bridge: str, egress: IPv4Address, egress6: IPv6Address | None = None
) -> int:
    """Make (or find) vxgw0 on ``bridge`` and the host stack's side of the gateway (with
    ``egress6``: for IPv6 too); return vxgw0's OpenFlow port. Idempotent."""
    with IPRoute() as ipr:
        uplink = uplink_of(ipr, egress)
        uplink6 = uplink6_of(ipr, egress6) if egress6 is not None else None
    ovs.add_internal_port(bridge, GATEWAY_PORT)
    ofport = ovs.wait_ofport(GATEWAY_PORT)
    try:
        _sysctl(f"net/ipv6/conf/{GATEWAY_PORT}/disable_ipv6", "0" if egress6 else "1")
        _sysctl("net/ipv4/ip_forward", "1")
        _sysctl(f"net/ipv4/neigh/{uplink}/proxy_delay", "0")
        with IPRoute() as ipr:
            (index,) = ipr.link_lookup(ifname=GATEWAY_PORT)
            ipr.link("set", index=index, address=gateway_mac(egress))
            _set_tx_csum(GATEWAY_PORT)
            ipr.link("set", index=index, state="up")
            ipr.route("replace", dst=f"{egress}/32", oif=index)
            (up_index,) = ipr.link_lookup(ifname=uplink)
            ipr.neigh("replace", dst=str(egress), ifindex=up_index, flags=NTF_PROXY)
            if egress6 is not None and uplink6 is not None:
                _gateway6(ipr, index, uplink6, egress, egress6)
    except (OSError, NetlinkError, ValueError) as exc:
        raise AgentError(f"gateway port {GATEWAY_PORT} for egress {egress}: {exc}") from exc
    log.info(
        "gateway: %s at ofport %d, egress %s (proxy ARP on %s)", GATEWAY_PORT, ofport, egress,
        uplink,
    )  # fmt: skip
    return ofport


def _gateway6(
    ipr: IPRoute, index: int, uplink: str, egress: IPv4Address, egress6: IPv6Address
) -> None:
    """The IPv6 side (module docstring): forwarding, proxy NDP for ``egress6`` on ``uplink``,
    its /128 route into vxgw0 (``index``) and its permanent neighbour entry there."""
    _sysctl(f"net/ipv6/conf/{GATEWAY_PORT}/accept_dad", "0")
    _sysctl("net/ipv6/conf/all/forwarding", "1")
    _sysctl(f"net/ipv6/conf/{uplink}/proxy_ndp", "1")
    _sysctl(f"net/ipv6/neigh/{uplink}/proxy_delay", "0")
    (up_index,) = ipr.link_lookup(ifname=uplink)
    ipr.route("replace", dst=f"{egress6}/128", oif=index, family=AF_INET6)
    mac = gateway_mac(egress, EGRESS_MAC_PREFIX)
    ipr.neigh("replace", dst=str(egress6), lladdr=mac, ifindex=index, state=NUD_PERMANENT,
              family=AF_INET6)  # fmt: skip
    ipr.neigh("replace", dst=str(egress6), ifindex=up_index, flags=NTF_PROXY, family=AF_INET6)
    log.info("gateway: IPv6 egress %s (proxy NDP on %s)", egress6, uplink)
