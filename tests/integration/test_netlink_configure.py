"""hostagent.netlink.LinkOps.configure on real namespaces: what a container's interface holds
afterwards (read back with ``ip``), a rename on the way, and what it refuses."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from hostagent.errors import InvalidRequest, LinkError, NotFound
from hostagent.netlink import LinkOps
from tests.slots import prefix

NS = f"{prefix('vxnl-')}c1"
HOST_IF = f"{prefix('vxnl-')}h"[:15]
MAC = "0a:58:0a:01:00:07"


def ip_json(*args: str) -> Any:
    done = subprocess.run(["ip", "-j", "-n", NS, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def links(lab_prerequisites: None) -> Iterator[LinkOps]:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        yield LinkOps()
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def _link(name: str) -> dict[str, Any]:
    [link] = ip_json("link", "show", "dev", name)
    return dict(link)


def test_configure_sets_mac_address_mtu_up_lo_and_default_route(links: LinkOps) -> None:
    links.make_veth_into(HOST_IF, "eth0", NS, 1450)
    links.configure(NS, "eth0", "eth0", MAC, IPv4Interface("10.1.0.7/24"), 1400,
                    IPv4Address("10.1.0.1"))  # fmt: skip

    eth0 = _link("eth0")
    assert (eth0["address"], eth0["mtu"], "UP" in eth0["flags"]) == (MAC, 1400, True)
    assert "UP" in _link("lo")["flags"]
    [addrs] = ip_json("-4", "addr", "show", "dev", "eth0")
    assert [(a["local"], a["prefixlen"]) for a in addrs["addr_info"]] == [("10.1.0.7", 24)]
    [default] = ip_json("route", "show", "default")
    assert (default["gateway"], default["dev"]) == ("10.1.0.1", "eth0")

    # again (a retry): the same state, no second address
    links.configure(NS, "eth0", "eth0", MAC, IPv4Interface("10.1.0.7/24"), 1400,
                    IPv4Address("10.1.0.1"))  # fmt: skip
    [addrs] = ip_json("-4", "addr", "show", "dev", "eth0")
    assert len(addrs["addr_info"]) == 1


def test_configure_renames_on_the_way(links: LinkOps) -> None:
    links.make_veth_into(HOST_IF, "tmp0", NS, 1450)
    links.configure(NS, "tmp0", "eth1", MAC, IPv4Interface("10.1.0.8/24"), 1450, None)
    assert _link("eth1")["address"] == MAC
    assert ip_json("route", "show", "default") == []  # no gateway given: no route


def test_configure_refuses_what_it_cannot_do(links: LinkOps) -> None:
    addr = IPv4Interface("10.1.0.9/24")
    with pytest.raises(LinkError, match="not found"):
        links.configure(NS, "eth0", "eth0", MAC, addr, 1450, None)
    links.make_veth_into(HOST_IF, "tmp0", NS, 1450)
    with pytest.raises(InvalidRequest, match="already has an interface lo"):
        links.configure(NS, "tmp0", "lo", MAC, addr, 1450, None)
    with pytest.raises(NotFound):
        links.configure(f"{NS}-none", "tmp0", "eth0", MAC, addr, 1450, None)
