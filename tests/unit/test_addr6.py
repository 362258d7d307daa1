"""vxcommon.addr6: the IPv6 addresses of a dual-stack network, derived from the IPv4 ones."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from controller.errors import Conflict, InvalidRequest
from controller.ipam import check_subnet6
from controller.model import Network
from vxcommon.addr6 import derive_ip6, gateway6, link_local, solicited_node


def test_low_32_bits_are_the_ipv4_address() -> None:
    assert derive_ip6("fd00:10::/64", "10.0.0.5") == "fd00:10::a00:5"
    assert derive_ip6("fd00:10::/96", IPv4Address("192.168.1.254")) == "fd00:10::c0a8:1fe"
    assert gateway6("2001:db8:1::/48", "172.16.0.1") == "2001:db8:1::ac10:1"
    ip6 = IPv6Address(derive_ip6("fd00:aa:bb:cc::/64", "10.200.3.4"))
    assert int(ip6) & 0xFFFFFFFF == int(IPv4Address("10.200.3.4"))
    assert ip6 in IPv6Network("fd00:aa:bb:cc::/64")


def test_prefix_longer_than_96_is_refused() -> None:
    with pytest.raises(ValueError, match="/96"):
        derive_ip6("fd00::/97", "10.0.0.1")


def test_link_local_is_what_linux_derives() -> None:
    # modified EUI-64: flip the U/L bit, ff:fe in the middle (RFC 4291 appendix A)
    assert link_local("0a:58:0a:00:00:05") == "fe80::858:aff:fe00:5"
    assert link_local("00:11:22:33:44:55") == "fe80::211:22ff:fe33:4455"
    assert solicited_node("fd00:10::a00:5") == "ff02::1:ff00:5"
    assert solicited_node("fd00::1234:5678") == "ff02::1:ff34:5678"


def test_network_derives_gateway6_and_endpoint_addresses() -> None:
    net = Network(
        "n",
        1,
        IPv4Network("10.0.0.0/24"),
        IPv4Address("10.0.0.1"),
        subnet6=IPv6Network("fd00:1::/64"),
    )
    assert net.subnet == IPv4Network("10.0.0.0/24")
    assert str(net.gateway6) == "fd00:1::a00:1"
    assert str(net.ip6(IPv4Address("10.0.0.9"))) == "fd00:1::a00:9"
    plain = Network("m", 2, net.subnet, net.gateway)
    assert plain.gateway6 is None and plain.ip6(IPv4Address("10.0.0.9")) is None


def test_check_subnet6() -> None:
    check_subnet6(IPv6Network("fd00:1::/96"))
    check_subnet6(IPv6Network("2001:db8::/32"), [("a", IPv6Network("fd00::/64"))])
    for bad in ("fd00::/97", "fe80::/64", "ff00::/64", "::/96", "fec0::/64"):
        with pytest.raises(InvalidRequest):
            check_subnet6(IPv6Network(bad))
    with pytest.raises(Conflict, match="network 'a'"):
        check_subnet6(IPv6Network("fd00::/48"), [("a", IPv6Network("fd00::/64"))])
