"""The host agent: keeps br-int, registers the host, and keeps local ports and controller agreed.

One ``Agent`` per host. A control thread ensures the bridge, registers the host at the
controller (retrying with backoff while it is unreachable, so agents may start before the
controller and survive its restarts), reconciles local ports with the controller
(``plan.py``) after every (re)registration and whenever OVS reports a port whose device
vanished, then heartbeats. Plugging and unplugging is ``plug.Plugger``'s; the agent's HTTP
surface is ``hostagent.http``, and the runtimes (CNI, Docker) sit on top in
``hostagent.runtimes``.
"""

from __future__ import annotations

import logging
import threading
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hostagent import plan as planmod
from hostagent.client import ControllerClient, ControllerError
from hostagent.edges import BridgeSpec, LinkEdge, OvsEdge
from hostagent.errors import AgentError, ControllerUnavailable
from hostagent.gateway import ensure_gateway
from hostagent.metrics import AgentMetrics
from hostagent.model import Endpoint
from hostagent.ovs import TUNNEL_PORT, detect_datapath_type
from hostagent.plug import EXT_ENDPOINT, EXT_IP, EXT_IP6, EXT_NETWORK, Plugger, PlugRequest
from hostagent.settings import AgentSettings

log = logging.getLogger("hostagent")

EXT_CLUSTER = "vxplane-cluster-id"  # br-int's external_ids: the cluster this host joined


