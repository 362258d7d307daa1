"""The lab: emulated hosts on one machine, each a network namespace with its own OVS and agent.

Layout (prefix ``lab-``, underlay ``198.18.0.0/24``)::

    root ns: lab-root 198.18.0.254/24 (controller listens on 0.0.0.0 here)
        |  veth
    lab-fabric ns: Linux bridge br0
        |  veth lab-h1u <-> lab-h1f        ...  one per host
    lab-h1 ns: ovsdb-server + ovs-vswitchd (netdev), state under <state_dir>/lab-h1/
        br-phy (netdev) holds the underlay veth; 198.18.0.1/24 on br-phy's internal port
        br-int (netdev, fail-secure, OpenFlow 1.3, vxlan0 at ofport 1) <- agent

The underlay address sits on br-phy as OVS's userspace tunneling guide prescribes: the
userspace VXLAN port finds its route and neighbour through OVS's own router, which only
works when the address is on an OVS bridge. ``arp_ignore=1`` in each host namespace stops
the kernel answering underlay ARP on the veth with the veth's MAC (which OVS would learn as
the neighbour, killing tunnels intermittently). TX checksum offload is off on every veth
we make: ovs-vswitchd reads veths through packet sockets and never completes checksums.

Everything made is recorded in ``<state_dir>/state.json`` *before* it is made, so ``down``
removes exactly that (by name and by recorded pid, never by pattern), also after a failed
``up``. A file lock serializes lab commands.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from hostagent.agent_client import AgentClient
from hostagent.errors import AgentError
from hostagent.ovs import OvsOps
from vxlab import docker as labdocker

log = logging.getLogger(__name__)

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
NETNS_DIR = "/run/netns"
PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,8}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
UNDERLAY_DEV = "underlay"
FABRIC_BRIDGE = "br0"
MAX_HOSTS = 99


class LabError(AgentError):
    """A lab operation failed or was refused."""

    status = 400


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where an emulated host's OVS keeps its files and sockets."""

    dir: str

    @property
    def db_file(self) -> str:
        return os.path.join(self.dir, "conf.db")

    @property
    def db_sock(self) -> str:
        return os.path.join(self.dir, "db.sock")

    @property
    def db(self) -> str:
        """The ovsdb remote for ``ovs-vsctl --db=``."""
        return f"unix:{self.db_sock}"

    @property
    def agent_sock(self) -> str:
        return os.path.join(self.dir, "agent.sock")

    def pidfile(self, daemon: str) -> str:
        return os.path.join(self.dir, f"{daemon}.pid")

    def ctl(self, daemon: str) -> str:
        """The unixctl socket of ``daemon`` (for ``ovs-appctl -t``)."""
        return os.path.join(self.dir, f"{daemon}.ctl")

    def log(self, daemon: str) -> str:
        return os.path.join(self.dir, f"{daemon}.log")

    def mgmt(self, bridge: str = "br-int") -> str:
        """The OpenFlow management target of ``bridge`` for ``ovs-ofctl``."""
        return f"unix:{os.path.join(self.dir, bridge + '.mgmt')}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for OVS tools so they find this host's run, log and db dirs."""
        return {
            **os.environ,
            "OVS_RUNDIR": self.dir,
            "OVS_LOGDIR": self.dir,
            "OVS_DBDIR": self.dir,
            "OVS_SYSCONFDIR": self.dir,
        }


