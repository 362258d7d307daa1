"""Benchmarks on a real lab: attach-to-ready latency and overlay vs underlay TCP throughput.

Run as root: ``make bench`` or ``.venv/bin/python -m bench.run [--endpoints 200]``.
Starts its own controller (SQLite in a temp dir) and its own lab (prefix ``bn-``, underlay
198.18.4.0/24), measures, prints a table and writes JSON to ``bench/results/``, then
removes everything it made, also on failure.

attach-to-ready: the agent's attach call (controller allocates, agent plugs the veth and the
OVS port, controller pushes flows and confirms them by barrier on every switch), timed from
the request to the agent's answer; the namespace is made before the clock starts. Then
"first ping": from the same request until a peer on another host gets its first echo reply
(the figure DESIGN.md quotes for OVN), polled with one-packet pings.

throughput: iperf3 TCP between two endpoints on two hosts (overlay, VXLAN through both
hosts' userspace OVS) and between the same two hosts' underlay addresses, alternated in one
run, median of the repeats, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hostagent.agent_client import AgentClient
from vxcommon.tpoints import mark
from vxlab.lab import Lab
from vxlab.launch import controller_and_lab

PREFIX = "bn-"
UNDERLAY = "198.18.4.0/24"
API_PORT = 18480
OF_PORT = 16680
RESULTS = Path(__file__).parent / "results"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ns_exec(ns: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
    )


def first_ping(
    peer_ns: str,
    ip: str,
    t0: float,
    timeout: float = 10,
    on_unanswered: Callable[[], object] | None = None,
) -> tuple[float, int]:
    """Ping ``ip`` from ``peer_ns`` with one-packet pings (``ping -c1 -W1``, one after the other)
    until one is answered; return the ms from ``t0`` (a ``perf_counter``) to that answer and how
    many pings went unanswered before it (each costs about 1 s). bench.ovn uses it too, so both
    sides are measured the same way. ``on_unanswered`` runs after each unanswered ping (to look
    at the state right then)."""
    unanswered = 0
    while ns_exec(peer_ns, ["ping", "-c1", "-W1", "-q", ip]).returncode != 0:
        unanswered += 1
        if on_unanswered is not None:
            on_unanswered()
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"{ip} never answered a ping from {peer_ns}")
    return (time.perf_counter() - t0) * 1000, unanswered


def no_ipv6(ns: str) -> None:
    """Turn IPv6 off in netns ``ns`` (as Docker does on IPv4-only networks): no link-local
    multicast (DAD, MLD, router solicitations) from its interfaces."""
    off = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *off], check=True)


def attach_latency(
    lab: Lab, n: int, hosts: list[str], made: list[str], ipv6: bool = True
) -> dict[str, Any]:
    """Attach n endpoints one at a time, round-robin over hosts; time each to ready.
    ``ipv6=False`` turns IPv6 off in each endpoint's netns before the clock starts."""
    lab.run(hosts[-1], "bn-peer", "bench")
    if not ipv6:
        no_ipv6("bn-peer")
    ready_ms: list[float] = []
    ping_ms: list[float] = []
    slow: list[dict[str, Any]] = []
    for i in range(n):
        host = hosts[i % (len(hosts) - 1)]
        name = f"bn-e{i}"
        made.append(name)
        subprocess.run(["ip", "netns", "add", name], check=True)
        if not ipv6:
            no_ipv6(name)
        t0 = time.perf_counter()
        mark("b_request", name)
        with AgentClient(lab.host_paths(host).agent_sock) as agent:
            ep = agent.attach(name, name, "bench")
        t_ready = time.perf_counter()
        mark("b_ready", name)
        ready_ms.append((t_ready - t0) * 1000)
        ms, unanswered = first_ping("bn-peer", ep["ip"], t0)
        mark("b_ping", name)
        ping_ms.append(ms)
        if unanswered:  # a first ping went unanswered: keep what we know of it
            slow.append({"endpoint": name, "host": host, "ip": ep["ip"], "ms": ms})
    return {
        "endpoints": n,
        "ipv6_in_endpoints": ipv6,
        "attach_to_ready_ms": {
            "median": statistics.median(ready_ms),
            "p90": pct(ready_ms, 0.90),
            "p99": pct(ready_ms, 0.99),
            "max": max(ready_ms),
        },
        "request_to_first_ping_ms": {
            "median": statistics.median(ping_ms),
            "p90": pct(ping_ms, 0.90),
            "p99": pct(ping_ms, 0.99),
            "max": max(ping_ms),
        },
        "first_ping_unanswered": slow,
    }


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int) -> float:
    """TCP throughput in Mbit/s from client_ns to server_ns (iperf3, one stream)."""
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip, "-p", "5211"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        out = ns_exec(
            client_ns,
            ["iperf3", "-c", server_ip, "-p", "5211", "-t", str(seconds), "-J"],
            timeout=seconds + 30,
        )
        if out.returncode != 0:
            raise RuntimeError(f"iperf3 {client_ns}->{server_ip}: {out.stderr or out.stdout}")
        return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        srv.wait(timeout=seconds + 30) if srv.poll() is None else None


