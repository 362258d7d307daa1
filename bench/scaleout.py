"""Scale-out: the fleet benchmark with 1 and with 3 controllers on PostgreSQL (issue 10).

Run: ``.venv/bin/python -m bench.scaleout --controllers 1,3`` (no root; a few minutes with the
defaults). For each count N in ``--controllers``, one after the other and from scratch: a
private PostgreSQL server (Debian's binaries, as tests/db/conftest.py starts it), N
controllers on 127.0.0.1 sharing it (each its own API and OpenFlow port, advertising them),
S hosts registered through the API (underlay addresses in 198.18.0.0/15 as records only; no
agents, so heartbeats are made irrelevant with ``VXPLANE_HOST_DEAD_AFTER``), one network,
E endpoints per host filled by create-and-bind calls spread over the controllers' APIs, then
``bench.fleet``: S emulated switches, each connected to *every* controller (one connection
per controller, sharing its flow table, with OpenFlow roles as OVS keeps them: a slave's
flow-mod is refused), so the switches are spread over the controllers by their mastership.
Measured, side by side per N:

- cold start: from the fleet's first connect until every controller's ``GET /api/v1/hosts``
  answers every host converged and every switch holds exactly one MASTER connection;
- attach-to-ready: ``--attaches`` create-and-bind calls with ``wait_ready=5``, one after the
  other, on hosts in turn; with several controllers every other one goes to the API of the
  controller that masters the host's switch, the others to another controller's (in turn);
  median and p99 overall and for each half (a non-master learns the master's confirmation at
  its next lease renewal: up to a second later);
- churn: ``--clients`` client processes (bench.writes' loop: bind, unbind, each client with
  an agent token of its own host), client i talking to controller i mod N, for ``--seconds``:
  events/s, per-call median and p99, the controllers' CPU per event (summed over all N), and
  the lag from the last answer until every controller reports every host converged;
- the controllers' CPU and RSS, the fleet's counters (flow-mods, IS_SLAVE refusals), whether
  each master's flow count equals the fleet's model, and the machine's load average.

Prints a side-by-side table and JSON (also written to ``bench/results/``); everything it
started (the controllers by pid, the fleet, the client processes, the PostgreSQL servers,
the temp dirs) is removed, also on failure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.fleet import Fleet
from bench.scale import (
    DPID_BASE,
    Retries,
    bind,
    cpu_seconds,
    free_port,
    host_name,
    ms,
    postgres,
    rss_kib,
)
from bench.scale import NET as SCALE_NET
from bench.scale import underlay as underlay_ip
from bench.writes import _client_main, _ready
from vxlab.launch import ControllerProcess, get_all

RESULTS = Path(__file__).parent / "results"
NET = "churn"  # bench.writes' clients bind in this network; the fill and attaches in "scale"


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 1) for x in os.getloadavg()]


@contextmanager
def cluster(n: int, db_url: str, tmp: Path) -> Iterator[list[ControllerProcess]]:
    """``n`` controllers on loopback sharing ``db_url`` (started one after the other: the
    first applies the migrations); stopped by pid afterwards."""
    ctls: list[ControllerProcess] = []
    try:
        for i in range(n):
            api, of = free_port(), free_port()
            env = {
                "VXPLANE_HOST_DEAD_AFTER": "86400",
                "VXPLANE_ADVERTISE_API": f"http://127.0.0.1:{api}",
                "VXPLANE_ADVERTISE_OPENFLOW": f"tcp:127.0.0.1:{of}",
            }
            ctl = ControllerProcess(
                db_url, tmp / f"controller-{i}.log", api, of, env=env,
                admin_token_file=tmp / f"admin-token-{i}",
            )  # fmt: skip
            ctls.append(ctl.start(timeout=90))
        yield ctls
    finally:
        for ctl in ctls:
            ctl.stop()


def cpu(ctls: list[ControllerProcess]) -> float:
    """User + system CPU seconds of every controller so far."""
    return sum(cpu_seconds(c.pid) for c in ctls if c.pid is not None)


def converged_everywhere(apis: list[httpx.Client], n_hosts: int) -> bool:
    """Every controller reports every host converged (a slave: as the master published)."""
    for api in apis:
        hosts = get_all(api, "/api/v1/hosts")
        if len(hosts) != n_hosts or not all(h["status"] == "converged" for h in hosts):
            return False
    return True


def wait(what: str, check: Any, timeout: float) -> float:
    """Poll ``check()`` until true; the seconds it took (RuntimeError after ``timeout``)."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def masters(api: httpx.Client) -> dict[str, str]:
    """host -> the API URL its live master advertises, as ``GET /api/v1/controllers`` says."""
    out: dict[str, str] = {}
    for m in api.get("/api/v1/controllers").raise_for_status().json():
        for s in m["switches"]:
            if m["alive"] and s["host"]:
                out[s["host"]] = m["api_url"]
    return out


