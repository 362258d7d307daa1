"""The plug sequence: the one way an endpoint is plugged into br-int and unplugged again.

The agent's own API, the CNI plugin and the Docker driver all call ``Plugger.plug`` and
``Plugger.unplug``; nothing else makes or removes an endpoint's veth or OVS port. A plug:

1. picks the OpenFlow port number itself (``ofport_request``; never reused while the agent
   runs, so a flow left for a removed port can never reach a new endpoint), so that
2. **one request** to the controller creates the endpoint if its name is new and binds it to
   that port (``PUT .../binding?create=true&wait_ready=S&stream=true``): the controller
   answers the endpoint as bound (its address) as soon as its write committed, then pushes
   the flows for a port about to appear and sends the endpoint again once every switch
   confirmed them, while
3. the agent makes the veth (its peer created directly inside the container's namespace, TX
   checksum offload off) and adds the OVS port in one no-wait OVSDB transaction, then waits
   for the port number in OVSDB's update stream;
4. with the address from the controller's first line, the container side is configured
   (``eth0``, MAC derived from the IP, address, MTU, default route) while the switches
   install the flows. The plug answers once the second line says ready and the port has its
   number; then the port is labelled with the address (``vxplane-ip``) so a restarted agent
   can re-create a lost endpoint: not on the answer's path (an OVSDB round trip, 1.4 to 4 ms
   measured), and written before anything else is done to the endpoint here. (Measured on
   the lab: the configuration left the path of every attach, 3 to 10 ms by the load;
   docs/architecture.md, "The attach path".) A controller that answers in one
   piece (no ``stream``) gets the container configured after its answer, as before.
   On a dual-stack network the answer also carries ``ip6`` (the network's ``subnet6`` plus
   the IPv4 address as the low 32 bits), ``prefixlen6`` and ``gateway6``: the container gets
   that address too (no DAD: unique by construction, see ``netlink.dual_stack_sysctls``),
   keeps the link-local address the kernel derives from the MAC (EUI-64), and routes ``::/0``
   via ``gateway6``; the port is labelled with it as well (``vxplane-ip6``), so
   reconciliation can tell when the controller's address moved away from the container's.

A namespace that is not a container's (the agent's own or the init process's, under any
path: ``netlink.check_netns``) is refused before anything is made. Any failure before the
answer undoes what this call made (port, veth, binding, and the endpoint itself if this
call created it) and re-raises; a label that fails after it is logged. Calls are
serialized per endpoint (``lock``). For Docker the peer stays in the agent's namespace
(``netns=None``): the engine moves and names it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any

from hostagent.client import ControllerClient, ControllerError
from hostagent.edges import LinkEdge, OvsEdge
from hostagent.errors import Conflict, ControllerUnavailable, NotReady, OvsError
from hostagent.model import Endpoint
from hostagent.ovs import MAX_OFPORT, TUNNEL_OFPORT
from vxcommon.tpoints import mark

if TYPE_CHECKING:
    from hostagent.metrics import AgentMetrics

log = logging.getLogger("hostagent.plug")

EXT_NETWORK = "vxplane-network"
EXT_ENDPOINT = "vxplane-endpoint"
EXT_IP = "vxplane-ip"
EXT_IP6 = "vxplane-ip6"
IFACE_ID = "iface-id"


def device_names(network: str, name: str) -> tuple[str, str]:
    """Host-side and peer names of endpoint ``name``'s veth: ``vx``/``vp`` + 11 hex digits of
    a hash of ``network/name``, so a retry finds what a crashed attempt made."""
    digest = hashlib.sha256(f"{network}/{name}".encode()).hexdigest()[:11]
    return f"vx{digest}", f"vp{digest}"


def port_ids(network: str, name: str, ip: str | None = None) -> dict[str, str]:
    """The ``external_ids`` that tie an OVS port to its endpoint."""
    ids = {EXT_NETWORK: network, EXT_ENDPOINT: name, IFACE_ID: f"{network}/{name}"}
    if ip is not None:
        ids[EXT_IP] = ip
    return ids


def address_ids(ep: Endpoint, asked: str | None = None) -> dict[str, str]:
    """The ``external_ids`` that record ``ep``'s addresses on its port, but for the IPv4
    address ``asked`` for (written with the port already)."""
    ids = {} if asked else {EXT_IP: str(ep.ip)}
    if ep.ip6 is not None:
        ids[EXT_IP6] = str(ep.ip6)
    return ids


@dataclass(frozen=True, slots=True)
class PlugRequest:
    """What to plug: endpoint ``name`` of ``network`` into ``netns`` as ``ifname``.

    ``netns`` None leaves the veth's peer in the agent's namespace (Docker moves it).
    ``labels`` replace the endpoint's labels in the same request that binds it (so policies
    select it from its first ready moment on); None keeps the labels it has.
    ``runtime_ids`` are extra ``external_ids`` of the runtime that asked (CNI, Docker).
    """

    network: str
    name: str
    netns: str | None
    ifname: str = "eth0"
    ip: str | None = None
    labels: Mapping[str, str] | None = None
    runtime_ids: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float | None = None


def _labels(req: PlugRequest) -> dict[str, str] | None:
    return None if req.labels is None else dict(req.labels)


class Laps:
    """Durations of the stages of one plug, for the log."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps.append((stage, now - self.last))
        self.last = now

    def __str__(self) -> str:
        parts = " ".join(f"{stage}={s * 1000:.1f}" for stage, s in self.laps)
        return f"{(self.last - self.start) * 1000:.1f} ms ({parts})"


