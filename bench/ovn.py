"""OVN 23.03 on vxplane's lab: request to the first ping answered, the figure bench.run takes.

Run as root: ``.venv/bin/python -m bench.ovn [--endpoints 100]``, or ``--compare`` to run
vxplane's ``bench.run`` measurement and then this one in the same process and print both.

The lab (``vxlab.lab.Lab``, prefix ``ovnb-``, underlay 198.18.61.0/24, no agents) gives 3
emulated hosts, each a netns with its own ovsdb-server and ovs-vswitchd (netdev datapath) and
the underlay address on br-phy. Its vxplane br-int is deleted; ovn-controller makes its own
(``ovn-bridge-datapath-type=netdev``, Geneve to the other hosts' ``ovn-encap-ip``). The NB and
SB ovsdb-servers and ovn-northd run in the root namespace, the SB listening on the lab's
gateway address (where vxplane's controller listens in bench.run); ovn-controller runs in
each host netns. Every daemon is started directly (no ovn-ctl), with its files under
``/run/vxplane/ovn-bench-ovnb/``; everything is removed afterwards, also on failure, and
leftovers of a killed run are removed (by recorded pid file) before the next one starts.

One logical switch (10.60.0.0/16), ports with static "MAC IP" addresses. A peer on h3; N
ports are created one at a time, alternating h1 and h2, each as soon as the previous one's
first ping was answered. Per port, timed from before the first step (the netns is made
before the clock starts, as in bench.run):

1. at the same time: ``ovn-nbctl lsp-add bench P -- lsp-set-addresses P "MAC IP"`` (the
   orchestrator's write, no ``--wait``), and the plumbing on the host: a veth into the
   netns, MAC, IP, MTU 1400 (Geneve), TX checksum offload off (``ip`` and ``ethtool``);
2. ``ovs-vsctl --no-wait add-port br-int V -- set Interface V external_ids:iface-id=P``
   (returns once the OVSDB committed it; without ``--no-wait`` it would also wait for
   ovs-vswitchd's reconfiguration, which step 3 covers anyway: ovn-controller binds only an
   interface that has its ofport, so ovn-installed comes after it);
3. "ready": ``ovs-vsctl wait-until Interface V external_ids:ovn-installed=true``, the mark
   ovn-controller sets once the port's flows are installed (what ovn-kubernetes' CNI waits
   for, and what vxplane's agent answer stands for: DESIGN.md). Starting this watcher at the
   request instead, beside step 1, was tried: on 2 cores it was slower (three runs each of
   30 ports, medians 49-60 ms against 43-50 ms), the watcher taking CPU from the plumbing;
4. the first ping: ``bench.run.first_ping``, the same function vxplane's side uses (one
   ``ping -c1 -W1`` after the other from the peer's netns until one is answered).

A "lost first ping" is a ping that got no answer within 1 s and needed a retry.

IPv6 is off in the ports' namespaces (set before the clock starts, as Docker 26 and later
do on IPv4-only networks; ``--ipv6`` leaves the kernel default). With it on, every new
interface sends link-local multicast (DAD, MLD reports, router solicitations). An OVN
logical switch floods that to every port on every host; on this lab's userspace datapath
each port host's ovs-vswitchd then used about 4 times the CPU (8.9 s against 2.0 s for 100
ports) and OVN's median roughly doubled (about 110 ms against 59 ms; one run each on a
2-core machine busy with other tests). vxplane does not flood it, yet gained too (median
46 ms against 34-38 ms, two runs each). ``--compare`` applies the same setting to both
sides; ``bench.run`` alone keeps the kernel default unless given ``--no-ipv6``, so compare
it with this command's figures only with that flag.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from bench.run import RESULTS, first_ping, no_ipv6, pct
from vxlab.lab import Lab

PREFIX = "ovnb-"
UNDERLAY = "198.18.61.0/24"
WORKDIR = Path("/run/vxplane/ovn-bench-ovnb")
SUBNET = IPv4Network("10.60.0.0/16")
SWITCH = "bench"
MTU = 1400  # underlay 1500 minus Geneve over IPv4 with OVN's option (58), rounded down
SB_PORT = 6642
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
PEER = f"{PREFIX}peer"


class BenchError(RuntimeError):
    """A step of the OVN bench failed."""


def sh(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 30) -> str:
    """Run ``argv``; its stdout, or BenchError with its stderr."""
    done = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


# -- daemons, by pid file --------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    except OSError:
        return []


def stop_daemon(pidfile: Path, must_contain: str, timeout: float = 5.0) -> None:
    """SIGTERM (then SIGKILL) the pid in ``pidfile`` if its command line names
    ``must_contain`` (our work dir): never a process we did not start."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    if not any(must_contain in a for a in _cmdline(pid)):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _cmdline(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _cmdline(pid):
        os.kill(pid, signal.SIGKILL)


