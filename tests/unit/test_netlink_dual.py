"""hostagent.netlink.LinkOps.configure with an IPv6 address, on this machine's real kernel: a
namespace of its own (a container's, as CNI names it: ``/proc/PID/ns/net``), a real veth.

What the plug sequence relies on (``tests/unit/test_plug_dual.py`` drives it through fakes):
the address with the subnet's prefix length, usable as a source at once (no DAD), the
link-local address the kernel derives from the MAC set here (EUI-64), ``::/0`` via the
gateway, and a second configuration changing nothing."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

import pytest

from hostagent.netlink import LinkOps, entered_netns
from hostagent.plug import device_names
from tests import slots
from tests.conftest import require
from vxcommon.addr6 import link_local

MAC = "0a:58:0a:01:00:02"
LINK_LOCAL = IPv6Interface("fe80::858:aff:fe01:2/64")  # EUI-64 of MAC
assert LINK_LOCAL.ip == IPv6Address(link_local(MAC))  # what the switch lets through
ADDR4, GW4 = IPv4Interface("10.1.0.2/24"), IPv4Address("10.1.0.1")
ADDR6, GW6 = IPv6Interface("fd00:77::a01:2/64"), IPv6Address("fd00:77::a01:1")


@pytest.fixture
def netns() -> Iterator[str]:
    """The path of a network namespace held by a process of its own."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:  # under CI: fail, not skip
        require("making a network namespace needs root and unshare(1)", "the netlink tests")
    own = os.stat("/proc/self/ns/net").st_ino
    child = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{child.pid}/ns/net").st_ino == own:
            assert time.monotonic() < deadline, "unshare did not make a namespace"
            time.sleep(0.01)
        yield f"/proc/{child.pid}/ns/net"
    finally:
        child.kill()
        child.wait(5)


@pytest.fixture
def host_if() -> Iterator[str]:
    name = device_names(f"v6test{slots.slot()}", str(os.getpid()))[0]
    yield name
    LinkOps().delete(name)


def in_netns(path: str, *argv: str) -> str:
    pid = path.split("/")[2]
    done = subprocess.run(["nsenter", "-t", pid, "-n", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bind(path: str, address: str, scope: str = "") -> int:
    """errno of binding a UDP socket to ``address`` (on device ``scope``, for a link-local
    one) inside the namespace (0: it worked)."""
    with entered_netns(path), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0, 0, socket.if_nametoindex(scope) if scope else 0))
        except OSError as exc:
            return exc.errno or -1
        return 0


def test_dual_stack_configuration_on_a_real_namespace(netns: str, host_if: str) -> None:
    links = LinkOps()
    links.make_veth_into(host_if, "eth0", netns, 1450)

    links.configure(netns, "eth0", "eth0", MAC, ADDR4, 1450, GW4, ADDR6, GW6)

    # usable as a source right away: a tentative (DAD) address would refuse the bind
    assert bind(netns, str(ADDR6.ip)) == 0
    deadline = time.monotonic() + 5  # the kernel adds the link-local once the carrier is up
    while LINK_LOCAL not in links.ipv6_addresses("eth0", netns):
        assert time.monotonic() < deadline, links.ipv6_addresses("eth0", netns)
        time.sleep(0.01)
    assert bind(netns, str(LINK_LOCAL.ip), "eth0") == 0
    assert sorted(links.ipv6_addresses("eth0", netns)) == sorted([ADDR6, LINK_LOCAL])
    shown = in_netns(netns, "ip", "-6", "-o", "addr", "show", "dev", "eth0")
    assert "tentative" not in shown and "nodad" in shown
    routes = in_netns(netns, "ip", "-6", "route", "show", "default")
    assert f"default via {GW6} dev eth0" in routes
    assert links.ipv4_addresses("eth0", netns) == [ADDR4]

    links.configure(netns, "eth0", "eth0", MAC, ADDR4, 1450, GW4, ADDR6, GW6)  # again

    assert sorted(links.ipv6_addresses("eth0", netns)) == sorted([ADDR6, LINK_LOCAL])
    assert in_netns(netns, "ip", "-6", "route", "show", "default").count("default") == 1


def test_an_address_that_is_not_there_cannot_be_bound(netns: str) -> None:
    """The check above can fail: a namespace without the address refuses the bind."""
    assert bind(netns, str(ADDR6.ip)) == errno.EADDRNOTAVAIL
