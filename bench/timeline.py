"""One timeline per attach from the trace points (``vxcommon/tpoints.py``).

    VXPLANE_TPOINTS=/tmp/tp .venv/bin/python -m bench.run --endpoints 100 \
        --skip-throughput --no-ipv6
    .venv/bin/python -m bench.timeline /tmp/tp

The bench, the agents and the controller append their points to the one file (the lab's
processes inherit the bench's environment). For each point: the median and p90 ms since the
bench's request (``b_request``) over the attaches that reached it, in order of the median;
then the median of each step (point to next point, per attach, then the median).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

WHAT = {
    "b_request": "bench: the agent's attach requested (netns made before)",
    "a_route": "agent: the attach route runs (unix socket, uvicorn, FastAPI, a worker thread)",
    "a_send": "agent: the create-and-bind sent (plug's worker thread, httpx)",
    "c_asgi": "controller: the request reaches the app (HTTP parsed)",
    "c_route": "controller: the bind route runs (dependencies, auth, body)",
    "c_write": "controller: the write starts (writer thread)",
    "a_veth": "agent: the veth made, peer in the namespace; OVS port handed to a worker",
    "c_commit": "controller: the write committed (back in the event loop)",
    "c_line1": "controller: the endpoint as bound sent (first NDJSON line)",
    "a_rx1": "agent: the first line read",
    "a_line1": "agent: the plug has the address",
    "a_conf": "agent: the container configured",
    "c_ready": "controller: the switch confirmed the flows (barrier)",
    "a_rx2": "agent: the second line (ready) read",
    "a_line2": "agent: the bind's answer complete",
    "a_port": "agent: the OVS port has its number",
    "a_answer": "agent: the attach answered",
    "b_ready": "bench: the answer read",
    "b_ping": "bench: the first ping answered (ip netns exec ping)",
}


def read(path: Path) -> dict[str, dict[str, float]]:
    """key -> event -> time (s); the first of an event per key (a retry marks again)."""
    per: dict[str, dict[str, float]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            t, _pid, event, key = parts
            per[key].setdefault(event, float(t))
    return per


def timeline(per: dict[str, dict[str, float]]) -> list[tuple[str, float, float, int]]:
    """(event, median ms, p90 ms since b_request, attaches) in order of the median."""
    since: dict[str, list[float]] = defaultdict(list)
    for events in per.values():
        t0 = events.get("b_request")
        if t0 is not None:
            for event, t in events.items():
                since[event].append((t - t0) * 1000)
    rows = [
        (e, statistics.median(v), sorted(v)[int(0.9 * (len(v) - 1))], len(v))
        for e, v in since.items()
    ]
    return sorted(rows, key=lambda r: r[1])


def steps(per: dict[str, dict[str, float]], order: list[str]) -> list[tuple[str, str, float]]:
    """The median ms from each event of ``order`` to the next, per attach."""
    out = []
    for a, b in zip(order, order[1:], strict=False):
        v = [(e[b] - e[a]) * 1000 for e in per.values() if a in e and b in e]
        if v:
            out.append((a, b, statistics.median(v)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("file", type=Path, help="the VXPLANE_TPOINTS file of a bench.run")
    args = p.parse_args(argv)
    per = read(args.file)
    rows = timeline(per)
    print(f"{'median':>8} {'p90':>8}  point (ms since the request, {len(per)} attaches)")
    for event, med, p90, _n in rows:
        print(f"{med:8.2f} {p90:8.2f}  {event:10s} {WHAT.get(event, '')}")
    print("\nsteps (median of each attach's difference):")
    for a, b, med in steps(per, [r[0] for r in rows]):
        print(f"{med:8.2f}  {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