def stop_all(workdir: Path) -> None:
    """Stop every daemon whose pid file lies under ``workdir`` (ovn-controllers first)."""
    if not workdir.exists():
        return
    pidfiles = sorted(workdir.rglob("*.pid"), key=lambda p: p.name != "ovn-controller.pid")
    for pidfile in pidfiles:
        stop_daemon(pidfile, str(workdir))


def remove_leftovers(workdir: Path) -> None:
    """Stop our daemons, delete the namespaces recorded in ``workdir/netns``, remove it."""
    stop_all(workdir)
    listed = workdir / "netns"
    for name in listed.read_text().split() if listed.exists() else []:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    shutil.rmtree(workdir, ignore_errors=True)


def start_daemon(argv: Sequence[str], pidfile: Path, env: dict[str, str] | None = None) -> None:
    """Start a daemon that detaches (``--detach``) and wait for its pid file."""
    sh([*argv, f"--pidfile={pidfile}", "--detach", "--no-chdir"], env=env)
    if not pidfile.exists():
        raise BenchError(f"{argv[0]} wrote no pid file {pidfile}")


# -- the OVN lab ------------------------------------------------------------------------------


@dataclass
class OvnLab:
    """The lab plus OVN: NB, SB and northd in the root namespace, ovn-controller per host."""

    lab: Lab
    hosts: list[str]
    workdir: Path
    ipv6: bool = False  # leave IPv6 on in the ports' namespaces (see the module docstring)

    @property
    def central(self) -> Path:
        return self.workdir / "central"

    def nbctl(self, *args: str) -> str:
        return sh(["ovn-nbctl", f"--db=unix:{self.central / 'nb.sock'}", *args])

    def sbctl(self, *args: str) -> str:
        return sh(["ovn-sbctl", f"--db=unix:{self.central / 'sb.sock'}", *args])

    def vsctl(self, host: str, *args: str, timeout: float = 30) -> str:
        paths = self.lab.host_paths(host)
        return sh(["ovs-vsctl", f"--db={paths.db}", *args], env=paths.env, timeout=timeout)

    def add_netns(self, name: str) -> None:
        """Make netns ``name``, recorded first so that a later run removes it if we die."""
        with open(self.workdir / "netns", "a") as f:
            f.write(name + "\n")
        sh(["ip", "netns", "add", name])
        if not self.ipv6:
            no_ipv6(name)

    def start_central(self) -> None:
        c = self.central
        c.mkdir(parents=True)
        env = {**os.environ, "OVS_RUNDIR": str(c), "OVN_RUNDIR": str(c), "OVS_DBDIR": str(c)}
        for db, schema, remotes in (
            ("nb", NB_SCHEMA, []),
            ("sb", SB_SCHEMA, [f"--remote=ptcp:{SB_PORT}:{self.lab.gateway_ip}"]),
        ):
            sh(["ovsdb-tool", "create", str(c / f"{db}.db"), schema])
            start_daemon(
                ["ovsdb-server", str(c / f"{db}.db"), f"--remote=punix:{c / f'{db}.sock'}",
                 *remotes, f"--unixctl={c / f'{db}.ctl'}", f"--log-file={c / f'{db}.log'}"],
                c / f"{db}.pid", env,
            )  # fmt: skip
        self.nbctl("init")
        self.sbctl("init")
        start_daemon(
            ["ovn-northd", f"--ovnnb-db=unix:{c / 'nb.sock'}",
             f"--ovnsb-db=unix:{c / 'sb.sock'}", f"--unixctl={c / 'northd.ctl'}",
             f"--log-file={c / 'northd.log'}"],
            c / "northd.pid", env,
        )  # fmt: skip

    def start_controller(self, index: int, host: str) -> None:
        """Hand ``host``'s OVS to ovn-controller: drop vxplane's br-int, set the chassis keys,
        start ovn-controller in the host's netns (it makes br-int itself)."""
        d = self.workdir / host
        d.mkdir(parents=True)
        encap_ip = str(self.lab.underlay_ip(index))
        self.vsctl(host, "--if-exists", "del-br", "br-int")
        self.vsctl(
            host, "set", "Open_vSwitch", ".",
            f"external_ids:system-id={host}",
            f"external_ids:hostname={host}",
            f"external_ids:ovn-remote=tcp:{self.lab.gateway_ip}:{SB_PORT}",
            "external_ids:ovn-encap-type=geneve",
            f"external_ids:ovn-encap-ip={encap_ip}",
            "external_ids:ovn-bridge-datapath-type=netdev",
        )  # fmt: skip
        paths = self.lab.host_paths(host)
        # OVS_RUNDIR: where ovn-controller finds br-int.mgmt (the host's ovs-vswitchd's dir)
        # ovn-controller has no --unixctl: its socket goes to OVN_RUNDIR
        env = {**paths.env, "OVN_RUNDIR": str(d)}
        start_daemon(
            ["ip", "netns", "exec", host, "ovn-controller", paths.db,
             f"--log-file={d / 'ovn-controller.log'}"],
            d / "ovn-controller.pid", env,
        )  # fmt: skip

    def wait_chassis(self, timeout: float = 30) -> None:
        """Until every host's chassis is in the SB and br-int has a tunnel to every other."""
        deadline = time.monotonic() + timeout
        want = len(self.hosts) - 1
        while True:
            chassis = set(self.sbctl("--bare", "--columns=name", "list", "Chassis").split())
            tunnels = {
                h: self.vsctl(h, "--bare", "--columns=name", "find", "Interface", "type=geneve")
                for h in self.hosts
            }
            ok = [h for h, ports in tunnels.items() if len(ports.split()) >= want]
            if chassis >= set(self.hosts) and len(ok) == len(self.hosts):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"OVN not up in {timeout} s: chassis {chassis}, tunnels {tunnels}")
            time.sleep(0.1)


