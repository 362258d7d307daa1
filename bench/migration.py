"""Migration gap: how long a moved endpoint is unreachable after its new copy is ready.

Run as root: ``.venv/bin/python -m bench.migration [--moves 20 --interval-ms 2]``. Starts
its own controller (SQLite in a temp dir) and lab (prefix ``bmg-``, underlay
198.18.10.0/24, 3 hosts), and removes everything it made, also on failure.

A peer on h3 pings the endpoint ``mover`` every ``--interval-ms`` (``ping -D``: each reply
carries its receive time). Each move removes ``mover`` from its host (detach: port, veth,
binding gone) and recreates it with the same name on the other of h1/h2: same IP and MAC,
so the peer's ARP entry stays valid. ``ready`` is the moment the agent's attach returns
(the controller confirmed the flows on every switch by barrier). Per move:

- gap = first echo reply after the old copy was removed, minus ``ready`` (0 when replies
  already arrive before the agent's answer reaches us). The resolution is the ping interval.
- outage = the same first reply minus the end of the removal (includes re-creating the
  namespace and veth, so it is the whole time without service, not a dataplane figure).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vxlab.lab import Lab
from vxlab.launch import controller_and_lab

PREFIX = "bmg-"
UNDERLAY = "198.18.10.0/24"
API_PORT = 18980
OF_PORT = 17180
RESULTS = Path(__file__).parent / "results"
REPLY_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def replies(output: str) -> list[float]:
    """Receive times (unix seconds) of the echo replies in ``ping -D`` output."""
    return [float(m.group(1)) for m in map(REPLY_RE.match, output.splitlines()) if m]


def gaps(moves: list[dict[str, float]], times: list[float]) -> list[dict[str, float]]:
    """For each move ``{removed, ready}``: gap and outage in ms (see the module docstring)."""
    out = []
    for mv in moves:
        after = [t for t in times if t > mv["removed"]]
        if not after:
            raise RuntimeError(f"no reply after the move at {mv['removed']}")
        first = after[0]
        out.append(
            {
                "gap_ms": max(0.0, first - mv["ready"]) * 1000,
                "outage_ms": (first - mv["removed"]) * 1000,
                "ready_after_removal_ms": (mv["ready"] - mv["removed"]) * 1000,
            }
        )
    return out


def measure(lab: Lab, hosts: list[str], n: int, interval_ms: float, settle: float) -> dict:
    peer = lab.run(hosts[2], "bmg-peer", "mig")
    mover = lab.run(hosts[0], "bmg-mover", "mig")
    ip = mover["ip"]
    # ping writes to a file, not a pipe: a full pipe would stall it (500 lines a second).
    log = tempfile.TemporaryFile(mode="w+")
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", "bmg-peer", "ping", "-D", "-n", "-i", str(interval_ms / 1000), ip],
        stdout=log,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    moves: list[dict[str, float]] = []
    try:
        time.sleep(settle)
        for i in range(n):
            target = hosts[(i + 1) % 2]
            lab.rm("bmg-mover")
            removed = time.time()
            ep = lab.run(target, "bmg-mover", "mig")
            ready = time.time()
            if (ep["ip"], ep["mac"]) != (mover["ip"], mover["mac"]):
                raise RuntimeError(f"move {i}: address changed: {ep['ip']} {ep['mac']}")
            moves.append({"removed": removed, "ready": ready})
            time.sleep(settle)
    finally:
        pinger.send_signal(signal.SIGINT)
        pinger.wait(timeout=30)
        log.seek(0)
        out = log.read()
        log.close()
    times = replies(out)
    if not times:
        raise RuntimeError(f"the peer's ping got no replies at all: {out[-500:]!r}")
    per_move = gaps(moves, times)
    g = [m["gap_ms"] for m in per_move]
    o = [m["outage_ms"] for m in per_move]
    return {
        "moves": n,
        "ping_interval_ms": interval_ms,
        "peer": peer["ip"],
        "endpoint": ip,
        "gap_ms": {"median": statistics.median(g), "p99": pct(g, 0.99), "max": max(g)},
        "outage_ms": {"median": statistics.median(o), "p99": pct(o, 0.99), "max": max(o)},
        "per_move": per_move,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--moves", type=int, default=20)
    p.add_argument("--interval-ms", type=float, default=2.0, help="ping interval")
    p.add_argument("--settle", type=float, default=0.3, help="seconds between moves")
    args = p.parse_args(argv)
    if args.moves < 1 or args.interval_ms < 0.2:
        p.error("--moves >= 1, --interval-ms >= 0.2")

    tmp = Path(tempfile.mkdtemp(prefix="vxplane-migration-"))
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "command": " ".join([".venv/bin/python -m bench.migration", *(argv or sys.argv[1:])]),
    }
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT, hosts=3
    ) as (lab, _ctl, api):
        hosts = [h["name"] for h in lab.status()["hosts"]]
        api.post(
            "/api/v1/networks", json={"name": "mig", "subnet": "10.78.0.0/24"}
        ).raise_for_status()
        result["migration"] = measure(lab, hosts, args.moves, args.interval_ms, args.settle)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"migration-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    m = result["migration"]
    print(json.dumps({k: v for k, v in m.items() if k != "per_move"}, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
