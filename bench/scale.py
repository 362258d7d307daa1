"""Scale: one real controller, a fleet of emulated switches (bench.fleet), driven through the API.

Run: ``.venv/bin/python -m bench.scale --switches 100 --endpoints-per-host 10`` (no root).
Starts a controller on 127.0.0.1 (SQLite in a temp dir, or with ``--postgres`` a private
PostgreSQL server started for the run as tests/db/conftest.py does; free ports; heartbeats
made irrelevant with ``VXPLANE_HOST_DEAD_AFTER`` since the fleet has no agents), registers N
hosts (underlay addresses in 198.18.0.0/15; these are API records, no packet goes there),
creates one network, fills E endpoints per host (``--fill-batch`` items (default 200) per
``POST /api/v1/bindings`` with ``create``, from ``--clients`` threads; ``--fill-batch 0``:
one create-and-bind call each), then connects the fleet (``--fleet-processes`` K child
processes, default 2; 0: a thread of this process, as before) and measures, in this order:

- populate: endpoints per second through the API, and the per-call median and p99;
- cold start: from the fleet's first connect until every host answers ``status: converged``
  in ``GET /api/v1/hosts`` (empty switches: the whole fill is flow-mods);
- idle: the converged controller's own CPU over 5 s without a call (echo probes, lease
  renewals, audits), reported in cores and taken off the CPU per attach as a second figure
  (``..._above_idle``): at 1,000 switches that share is no cost of a change;
- attach-to-ready with the fleet connected: ``--attaches`` create-and-bind calls with
  ``wait_ready=5``, one after the other, on hosts in turn, timed until they answer ``ready``;
- churn (``--churn-seconds``, 0: skipped): ``--churn-clients`` client processes, each with
  an agent token of a host of its own, unbind and bind again that host's filled endpoints
  (single calls, or ``--churn-batch N`` items per ``POST /api/v1/bindings``): events/s (an
  event is one bind or one unbind), per-call median and p99, the controller's CPU per event,
  and the lag from the last answer until every host answers converged;
- restart (``--no-restart``: skipped): SIGKILL the converged controller, start it again on
  the same database, and time it until every host answers converged again; the flow-mods,
  bundles and dumps the fleet got meanwhile (goal: no flow-mod, the switches already hold
  the flows), and whether every switch still holds what the controller believes;
- the controller's RSS (``/proc/PID/status``: VmRSS and its peak VmHWM, before the restart
  and at the end; ``vmrss_by_phase_before_restart``: VmRSS sampled every 0.25 s, its peak
  and last value in each phase up to the restart; ``smaps_kib_*``: resident KiB by kind of
  mapping after the fill, after the cold start and before the restart), the flows per
  switch in the fleet's models, the fleet's counters
  (flow-mods, barriers, dumps, connects: more connects than switches means reconnections),
  and the load average at each step (the machine may be shared: CPU per event moves less
  than wall time);
- with ``--postgres``, the server's own CPU in each phase (``db_server_cpu_seconds``,
  ``db_server_cores``: the postmaster and its backends, ended ones included; it shares the
  machine with the controller) and the statements that took its time there
  (``db_top_statements``, from ``pg_stat_statements``, loaded when the binaries have it).

Prints JSON (and writes it to ``bench/results/``) and a short summary; everything it started
(the controller, by pid; the fleet; the client processes; the PostgreSQL server; the temp
dir) is removed, also on failure. ``--bundles always`` sends every batch (the cold fill too)
as one ONF bundle, which the fleet models (bench/fleet.py); ``never`` only plain flow-mods;
``auto`` (the default, the controller's) bundles batches that replace flows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench import bindloop
from bench.fleet import Fleet, FleetProcesses
from vxcommon import tpoints
from vxcommon.retry import advised_delay
from vxlab.launch import ControllerProcess, get_all

if TYPE_CHECKING:
    from tests.db.conftest import PostgresServer

RESULTS = Path(__file__).parent / "results"
NET = "scale"
DPID_BASE = 0x5C00_0000_0000
MAX_BATCH = 1000  # items per POST /api/v1/bindings (docs/api.md)


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


def smaps_kib(pid: int) -> dict[str, int]:
    """Resident KiB of ``pid`` by kind of mapping (``/proc/PID/smaps``): ``threads``
    (anonymous read-write mappings of exactly 8 MiB: glibc's thread stacks), ``heap`` (the
    main heap), ``anon`` (every other anonymous mapping: Python's arenas, other threads'
    malloc arenas, large blocks) and ``files``; ``thread_mappings`` counts the first kind."""
    out = {"threads": 0, "heap": 0, "anon": 0, "files": 0, "thread_mappings": 0}
    kind = "files"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            start, _, end = head[0].partition("-")
            size = (int(end, 16) - int(start, 16)) >> 10
            path = head[5] if len(head) > 5 else ""
            if path == "[heap]":
                kind = "heap"
            elif path and not path.startswith("[anon"):
                kind = "files"
            elif size == 8192 and head[1].startswith("rw"):
                kind = "threads"
                out["thread_mappings"] += 1
            else:
                kind = "anon"
        elif head and head[0] == "Rss:":
            out[kind] += int(head[1])
    return out


def load() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return [round(x, 1) for x in os.getloadavg()]


@contextmanager
def postgres() -> Iterator[str]:
    """A private PostgreSQL server for the run (Debian's binaries, as the tests use)."""
    with postgres_server() as server:
        yield server.url


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the run, with ``pg_stat_statements`` loaded when the
    binaries have it (Debian's do); removed afterwards."""
    from tests.db.conftest import find_pg_bindir, private_postgres

    bindir = find_pg_bindir()
    if bindir is None:
        raise SystemExit("--postgres: PostgreSQL server binaries (initdb, pg_ctl) not found")
    stats = (bindir.parent / "lib" / "pg_stat_statements.so").exists()
    options = "-c shared_preload_libraries=pg_stat_statements" if stats else ""
    with private_postgres(bindir, options) as server:
        yield server


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, of its live children and of its ended children it has waited
    for: a PostgreSQL server is a postmaster and backends that come and go."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile: its time is in the parent's (cutime, cstime)
            continue
        if int(child[1]) == pid:
            ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class DbServer:
    """The PostgreSQL server of a run: its CPU (it shares the machine with the controller)
    and, with ``pg_stat_statements``, the statements that took its time in a phase."""

    def __init__(self, server: PostgresServer) -> None:
        import psycopg

        self.pid = server.pid()
        self._conn = psycopg.connect(
            host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
        )
        try:
            self._conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.stats = True
        except psycopg.Error:  # not loaded: CPU only
            self.stats = False

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)

    def reset(self) -> None:
        """Forget the statements so far (the start of a phase)."""
        if self.stats:
            self._conn.execute("SELECT pg_stat_statements_reset()")

    def top(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` statements that took the most server time since ``reset``."""
        if not self.stats:
            return []
        rows = self._conn.execute(
            "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'),"
            " 400) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s",
            (n,),
        ).fetchall()
        return [
            {"calls": c, "total_ms": round(t, 1), "mean_ms": round(t / max(1, c), 3),
             "rows": r, "query": q}
            for c, t, r, q in rows
        ]  # fmt: skip

    def close(self) -> None:
        self._conn.close()


@contextmanager
def database(tmp: Path, use_postgres: bool) -> Iterator[tuple[str, DbServer | None]]:
    """SQLite in ``tmp``, or a private PostgreSQL server for the run (removed afterwards)
    and its ``DbServer``."""
    if not use_postgres:
        yield f"sqlite:///{tmp}/vx.db", None
        return
    with postgres_server() as server:
        db = DbServer(server)
        try:
            yield server.url, db
        finally:
            db.close()


def db_phase(db: DbServer | None, cpu0: float | None, elapsed: float) -> dict[str, Any]:
    """What the database server spent in a phase that began at ``cpu0`` (``db.cpu()``) and
    lasted ``elapsed`` seconds: CPU seconds, cores, its top statements (PostgreSQL only)."""
    if db is None or cpu0 is None:
        return {}
    used = db.cpu() - cpu0
    return {
        "db_server_cpu_seconds": round(used, 2),
        "db_server_cores": round(used / max(elapsed, 1e-9), 3),
        "db_top_statements": db.top(),
    }


def db_start(db: DbServer | None) -> float | None:
    """The start of a phase for ``db_phase``: statements forgotten, the CPU so far."""
    if db is None:
        return None
    db.reset()
    return db.cpu()


@contextmanager
def controller(
    tmp: Path, bundles: str = "auto", db_url: str | None = None, max_dumps: int | None = None
) -> Iterator[ControllerProcess]:
    """A controller on loopback (SQLite in ``tmp`` unless ``db_url``); stopped (by pid)
    afterwards. ``max_dumps``: its ``VXPLANE_OPENFLOW_MAX_DUMPS`` (None: its default)."""
    env = {"VXPLANE_HOST_DEAD_AFTER": "86400", "VXPLANE_OPENFLOW_BUNDLES": bundles}
    if max_dumps is not None:
        env["VXPLANE_OPENFLOW_MAX_DUMPS"] = str(max_dumps)
    ctl = ControllerProcess(
        db_url or f"sqlite:///{tmp}/vx.db",
        tmp / "controller.log",
        free_port(),
        free_port(),
        env=env,
    )
    try:
        ctl.start(timeout=120)
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


def until_taken(send: Callable[[], httpx.Response], busy: Retries | None = None) -> httpx.Response:
    """``send()`` again while it is answered 503 with a Retry-After (nothing was written),
    after the advised delay, at most 30 times; each retry counted in ``busy``."""
    for _ in range(30):
        r = send()
        delay = advised_delay(r.status_code, r.headers.get("retry-after"))
        if delay is None:
            break
        if busy is not None:
            busy.add()
        time.sleep(delay)
    return r


def post_batch(api: httpx.Client, items: list[dict[str, Any]], busy: Retries) -> list[Any]:
    """One ``POST /api/v1/bindings``; its outcomes. A 503 is retried after its Retry-After
    (nothing was written) and counted in ``busy``; an item not answered 200/201 raises."""
    r = until_taken(lambda: api.post("/api/v1/bindings", json={"items": items}), busy)
    outcomes = r.raise_for_status().json()["items"]
    bad = [(it["name"], o) for it, o in zip(items, outcomes, strict=True)
           if o["status"] not in (200, 201)]  # fmt: skip
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(items)} batch items failed, first: {bad[0]}")
    return list(outcomes)


def populate(
    ctl: ControllerProcess,
    hosts: list[str],
    per_host: int,
    clients: int,
    busy: Retries,
    batch: int = 0,
) -> tuple[list[float], list[float], int]:
    """E endpoints per host from ``clients`` threads: create-and-bind calls, or with
    ``batch`` that many items per batch request; (per-call durations, retries included,
    their end times, endpoints per call)."""
    jobs = [(h, j) for j in range(per_host) for h in hosts]
    per_call = max(1, batch)
    calls = [jobs[i : i + per_call] for i in range(0, len(jobs), per_call)]
    lat: list[float] = []
    ends: list[float] = []
    lock = threading.Lock()

    def work(mine: list[list[tuple[str, int]]]) -> None:
        with ctl.client(timeout=600) as api:
            for call in mine:
                t0 = time.perf_counter()
                if batch:
                    items = [{"network": NET, "name": f"e-{h}-{j}", "host": h,
                              "ofport": 2 + j, "create": True} for h, j in call]  # fmt: skip
                    post_batch(api, items, busy)
                else:
                    h, j = call[0]
                    bind(api, f"e-{h}-{j}", h, 2 + j, None, busy)
                with lock:
                    ends.append(time.perf_counter())
                    lat.append(ends[-1] - t0)

    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(work, calls[i::clients]) for i in range(clients)]:
            f.result()
    return lat, sorted(ends), per_call


def tenth_rates(ends: list[float], start: float, per_call: int = 1) -> tuple[float, float]:
    """Endpoints per second over the first and the last tenth of the calls."""
    k = max(1, len(ends) // 10)
    first = k * per_call / (ends[k - 1] - start)
    last = k * per_call / (ends[-1] - ends[-k - 1]) if len(ends) > k else first
    return round(first, 1), round(last, 1)


def all_converged(api: httpx.Client, n: int) -> tuple[bool, list[Any]]:
    """Whether all ``n`` hosts answer converged; and the listing."""
    hosts = get_all(api, "/api/v1/hosts")
    return len(hosts) == n and all(h["status"] == "converged" for h in hosts), hosts


def wait_converged(api: httpx.Client, n: int, timeout: float) -> tuple[float, list[Any]]:
    """Poll the hosts until all ``n`` are converged; (seconds, the last listing)."""
    t0 = time.monotonic()
    while True:
        done, hosts = all_converged(api, n)
        if done:
            return time.monotonic() - t0, hosts
        if time.monotonic() - t0 > timeout:
            states = statistics.multimode(h["status"] for h in hosts)
            raise RuntimeError(f"not converged after {timeout:.0f} s (mostly {states})")
        time.sleep(0.2)


def _churn_main(job: tuple[Any, ...]) -> dict[str, Any]:
    """One churn client process (``bench.bindloop``) with an agent token of its host: from
    ``start_at`` for ``seconds``, unbind its bound endpoints and bind them again (single
    calls, or ``batch`` items per batch request); every endpoint is bound again when it
    returns."""
    return bindloop.churn(
        *job, network=NET, unbind_first=True, tries=30, timeout=120, check_items=True
    )


def _ready(_: int) -> None:
    time.sleep(0.2)  # held, so each of the pool's processes takes one


def churn(
    ctl: ControllerProcess, api: httpx.Client, hosts: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """``args.churn_clients`` processes, each an agent of a host of its own spread over the
    fleet, unbind and rebind that host's filled endpoints for ``args.churn_seconds``."""
    assert ctl.pid is not None
    e, n = args.endpoints_per_host, len(hosts)
    k = min(args.churn_clients, n)
    jobs = []
    for c in range(k):
        h = hosts[c * n // k]
        token = api.post("/api/v1/tokens", json={"role": "agent", "host": h})
        names = [f"e-{h}-{j}" for j in range(e)]
        ofports = [2 + j for j in range(e)]
        jobs.append([ctl.url, token.raise_for_status().json()["token"], h, names, ofports])
    with mp.get_context("spawn").Pool(k) as pool:
        pool.map(_ready, range(k), chunksize=1)  # every client process up and imported
        start_at = time.monotonic() + 1.0
        time.sleep(1.0)
        cpu0, load0 = cpu_seconds(ctl.pid), load()
        spy = _profile(args, ctl.pid)
        work = [(*job, start_at, args.churn_seconds, args.churn_batch) for job in jobs]
        outs = pool.map(_churn_main, work, chunksize=1)
        _stop_profile(spy)
    t_end = max(o["end"] for o in outs)
    elapsed = t_end - start_at
    used = cpu_seconds(ctl.pid) - cpu0
    load1 = load()
    t_poll = time.monotonic()
    done, _ = all_converged(api, n)
    listing_s = time.monotonic() - t_poll
    if not done:
        wait_converged(api, n, args.timeout)
    lag = time.monotonic() - t_end  # CLOCK_MONOTONIC: one clock for all processes
    if tpoints.ON:
        tpoints.mark("b_churn_end", f"{t_end:.6f}")
        tpoints.mark("b_converged", f"{lag:.3f}")
    calls = [x for o in outs for x in o["lat"]]
    events = sum(o["events"] for o in outs)
    return {
        "clients": k,
        "batch": args.churn_batch,
        "events": events,
        "seconds": round(elapsed, 2),
        "events_per_second": round(events / elapsed, 1),
        "calls": len(calls),
        "call_ms": ms(calls),
        "retried_503": sum(o["retried"] for o in outs),
        "controller_cpu_seconds": round(used, 2),
        "controller_cpu_ms_per_event": round(used * 1000 / max(1, events), 3),
        # an upper bound: the moment the listing that saw every host converged came back
        "converged_after_last_answer_ms": round(lag * 1000, 1),
        "one_hosts_listing_ms": round(listing_s * 1000, 1),
        "load_average_before_after": [load0, load1],
    }


def _profile(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes] | None:
    """With ``--py-spy BIN``: sample the controller's GIL holder during the churn, raw
    (collapsed) stacks with thread names to ``--profile-out``."""
    if not getattr(args, "py_spy", None):
        return None
    command = [args.py_spy, "record", "--pid", str(pid)]
    command += ["--duration", str(int(args.churn_seconds) + 60), "--format", "raw", "--threads"]
    command += ["--gil", "--nonblocking", "--rate", "200", "--output", args.profile_out]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


IDLE_SECONDS = 5.0


def idle_cpu(pid: int, seconds: float = IDLE_SECONDS) -> float:
    """The controller's CPU (cores: CPU seconds per second) over ``seconds`` of a converged
    cluster with no API call: echo probes, lease renewals, audits, the host watch. A cost per
    change measured as CPU over a phase carries this share of the phase's time too."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)


def flow_counts_agree(api: httpx.Client, fleet: Fleet | FleetProcesses) -> bool:
    """The fleet's models against what the controller believes each switch holds."""
    told = {h["dpid"]: (h["switch"] or {}).get("flow_count") for h in get_all(api, "/api/v1/hosts")}
    return all(told.get(f"{d:016x}") == n for d, n in fleet.flow_counts().items())


def fleet_cpu(fleet: Fleet | FleetProcesses) -> float:
    """CPU seconds of the fleet's processes so far (an in-process fleet: this whole process,
    the API polling included)."""
    if isinstance(fleet, FleetProcesses):
        return sum(cpu_seconds(p) for p in fleet.pids())
    return cpu_seconds(os.getpid())


class RssSampler:
    """VmRSS of the controller every ``every`` s from a start (a thread), and its peak:
    where in a restart the restarted process's memory goes (``markers`` from its log)."""

    def __init__(self, ctl: ControllerProcess, every: float = 0.1) -> None:
        self.ctl, self.every = ctl, every
        self.t0 = time.time()
        self.samples: list[tuple[float, int]] = []  # (s since t0, VmRSS KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self.t0 = time.time()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            pid = self.ctl.pid
            if pid is None:
                continue
            try:
                rss = rss_kib(pid)["VmRSS"]
            except (OSError, KeyError):
                continue  # the killed process is gone, the new one not started yet
            self.samples.append((round(time.time() - self.t0, 2), rss))

    def report(self, log_path: Path, log_offset: int) -> dict[str, Any]:
        """The peak sample, a timeline (one sample a second, MiB) and the log's markers,
        all in s since the kill."""
        peak = max(self.samples, key=lambda s: s[1], default=(0.0, 0))
        timeline: dict[int, int] = {}
        for t, rss in self.samples:
            timeline[int(t)] = max(timeline.get(int(t), 0), rss >> 10)
        return {
            "peak_vmrss_sampled_kib": peak[1],
            "peak_at_s": peak[0],
            "vmrss_mib_by_second": sorted(timeline.items()),
            "log_markers_s": log_markers(log_path, log_offset, self.t0),
        }

    def phases(self, marks: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
        """The peak and last VmRSS (MiB) of each phase: ``marks`` are (phase, its end in
        ``time.time()``), in order; a phase runs from the previous mark."""
        out: dict[str, dict[str, float]] = {}
        start = 0.0
        for name, end in marks:
            end -= self.t0
            inside = [rss for t, rss in self.samples if start <= t < end]
            if inside:
                out[name] = {
                    "seconds": round(end - start, 1),
                    "peak_vmrss_mib": round(max(inside) / 1024, 1),
                    "last_vmrss_mib": round(inside[-1] / 1024, 1),
                }
            start = end
        return out


_MARKERS = {  # first and last line of each kind in the restarted controller's log
    "connected": "connected from",
    "synced": "synced:",
    "held": "held: its dpid",
}


def log_markers(log_path: Path, offset: int, t0: float) -> dict[str, list[float]]:
    """[first, last] time (s since ``t0``, wall clock) of each ``_MARKERS`` kind of line in
    the controller's log from ``offset`` (its asctime: ``2026-12-01 01:21:37,123``)."""
    out: dict[str, list[float]] = {}
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        kind = next((k for k, text in _MARKERS.items() if text in line), None)
        if kind is None or len(line) < 23:
            continue
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
            t = round(stamp + int(line[20:23]) / 1000 - t0, 2)
        except ValueError:
            continue
        first_last = out.setdefault(kind, [t, t])
        first_last[1] = t
    return out


def restart(
    ctl: ControllerProcess,
    fleet: Fleet | FleetProcesses,
    n: int,
    args: argparse.Namespace,
    result: dict[str, Any],
) -> None:
    """SIGKILL the converged controller, start it on the same database, time it until every
    host is converged again, and count what the fleet got meanwhile."""
    assert ctl.pid is not None
    result["rss_kib_before_restart"] = rss_kib(ctl.pid)
    before = fleet.totals()
    load0 = load()
    t_kill = time.monotonic()
    sampler = RssSampler(ctl)
    sampler.start()
    ctl.kill()
    try:
        ctl.start(timeout=args.timeout)
        assert ctl.pid is not None
        t_up = time.monotonic()
        with ctl.client(timeout=600) as api:
            took, _ = wait_converged(api, n, args.timeout)
            sampled = sampler.report(ctl.log_path, ctl.log_offset)
            after = fleet.totals()
            agree = flow_counts_agree(api, fleet)
    finally:
        sampler.stop()
    t_done = t_up + took
    delta = {k: after[k] - before[k] for k in after if k != "flows"}
    result["restart"] = {
        "seconds_from_kill": round(t_done - t_kill, 2),
        "seconds_from_healthz": round(took, 2),
        "controller_cpu_seconds": round(cpu_seconds(ctl.pid), 2),
        "fleet_during_restart": delta,
        "flows_before_after": [before["flows"], after["flows"]],
        "flow_counts_agree": agree,
        "load_average_before": load0,
        "rss_of_the_restarted_process": sampled,
        "smaps_kib_when_converged": smaps_kib(ctl.pid),
    }


def register(api: httpx.Client, hosts: list[str]) -> None:
    """Register ``hosts`` (8 at a time) and create the network (a busy answer is retried)."""

    def one(i: int) -> None:
        body = {"underlay_ip": underlay(i), "dpid": f"{DPID_BASE + i + 1:016x}"}
        until_taken(lambda: api.put(f"/api/v1/hosts/{hosts[i]}", json=body)).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(len(hosts))))
    net = {"name": NET, "subnet": "10.64.0.0/12"}
    until_taken(lambda: api.post("/api/v1/networks", json=net)).raise_for_status()


def run(
    args: argparse.Namespace,
    result: dict[str, Any],
    tmp: Path,
    db_url: str | None = None,
    db: DbServer | None = None,
) -> None:
    """Every step on a controller of its own (``db_url``: SQLite in ``tmp`` unless given;
    ``db``: the PostgreSQL server's CPU and statements per phase are measured too)."""
    n, e = args.switches, args.endpoints_per_host
    hosts = [host_name(i) for i in range(n)]
    fill_batch = getattr(args, "fill_batch", 0)
    max_dumps = getattr(args, "max_dumps", None)
    with (
        controller(tmp, args.bundles, db_url, max_dumps) as ctl,
        ctl.client(timeout=600) as api,
    ):
        assert ctl.pid is not None
        result["load_average_at_start"] = load()
        # VmRSS every 0.25 s up to the restart, with the end of each phase
        steady, marks = RssSampler(ctl, 0.25), [("register", 0.0)]
        steady.start()
        register(api, hosts)
        marks[0] = ("register", time.time())
        cpu0, d0 = cpu_seconds(ctl.pid), db_start(db)
        t0 = time.perf_counter()
        busy = Retries()
        lat, ends, per_call = populate(ctl, hosts, e, args.clients, busy, fill_batch)
        fill = time.perf_counter() - t0
        first, last = tenth_rates(ends, t0, per_call)
        filled = n * e
        result["populate"] = {
            "endpoints": filled,
            "clients": args.clients,
            "endpoints_per_call": per_call,
            "calls": len(lat),
            "seconds": round(fill, 2),
            "endpoints_per_second": round(filled / fill, 1),
            "call_ms": ms(lat),
            "retried_503": busy.n,
            "first_tenth_per_second": first,
            "last_tenth_per_second": last,
            "controller_cpu_seconds": round(cpu_seconds(ctl.pid) - cpu0, 2),
            "controller_cpu_ms_per_endpoint": round(
                (cpu_seconds(ctl.pid) - cpu0) * 1000 / max(1, filled), 2
            ),
            "load_average_at_end": load(),
            **db_phase(db, d0, fill),
        }
        result["rss_kib_before_fleet"] = rss_kib(ctl.pid)
        result["smaps_kib_before_fleet"] = smaps_kib(ctl.pid)
        marks.append(("fill", time.time()))
        print(f"filled {filled} endpoints in {fill:.1f} s; connecting", file=sys.stderr)
        dpids = [DPID_BASE + i + 1 for i in range(n)]
        k = getattr(args, "fleet_processes", 0)
        fleet: Fleet | FleetProcesses = (
            FleetProcesses("127.0.0.1", ctl.openflow_port, dpids, k)
            if k
            else Fleet("127.0.0.1", ctl.openflow_port, dpids)
        )
        result["fleet_processes"] = k
        try:
            cpu0, d0 = cpu_seconds(ctl.pid), db_start(db)
            fleet.start()
            own0 = fleet_cpu(fleet)
            cold, listing = wait_converged(api, n, args.timeout)
            result["cold_start"] = {
                "seconds": round(cold, 2),
                "controller_cpu_seconds": round(cpu_seconds(ctl.pid) - cpu0, 2),
                "fleet_cpu_seconds": round(fleet_cpu(fleet) - own0, 2),
                "wanted_revision": listing[0]["wanted_revision"],
                "load_average_at_end": load(),
                **fleet.totals(),
                **db_phase(db, d0, cold),
            }
            marks.append(("cold_start", time.time()))
            result["smaps_kib_after_cold_start"] = smaps_kib(ctl.pid)
            print(f"converged {cold:.1f} s after connecting; attaching", file=sys.stderr)
            d0, t0 = db_start(db), time.monotonic()
            idle = idle_cpu(ctl.pid)
            result["idle_controller_cpu"] = round(idle, 4)
            if db is not None:
                result["idle_db_server_cores"] = db_phase(db, d0, time.monotonic() - t0)[
                    "db_server_cores"
                ]
            attach: list[float] = []
            busy = Retries()
            not_ready = 0
            cpu0, t0, d0 = cpu_seconds(ctl.pid), time.monotonic(), db_start(db)
            for k in range(args.attaches):
                t1 = time.perf_counter()
                state = bind(api, f"a-{k}", hosts[k % n], 2 + e + k // n, 5, busy)
                attach.append(time.perf_counter() - t1)
                not_ready += state != "ready"
            if attach:
                result["attach_to_ready_ms"] = {
                    "attaches": len(attach),
                    "retried_503": busy.n,
                    "not_ready_after_5_s": not_ready,
                    **ms(attach),
                    "controller_cpu_ms_per_attach": round(
                        (cpu_seconds(ctl.pid) - cpu0) * 1000 / len(attach), 1
                    ),
                    # the same less what the converged controller spends idle meanwhile
                    "controller_cpu_ms_per_attach_above_idle": round(
                        (cpu_seconds(ctl.pid) - cpu0 - idle * (time.monotonic() - t0))
                        * 1000
                        / len(attach),
                        1,
                    ),
                    "load_average_at_end": load(),
                    **db_phase(db, d0, time.monotonic() - t0),
                }
            marks.append(("attaches", time.time()))
            if getattr(args, "churn_seconds", 0) > 0:
                print(f"churn for {args.churn_seconds:.0f} s", file=sys.stderr)
                f0, d0 = fleet_cpu(fleet), db_start(db)
                result["churn"] = ch = churn(ctl, api, hosts, args)
                ch["fleet_cpu_seconds"] = round(fleet_cpu(fleet) - f0, 2)
                # over the churn and its convergence (the clients' start-up second included)
                phase = ch["seconds"] + ch["converged_after_last_answer_ms"] / 1000 + 1
                ch.update(db_phase(db, d0, phase))
                if db is not None:
                    ch["db_server_cpu_ms_per_event"] = round(
                        ch["db_server_cpu_seconds"] * 1000 / max(1, ch["events"]), 3
                    )
            per_switch = list(fleet.flow_counts().values())
            result["flows_per_switch"] = {
                "min": min(per_switch),
                "median": statistics.median(per_switch),
                "max": max(per_switch),
            }
            result["fleet_totals"] = fleet.totals()
            result["flow_counts_agree"] = flow_counts_agree(api, fleet)
            result["rss_kib"] = rss_kib(ctl.pid)
            marks.append(("churn_and_counts", time.time()))
            steady.stop()
            result["vmrss_by_phase_before_restart"] = steady.phases(marks)
            result["smaps_kib_before_restart"] = smaps_kib(ctl.pid)
            if getattr(args, "restart", True):
                print("converged; SIGKILL and restart", file=sys.stderr)
                d0 = db_start(db)
                restart(ctl, fleet, n, args, result)
                result["restart"].update(db_phase(db, d0, result["restart"]["seconds_from_kill"]))
                assert ctl.pid is not None
                result["rss_kib_after_restart"] = rss_kib(ctl.pid)
        finally:
            fleet.stop()
        result["load_average_at_end"] = load()


def summary(r: dict[str, Any]) -> str:
    p, c = r["populate"], r["cold_start"]
    lines = [
        f"{r['switches']} switches x {r['endpoints_per_host']} endpoints/host "
        f"({r.get('database', 'sqlite')})",
        f"  populate     {p['endpoints_per_second']} endpoints/s, {p['endpoints_per_call']} per "
        f"call (call median {p['call_ms']['median']} ms, p99 {p['call_ms']['p99']} ms, "
        f"{p['retried_503']} retried 503s; "
        f"first tenth {p['first_tenth_per_second']}/s, last {p['last_tenth_per_second']}/s)",
        f"  cold start   {c['seconds']} s to all converged, {c['flow_mods']} flow-mods, "
        f"{c['connects']} connects, {c['bundle_commits']} bundles "
        f"(bundles: {r['bundles']})",
    ]
    if a := r.get("attach_to_ready_ms"):
        lines.append(f"  attach       median {a['median']} ms, p99 {a['p99']} ms ({a['attaches']}),"
                     f" {a['controller_cpu_ms_per_attach']} ms CPU each"
                     f" ({a.get('controller_cpu_ms_per_attach_above_idle')} above the idle"
                     f" {r.get('idle_controller_cpu')} cores)")  # fmt: skip
    if ch := r.get("churn"):
        lines.append(
            f"  churn        {ch['events_per_second']} events/s ({ch['clients']} clients, batch "
            f"{ch['batch']}), call median {ch['call_ms']['median']} ms, p99 "
            f"{ch['call_ms']['p99']} ms, {ch['controller_cpu_ms_per_event']} ms CPU/event, "
            f"converged {ch['converged_after_last_answer_ms']} ms after the last answer"
        )
    if rs := r.get("restart"):
        lines.append(
            f"  restart      {rs['seconds_from_kill']} s from SIGKILL to all converged, "
            f"{rs['fleet_during_restart']['flow_mods']} flow-mods, "
            f"{rs['fleet_during_restart']['bundle_commits']} bundles"
        )
    peak = max(r[k]["VmHWM"] for k in ("rss_kib", "rss_kib_after_restart") if k in r)
    lines += [
        f"  RSS          {r['rss_kib']['VmRSS'] // 1024} MiB before the restart "
        f"(peak {peak // 1024} MiB)",
        f"  flows/switch {r['flows_per_switch']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--switches", type=int, default=100)
    p.add_argument("--endpoints-per-host", type=int, default=10)
    p.add_argument("--clients", type=int, default=8, help="API client threads for the fill")
    p.add_argument(
        "--fill-batch",
        type=int,
        default=200,
        help=f"endpoints per batch request in the fill (1..{MAX_BATCH}; 0: create-and-bind calls)",
    )
    p.add_argument("--attaches", type=int, default=200)
    p.add_argument("--churn-seconds", type=float, default=60.0, help="0: no churn")
    p.add_argument("--churn-clients", type=int, default=16, help="churn client processes")
    p.add_argument("--churn-batch", type=int, default=0, help="items per churn batch (0: none)")
    p.add_argument(
        "--fleet-processes",
        type=int,
        default=2,
        help="processes the emulated switches are dealt over (0: a thread of this process)",
    )
    p.add_argument("--no-restart", dest="restart", action="store_false", help="skip the restart")
    p.add_argument("--postgres", action="store_true", help="a private PostgreSQL, not SQLite")
    p.add_argument("--timeout", type=float, default=600, help="limit of each wait (s)")
    p.add_argument("--keep-log", action="store_true", help="keep the controller's temp dir")
    p.add_argument("--py-spy", default=None, help="py-spy binary: profile the controller's churn")
    p.add_argument("--profile-out", default="bench/results/scale-churn-profile.txt")
    p.add_argument(
        "--bundles",
        choices=("auto", "always", "never"),
        default="auto",
        help="the controller's VXPLANE_OPENFLOW_BUNDLES (always: the cold fill in bundles too)",
    )
    p.add_argument(
        "--max-dumps",
        type=int,
        default=None,
        help="the controller's VXPLANE_OPENFLOW_MAX_DUMPS (flow dumps under way at once)",
    )
    args = p.parse_args(argv)
    if not 0 <= args.fill_batch <= MAX_BATCH:
        p.error(f"--fill-batch must be 0..{MAX_BATCH}")
    if args.churn_batch > args.endpoints_per_host:
        p.error("--churn-batch must not exceed --endpoints-per-host (each item another endpoint)")
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.scale", *(argv or sys.argv[1:])]),
        "switches": args.switches,
        "endpoints_per_host": args.endpoints_per_host,
        "bundles": args.bundles,
        "max_dumps": args.max_dumps,
        "database": "postgresql" if args.postgres else "sqlite",
        "cpus": os.cpu_count(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-scale-"))
    failed = None
    try:
        with ExitStack() as stack:
            db_url, db = stack.enter_context(database(tmp, args.postgres))
            run(args, result, tmp, db_url, db)
    except Exception as exc:  # keep what was measured before the failure
        failed = result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep_log:
            print(f"controller log: {tmp / 'controller.log'}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (
        f"scale-{result['database']}-{args.switches}x{args.endpoints_per_host}"
        f"-{int(time.time())}.json"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if failed is not None:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
