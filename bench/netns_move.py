"""Why there is no spare-port pool: moving a veth end into a container's namespace costs more
than making the pair there.

Run as root: ``.venv/bin/python -m bench.netns_move [--runs 40]``. In a namespace of its own
(``vxnm-c``, removed afterwards, also on failure) it times, alternately:

- **create**: what the plug does today, ``LinkOps.make_veth_into`` (one netlink request
  makes the pair with its peer born inside the namespace as ``ethN``) plus TX checksum
  offload off inside the namespace;
- **move**: what a pool of pairs made ahead would do at attach, the peer (made beforehand in
  the agent's namespace, offload already off) moved in and renamed in one request
  (``IFLA_NET_NS_FD`` with ``IFLA_IFNAME``; the kernel moves it, then renames it).

and prints the medians of wall time and of the calling thread's CPU time. The pool would
also take the OVS port addition off the attach (ovs-vswitchd's work), but the move is on the
path of the plug before the container can be configured; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from pyroute2 import IPRoute

from hostagent.netlink import LinkOps, netns_path

NS = "vxnm-c"


def _timed(fn: Callable[..., object], *args: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn(*args)
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def _create(links: LinkOps, host: str, ifname: str) -> None:
    links.make_veth_into(host, ifname, NS, 1450)
    links.disable_tx_offload(ifname, NS)


def _move(peer: str, ifname: str) -> None:
    fd = os.open(netns_path(NS), os.O_RDONLY)
    try:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=peer)[0]
            ipr.link("set", index=index, net_ns_fd=fd, ifname=ifname)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=40)
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (namespaces, veths)")
    links = LinkOps()
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    made: list[str] = []
    results: dict[str, list[tuple[float, float]]] = {"create": [], "move": []}
    try:
        for i in range(args.runs):
            host, spare, peer = f"vxnmc{i}", f"vxnms{i}", f"vxnmp{i}"
            made += [host, spare]
            results["create"].append(_timed(_create, links, host, f"eth{i}"))
            links.make_veth(spare, peer, 1450)  # ahead of time, as a pool would
            links.disable_tx_offload(peer)
            results["move"].append(_timed(_move, peer, f"spare{i}"))
    finally:
        for name in made:
            links.delete(name)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    load = os.getloadavg()[0]
    for kind, values in results.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{kind:>6}: median {wall:.1f} ms wall, {cpu:.2f} ms CPU ({len(values)} runs)")
    print(f"load average {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
