"""OvsOps: the agent's idempotent verbs on one Open vSwitch instance, through ovs-vsctl.

Every verb can be retried: bridges and ports are added with ``--may-exist``, removed with
``--if-exists``, and ports carry the endpoint they belong to in ``external_ids``
(``vxplane-network``, ``vxplane-endpoint``, ``vxplane-ip``, ``iface-id``), so what a crashed
agent made is found again by the next one.

The tunnel is one flow-based VXLAN port ``vxlan0`` (``remote_ip=flow``, ``key=flow``) with
``ofport_request=1``. No ``local_ip`` is set: on transmit the source address comes from the
route to ``tun_dst`` (OVS's own router, fed from the kernel's routes; with the userspace
datapath the underlay address must sit on an OVS internal port such as ``br-phy``), and on
receive the port accepts packets to any local address; the controller checks ``tun_src``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hostagent.errors import OvsError

log = logging.getLogger(__name__)

TUNNEL_PORT = "vxlan0"
TUNNEL_OFPORT = 1


def _quote(value: str) -> str:
    """An ovs-vsctl string atom: always double-quoted, so ``/``, ``:`` and ``=`` survive."""
    return json.dumps(value)


def _atom(value: Any) -> Any:
    """Decode one value of ovs-vsctl's JSON output (plain atom, ``set`` or ``map``)."""
    if isinstance(value, list) and len(value) == 2:
        kind, body = value
        if kind == "set":
            return [_atom(v) for v in body]
        if kind == "map":
            return {k: _atom(v) for k, v in body}
        if kind == "uuid":
            return body
    return value


