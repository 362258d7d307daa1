"""How soon a container's IPv6 address is usable after the agent configured it: with
duplicate address detection off (what the agent does: ``netlink.dual_stack_sysctls``,
``IFA_F_NODAD``) and, for comparison, with the kernel's default DAD.

Run ``.venv/bin/python -m bench.dad6 [--runs N]`` as root. Each run makes a namespace of its
own (``unshare --net``) and a veth into it, times ``LinkOps.configure`` (both families) up to
the first moment a UDP socket inside can bind the IPv6 address (a tentative address refuses:
``EADDRNOTAVAIL``), then removes both. Prints the median, min and max of each way; runs
alternate between the two ways.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import time
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from unittest import mock

from hostagent import netlink
from hostagent.netlink import LinkOps, entered_netns

HOST_IF = "vxbenchdad6"
MAC = "0a:58:0a:01:00:02"
ADDR4, GW4 = IPv4Interface("10.1.0.2/24"), IPv4Address("10.1.0.1")
ADDR6, GW6 = IPv6Interface("fd00:77::a01:2/64"), IPv6Address("fd00:77::a01:1")


def _usable(path: str) -> bool:
    with entered_netns(path), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((str(ADDR6.ip), 0))
        except OSError:
            return False
        return True


def once(dad: bool) -> float:
    """Seconds from ``configure`` to a usable IPv6 address in a fresh namespace."""
    child = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    links = LinkOps()
    try:
        time.sleep(0.2)  # unshare made its namespace
        path = f"/proc/{child.pid}/ns/net"
        links.make_veth_into(HOST_IF, "eth0", path, 1450)
        with ExitStack() as stack:
            if dad:  # the kernel's default: DAD on, the address without IFA_F_NODAD
                stack.enter_context(mock.patch.object(netlink, "IFA_F_NODAD", 0))
                stack.enter_context(
                    mock.patch.object(netlink, "IPV6_SYSCTLS", netlink.IPV6_SYSCTLS[:2])
                )
            t0 = time.monotonic()
            links.configure(path, "eth0", "eth0", MAC, ADDR4, 1450, GW4, ADDR6, GW6)
            while not _usable(path):
                time.sleep(0.002)
            return time.monotonic() - t0
    finally:
        links.delete(HOST_IF)
        child.kill()
        child.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.runs):
        for dad in (False, True):
            times[dad].append(once(dad))
    for dad, xs in times.items():
        ms = [x * 1000 for x in xs]
        print(
            f"DAD {'on (kernel default)' if dad else 'off (the agent)':20} configure to usable "
            f"address: median {statistics.median(ms):7.1f} ms, min {min(ms):7.1f}, "
            f"max {max(ms):7.1f} ({len(ms)} runs)"
        )


if __name__ == "__main__":
    main()
