"""Open vSwitch of an emulated host: its own ovsdb-server and ovs-vswitchd, and its two bridges.

Both daemons run in the host's network namespace with every file under the host's dir (db,
sockets, pid files, logs: ``vxlab.paths.HostPaths``); ``down`` stops them by recorded pid.

- ``br-phy`` (netdev) holds the ``underlay`` veth, and the host's underlay address sits on
  br-phy's internal port, as OVS's userspace tunnelling guide prescribes: the userspace VXLAN
  port finds its route and neighbour through OVS's own router, which only works when the
  address is on an OVS bridge.
- ovs-vswitchd runs with ``--disable-system-route`` and gets the underlay's one route by
  ``ovs/route/add``. With the kernel's routes mirrored (the default), every link change in
  the host's namespace (each veth an attach makes) makes ovs-vswitchd flush and re-read
  them, and the flush takes br-phy's tunnel endpoint out of its tunnel-port map for a
  moment; a revalidator that re-translates the VXLAN receive flow in that moment turns
  decapsulation into "deliver to br-phy", and the next packets reach the host's kernel
  (``UdpNoPorts``) instead of the container. Measured on the lab: 1 to 3 of 200 first pings
  lost that way with mirrored routes, none with the static route (see docs/benchmarks.md).
- ``br-int`` is the bridge the agent expects (the same settings as its own bridge setup):
  netdev, fail-secure, OpenFlow 1.3 only, in-band control off, datapath id = the underlay
  address, the flow-based VXLAN port ``vxlan0`` (``remote_ip=flow``, ``key=flow``) at
  ofport 1, and the controller with a 1 s reconnect backoff. The lab makes it itself so
  that a host works without an agent (``up(agents=False)``).

The lab is a harness: it forks ``ovs-vsctl`` (a handful of calls per host) through its own
small runner, ``Vsctl``, and never uses the agent's OVSDB code.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from typing import Any

from vxlab.errors import LabError
from vxlab.paths import HostPaths
from vxlab.proc import pid_alive, read_pidfile, run

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
TUNNEL_PORT = "vxlan0"
TUNNEL_OFPORT = 1


class Vsctl:
    """``ovs-vsctl`` against one ovsdb (``db`` = ``unix:/path/db.sock``)."""

    def __init__(self, db: str, timeout: int = 10) -> None:
        self.db = db
        self.timeout = timeout

    def __call__(self, *args: str, wait: bool = True) -> str:
        """Run ``ovs-vsctl ARGS`` and return its stdout; LabError if it fails.

        ``wait=False`` adds ``--no-wait`` (do not wait for ovs-vswitchd to apply a change)."""
        argv = ["ovs-vsctl", f"--timeout={self.timeout}", f"--db={self.db}"]
        argv += [] if wait else ["--no-wait"]
        try:
            done = subprocess.run(
                [*argv, *args], capture_output=True, text=True, timeout=self.timeout + 5
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LabError(f"ovs-vsctl {' '.join(args)}: {exc}") from exc
        if done.returncode != 0:
            raise LabError(f"ovs-vsctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def list_ports(self, bridge: str) -> list[str]:
        """Names of the ports on ``bridge``."""
        return self("list-ports", bridge, wait=False).split()

    def ofport(self, interface: str, timeout: float | None = None) -> int:
        """Wait until ovs-vswitchd gave ``interface`` an OpenFlow port number; return it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self("get", "Interface", interface, "ofport", wait=False).strip()
            if value.lstrip("-").isdigit() and int(value) > 0:
                return int(value)
            if time.monotonic() > deadline:
                error = self("get", "Interface", interface, "error", wait=False).strip()
                raise LabError(f"interface {interface} got no ofport ({value}): {error}")
            time.sleep(0.02)