def detect_datapath_type() -> str:
    """``system`` when the openvswitch kernel module is loaded or loadable, else ``netdev``."""
    if os.path.isdir("/sys/module/openvswitch"):
        return "system"
    try:
        done = subprocess.run(
            ["modprobe", "-q", "openvswitch"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "netdev"
    if done.returncode == 0 and os.path.isdir("/sys/module/openvswitch"):
        return "system"
    return "netdev"


class OvsOps:
    """Idempotent ovs-vsctl verbs against one ovsdb (``db`` = ``unix:/path/db.sock`` or None)."""

    def __init__(self, db: str | None = None, timeout: int = 10) -> None:
        self.db = db
        self.timeout = timeout

    # -- plumbing -----------------------------------------------------------------------

    def vsctl(self, *args: str, wait: bool = True) -> str:
        """Run ``ovs-vsctl`` with our db and timeout; return stdout, raise OvsError on failure."""
        argv = ["ovs-vsctl", f"--timeout={self.timeout}"]
        if self.db:
            argv.append(f"--db={self.db}")
        if not wait:
            argv.append("--no-wait")
        argv.extend(args)
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout + 5, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OvsError(f"ovs-vsctl {' '.join(args)}: {exc}") from exc
        if done.returncode != 0:
            raise OvsError(f"ovs-vsctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _find_one(self, table: str, name: str, column: str) -> Any:
        """``column`` of the row of ``table`` named ``name`` (OvsError if there is none)."""
        out = self.vsctl(
            "--format=json", f"--columns={column}", "find", table, f"name={_quote(name)}",
            wait=False,
        )  # fmt: skip
        data = json.loads(out)["data"]
        if not data:
            raise OvsError(f"{table} {name} does not exist")
        return _atom(data[0][0])

    def _rows(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        out = self.vsctl(
            "--format=json", f"--columns={','.join(columns)}", "list", table, wait=False
        )
        doc = json.loads(out)
        return [
            {h: _atom(v) for h, v in zip(doc["headings"], row, strict=True)} for row in doc["data"]
        ]

    # -- bridges ------------------------------------------------------------------------

    def ensure_bridge(
        self,
        name: str,
        datapath_type: str,
        controller_target: str | None,
        dpid: str | None = None,
    ) -> None:
        """Make ``name`` an OpenFlow 1.3, fail-secure bridge with ``vxlan0`` at ofport 1.

        ``controller_target`` is ``tcp:IP:PORT`` (None: leave the controller unset);
        ``dpid`` is 16 hex digits (None: OVS derives it from the bridge MAC).
        """
        args = [
            "--may-exist", "add-br", name,
            "--", "set", "Bridge", name,
            f"datapath_type={datapath_type}",
            "fail_mode=secure",
            "protocols=OpenFlow13",
            "other-config:disable-in-band=true",
        ]  # fmt: skip
        if dpid:
            args.append(f"other-config:datapath-id={int(dpid, 16):016x}")
        args += [
            "--", "--may-exist", "add-port", name, TUNNEL_PORT,
            "--", "set", "Interface", TUNNEL_PORT, "type=vxlan",
            "options:remote_ip=flow", "options:key=flow", f"ofport_request={TUNNEL_OFPORT}",
        ]  # fmt: skip
        self.vsctl(*args)
        if controller_target and self.get_controller(name) != [controller_target]:
            self.vsctl("set-controller", name, controller_target)
            # Reconnect quickly after a controller restart (default backoff grows to 8 s).
            self.vsctl("set", "Controller", name, "max_backoff=1000", "inactivity_probe=5000")
        self.wait_ofport(TUNNEL_PORT)

    def get_controller(self, bridge: str) -> list[str]:
        """The controller targets configured on ``bridge``."""
        return self.vsctl("get-controller", bridge, wait=False).split()

    def bridge_exists(self, name: str) -> bool:
        """Whether the bridge exists."""
        try:
            self.vsctl("br-exists", name, wait=False)
        except OvsError:
            return False
        return True

    def bridge_dpid(self, name: str) -> int:
        """The datapath id ovs-vswitchd chose for ``name`` (waits until it is set)."""
        deadline = time.monotonic() + self.timeout
        while True:
            value = self._find_one("Bridge", name, "datapath_id")
            if isinstance(value, str) and value:
                return int(value, 16)
            if time.monotonic() > deadline:
                raise OvsError(f"bridge {name} has no datapath_id after {self.timeout}s")
            time.sleep(0.05)

    def delete_bridge_if_exists(self, name: str) -> None:
        """Remove the bridge (and its ports) if it exists."""
        self.vsctl("--if-exists", "del-br", name)

    # -- ports --------------------------------------------------------------------------

    def ensure_port(
        self,
        bridge: str,
        port: str,
        external_ids: Mapping[str, str] | None = None,
        port_type: str | None = None,
        ofport_request: int | None = None,
    ) -> int:
        """Add ``port`` to ``bridge`` (if missing), set its ``external_ids``; return its ofport.

        With ``ofport_request`` the caller picks the OpenFlow port number, so it can be
        reported before the port exists; the returned number is the one OVS really gave.
        """
        args = ["--may-exist", "add-port", bridge, port]
        sets = [f"external_ids:{_quote(k)}={_quote(v)}" for k, v in (external_ids or {}).items()]
        if port_type:
            sets.append(f"type={port_type}")
        if ofport_request is not None:
            sets.append(f"ofport_request={ofport_request}")
        if sets:
            args += ["--", "set", "Interface", port, *sets]
        self.vsctl(*args)
        return self.wait_ofport(port)

    def wait_ofport(self, port: str, timeout: float | None = None) -> int:
        """Wait until ovs-vswitchd assigned ``port`` an OpenFlow port number, and return it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            rows = self.vsctl(
                "--format=json", "--columns=ofport,error", "find", "Interface",
                f"name={_quote(port)}", wait=False,
            )  # fmt: skip
            data = json.loads(rows)["data"]
            if not data:
                raise OvsError(f"interface {port} does not exist")
            ofport, error = (_atom(v) for v in data[0])
            if isinstance(ofport, int) and ofport > 0:
                return ofport
            if time.monotonic() > deadline:
                raise OvsError(f"interface {port} got no ofport: {error or 'no error reported'}")
            time.sleep(0.02)

    def max_ofport(self) -> int:
        """The highest OpenFlow port number in use or requested on this OVS (0 if none)."""
        rows = self.vsctl(
            "--format=json", "--columns=ofport,ofport_request", "list", "Interface", wait=False
        )
        best = 0
        for row in json.loads(rows)["data"]:
            for value in row:
                atom = _atom(value)
                if isinstance(atom, int):
                    best = max(best, atom)
        return best

    def set_interface_ids(self, port: str, external_ids: Mapping[str, str]) -> None:
        """Add or update keys of interface ``port``'s ``external_ids`` (others are kept)."""
        sets = [f"external_ids:{_quote(k)}={_quote(v)}" for k, v in external_ids.items()]
        self.vsctl("set", "Interface", port, *sets, wait=False)

    def delete_port_if_exists(self, bridge: str, port: str) -> None:
        """Remove ``port`` from ``bridge``; a no-op if it is not there."""
        self.vsctl("--if-exists", "del-port", bridge, port)

    def list_ports(self, bridge: str) -> list[str]:
        """Names of the ports on ``bridge``."""
        return self.vsctl("list-ports", bridge, wait=False).split()

    def list_ports_with(self, key: str, bridge: str | None = None) -> dict[str, dict[str, Any]]:
        """Interfaces carrying ``external_ids:<key>``, by name: ``{"ofport", "external_ids"}``.

        With ``bridge``, only that bridge's ports.
        """
        on_bridge = set(self.list_ports(bridge)) if bridge else None
        found: dict[str, dict[str, Any]] = {}
        for row in self._rows("Interface", ["name", "ofport", "external_ids"]):
            ids = row["external_ids"] if isinstance(row["external_ids"], dict) else {}
            if key not in ids or (on_bridge is not None and row["name"] not in on_bridge):
                continue
            ofport = row["ofport"] if isinstance(row["ofport"], int) else None
            found[row["name"]] = {"ofport": ofport, "external_ids": ids}
        return found