def throughput(lab: Lab, hosts: list[str], seconds: int, repeats: int) -> dict[str, Any]:
    lab.run(hosts[0], "bn-tpa", "bench")
    b = lab.run(hosts[1], "bn-tpb", "bench")
    st = {h["name"]: h for h in lab.status()["hosts"]}
    ua, ub = st[hosts[0]]["underlay_ip"], st[hosts[1]]["underlay_ip"]
    overlay, underlay = [], []
    for _ in range(repeats):
        overlay.append(iperf("bn-tpa", "bn-tpb", b["ip"], seconds))
        underlay.append(iperf(hosts[0], hosts[1], ub.split("/")[0], seconds))
    o, u = statistics.median(overlay), statistics.median(underlay)
    return {
        "seconds": seconds,
        "repeats": repeats,
        "overlay_mbps": overlay,
        "underlay_mbps": underlay,
        "overlay_median_mbps": o,
        "underlay_median_mbps": u,
        "ratio": o / u if u else None,
        "hosts": [f"{hosts[0]} ({ua})", f"{hosts[1]} ({ub})"],
    }


def measure(
    endpoints: int,
    hosts: int = 3,
    with_throughput: bool = True,
    iperf_seconds: int = 5,
    repeats: int = 3,
    ipv6: bool = True,
) -> dict[str, Any]:
    """Start a controller and a lab, measure, remove both; return the results (as in the JSON,
    without "command"). bench.ovn's comparison calls this."""
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-bench-"))
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "logs": str(tmp),
    }
    made: list[str] = []
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT,
        hosts=hosts,
    ) as (lab, _ctl, api):  # fmt: skip
        try:
            names = [h["name"] for h in lab.status()["hosts"]]
            net = {"name": "bench", "subnet": "10.77.0.0/16"}
            api.post("/api/v1/networks", json=net).raise_for_status()
            result["attach"] = attach_latency(lab, endpoints, names, made, ipv6)
            if with_throughput:
                result["throughput"] = throughput(lab, names, iperf_seconds, repeats)
        finally:
            for h in lab.status().get("hosts", []):
                log = Path(h["agent_socket"]).with_name("agent.log")
                if log.exists():
                    shutil.copy(log, tmp / f"agent-{h['name']}.log")
            for name in made:
                subprocess.run(["ip", "netns", "del", name], check=False)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--endpoints", type=int, default=200, help="endpoints attached one by one")
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--iperf-seconds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--no-ipv6", action="store_true", help="IPv6 off in the endpoints' netns")
    args = p.parse_args(argv)

    result = {
        "command": " ".join([".venv/bin/python -m bench.run", *(argv or sys.argv[1:])]),
        **measure(args.endpoints, args.hosts, not args.skip_throughput, args.iperf_seconds,
                  args.repeats, not args.no_ipv6),
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