def flow_problems(apis: list[httpx.Client], fleet: Fleet) -> list[str]:
    """Switches whose table differs from what the controller holding MASTER on it believes
    it holds, or that no controller holds MASTER on (empty: every one agrees)."""
    told: dict[str, int | None] = {}
    for a in apis:
        for hst in get_all(a, "/api/v1/hosts"):
            sw = hst["switch"] or {}
            if hst["dpid"] and sw.get("role") in ("master", None):
                told[hst["dpid"]] = sw.get("flow_count")
    out = []
    for sw in fleet.switches:
        key = f"{sw.dpid:016x}"
        if key not in told:
            out.append(f"{key}: no controller reports MASTER on it")
        elif told[key] != len(sw.flows):
            out.append(
                f"{key}: its master counts {told[key]} flows, the switch holds {len(sw.flows)}"
            )
    return out


def fill(ctls: list[ControllerProcess], hosts: list[str], per_host: int, clients: int) -> float:
    """E create-and-binds per host, from ``clients`` threads spread over the controllers;
    the seconds it took."""
    jobs = [(h, j) for j in range(per_host) for h in hosts]
    busy = Retries()

    def work(i: int) -> None:
        with ctls[i % len(ctls)].client(timeout=120) as api:
            for h, j in jobs[i::clients]:
                bind(api, f"e-{h}-{j}", h, 2 + j, None, busy)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(work, i) for i in range(clients)]:
            f.result()
    return time.perf_counter() - t0


