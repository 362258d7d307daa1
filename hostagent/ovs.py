"""OvsdbOps: the agent's verbs on its Open vSwitch, over one persistent OVSDB connection.

ovsdbapp keeps an in-memory replica of the tables we use (Open_vSwitch, Bridge, Port,
Interface, Controller), updated by the server's monitor stream:

- reads (ports and their ``external_ids``, the highest ofport) come from the replica, with
  no round trip and no fork;
- a port is added in one transaction that does not wait for ovs-vswitchd (ovsdbapp's
  default, like ``ovs-vsctl``, bumps ``next_cfg`` and blocks the connection's only thread
  until vswitchd applied it); the OpenFlow port number then arrives in the update stream
  and ``wait_ofport`` wakes on it instead of polling;
- an interface whose link goes down (its device vanished: vswitchd keeps the ofport until
  its next reconfiguration, then reports -1) is reported to ``on_port_down`` at once, so the
  agent checks the device and unplugs the port and unbinds its endpoint.

Bridge set-up waits for vswitchd (it happens once, at start). Every verb can be retried:
``may_exist`` and ``if_exists`` everywhere, and ports carry the endpoint they belong to in
``external_ids`` (``vxplane-network``, ``vxplane-endpoint``, ``vxplane-ip``, ``iface-id``).

The tunnel is one flow-based VXLAN port ``vxlan0`` (``remote_ip=flow``, ``key=flow``) at
ofport 1. No ``local_ip``: the source address comes from the route to ``tun_dst`` (with the
userspace datapath the underlay address must sit on an OVS internal port such as
``br-phy``); the controller checks ``tun_src`` on receive.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# The ovs library imports eventlet when it is installed (os-ken brings it), which warns.
warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")

from ovsdbapp.backend.ovs_idl import connection, idlutils  # noqa: E402
from ovsdbapp.backend.ovs_idl import transaction as ovs_txn  # noqa: E402
from ovsdbapp.schema.open_vswitch import impl_idl  # noqa: E402

from hostagent.edges import BridgeSpec, PortRecord  # noqa: E402
from hostagent.errors import OvsError  # noqa: E402

log = logging.getLogger(__name__)

TUNNEL_PORT = "vxlan0"
TUNNEL_OFPORT = 1
MAX_OFPORT = 65279  # OVS refuses flows naming a higher port (65534 is a bridge's LOCAL)
# Only the columns the agent reads or writes: ovs-vswitchd rewrites every interface's
# statistics every few seconds, which the replica would otherwise parse for nothing.
COLUMNS = {
    "Open_vSwitch": ["bridges", "cur_cfg", "next_cfg", "ssl"],
    "SSL": ["private_key", "certificate", "ca_cert"],
    "Bridge": [
        "name", "ports", "datapath_type", "datapath_id", "fail_mode", "protocols",
        "other_config", "controller", "external_ids",
    ],
    "Port": ["name", "interfaces"],
    "Interface": [
        "name", "type", "options", "ofport", "ofport_request", "external_ids", "link_state",
        "error",
    ],
    "Controller": ["target", "max_backoff", "inactivity_probe"],
}  # fmt: skip


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


class _NoWaitTransaction(ovs_txn.Transaction):
    """Commit and return: do not wait for ovs-vswitchd to apply the change."""

    def pre_commit(self, txn: Any) -> None:
        txn.expected_ifaces = set()  # AddPortCommand records the interface here


class _Api(impl_idl.OvsdbIdl):
    def create_transaction(
        self, check_error: bool = False, log_errors: bool = True, wait: bool = True, **_: Any
    ) -> Any:
        cls = impl_idl.OvsVsctlTransaction if wait else _NoWaitTransaction
        return cls(self, self.ovsdb_connection, check_error=check_error, log_errors=log_errors)


class _Idl(connection.OvsdbIdl):
    """The replica: updates are applied under ``lock``, and interface changes reported."""

    def __init__(self, remote: str, helper: Any, on_row: Callable[[str, Any], None]) -> None:
        super().__init__(remote, helper, leader_only=False)
        self.lock = threading.RLock()
        self._on_row = on_row

    def run(self) -> Any:
        with self.lock:
            return super().run()

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        if event in ("create", "update"):
            self._on_row(row._table.name, row)


class OvsdbOps:
    """Idempotent OVS verbs on the ovsdb at ``remote`` (``unix:/path/db.sock``)."""

    def __init__(self, remote: str, timeout: float = 10.0) -> None:
        self.remote = remote
        self.timeout = timeout
        self.on_port_down: Callable[[str], None] | None = None
        self._cond = threading.Condition()
        self._ofports: dict[str, int] = {}  # interface name -> its ofport as last seen
        self._links: dict[str, str] = {}  # interface name -> its link_state as last seen
        try:
            helper = idlutils.get_schema_helper(remote, "Open_vSwitch")
            for table, columns in COLUMNS.items():
                helper.register_columns(table, columns)
            self._idl = _Idl(remote, helper, self._row_changed)
            self._conn = connection.Connection(self._idl, timeout=timeout)
            self.api = _Api(self._conn)
        except Exception as exc:  # noqa: BLE001 - ovsdbapp raises many kinds
            raise OvsError(f"ovsdb {remote}: {exc}") from exc

    def close(self) -> None:
        """Stop the connection thread."""
        self._conn.stop(timeout=2)

    # -- the replica ---------------------------------------------------------------------

    def _row_changed(self, table: str, row: Any) -> None:
        if table != "Interface":
            with self._cond:
                self._cond.notify_all()  # a bridge's datapath_id, for bridge_dpid
            return
        ofport = row.ofport[0] if row.ofport else 0
        link = row.link_state[0] if row.link_state else ""
        with self._cond:
            before = self._ofports.get(row.name, 0)
            was = self._links.get(row.name, "")
            self._ofports[row.name] = ofport
            self._links[row.name] = link
            self._cond.notify_all()
        went_down = (ofport == -1 and before > 0) or (link == "down" and was == "up")
        if went_down and self.on_port_down is not None:
            log.info("ovs: interface %s went down (ofport %d, link %s)", row.name, ofport, link)
            self.on_port_down(row.name)

    def _execute(self, *commands: Any, wait: bool = True) -> list[Any]:
        try:
            with self.api.transaction(check_error=True, wait=wait) as txn:
                for command in commands:
                    txn.add(command)
            return list(txn.result or [])
        except Exception as exc:  # noqa: BLE001 - ovsdbapp raises many kinds
            raise OvsError(f"ovsdb {self.remote}: {exc}") from exc

    # -- bridges -------------------------------------------------------------------------

    def ensure_bridge(self, spec: BridgeSpec) -> None:
        """Make ``spec.name`` an OpenFlow 1.3, fail-secure bridge with ``vxlan0`` at ofport 1,
        and wait for ovs-vswitchd to apply it.

        The controller targets are set only when br-int has none of them (a restarted agent
        keeps the cluster's members it found there): going from no controller to one (or
        back) makes OVS delete every flow, so an agent never passes through zero targets.
        """
        api = self.api
        other = {"disable-in-band": "true"}
        if spec.dpid:
            other["datapath-id"] = spec.dpid
        commands = [
            api.add_br(spec.name, may_exist=True, datapath_type=spec.datapath_type),
            api.db_set(
                "Bridge", spec.name,
                ("fail_mode", "secure"), ("protocols", ["OpenFlow13"]), ("other_config", other),
            ),
            api.add_port(
                spec.name, TUNNEL_PORT, may_exist=True, type="vxlan",
                options={"remote_ip": "flow", "key": "flow"}, ofport_request=TUNNEL_OFPORT,
            ),
        ]  # fmt: skip
        self._execute(*commands)
        if spec.ssl is not None:
            self._ensure_ssl(*spec.ssl)  # before an ssl: target needs it
        current = self.controllers(spec.name)
        if spec.controllers and not set(spec.controllers) & set(current):
            self.set_controllers(spec.name, spec.controllers)
        self.wait_ofport(TUNNEL_PORT)

    def set_controllers(self, bridge: str, targets: Sequence[str]) -> None:
        """Make ``targets`` br-int's controllers, in one transaction, if they differ. Never
        none: going to zero controllers (or from zero) deletes every flow on the bridge, so an
        empty list is refused (``OvsError``) and the bridge keeps what it has."""
        wanted = sorted(set(targets))
        if not wanted:
            raise OvsError(f"{bridge}: refusing to remove every controller (flows would go)")
        if self.controllers(bridge) == wanted:
            return
        api = self.api
        self._execute(api.set_controller(bridge, wanted))
        # Reconnect quickly after a controller restart (the default backoff grows to 8 s).
        with self._idl.lock:
            rows = self._idl.tables["Controller"].rows.values()
            uuids = [r.uuid for r in rows if r.target in wanted]
        self._execute(
            *(
                api.db_set("Controller", u, ("max_backoff", 1000), ("inactivity_probe", 5000))
                for u in uuids
            )
        )

    def _ensure_ssl(self, key: str, cert: str, ca: str) -> None:
        """``ovs-vsctl set-ssl KEY CERT CA`` unless already so: the files ovs-vswitchd uses
        for ``ssl:`` controller targets."""
        with self._idl.lock:
            root = next(iter(self._idl.tables["Open_vSwitch"].rows.values()))
            current = root.ssl[0] if root.ssl else None
            have = (current.private_key, current.certificate, current.ca_cert) if current else None
            root_uuid = root.uuid
        if have == (key, cert, ca):
            return
        api = self.api
        row = api.db_create("SSL", private_key=key, certificate=cert, ca_cert=ca)
        self._execute(row, api.db_set("Open_vSwitch", root_uuid, ("ssl", row)))
        log.info("ovs: OpenFlow TLS with key %s, certificate %s, CA %s", key, cert, ca)

    def controllers(self, bridge: str) -> list[str]:
        """br-int's OpenFlow controller targets, sorted."""
        with self._idl.lock:
            row = idlutils.row_by_value(self._idl, "Bridge", "name", bridge, None)
            return sorted(c.target for c in row.controller) if row is not None else []

    def bridge_dpid(self, name: str) -> int:
        """The datapath id ovs-vswitchd chose for ``name`` (waits until it is set)."""

        def dpid() -> int | None:
            with self._idl.lock:
                row = idlutils.row_by_value(self._idl, "Bridge", "name", name, None)
                value = row.datapath_id if row is not None else None
            return int(value[0], 16) if value else None

        with self._cond:
            if not self._cond.wait_for(lambda: dpid() is not None, timeout=self.timeout):
                raise OvsError(f"bridge {name} has no datapath_id after {self.timeout}s")
        found = dpid()
        assert found is not None
        return found

    def bridge_ids(self, name: str) -> dict[str, str]:
        """The bridge's ``external_ids`` (empty if there is no such bridge)."""
        with self._idl.lock:
            row = idlutils.row_by_value(self._idl, "Bridge", "name", name, None)
            return dict(row.external_ids) if row is not None else {}

    def set_bridge_ids(self, name: str, external_ids: Mapping[str, str]) -> None:
        """Add or update keys of the bridge's ``external_ids`` (others are kept)."""
        self._execute(*(self.api.br_set_external_id(name, k, v) for k, v in external_ids.items()))

    # -- ports ---------------------------------------------------------------------------

    def add_port(
        self,
        bridge: str,
        name: str,
        external_ids: Mapping[str, str],
        ofport_request: int | None = None,
    ) -> None:
        """Add port ``name`` (whose device exists) to ``bridge`` in one transaction, without
        waiting for ovs-vswitchd; an existing port only gets its ``external_ids`` updated."""
        with self._idl.lock:
            exists = idlutils.row_by_value(self._idl, "Interface", "name", name, None) is not None
        if exists:
            command = self.api.db_set("Interface", name, ("external_ids", dict(external_ids)))
        else:
            with self._cond:
                self._ofports.pop(name, None)  # a number seen for an earlier port of this name
            attrs: dict[str, Any] = {"external_ids": dict(external_ids)}
            if ofport_request is not None:
                attrs["ofport_request"] = ofport_request
            command = self.api.add_port(bridge, name, may_exist=True, **attrs)
        self._execute(command, wait=False)

    def add_internal_port(self, bridge: str, name: str) -> None:
        """An internal port ``name`` on ``bridge`` (its device is made by ovs-vswitchd); kept
        if it exists."""
        command = self.api.add_port(bridge, name, may_exist=True, type="internal")
        self._execute(command)

    def wait_ofport(self, name: str, timeout: float | None = None) -> int:
        """The OpenFlow port number ovs-vswitchd gave ``name``, once the update stream tells;
        OvsError if it reports the device missing (ofport -1) or nothing comes in time."""
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            self._cond.wait_for(lambda: self._ofports.get(name, 0) != 0, timeout=limit)
            ofport = self._ofports.get(name, 0)
        if ofport > 0:
            return ofport
        error = self._interface_error(name)
        if ofport == -1:
            raise OvsError(f"interface {name}: ovs-vswitchd could not add it ({error})")
        raise OvsError(f"interface {name} got no ofport in {limit}s ({error})")

    def _interface_error(self, name: str) -> str:
        with self._idl.lock:
            row = idlutils.row_by_value(self._idl, "Interface", "name", name, None)
            if row is None:
                return "no such interface"
            return row.error[0] if row.error else "no error reported"

    def set_port_ids(self, name: str, external_ids: Mapping[str, str]) -> None:
        """Add or update keys of interface ``name``'s ``external_ids`` (others are kept)."""
        self._execute(
            *(self.api.iface_set_external_id(name, k, v) for k, v in external_ids.items()),
            wait=False,
        )

    def delete_port(self, bridge: str, name: str) -> None:
        """Remove port ``name`` from ``bridge``; a no-op if it is not there."""
        self._execute(self.api.del_port(name, bridge=bridge, if_exists=True), wait=False)

    def ports(self, bridge: str) -> list[PortRecord]:
        """The ports of ``bridge`` (from the replica): name, ofport (None: none or dead), ids."""
        with self._idl.lock:
            row = idlutils.row_by_value(self._idl, "Bridge", "name", bridge, None)
            if row is None:
                return []
            found = []
            for port in row.ports:
                for iface in port.interfaces:
                    ofport = iface.ofport[0] if iface.ofport else None
                    found.append(
                        PortRecord(
                            name=iface.name,
                            ofport=ofport if ofport is not None and ofport > 0 else None,
                            external_ids=dict(iface.external_ids),
                        )
                    )
            return found

    def max_ofport(self, bridge: str) -> int:
        """The highest OpenFlow port number in use or requested on ``bridge`` (0 if none),
        among real ports: the bridge's own LOCAL port (65534) does not count."""
        best = 0
        with self._idl.lock:
            row = idlutils.row_by_value(self._idl, "Bridge", "name", bridge, None)
            ports = list(row.ports) if row is not None else []
            for port in ports:
                for iface in port.interfaces:
                    for value in (*iface.ofport, *iface.ofport_request):
                        if 0 < int(value) <= MAX_OFPORT:
                            best = max(best, int(value))
        return best