@contextmanager
def ovn_lab(hosts: int = 3, workdir: Path = WORKDIR, ipv6: bool = False) -> Iterator[OvnLab]:
    """Bring up the lab and OVN on it; remove all of it afterwards, also on failure."""
    lab = Lab(prefix=PREFIX, underlay=UNDERLAY)
    remove_leftovers(workdir)  # of a killed run
    lab.down()
    workdir.mkdir(parents=True)
    try:
        # agents=False: no vxplane agent; the br-int it makes is replaced by OVN's
        lab.up(hosts=hosts, agents=False, openflow=f"tcp:{lab.gateway_ip}:1")
        names = [h["name"] for h in lab.status()["hosts"]]
        ovn = OvnLab(lab, names, workdir, ipv6)
        ovn.start_central()
        for i, host in enumerate(names, start=1):
            ovn.start_controller(i, host)
        ovn.wait_chassis()
        yield ovn
    finally:
        stop_all(workdir)  # ovn-controllers before the OVS they talk to
        lab.down()
        remove_leftovers(workdir)


# -- ports ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Port:
    name: str  # logical switch port, netns, and the OVS port's iface-id
    host: str
    ip: IPv4Address

    @property
    def mac(self) -> str:
        return "0a:60:" + ":".join(f"{b:02x}" for b in self.ip.packed)

    @property
    def veth(self) -> str:
        return f"v{self.name.removeprefix(PREFIX)}"[:15]


def _timed(fn: Any, *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def plumb(ovn: OvnLab, p: Port) -> None:
    """The host side of a port: veth into netns ``p.name`` (eth0), MAC, IP, MTU, TX offload off."""
    sh(["ip", "-n", p.host, "link", "add", p.veth, "mtu", str(MTU), "type", "veth",
        "peer", "name", "eth0", "mtu", str(MTU), "address", p.mac, "netns", p.name])  # fmt: skip
    sh(["ip", "-n", p.host, "link", "set", p.veth, "up"])
    sh(["ip", "netns", "exec", p.name, "ethtool", "-K", "eth0", "tx", "off"])
    batch = f"link set lo up\nlink set eth0 up\naddr add {p.ip}/{SUBNET.prefixlen} dev eth0\n"
    done = subprocess.run(["ip", "-n", p.name, "-b", "-"], input=batch, text=True,
                          capture_output=True, timeout=30)  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"ip -n {p.name} -b: {done.stderr.strip()}")