def start_daemons(pids: dict[str, Any], netns: str, paths: HostPaths) -> None:
    """Start the host's ovsdb-server (creating its db) and ovs-vswitchd unless they run;
    their pids go to ``pids``."""
    if not pid_alive(pids.get("ovsdb-server")):
        if not os.path.exists(paths.db_file):
            run(["ovsdb-tool", "create", paths.db_file, SCHEMA])
        run(
            ["ip", "netns", "exec", netns, "ovsdb-server", paths.db_file,
             f"--remote=punix:{paths.db_sock}",
             "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
             f"--pidfile={paths.pidfile('ovsdb-server')}",
             f"--unixctl={paths.ctl('ovsdb-server')}",
             f"--log-file={paths.log('ovsdb-server')}", "--detach", "--no-chdir"],
            env=paths.env,
        )  # fmt: skip
        pids["ovsdb-server"] = read_pidfile(paths.pidfile("ovsdb-server"))
        Vsctl(paths.db)("init", wait=False)
    if not pid_alive(pids.get("ovs-vswitchd")):
        run(
            ["ip", "netns", "exec", netns, "ovs-vswitchd", paths.db,
             f"--pidfile={paths.pidfile('ovs-vswitchd')}",
             f"--unixctl={paths.ctl('ovs-vswitchd')}",
             f"--log-file={paths.log('ovs-vswitchd')}", "--disable-system-route",
             "--detach", "--no-chdir"],
            env=paths.env,
        )  # fmt: skip
        pids["ovs-vswitchd"] = read_pidfile(paths.pidfile("ovs-vswitchd"))


def ensure_bridges(
    paths: HostPaths,
    netns: str,
    underlay_dev: str,
    address: str,
    openflow: str,
    dpid: int,
    ssl: tuple[str, str, str] | None = None,
) -> None:
    """br-phy with ``underlay_dev`` and ``address`` (``ip/prefixlen``) on its internal port,
    and br-int pointed at the controller ``openflow`` (``tcp:IP:PORT``, or ``ssl:IP:PORT``
    with ``ssl`` = (key, certificate, CA) given to ``set-ssl`` first)."""
    vsctl = Vsctl(paths.db)
    vsctl(
        "--may-exist", "add-br", "br-phy",
        "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
        "--", "--may-exist", "add-port", "br-phy", underlay_dev,
    )  # fmt: skip
    run(["ip", "-n", netns, "addr", "replace", address, "dev", "br-phy"])
    run(["ip", "-n", netns, "link", "set", "br-phy", "up"])
    # The underlay's route in OVS's own router (system routes are not mirrored: see above).
    add_underlay_route(paths, str(ipaddress.IPv4Interface(address).network))
    if ssl is not None and vsctl("get-ssl", wait=False).split() != _ssl_shown(*ssl):
        vsctl("set-ssl", *ssl)
    ensure_br_int(vsctl, openflow, dpid)


def add_underlay_route(paths: HostPaths, subnet: str, timeout: float = 10.0) -> None:
    """``ovs/route/add SUBNET br-phy`` in the host's ovs-vswitchd, once it knows br-phy's address.

    OVS takes a route's source address from its cached list of interface addresses, and
    empties that cache only when its main loop reads the kernel's address notification. An
    ``ovs/route/add`` handled before that (``ip addr replace`` has just run; seen once on a
    loaded machine) fails with "Error while inserting route." although the address is there.
    So the command is repeated until OVS has caught up (the error says nothing else), within
    ``timeout`` seconds; any other error, or the same one after the timeout, is raised.
    """
    argv = ["ovs-appctl", "-t", paths.ctl("ovs-vswitchd"), "ovs/route/add", subnet, "br-phy"]
    deadline = time.monotonic() + timeout
    while True:
        try:
            run(argv)
            return
        except LabError as exc:
            if "Error while inserting route" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _ssl_shown(key: str, cert: str, ca: str) -> list[str]:
    """``ovs-vsctl get-ssl``'s words for these files."""
    return ["Private", "key:", key, "Certificate:", cert, "CA", "Certificate:", ca,
            "Bootstrap:", "false"]  # fmt: skip


def ensure_br_int(vsctl: Vsctl, openflow: str, dpid: int, name: str = "br-int") -> None:
    """``name`` as the agent expects it (see the module docstring); waits for vxlan0's ofport."""
    vsctl(
        "--may-exist", "add-br", name,
        "--", "set", "Bridge", name, "datapath_type=netdev", "fail_mode=secure",
        "protocols=OpenFlow13", "other-config:disable-in-band=true",
        f"other-config:datapath-id={dpid:016x}",
        "--", "--may-exist", "add-port", name, TUNNEL_PORT,
        "--", "set", "Interface", TUNNEL_PORT, "type=vxlan",
        "options:remote_ip=flow", "options:key=flow", f"ofport_request={TUNNEL_OFPORT}",
    )  # fmt: skip
    if vsctl("get-controller", name, wait=False).split() != [openflow]:
        vsctl("set-controller", name, openflow)
        # Reconnect quickly after a controller restart (the default backoff grows to 8 s).
        vsctl("set", "Controller", name, "max_backoff=1000", "inactivity_probe=5000")
    vsctl.ofport(TUNNEL_PORT)
