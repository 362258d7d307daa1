"""In-memory fakes of the host agent's edges (``hostagent/edges.py``) and of its controller.

They model the contract the agent relies on, not the real implementations:

- ``FakeOvs`` (``OvsEdge``): bridges and their interfaces with ``external_ids``; OVS gives
  the requested ofport unless it is taken (or listed in ``unavailable``), else the lowest
  free one; ``wait_ofport`` answers at once (OvsError for a dead or unknown port). When a
  port's device vanishes (``vanish``) its link goes down and ``on_port_down`` hears of it
  once; like ovs-vswitchd, the port keeps its ofport until OVS reconfigures, then shows
  ``ofport`` None (-1 in OVSDB); adding the port again (its device made again) revives it.
  ``added`` keeps the ``external_ids`` each port was created with (what its one OVSDB
  transaction wrote).
- ``FakeLinks`` (``LinkEdge``): network namespaces as a set, devices per namespace (None is
  the agent's own), veth pairs that die together, TX offload, addresses and default route;
  ``remove_netns`` is a container dying, and tells which agent-side devices went with it.
- ``FakeController``: ``hostagent.client.ControllerClient``'s methods on in-memory networks,
  hosts and endpoints (lowest free address first, MAC ``0a:58:<IP bytes>``, on a network
  with ``subnet6`` an ``ip6`` of the prefix plus the IPv4 address, states reserved
  / pending / ready, a revision counter); ``confirms`` limits how many more binds the switches
  confirm (0: binds stay pending), ``down`` is a controller that cannot be reached.

Every fake takes injected failures per verb (``fail``) and is safe to call from several
threads (the plug sequence binds on a thread pool).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from hostagent.agent import Agent
from hostagent.client import ControllerClient, ControllerError
from hostagent.edges import BridgeSpec, LinkEdge, LinkInfo, OvsEdge, PortRecord
from hostagent.errors import ControllerUnavailable, InvalidRequest, LinkError, NotFound, OvsError
from hostagent.model import Endpoint, Network
from hostagent.ovs import TUNNEL_OFPORT, TUNNEL_PORT
from hostagent.plug import Plugger
from hostagent.settings import AgentSettings
from vxcommon.addr6 import derive_ip6, gateway6, link_local

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound="_Fake")

MAX_OFPORT = 65279
MAX_BIND_OFPORT = 0xFFFFFF00  # the controller's API accepts 1..0xffffff00


class _Fake:
    """Locking, a log of calls and injected failures, shared by the fakes."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._faults: dict[str, list[BaseException | None]] = {}

    def fail(self, verb: str, exc: BaseException, times: int = 1, after: int = 0) -> None:
        """Make calls ``after + 1`` .. ``after + times`` of ``verb`` (from now) raise ``exc``."""
        if not callable(getattr(self, verb, None)):
            raise AttributeError(f"{type(self).__name__} has no verb {verb!r}")
        with self.lock:
            self._faults.setdefault(verb, []).extend([None] * after + [exc] * times)

    def calls_of(self, verb: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """The (args, kwargs) of every call of ``verb`` so far, refused ones included."""
        with self.lock:
            return [(args, kwargs) for name, args, kwargs in self.calls if name == verb]

    def _before(self, verb: str) -> None:
        queue = self._faults.get(verb)
        if queue:
            exc = queue.pop(0)
            if exc is not None:
                raise exc


def verb(fn: Callable[Concatenate[F, P], R]) -> Callable[Concatenate[F, P], R]:
    """A fake's verb: under its lock, logged, and failing when a failure was injected."""

    @functools.wraps(fn)
    def wrapper(self: F, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.lock:
            self.calls.append((fn.__name__, args, dict(kwargs)))
            self._before(fn.__name__)
            return fn(self, *args, **kwargs)

    return wrapper


# -- Open vSwitch ---------------------------------------------------------------------------


@dataclass
class FakeInterface:
    """One port (with its one interface) of a fake bridge."""

    bridge: str
    name: str
    ofport: int  # -1: OVS could not open the device, or it vanished
    ofport_request: int | None
    external_ids: dict[str, str]
    link_up: bool = True


class FakeOvs(_Fake):
    """An Open vSwitch whose ovs-vswitchd applies everything at once."""

    def __init__(self) -> None:
        super().__init__()
        self.on_port_down: Callable[[str], None] | None = None
        self.bridges: dict[str, BridgeSpec] = {}
        self.bridge_external_ids: dict[str, dict[str, str]] = {}
        self.ifaces: dict[str, FakeInterface] = {}
        self.added: dict[str, dict[str, str]] = {}  # port -> external_ids it was created with
        self.unavailable: set[int] = set()  # numbers OVS will not hand out
        self.targets: dict[str, list[str]] = {}  # bridge -> OpenFlow controller targets
        self.target_history: list[list[str]] = []  # every change of targets, in order
        self.closed = False

    def _free_ofport(self, request: int | None) -> int:
        used = {i.ofport for i in self.ifaces.values()} | self.unavailable
        requested = {i.ofport_request for i in self.ifaces.values()}
        if request is not None and 0 < request <= MAX_OFPORT and request not in used:
            return request
        return next(n for n in range(1, MAX_OFPORT + 1) if n not in used | requested)

    @verb
    def ensure_bridge(self, spec: BridgeSpec) -> None:
        self.bridges[spec.name] = spec
        if spec.controllers and not set(spec.controllers) & set(self.targets.get(spec.name, ())):
            self.targets[spec.name] = sorted(spec.controllers)
            self.target_history.append(list(self.targets[spec.name]))
        if TUNNEL_PORT not in self.ifaces:
            self.ifaces[TUNNEL_PORT] = FakeInterface(
                spec.name, TUNNEL_PORT, self._free_ofport(TUNNEL_OFPORT), TUNNEL_OFPORT, {}
            )

    @verb
    def controllers(self, bridge: str) -> list[str]:
        return sorted(self.targets.get(bridge, ()))

    @verb
    def set_controllers(self, bridge: str, targets: Sequence[str]) -> None:
        if not targets:
            raise OvsError(f"{bridge}: refusing to remove every controller (flows would go)")
        self.targets[bridge] = sorted(set(targets))
        self.target_history.append(list(self.targets[bridge]))

    @verb
    def bridge_dpid(self, name: str) -> int:
        spec = self.bridges.get(name)
        if spec is None:
            raise OvsError(f"bridge {name} has no datapath_id")
        return int(spec.dpid, 16) if spec.dpid else 0xD0 + len(name)

    @verb
    def bridge_ids(self, name: str) -> dict[str, str]:
        return dict(self.bridge_external_ids.get(name, {}))

    @verb
    def set_bridge_ids(self, name: str, external_ids: Mapping[str, str]) -> None:
        if name not in self.bridges:
            raise OvsError(f"no bridge {name}")
        self.bridge_external_ids.setdefault(name, {}).update(external_ids)

    @verb
    def add_port(
        self,
        bridge: str,
        name: str,
        external_ids: Mapping[str, str],
        ofport_request: int | None = None,
    ) -> None:
        iface = self.ifaces.get(name)
        if iface is not None:  # an existing port only gets its external_ids replaced
            iface.external_ids = dict(external_ids)
            if not iface.link_up:  # its device is back: vswitchd opens it again
                iface.link_up = True
                if iface.ofport == -1:
                    iface.ofport = self._free_ofport(iface.ofport_request)
            return
        if bridge not in self.bridges:
            raise OvsError(f"no bridge {bridge}")
        ofport = self._free_ofport(ofport_request)
        self.ifaces[name] = FakeInterface(bridge, name, ofport, ofport_request, dict(external_ids))
        self.added[name] = dict(external_ids)

    @verb
    def add_internal_port(self, bridge: str, name: str) -> None:
        if name not in self.ifaces:
            if bridge not in self.bridges:
                raise OvsError(f"no bridge {bridge}")
            self.ifaces[name] = FakeInterface(bridge, name, self._free_ofport(None), None, {})

    @verb
    def wait_ofport(self, name: str, timeout: float | None = None) -> int:
        iface = self.ifaces.get(name)
        if iface is None:
            raise OvsError(f"interface {name} got no ofport in {timeout}s (no such interface)")
        if iface.ofport == -1:
            raise OvsError(f"interface {name}: ovs-vswitchd could not add it (no device)")
        return iface.ofport

    @verb
    def set_port_ids(self, name: str, external_ids: Mapping[str, str]) -> None:
        iface = self.ifaces.get(name)
        if iface is None:
            raise OvsError(f"no interface {name}")
        iface.external_ids.update(external_ids)

    @verb
    def delete_port(self, bridge: str, name: str) -> None:
        iface = self.ifaces.get(name)
        if iface is not None and iface.bridge == bridge:
            del self.ifaces[name]

    @verb
    def ports(self, bridge: str) -> list[PortRecord]:
        return [
            PortRecord(i.name, i.ofport if i.ofport > 0 else None, dict(i.external_ids))
            for i in self.ifaces.values()
            if i.bridge == bridge
        ]

    @verb
    def max_ofport(self, bridge: str) -> int:
        ifaces = [i for i in self.ifaces.values() if i.bridge == bridge]
        numbers = [i.ofport for i in ifaces] + [i.ofport_request or 0 for i in ifaces]
        return max((n for n in numbers if 0 < n <= MAX_OFPORT), default=0)

    @verb
    def close(self) -> None:
        self.closed = True

    # -- test controls (not part of OvsEdge) ------------------------------------------------

    def vanish(self, name: str, reconfigured: bool = False) -> None:
        """The device of port ``name`` is gone: its link goes down (``on_port_down`` hears of
        it, once) and, once OVS reconfigured (``reconfigured``), its ofport is -1."""
        with self.lock:
            iface = self.ifaces[name]
            was_up = iface.link_up
            iface.link_up = False
            if reconfigured:
                iface.ofport = -1
            callback = self.on_port_down
        if was_up and callback is not None:
            callback(name)

    def port(self, name: str) -> PortRecord | None:
        """The port called ``name`` on any bridge, as ``ports`` would report it."""
        with self.lock:
            iface = self.ifaces.get(name)
            if iface is None:
                return None
            ofport = iface.ofport if iface.ofport > 0 else None
            return PortRecord(name, ofport, dict(iface.external_ids))

    def endpoint_ports(self) -> dict[str, PortRecord]:
        """Every port but the tunnel, by name."""
        with self.lock:
            names = [n for n in self.ifaces if n != TUNNEL_PORT]
            return {n: p for n in names if (p := self.port(n)) is not None}


# -- network devices ------------------------------------------------------------------------


@dataclass
class FakeDevice:
    """A network device in one namespace (None: the agent's own)."""

    name: str
    index: int
    kind: str | None
    mac: str
    mtu: int
    netns: str | None
    peer: FakeDevice | None = None
    up: bool = False
    tx_offload: bool = True
    addresses: list[IPv4Interface] = field(default_factory=list)
    gateway: IPv4Address | None = None  # the namespace's default route, via this device
    addresses6: list[IPv6Interface] = field(default_factory=list)  # without the link-local
    gateway6: IPv6Address | None = None  # the namespace's IPv6 default route
    dad: bool = True  # duplicate address detection (the kernel's default)

    @property
    def link_local(self) -> IPv6Interface | None:
        """The kernel's EUI-64 link-local address, once IPv6 is on (an address given)."""
        if not self.addresses6 or not self.up:
            return None
        return IPv6Interface(f"{link_local(self.mac)}/64")


class FakeLinks(_Fake):
    """Namespaces and devices; a veth pair is made and destroyed as one."""

    def __init__(self) -> None:
        super().__init__()
        self.namespaces: set[str] = set()
        self.host_netns = {"/proc/1/ns/net"}  # paths of the agent's own namespace
        self.devices: dict[str | None, dict[str, FakeDevice]] = {None: {}}
        self._index = 1

    def _new(self, name: str, netns: str | None, mtu: int, kind: str | None) -> FakeDevice:
        self._index += 1
        i = self._index
        mac = f"02:fa:ce:00:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
        dev = FakeDevice(name, i, kind, mac, mtu, netns)
        self.devices[netns][name] = dev
        return dev

    def _remove(self, dev: FakeDevice) -> None:
        for d in (dev, dev.peer):
            if d is not None:
                self.devices.get(d.netns, {}).pop(d.name, None)

    def _veth(self, host_if: str, peer_if: str, netns: str | None, mtu: int) -> None:
        host = self._new(host_if, None, mtu, "veth")
        peer = self._new(peer_if, netns, mtu, "veth")
        host.peer, peer.peer = peer, host
        host.up = True

    def _ns(self, netns: str | None) -> dict[str, FakeDevice]:
        if netns is not None and netns not in self.namespaces:
            raise NotFound(f"network namespace {netns} does not exist")
        return self.devices[netns]

    @verb
    def make_veth_into(self, host_if: str, peer_if: str, netns: str, mtu: int) -> None:
        target = self._ns(netns)
        if host_if in self.devices[None]:  # a crashed attempt's, with its peer
            self._remove(self.devices[None][host_if])
        if peer_if in target:
            raise InvalidRequest(f"{netns} already has an interface {peer_if}")
        self._veth(host_if, peer_if, netns, mtu)

    @verb
    def make_veth(self, host_if: str, peer_if: str, mtu: int) -> None:
        here = self.devices[None]
        host, peer = here.get(host_if), here.get(peer_if)
        if host is not None and peer is None:
            self._remove(host)
        elif host is None and peer is not None:
            self._remove(peer)
        if host is None or peer is None:
            self._veth(host_if, peer_if, None, mtu)
        here[host_if].mtu, here[host_if].up = mtu, True

    @verb
    def disable_tx_offload(self, ifname: str, netns: str | None = None) -> None:
        if netns is not None and netns not in self.namespaces:
            raise LinkError(f"ethtool tx off on {ifname}: no namespace {netns}")
        dev = self.devices[netns].get(ifname)
        if dev is None:
            raise LinkError(f"ethtool tx off on {ifname}: No such device")
        dev.tx_offload = False

    @verb
    def configure(
        self,
        netns: str,
        current: str,
        ifname: str,
        mac: str,
        address: IPv4Interface,
        mtu: int,
        gateway: IPv4Address | None,
        address6: IPv6Interface | None = None,
        gateway6: IPv6Address | None = None,
    ) -> None:
        devs = self._ns(netns)
        dev = devs.get(current)
        if dev is None:
            raise LinkError(f"device {current} not found in {netns}")
        if current != ifname:
            if ifname in devs:
                raise InvalidRequest(f"{netns} already has an interface {ifname}")
            del devs[current]
            dev.name = ifname
            devs[ifname] = dev
        dev.mac, dev.mtu = mac.lower(), mtu
        if address not in dev.addresses:
            dev.addresses.append(address)
        dev.up = True
        if gateway is not None:
            for other in devs.values():
                other.gateway = None
            dev.gateway = gateway
        if address6 is not None:
            dev.dad = False
            if address6 not in dev.addresses6:
                dev.addresses6.append(address6)
            if gateway6 is not None:
                for other in devs.values():
                    other.gateway6 = None
                dev.gateway6 = gateway6

    @verb
    def get_link(self, ifname: str, netns: str | None = None) -> LinkInfo | None:
        dev = self._ns(netns).get(ifname)
        if dev is None:
            return None
        return LinkInfo(dev.index, dev.name, dev.mac, dev.mtu, dev.kind)

    @verb
    def ipv4_addresses(self, ifname: str, netns: str | None = None) -> list[IPv4Interface]:
        dev = self._ns(netns).get(ifname)
        return list(dev.addresses) if dev is not None else []

    @verb
    def ipv6_addresses(self, ifname: str, netns: str | None = None) -> list[IPv6Interface]:
        dev = self._ns(netns).get(ifname)
        if dev is None:
            return []
        return [*dev.addresses6, *([dev.link_local] if dev.link_local else [])]

    @verb
    def remove_address6(self, ifname: str, netns: str | None, address: IPv6Address) -> None:
        dev = self._ns(netns).get(ifname)
        if dev is None:
            return
        for held in [a for a in dev.addresses6 if a.ip == address]:
            dev.addresses6.remove(held)
            if dev.gateway6 is not None and dev.gateway6 in held.network:
                dev.gateway6 = None

    @verb
    def delete(self, ifname: str, netns: str | None = None) -> None:
        if netns is not None and netns not in self.namespaces:
            return
        dev = self.devices[netns].get(ifname)
        if dev is not None:
            self._remove(dev)

    @verb
    def netns_exists(self, netns: str) -> bool:
        return netns in self.namespaces

    @verb
    def check_netns(self, netns: str) -> None:
        if netns in self.host_netns:
            raise InvalidRequest(f"network namespace {netns} is the host's own")
        if netns not in self.namespaces:
            raise NotFound(f"network namespace {netns} does not exist")

    @verb
    def names(self) -> set[str]:
        return set(self.devices[None])

    # -- test controls (not part of LinkEdge) ------------------------------------------------

    def add_device(self, ifname: str, netns: str | None = None, kind: str | None = None) -> None:
        """A device the agent did not make (``kind`` None: a physical one)."""
        with self.lock:
            self._new(ifname, netns, 1500, kind)

    def add_netns(self, netns: str) -> None:
        """A container's namespace appears (empty)."""
        with self.lock:
            self.namespaces.add(netns)
            self.devices.setdefault(netns, {})

    def remove_netns(self, netns: str) -> list[str]:
        """The namespace goes (its container died): its devices go, veth peers with them.
        Returns the agent-side devices that went along."""
        with self.lock:
            self.namespaces.discard(netns)
            gone = []
            for dev in list(self.devices.pop(netns, {}).values()):
                if dev.peer is not None and dev.peer.netns is None:
                    gone.append(dev.peer.name)
                    self._remove(dev.peer)
            return gone

    def dev(self, ifname: str, netns: str | None = None) -> FakeDevice:
        """The device ``ifname`` in ``netns`` (None: the agent's); KeyError if absent."""
        with self.lock:
            return self.devices[netns][ifname]

    def names_in(self, netns: str | None = None) -> set[str]:
        """The names of the devices in ``netns`` (None: the agent's), not logged."""
        with self.lock:
            return set(self.devices.get(netns, {}))


# -- the controller -------------------------------------------------------------------------


def mac_for(ip: IPv4Address) -> str:
    """The controller's MAC for ``ip``: ``0a:58:`` and the address's four bytes."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


@dataclass
class FakeEndpointRow:
    network: str
    name: str
    ip: IPv4Address
    host: str | None = None
    ofport: int | None = None
    port_name: str | None = None
    state: str = "reserved"
    revision: int = 0
    labels: dict[str, str] = field(default_factory=dict)


class FakeController(_Fake):
    """The controller's API as ``ControllerClient`` presents it, kept in memory."""

    def __init__(self, base_url: str = "http://controller.test:8080") -> None:
        super().__init__()
        self.base_url = base_url
        self.networks: dict[str, Network] = {}
        self.hosts: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[tuple[str, str], FakeEndpointRow] = {}
        self.revision = 0
        self.confirms: int | None = None  # how many more binds the switches confirm (None: all)
        self.streams = True  # a bind with on_bound streams the endpoint as bound first
        self.down = False  # the controller cannot be reached
        self.closed = False
        self.cluster_id = "c0ffee00-0000-4000-8000-000000000001"
        self.members: list[dict[str, Any]] | None = None  # None: a controller before clusters
        self.member_urls: list[str] = []  # what the agent last gave set_members

    def _before(self, verb: str) -> None:
        if self.down:
            raise ControllerUnavailable(f"controller {self.base_url}: connection refused")
        super()._before(verb)

    @verb
    def list_controllers(self) -> list[dict[str, Any]]:
        if self.members is None:
            raise ControllerError(404, "Not Found")
        return [dict(m) for m in self.members]

    def set_members(self, api_urls: list[str]) -> None:
        self.member_urls = list(api_urls)

    def _bump(self) -> int:
        self.revision += 1
        return self.revision

    def _net(self, name: str) -> Network:
        net = self.networks.get(name)
        if net is None:
            raise ControllerError(404, f"network {name!r} not found")
        return net

    def _row(self, network: str, name: str) -> FakeEndpointRow:
        self._net(network)
        row = self.endpoints.get((network, name))
        if row is None:
            raise ControllerError(404, f"endpoint {name!r} of network {network!r} not found")
        return row

    def _host(self, name: str) -> dict[str, Any]:
        host = self.hosts.get(name)
        if host is None:
            raise ControllerError(404, f"host {name!r} is not registered")
        return host

    def _public(self, row: FakeEndpointRow, state: str | None = None) -> Endpoint:
        net = self.networks[row.network]
        six = IPv6Network(net.subnet6) if net.subnet6 else None
        return Endpoint(
            network=row.network,
            name=row.name,
            ip=row.ip,
            prefixlen=IPv4Network(net.subnet).prefixlen,
            gateway=IPv4Address(net.gateway),
            mac=mac_for(row.ip),
            vni=net.vni,
            host=row.host,
            ofport=row.ofport,
            port_name=row.port_name,
            state=state or row.state,
            revision=row.revision,
            labels=dict(row.labels),
            ip6=IPv6Address(derive_ip6(six, row.ip)) if six else None,
            prefixlen6=six.prefixlen if six else None,
            gateway6=IPv6Address(net.gateway6) if net.gateway6 else None,
        )

    def _new_row(self, network: str, name: str, ip: str | None) -> FakeEndpointRow:
        net = self._net(network)
        subnet, gateway = IPv4Network(net.subnet), IPv4Address(net.gateway)
        held = {r.ip: r.name for r in self.endpoints.values() if r.network == network}
        if ip is not None:
            addr = IPv4Address(ip)
            if addr not in subnet or addr in (
                subnet.network_address, subnet.broadcast_address, gateway,
            ):  # fmt: skip
                raise ControllerError(422, f"{ip} is not a usable address of {subnet}")
            if addr in held:
                raise ControllerError(409, f"{ip} is already held by endpoint {held[addr]!r}")
        else:
            free = (a for a in subnet.hosts() if a != gateway and a not in held)
            addr_or_none = next(free, None)
            if addr_or_none is None:
                raise ControllerError(409, f"network {network!r} has no free address")
            addr = addr_or_none
        row = FakeEndpointRow(network, name, addr)
        self.endpoints[(network, name)] = row
        return row

    @staticmethod
    def _same_ip(row: FakeEndpointRow, ip: str | None) -> None:
        if ip is not None and IPv4Address(ip) != row.ip:
            raise ControllerError(409, f"endpoint {row.name!r} holds {row.ip}, not {ip}")

    # -- hosts and networks ------------------------------------------------------------------

    @verb
    def register_host(
        self,
        name: str,
        underlay_ip: str,
        dpid: int | None = None,
        tunnel_port: int | None = None,
        cluster_id: str | None = None,
        egress_ip: str | None = None,
        gateway_port: int | None = None,
        egress_ip6: str | None = None,
    ) -> dict[str, Any]:
        if cluster_id is not None and cluster_id != self.cluster_id:
            raise ControllerError(
                409, f"host {name!r} belongs to cluster {cluster_id}, not {self.cluster_id}"
            )
        for other, doc in self.hosts.items():
            if other != name and doc["underlay_ip"] == underlay_ip:
                raise ControllerError(409, f"host {other!r} has underlay IP {underlay_ip}")
        doc = self.hosts.setdefault(
            name, {"name": name, "dpid": None, "tunnel_port": 1, "alive": True}
        )
        doc["underlay_ip"] = underlay_ip
        if dpid is not None:
            doc["dpid"] = f"{dpid:016x}"
        if tunnel_port is not None:
            doc["tunnel_port"] = tunnel_port
        self._bump()
        return {**doc, "cluster_id": self.cluster_id}

    @verb
    def heartbeat(self, name: str) -> dict[str, Any]:
        return dict(self._host(name))

    @verb
    def get_host(self, name: str) -> dict[str, Any]:
        return dict(self._host(name))

    @verb
    def get_network(self, name: str) -> Network:
        return self._net(name)

    @verb
    def create_network(
        self, name: str, subnet: str, gateway: str | None = None, subnet6: str | None = None
    ) -> tuple[Network, bool]:
        if name in self.networks:
            return self.networks[name], False
        net = IPv4Network(subnet)
        gw = IPv4Address(gateway or str(net[1]))
        vni = max((n.vni for n in self.networks.values()), default=0) + 1
        six = IPv6Network(subnet6) if subnet6 else None
        if six is not None and six.prefixlen > 96:
            raise ControllerError(422, f"subnet6 {six}: at most /96")
        gw6 = gateway6(six, gw) if six else None
        self.networks[name] = Network(name, str(net), str(gw), vni, str(six) if six else None, gw6)
        self._bump()
        return self.networks[name], True

    @verb
    def delete_network(self, name: str) -> None:
        self._net(name)
        rows = [r for r in self.endpoints.values() if r.network == name]
        if any(r.host for r in rows):
            raise ControllerError(409, f"network {name!r} has bound endpoints")
        for r in rows:
            del self.endpoints[(r.network, r.name)]
        del self.networks[name]
        self._bump()

    # -- endpoints ---------------------------------------------------------------------------

    @verb
    def create_endpoint(
        self, network: str, name: str, ip: str | None = None, host: str | None = None
    ) -> tuple[Endpoint, bool]:
        self._net(network)
        row = self.endpoints.get((network, name))
        if row is not None:
            self._same_ip(row, ip)
            return self._public(row), False
        if host is not None:
            self._host(host)
        return self._public(self._new_row(network, name, ip)), True

    @verb
    def get_endpoint(self, network: str, name: str, wait_ready: float | None = None) -> Endpoint:
        return self._public(self._row(network, name))

    @verb
    def bind(
        self,
        network: str,
        name: str,
        host: str,
        ofport: int,
        port_name: str | None = None,
        *,
        create: bool = False,
        ip: str | None = None,
        labels: dict[str, str] | None = None,
        wait_ready: float | None = None,
        if_revision: int | None = None,
        move: bool = False,
        on_bound: Callable[[Endpoint], None] | None = None,
    ) -> tuple[Endpoint, bool]:
        if not isinstance(ofport, int) or not 1 <= ofport <= MAX_BIND_OFPORT:
            raise ControllerError(422, f"ofport {ofport!r}: 1..{MAX_BIND_OFPORT}")
        self._net(network)
        row = self.endpoints.get((network, name))
        current = row.revision if row is not None else 0
        if if_revision is not None and if_revision != current:
            shown = self._public(row) if row is not None else None
            raise ControllerError(409, f"endpoint {name!r} is at revision {current}", shown)
        elsewhere = (
            row is not None and row.host is not None and (row.host, row.ofport) != (host, ofport)
        )
        if elsewhere and row is not None and if_revision is None and not move:
            raise ControllerError(
                409, f"endpoint {name!r} is bound to host {row.host!r}", self._public(row)
            )
        if row is None and not create:
            raise ControllerError(404, f"endpoint {name!r} of network {network!r} not found")
        if row is not None:
            self._same_ip(row, ip)
        self._host(host)
        created = row is None
        if row is None:
            row = self._new_row(network, name, ip)
        if labels is not None:
            row.labels = dict(labels)
        unchanged = (
            not created
            and row.host == host
            and row.ofport == ofport
            and port_name in (None, row.port_name)
        )
        if not unchanged:
            row.host, row.ofport, row.port_name = host, ofport, port_name
            row.state, row.revision = "pending", self._bump()
        answer = row.state
        # streamed (as ControllerClient gives each NDJSON line): the endpoint as bound, before
        # the wait, then as answered
        streamed = on_bound is not None and wait_ready is not None and self.streams
        if streamed and row.state == "pending":
            assert on_bound is not None
            on_bound(self._public(row, "pending"))
        if row.state == "pending" and self.confirms != 0:
            # the switches confirm the flows: after the answer, unless it waited
            row.state = "ready"
            answer = "ready" if wait_ready is not None else answer
            self.confirms = None if self.confirms is None else self.confirms - 1
        if streamed:
            assert on_bound is not None
            on_bound(self._public(row, answer))
        return self._public(row, answer), created

    @verb
    def unbind(self, network: str, name: str, host: str | None = None) -> Endpoint:
        row = self._row(network, name)
        if row.host is not None and host in (None, row.host):
            row.host = row.ofport = row.port_name = None
            row.state = "reserved"
            self._bump()
        return self._public(row)

    @verb
    def delete_endpoint(
        self,
        network: str,
        name: str,
        *,
        if_unbound: bool = False,
        if_revision: int | None = None,
    ) -> None:
        row = self._row(network, name)
        if if_unbound and row.host is not None:
            raise ControllerError(409, f"endpoint {name!r} is bound to host {row.host!r}")
        if if_revision is not None and if_revision != row.revision:
            raise ControllerError(409, f"endpoint {name!r} is at revision {row.revision}")
        del self.endpoints[(network, name)]
        if row.host is not None:
            self._bump()

    @verb
    def list_endpoints(
        self, network: str | None = None, host: str | None = None, state: str | None = None
    ) -> list[Endpoint]:
        return [
            self._public(r)
            for key, r in sorted(self.endpoints.items())
            if network in (None, r.network) and host in (None, r.host) and state in (None, r.state)
        ]

    @verb
    def close(self) -> None:
        self.closed = True

    # -- test controls (not part of ControllerClient) ------------------------------------------

    def view(self) -> dict[tuple[str, str], tuple[str, str | None, int | None, str]]:
        """What the dataplane sees of every endpoint: (ip, host, ofport, state) by key."""
        with self.lock:
            return {
                k: (str(r.ip), r.host, r.ofport, r.state) for k, r in sorted(self.endpoints.items())
            }

    def ep(self, network: str, name: str) -> Endpoint | None:
        """The endpoint as stored (no call logged), or None."""
        with self.lock:
            row = self.endpoints.get((network, name))
            return self._public(row) if row is not None else None


def as_client(fake: FakeController) -> ControllerClient:
    """The fake where the agent's code wants a ``ControllerClient`` (a class, not a
    Protocol: ``tests/unit/test_agentfakes.py`` checks the signatures match)."""
    return cast(ControllerClient, fake)


# Proof, checked by mypy (``mypy tests/unit/agentfakes.py``), that the fakes are the edges.
_ovs: OvsEdge = FakeOvs()
_links: LinkEdge = FakeLinks()


# -- one host's world -----------------------------------------------------------------------

HOST = "h1"
BRIDGE = "br-int"
MTU = 1450


@dataclass
class FakeHost:
    """Host ``h1``'s OVS (br-int set up) and devices, and a controller that knows the host
    and network ``blue`` (10.0.0.0/24)."""

    ctl: FakeController = field(default_factory=FakeController)
    ovs: FakeOvs = field(default_factory=FakeOvs)
    links: FakeLinks = field(default_factory=FakeLinks)

    def __post_init__(self) -> None:
        self.ctl.register_host(HOST, "198.18.0.1")
        self.ctl.create_network("blue", "10.0.0.0/24")
        self.ovs.ensure_bridge(BridgeSpec(BRIDGE, "netdev", ()))

    def settings(self, **overrides: Any) -> AgentSettings:
        """Settings of h1's agent (userspace datapath: nothing probes the kernel)."""
        values: dict[str, Any] = {
            "controller": self.ctl.base_url, "host": HOST, "underlay_ip": "198.18.0.1",
            "bridge": BRIDGE, "mtu": MTU, "datapath_type": "netdev", "ready_timeout": 1.0,
        }  # fmt: skip
        return AgentSettings(**{**values, **overrides})

    def plugger(self) -> Plugger:
        """A Plugger, as a freshly started agent has it."""
        return Plugger(
            HOST, BRIDGE, ovs=self.ovs, links=self.links, client=as_client(self.ctl),
            mtu=MTU, ready_timeout=1.0,
        )  # fmt: skip

    def agent(self, **overrides: Any) -> Agent:
        """A new agent process on this host (bridge not set up, not registered yet)."""
        return Agent(
            self.settings(**overrides), client=as_client(self.ctl), ovs=self.ovs, links=self.links
        )

    def kill(self, netns: str, reconfigured: bool = False) -> list[str]:
        """The container of ``netns`` dies: its namespace and veths go, OVS sees the links go
        down (and, with ``reconfigured``, reports ofport -1). Returns the ports affected."""
        gone = self.links.remove_netns(netns)
        for name in gone:
            if self.ovs.port(name) is not None:
                self.ovs.vanish(name, reconfigured=reconfigured)
        return gone

    def is_empty(self) -> bool:
        """No endpoint port, no device in the agent's namespace or any container's."""
        devices = {ns: self.links.names_in(ns) for ns in (None, *self.links.namespaces)}
        return not self.ovs.endpoint_ports() and not any(devices.values())
