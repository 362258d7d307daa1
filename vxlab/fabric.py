"""The underlay: a fabric namespace with a Linux bridge, a veth into it per host and one from the
root namespace, and the warm-up that teaches each host's OVS its neighbours.

::

    root ns: <prefix>root 198.18.0.254/24 (the controller listens on 0.0.0.0 here)
        |  veth
    <prefix>fabric ns: Linux bridge br0
        |  veth <prefix>h1u <-> <prefix>h1f  ...  one per host; in the host it is "underlay"
    <prefix>h1 ns: the host (its OVS puts "underlay" on br-phy: see ``vxlab.ovsd``)
    <prefix>outside ns: "the outside world", eth0 on the fabric bridge (veth <prefix>o <->
        <prefix>of): an address of the underlay (and its IPv6 twin) and nothing else, so it
        routes to the hosts but knows no overlay subnet (``ensure_outside``)

``arp_ignore=1`` in each host namespace (and on the root veth) stops the kernel answering
underlay ARP on the veth with the veth's MAC, which OVS's userspace tunnel would learn as the
neighbour, killing tunnels intermittently. TX checksum offload is off on every veth made here:
ovs-vswitchd reads veths through packet sockets and never completes checksums.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface

from vxlab.errors import LabError
from vxlab.proc import run

NETNS_DIR = "/run/netns"
UNDERLAY_DEV = "underlay"
FABRIC_BRIDGE = "br0"


def netns_path(name: str) -> str:
    """The bind mount of network namespace ``name`` (for ``nsenter --net=``)."""
    return os.path.join(NETNS_DIR, name)


def netns_exists(name: str) -> bool:
    """True if network namespace ``name`` exists."""
    return os.path.exists(netns_path(name))


def link_exists(name: str, netns: str | None = None) -> bool:
    """True if device ``name`` exists in ``netns`` (None: the root namespace)."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def ensure_fabric(ns: str, root_veth: str, root_ip: IPv4Interface, underlay: IPv4Network) -> None:
    """The fabric namespace ``ns`` with its bridge, and ``root_veth`` (``root_ip``) into it.

    Refuses (LabError) if another root-namespace device already has an address in
    ``underlay``."""
    if not netns_exists(ns):
        run(["ip", "netns", "add", ns])
    if not link_exists(FABRIC_BRIDGE, ns):
        run(["ip", "-n", ns, "link", "add", FABRIC_BRIDGE, "type", "bridge"])
    run(["ip", "-n", ns, "link", "set", FABRIC_BRIDGE, "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    if link_exists(root_veth):
        return
    for other in run(["ip", "-o", "-4", "addr", "show"]).splitlines():
        fields = other.split()
        if IPv4Interface(fields[3]).network.overlaps(underlay):
            raise LabError(f"{fields[1]} already has {fields[3]}: underlay in use")
    make_veth(root_veth, None, ns, f"{root_veth}f")
    run(["ip", "addr", "add", str(root_ip), "dev", root_veth])
    for family, knob, value in (("ipv4", "arp_ignore", "1"), ("ipv6", "disable_ipv6", "1")):
        with open(f"/proc/sys/net/{family}/conf/{root_veth}/{knob}", "w") as f:
            f.write(value)
    run(["ip", "link", "set", root_veth, "up"])


def ensure_outside(
    ns: str, fabric_ns: str, veth: str, address: IPv4Interface, address6: IPv6Interface
) -> None:
    """The outside namespace ``ns``: ``eth0`` (``address`` and ``address6``) on the fabric
    bridge, TX checksum offload off, a loopback, and no route but its own subnets'
    (idempotent)."""
    if not netns_exists(ns):
        run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    if link_exists("eth0", ns):
        run(["ip", "-n", ns, "-6", "addr", "replace", str(address6), "dev", "eth0", "nodad"])
        return
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}f"])
    run(["ip", "link", "set", f"{veth}f", "netns", fabric_ns])
    run(["ip", "-n", fabric_ns, "link", "set", f"{veth}f", "master", FABRIC_BRIDGE, "up"])
    run(["ip", "netns", "exec", fabric_ns, "ethtool", "-K", f"{veth}f", "tx", "off"])
    run(["ip", "link", "set", veth, "netns", ns, "name", "eth0"])
    run(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"])
    run(["ip", "-n", ns, "addr", "add", str(address), "dev", "eth0"])
    run(["ip", "-n", ns, "-6", "addr", "add", str(address6), "dev", "eth0", "nodad"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])


def make_veth(name: str, netns: str | None, fabric_ns: str, peer: str) -> None:
    """A veth ``name`` (moved to ``netns`` as ``underlay``, unless None) whose ``peer`` joins
    the fabric bridge."""
    run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])
    run(["ip", "link", "set", peer, "netns", fabric_ns])
    run(["ip", "-n", fabric_ns, "link", "set", peer, "master", FABRIC_BRIDGE, "up"])
    run(["ip", "netns", "exec", fabric_ns, "ethtool", "-K", peer, "tx", "off"])
    if netns:
        run(["ip", "link", "set", name, "netns", netns, "name", UNDERLAY_DEV])
        run(["ip", "netns", "exec", netns, "ethtool", "-K", UNDERLAY_DEV, "tx", "off"])
        run(["ip", "-n", netns, "link", "set", UNDERLAY_DEV, "up"])
    else:
        run(["ethtool", "-K", name, "tx", "off"])


def ensure_host_netns(name: str, fabric_ns: str) -> None:
    """Host namespace ``name`` with its sysctls and its ``underlay`` veth into the fabric
    (made as ``<name>u``, peer ``<name>f``)."""
    if not netns_exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    run(
        ["ip", "netns", "exec", name, "sysctl", "-q", "-w",
         "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.default.arp_ignore=1",
         "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.default.arp_announce=2"]
    )  # fmt: skip
    if not link_exists(UNDERLAY_DEV, name):
        make_veth(f"{name}u", name, fabric_ns, f"{name}f")


def warm_neighbours(hosts: Sequence[tuple[str, str]], gateway: str) -> int:
    """Underlay pings in both directions between all ``(netns, underlay ip)`` hosts and from
    each to ``gateway``, so each OVS learns its peers' MACs; returns the failed pings.

    The userspace tunnel resolves the underlay next hop from its own neighbour cache, fed by
    snooping ARP replies on br-phy; a miss sends an ARP and drops the packet, so without this
    the first overlay packet to every host is lost. A kernel that received a peer's ARP
    request already knows that peer and sends no request of its own, so its OVS never sees a
    reply: the second direction runs after a neighbour flush (seen: h2 lost its first packet
    to h1).
    """
    pairs = [(a, b) for i, a in enumerate(hosts) for b in hosts[i + 1 :]]
    forward = [(a[0], b[1]) for a, b in pairs] + [(ns, gateway) for ns, _ in hosts]
    backward = [(b[0], a[1]) for a, b in pairs]
    failed = ping_pairs(forward)
    for ns, _ in hosts:
        run(["ip", "-n", ns, "neigh", "flush", "dev", "br-phy"], check=False)
    return failed + ping_pairs(backward)


def ping_pairs(pairs: Sequence[tuple[str, str]]) -> int:
    """One ping from namespace to address per pair, up to 32 at a time; returns the failures."""
    running: list[subprocess.Popen[bytes]] = []
    failed = 0
    for ns, target in pairs:
        argv = ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", target]
        running.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if len(running) >= 32:
            failed += running.pop(0).wait(timeout=10) != 0
    return failed + sum(1 for p in running if p.wait(timeout=10) != 0)