class Plugger:
    """Plugs and unplugs endpoints of one host."""

    def __init__(
        self,
        host: str,
        bridge: str,
        *,
        ovs: OvsEdge,
        links: LinkEdge,
        client: ControllerClient,
        mtu: int,
        ready_timeout: float,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.bridge = bridge
        self.ovs = ovs
        self.links = links
        self.client = client
        self.mtu = mtu
        self.ready_timeout = ready_timeout
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._ofport = 0
        self._wrapped = False  # past 65279 once: numbers in use must be skipped
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="vxplane-plug")
        self._labelling: dict[tuple[str, str], Future[None]] = {}  # labels written after a plug

    def close(self) -> None:
        """Stop the plug threads (what runs finishes)."""
        self._pool.shutdown(wait=False)

    @contextmanager
    def lock(self, network: str, name: str) -> Iterator[None]:
        """Serialize everything done to one endpoint on this host; the address label of its
        last plug is written before anything else is done to it."""
        with self._guard:
            lock = self._locks.setdefault((network, name), threading.Lock())
        with lock:
            self.settle(network, name)
            yield

    def settle(self, network: str, name: str) -> None:
        """Wait until the address label of the endpoint's last plug was written (or failed:
        that was logged)."""
        with self._guard:
            label = self._labelling.pop((network, name), None)
        if label is not None:
            label.exception()

    def _labelled(self, network: str, name: str, label: Future[None]) -> None:
        with self._guard:  # only labels still being written stay in the map
            if self._labelling.get((network, name)) is label:
                del self._labelling[(network, name)]

    def next_ofport(self) -> int:
        """A fresh OpenFlow port number: above every port of the bridge when the agent
        started, then never one used before while it runs, so a flow left for a removed port
        can never reach a new endpoint. After 65279 it wraps around, skipping ports in use."""
        with self._guard:
            if self._ofport <= 0:
                self._ofport = max(self.ovs.max_ofport(self.bridge), TUNNEL_OFPORT)
            used = {p.ofport for p in self.ovs.ports(self.bridge)} if self._wrapped else set()
            for _ in range(MAX_OFPORT):
                if self._ofport >= MAX_OFPORT:
                    self._ofport, self._wrapped = TUNNEL_OFPORT, True
                    used = {p.ofport for p in self.ovs.ports(self.bridge)}
                self._ofport += 1
                if self._ofport not in used:
                    return self._ofport
            raise OvsError(f"bridge {self.bridge}: every OpenFlow port number is in use")

    # -- plug ----------------------------------------------------------------------------

    def plug(self, req: PlugRequest) -> Endpoint:
        """Plug ``req``'s endpoint; return it once the controller reports it ready."""
        if req.netns is not None:  # never the host's own namespace: before anything is made
            self.links.check_netns(req.netns)
        wait = self.ready_timeout if req.ready_timeout is None else req.ready_timeout
        host_if, peer_if = device_names(req.network, req.name)
        with self.lock(req.network, req.name):
            if req.netns is not None and self._plugged(req, host_if):
                return self._rebind(req, host_if, wait)
            laps = Laps()
            want = self.next_ofport()
            early: Future[Endpoint] = Future()  # the endpoint as bound, before the flows
            bind: Future[tuple[Endpoint, bool]] = self._pool.submit(
                self._claim, req, want, host_if, wait, early
            )
            undo: list[Callable[[], object]] = []
            bound = False  # the bind's answer was read and its undo registered
            try:
                undo.append(lambda: self.links.delete(host_if))
                if req.netns is not None:  # the peer is born in the namespace as ``ifname``
                    self.links.make_veth_into(host_if, req.ifname, req.netns, self.mtu)
                    self.links.disable_tx_offload(req.ifname, req.netns)
                else:
                    self.links.make_veth(host_if, peer_if, self.mtu)
                    self.links.disable_tx_offload(peer_if)
                laps.lap("veth")
                mark("a_veth", req.name)
                undo.append(lambda: self.ovs.delete_port(self.bridge, host_if))
                ids = {**port_ids(req.network, req.name, req.ip), **req.runtime_ids}
                # The port is added (one OVSDB transaction, then ovs-vswitchd's work) while
                # the controller answers and the namespace is configured.
                port = self._pool.submit(self._add_port, host_if, ids, want)
                undo.append(port.exception)  # runs first on undo: never undo under it
                # The controller streams the endpoint as bound (its address) as soon as its
                # write committed: the namespace is configured while the switches install
                # the flows, and the answer waits only for those.
                first = self._early(early, bind)
                mark("a_line1", req.name)
                if first is not None:
                    self._configure(req, first)
                    laps.lap("configure")
                    mark("a_conf", req.name)
                ep = self._bound(req, bind, undo)
                bound = True
                laps.lap("bind")
                mark("a_line2", req.name)
                if not ep.ready:
                    raise NotReady(f"endpoint {req.network}/{req.name} not ready after {wait}s")
                # The port is labelled with the address only now: the OVSDB write makes
                # ovs-vswitchd reconfigure, which would delay the switch's barrier.
                label = self._pool.submit(self._label, port, host_if, address_ids(ep, req.ip))
                undo.append(label.exception)
                if first is None:
                    self._configure(req, ep)
                    laps.lap("configure")
                elif (first.mac, first.interface, first.interface6) != (
                    ep.mac, ep.interface, ep.interface6,
                ):  # fmt: skip
                    raise NotReady(  # one write answers both lines: cannot happen
                        f"{req.network}/{req.name}: bound as {first.ip}, ready as {ep.ip}"
                    )
                ofport = port.result()
                laps.lap("port")
                mark("a_port", req.name)
                if ofport != want:  # OVS could not honour the request: report the real port
                    log.warning(
                        "host %s: %s got ofport %d, not %d", self.host, host_if, ofport, want
                    )
                    ep, _ = self.client.bind(
                        req.network, req.name, self.host, ofport, host_if, wait_ready=wait,
                        if_revision=ep.revision,  # not if someone else bound it meanwhile
                    )  # fmt: skip
                    if not ep.ready:
                        raise NotReady(f"{req.network}/{req.name} not ready at ofport {ofport}")
                # The answer does not wait for the label (an OVSDB round trip, 1.4 to 4 ms
                # measured on the lab's attach path): it is not what "ready" promises. It is
                # settled before anything else is done to this endpoint here (``settle``).
                self._labelling[(req.network, req.name)] = label
                label.add_done_callback(partial(self._labelled, req.network, req.name))
            except BaseException:
                if self.metrics is not None:
                    self.metrics.plug_failures.inc()
                if not bound:
                    self._bound_quietly(req, bind, undo)  # waits: never undo under a bind
                for step in reversed(undo):
                    try:
                        step()
                    except Exception as exc:  # noqa: BLE001 - undo is best effort
                        log.warning(
                            "host %s: undo for %s/%s: %r", self.host, req.network, req.name, exc
                        )
                raise
        log.info(
            "host %s: plugged %s/%s (%s) at ofport %d in %s",
            self.host, req.network, req.name, ep.ip, ep.ofport, laps,
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.plugged(laps.laps, laps.last - laps.start)
        return ep

    def _configure(self, req: PlugRequest, ep: Endpoint) -> None:
        """The container side: ``eth0`` with the endpoint's MAC, address, MTU and route."""
        if req.netns is not None:
            self.links.configure(
                req.netns, req.ifname, req.ifname, ep.mac, ep.interface, self.mtu, ep.gateway,
                ep.interface6, ep.gateway6,
            )  # fmt: skip

    @staticmethod
    def _early(early: Future[Endpoint], bind: Future[tuple[Endpoint, bool]]) -> Endpoint | None:
        """The endpoint as bound, once the controller streamed it; None when the bind's
        answer came whole (a controller that does not stream, or an error) first."""
        pending: list[Future[Any]] = [early, bind]
        wait_futures(pending, return_when=FIRST_COMPLETED)
        if early.done() and early.exception() is None:
            return early.result()
        return None

    def _claim(
        self,
        req: PlugRequest,
        ofport: int,
        host_if: str,
        wait: float,
        early: Future[Endpoint] | None = None,
    ) -> tuple[Endpoint, bool]:
        """The plug's one request: create the endpoint if new and bind it here.

        The controller does not move an endpoint bound elsewhere on a plain bind (409 with
        the endpoint). The agent takes it over only from a port of its own host (a new
        sandbox replaces an old one) or from a host that is not alive; then explicitly, at
        the revision the controller showed, so a bind that came in between still wins. From
        a live host it is ``Conflict``: remove it there first."""
        args = (req.network, req.name, self.host, ofport, host_if)
        kwargs: dict[str, Any] = {
            "create": True, "ip": req.ip, "labels": _labels(req), "wait_ready": wait,
        }  # fmt: skip
        if early is not None and req.netns is not None:

            def bound(ep: Endpoint) -> None:
                if not early.done():  # the first bind's line (a takeover binds twice)
                    early.set_result(ep)

            kwargs["on_bound"] = bound
        try:
            return self.client.bind(*args, **kwargs)
        except ControllerError as exc:
            held = exc.endpoint
            if exc.status != 409 or held is None or held.host is None:
                raise
            if held.host != self.host and self._alive(held.host):
                raise Conflict(
                    f"endpoint {req.network}/{req.name} ({held.ip}) is in use on host "
                    f"{held.host}, which is alive: remove it there first"
                ) from exc
            log.info(
                "host %s: taking %s/%s over from %s (revision %d)",
                self.host, req.network, req.name, held.host, held.revision,
            )  # fmt: skip
            return self.client.bind(*args, **kwargs, if_revision=held.revision)

    def _alive(self, host: str) -> bool:
        """Whether the controller counts ``host`` alive (heartbeats); unknown: not alive."""
        try:
            return bool(self.client.get_host(host).get("alive", True))
        except ControllerError:
            return False

    def _label(self, port: Future[int], host_if: str, ids: dict[str, str]) -> None:
        """Once the port exists, record the addresses the controller gave (``address_ids``)."""
        port.result()
        if not ids:
            return
        try:
            self.ovs.set_port_ids(host_if, ids)
        except Exception as exc:
            # After the answer the endpoint works without it: a restarted agent that finds no
            # label re-creates a lost endpoint without asking for its old address.
            log.warning("host %s: port %s not labelled with %s: %r", self.host, host_if, ids, exc)
            raise

    def _add_port(self, host_if: str, ids: dict[str, str], want: int) -> int:
        self.ovs.add_port(self.bridge, host_if, ids, ofport_request=want)
        return self.ovs.wait_ofport(host_if)

    def _bound(
        self,
        req: PlugRequest,
        bind: Future[tuple[Endpoint, bool]],
        undo: list[Callable[[], object]],
    ) -> Endpoint:
        """The bind's answer; registers its undo (unbind, and delete if it created)."""
        ep, created = bind.result()
        if created:
            undo.append(lambda: self.client.delete_endpoint(req.network, req.name))
        else:
            undo.append(lambda: self.client.unbind(req.network, req.name, host=self.host))
        return ep

    def _bound_quietly(
        self,
        req: PlugRequest,
        bind: Future[tuple[Endpoint, bool]],
        undo: list[Callable[[], object]],
    ) -> None:
        try:
            self._bound(req, bind, undo)
        except Exception:  # noqa: BLE001 - the bind itself failed: nothing to undo there
            pass

    def _plugged(self, req: PlugRequest, host_if: str) -> bool:
        """Whether an earlier call already plugged this endpoint into ``req.netns``."""
        assert req.netns is not None
        return (
            self.links.get_link(req.ifname, req.netns) is not None
            and self.links.get_link(host_if) is not None
            and any(p.name == host_if and p.ofport for p in self.ovs.ports(self.bridge))
        )

    def _rebind(self, req: PlugRequest, host_if: str, wait: float) -> Endpoint:
        """Already plugged: make sure the binding is current (same address) and ready.

        A compare-and-set on the endpoint as read here (0: unknown name), so that a bind by
        someone else in between is not silently undone (409)."""
        assert req.netns is not None
        port = next(p for p in self.ovs.ports(self.bridge) if p.name == host_if)
        assert port.ofport is not None
        ip = req.ip or port.external_ids.get(EXT_IP)  # the address the container has
        try:
            seen = self.client.get_endpoint(req.network, req.name).revision
        except ControllerError as exc:
            if exc.status != 404:
                raise
            seen = 0
        ep, _ = self.client.bind(
            req.network, req.name, self.host, port.ofport, host_if,
            create=True, ip=ip, labels=_labels(req), wait_ready=wait,
            if_revision=seen,
        )  # fmt: skip
        link = self.links.get_link(req.ifname, req.netns)
        if link is None or link.mac.lower() != ep.mac:
            raise NotReady(f"{req.netns} has {req.ifname} with another MAC than {ep.mac}")
        if not ep.ready:
            raise NotReady(f"endpoint {req.network}/{req.name} not ready after {wait}s")
        ids = dict(req.runtime_ids)
        given6 = port.external_ids.get(EXT_IP6) or None  # what the container was given
        want6 = str(ep.ip6) if ep.ip6 is not None else None
        if given6 is not None and given6 != want6:
            # the network's subnet6 changed (or went) since: the old address and its default
            # route go, or the container would keep (and source from) a stale address
            self.links.remove_address6(req.ifname, req.netns, IPv6Address(given6))
            ids[EXT_IP6] = ""
        if want6 is not None and given6 != want6:
            # plugged by an agent before dual stack, or the last plug did not get so far, or
            # a new subnet6: the same configuration again (idempotent) gives the container
            # its IPv6 side
            self.links.configure(
                req.netns, req.ifname, req.ifname, ep.mac, ep.interface, self.mtu,
                ep.gateway, ep.interface6, ep.gateway6,
            )  # fmt: skip
            ids[EXT_IP6] = want6
        if ids:
            self.ovs.set_port_ids(host_if, ids)
        return ep

    # -- unplug --------------------------------------------------------------------------

    def unplug(self, network: str, name: str) -> bool:
        """Remove the endpoint's port and veth and unbind it here; idempotent.

        Returns whether the controller was told (False when it could not be reached: the
        agent's reconciliation unbinds once it is back)."""
        host_if, _ = device_names(network, name)
        with self.lock(network, name):
            self.remove_local(host_if)
            try:
                self.client.unbind(network, name, host=self.host)
            except ControllerError as exc:
                if exc.status != 404:
                    raise
            except ControllerUnavailable as exc:
                log.warning("host %s: unplug %s/%s: %s", self.host, network, name, exc.detail)
                return False
        return True

    def remove_local(self, port_name: str) -> None:
        """Remove an OVS port and its veth (the caller holds the endpoint's lock)."""
        self.ovs.delete_port(self.bridge, port_name)
        self.links.delete(port_name)
