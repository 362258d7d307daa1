"""Scale: one real controller, a fleet of emulated switches (bench.fleet), driven through the API.

Run: ``.venv/bin/python -m bench.scale --switches 100 --endpoints-per-host 10`` (no root).
Starts a controller on 127.0.0.1 (SQLite in a temp dir, free ports, heartbeats made
irrelevant with ``VXPLANE_HOST_DEAD_AFTER`` since the fleet has no agents), registers N hosts
(underlay addresses in 198.18.0.0/15; these are API records, no packet goes there), creates
one network, fills E endpoints per host with create-and-bind calls from ``--clients`` threads,
then connects the fleet and measures:

- populate: endpoints per second through the API, and the per-call median and p99;
- cold start: from the fleet's first connect until every host answers ``status: converged``
  in ``GET /api/v1/hosts`` (empty switches: the whole fill is flow-mods);
- attach-to-ready with the fleet connected: ``--attaches`` create-and-bind calls with
  ``wait_ready=5``, one after the other, on hosts in turn, timed until they answer ``ready``;
- the controller's RSS (``/proc/PID/status``: VmRSS and its peak VmHWM) and the flows per
  switch in the fleet's models, plus the fleet's counters (flow-mods, barriers, dumps,
  connects: more connects than switches means reconnections).

Prints JSON (and writes it to ``bench/results/``) and a short summary; everything it started
(the controller, by pid; the fleet; the temp dir) is removed, also on failure.
``--bundles always`` sends every batch (the cold fill too) as one ONF bundle, which the fleet
models (bench/fleet.py); ``never`` only plain flow-mods; ``auto`` (the default, the
controller's) bundles batches that replace flows. Not measured yet (issue 9 item 5): churn,
restart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.fleet import Fleet
from vxlab.launch import ControllerProcess, get_all

RESULTS = Path(__file__).parent / "results"
NET = "scale"
DPID_BASE = 0x5C00_0000_0000


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(values: list[float]) -> dict[str, float]:
    """Median and p99 of durations in seconds, in ms."""
    return {
        "median": round(statistics.median(values) * 1000, 2),
        "p99": round(pct(values, 0.99) * 1000, 2),
    }


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_name(i: int) -> str:
    return f"h{i:04d}"


def underlay(i: int) -> str:
    """The i-th host's underlay address in 198.18.0.0/15 (a record only)."""
    return f"198.{18 + i // 60000}.{i // 250 % 240}.{i % 250 + 2}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@contextmanager
def controller(tmp: Path, bundles: str = "auto") -> Iterator[ControllerProcess]:
    """A controller on loopback with SQLite in ``tmp``; stopped (by pid) afterwards."""
    ctl = ControllerProcess(
        f"sqlite:///{tmp}/vx.db",
        tmp / "controller.log",
        free_port(),
        free_port(),
        env={"VXPLANE_HOST_DEAD_AFTER": "86400", "VXPLANE_OPENFLOW_BUNDLES": bundles},
    )
    try:
        ctl.start(timeout=60)
        yield ctl
    finally:
        ctl.stop()