def add_lsp(ovn: OvnLab, p: Port) -> None:
    ovn.nbctl("lsp-add", SWITCH, p.name, "--", "lsp-set-addresses", p.name, f"{p.mac} {p.ip}")


def add_ovs_port(ovn: OvnLab, p: Port) -> None:
    ovn.vsctl(p.host, "--no-wait", "add-port", "br-int", p.veth,
              "--", "set", "Interface", p.veth, f"external_ids:iface-id={p.name}")  # fmt: skip


def wait_installed(ovn: OvnLab, p: Port, timeout: int = 10) -> None:
    ovn.vsctl(
        p.host, f"--timeout={timeout}", "wait-until", "Interface", p.veth,
        "external_ids:ovn-installed=true", timeout=timeout + 5,
    )  # fmt: skip


def create_port(ovn: OvnLab, p: Port, pool: futures.ThreadPoolExecutor) -> dict[str, float]:
    """Create ``p`` (its netns exists) up to "ready" (ovn-installed); the steps' ms."""
    t0 = time.perf_counter()
    nb = pool.submit(_timed, add_lsp, ovn, p)
    laps = {"plumbing": _timed(plumb, ovn, p)}
    laps["ovs_port"] = _timed(add_ovs_port, ovn, p)
    laps["nbctl"] = nb.result()
    wait_installed(ovn, p)
    laps["ready"] = (time.perf_counter() - t0) * 1000
    return laps


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p90": pct(values, 0.90),
        "p99": pct(values, 0.99),
        "max": max(values),
    }


