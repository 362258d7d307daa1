"""The host agent: plugs endpoints into br-int and keeps the controller told.

One ``Agent`` per host. A control thread ensures the bridge, registers the host at the
controller (retrying with backoff while it is unreachable, so agents may start before the
controller and survive its restarts), reconciles local ports with the controller
(``plan.py``) after every (re)registration, then heartbeats. ``attach`` and ``detach`` are
serialized per endpoint, undo everything they made on failure, and ``attach`` returns only
when the controller reports the endpoint ready (its flows confirmed on every switch).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from ipaddress import IPv4Address
from typing import Any, TypeVar
from urllib.parse import urlsplit

from hostagent import plan as planmod
from hostagent.client import ControllerClient, ControllerError
from hostagent.errors import AgentError, ControllerUnavailable, NotFound, NotReady
from hostagent.netlink import LinkOps, device_names, netns_path
from hostagent.ovs import TUNNEL_OFPORT, TUNNEL_PORT, OvsOps, detect_datapath_type

log = logging.getLogger("hostagent")
MAX_OFPORT = 65279
T = TypeVar("T")

EXT_NETWORK = "vxplane-network"
EXT_ENDPOINT = "vxplane-endpoint"
EXT_IP = "vxplane-ip"


def default_openflow_target(controller_url: str, port: int = 6653) -> str:
    """``tcp:<host of controller_url>:6653``."""
    host = urlsplit(controller_url).hostname or "127.0.0.1"
    return f"tcp:{host}:{port}"


class Agent:
    """The state and verbs of one host's agent; the HTTP layer is ``hostagent.api``."""

    def __init__(
        self,
        client: ControllerClient,
        host_name: str,
        underlay_ip: str,
        *,
        ovs: OvsOps,
        links: LinkOps,
        bridge: str = "br-int",
        openflow_target: str | None = None,
        datapath_type: str | None = None,
        dpid: str | None = None,
        mtu: int = 1450,
        heartbeat_interval: float = 5.0,
        ready_timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.host = host_name
        self.underlay_ip = underlay_ip
        self.ovs = ovs
        self.links = links
        self.bridge = bridge
        self.openflow_target = openflow_target or default_openflow_target(client.base_url)
        self.datapath_type = datapath_type
        self.dpid_request = dpid
        self.mtu = mtu
        self.heartbeat_interval = heartbeat_interval
        self.ready_timeout = ready_timeout
        self.dpid: int | None = None
        self.tunnel_port: int | None = None
        self.registered = False
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._register_lock = threading.Lock()
        self._ofport = 0
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="vxplane-attach")

    # -- lifecycle ----------------------------------------------------------------------

    def setup_bridge(self) -> None:
        """Ensure br-int and its tunnel port; learn the dpid and the tunnel's ofport."""
        dp_type = self.datapath_type or detect_datapath_type()
        self.ovs.ensure_bridge(self.bridge, dp_type, self.openflow_target, self.dpid_request)
        self.dpid = self.ovs.bridge_dpid(self.bridge)
        self.tunnel_port = self.ovs.wait_ofport(TUNNEL_PORT)
        log.info(
            "host %s: bridge %s ready (datapath %s, dpid %016x, tunnel ofport %d, controller %s)",
            self.host, self.bridge, dp_type, self.dpid, self.tunnel_port, self.openflow_target,
        )  # fmt: skip

    def register(self) -> None:
        """Register this host at the controller, then reconcile local ports with it."""
        with self._register_lock:
            if self.registered:
                return
            self.client.register_host(self.host, self.underlay_ip, self.dpid, self.tunnel_port)
            log.info("host %s: registered at %s", self.host, self.client.base_url)
            self.reconcile()
            self.registered = True

    def start(self) -> None:
        """Start the control thread (bridge, registration, reconciliation, heartbeats)."""
        self._thread = threading.Thread(target=self._control_loop, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the control thread and close the controller client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._pool.shutdown(wait=False)
        self.client.close()

    def _control_loop(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.tunnel_port is None:
                    self.setup_bridge()
                if not self.registered:
                    self.register()
                else:
                    self.client.heartbeat(self.host)
                backoff = 0.2
                self.last_error = None
                self._stop.wait(self.heartbeat_interval)
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

    @contextmanager
    def _endpoint_lock(self, network: str, name: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault((network, name), threading.Lock())
        with lock:
            yield

    # -- reconciliation -----------------------------------------------------------------

    def local_ports(self) -> list[planmod.LocalPort]:
        """Ports on br-int that carry a vxplane endpoint."""
        ports = []
        for port_name, row in self.ovs.list_ports_with(EXT_ENDPOINT, self.bridge).items():
            ids = row["external_ids"]
            try:
                ip = IPv4Address(ids[EXT_IP]) if ids.get(EXT_IP) else None
            except ValueError:
                ip = None
            ports.append(
                planmod.LocalPort(
                    network=ids.get(EXT_NETWORK, ""),
                    name=ids[EXT_ENDPOINT],
                    port_name=port_name,
                    ofport=row["ofport"],
                    ip=ip,
                )
            )
        return ports

    def reconcile(self) -> list[planmod.Action]:
        """Bring the controller and the local ports into agreement; return what was done."""
        local = self.local_ports()
        remote = {
            (ep["network"], ep["name"]): _remote(ep)
            for ep in self.client.list_endpoints(host=self.host)
        }
        for port in local:
            if port.key not in remote:
                try:
                    remote[port.key] = _remote(self.client.get_endpoint(*port.key))
                except ControllerError as exc:
                    if exc.status != 404:
                        raise
        actions = planmod.plan(self.host, remote.values(), local)
        for action in actions:
            self._apply(action)
        if actions:
            log.info("host %s: reconciled: %s", self.host, actions)
        return actions

    def _apply(self, action: planmod.Action) -> None:
        try:
            if isinstance(action, planmod.Recreate | planmod.Bind):
                port = action.port
                with self._endpoint_lock(port.network, port.name):
                    if isinstance(action, planmod.Recreate):
                        self.client.create_endpoint(
                            port.network, port.name, ip=str(port.ip), host=self.host
                        )
                    assert port.ofport is not None
                    self.client.bind(
                        port.network, port.name, self.host, port.ofport, port.port_name
                    )
            elif isinstance(action, planmod.Unbind):
                with self._endpoint_lock(action.network, action.name):
                    self.client.unbind(action.network, action.name, host=self.host)
            elif isinstance(action, planmod.RemoveLocal | planmod.DropStale):
                port = action.port
                with self._endpoint_lock(port.network, port.name):
                    self.ovs.delete_port_if_exists(self.bridge, port.port_name)
                    self.links.delete_if_exists(port.port_name)
            else:
                log.warning(
                    "host %s: endpoint %s/%s has %s locally but %s at the controller; left alone",
                    self.host, action.port.network, action.port.name, action.port.ip,
                    action.controller_ip,
                )  # fmt: skip
        except ControllerUnavailable:
            raise
        except AgentError as exc:
            log.warning("host %s: reconcile %s failed: %s", self.host, action, exc.detail)

    # -- attach / detach ----------------------------------------------------------------

    def attach(
        self,
        netns: str,
        name: str,
        network: str,
        ip: str | None = None,
        ifname: str = "eth0",
        ready_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Plug endpoint ``name`` of ``network`` into ``netns``; return it once ready."""
        if self.tunnel_port is None:
            raise ControllerUnavailable(f"host {self.host}: bridge {self.bridge} not set up yet")
        path = netns_path(netns)
        if not os.path.exists(path):
            raise NotFound(f"network namespace {netns} does not exist")
        wait = self.ready_timeout if ready_timeout is None else ready_timeout
        if not self.registered:
            self.register()  # do not make the caller wait for the control loop's next round
        host_if, peer_if = device_names(network, name)
        laps = _Laps()
        with self._endpoint_lock(network, name):
            existing = self.links.get_link(ifname, netns)
            if existing is not None and self.links.get_link(host_if) is not None:
                ep, _ = self.client.create_endpoint(network, name, ip=ip, host=self.host)
                laps.lap("endpoint")
                if existing.mac == ep["mac"]:
                    # Already plugged by an earlier call: only make sure the binding is current.
                    ofport = self.ovs.ensure_port(
                        self.bridge, host_if, self._ids(network, name, ep)
                    )
                    return self._bind_ready(network, name, ofport, host_if, wait, laps)
            # The controller's allocation and the local plumbing that does not depend on the
            # address (veth into the namespace, TX offload off) run at the same time.
            alloc = self._pool.submit(self.client.create_endpoint, network, name, ip, self.host)
            undo: list[Callable[[], object]] = []
            seen = False
            try:
                undo.append(lambda: self.ovs.delete_port_if_exists(self.bridge, host_if))
                undo.append(lambda: self.links.delete_if_exists(host_if))
                self.links.ensure_veth_into(host_if, peer_if, netns, self.mtu)
                self.links.disable_tx_offload(peer_if, netns)
                laps.lap("veth")
                seen = True
                ep, created = alloc.result()
                if created:
                    undo.append(lambda: self.client.delete_endpoint(network, name))
                laps.lap("endpoint")
                # We pick the OpenFlow port number, so the controller pushes the flows while
                # OVS adds the port and we configure the namespace: the three overlap.
                want = self._next_ofport()
                ids = self._ids(network, name, ep)
                undo.append(lambda: self.client.unbind(network, name, host=self.host))
                port: futures.Future[tuple[int, float]] = self._pool.submit(
                    _timed, self.ovs.ensure_port, self.bridge, host_if, ids, ofport_request=want
                )
                bind: futures.Future[tuple[dict[str, Any], float]] = self._pool.submit(
                    _timed, self._bind_ready, network, name, want, host_if, wait
                )
                try:
                    self.links.configure(
                        netns, peer_if, ifname, ep["mac"],
                        IPv4Address(ep["ip"]), int(ep["prefixlen"]), self.mtu,
                        IPv4Address(ep["gateway"]) if ep.get("gateway") else None,
                    )  # fmt: skip
                    laps.lap("configure")
                finally:
                    for running in (port, bind):  # never undo under a call still running
                        running.exception()  # waits; the result is read below
                ofport, port_s = port.result()
                ready, bind_s = bind.result()
                laps.lap("port+bind-ready")
                laps.note("ovs-port", port_s)
                laps.note("bind-ready", bind_s)
                if ofport != want:  # OVS could not honour the request: report the real port
                    ready = self._bind_ready(network, name, ofport, host_if, wait)
                self._log_attached(network, name, ready, ofport, laps)
                return ready
            except BaseException:
                if not seen:  # failed before we looked at the allocation: undo it too
                    try:
                        _, created = alloc.result()
                    except Exception:  # noqa: BLE001 - the allocation itself failed
                        created = False
                    if created:
                        undo.append(lambda: self.client.delete_endpoint(network, name))
                for step in reversed(undo):
                    try:
                        step()
                    except Exception as exc:  # undo is best effort; report the first error
                        log.warning("host %s: undo of %s/%s: %r", self.host, network, name, exc)
                raise

    def _next_ofport(self) -> int:
        """A fresh OpenFlow port number: never one used before by this OVS while we run, so a
        flow left for a removed port can never reach the port of a new endpoint."""
        with self._register_lock:
            if self._ofport <= 0:
                self._ofport = max(self.ovs.max_ofport(), TUNNEL_OFPORT)
            self._ofport = self._ofport + 1 if self._ofport < MAX_OFPORT else TUNNEL_OFPORT + 1
            return self._ofport

    def _ids(self, network: str, name: str, ep: dict[str, Any]) -> dict[str, str]:
        return {
            EXT_NETWORK: network,
            EXT_ENDPOINT: name,
            EXT_IP: str(ep["ip"]),
            "iface-id": f"{network}/{name}",
        }

    def _bind_ready(
        self,
        network: str,
        name: str,
        ofport: int,
        port_name: str,
        wait: float,
        laps: _Laps | None = None,
    ) -> dict[str, Any]:
        ep = self.client.bind(network, name, self.host, ofport, port_name, wait_ready=wait)
        if ep.get("state") != "ready":
            raise NotReady(
                f"endpoint {network}/{name} not ready after {wait}s (state {ep.get('state')})"
            )
        if laps is not None:
            laps.lap("bind-ready")
            self._log_attached(network, name, ep, ofport, laps)
        return ep

    def _log_attached(
        self, network: str, name: str, ep: dict[str, Any], ofport: int, laps: _Laps
    ) -> None:
        log.info(
            "host %s: attached %s/%s (%s) at ofport %d in %s",
            self.host, network, name, ep.get("ip"), ofport, laps,
        )  # fmt: skip

    def detach(self, name: str, network: str) -> dict[str, Any]:
        """Unplug endpoint ``name`` of ``network`` (port, veth) and unbind it; idempotent."""
        host_if, _ = device_names(network, name)
        with self._endpoint_lock(network, name):
            self.ovs.delete_port_if_exists(self.bridge, host_if)
            self.links.delete_if_exists(host_if)
            unbound = True
            try:
                self.client.unbind(network, name, host=self.host)
            except ControllerError as exc:
                if exc.status != 404:
                    raise
            except ControllerUnavailable as exc:
                # The local side is gone; reconciliation unbinds once the controller is back.
                log.warning("host %s: detach %s/%s: %s", self.host, network, name, exc.detail)
                unbound = False
                self.registered = False
        return {"network": network, "name": name, "detached": True, "unbound": unbound}

    def local_endpoints(self) -> list[dict[str, Any]]:
        """The endpoints plugged on this host, as found on br-int."""
        return [
            {
                "network": p.network,
                "name": p.name,
                "ip": str(p.ip) if p.ip else None,
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
            "underlay_ip": self.underlay_ip,
            "bridge": self.bridge,
            "bridge_ready": self.tunnel_port is not None,
            "dpid": f"{self.dpid:016x}" if self.dpid is not None else None,
            "tunnel_port": self.tunnel_port,
            "controller": self.client.base_url,
            "registered": self.registered,
            "last_error": self.last_error,
        }


def _timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """Call ``fn`` and return its result with how long it took (s)."""
    t0 = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - t0


class _Laps:
    """Durations of the stages of one attach, for the log."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []
        self.notes: list[tuple[str, float]] = []

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps.append((stage, now - self.last))
        self.last = now

    def note(self, what: str, seconds: float) -> None:
        """Record the duration of something that ran beside the stages."""
        self.notes.append((what, seconds))

    def __str__(self) -> str:
        parts = " ".join(f"{stage}={s * 1000:.1f}" for stage, s in self.laps)
        if self.notes:
            parts += "; in parallel: " + " ".join(f"{w}={s * 1000:.1f}" for w, s in self.notes)
        return f"{(self.last - self.start) * 1000:.1f} ms ({parts})"


def _remote(ep: dict[str, Any]) -> planmod.RemoteEndpoint:
    return planmod.RemoteEndpoint(
        network=ep["network"],
        name=ep["name"],
        ip=IPv4Address(ep["ip"]),
        host=ep.get("host"),
        ofport=ep.get("ofport"),
    )


def run_agent(
    controller_url: str,
    host_name: str,
    underlay_ip: str,
    bridge: str = "br-int",
    ovsdb: str | None = None,
    socket_path: str = "/run/vxplane/agent.sock",
    openflow_target: str | None = None,
    mtu: int = 1450,
    heartbeat_interval: float = 5.0,
    datapath_type: str | None = None,
    dpid: str | None = None,
    ready_timeout: float = 10.0,
    docker_plugin: str | None = None,
    docker_engine: str = "unix:///run/docker.sock",
    docker_scope: str = "local",
) -> None:
    """Run the agent until SIGTERM/SIGINT: control thread plus the API on ``socket_path``;
    with ``docker_plugin`` (a socket path) also the Docker drivers (``docker_plugin.py``)."""
    import uvicorn

    from hostagent.api import create_app

    agent = Agent(
        ControllerClient(controller_url),
        host_name,
        underlay_ip,
        ovs=OvsOps(ovsdb),
        links=LinkOps(),
        bridge=bridge,
        openflow_target=openflow_target,
        datapath_type=datapath_type,
        dpid=dpid,
        mtu=mtu,
        heartbeat_interval=heartbeat_interval,
        ready_timeout=ready_timeout,
    )
    os.makedirs(os.path.dirname(socket_path) or ".", exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    agent.start()
    stop_docker = None
    if docker_plugin:
        from hostagent.docker_plugin import start_docker_plugin

        stop_docker = start_docker_plugin(agent, docker_plugin, docker_engine, docker_scope)
    try:
        config = uvicorn.Config(
            create_app(agent), uds=socket_path, access_log=False, log_level="warning"
        )
        uvicorn.Server(config).run()
    finally:
        if stop_docker is not None:
            stop_docker()
        agent.stop()
        if os.path.exists(socket_path):
            os.unlink(socket_path)