class Retries:
    """A count shared by client threads."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.n += 1


def bind(
    api: httpx.Client, name: str, host: str, ofport: int, wait: float | None, busy: Retries
) -> str:
    """Create-and-bind ``name`` on ``host``; its state as answered. A 503 (the database was
    busy: nothing was written) is retried after a short
    backoff and counted in ``busy``."""
    params: dict[str, Any] = {"create": "true"}
    if wait is not None:
        params["wait_ready"] = wait
    for attempt in range(8):
        r = api.put(
            f"/api/v1/networks/{NET}/endpoints/{name}/binding",
            params=params,
            json={"host": host, "ofport": ofport},
        )
        if r.status_code != 503:
            break
        busy.add()
        time.sleep(0.05 * 2**attempt)
    return str(r.raise_for_status().json()["state"])


def populate(
    ctl: ControllerProcess, hosts: list[str], per_host: int, clients: int, busy: Retries
) -> tuple[list[float], list[float]]:
    """E create-and-binds per host from ``clients`` threads; (per-call durations, retries
    included, and their end times)."""
    jobs = [(h, j) for j in range(per_host) for h in hosts]
    lat: list[float] = []
    ends: list[float] = []
    lock = threading.Lock()

    def work(chunk: list[tuple[str, int]]) -> None:
        with ctl.client(timeout=120) as api:
            for h, j in chunk:
                t0 = time.perf_counter()
                bind(api, f"e-{h}-{j}", h, 2 + j, None, busy)
                with lock:
                    ends.append(time.perf_counter())
                    lat.append(ends[-1] - t0)

    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(work, jobs[i::clients]) for i in range(clients)]:
            f.result()
    return lat, sorted(ends)


def tenth_rates(ends: list[float], start: float) -> tuple[float, float]:
    """Calls per second over the first and the last tenth of the calls."""
    k = max(1, len(ends) // 10)
    first = k / (ends[k - 1] - start)
    last = k / (ends[-1] - ends[-k - 1]) if len(ends) > k else first
    return round(first, 1), round(last, 1)


def wait_converged(api: httpx.Client, n: int, timeout: float) -> tuple[float, list[Any]]:
    """Poll the hosts until all ``n`` are converged; (seconds, the last listing)."""
    t0 = time.monotonic()
    while True:
        hosts = get_all(api, "/api/v1/hosts")
        if len(hosts) == n and all(h["status"] == "converged" for h in hosts):
            return time.monotonic() - t0, hosts
        if time.monotonic() - t0 > timeout:
            states = statistics.multimode(h["status"] for h in hosts)
            raise RuntimeError(f"not converged after {timeout:.0f} s (mostly {states})")
        time.sleep(0.2)


def run(args: argparse.Namespace, result: dict[str, Any], tmp: Path) -> None:
    n, e = args.switches, args.endpoints_per_host
    hosts = [host_name(i) for i in range(n)]
    with controller(tmp, args.bundles) as ctl, ctl.client(timeout=120) as api:
        assert ctl.pid is not None
        for i, h in enumerate(hosts):
            body = {"underlay_ip": underlay(i), "dpid": f"{DPID_BASE + i + 1:016x}"}
            api.put(f"/api/v1/hosts/{h}", json=body).raise_for_status()
        api.post(
            "/api/v1/networks", json={"name": NET, "subnet": "10.64.0.0/12"}
        ).raise_for_status()
        cpu0 = cpu_seconds(ctl.pid)
        t0 = time.perf_counter()
        busy = Retries()
        lat, ends = populate(ctl, hosts, e, args.clients, busy)
        fill = time.perf_counter() - t0
        first, last = tenth_rates(ends, t0)
        result["populate"] = {
            "endpoints": len(lat),
            "clients": args.clients,
            "seconds": round(fill, 2),
            "endpoints_per_second": round(len(lat) / fill, 1),
            "call_ms": ms(lat),
            "retried_503": busy.n,
            "first_tenth_per_second": first,
            "last_tenth_per_second": last,
            "controller_cpu_seconds": round(cpu_seconds(ctl.pid) - cpu0, 2),
        }
        result["rss_kib_before_fleet"] = rss_kib(ctl.pid)
        print(f"filled {len(lat)} endpoints in {fill:.1f} s; connecting", file=sys.stderr)
        fleet = Fleet("127.0.0.1", ctl.openflow_port, [DPID_BASE + i + 1 for i in range(n)])
        try:
            cpu0, own0 = cpu_seconds(ctl.pid), cpu_seconds(os.getpid())
            fleet.start()
            cold, listing = wait_converged(api, n, args.timeout)
            result["cold_start"] = {
                "seconds": round(cold, 2),
                "controller_cpu_seconds": round(cpu_seconds(ctl.pid) - cpu0, 2),
                "fleet_process_cpu_seconds": round(cpu_seconds(os.getpid()) - own0, 2),
                "wanted_revision": listing[0]["wanted_revision"],
                **fleet.totals(),
            }
            print(f"converged {cold:.1f} s after connecting; attaching", file=sys.stderr)
            attach: list[float] = []
            busy = Retries()
            not_ready = 0
            cpu0 = cpu_seconds(ctl.pid)
            for k in range(args.attaches):
                t1 = time.perf_counter()
                state = bind(api, f"a-{k}", hosts[k % n], 2 + e + k // n, 5, busy)
                attach.append(time.perf_counter() - t1)
                not_ready += state != "ready"
            result["attach_to_ready_ms"] = {
                "attaches": len(attach),
                "retried_503": busy.n,
                "not_ready_after_5_s": not_ready,
                **ms(attach),
                "controller_cpu_ms_per_attach": round(
                    (cpu_seconds(ctl.pid) - cpu0) * 1000 / len(attach), 1
                ),
            }
            per_switch = [len(s.flows) for s in fleet.switches]
            result["flows_per_switch"] = {
                "min": min(per_switch),
                "median": statistics.median(per_switch),
                "max": max(per_switch),
            }
            result["fleet_totals"] = fleet.totals()
            # The fleet's models against what the controller believes each switch holds.
            told = {
                h["dpid"]: (h["switch"] or {}).get("flow_count")
                for h in get_all(api, "/api/v1/hosts")
            }
            result["flow_counts_agree"] = all(
                told.get(f"{s.dpid:016x}") == len(s.flows) for s in fleet.switches
            )
            result["rss_kib"] = rss_kib(ctl.pid)
        finally:
            fleet.stop()


def summary(r: dict[str, Any]) -> str:
    p, c, a = r["populate"], r["cold_start"], r["attach_to_ready_ms"]
    return "\n".join(
        [
            f"{r['switches']} switches x {r['endpoints_per_host']} endpoints/host",
            f"  populate     {p['endpoints_per_second']} endpoints/s "
            f"(call median {p['call_ms']['median']} ms, p99 {p['call_ms']['p99']} ms, "
            f"{p['retried_503']} retried 503s; "
            f"first tenth {p['first_tenth_per_second']}/s, last {p['last_tenth_per_second']}/s)",
            f"  cold start   {c['seconds']} s to all converged, {c['flow_mods']} flow-mods, "
            f"{c['connects']} connects, {c['bundle_commits']} bundles "
            f"(bundles: {r['bundles']})",
            f"  attach       median {a['median']} ms, p99 {a['p99']} ms ({a['attaches']})",
            f"  RSS          {r['rss_kib']['VmRSS'] // 1024} MiB "
            f"(peak {r['rss_kib']['VmHWM'] // 1024} MiB)",
            f"  flows/switch {r['flows_per_switch']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--switches", type=int, default=100)
    p.add_argument("--endpoints-per-host", type=int, default=10)
    p.add_argument("--clients", type=int, default=8, help="API client threads for the fill")
    p.add_argument("--attaches", type=int, default=50)
    p.add_argument("--timeout", type=float, default=600, help="cold start limit (s)")
    p.add_argument("--keep-log", action="store_true", help="keep the controller's temp dir")
    p.add_argument(
        "--bundles",
        choices=("auto", "always", "never"),
        default="auto",
        help="the controller's VXPLANE_OPENFLOW_BUNDLES (always: the cold fill in bundles too)",
    )
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.scale", *(argv or sys.argv[1:])]),
        "switches": args.switches,
        "endpoints_per_host": args.endpoints_per_host,
        "bundles": args.bundles,
        "cpus": os.cpu_count(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-scale-"))
    failed = None
    try:
        run(args, result, tmp)
    except Exception as exc:  # keep what was measured before the failure
        failed = result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep_log:
            print(f"controller log: {tmp / 'controller.log'}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale-{args.switches}x{args.endpoints_per_host}-{int(time.time())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if failed is not None:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