def cpu_seconds(ovn: OvnLab) -> dict[str, float]:
    """CPU time (user + system) used so far by each daemon of the lab, by pid file."""
    pidfiles = {f"{p.parent.name}/{p.stem}": p for p in ovn.workdir.rglob("*.pid")}
    for h in ovn.hosts:
        pidfiles[f"{h}/ovs-vswitchd"] = Path(ovn.lab.host_paths(h).pidfile("ovs-vswitchd"))
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pidfile in sorted(pidfiles.items()):
        try:
            stat = Path(f"/proc/{int(pidfile.read_text())}/stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def measure_ports(ovn: OvnLab, n: int, settle_ms: float = 0) -> dict[str, Any]:
    """The peer on the last host, then ``n`` ports one at a time on the others, round-robin.

    ``settle_ms`` (a diagnostic, 0 for the real figure) waits that long between "ready" and
    the first ping: do lost first pings go away when the rest of the lab has time to catch
    up?"""
    ovn.nbctl("ls-add", SWITCH, "--", "set", "Logical_Switch", SWITCH,
              f"other_config:subnet={SUBNET}")  # fmt: skip
    pool = futures.ThreadPoolExecutor(2)
    try:
        peer = Port(PEER, ovn.hosts[-1], SUBNET[2])
        ovn.add_netns(peer.name)
        create_port(ovn, peer, pool)
        cpu_before, started = cpu_seconds(ovn), time.perf_counter()
        laps: list[dict[str, float]] = []
        wall: dict[str, float] = {}  # port -> request, wall clock (to compare with logs)
        veths: dict[str, str] = {}
        ping_ms: list[float] = []
        lost: list[dict[str, Any]] = []
        for i in range(n):
            p = Port(f"{PREFIX}e{i}", ovn.hosts[i % (len(ovn.hosts) - 1)], SUBNET[10 + i])
            ovn.add_netns(p.name)
            veths[p.veth] = p.name
            t0, wall[p.name] = time.perf_counter(), time.time()
            laps.append(create_port(ovn, p, pool))
            time.sleep(settle_ms / 1000)
            neigh: list[str] = []  # the peer's ARP entry right after an unanswered ping

            def look(ip: str = str(p.ip), neigh: list[str] = neigh) -> None:
                neigh.append(sh(["ip", "-n", PEER, "neigh", "show", ip]).strip())

            ms, unanswered = first_ping(peer.name, str(p.ip), t0, on_unanswered=look)
            ping_ms.append(ms)
            if unanswered:
                lost.append({"port": p.name, "host": p.host, "ip": str(p.ip), "ms": ms,
                             "ready_ms": laps[-1]["ready"], "peer_neigh": neigh})  # fmt: skip
        cpu = {k: round(v - cpu_before.get(k, 0), 2) for k, v in cpu_seconds(ovn).items()}
        seen = log_times(ovn, wall, veths)
        return {
            "seconds": round(time.perf_counter() - started, 1),
            "daemon_cpu_seconds": cpu,
            "endpoints": n,
            "attach_to_ready_ms": stats([x["ready"] for x in laps]),
            "request_to_first_ping_ms": stats(ping_ms),
            "first_pings_lost": len(lost),
            "first_ping_unanswered": lost,
            "steps_median_ms": {
                k: statistics.median(x[k] for x in laps) for k in ("nbctl", "plumbing", "ovs_port")
            },
            "ready_after_ovs_port_median_ms": statistics.median(
                x["ready"] - max(x["nbctl"], x["plumbing"] + x["ovs_port"]) for x in laps
            ),
            "from_logs_median_ms": log_medians(seen),
            "per_port_ms": {
                "ready": [round(x["ready"], 1) for x in laps],
                "first_ping": [round(x, 1) for x in ping_ms],
                **{
                    what: [round(seen.get(name, {}).get(what, -1), 1) for name in wall]
                    for what in ("added", "claim", "installed", "up")
                },
            },
        }
    finally:
        pool.shutdown()


LOG_LINE = re.compile(
    r"^(\S+)\|\d+\|(?:"
    r"bridge\|INFO\|bridge br-int: added interface (?P<added>\S+) on port"
    r"|binding\|INFO\|Claiming lport (?P<claim>\S+) for this chassis"
    r"|binding\|INFO\|Setting lport (?P<installed>\S+) ovn-installed in OVS"
    r"|binding\|INFO\|Setting lport (?P<up>\S+) up in Southbound)"
)


def log_times(
    ovn: OvnLab, t0: dict[str, float], veths: dict[str, str]
) -> dict[str, dict[str, float]]:
    """Medians from the daemons' logs (ms resolution), per port from the request: when
    ovs-vswitchd "added interface" (the ofport exists), when ovn-controller logged "Claiming
    lport", "Setting lport ... ovn-installed in OVS" and "... up in Southbound".
    ``t0``: port -> request time (``time.time()``); ``veths``: OVS interface -> port.
    Returns port -> {"added", "claim", "installed", "up"} (ms since its request)."""
    logs = [*ovn.workdir.glob("*/ovn-controller.log")]
    logs += [Path(ovn.lab.host_paths(h).log("ovs-vswitchd")) for h in ovn.hosts]
    seen: dict[str, dict[str, float]] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            m = LOG_LINE.match(line)
            if not m:
                continue
            what = next(k for k in ("added", "claim", "installed", "up") if m[k])
            port = veths.get(m[what], "") if what == "added" else m[what]
            if port in t0:
                ts = datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                seen.setdefault(port, {}).setdefault(what, (ts.timestamp() - t0[port]) * 1000)
    return seen


def log_medians(seen: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {}
    for what in ("added", "claim", "installed", "up"):
        values = [s[what] for s in seen.values() if what in s]
        if values:
            out[f"request_to_{what}"] = statistics.median(values)
    return out


def measure(
    endpoints: int,
    hosts: int = 3,
    keep_logs: bool = False,
    settle_ms: float = 0,
    ipv6: bool = False,
) -> dict[str, Any]:
    """Bring up the OVN lab, measure, remove it; the results (as in the JSON)."""
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "ovn": sh(["ovn-controller", "--version"]).splitlines()[0],
        "loadavg_before": os.getloadavg(),
        "ipv6_in_ports": ipv6,
    }
    with ovn_lab(hosts, ipv6=ipv6) as ovn:
        try:
            result["attach"] = measure_ports(ovn, endpoints, settle_ms)
            if settle_ms:
                result["attach"]["settle_ms"] = settle_ms
        finally:
            if keep_logs:
                logs = Path(tempfile.mkdtemp(prefix="vxplane-ovn-bench-"))
                for log in ovn.workdir.rglob("*.log"):
                    shutil.copy(log, logs / f"{log.parent.name}-{log.name}")
                result["logs"] = str(logs)
    result["loadavg_after"] = os.getloadavg()
    return result


# -- output -----------------------------------------------------------------------------------


def summary(name: str, result: dict[str, Any]) -> str:
    attach = result["attach"]
    r, f = attach["attach_to_ready_ms"], attach["request_to_first_ping_ms"]
    load = result["loadavg_before"][0], result["loadavg_after"][0]
    return (
        f"{name}: {attach['endpoints']} ports, request to first ping: median {f['median']:.1f} ms,"
        f" p90 {f['p90']:.1f}, p99 {f['p99']:.1f}, max {f['max']:.1f};"
        f" first pings lost {len(attach['first_ping_unanswered'])};"
        f" to ready: median {r['median']:.1f} ms, p99 {r['p99']:.1f}"
        f" (load average {load[0]:.1f} before, {load[1]:.1f} after)"
    )


def write(kind: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    return out


def compare(endpoints: int, hosts: int, rounds: int, keep_logs: bool, ipv6: bool) -> dict[str, Any]:
    """vxplane (bench.run, no throughput) then OVN, ``rounds`` times; both and their ratios."""
    from bench import run as vxbench

    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        load = os.getloadavg()
        vx = {
            "loadavg_before": load,
            **vxbench.measure(endpoints, hosts, with_throughput=False, ipv6=ipv6),
        }
        vx["loadavg_after"] = os.getloadavg()
        ovn = measure(endpoints, hosts, keep_logs, ipv6=ipv6)
        v, o = vx["attach"]["request_to_first_ping_ms"], ovn["attach"]["request_to_first_ping_ms"]
        runs.append(
            {
                "vxplane": vx,
                "ovn": ovn,
                "ratio_vxplane_over_ovn": {k: v[k] / o[k] for k in ("median", "p90", "p99")},
            }
        )
    return {"runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--endpoints", type=int, default=100, help="ports created one by one")
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--compare", action="store_true", help="run bench.run's vxplane side first")
    p.add_argument("--rounds", type=int, default=1, help="with --compare: vxplane/OVN pairs")
    p.add_argument("--keep-logs", action="store_true", help="copy the OVN daemons' logs to /tmp")
    p.add_argument("--ipv6", action="store_true",
                   help="leave IPv6 on in the ports' namespaces (OVN floods it)")  # fmt: skip
    p.add_argument("--settle-ms", type=float, default=0,
                   help="diagnostic: pause between ready and the first ping (counted)")  # fmt: skip
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (namespaces, OVS)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    command = " ".join([".venv/bin/python -m bench.ovn", *(argv or sys.argv[1:])])
    if args.compare:
        result = {"command": command, **compare(args.endpoints, args.hosts, args.rounds,
                                                args.keep_logs, args.ipv6)}  # fmt: skip
        out = write("compare", result)
        print(json.dumps(result))
        print(f"IPv6 in the ports' namespaces: {'on' if args.ipv6 else 'off'} on both sides")
        for i, r in enumerate(result["runs"], start=1):
            ratio = r["ratio_vxplane_over_ovn"]
            print(f"round {i}")
            print("  " + summary("vxplane", r["vxplane"]))
            print("  " + summary("OVN    ", r["ovn"]))
            print(f"  vxplane/OVN: median {ratio['median']:.2f}, p90 {ratio['p90']:.2f},"
                  f" p99 {ratio['p99']:.2f}")  # fmt: skip
    else:
        result = {
            "command": command,
            **measure(args.endpoints, args.hosts, args.keep_logs, args.settle_ms, args.ipv6),
        }
        out = write("ovn", result)
        print(json.dumps(result))
        print(summary("OVN", result))
        steps = result["attach"]["steps_median_ms"]
        print(
            f"steps (median): nbctl {steps['nbctl']:.1f} ms (in parallel with) plumbing "
            f"{steps['plumbing']:.1f} ms, then ovs add-port (commit) {steps['ovs_port']:.1f} ms,"
            f" then ovn-installed after {result['attach']['ready_after_ovs_port_median_ms']:.1f} ms"
        )
        print(
            f"CPU seconds used by the daemons in those {result['attach']['seconds']} s: "
            + ", ".join(f"{k} {v}" for k, v in result["attach"]["daemon_cpu_seconds"].items())
        )
        logs = result["attach"]["from_logs_median_ms"]
        if len(logs) == 4:
            print(
                "from the logs (median, since the request): ovs-vswitchd added the port"
                f" {logs['request_to_added']:.0f} ms, ovn-controller claimed it"
                f" {logs['request_to_claim']:.0f} ms, set ovn-installed"
                f" {logs['request_to_installed']:.0f} ms, up in SB {logs['request_to_up']:.0f} ms"
            )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
