"""Write-path churn: bind/unbind events per second through the API, with agent tokens, against
a real controller and a fleet of emulated switches (issue 9: 2,000 events/s on 2 cores).

Run: ``.venv/bin/python -m bench.writes [--seconds 60] [--clients 16] [--batch 0] [--postgres]``
(no root). Starts a controller on 127.0.0.1 (SQLite in a temp dir, or with ``--postgres`` a
private PostgreSQL server started for the run, as tests/db/conftest.py does), registers one
host per client, creates one network and ``--endpoints`` endpoints per client on its host
(their blocks claimed beforehand), connects ``bench.fleet`` (one emulated OpenFlow switch per
host, so the flow engine really computes and sends the flows), then runs ``--clients`` client
processes (no GIL shared among them) for ``--seconds``. Each client holds an agent token of
its own host and loops over its endpoints: bind one to its host, then unbind it (two events,
two calls); with ``--batch N``, one ``POST /api/v1/bindings`` binds N endpoints, the next
unbinds them (2N events, two calls). A 503 is retried after its ``Retry-After`` and counted.

An event is one bind or one unbind of an endpoint on its own host. Measured: events/s over
the run, per-call median and p99 (retries included), the controller's CPU seconds, and the
lag from the last answer until every host answers ``status: converged``.

Prints JSON and writes it to ``bench/results/``; everything it started (the controller by
pid, the fleet, the client processes, the PostgreSQL server, the temp dir) is removed, also
on failure. ``--write-batch-max 1`` runs the controller with one transaction per write (the
group commit off) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import bindloop
from bench.fleet import Fleet
from bench.scale import (
    DPID_BASE,
    cpu_seconds,
    free_port,
    host_name,
    ms,
    postgres,
    underlay,
    wait_converged,
)
from vxlab.launch import ControllerProcess

RESULTS = Path(__file__).parent / "results"
NET = "churn"


def client(
    url: str, token: str, host: str, names: list[str], ofports: list[int], args: Any
) -> dict[str, Any]:
    """One client process: bind/unbind its endpoints from ``args.start_at`` (monotonic, one
    clock for all processes) for ``args.seconds`` (``bench.bindloop``)."""
    return bindloop.churn(
        url, token, host, names, ofports, args.start_at, args.seconds, args.batch, network=NET
    )


def _client_main(job: tuple[Any, ...]) -> dict[str, Any]:
    return client(*job)


def _ready(_: int) -> None:
    time.sleep(0.2)  # held, so each of the pool's processes takes one


def _profile(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    """With ``--py-spy BIN``: sample the controller for the churn's duration, collapsed
    stacks with thread names to ``--profile-out``."""
    if not args.py_spy:
        return None
    command = [args.py_spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds) + 60)]
    command += ["--format", "raw", "--threads", "--gil", "--nonblocking", "--rate", "200"]
    command += ["--output", args.profile_out]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(args: argparse.Namespace, result: dict[str, Any], tmp: Path, db_url: str) -> None:
    n = args.clients
    hosts = [host_name(i) for i in range(n)]
    env = {"VXPLANE_HOST_DEAD_AFTER": "86400"}
    if args.write_batch_max is not None:
        env["VXPLANE_WRITE_BATCH_MAX"] = str(args.write_batch_max)
    if args.write_workers is not None:
        env["VXPLANE_WRITE_WORKERS"] = str(args.write_workers)
    ctl = ControllerProcess(db_url, tmp / "controller.log", free_port(), free_port(), env=env)
    fleet: Fleet | None = None
    try:
        ctl.start(timeout=60)
        assert ctl.pid is not None
        with ctl.client(timeout=60) as api:
            for i, h in enumerate(hosts):
                body = {"underlay_ip": underlay(i), "dpid": f"{DPID_BASE + i + 1:016x}"}
                api.put(f"/api/v1/hosts/{h}", json=body).raise_for_status()
            api.post(
                "/api/v1/networks", json={"name": NET, "subnet": "10.64.0.0/12"}
            ).raise_for_status()
            jobs = []
            for i, h in enumerate(hosts):
                token = (
                    api.post("/api/v1/tokens", json={"role": "agent", "host": h})
                    .raise_for_status()
                    .json()["token"]
                )
                names = [f"c{i}-{k}" for k in range(args.endpoints)]
                for name in names:  # claims the host's block now, not during the churn
                    api.post(
                        f"/api/v1/networks/{NET}/endpoints", json={"name": name, "host": h}
                    ).raise_for_status()
                jobs.append((ctl.url, token, h, names, [2 + k for k in range(len(names))]))
            fleet = Fleet("127.0.0.1", ctl.openflow_port, [DPID_BASE + i + 1 for i in range(n)])
            fleet.start()
            wait_converged(api, n, 120)
            with mp.get_context("spawn").Pool(n) as pool:
                pool.map(_ready, range(n), chunksize=1)  # every client process up and imported
                args.start_at = time.monotonic() + 1.0
                time.sleep(1.0)
                cpu0 = cpu_seconds(ctl.pid)
                spy = _profile(args, ctl.pid)
                outs = pool.map(_client_main, [(*job, args) for job in jobs], chunksize=1)
                if spy is not None:  # stop sampling now (it writes its file on SIGINT)
                    spy.send_signal(signal.SIGINT)
                    try:
                        spy.wait(60)
                    except subprocess.TimeoutExpired:
                        spy.kill()
                        spy.wait()
            t_end = max(o["end"] for o in outs)
            elapsed = t_end - args.start_at
            cpu = cpu_seconds(ctl.pid) - cpu0
            wait_converged(api, n, 120)
            lag = time.monotonic() - t_end  # CLOCK_MONOTONIC: one clock for all processes
        lat = [x for o in outs for x in o["lat"]]
        events = sum(o["events"] for o in outs)
        result.update(
            events=events,
            seconds=round(elapsed, 2),
            events_per_second=round(events / elapsed, 1),
            calls=len(lat),
            call_ms=ms(lat),
            retried_503=sum(o["retried"] for o in outs),
            controller_cpu_seconds=round(cpu, 2),
            controller_cpu_ms_per_event=round(cpu * 1000 / max(1, events), 3),
            converged_after_last_answer_ms=round(lag * 1000, 1),
            fleet=fleet.totals(),
        )
    finally:
        if fleet is not None:
            fleet.stop()
        ctl.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=16, help="client processes, one host each")
    p.add_argument("--endpoints", type=int, default=8, help="endpoints per client")
    p.add_argument("--batch", type=int, default=0, help="items per batch request (0: none)")
    p.add_argument("--postgres", action="store_true", help="a private PostgreSQL, not SQLite")
    p.add_argument(
        "--write-batch-max", type=int, default=None, help="the controller's write_batch_max"
    )
    p.add_argument("--write-workers", type=int, default=None, help="the controller's write_workers")
    p.add_argument("--py-spy", default=None, help="py-spy binary: profile the controller")
    p.add_argument("--profile-out", default="bench/results/writes-profile.txt")
    p.add_argument("--keep-log", action="store_true", help="keep the controller's temp dir")
    args = p.parse_args(argv)
    if args.batch > args.endpoints:
        p.error("--batch must not exceed --endpoints (each item is another endpoint)")
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.writes", *(argv or sys.argv[1:])]),
        "clients": args.clients,
        "batch": args.batch,
        "database": "postgresql" if args.postgres else "sqlite",
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 1) for x in os.getloadavg()],
    }
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-writes-"))
    failed = None
    try:
        with ExitStack() as stack:
            db = stack.enter_context(postgres()) if args.postgres else f"sqlite:///{tmp}/vx.db"
            run(args, result, tmp, db)
    except Exception as exc:  # keep what was measured before the failure
        failed = result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep_log:
            print(f"controller log: {tmp / 'controller.log'}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = (
        RESULTS
        / f"writes-{result['database']}-{args.clients}c-b{args.batch}-{int(time.time())}.json"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if failed is not None:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
