"""The Docker network driver and IPAM driver ``vxplane``, served by the host agent.

Both drivers answer on one socket (``/run/docker/plugins/vxplane.sock``; ``Plugin.Activate``
returns both). The protocol itself (fields, replies, error shapes) is ``proto.py``; this
module does the work, and plugs through the agent's one plug sequence (``hostagent.plug``):

- ``RequestPool`` hands out a fresh pool id, which ``CreateNetwork`` pairs with its Docker
  network (``pools.py``: two Docker networks may share a subnet); ``CreateNetwork`` records
  the subnet, and the vxplane network of the Docker network's *name* is created (or adopted
  when it exists with the same subnet) as soon as the name is known (from the engine, right
  after ``CreateNetwork`` returns). ``DeleteNetwork`` deletes the vxplane network when no
  endpoint of it is bound on any host.
- ``RequestAddress`` finds the network by its pool id and decides the address: the
  endpoint is named after the container being
  started (see ``docker_proto.pick_starting`` and docs/docker.md), so the same container
  name gets the same IP and MAC on every host; ``--ip`` is honoured. The same listing
  carries the container's labels: they become the endpoint's labels.
- ``CreateEndpoint`` binds with those labels in its one create-and-bind request, so a
  policy selects the endpoint from its first ready moment (labels are replaced: a reused
  name does not keep an earlier container's labels).
- ``CreateEndpoint`` plugs the endpoint with its peer left in the agent's namespace (veth,
  MTU, TX offload off, OVS port, bound at the controller) and answers once the flows are
  confirmed; ``Join`` names the peer, which Docker moves into the container as ``eth0``.
  ``DeleteEndpoint`` unplugs and unbinds (``Leave`` changes nothing: see ``leave``). The
  name keeps its address (reservation) for its next start.
- ``ProgramExternalConnectivity`` (after ``Join``, with ``-p HOSTPORT:PORT``) publishes the
  ports at the controller, all or none (a taken host port fails the start with the
  controller's message); ``RevokeExternalConnectivity``, ``Leave``, ``DeleteEndpoint`` and
  the cleanup after a vanished container unpublish them (``hostagent.publish``).
- The engine's events drive cleanup of endpoints whose container went away without a
  teardown (``engine.py``).

Dual stack (``docker network create --ipv6 --subnet V4 --subnet V6``): the IPv6 pool is the
vxplane network's ``subnet6`` (``CreateNetwork`` passes it on; its gateway must be the
prefix plus the IPv4 gateway's low 32 bits, which is what the IPAM driver hands out when not
given). libnetwork asks for an endpoint's IPv4 address, then, in the same goroutine, for its
IPv6 one, and neither request names the endpoint: so on a dual-stack network an IPv4
request holds the network's "IPv6 slot" until the IPv6 request that follows takes it (or
``settle`` s passed), and the IPv6 address handed out is the one the controller derived for
that endpoint (``ip6``). Concurrent starts on one network thus pass the two requests one
endpoint at a time (the gap is one libnetwork call); ``Join`` adds ``GatewayIPv6``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hostagent.agent import Agent
from hostagent.api.server import UnixServer
from hostagent.client import ControllerError
from hostagent.edges import PortRecord
from hostagent.errors import AgentError, NotReady
from hostagent.model import Endpoint
from hostagent.plug import EXT_ENDPOINT, EXT_IP, EXT_NETWORK, PlugRequest, device_names
from hostagent.publish import (
    EXT_PUBLISHED,
    PortMap,
    check,
    decode,
    encode,
    publish_all,
    unpublish_all,
)
from hostagent.runtimes.docker import proto
from hostagent.runtimes.docker.engine import Debouncer, EngineClient, EventFollower
from hostagent.runtimes.docker.pools import PoolTable
from hostagent.runtimes.docker.proto import ProtocolError
from hostagent.runtimes.docker.sandbox import container_ids as sandbox_ids
from vxcommon.addr6 import gateway6
from vxcommon.names import name_error

log = logging.getLogger("hostagent.docker")

DRIVER = "vxplane"
EXT_EP = "vxplane-docker-endpoint"
EXT_NET = "vxplane-docker-network"
EXT_SINCE = "vxplane-docker-since"
ANON = "docker-anon-"


@dataclass
class Slot6:
    """A dual-stack network's IPv6 slot: held by the endpoint whose IPv4 address is being
    handed out (``ep`` None while the controller is asked), until its IPv6 request."""

    since: float
    name: str = ""
    ep: Endpoint | None = None


class DockerDriver:
    """The two drivers of one host."""

    def __init__(
        self,
        agent: Agent,
        engine: EngineClient,
        scope: str = "local",
        grace: float = 30.0,
        pools: PoolTable | None = None,
    ) -> None:
        self.agent = agent
        self.engine = engine
        self.scope = scope
        self.grace = grace
        self.pools = pools if pools is not None else PoolTable(None)
        self.networks: dict[str, dict[str, Any]] = {}  # docker network id -> name, subnet, gw
        # (network id, ip) -> endpoint name and labels, from RequestAddress to CreateEndpoint
        self.pending: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self.inflight: dict[str, float] = {}  # endpoint id -> created (not yet running)
        self.seen_live: set[str] = set()  # endpoint ids seen in a running container
        self.cleaned = 0
        self._lock = threading.Lock()
        self.slots6: dict[str, Slot6] = {}  # docker network id -> its IPv6 slot
        self._slots6 = threading.Condition()
        self.settle6 = 10.0  # seconds an IPv6 slot waits for its request
        self.reconcile_soon = Debouncer(self.reconcile)
        self.handlers: dict[tuple[str, str], Callable[[Any], dict[str, Any]]] = {
            ("Plugin", "Activate"): lambda b: proto.activate(),
            ("NetworkDriver", "GetCapabilities"): lambda b: proto.capabilities(self.scope),
            ("NetworkDriver", "CreateNetwork"): self.create_network,
            ("NetworkDriver", "DeleteNetwork"): self.delete_network,
            ("NetworkDriver", "AllocateNetwork"): lambda b: (proto.ids(b, False), {"Options": {}})[
                1
            ],
            ("NetworkDriver", "FreeNetwork"): lambda b: (proto.ids(b, False), {})[1],
            ("NetworkDriver", "CreateEndpoint"): self.create_endpoint,
            ("NetworkDriver", "DeleteEndpoint"): self.delete_endpoint,
            ("NetworkDriver", "EndpointOperInfo"): self.endpoint_oper_info,
            ("NetworkDriver", "Join"): self.join,
            ("NetworkDriver", "Leave"): self.leave,
            ("NetworkDriver", "DiscoverNew"): proto.discover,
            ("NetworkDriver", "DiscoverDelete"): proto.discover,
            ("NetworkDriver", "ProgramExternalConnectivity"): self.program_external,
            ("NetworkDriver", "RevokeExternalConnectivity"): self.revoke_external,
            ("IpamDriver", "GetCapabilities"): lambda b: proto.ipam_capabilities(),
            ("IpamDriver", "GetDefaultAddressSpaces"): lambda b: proto.address_spaces(),
            ("IpamDriver", "RequestPool"): self.request_pool,
            ("IpamDriver", "ReleasePool"): self.release_pool,
            ("IpamDriver", "RequestAddress"): self.request_address,
            ("IpamDriver", "ReleaseAddress"): self.release_address,
            ("IpamDriver", "DiscoverNew"): proto.discover,
            ("IpamDriver", "DiscoverDelete"): proto.discover,
        }

    # -- dispatch ---------------------------------------------------------------------

    def dispatch(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """One plugin call: (HTTP status, reply). Failures are the protocol's error shape."""
        try:
            kind, method = proto.split_path(path)
        except ProtocolError as exc:
            return 404, {"Err": exc.message}
        try:
            body = json.loads(raw.decode() or "null")
        except (UnicodeDecodeError, ValueError):
            return 200, proto.error_reply(kind, f"{method}: request body is not valid JSON")
        try:
            return 200, self.handlers[(kind, method)](body)
        except ProtocolError as exc:
            message = exc.message
        except AgentError as exc:
            message = exc.detail
        except Exception as exc:  # the user sees a message, never a traceback
            log.exception("host %s: %s failed", self.agent.host, path)
            message = f"vxplane internal error: {exc!r}"
        log.warning("host %s: %s.%s refused: %s", self.agent.host, kind, method, message)
        return 200, proto.error_reply(kind, f"vxplane: {message}")

    # -- networks ---------------------------------------------------------------------

    def request_pool(self, body: Any) -> dict[str, Any]:
        req = proto.request_pool(body)
        return proto.pool_reply(self.pools.request(req.pool), req.pool)

    def release_pool(self, body: Any) -> dict[str, Any]:
        ref, _ = proto.release(body, address=False)
        self.pools.released(ref.pool_id)
        return {}

    def create_network(self, body: Any) -> dict[str, Any]:
        req = proto.create_network(body)
        gw6 = None
        if req.subnet6 is not None:
            gw6 = IPv6Address(gateway6(req.subnet6, req.gateway))
            if req.gateway6 is not None and req.gateway6 != gw6:
                raise ProtocolError(
                    f"the IPv6 gateway of {req.subnet6} must be {gw6}: the prefix plus the IPv4 "
                    f"gateway {req.gateway} as the low 32 bits (not {req.gateway6})"
                )
        if req.our_pool:
            self.pools.created(req.subnet, req.network_id)
            if req.subnet6 is not None:
                self.pools.created(req.subnet6, req.network_id)
        with self._lock:
            self.networks[req.network_id] = {
                "name": None, "subnet": req.subnet, "gateway": req.gateway, "ready": False,
                "subnet6": req.subnet6, "gateway6": gw6,
            }  # fmt: skip
        # The name is known to the engine only once this call returned: learn it then.
        threading.Thread(
            target=self._adopt_later, args=(req.network_id,), name="docker-adopt", daemon=True
        ).start()
        return {}

    def _adopt_later(self, network_id: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.network_info(network_id)
                return
            except ProtocolError:
                time.sleep(0.1)
            except AgentError as exc:
                log.error("host %s: docker network %s: %s", self.agent.host, network_id, exc.detail)
                return

    def network_info(self, network_id: str) -> dict[str, Any]:
        """Name, subnet and gateway of a Docker network, its vxplane network made sure of."""
        with self._lock:
            info = self.networks.get(network_id)
        if info is None or info["name"] is None:
            try:
                net = self.engine.network(network_id)
            except Exception as exc:  # noqa: BLE001 - engine down or slow
                raise ProtocolError(f"network {network_id[:12]}: engine: {exc!r}") from exc
            if not net:
                raise ProtocolError(f"network {network_id[:12]} is not known to the engine yet")
            if net.get("Driver") != DRIVER:
                raise ProtocolError(f"network {net.get('Name')} is not a {DRIVER} network")
            v4, v6 = _configs(net)
            subnet = IPv4Network(v4.get("Subnet"))
            gw = v4.get("Gateway")
            gateway = IPv4Address(gw.split("/")[0]) if gw else subnet[1]
            subnet6 = IPv6Network(v6["Subnet"]) if v6.get("Subnet") else None
            info = {
                "name": net["Name"],
                "subnet": subnet,
                "gateway": gateway,
                "ready": False,
                "subnet6": subnet6,
                "gateway6": IPv6Address(gateway6(subnet6, gateway)) if subnet6 else None,
            }
            with self._lock:
                self.networks[network_id] = info
        if not info["ready"]:
            self._ensure_vx_network(info)
            info["ready"] = True
        return info

    def _ensure_vx_network(self, info: dict[str, Any]) -> None:
        name = info["name"]
        error = name_error(name)
        if error:
            raise ProtocolError(f"Docker network name: {error}")
        six = str(info["subnet6"]) if info.get("subnet6") else None
        net, created = self.agent.client.create_network(
            name, str(info["subnet"]), str(info["gateway"]), six
        )
        if net.subnet != str(info["subnet"]) or net.gateway != str(info["gateway"]):
            raise ProtocolError(
                f"vxplane network {name} has subnet {net.subnet} gateway {net.gateway}, "
                f"the Docker network {info['subnet']} gateway {info['gateway']}"
            )
        if net.subnet6 != six:
            raise ProtocolError(
                f"vxplane network {name} has IPv6 subnet {net.subnet6 or 'none'}, the Docker "
                f"network {six or 'none'}"
            )
        log.info(
            "host %s: docker network %s -> vxplane network %s (%s)",
            self.agent.host, name, name, "created" if created else "adopted",
        )  # fmt: skip

    def delete_network(self, body: Any) -> dict[str, Any]:
        nid = proto.ids(body, endpoint=False).network_id
        with self._lock:
            info = self.networks.pop(nid, None)
        if not info or not info.get("name"):
            return {}
        name = info["name"]
        try:
            eps = self.agent.client.list_endpoints(network=name)
            if any(ep.host for ep in eps):
                log.info("host %s: vxplane network %s still in use; kept", self.agent.host, name)
            else:
                self.agent.client.delete_network(name)
                log.info("host %s: vxplane network %s removed", self.agent.host, name)
        except ControllerError as exc:
            if exc.status not in (404, 409):
                raise
        return {}

    # -- addresses --------------------------------------------------------------------

    def _network_of_pool(
        self, ref: proto.PoolRef, ip: IPv4Address | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The Docker network (id, info) of a pool.

        A pool paired at ``CreateNetwork`` (or learned before) is that network. Otherwise
        (an old-style id, or the pairing lost with the table's file): the one ``vxplane``
        network of the engine with that subnet that no other pool claims; with several, the
        one a container (with address ``ip`` if given) is being connected to now
        (``pick_network``)."""
        nid = self.pools.network_of(ref.pool_id)
        if nid:
            return nid, self.network_info(nid)
        if self.pools.awaiting(ref.pool_id):
            raise ProtocolError(
                f"pool {ref.pool_id} has no network yet (--aux-address is not supported)"
            )
        claimed = (
            self.pools.claimed(except_pool=ref.pool_id, version=ref.pool.version)
            if ref.tag
            else set()
        )
        found = {
            net["Id"]: str(net.get("Name", ""))
            for net in self.engine.networks(DRIVER)
            if str(ref.pool) in [c.get("Subnet") for c in _configs(net)]
            and ((net.get("IPAM") or {}).get("Driver") in (None, "", DRIVER))
            and net["Id"] not in claimed
        }
        if len(found) > 1:
            picked = proto.pick_network(self._containers(), sorted(found.values()), ip)
            if picked is not None:
                found = {i: n for i, n in found.items() if n == picked}
        if len(found) != 1:
            raise ProtocolError(
                f"{len(found)} {DRIVER} networks on this host could be pool {ref.pool_id} "
                f"({', '.join(sorted(found.values())) or 'none'}): want exactly one"
            )
        nid = next(iter(found))
        if ref.tag:
            self.pools.learn(ref.pool_id, nid)
        return nid, self.network_info(nid)

    def _endpoint(self, network: str, name: str, ip: str | None) -> Endpoint:
        """Create or find endpoint ``name`` (with ``ip`` if given) at the controller."""
        client = self.agent.client
        try:
            try:
                ep, _ = client.create_endpoint(network, name, ip=ip, host=self.agent.host)
            except ControllerError as exc:
                # removed from vxplane on another host while this one still defines it
                with self._lock:
                    known = list(self.networks.values())
                info = next((i for i in known if i["name"] == network), None)
                if exc.status != 404 or info is None:
                    raise
                self._ensure_vx_network(info)
                ep, _ = client.create_endpoint(network, name, ip=ip, host=self.agent.host)
        except ControllerError as exc:
            existing = None
            if exc.status == 409 and ip:
                try:
                    existing = client.get_endpoint(network, name)
                except ControllerError:
                    existing = None
            if not existing or existing.host or str(existing.ip) == ip:
                raise ProtocolError(f"address for {name}: {exc.detail}") from exc
            try:  # an old reservation; --ip wins, unless it was bound since it was read
                client.delete_endpoint(
                    network, name, if_unbound=True, if_revision=existing.revision
                )
            except ControllerError as again:
                if again.status != 409:
                    raise
                raise ProtocolError(f"address for {name}: {again.detail}") from again
            ep, _ = client.create_endpoint(network, name, ip=ip, host=self.agent.host)
        owner = ep.host
        if owner and owner != self.agent.host:
            try:
                alive = client.get_host(owner).get("alive", True)
            except ControllerError:
                alive = False
            if alive:
                raise ProtocolError(
                    f"a container named {name} is running on {owner} in network {network} "
                    f"with {ep.ip}: remove it there first"
                )
        return ep

    def _containers(self) -> list[dict[str, Any]]:
        try:
            return self.engine.containers()
        except Exception as exc:  # noqa: BLE001 - no name: the endpoint is anonymous
            log.warning("host %s: listing containers: %r", self.agent.host, exc)
            return []

    def _container(self, network: str, ip: IPv4Address | None) -> tuple[str, dict[str, str]]:
        """The endpoint name and labels of the container being connected to ``network``:
        its name and its Docker labels (valid ones; see ``proto.endpoint_labels``), or an
        anonymous name without labels when it cannot be told apart."""
        found = proto.pick_starting(self._containers(), network, ip)
        if found is None:
            return f"{ANON}{uuid.uuid4().hex[:12]}", {}
        labels, skipped = proto.endpoint_labels(found.name, found.labels)
        if skipped:
            log.info(
                "host %s: %s/%s: Docker labels not valid as endpoint labels, left out: %s",
                self.agent.host, network, found.name, ", ".join(skipped),
            )  # fmt: skip
        return found.name, labels

    def request_address(self, body: Any) -> dict[str, Any]:
        req = proto.request_address(body)
        if req.ref.v6:
            return self._request_address6(req)
        if req.gateway:
            gw = req.address or req.pool[1]
            assert isinstance(gw, IPv4Address)
            self.pools.gateway(req.ref.pool_id, gw)  # for the IPv6 gateway that follows
            return proto.address_reply(gw, req.pool)
        assert not isinstance(req.address, IPv6Address)
        nid, info = self._network_of_pool(req.ref, req.address)
        dual = info.get("subnet6") is not None
        if dual:
            self._take_slot6(nid)
        try:
            name, labels = self._container(info["name"], req.address)
            ep = self._endpoint(info["name"], name, str(req.address) if req.address else None)
        except BaseException:
            if dual:
                self._free_slot6(nid)
            raise
        with self._lock:
            self.pending[(nid, str(ep.ip))] = (name, labels)
        if dual:
            with self._slots6:
                self.slots6[nid] = Slot6(time.monotonic(), name, ep)
        log.info("host %s: address %s for %s/%s", self.agent.host, ep.ip, info["name"], name)
        return proto.address_reply(str(ep.ip), req.pool)

    def _take_slot6(self, nid: str) -> None:
        """Wait until no other endpoint of the dual-stack network ``nid`` awaits its IPv6
        address (or it waited ``settle6`` s: its request is not coming), then hold the slot."""
        with self._slots6:
            while True:
                held = self.slots6.get(nid)
                now = time.monotonic()
                if held is None or now - held.since >= self.settle6:
                    break
                self._slots6.wait(timeout=held.since + self.settle6 - now)
            if held is not None:
                log.warning(
                    "host %s: docker network %s: no IPv6 request came for %s",
                    self.agent.host, nid[:12], held.name or "an endpoint",
                )  # fmt: skip
            self.slots6[nid] = Slot6(time.monotonic())

    def _free_slot6(self, nid: str, name: str | None = None) -> None:
        """Give the IPv6 slot of ``nid`` up (only if ``name`` holds it, when given)."""
        with self._slots6:
            held = self.slots6.get(nid)
            if held is not None and name in (None, held.name):
                del self.slots6[nid]
                self._slots6.notify_all()

    def _request_address6(self, req: proto.RequestAddress) -> dict[str, Any]:
        """An IPv6 address: the gateway's (the prefix plus the IPv4 gateway just handed out)
        or the endpoint's whose IPv4 address was handed out just before (its ``ip6``)."""
        pool = req.pool
        assert isinstance(pool, IPv6Network)
        if req.gateway:
            if req.address is not None:  # --gateway: CreateNetwork checks it
                return proto.address_reply(req.address, pool)
            gws = self.pools.gateways_awaiting()
            if len(gws) != 1:
                raise ProtocolError(
                    f"cannot tell which IPv4 gateway the IPv6 gateway of {pool} goes with "
                    f"({len(gws)} networks being created): give its --gateway, the prefix plus "
                    "the IPv4 gateway as the low 32 bits"
                )
            return proto.address_reply(gateway6(pool, next(iter(gws))), pool)
        nid, info = self._network_of_pool(req.ref)
        with self._slots6:
            held = self.slots6.pop(nid, None)
            self._slots6.notify_all()
        if held is None or held.ep is None:
            raise ProtocolError(
                f"network {info['name']}: an IPv6 address without an IPv4 address just handed "
                "out (vxplane derives it from the IPv4 address)"
            )
        ep = held.ep
        if ep.ip6 is None:
            raise ProtocolError(f"vxplane network {info['name']} has no IPv6 subnet")
        if req.address is not None and req.address != ep.ip6:
            raise ProtocolError(
                f"--ip6 {req.address}: {held.name} has {ep.ip6} (the network's IPv6 prefix "
                f"plus its IPv4 address {ep.ip})"
            )
        log.info("host %s: address %s for %s/%s", self.agent.host, ep.ip6, ep.network, held.name)
        return proto.address_reply(ep.ip6, pool)

    def release_address(self, body: Any) -> dict[str, Any]:
        ref, address = proto.release(body, address=True)
        if ref.v6:  # the endpoint goes with its IPv4 address
            return {}
        ip = address.split("/")[0]
        nid = self.pools.network_of(ref.pool_id)
        with self._lock:
            if nid:
                name = (self.pending.pop((nid, ip), None) or (None, None))[0]
                if name is not None:  # libnetwork rolls back: its IPv6 request is not coming
                    self._free_slot6(nid, name)
                info = self.networks.get(nid)
                nets = [info] if info and info["name"] else []
            else:  # an old-style or unknown pool: any network of the subnet
                name = None
                nets = [i for i in self.networks.values() if i["subnet"] == ref.pool and i["name"]]
        for info in nets:
            for ep in self.agent.client.list_endpoints(network=info["name"]):
                if str(ep.ip) == ip and (name is None or ep.name == name):
                    if ep.name.startswith(ANON) and not ep.host:
                        self._forget(info["name"], ep.name)
        return {}

    def _forget(self, network: str, name: str) -> None:
        """Delete the endpoint unless it is bound (checked in the deleting transaction: a
        bind that came in between keeps its address)."""
        try:
            self.agent.client.delete_endpoint(network, name, if_unbound=True)
        except ControllerError as exc:
            if exc.status not in (404, 409):
                raise
            if exc.status == 409:
                log.info("host %s: %s/%s is bound again: kept", self.agent.host, network, name)

    # -- endpoints --------------------------------------------------------------------

    def create_endpoint(self, body: Any) -> dict[str, Any]:
        req = proto.create_endpoint(body)
        info = self.network_info(req.network_id)
        if req.address is None:
            raise ProtocolError("the endpoint has no IPv4 address (use --ipam-driver vxplane)")
        ip = str(req.address.ip)
        if req.address.network != info["subnet"]:
            raise ProtocolError(f"address {req.address} is not in {info['subnet']}")
        network = info["name"]
        with self._lock:
            found = self.pending.pop((req.network_id, ip), None)
        name, labels = found or self._container(network, req.address.ip)
        reserved = self._endpoint(network, name, ip)  # the address; no live owner elsewhere
        if req.mac and req.mac != reserved.mac:
            raise ProtocolError(f"vxplane derives the MAC from the IP: {ip} has {reserved.mac}")
        if req.address6 is not None and req.address6.ip != reserved.ip6:
            raise ProtocolError(
                f"IPv6 address {req.address6.ip}: {name} has "
                f"{reserved.ip6 or 'none (the vxplane network has no IPv6 subnet)'}"
            )
        with self._lock:  # before the port exists: reconcile must not take it for stale
            self.inflight[req.endpoint_id] = time.monotonic()
        runtime_ids = {
            EXT_EP: req.endpoint_id,
            EXT_NET: req.network_id,
            EXT_SINCE: f"{time.time():.3f}",
        }
        try:
            ep = self.agent.attach(
                PlugRequest(
                    network=network,
                    name=name,
                    netns=None,
                    ip=ip,
                    labels=labels,
                    runtime_ids=runtime_ids,
                )
            )
        except BaseException:
            with self._lock:
                self.inflight.pop(req.endpoint_id, None)
            raise
        give6 = ep.interface6 if req.address6 is None and info.get("subnet6") else None
        return proto.create_endpoint_reply(req.mac, ep.mac, give6)

    def _port(self, endpoint_id: str) -> PortRecord | None:
        for port in self.agent.ovs.ports(self.agent.bridge):
            if port.external_ids.get(EXT_EP) == endpoint_id:
                return port
        return None

    def join(self, body: Any) -> dict[str, Any]:
        req = proto.join(body)
        port = self._port(req.endpoint_id)
        if port is None or port.ofport is None:
            raise ProtocolError(f"endpoint {req.endpoint_id[:12]} does not exist on this host")
        network, name = port.external_ids[EXT_NETWORK], port.external_ids[EXT_ENDPOINT]
        if name.startswith(ANON):
            self._label_at_join(network, name, port, req.sandbox_key)
        gateway, gateway6 = self._gateways(port)
        return proto.join_reply(device_names(network, name)[1], gateway, gateway6)

    def _label_at_join(self, network: str, name: str, port: PortRecord, sandbox: str) -> None:
        """An endpoint whose container ``RequestAddress`` could not tell (``docker network
        connect`` of a running container, several starting at once) gets that container's
        labels here, found through the sandbox (``sandbox.container_ids``): bound again in
        place with them, and ready (their policy flows confirmed on every switch) before
        ``Join`` answers, that is before Docker moves the interface into the container."""
        ids = sandbox_ids(sandbox)
        if not ids:
            return  # a new container's sandbox (no process yet): nothing to tell it by
        found = [c for c in self._containers() if c.get("Id") in ids]
        if len(found) != 1:
            log.warning(
                "host %s: %s/%s: sandbox %s holds %d containers of this engine: no labels",
                self.agent.host, network, name, sandbox, len(found),
            )  # fmt: skip
            return
        names = found[0].get("Names") or [found[0]["Id"][:12]]
        raw = found[0].get("Labels")
        labels, skipped = proto.endpoint_labels(
            str(names[0]).lstrip("/"), dict(raw) if isinstance(raw, dict) else {}
        )
        if skipped:
            log.info(
                "host %s: %s/%s: Docker labels not valid as endpoint labels, left out: %s",
                self.agent.host, network, name, ", ".join(skipped),
            )  # fmt: skip
        if not labels:
            return
        assert port.ofport is not None
        wait = self.agent.plugger.ready_timeout
        ep, _ = self.agent.client.bind(
            network, name, self.agent.host, port.ofport, port.name, labels=labels,
            wait_ready=wait,
        )  # fmt: skip
        if not ep.ready:
            raise NotReady(f"endpoint {network}/{name}: its labels not ready after {wait}s")
        log.info(
            "host %s: %s/%s: labels of container %s set at Join: %s",
            self.agent.host, network, name, str(names[0]).lstrip("/"), labels,
        )  # fmt: skip

    def _gateways(self, port: PortRecord) -> tuple[str | None, str | None]:
        with self._lock:
            info = self.networks.get(port.external_ids.get(EXT_NET, "")) or {}
        gw, gw6 = info.get("gateway"), info.get("gateway6")
        return (str(gw) if gw else None), (str(gw6) if gw6 else None)

    def program_external(self, body: Any) -> dict[str, Any]:
        """``ProgramExternalConnectivity``: publish the container's ``-p`` ports for its
        endpoint, all or none, and record them on its port (for revoke and cleanup)."""
        req = proto.external_connectivity(body)
        if not req.ports:
            return {}
        port = self._port(req.endpoint_id)
        if port is None:
            raise ProtocolError(f"endpoint {req.endpoint_id[:12]} does not exist on this host")
        network, name = port.external_ids[EXT_NETWORK], port.external_ids[EXT_ENDPOINT]
        try:
            maps = check([PortMap(h, p, pr) for h, p, pr in req.ports])
        except ValueError as exc:
            raise ProtocolError(f"-p {exc}") from exc
        old = decode(port.external_ids.get(EXT_PUBLISHED))
        client = self.agent.client
        try:
            publish_all(client, network, name, [m for m in maps if m not in old])
        except ControllerError as exc:
            raise ProtocolError(f"cannot publish the ports of {name}: {exc.detail}") from exc
        try:
            self.agent.ovs.set_port_ids(port.name, {EXT_PUBLISHED: encode(sorted({*old, *maps}))})
        except BaseException:
            unpublish_all(client, network, name, [m for m in maps if m not in old])
            raise
        log.info("host %s: %s/%s published %s", self.agent.host, network, name, encode(maps))
        return {}

    def endpoint_oper_info(self, body: Any) -> dict[str, Any]:
        """``EndpointOperInfo``: the endpoint's published ports as Docker's bridge driver
        gives them (``proto.oper_info``); none for an endpoint not (or no longer) here."""
        req = proto.ids(body)
        port = self._port(req.endpoint_id)
        if port is None:
            return proto.oper_info([], None, None)
        maps = decode(port.external_ids.get(EXT_PUBLISHED))
        egress = self.agent.settings.egress_ip if self.agent.gateway_port else None
        return proto.oper_info(
            [(m.host_port, m.port, m.proto) for m in maps],
            port.external_ids.get(EXT_IP),
            str(egress) if egress else None,
        )

    def revoke_external(self, body: Any) -> dict[str, Any]:
        """``RevokeExternalConnectivity`` (the container stops): unpublish its ports."""
        req = proto.ids(body)
        port = self._port(req.endpoint_id)
        if port is not None:
            self._unpublish(port.name, port.external_ids)
        return {}

    def _unpublish(self, port_name: str, ids: dict[str, str]) -> None:
        maps = decode(ids.get(EXT_PUBLISHED))
        if not maps:
            return
        network, name = ids[EXT_NETWORK], ids[EXT_ENDPOINT]
        unpublish_all(self.agent.client, network, name, maps)
        self.agent.ovs.set_port_ids(port_name, {EXT_PUBLISHED: ""})
        log.info("host %s: %s/%s unpublished %s", self.agent.host, network, name, encode(maps))

    def leave(self, body: Any) -> dict[str, Any]:
        """``Leave``: unpublish what is still published (libnetwork revokes first when the
        endpoint was the container's gateway); nothing else, no unbinding. libnetwork calls
        it, then takes the interface out of the container (the port's link goes down), then
        ``DeleteEndpoint``, which unplugs and unbinds under the endpoint's lock. Unbinding
        here left a live port with an unbound endpoint for the agent's reconciliation
        (woken by that link-down) to bind again, after ``DeleteEndpoint`` had removed the
        port: the endpoint then stayed bound to a port that no longer existed, "pending"
        for good, and its network could not be deleted."""
        req = proto.ids(body)
        port = self._port(req.endpoint_id)
        if port is not None:
            self._unpublish(port.name, port.external_ids)
        return {}

    def delete_endpoint(self, body: Any) -> dict[str, Any]:
        req = proto.ids(body)
        port = self._port(req.endpoint_id)
        if port is not None:
            self._unplug(port.name, port.external_ids)
        with self._lock:
            self.inflight.pop(req.endpoint_id, None)
            self.seen_live.discard(req.endpoint_id)
        return {}

    def _unplug(self, port_name: str, ids: dict[str, str]) -> None:
        network, name = ids[EXT_NETWORK], ids[EXT_ENDPOINT]
        self._unpublish(port_name, ids)
        self.agent.detach(network, name)
        if name.startswith(ANON):
            self._forget(network, name)

    # -- reconciliation with the engine -----------------------------------------------

    def on_connect(self) -> None:
        """The engine is (back) up: learn its vxplane networks, then reconcile."""
        nets = self.engine.networks(DRIVER)
        for pool_id in self.pools.prune({n["Id"] for n in nets}):
            log.info("host %s: docker pool %s: its network is gone", self.agent.host, pool_id)
        for net in nets:
            try:
                self.network_info(net["Id"])
            except (ProtocolError, AgentError) as exc:
                log.error("host %s: docker network %s: %s", self.agent.host, net.get("Name"), exc)
        self.reconcile()

    def on_event(self, event: dict[str, Any]) -> None:
        """An engine event: cleanup after containers, adopt new networks."""
        kind, action = event.get("Type"), str(event.get("Action", ""))
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        if kind == "container" and action in ("start", "die", "destroy", "kill", "stop"):
            self.reconcile_soon.kick()
        elif kind == "network" and action == "disconnect" and attrs.get("type") == DRIVER:
            self.reconcile_soon.kick()

    def reconcile(self) -> list[str]:
        """Unplug Docker endpoints on this host that no running container holds.

        Spared: endpoints being started (made by ``CreateEndpoint`` less than ``grace`` s
        ago) and, unless once seen running, ports younger than 5 s (made by an earlier agent
        process, maybe still starting); the periodic pass comes back for them."""
        live = set()
        for c in self.engine.containers(all_=False):
            for cfg in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values():
                if isinstance(cfg, dict) and cfg.get("EndpointID"):
                    live.add(cfg["EndpointID"])
        with self._lock:
            for eid in live:
                self.inflight.pop(eid, None)
            self.seen_live |= live
        cleaned = []
        for port in self.agent.ovs.ports(self.agent.bridge):
            ids = port.external_ids
            eid = ids.get(EXT_EP, "")
            if not eid:
                continue
            if eid in live:
                continue
            with self._lock:
                started = self.inflight.get(eid)
                seen = eid in self.seen_live
            if started is not None and time.monotonic() - started < self.grace:
                continue
            if not seen and time.time() - float(ids.get(EXT_SINCE, "0") or 0) < 5:
                continue
            self._unplug(port.name, ids)
            with self._lock:
                self.inflight.pop(eid, None)
                self.seen_live.discard(eid)
            self.cleaned += 1
            cleaned.append(f"{ids.get(EXT_NETWORK)}/{ids.get(EXT_ENDPOINT)}")
            log.warning(
                "host %s: docker endpoint %s/%s (%s) has no running container: cleaned up",
                self.agent.host, ids.get(EXT_NETWORK), ids.get(EXT_ENDPOINT), eid[:12],
            )  # fmt: skip
        return cleaned


def _configs(net: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The IPv4 and the IPv6 entry ({} if none) of an engine network's ``IPAM.Config``."""
    v4: dict[str, Any] = {}
    v6: dict[str, Any] = {}
    for c in (net.get("IPAM") or {}).get("Config") or []:
        if isinstance(c, dict) and isinstance(c.get("Subnet"), str):
            if ":" in c["Subnet"]:
                v6 = v6 or c
            else:
                v4 = v4 or c
    return v4, v6


def create_plugin_app(driver: DockerDriver) -> FastAPI:
    """The plugin's ASGI app: every POST goes to ``driver.dispatch``."""
    app = FastAPI(title="vxplane Docker plugin", openapi_url=None, docs_url=None)

    @app.post("/{method}")
    async def call(method: str, request: Request) -> JSONResponse:
        raw = await request.body()
        status, reply = await run_in_threadpool(driver.dispatch, "/" + method, raw)
        return JSONResponse(reply, status_code=status, media_type=proto.CONTENT_TYPE)

    return app


def pools_path(socket_path: str) -> str:
    """Where the pool table of the plugin on ``socket_path`` is kept: beside the socket
    (``vxplane.sock`` -> ``vxplane-pools.json``; Docker looks only at sockets there)."""
    return f"{os.path.splitext(socket_path)[0]}-pools.json"


def start_docker_plugin(
    agent: Agent, socket_path: str, engine_url: str, scope: str = "local"
) -> Callable[[], None]:
    """Serve the drivers on ``socket_path`` and follow the engine; returns ``stop``."""
    driver = DockerDriver(
        agent, EngineClient(engine_url), scope=scope, pools=PoolTable(pools_path(socket_path))
    )
    stop_server = UnixServer(create_plugin_app(driver), socket_path).start()
    follower = EventFollower(driver.engine, driver.on_connect, driver.on_event)
    follower.start()
    stopping = threading.Event()

    def periodic() -> None:  # catches what events cannot tell (ports spared as too young)
        while not stopping.wait(15.0):
            if follower.connected:
                driver.reconcile_soon.kick()

    threading.Thread(target=periodic, name="docker-periodic", daemon=True).start()
    log.info("host %s: docker drivers on %s, engine %s", agent.host, socket_path, engine_url)

    def stop() -> None:
        stopping.set()
        follower.stop()
        stop_server()
        driver.engine.close()

    return stop