def _run(argv: Sequence[str], env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=60)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def _link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _read_pidfile(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


_children: dict[int, subprocess.Popen[bytes]] = {}


def _agent_health(socket_path: str) -> dict[str, Any] | None:
    """The agent's ``/v1/healthz``, or None if it does not answer."""
    if not os.path.exists(socket_path):
        return None
    try:
        with AgentClient(socket_path, timeout=2) as agent:
            return agent.healthz()
    except AgentError:
        return None


def _stop_pid(pid: int, must_contain: str, timeout: float = 5.0) -> None:
    """SIGTERM (then SIGKILL) ``pid`` if its command line still contains ``must_contain``."""
    if not _pid_alive(pid) or not any(must_contain in a for a in _cmdline(pid)):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    _reap(pid)


def _kill_tasks(host_dir: str) -> None:
    """SIGKILL the shims (and their containers) an engine left running, by recorded pid."""
    for shim, init in labdocker.task_pids(host_dir):
        if not _pid_alive(shim) or not any(host_dir in a for a in _cmdline(shim)):
            continue
        if _pid_alive(init):
            os.kill(init, signal.SIGKILL)
        os.kill(shim, signal.SIGKILL)


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        if child.poll() is None:
            _children[pid] = child
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Lab:
    """A lab of emulated hosts; see the module docstring for its layout."""

    def __init__(
        self,
        prefix: str = "lab-",
        underlay: str = "198.18.0.0/24",
        state_dir: str | None = None,
        python: str | None = None,
    ) -> None:
        if not PREFIX_RE.match(prefix):
            raise LabError(f"lab prefix {prefix!r}: lowercase letters, digits, '-', 1-9 chars")
        net = IPv4Network(underlay)
        if not net.subnet_of(IPv4Network("198.18.0.0/15")) or net.prefixlen > 29:
            raise LabError(f"underlay {underlay} must be a /15../29 inside 198.18.0.0/15")
        self.prefix = prefix
        self.underlay = net
        # One state dir per prefix, so labs with different prefixes never share state.
        default_dir = (
            "/run/vxplane/lab" if prefix == "lab-" else f"/run/vxplane/lab-{prefix.strip('-')}"
        )
        self.state_dir = state_dir or default_dir
        self.python = python or sys.executable
        self.fabric_ns = f"{prefix}fabric"
        self.root_veth = f"{prefix}root"
        self.root_ip = IPv4Interface(f"{net[-2]}/{net.prefixlen}")

    @property
    def gateway_ip(self) -> str:
        """The root namespace's address on the underlay: where hosts reach the controller."""
        return str(self.root_ip.ip)

    # -- naming -------------------------------------------------------------------------

    def host_name(self, index_or_name: int | str) -> str:
        """``<prefix>h<i>`` for an index, ``h<i>`` or the full name."""
        if isinstance(index_or_name, int):
            return f"{self.prefix}h{index_or_name}"
        if index_or_name.startswith(self.prefix):
            return index_or_name
        return self.prefix + index_or_name

    def underlay_ip(self, index: int) -> IPv4Address:
        """The underlay address of host ``index`` (1-based)."""
        return self.underlay[index]

    def host_paths(self, host: str) -> HostPaths:
        """Files and sockets of ``host``'s OVS and agent."""
        return HostPaths(os.path.join(self.state_dir, self.host_name(host)))

    def host_ovs_env(self, host: str) -> dict[str, str]:
        """Environment for ovs-* tools run against ``host`` (OVS_RUNDIR etc.)."""
        return self.host_paths(host).env

    def ofctl_target(self, host: str, bridge: str = "br-int") -> str:
        """``unix:<dir>/<bridge>.mgmt``: ``ovs-ofctl -O OpenFlow13 dump-flows <this>``."""
        return self.host_paths(host).mgmt(bridge)

    def ovs(self, host: str) -> OvsOps:
        """OvsOps bound to ``host``'s ovsdb."""
        return OvsOps(self.host_paths(host).db)

    # -- state --------------------------------------------------------------------------

    @property
    def state_file(self) -> str:
        return os.path.join(self.state_dir, "state.json")

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Hold the lab lock; yield the state, saved on exit (also on error)."""
        os.makedirs(self.state_dir, exist_ok=True)
        with open(os.path.join(self.state_dir, ".lock"), "w") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            state = self._load()
            try:
                yield state
            finally:
                self._save(state)

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.state_file) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {}
        state.setdefault("prefix", self.prefix)
        state.setdefault("underlay", str(self.underlay))
        state.setdefault("namespaces", [])
        state.setdefault("root_links", [])
        state.setdefault("hosts", {})
        state.setdefault("containers", {})
        if state["prefix"] != self.prefix or state["underlay"] != str(self.underlay):
            raise LabError(
                f"{self.state_dir} holds lab {state['prefix']!r} on {state['underlay']}; "
                f"run down there first"
            )
        return state

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        os.replace(tmp, self.state_file)

    @staticmethod
    def _record(state: dict[str, Any], key: str, name: str) -> None:
        if name not in state[key]:
            state[key].append(name)

    # -- up -----------------------------------------------------------------------------

    def up(
        self,
        hosts: int,
        controller_url: str | None = None,
        openflow: str | None = None,
        extra_agent_args: Sequence[str] = (),
        agents: bool = True,
        agent_wait: float = 20.0,
        wait_registered: bool = True,
        docker: bool = False,
    ) -> dict[str, Any]:
        """Bring up ``hosts`` emulated hosts (idempotent: what exists is kept).

        ``controller_url`` defaults to ``http://<gateway_ip>:8080``, ``openflow`` to
        ``tcp:<gateway_ip>:6653``. ``agents=False`` starts no agents (br-int is made anyway).
        With ``wait_registered`` it waits up to ``agent_wait`` s for the agents to register at
        the controller; one that does not is reported in ``status()`` (``registered``), not
        an error, as agents keep retrying. ``docker`` also starts one dockerd per host, its
        agent serving the Docker drivers (``hostagent/labdocker.py``). If a fresh lab fails
        halfway, what it made is
        removed again (``down``); a failing ``up`` of an existing lab leaves it as it was
        plus what was made (``down`` removes it all). Returns ``status()``.
        """
        if not 1 <= hosts <= min(MAX_HOSTS, self.underlay.num_addresses - 3):
            raise LabError(f"hosts must be 1..{min(MAX_HOSTS, self.underlay.num_addresses - 3)}")
        controller_url = controller_url or f"http://{self.gateway_ip}:8080"
        openflow = openflow or f"tcp:{self.gateway_ip}:6653"
        fresh = not os.path.exists(self.state_file)
        try:
            with self._locked() as state:
                self._ensure_fabric(state)
                for i in range(1, hosts + 1):
                    self._ensure_host(state, i, openflow)
                self._warm_neighbours(hosts)
                if docker:
                    for i in range(1, hosts + 1):
                        self._ensure_holder(state, i)
                if agents:
                    for i in range(1, hosts + 1):
                        self._ensure_agent(state, i, controller_url, openflow, extra_agent_args)
                    deadline = time.monotonic() + agent_wait
                    for i in range(1, hosts + 1):
                        self._wait_agent(state, i, deadline, wait_registered)
                if docker:
                    for i in range(1, hosts + 1):
                        self._ensure_dockerd(state, i)
        except BaseException:
            if fresh:
                log.warning("lab %s: up failed, removing what it made", self.prefix)
                self.down()
            raise
        return self.status()

    def _ensure_fabric(self, state: dict[str, Any]) -> None:
        ns = self.fabric_ns
        self._record(state, "namespaces", ns)
        if not _netns_exists(ns):
            _run(["ip", "netns", "add", ns])
        if not _link_exists(FABRIC_BRIDGE, ns):
            _run(["ip", "-n", ns, "link", "add", FABRIC_BRIDGE, "type", "bridge"])
        _run(["ip", "-n", ns, "link", "set", FABRIC_BRIDGE, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self._record(state, "root_links", self.root_veth)
        if not _link_exists(self.root_veth):
            for other in _run(["ip", "-o", "-4", "addr", "show"]).splitlines():
                fields = other.split()
                if IPv4Interface(fields[3]).network.overlaps(self.underlay):
                    raise LabError(f"{fields[1]} already has {fields[3]}: underlay in use")
            self._make_veth(self.root_veth, None, ns, f"{self.root_veth}f")
            _run(["ip", "addr", "add", str(self.root_ip), "dev", self.root_veth])
            for family, knob, value in (("ipv4", "arp_ignore", "1"), ("ipv6", "disable_ipv6", "1")):
                with open(f"/proc/sys/net/{family}/conf/{self.root_veth}/{knob}", "w") as f:
                    f.write(value)
            _run(["ip", "link", "set", self.root_veth, "up"])

    def _make_veth(self, name: str, netns: str | None, fabric_ns: str, peer: str) -> None:
        """A veth ``name`` (moved to ``netns`` unless None) whose ``peer`` joins the fabric."""
        _run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])
        _run(["ip", "link", "set", peer, "netns", fabric_ns])
        _run(["ip", "-n", fabric_ns, "link", "set", peer, "master", FABRIC_BRIDGE, "up"])
        _run(["ip", "netns", "exec", fabric_ns, "ethtool", "-K", peer, "tx", "off"])
        if netns:
            _run(["ip", "link", "set", name, "netns", netns, "name", UNDERLAY_DEV])
            _run(["ip", "netns", "exec", netns, "ethtool", "-K", UNDERLAY_DEV, "tx", "off"])
            _run(["ip", "-n", netns, "link", "set", UNDERLAY_DEV, "up"])
        else:
            _run(["ethtool", "-K", name, "tx", "off"])

    def _ensure_host(self, state: dict[str, Any], i: int, openflow: str) -> None:
        name = self.host_name(i)
        paths = self.host_paths(name)
        ip = self.underlay_ip(i)
        host = state["hosts"].setdefault(
            name, {"index": i, "underlay_ip": str(ip), "dir": paths.dir, "pids": {}}
        )
        self._record(state, "namespaces", name)
        self._record(state, "root_links", f"{name}u")
        self._record(state, "root_links", f"{name}f")
        os.makedirs(paths.dir, exist_ok=True)
        if not _netns_exists(name):
            _run(["ip", "netns", "add", name])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(
            ["ip", "netns", "exec", name, "sysctl", "-q", "-w",
             "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.default.arp_ignore=1",
             "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.default.arp_announce=2"]
        )  # fmt: skip
        if not _link_exists(UNDERLAY_DEV, name):
            self._make_veth(f"{name}u", name, self.fabric_ns, f"{name}f")
        self._ensure_ovs(host, name, paths)
        ovs = OvsOps(paths.db)
        ovs.vsctl(
            "--may-exist", "add-br", "br-phy",
            "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
            "--", "--may-exist", "add-port", "br-phy", UNDERLAY_DEV,
        )  # fmt: skip
        addr = f"{ip}/{self.underlay.prefixlen}"
        _run(["ip", "-n", name, "addr", "replace", addr, "dev", "br-phy"])
        _run(["ip", "-n", name, "link", "set", "br-phy", "up"])
        ovs.ensure_bridge("br-int", "netdev", openflow, dpid=f"{int(ip):016x}")

    def _warm_neighbours(self, hosts: int) -> None:
        """Underlay pings in both directions between all hosts, so each OVS learns its peers'
        MACs.

        The userspace tunnel resolves the underlay next hop from its own neighbour cache, fed
        by snooping ARP replies on br-phy; a miss sends an ARP and drops the packet, so without
        this the first overlay packet to every host is lost. A kernel that received a peer's
        ARP request already knows that peer and sends no request of its own, so its OVS never
        sees a reply: the second direction runs after a neighbour flush (seen: h2 lost its
        first packet to h1).
        """
        forward = [(i, j) for i in range(1, hosts + 1) for j in range(i + 1, hosts + 1)]
        forward += [(i, 0) for i in range(1, hosts + 1)]
        backward = [(j, i) for i, j in forward if j != 0]
        failed = self._ping_pairs(forward)
        for i in range(1, hosts + 1):
            _run(["ip", "-n", self.host_name(i), "neigh", "flush", "dev", "br-phy"], check=False)
        failed += self._ping_pairs(backward)
        if failed:
            log.warning("lab %s: %d underlay pings failed while warming up", self.prefix, failed)

    def _ping_pairs(self, pairs: list[tuple[int, int]]) -> int:
        """One ping from host i to host j (0: the gateway) per pair; returns the failures."""
        running: list[subprocess.Popen[bytes]] = []
        failed = 0
        for i, j in pairs:
            target = self.gateway_ip if j == 0 else str(self.underlay_ip(j))
            argv = ["ip", "netns", "exec", self.host_name(i), "ping", "-c", "1", "-W", "2", target]
            running.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            if len(running) >= 32:
                failed += running.pop(0).wait(timeout=10) != 0
        return failed + sum(1 for p in running if p.wait(timeout=10) != 0)

    def _ensure_ovs(self, host: dict[str, Any], name: str, paths: HostPaths) -> None:
        pids = host["pids"]
        if not _pid_alive(pids.get("ovsdb-server")):
            if not os.path.exists(paths.db_file):
                _run(["ovsdb-tool", "create", paths.db_file, SCHEMA])
            _run(
                ["ip", "netns", "exec", name, "ovsdb-server", paths.db_file,
                 f"--remote=punix:{paths.db_sock}",
                 "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                 f"--pidfile={paths.pidfile('ovsdb-server')}",
                 f"--unixctl={paths.ctl('ovsdb-server')}",
                 f"--log-file={paths.log('ovsdb-server')}", "--detach", "--no-chdir"],
                env=paths.env,
            )  # fmt: skip
            pids["ovsdb-server"] = _read_pidfile(paths.pidfile("ovsdb-server"))
            _run(["ovs-vsctl", f"--db={paths.db}", "--no-wait", "init"])
        if not _pid_alive(pids.get("ovs-vswitchd")):
            _run(
                ["ip", "netns", "exec", name, "ovs-vswitchd", paths.db,
                 f"--pidfile={paths.pidfile('ovs-vswitchd')}",
                 f"--unixctl={paths.ctl('ovs-vswitchd')}",
                 f"--log-file={paths.log('ovs-vswitchd')}", "--detach", "--no-chdir"],
                env=paths.env,
            )  # fmt: skip
            pids["ovs-vswitchd"] = _read_pidfile(paths.pidfile("ovs-vswitchd"))

    def _ensure_agent(
        self,
        state: dict[str, Any],
        i: int,
        controller_url: str,
        openflow: str,
        extra: Sequence[str],
    ) -> None:
        name = self.host_name(i)
        host = state["hosts"][name]
        paths = self.host_paths(name)
        pid = host["pids"].get("agent")
        holder = host["pids"].get("mnt-holder")
        mount = [f"--mount=/proc/{holder}/ns/mnt"] if holder else []
        if holder:
            extra = [*extra, "--docker-plugin", labdocker.PLUGIN_SOCKET,
                     "--docker-engine", f"unix://{labdocker.paths(paths.dir)['sock']}"]  # fmt: skip
        argv = [
            "nsenter", f"--net={os.path.join(NETNS_DIR, name)}", *mount,
            self.python, "-m", "hostagent",
            "--controller", controller_url, "--host", name,
            "--underlay-ip", host["underlay_ip"], "--ovsdb", paths.db,
            "--socket", paths.agent_sock, "--openflow", openflow,
            "--datapath-type", "netdev", "--dpid", f"{int(IPv4Address(host['underlay_ip'])):016x}",
            *extra,
        ]  # fmt: skip
        if _pid_alive(pid) and host.get("agent_argv") == argv:
            return
        if pid:
            _stop_pid(pid, paths.agent_sock)
        with open(paths.log("agent"), "ab") as logf:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )
        _children[child.pid] = child
        host["pids"]["agent"] = child.pid
        host["agent_argv"] = argv
        host["controller_url"] = controller_url

    def _wait_agent(
        self, state: dict[str, Any], i: int, deadline: float, wait_registered: bool
    ) -> None:
        """Wait for the agent's API and bridge (an error if late), then for its registration
        (a warning if late)."""
        name = self.host_name(i)
        paths = self.host_paths(name)
        pid = state["hosts"][name]["pids"]["agent"]
        health: dict[str, Any] = {}
        while True:
            if not _pid_alive(pid):
                raise LabError(f"agent of {name} exited; see {paths.log('agent')}")
            health = _agent_health(paths.agent_sock) or {}
            if health.get("bridge_ready") and (health.get("registered") or not wait_registered):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not health.get("bridge_ready"):
            raise LabError(f"agent of {name} not up in time; see {paths.log('agent')}")
        log.warning(
            "lab %s: agent of %s not registered at %s yet: %s",
            self.prefix, name, health.get("controller"), health.get("last_error"),
        )  # fmt: skip

    # -- docker -------------------------------------------------------------------------

    def _ensure_holder(self, state: dict[str, Any], i: int) -> None:
        """The host's private mount namespace holding its /run/docker/plugins."""
        name = self.host_name(i)
        host, paths = state["hosts"][name], self.host_paths(name)
        pid = host["pids"].get("mnt-holder")
        if _pid_alive(pid) and any(paths.dir in a for a in _cmdline(pid)):
            return
        child = labdocker.start_holder(paths.dir)
        _children[child.pid] = child
        host["pids"]["mnt-holder"] = child.pid
        deadline = time.monotonic() + 10
        while not labdocker.holder_ready(child.pid, paths.dir):
            if child.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"mount namespace of {name} did not come up")
            time.sleep(0.02)

    def _ensure_dockerd(self, state: dict[str, Any], i: int) -> None:
        """The host's dockerd (in its netns and mount holder) and the busybox image."""
        name = self.host_name(i)
        host, paths = state["hosts"][name], self.host_paths(name)
        sock = labdocker.paths(paths.dir)["sock"]
        pid = host["pids"].get("dockerd")
        if not (_pid_alive(pid) and labdocker.engine_up(sock)):
            if pid:
                _stop_pid(pid, paths.dir, timeout=20)
            # A SIGKILLed dockerd's containerd dies with it but may linger as a zombie whose
            # pid file makes the next dockerd wait for it forever.
            cfile = labdocker.containerd_pidfile(paths.dir)
            cpid = _read_pidfile(cfile)
            if cpid:
                _stop_pid(cpid, paths.dir)
                if not _pid_alive(cpid):
                    os.unlink(cfile)
            child = labdocker.start_dockerd(
                os.path.join(NETNS_DIR, name), host["pids"]["mnt-holder"], paths.dir
            )
            _children[child.pid] = child
            host["pids"]["dockerd"] = pid = child.pid
            try:
                labdocker.wait_engine(sock, child)
            except RuntimeError as exc:
                raise LabError(str(exc)) from exc
        host["docker_sock"] = sock
        labdocker.ensure_image(sock)

    def restart_dockerd(self, host: str, kill: bool = False) -> int:
        """Stop ``host``'s dockerd (SIGTERM, or SIGKILL with ``kill``) and start it again;
        returns the new pid."""
        with self._locked() as state:
            name = self.host_name(host)
            h, paths = state["hosts"][name], self.host_paths(name)
            pid = h["pids"].get("dockerd")
            if pid and kill and _pid_alive(pid) and any(paths.dir in a for a in _cmdline(pid)):
                os.kill(pid, signal.SIGKILL)
                while _pid_alive(pid):
                    _reap(pid)
                    time.sleep(0.05)
            elif pid:
                _stop_pid(pid, paths.dir, timeout=20)
            self._ensure_dockerd(state, h["index"])
            return int(h["pids"]["dockerd"])

    def docker_argv(self, host: str, args: Sequence[str]) -> list[str]:
        """The docker CLI command line for ``host``'s engine."""
        with self._locked() as state:
            name = self.host_name(host)
            if not state["hosts"].get(name, {}).get("docker_sock"):
                raise LabError(f"{name} runs no dockerd (lab up --docker)")
        return labdocker.cli_argv(self.host_paths(name).dir, list(args))

    # -- containers ---------------------------------------------------------------------

    def run(
        self, host: str, name: str, network: str, ip: str | None = None, ifname: str = "eth0"
    ) -> dict[str, Any]:
        """Make netns ``name`` and plug it into ``network`` through ``host``'s agent.

        Blocks until the controller reports the endpoint ready; on failure the netns is
        removed again. Returns the Endpoint plus ``lab_host`` and ``netns``.
        """
        if not NAME_RE.match(name):
            raise LabError(f"bad container name {name!r}")
        with self._locked() as state:
            host_name = self.host_name(host)
            if host_name not in state["hosts"]:
                raise LabError(f"no lab host {host}")
            if name in state["hosts"] or name in state["namespaces"]:
                raise LabError(f"{name} is a lab host or lab namespace")
            known = state["containers"].get(name)
            if known and (known["host"], known["network"]) != (host_name, network):
                raise LabError(f"{name} already runs on {known['host']} in {known['network']}")
            if not known and _netns_exists(name):
                raise LabError(f"network namespace {name} exists and was not made by the lab")
            state["containers"][name] = {"host": host_name, "network": network, "ip": None}
            if not _netns_exists(name):
                _run(["ip", "netns", "add", name])
        try:
            with AgentClient(self.host_paths(host_name).agent_sock) as agent:
                ep = agent.attach(name, name, network, ip=ip, ifname=ifname)
        except BaseException:
            if not known:
                with self._locked() as state:
                    _run(["ip", "netns", "del", name], check=False)
                    state["containers"].pop(name, None)
            raise
        with self._locked() as state:
            state["containers"][name]["ip"] = ep.get("ip")
        return {**ep, "lab_host": host_name, "netns": name}

    def exec(self, name: str, argv: Sequence[str], quiet: bool = False) -> int:
        """Run ``argv`` in lab container or host ``name``; return its exit code.

        ``quiet`` discards its output (else it goes to ours)."""
        with self._locked() as state:
            if name not in state["containers"]:
                name = self.host_name(name)
                if name not in state["hosts"]:
                    raise LabError(f"no lab container or host {name}")
        out = subprocess.DEVNULL if quiet else None
        argv = ["ip", "netns", "exec", name, *argv]
        return subprocess.run(argv, check=False, stdout=out, stderr=out).returncode

    def rm(self, name: str) -> dict[str, Any]:
        """Detach container ``name`` through its host's agent and delete its netns."""
        with self._locked() as state:
            known = state["containers"].get(name)
            if known is None:
                raise LabError(f"no lab container {name}")
            result: dict[str, Any] = {"name": name, "detached": False}
            try:
                with AgentClient(self.host_paths(known["host"]).agent_sock) as agent:
                    result.update(agent.detach(name, known["network"]))
            except AgentError as exc:
                result["error"] = exc.detail
            _run(["ip", "netns", "del", name], check=False)
            del state["containers"][name]
            return result

    # -- status and down ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The lab as a dict: ``hosts`` and ``containers`` are lists of flat rows.

        Host rows: ``name, underlay_ip, ovs ("up"/"down"), agent ("registered"/"unregistered"/
        "down"/"none"), pids {daemon: {pid, alive}}, netns, agent_socket, ovsdb, ofctl,
        controller_url, last_error``. Container rows: ``name, host, network, ip``.
        """
        base = {"prefix": self.prefix, "underlay": str(self.underlay), "gateway": self.gateway_ip}
        if not os.path.exists(self.state_file):
            return {**base, "up": False, "hosts": [], "containers": []}
        with self._locked() as state:
            hosts = []
            for name, h in sorted(state["hosts"].items(), key=lambda kv: kv[1]["index"]):
                paths = HostPaths(h["dir"])
                pids = {k: {"pid": p, "alive": _pid_alive(p)} for k, p in h["pids"].items()}
                ovs_up = all(pids.get(d, {}).get("alive") for d in ("ovsdb-server", "ovs-vswitchd"))
                health = _agent_health(paths.agent_sock) if "agent" in pids else None
                if "agent" not in pids:
                    agent = "none"
                elif not pids["agent"]["alive"] or health is None:
                    agent = "down"
                else:
                    agent = "registered" if health.get("registered") else "unregistered"
                hosts.append(
                    {
                        "name": name,
                        "underlay_ip": h["underlay_ip"],
                        "ovs": "up" if ovs_up else "down",
                        "agent": agent,
                        "pids": pids,
                        "netns": _netns_exists(name),
                        "agent_socket": paths.agent_sock,
                        "ovsdb": paths.db,
                        "ofctl": paths.mgmt("br-int"),
                        "controller_url": h.get("controller_url"),
                        "last_error": (health or {}).get("last_error"),
                    }
                )
            containers = [
                {"name": name, "host": c["host"], "network": c["network"], "ip": c["ip"]}
                for name, c in sorted(state["containers"].items())
            ]
            return {**base, "up": True, "hosts": hosts, "containers": containers}

    def down(self) -> None:
        """Remove everything recorded: agents, OVS daemons (by pid), namespaces, veths, files."""
        if not os.path.exists(self.state_dir):
            return
        with self._locked() as state:
            for name in list(state["containers"]):
                _run(["ip", "netns", "del", name], check=False)
                del state["containers"][name]
            for host in state["hosts"].values():
                paths = HostPaths(host["dir"])
                pids = dict(host["pids"])
                for daemon in ("ovs-vswitchd", "ovsdb-server"):
                    pids.setdefault(daemon, _read_pidfile(paths.pidfile(daemon)))
                if pids.get("dockerd"):
                    labdocker.remove_all_containers(labdocker.paths(paths.dir)["sock"])
                    _stop_pid(pids["dockerd"], paths.dir, timeout=20)
                    # dockerd stops the containerd it started, unless it was SIGKILLed once
                    exec_root = labdocker.paths(paths.dir)["exec"]
                    containerd = _read_pidfile(f"{exec_root}/containerd/containerd.pid")
                    if containerd:
                        _stop_pid(containerd, paths.dir)
                    _kill_tasks(paths.dir)
                if pids.get("agent"):
                    _stop_pid(pids["agent"], paths.agent_sock)
                if pids.get("mnt-holder"):
                    _stop_pid(pids["mnt-holder"], paths.dir)
                for daemon in ("ovs-vswitchd", "ovsdb-server"):
                    # Only a process whose command line names this host's dir is ours.
                    if pids.get(daemon):
                        _stop_pid(pids[daemon], paths.dir)
                    alt = _read_pidfile(paths.pidfile(daemon))
                    if alt and alt != pids.get(daemon):
                        _stop_pid(alt, paths.dir)
                host["pids"] = {}
            for ns in reversed(state["namespaces"]):
                if _netns_exists(ns):
                    _run(["ip", "netns", "del", ns], check=False)
            state["namespaces"] = []
            for link in state["root_links"]:
                if _link_exists(link):
                    _run(["ip", "link", "del", link], check=False)
            state["root_links"] = []
            for host in state["hosts"].values():
                shutil.rmtree(host["dir"], ignore_errors=True)
            state["hosts"] = {}
        for leftover in ("state.json", ".lock"):
            try:
                os.unlink(os.path.join(self.state_dir, leftover))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.state_dir)
        except OSError:
            pass
