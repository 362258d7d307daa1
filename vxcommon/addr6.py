"""PURE: a dual-stack network's IPv6 addresses, derived from its IPv4 ones.

A network's IPv6 subnet (``subnet6``) is a prefix of at most /96; every address of the
network is the prefix with its IPv4 address as the low 32 bits, so the same endpoint name
keeps the same IPv6 address on any host (its IPv4 address does), and the switch answers a
neighbour solicitation with the MAC derived from the target's low 32 bits (``0a:58`` + the
IPv4 address, as for ARP) by register moves, one flow per network. Shared by the controller
and the agent (no dependencies).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

MAX_PREFIX6 = 96  # the low 32 bits carry the IPv4 address


def _prefix(subnet6: str | IPv6Network) -> IPv6Network:
    net = subnet6 if isinstance(subnet6, IPv6Network) else IPv6Network(subnet6)
    if net.prefixlen > MAX_PREFIX6:
        raise ValueError(
            f"{net} is longer than /{MAX_PREFIX6}: the low 32 bits must be free for the IPv4 "
            "address"
        )
    return net


def embed(subnet6: str | IPv6Network, ipv4: str | IPv4Address) -> IPv6Address:
    """The address of ``subnet6`` whose low 32 bits are ``ipv4``."""
    net = _prefix(subnet6)
    return IPv6Address(int(net.network_address) | int(IPv4Address(ipv4)))


def derive_ip6(subnet6: str | IPv6Network, ipv4: str | IPv4Address) -> str:
    """An endpoint's IPv6 address: ``subnet6``'s network address plus its IPv4 address as
    the low 32 bits (``derive_ip6("fd00:10::/64", "10.0.0.5") == "fd00:10::a00:5"``)."""
    return str(embed(subnet6, ipv4))


def gateway6(subnet6: str | IPv6Network, gw4: str | IPv4Address) -> str:
    """A network's IPv6 gateway: ``subnet6``'s network address plus the IPv4 gateway's low
    32 bits."""
    return str(embed(subnet6, gw4))


def link_local(mac: str) -> str:
    """The modified EUI-64 link-local address (RFC 4291) of ``mac``: what Linux gives an
    interface with that MAC (``addr_gen_mode`` eui64, the default)."""
    b = bytes(int(x, 16) for x in mac.split(":"))
    if len(b) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    eui = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    return str(IPv6Address(b"\xfe\x80" + bytes(6) + eui))


def solicited_node(ip6: str | IPv6Address) -> str:
    """The solicited-node multicast address (ff02::1:ffXX:XXXX) of ``ip6``."""
    low = int(IPv6Address(ip6)) & 0xFFFFFF
    return str(IPv6Address(int(IPv6Address("ff02::1:ff00:0")) | low))