class Agent:
    """The state and verbs of one host's agent."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        client: ControllerClient,
        ovs: OvsEdge,
        links: LinkEdge,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.host = settings.host
        self.bridge = settings.bridge
        self.client = client
        self.ovs = ovs
        self.links = links
        self.plugger = Plugger(
            settings.host, settings.bridge, ovs=ovs, links=links, client=client,
            mtu=settings.mtu, ready_timeout=settings.ready_timeout, metrics=metrics,
        )  # fmt: skip
        self.dpid: int | None = None
        self.tunnel_port: int | None = None
        self.gateway_port: int | None = None
        self.registered = False
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._register_lock = threading.Lock()
        self._adopted = False  # --adopt-cluster applies to the first registration only
        ovs.on_port_down = self._port_down

    # -- lifecycle ----------------------------------------------------------------------

    def setup_bridge(self) -> None:
        """Ensure br-int and its tunnel port; learn the dpid and the tunnel's ofport."""
        s = self.settings
        spec = BridgeSpec(
            s.bridge, s.datapath_type or detect_datapath_type(), s.openflow_targets, s.dpid,
            s.ovs_ssl,
        )  # fmt: skip
        self.ovs.ensure_bridge(spec)
        self.dpid = self.ovs.bridge_dpid(self.bridge)
        self.tunnel_port = self.ovs.wait_ofport(TUNNEL_PORT)
        if s.egress_ip is not None:
            self.gateway_port = ensure_gateway(self.ovs, self.bridge, s.egress_ip, s.egress_ip6)
        log.info(
            "host %s: bridge %s ready (datapath %s, dpid %016x, tunnel ofport %d, controllers %s)",
            self.host, self.bridge, spec.datapath_type, self.dpid, self.tunnel_port,
            ", ".join(self.ovs.controllers(self.bridge)),
        )  # fmt: skip

    def register(self) -> None:
        """Register this host at the controller, then reconcile local ports with it."""
        with self._register_lock:
            if self.registered:
                return
            self._register_in_cluster()
            log.info("host %s: registered at %s", self.host, self.client.base_url)
            self.reconcile()
            self.registered = True

    def _register_in_cluster(self) -> None:
        """Register, sending the cluster id kept in br-int (the controller refuses, 409, if
        its database is another cluster's: then nothing here changes); keep the id of the
        cluster joined. ``--adopt-cluster`` sends none on this process's first registration."""
        kept = self.ovs.bridge_ids(self.bridge).get(EXT_CLUSTER)
        adopt = self.settings.adopt_cluster and not self._adopted
        answer = self.client.register_host(
            self.host, str(self.settings.underlay_ip), self.dpid, self.tunnel_port,
            cluster_id=None if adopt else kept,
            egress_ip=str(self.settings.egress_ip) if self.gateway_port else None,
            gateway_port=self.gateway_port,
            egress_ip6=str(self.settings.egress_ip6)
            if self.gateway_port and self.settings.egress_ip6 else None,
        )  # fmt: skip
        joined = answer.get("cluster_id")
        if joined and joined != kept:
            if kept and not adopt:  # a controller that does not check: do not reconcile
                raise AgentError(f"controller is cluster {joined}, {self.bridge} is in {kept}")
            self.ovs.set_bridge_ids(self.bridge, {EXT_CLUSTER: joined})
            was = f"was {kept}" if kept else "new"
            level = logging.WARNING if kept else logging.INFO
            log.log(level, "host %s: joined cluster %s (%s)", self.host, joined, was)
        self._adopted = True

    def start(self) -> None:
        """Start the control thread (bridge, registration, reconciliation, heartbeats)."""
        self._thread = threading.Thread(target=self._control_loop, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the control thread and close the controller and OVSDB connections."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.plugger.close()
        self.client.close()
        self.ovs.close()

    def _port_down(self, port_name: str) -> None:
        """OVS says a port's link went down (maybe its device is gone): reconcile soon, on
        the control thread."""
        self._wake.set()

    def _control_loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.tunnel_port is None:
                    self.setup_bridge()
                if not self.registered:
                    self.register()
                elif self._wake.is_set():
                    self._wake.clear()
                    self.reconcile()
                else:
                    self.client.heartbeat(self.host)
                    self.follow_members()
                backoff = 0.2
                self.last_error = None
                self._wake.wait(self.settings.heartbeat_interval)
                continue
            except ControllerError as exc:
                if exc.status == 404:
                    log.warning("host %s: controller forgot us, registering again", self.host)
                else:
                    log.error("host %s: controller refused: %s", self.host, exc.detail)
                self.last_error = exc.detail
            except AgentError as exc:
                if self.registered or self.last_error != exc.detail:
                    log.warning("host %s: %s (retrying)", self.host, exc.detail)
                self.last_error = exc.detail
            except Exception as exc:  # keep the agent alive; the next round retries
                log.exception("host %s: control loop error", self.host)
                self.last_error = repr(exc)
            self.registered = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def follow_members(self) -> list[str] | None:
        """Point br-int at every live controller of the cluster, and the API client too;
        the targets it sets, or None when nothing changes (no member live: a database outage
        makes every lease look lapsed, and the bridge must never lose all its targets)."""
        try:
            members = self.client.list_controllers()
        except ControllerError as exc:
            if exc.status == 404:  # a controller from before clusters: one target, as given
                return None
            raise
        targets = planmod.controller_targets(members)
        if not targets:
            return None
        self.client.set_members(
            [str(m["api_url"]) for m in members if m.get("alive") and m.get("api_url")]
        )
        if self.ovs.controllers(self.bridge) == targets:
            return None
        log.info("host %s: %s controllers now %s", self.host, self.bridge, ", ".join(targets))
        self.ovs.set_controllers(self.bridge, targets)
        return targets

    # -- reconciliation -----------------------------------------------------------------

    def local_ports(self) -> list[planmod.LocalPort]:
        """Ports on br-int that carry a vxplane endpoint (ofport None: its device is gone,
        which OVS reports as ofport -1 only at its next reconfiguration)."""
        ports = []
        devices = self.links.names()
        for port in self.ovs.ports(self.bridge):
            ids = port.external_ids
            if EXT_ENDPOINT not in ids:
                continue
            try:
                ip = IPv4Address(ids[EXT_IP]) if ids.get(EXT_IP) else None
            except ValueError:
                ip = None
            try:
                ip6 = IPv6Address(ids[EXT_IP6]) if ids.get(EXT_IP6) else None
            except ValueError:
                ip6 = None
            ports.append(
                planmod.LocalPort(
                    network=ids.get(EXT_NETWORK, ""),
                    name=ids[EXT_ENDPOINT],
                    port_name=port.name,
                    ofport=port.ofport if port.name in devices else None,
                    ip=ip,
                    ip6=ip6,
                )
            )
        return ports

    def reconcile(self) -> list[planmod.Action]:
        """Bring the controller and the local ports into agreement; return what was done."""
        local = self.local_ports()
        read = {ep.key: ep for ep in self.client.list_endpoints(host=self.host)}
        for port in local:
            if port.key not in read:
                try:
                    read[port.key] = self.client.get_endpoint(*port.key)
                except ControllerError as exc:
                    if exc.status != 404:
                        raise
        remote = {key: _remote(ep) for key, ep in read.items()}
        actions = planmod.plan(self.host, remote.values(), local)
        if self.metrics is not None:
            self.metrics.repaired(list(actions))
        for action in actions:
            # binds are compare-and-set on what was read: a bind or move by someone else
            # since then wins (409), and the next reconciliation sees it
            self._apply(
                action, read[action.port.key].revision if isinstance(action, planmod.Bind) else 0
            )
        if actions:
            log.info("host %s: reconciled: %s", self.host, actions)
        return actions

    def _live_port(self, network: str, name: str) -> bool:
        """Whether br-int has a port with a live device for the endpoint, right now."""
        return any(p.key == (network, name) and p.ofport for p in self.local_ports())

    def _apply(self, action: planmod.Action, revision: int = 0) -> None:
        """Carry out one planned action; a bind only if the endpoint is still at ``revision``
        (0 for a re-creation: only if the name is still unknown)."""
        lock = self.plugger.lock
        try:
            if isinstance(action, planmod.Recreate | planmod.Bind):
                port = action.port
                assert port.ofport is not None
                with lock(port.network, port.name):
                    # an unplug that held the lock while we planned may have removed the port
                    if self._live_port(port.network, port.name):
                        self.client.bind(
                            port.network, port.name, self.host, port.ofport, port.port_name,
                            create=True, ip=str(port.ip) if port.ip else None,
                            if_revision=revision,
                        )  # fmt: skip
            elif isinstance(action, planmod.Unbind):
                with lock(action.network, action.name):
                    # a plug that held the lock while we planned may have made the port
                    if not self._live_port(action.network, action.name):
                        self.client.unbind(action.network, action.name, host=self.host)
            elif isinstance(action, planmod.RemoveLocal | planmod.DropStale):
                port = action.port
                with lock(port.network, port.name):
                    if isinstance(action, planmod.RemoveLocal) or not self._live_port(*port.key):
                        self.plugger.remove_local(port.port_name)
            else:
                log.warning(
                    "host %s: endpoint %s/%s has %s %s locally but %s %s at the controller; "
                    "left alone",
                    self.host, action.port.network, action.port.name, action.port.ip,
                    action.port.ip6 or "", action.controller_ip, action.controller_ip6 or "",
                )  # fmt: skip
        except ControllerUnavailable:
            raise
        except AgentError as exc:
            log.warning("host %s: reconcile %s failed: %s", self.host, action, exc.detail)

    # -- the verbs of the local API -------------------------------------------------------

    def attach(self, req: PlugRequest) -> Endpoint:
        """Plug ``req``'s endpoint into its namespace (the plug refuses a missing one or the
        host's own before anything is made); return it once ready."""
        if self.tunnel_port is None:
            raise ControllerUnavailable(f"host {self.host}: bridge {self.bridge} not set up yet")
        if not self.registered:
            self.register()  # do not make the caller wait for the control loop's next round
        return self.plugger.plug(req)

    def detach(self, network: str, name: str) -> dict[str, Any]:
        """Unplug endpoint ``name`` of ``network`` (port, veth) and unbind it; idempotent."""
        unbound = self.plugger.unplug(network, name)
        if not unbound:
            self.registered = False  # reconcile once the controller is back
        return {"network": network, "name": name, "detached": True, "unbound": unbound}

    def local_endpoints(self) -> list[dict[str, Any]]:
        """The endpoints plugged on this host, as found on br-int."""
        return [
            {
                "network": p.network,
                "name": p.name,
                "ip": str(p.ip) if p.ip else None,
                "ip6": str(p.ip6) if p.ip6 else None,
                "port_name": p.port_name,
                "ofport": p.ofport,
            }
            for p in self.local_ports()
        ]

    def health(self) -> dict[str, Any]:
        """What ``GET /v1/healthz`` reports."""
        return {
            "status": "ok",
            "host": self.host,
            "underlay_ip": str(self.settings.underlay_ip),
            "bridge": self.bridge,
            "bridge_ready": self.tunnel_port is not None,
            "dpid": f"{self.dpid:016x}" if self.dpid is not None else None,
            "tunnel_port": self.tunnel_port,
            "controller": self.client.base_url,
            "registered": self.registered,
            "last_error": self.last_error,
        }


def _remote(ep: Endpoint) -> planmod.RemoteEndpoint:
    return planmod.RemoteEndpoint(
        network=ep.network, name=ep.name, ip=ep.ip, host=ep.host, ofport=ep.ofport, ip6=ep.ip6
    )