def run_one(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The whole measurement with ``n`` controllers on a fresh PostgreSQL."""
    s, e = args.switches, args.endpoints_per_host
    hosts = [host_name(i) for i in range(s)]
    out: dict[str, Any] = {"controllers": n, "load_average_at_start": load()}
    with ExitStack() as stack:
        db_url = stack.enter_context(postgres())
        ctls = stack.enter_context(cluster(n, db_url, tmp))
        apis = [stack.enter_context(c.client(timeout=120)) for c in ctls]
        api = apis[0]
        for i, h in enumerate(hosts):
            body = {"underlay_ip": underlay_ip(i), "dpid": f"{DPID_BASE + i + 1:016x}"}
            api.put(f"/api/v1/hosts/{h}", json=body).raise_for_status()
        for net, subnet in ((SCALE_NET, "10.64.0.0/12"), (NET, "10.80.0.0/12")):
            api.post("/api/v1/networks", json={"name": net, "subnet": subnet}).raise_for_status()
        filled = fill(ctls, hosts, e, 8)
        out["populate"] = {"endpoints": s * e, "seconds": round(filled, 2)}
        jobs = []  # churn clients: one host each, endpoints created (blocks claimed) now
        for i, h in enumerate(hosts[: args.clients]):
            token = api.post("/api/v1/tokens", json={"role": "agent", "host": h})
            names = [f"c{i}-{k}" for k in range(args.churn_endpoints)]
            for name in names:
                api.post(
                    f"/api/v1/networks/{NET}/endpoints", json={"name": name, "host": h}
                ).raise_for_status()
            ofports = [1000 + k for k in range(len(names))]
            url = ctls[i % n].url
            jobs.append((url, token.raise_for_status().json()["token"], h, names, ofports))
        print(f"[{n}] filled {s * e} endpoints in {filled:.1f} s; connecting", file=sys.stderr)

        dpids = [DPID_BASE + i + 1 for i in range(s)]
        ports = [c.openflow_port for c in ctls]
        fleet = Fleet("127.0.0.1", ports[0], dpids, ports=ports)
        try:
            cpu0 = cpu(ctls)
            fleet.start()

            def settled() -> bool:
                one_master = all(sw.masters() == 1 for sw in fleet.switches)
                return one_master and converged_everywhere(apis, s)

            cold = wait("cold start", settled, args.timeout)
            owner = masters(api)
            spread = sorted(list(owner.values()).count(c.url) for c in ctls)
            out["cold_start"] = {
                "seconds": round(cold, 2),
                "controllers_cpu_seconds": round(cpu(ctls) - cpu0, 2),
                "switches_per_controller": spread,
                **fleet.totals(),
            }
            print(f"[{n}] converged {cold:.1f} s after connecting; attaching", file=sys.stderr)

            lat: list[float] = []
            by_master: dict[bool, list[float]] = {True: [], False: []}
            busy, not_ready = Retries(), 0
            cpu0 = cpu(ctls)
            for k in range(args.attaches):
                h = hosts[k % s]
                urls = [c.url for c in ctls]
                master = urls.index(owner[h])
                # even attaches through the switch's master, odd ones through another
                which = master if k % 2 == 0 or n == 1 else (master + 1 + k // 2 % (n - 1)) % n
                t1 = time.perf_counter()
                state = bind(apis[which], f"a-{k}", h, 2 + e + k // s, 5, busy)
                took = time.perf_counter() - t1
                lat.append(took)
                by_master[owner.get(h) == ctls[which].url].append(took)
                not_ready += state != "ready"
            out["attach_to_ready_ms"] = {
                "attaches": len(lat),
                **ms(lat),
                "through_the_master": {"attaches": len(by_master[True]), **ms(by_master[True])}
                if by_master[True]
                else None,
                "through_another": {"attaches": len(by_master[False]), **ms(by_master[False])}
                if by_master[False]
                else None,
                "not_ready_after_5_s": not_ready,
                "retried_503": busy.n,
                "controllers_cpu_ms_per_attach": round((cpu(ctls) - cpu0) * 1000 / len(lat), 1),
            }
            print(f"[{n}] {len(lat)} attaches; churn for {args.seconds:.0f} s", file=sys.stderr)

            with mp.get_context("spawn").Pool(len(jobs)) as pool:
                pool.map(_ready, range(len(jobs)), chunksize=1)  # every client up and imported
                args.start_at = time.monotonic() + 1.0
                time.sleep(1.0)
                cpu0, load0 = cpu(ctls), load()
                outs = pool.map(_client_main, [(*job, args) for job in jobs], chunksize=1)
            t_end = max(o["end"] for o in outs)
            elapsed = t_end - args.start_at
            used = cpu(ctls) - cpu0
            load1 = load()
            wait("converged after the churn", lambda: converged_everywhere(apis, s), 120)
            lag = time.monotonic() - t_end
            calls = [x for o in outs for x in o["lat"]]
            events = sum(o["events"] for o in outs)
            out["churn"] = {
                "clients": len(jobs),
                "events": events,
                "seconds": round(elapsed, 2),
                "events_per_second": round(events / elapsed, 1),
                "call_ms": ms(calls),
                "retried_503": sum(o["retried"] for o in outs),
                "controllers_cpu_ms_per_event": round(used * 1000 / max(1, events), 2),
                "converged_after_last_answer_ms": round(lag * 1000, 1),
                "load_average_before_after": [load0, load1],
            }
            # every master's flow count against the fleet's model of that switch (a switch
            # whose master moved under load is checked again once its new master has it)
            problems = flow_problems(apis, fleet)
            deadline = time.monotonic() + 30
            while problems and time.monotonic() < deadline:
                time.sleep(0.5)
                problems = flow_problems(apis, fleet)
            out["flow_counts_agree"] = not problems
            out["flow_count_problems"] = problems[:10]
            out["switches_per_controller_at_end"] = sorted(
                list(masters(api).values()).count(c.url) for c in ctls
            )
            out["fleet_totals"] = fleet.totals()
            out["rss_mib"] = [rss_kib(c.pid)["VmRSS"] // 1024 for c in ctls if c.pid]
        finally:
            fleet.stop()
    out["load_average_at_end"] = load()
    return out


def column(r: dict[str, Any]) -> dict[str, str]:
    """One run's figures, as the side-by-side table shows them."""
    c, a, ch = r["cold_start"], r["attach_to_ready_ms"], r["churn"]

    def split(part: dict[str, Any] | None) -> str:
        return "-" if not part else f"{part['median']} / {part['p99']} ms ({part['attaches']})"

    return {
        "switches per controller": str(c["switches_per_controller"]),
        "cold start to all converged": f"{c['seconds']} s",
        "attach-to-ready median / p99": f"{a['median']} / {a['p99']} ms ({a['attaches']})",
        "  through the switch's master": split(a["through_the_master"]),
        "  through another controller": split(a["through_another"]),
        "controllers' CPU per attach": f"{a['controllers_cpu_ms_per_attach']} ms",
        "churn events/s": str(ch["events_per_second"]),
        "churn call median / p99": f"{ch['call_ms']['median']} / {ch['call_ms']['p99']} ms",
        "controllers' CPU per churn event": f"{ch['controllers_cpu_ms_per_event']} ms",
        "converged after the churn": f"{ch['converged_after_last_answer_ms']} ms",
        "IS_SLAVE refusals (fleet)": str(r["fleet_totals"]["refused_is_slave"]),
        "flow counts agree": str(r["flow_counts_agree"]),
        "controller RSS": " + ".join(f"{x} MiB" for x in r["rss_mib"]),
        "load average (1 min) at start / end": (
            f"{r['load_average_at_start'][0]} / {r['load_average_at_end'][0]}"
        ),
    }


def table(runs: list[dict[str, Any]]) -> str:
    """The runs side by side (markdown)."""
    cols = [column(r) for r in runs]
    lines = [
        "| | " + " | ".join(f"{r['controllers']} controller(s)" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for name in cols[0]:
        lines.append(f"| {name} | " + " | ".join(c[name] for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--controllers", default="1,3", help="controller counts to run, e.g. 1,3")
    p.add_argument("--switches", type=int, default=60)
    p.add_argument("--endpoints-per-host", type=int, default=4)
    p.add_argument("--attaches", type=int, default=60)
    p.add_argument("--clients", type=int, default=6, help="churn client processes")
    p.add_argument("--churn-endpoints", type=int, default=8, help="endpoints per churn client")
    p.add_argument("--seconds", type=float, default=20.0, help="churn duration")
    p.add_argument("--timeout", type=float, default=300, help="cold start limit (s)")
    p.add_argument("--keep-log", action="store_true", help="keep the controllers' temp dirs")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.controllers.split(",") if x.strip()]
    if not counts or min(counts) < 1:
        p.error("--controllers: a comma-separated list of counts >= 1, e.g. 1,3")
    if args.clients > args.switches:
        p.error("--clients must not exceed --switches (each churn client has a host of its own)")
    args.batch = 0  # bench.writes' client: single calls
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.scaleout", *(argv or sys.argv[1:])]),
        "database": "postgresql",
        "switches": args.switches,
        "endpoints_per_host": args.endpoints_per_host,
        "cpus": os.cpu_count(),
        "runs": [],
    }
    failed = None
    for n in counts:
        tmp = Path(tempfile.mkdtemp(prefix=f"vxplane-scaleout-{n}-"))
        try:
            result["runs"].append(run_one(n, args, tmp))
        except Exception as exc:  # keep what was measured before the failure
            failed = result["error"] = f"{n} controller(s): {type(exc).__name__}: {exc}"
            break
        finally:
            if args.keep_log:
                print(f"controller logs: {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    name = f"scaleout-{'-'.join(map(str, counts))}-{args.switches}x{args.endpoints_per_host}"
    (RESULTS / f"{name}-{int(time.time())}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if failed is not None:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    print(table(result["runs"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
