"""Throughput out through the distributed gateway against the host's own, in one run.

Run as root: ``.venv/bin/python -m bench.egress [--seconds 5] [--repeats 5]``.
A controller (SQLite) and a 1-host lab (prefix ``beg-``, underlay 198.18.17.0/24, ports
19270/17470), an external dual-stack network with one container on the host, and an iperf3
server in the lab's outside namespace. Alternated ``--repeats`` times, one TCP stream each,
over IPv4 and over IPv6 (to the outside's ``outside_ip6``):

- gateway: container -> br-int (conntrack SNAT to the egress address, or to egress6) ->
  vxgw0 -> the host's kernel forwards -> br-phy -> fabric -> outside;
- host: the host's own socket -> br-phy -> fabric -> outside (what the host gets alone).

Prints medians and their ratio, and writes JSON to ``bench/results/egress-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vxlab.launch import controller_and_lab

PREFIX = "beg-"
UNDERLAY = "198.18.17.0/24"
API_PORT = 19270
OF_PORT = 17470
IPERF_PORT = 5212


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int) -> float:
    """TCP Mbit/s from ``client_ns`` to ``server_ip`` in ``server_ns`` (iperf3, one stream)."""
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip,
         "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        probe = ["ip", "netns", "exec", server_ns, "ss", "-Hltn", f"sport = :{IPERF_PORT}"]
        deadline = time.monotonic() + 10
        while not subprocess.run(probe, capture_output=True, text=True).stdout.strip():
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not listen")
            time.sleep(0.05)
        out = subprocess.run(
            ["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", str(IPERF_PORT),
             "-t", str(seconds), "-J"],
            capture_output=True, text=True, timeout=seconds + 30, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"iperf3 {client_ns}->{server_ip}: {out.stderr or out.stdout}")
        return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-egress-"))
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.egress", *(argv or sys.argv[1:])])
    }
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT, hosts=1
    ) as (lab, _ctl, api):
        body = {"name": "out", "subnet": "10.70.0.0/24", "external": True,
                "subnet6": "fd00:70::/64"}  # fmt: skip
        api.post("/api/v1/networks", json=body).raise_for_status()
        host = lab.host_name(1)
        lab.run(host, f"{PREFIX}c", "out")
        status = lab.status()
        outside, outside_ip = status["outside"], status["outside_ip"]
        outside_ip6 = status["outside_ip6"]
        gateway, own, gateway6, own6 = [], [], [], []
        for _ in range(args.repeats):
            gateway.append(iperf(f"{PREFIX}c", outside, outside_ip, args.seconds))
            own.append(iperf(host, outside, outside_ip, args.seconds))
            gateway6.append(iperf(f"{PREFIX}c", outside, outside_ip6, args.seconds))
            own6.append(iperf(host, outside, outside_ip6, args.seconds))
        med_g, med_h = statistics.median(gateway), statistics.median(own)
        med_g6, med_h6 = statistics.median(gateway6), statistics.median(own6)
        result.update(
            gateway_mbps=gateway,
            host_mbps=own,
            median_gateway_mbps=med_g,
            median_host_mbps=med_h,
            ratio=med_g / med_h,
            gateway6_mbps=gateway6,
            host6_mbps=own6,
            median_gateway6_mbps=med_g6,
            median_host6_mbps=med_h6,
            ratio6=med_g6 / med_h6,
        )
    print(f"TCP to the outside, one stream, {args.repeats} x {args.seconds} s alternated:")
    for family, g, h, gs, hs in (
        ("IPv4", med_g, med_h, gateway, own),
        ("IPv6", med_g6, med_h6, gateway6, own6),
    ):
        runs_g, runs_h = [round(x) for x in gs], [round(x) for x in hs]
        print(f"  {family} through the gateway (SNAT): median {g:.0f} Mbit/s  {runs_g}")
        print(f"  {family} the host's own:             median {h:.0f} Mbit/s  {runs_h}")
        print(f"  {family} ratio {g / h:.2f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"egress-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
