"""The lab: emulated hosts on one machine, each a network namespace with its own OVS and agent.

Layout (prefix ``lab-``, underlay ``198.18.0.0/24``)::

    root ns: lab-root 198.18.0.254/24 (controller listens on 0.0.0.0 here)
        |  veth
    lab-fabric ns: Linux bridge br0
        |  veth lab-h1u <-> lab-h1f        ...  one per host
    lab-h1 ns: ovsdb-server + ovs-vswitchd (netdev), state under <state_dir>/lab-h1/
        br-phy (netdev) holds the underlay veth; 198.18.0.1/24 on br-phy's internal port
        br-int (netdev, fail-secure, OpenFlow 1.3, vxlan0 at ofport 1) <- agent
        vxgw0 on br-int: the host's gateway port into its own stack (``--egress-ip``, below)
    with --docker: a mount holder and a dockerd per host, serving the agent's Docker drivers
    lab-outside ns: 198.18.0.253/24 on the fabric: the outside world for external networks;
        it knows the underlay subnet only, no overlay subnet

The fabric also carries IPv6: every underlay address a.b.c.d has an IPv6 twin
``fdfa::a.b.c.d`` (prefix ``fdfa::/96`` plus the IPv4 address, the prefix length 96 + the
underlay's), set on each host's br-phy and on the outside's eth0 (``outside_ip6``); the root
namespace keeps IPv6 off.

Each host's agent gets an egress address, ``--egress-ip`` (host i: the underlay's address
100 + i, 198.18.0.101 for h1), that external networks' containers leave with (see
docs/architecture.md, "External access"); ``status()`` lists it per host, and the outside's
address as ``outside_ip``. An underlay too small for them (under /24) gets no egress
addresses. The agent also gets the egress address's IPv6 twin, ``--egress-ip6`` (fdfa::
198.18.0.101 for h1: a spare address of the fabric's IPv6 prefix, which the host answers
neighbour solicitations for), and ``status()`` lists it as ``egress_ip6``.

With ``up(tls=True)`` OpenFlow runs over TLS: the lab makes a CA and certificates in
``<state_dir>/pki`` (``controller.pki``: ``controller.pem`` for the controller, with the
gateway address as its subject alternative name, and ``<host>.pem`` per host, CN = the host's
name), points every br-int at ``ssl:<gateway>:<port>`` with ``set-ssl`` done first, and hands
each agent its files (``--ovs-ssl-key/--ovs-ssl-cert/--ovs-ssl-ca``). The controller then
needs ``openflow_tls()`` (``vxplane controller --openflow-cert ... --openflow-key ...
--openflow-ca ...``).

``Lab`` is the facade the CLI, the demo, the tests and the benchmarks use; the parts live
beside it, one concern each:

- ``vxlab.state``: the state file, where everything is recorded *before* it is made, so
  ``down`` removes exactly that (also after a failed ``up``); a file lock serializes lab
  commands.
- ``vxlab.fabric``: namespaces, the fabric bridge, veths, the neighbour warm-up.
- ``vxlab.ovsd``: each host's OVS daemons and its bridges br-phy and br-int.
- ``vxlab.agent``: each host's vxplane agent.
- ``vxlab.docker``: each host's dockerd and mount holder.
- ``vxlab.proc`` and ``vxlab.paths``: processes (stopped by recorded pid, never by pattern)
  and where a host keeps its files.

"Containers" made by ``run`` are bare network namespaces plugged through the host's agent.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface
from typing import Any

import httpx

from hostagent.agent_client import AgentCallError, AgentClient, AgentUnavailable
from vxlab import agent, fabric, ovsd, proc
from vxlab.docker import cli_argv, ensure_dockerd, ensure_holder, stop_engine
from vxlab.errors import LabError
from vxlab.paths import HostPaths
from vxlab.state import StateFile, record

log = logging.getLogger(__name__)

PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,8}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAX_HOSTS = 99
FABRIC6 = IPv6Address("fdfa::")  # the fabric's IPv6 prefix (/96): fdfa:: + the IPv4 address
OVS_DAEMONS = ("ovs-vswitchd", "ovsdb-server")  # in stopping order


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
        try:
            net = IPv4Network(underlay)
        except ValueError as exc:
            raise LabError(f"underlay {underlay!r}: {exc}") from exc
        if not net.subnet_of(IPv4Network("198.18.0.0/15")) or net.prefixlen > 29:
            raise LabError(f"underlay {underlay} must be a /15../29 inside 198.18.0.0/15")
        self.prefix = prefix
        self.underlay = net
        # One state dir per prefix, so labs with different prefixes never share state.
        default_dir = (
            "/run/vxplane/lab" if prefix == "lab-" else f"/run/vxplane/lab-{prefix.strip('-')}"
        )
        self.state_dir = state_dir or default_dir
        self.state = StateFile(self.state_dir, prefix, str(net))
        self.python = python or sys.executable
        self.fabric_ns = f"{prefix}fabric"
        self.root_veth = f"{prefix}root"
        self.root_ip = IPv4Interface(f"{net[-2]}/{net.prefixlen}")
        self.outside_ns = f"{prefix}outside"
        self.outside_veth = f"{prefix}o"
        self.outside_ip = IPv4Interface(f"{net[-3]}/{net.prefixlen}")
        self.outside_ip6 = self.twin6(self.outside_ip)

    def twin6(self, iface: IPv4Interface) -> IPv6Interface:
        """The fabric's IPv6 twin of an underlay address (see the module docstring)."""
        return IPv6Interface((int(FABRIC6) | int(iface.ip), 96 + iface.network.prefixlen))

    @property
    def gateway_ip(self) -> str:
        """The root namespace's address on the underlay: where hosts reach the controller."""
        return str(self.root_ip.ip)

    @property
    def pki_dir(self) -> str:
        """``<state_dir>/pki``: the lab's CA and certificates (``up(tls=True)``)."""
        return os.path.join(self.state_dir, "pki")

    def ensure_pki(self, hosts: int) -> tuple[str, str, str]:
        """The CA, the controller's certificate and hosts 1..``hosts``' certificates (kept if
        there); returns the controller's (certificate, key, CA)."""
        from controller import pki

        pki.init_ca(self.pki_dir, f"vxplane lab {self.prefix} CA")
        for name in ["controller", *(self.host_name(i) for i in range(1, hosts + 1))]:
            cert, _ = pki.cert_paths(self.pki_dir, name)
            if not os.path.exists(cert):
                kind = "controller" if name == "controller" else "host"
                sans = [self.gateway_ip] if kind == "controller" else []
                pki.issue(self.pki_dir, name, kind, sans)  # type: ignore[arg-type]
        return self.openflow_tls()

    def openflow_tls(self) -> tuple[str, str, str]:
        """(certificate, key, CA) for the controller's OpenFlow listener."""
        cert, key = (os.path.join(self.pki_dir, f"controller.{x}") for x in ("pem", "key"))
        return cert, key, os.path.join(self.pki_dir, "ca.pem")

    def host_ssl(self, host: str) -> tuple[str, str, str]:
        """(key, certificate, CA) of ``host``'s switch, as ``set-ssl`` takes them."""
        name = self.host_name(host)
        base = os.path.join(self.pki_dir, name)
        return f"{base}.key", f"{base}.pem", os.path.join(self.pki_dir, "ca.pem")

    @property
    def state_file(self) -> str:
        """``<state_dir>/state.json`` (see ``vxlab.state``)."""
        return self.state.path

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

    def egress_ip(self, index: int) -> IPv4Address | None:
        """The egress address of host ``index`` (``--egress-ip`` of its agent): the underlay's
        address ``MAX_HOSTS + 1 + index``; None if the underlay is too small for it."""
        slot = MAX_HOSTS + 1 + index
        return self.underlay[slot] if slot < self.underlay.num_addresses - 3 else None

    def egress_ip6(self, index: int) -> IPv6Address | None:
        """The IPv6 egress address of host ``index`` (``--egress-ip6``): the egress
        address's IPv6 twin; None without an egress address."""
        egress = self.egress_ip(index)
        if egress is None:
            return None
        return self.twin6(IPv4Interface(f"{egress}/{self.underlay.prefixlen}")).ip

    def host_paths(self, host: str) -> HostPaths:
        """Files and sockets of ``host``'s OVS and agent."""
        return HostPaths(os.path.join(self.state_dir, self.host_name(host)))

    def host_ovs_env(self, host: str) -> dict[str, str]:
        """Environment for ovs-* tools run against ``host`` (OVS_RUNDIR etc.)."""
        return self.host_paths(host).env

    def ofctl_target(self, host: str, bridge: str = "br-int") -> str:
        """``unix:<dir>/<bridge>.mgmt``: ``ovs-ofctl -O OpenFlow13 dump-flows <this>``."""
        return self.host_paths(host).mgmt(bridge)

    # -- OVS of a host ------------------------------------------------------------------

    def vsctl(self, host: str, *args: str) -> str:
        """``ovs-vsctl ARGS`` against ``host``'s ovsdb; its stdout (LabError if it fails)."""
        return ovsd.Vsctl(self.host_paths(host).db)(*args)

    def ports(self, host: str, bridge: str = "br-int") -> list[str]:
        """Names of the ports on ``host``'s ``bridge``."""
        return ovsd.Vsctl(self.host_paths(host).db).list_ports(bridge)

    def ofport(self, host: str, interface: str) -> int:
        """The OpenFlow port of ``interface`` on ``host`` (waits until OVS assigned one)."""
        return ovsd.Vsctl(self.host_paths(host).db).ofport(interface)

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
        admin_token: str | None = None,
        tls: bool = False,
    ) -> dict[str, Any]:
        """Bring up ``hosts`` emulated hosts (idempotent: what exists is kept).

        ``controller_url`` defaults to ``http://<gateway_ip>:8080`` (several, comma-separated:
        the controllers of one cluster; the agents fail over and follow the members),
        ``openflow`` to ``tcp:<gateway_ip>:6653``. ``agents=False`` starts no agents (br-int
        is made anyway). With ``wait_registered`` it waits up to ``agent_wait`` s for the
        agents to register at the controller; one that does not is reported in ``status()``
        (``registered``), not an error, as agents keep retrying. ``docker`` also starts one
        dockerd per host, its agent serving the Docker drivers (``vxlab.docker``). ``tls``
        runs OpenFlow over TLS (see the module docstring; ``openflow`` then defaults to
        ``ssl:<gateway_ip>:6653``). If a fresh lab fails halfway, what it made is removed
        again (``down``); a failing ``up`` of an existing lab leaves it as it was plus what
        was made (``down`` removes it all). Returns ``status()``.

        Each agent gets its own agent token (``<host dir>/agent-token``, mode 0600), made
        through the controller with ``admin_token``; a host's token that still works is kept.
        """
        if not 1 <= hosts <= min(MAX_HOSTS, self.underlay.num_addresses - 3):
            raise LabError(f"hosts must be 1..{min(MAX_HOSTS, self.underlay.num_addresses - 3)}")
        controller_url = controller_url or f"http://{self.gateway_ip}:8080"
        openflow = openflow or f"{'ssl' if tls else 'tcp'}:{self.gateway_ip}:6653"
        if openflow.startswith("ssl:") != tls:
            raise LabError(f"openflow target {openflow} with tls={tls}")
        indexes = range(1, hosts + 1)
        fresh = not self.state.exists()
        try:
            if tls:
                self.ensure_pki(hosts)
            with self.state.locked() as state:
                record(state, "namespaces", self.fabric_ns)
                record(state, "root_links", self.root_veth)
                fabric.ensure_fabric(self.fabric_ns, self.root_veth, self.root_ip, self.underlay)
                self._ensure_outside(state)
                for i in indexes:
                    self._ensure_host(state, i, openflow, tls)
                named = [(self.host_name(i), str(self.underlay_ip(i))) for i in indexes]
                if failed := fabric.warm_neighbours(named, self.gateway_ip):
                    log.warning("lab %s: %d underlay pings failed warming up", self.prefix, failed)
                if docker:
                    for i in indexes:
                        ensure_holder(*self._host(state, i))
                if agents:
                    for i in indexes:
                        self._ensure_token(i, controller_url, admin_token)
                        extra = [*extra_agent_args, *(self._agent_tls(i) if tls else [])]
                        self._ensure_agent(state, i, controller_url, openflow, extra)
                    deadline = time.monotonic() + agent_wait
                    for i in indexes:
                        name, host, paths = self._host(state, i)
                        agent.wait_agent(
                            name, host["pids"]["agent"], paths, deadline, wait_registered
                        )
                if docker:
                    for i in indexes:
                        name, host, paths = self._host(state, i)
                        ensure_dockerd(fabric.netns_path(name), host, paths)
        except BaseException:
            if fresh:
                log.warning("lab %s: up failed, removing what it made", self.prefix)
                self.down()
            raise
        return self.status()

    def ensure_fabric(self) -> None:
        """Only the fabric and the root namespace's gateway address (idempotent): a controller
        can then listen on ``gateway_ip`` before ``up`` starts the hosts' agents."""
        with self.state.locked() as state:
            record(state, "namespaces", self.fabric_ns)
            record(state, "root_links", self.root_veth)
            fabric.ensure_fabric(self.fabric_ns, self.root_veth, self.root_ip, self.underlay)

    def _ensure_outside(self, state: dict[str, Any]) -> None:
        """The outside namespace on the fabric (recorded first, removed by ``down``)."""
        record(state, "namespaces", self.outside_ns)
        record(state, "root_links", self.outside_veth)
        fabric.ensure_outside(
            self.outside_ns, self.fabric_ns, self.outside_veth, self.outside_ip, self.outside_ip6
        )

    def _ensure_token(self, i: int, controller_url: str, admin_token: str | None) -> None:
        """Host ``i``'s agent token file: kept if the controller still takes it, else a new
        agent token for that host, made with ``admin_token``."""
        name = self.host_name(i)
        path = self.host_paths(name).agent_token
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            with open(path) as file:
                token = file.read().strip()
            try:
                who = _request(
                    controller_url, "GET", "/api/v1/session",
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
            except httpx.HTTPError:
                return  # no controller to ask: keep it (the agent retries until one answers)
            if who.status_code == 200 and who.json().get("host") == name:
                return
        if not admin_token:
            raise LabError(
                f"{name} needs an agent token and the lab has no admin token to make one: "
                "pass --token or set VXPLANE_TOKEN (the controller's admin token)"
            )
        made = _request(
            controller_url, "POST", "/api/v1/tokens",
            json={"role": "agent", "host": name, "description": f"lab {self.prefix} agent"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )  # fmt: skip
        if made.status_code != 201:
            raise LabError(f"making {name}'s agent token: HTTP {made.status_code} {made.text}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as file:
            os.fchmod(fd, 0o600)
            file.write(made.json()["token"] + "\n")

    def _host(
        self, state: dict[str, Any], host: int | str
    ) -> tuple[str, dict[str, Any], HostPaths]:
        """Name, state record and paths of ``host`` (an index or a name)."""
        name = self.host_name(host)
        return name, state["hosts"][name], self.host_paths(name)

    def _agent_tls(self, i: int) -> list[str]:
        key, cert, ca = self.host_ssl(self.host_name(i))
        return ["--ovs-ssl-key", key, "--ovs-ssl-cert", cert, "--ovs-ssl-ca", ca]

    def _ensure_host(self, state: dict[str, Any], i: int, openflow: str, tls: bool) -> None:
        """Host ``i``: its namespace and underlay veth, its OVS daemons and bridges."""
        name, ip = self.host_name(i), self.underlay_ip(i)
        paths = self.host_paths(name)
        host = state["hosts"].setdefault(
            name, {"index": i, "underlay_ip": str(ip), "dir": paths.dir, "pids": {}}
        )
        record(state, "namespaces", name)
        record(state, "root_links", f"{name}u")
        record(state, "root_links", f"{name}f")
        os.makedirs(paths.dir, exist_ok=True)
        fabric.ensure_host_netns(name, self.fabric_ns)
        ovsd.start_daemons(host["pids"], name, paths)
        address = f"{ip}/{self.underlay.prefixlen}"
        ssl = self.host_ssl(name) if tls else None
        ovsd.ensure_bridges(paths, name, fabric.UNDERLAY_DEV, address, openflow, int(ip), ssl)
        address6 = self.twin6(IPv4Interface(address))
        proc.run(["ip", "-n", name, "-6", "addr", "replace", str(address6), "dev", "br-phy",
                  "nodad"])  # fmt: skip

    def _ensure_agent(
        self,
        state: dict[str, Any],
        i: int,
        controller_url: str,
        openflow: str,
        extra: Sequence[str],
    ) -> None:
        name, host, paths = self._host(state, i)
        egress = self.egress_ip(i)
        if egress is not None:
            host["egress_ip"] = str(egress)
            extra = ["--egress-ip", str(egress), *extra]
            egress6 = self.egress_ip6(i)
            if egress6 is not None:
                host["egress_ip6"] = str(egress6)
                extra = ["--egress-ip6", str(egress6), *extra]
        argv = agent.agent_argv(self.python, name, host, paths, controller_url, openflow, extra)
        agent.ensure_agent(host, paths, argv)
        host["controller_url"] = controller_url

    # -- docker -------------------------------------------------------------------------

    def restart_dockerd(self, host: str, kill: bool = False) -> int:
        """Stop ``host``'s dockerd (SIGTERM, or SIGKILL with ``kill``) and start it again;
        returns the new pid."""
        with self.state.locked() as state:
            name, h, paths = self._host(state, host)
            pid = h["pids"].get("dockerd")
            if pid and kill:
                proc.kill_pid(pid, paths.dir)
            elif pid:
                proc.stop_pid(pid, paths.dir, timeout=20)
            ensure_dockerd(fabric.netns_path(name), h, paths)
            return int(h["pids"]["dockerd"])

    def docker_argv(self, host: str, args: Sequence[str]) -> list[str]:
        """The docker CLI command line for ``host``'s engine."""
        with self.state.locked() as state:
            name = self.host_name(host)
            if not state["hosts"].get(name, {}).get("docker_sock"):
                raise LabError(f"{name} runs no dockerd (lab up --docker)")
        return cli_argv(self.host_paths(name).dir, list(args))

    # -- containers ---------------------------------------------------------------------

    def run(
        self,
        host: str,
        name: str,
        network: str,
        ip: str | None = None,
        ifname: str = "eth0",
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Make netns ``name`` and plug it into ``network`` through ``host``'s agent, with
        ``labels`` on the endpoint from its creation.

        Blocks until the controller reports the endpoint ready; on failure the netns is
        removed again. Returns the Endpoint plus ``lab_host`` and ``netns``.
        """
        if not NAME_RE.match(name):
            raise LabError(f"bad container name {name!r}")
        with self.state.locked() as state:
            host_name = self.host_name(host)
            if host_name not in state["hosts"]:
                raise LabError(f"no lab host {host}")
            if name in state["hosts"] or name in state["namespaces"]:
                raise LabError(f"{name} is a lab host or lab namespace")
            known = state["containers"].get(name)
            if known and (known["host"], known["network"]) != (host_name, network):
                raise LabError(f"{name} already runs on {known['host']} in {known['network']}")
            if not known and fabric.netns_exists(name):
                raise LabError(f"network namespace {name} exists and was not made by the lab")
            state["containers"][name] = {"host": host_name, "network": network, "ip": None}
            if not fabric.netns_exists(name):
                proc.run(["ip", "netns", "add", name])
        try:
            with AgentClient(self.host_paths(host_name).agent_sock) as client:
                ep = client.attach(name, name, network, ip=ip, ifname=ifname, labels=labels)
        except BaseException:
            if not known:
                with self.state.locked() as state:
                    proc.run(["ip", "netns", "del", name], check=False)
                    state["containers"].pop(name, None)
            raise
        with self.state.locked() as state:
            state["containers"][name]["ip"] = ep.get("ip")
            state["containers"][name]["ip6"] = ep.get("ip6")  # dual stack, else None
        return {**ep, "lab_host": host_name, "netns": name}

    def exec(self, name: str, argv: Sequence[str], quiet: bool = False) -> int:
        """Run ``argv`` in lab container, host or the outside namespace ``name``; return its
        exit code.

        ``quiet`` discards its output (else it goes to ours)."""
        with self.state.locked() as state:
            if name == self.outside_ns and name in state["namespaces"]:
                pass
            elif name not in state["containers"]:
                name = self.host_name(name)
                if name not in state["hosts"]:
                    raise LabError(f"no lab container or host {name}")
        out = subprocess.DEVNULL if quiet else None
        argv = ["ip", "netns", "exec", name, *argv]
        return subprocess.run(argv, check=False, stdout=out, stderr=out).returncode

    def rm(self, name: str) -> dict[str, Any]:
        """Detach container ``name`` through its host's agent and delete its netns."""
        with self.state.locked() as state:
            known = state["containers"].get(name)
            if known is None:
                raise LabError(f"no lab container {name}")
            result: dict[str, Any] = {"name": name, "detached": False}
            try:
                with AgentClient(self.host_paths(known["host"]).agent_sock) as client:
                    result.update(client.detach(name, known["network"]))
            except (AgentCallError, AgentUnavailable) as exc:
                result["error"] = exc.detail
            proc.run(["ip", "netns", "del", name], check=False)
            del state["containers"][name]
            return result

    # -- status and down ----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The lab as a dict: ``hosts`` and ``containers`` are lists of flat rows.

        ``outside_ip`` and ``outside_ip6`` are the outside namespace's addresses (see the
        module docstring). Host rows: ``name, underlay_ip, egress_ip, egress_ip6, ovs
        ("up"/"down"), agent ("registered"/"unregistered"/"down"/"none"), pids {daemon:
        {pid, alive}}, netns, agent_socket, ovsdb, ofctl, controller_url, last_error``.
        Container rows: ``name, host, network, ip, ip6`` (None unless the network is dual
        stack).
        """
        base = {
            "prefix": self.prefix,
            "underlay": str(self.underlay),
            "gateway": self.gateway_ip,
            "outside": self.outside_ns,
            "outside_ip": str(self.outside_ip.ip),
            "outside_ip6": str(self.outside_ip6.ip),
        }
        if not self.state.exists():
            return {**base, "up": False, "hosts": [], "containers": []}
        with self.state.locked() as state:
            hosts = [
                self._host_row(name, h)
                for name, h in sorted(state["hosts"].items(), key=lambda kv: kv[1]["index"])
            ]
            containers = [
                {
                    "name": name,
                    "host": c["host"],
                    "network": c["network"],
                    "ip": c["ip"],
                    "ip6": c.get("ip6"),
                }  # fmt: skip
                for name, c in sorted(state["containers"].items())
            ]
            return {**base, "up": True, "hosts": hosts, "containers": containers}

    @staticmethod
    def _host_row(name: str, h: dict[str, Any]) -> dict[str, Any]:
        paths = HostPaths(h["dir"])
        pids = {k: {"pid": p, "alive": proc.pid_alive(p)} for k, p in h["pids"].items()}
        ovs_up = all(pids.get(d, {}).get("alive") for d in OVS_DAEMONS)
        health = agent.agent_health(paths.agent_sock) if "agent" in pids else None
        if "agent" not in pids:
            agent_state = "none"
        elif not pids["agent"]["alive"] or health is None:
            agent_state = "down"
        else:
            agent_state = "registered" if health.get("registered") else "unregistered"
        return {
            "name": name,
            "underlay_ip": h["underlay_ip"],
            "egress_ip": h.get("egress_ip"),
            "egress_ip6": h.get("egress_ip6"),
            "ovs": "up" if ovs_up else "down",
            "agent": agent_state,
            "pids": pids,
            "netns": fabric.netns_exists(name),
            "agent_socket": paths.agent_sock,
            "ovsdb": paths.db,
            "ofctl": paths.mgmt("br-int"),
            "controller_url": h.get("controller_url"),
            "last_error": (health or {}).get("last_error"),
        }

    def down(self) -> None:
        """Remove everything recorded: agents, OVS daemons (by pid), namespaces, veths, files."""
        if not os.path.exists(self.state_dir):
            return
        with self.state.locked() as state:
            for name in list(state["containers"]):
                proc.run(["ip", "netns", "del", name], check=False)
                del state["containers"][name]
            for host in state["hosts"].values():
                self._stop_host(host)
                host["pids"] = {}
            for ns in reversed(state["namespaces"]):
                if fabric.netns_exists(ns):
                    proc.run(["ip", "netns", "del", ns], check=False)
            state["namespaces"] = []
            for link in state["root_links"]:
                if fabric.link_exists(link):
                    proc.run(["ip", "link", "del", link], check=False)
            state["root_links"] = []
            for host in state["hosts"].values():
                shutil.rmtree(host["dir"], ignore_errors=True)
            state["hosts"] = {}
            shutil.rmtree(self.pki_dir, ignore_errors=True)
        self.state.remove()

    @staticmethod
    def _stop_host(host: dict[str, Any]) -> None:
        """Stop a host's processes: engine, agent, mount holder, then OVS."""
        paths = HostPaths(host["dir"])
        pids = dict(host["pids"])
        for daemon in OVS_DAEMONS:
            pids.setdefault(daemon, proc.read_pidfile(paths.pidfile(daemon)))
        if pids.get("dockerd"):
            stop_engine(pids["dockerd"], paths.dir)
        if pids.get("agent"):
            proc.stop_pid(pids["agent"], paths.agent_sock)
        if pids.get("mnt-holder"):
            proc.stop_pid(pids["mnt-holder"], paths.dir)
        for daemon in OVS_DAEMONS:
            # Only a process whose command line names this host's dir is ours.
            if pids.get(daemon):
                proc.stop_pid(pids[daemon], paths.dir)
            alt = proc.read_pidfile(paths.pidfile(daemon))
            if alt and alt != pids.get(daemon):
                proc.stop_pid(alt, paths.dir)


def _request(urls: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """``method path`` on the first of the comma-separated controller ``urls`` that can be
    reached (the controllers of one cluster share their database)."""
    bases = [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]
    for i, base in enumerate(bases):
        try:
            with httpx.Client(base_url=base, timeout=10) as api:
                return api.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if i + 1 == len(bases):
                raise
    raise httpx.ConnectError(f"no controller URL in {urls!r}")
