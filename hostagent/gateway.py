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
"""

from __future__ import annotations

import logging
import os
from ipaddress import IPv4Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hostagent.edges import OvsEdge
from hostagent.errors import AgentError
from hostagent.netlink import _set_tx_csum

log = logging.getLogger("hostagent")

GATEWAY_PORT = "vxgw0"
GATEWAY_PORT_MAC_PREFIX = "0a:5a"  # as controller.model: the host stack's side
NTF_PROXY = 0x08


def gateway_mac(egress: IPv4Address) -> str:
    """vxgw0's MAC: 0a:5a followed by the egress address's bytes."""
    return GATEWAY_PORT_MAC_PREFIX + ":" + ":".join(f"{b:02x}" for b in egress.packed)


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


def ensure_gateway(ovs: OvsEdge, bridge: str, egress: IPv4Address) -> int:
    """Make (or find) vxgw0 on ``bridge`` and the host stack's side of the gateway; return
    vxgw0's OpenFlow port. Idempotent."""
    with IPRoute() as ipr:
        uplink = uplink_of(ipr, egress)
    ovs.add_internal_port(bridge, GATEWAY_PORT)
    ofport = ovs.wait_ofport(GATEWAY_PORT)
    try:
        _sysctl(f"net/ipv6/conf/{GATEWAY_PORT}/disable_ipv6", "1")
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
    except (OSError, NetlinkError, ValueError) as exc:
        raise AgentError(f"gateway port {GATEWAY_PORT} for egress {egress}: {exc}") from exc
    log.info(
        "gateway: %s at ofport %d, egress %s (proxy ARP on %s)", GATEWAY_PORT, ofport, egress,
        uplink,
    )  # fmt: skip
    return ofport
