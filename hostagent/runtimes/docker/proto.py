"""Docker's remote network driver and remote IPAM protocols as pure data (libnetwork's
``docs/remote.md`` and ``docs/ipam.md``): request validation, replies and error shapes.

Docker POSTs JSON to ``/Plugin.Activate``, ``/NetworkDriver.<Method>`` and
``/IpamDriver.<Method>`` on the plugin's socket. A failure is a reply carrying ``Err``
(network driver) or ``Error`` (IPAM) with a message; libnetwork turns it into the error the
user sees. Every request is checked here against the fields the protocol defines, so a
malformed one gets that error shape, never a traceback.

Pool ids are ``vxplane:<cidr>:<tag>``, a fresh random tag per ``RequestPool``: two Docker
networks with the same subnet get distinct ids, which the driver pairs with their networks
(``pools.py``). Ids of the older form ``vxplane:<cidr>`` (one per subnet) are still read.
IPv6 pools (``--ipv6``: ``RequestPool`` with ``V6``) are ``vxplane6:<cidr>:<tag>`` (the tag
after the last colon); a network has at most one of each family, its IPv6 prefix at most /96
(the low 32 bits carry each IPv4 address: ``vxcommon.addr6``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any

from vxcommon.labels import LABELS_MAX, label_error

ACTIVATE = "Plugin.Activate"
IMPLEMENTS = ["NetworkDriver", "IpamDriver"]
LOCAL_SPACE = "vxplane-local"
GLOBAL_SPACE = "vxplane-global"
POOL_PREFIX = "vxplane:"
POOL6_PREFIX = "vxplane6:"
MAX_PREFIX6 = 96
POOL_TAG = re.compile(r"[0-9a-z]{1,32}")
GATEWAY_REQUEST = "com.docker.network.gateway"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"

NETWORK_METHODS = (
    "GetCapabilities", "CreateNetwork", "DeleteNetwork", "AllocateNetwork", "FreeNetwork",
    "CreateEndpoint", "DeleteEndpoint", "EndpointOperInfo", "Join", "Leave",
    "DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity",
    "RevokeExternalConnectivity",
)  # fmt: skip
IPAM_METHODS = (
    "GetCapabilities", "GetDefaultAddressSpaces", "RequestPool", "ReleasePool",
    "RequestAddress", "ReleaseAddress", "DiscoverNew", "DiscoverDelete",
)  # fmt: skip


class ProtocolError(Exception):
    """A request the protocol (or vxplane) cannot accept; ``message`` goes to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def split_path(path: str) -> tuple[str, str]:
    """``/NetworkDriver.Join`` -> ("NetworkDriver", "Join"); ProtocolError if unknown."""
    kind, _, method = path.strip("/").partition(".")
    known = {"NetworkDriver": NETWORK_METHODS, "IpamDriver": IPAM_METHODS, "Plugin": ("Activate",)}
    if method not in known.get(kind, ()):
        raise ProtocolError(f"unknown plugin method {path!r}")
    return kind, method


def error_reply(kind: str, message: str) -> dict[str, str]:
    """The protocol's error shape: ``Error`` for IPAM, ``Err`` for everything else."""
    return {"Error": message} if kind == "IpamDriver" else {"Err": message}


# -- field checks ---------------------------------------------------------------------


def _obj(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    return body


def _str(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise ProtocolError(f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string")
    return value


def _map(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{key} must be an object")
    return value


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"{key} must be a list")
    return value


def _cidr_ip6(value: str, key: str) -> IPv6Interface:
    try:
        iface = ip_interface(value)
    except ValueError as exc:
        raise ProtocolError(f"{key} {value!r} is not an address in CIDR form") from exc
    if not isinstance(iface, IPv6Interface) or "/" not in value:
        raise ProtocolError(f"{key} {value!r}: want an IPv6 address with a prefix length")
    return iface


def _cidr_ip(value: str, key: str) -> IPv4Interface:
    try:
        iface = ip_interface(value)
    except ValueError as exc:
        raise ProtocolError(f"{key} {value!r} is not an address in CIDR form") from exc
    if not isinstance(iface, IPv4Interface) or "/" not in value:
        raise ProtocolError(f"{key} {value!r}: want an IPv4 address with a prefix length")
    return iface


# -- requests -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """NetworkID and (where the method has it) EndpointID."""

    network_id: str
    endpoint_id: str = ""


def ids(body: Any, endpoint: bool = True) -> Ids:
    """The ids of a network or endpoint request."""
    b = _obj(body)
    return Ids(_str(b, "NetworkID"), _str(b, "EndpointID") if endpoint else "")


@dataclass(frozen=True)
class CreateNetwork:
    network_id: str
    subnet: IPv4Network
    gateway: IPv4Address
    options: dict[str, Any] = field(default_factory=dict)
    address_space: str = ""
    subnet6: IPv6Network | None = None  # dual stack (--ipv6)
    gateway6: IPv6Address | None = None  # as the IPAM driver gave it (None: not given)

    @property
    def our_pool(self) -> bool:
        """True when the pool came from vxplane's IPAM (its address spaces)."""
        return self.address_space in (LOCAL_SPACE, GLOBAL_SPACE)


def create_network(body: Any) -> CreateNetwork:
    """``CreateNetwork``: one IPv4 pool with its gateway, and with ``--ipv6`` one IPv6 pool
    (at most /96) with its gateway."""
    b = _obj(body)
    nid = _str(b, "NetworkID")
    v4, v6 = _list(b, "IPv4Data"), _list(b, "IPv6Data")
    if len(v4) != 1 or not isinstance(v4[0], dict):
        raise ProtocolError("vxplane networks need exactly one IPv4 subnet (--subnet)")
    if len(v6) > 1 or (v6 and not isinstance(v6[0], dict)):
        raise ProtocolError("vxplane networks take at most one IPv6 subnet (--subnet)")
    pool = _pool(_str(v4[0], "Pool"))
    gw = _str(v4[0], "Gateway", required=False)
    gateway = _cidr_ip(gw, "Gateway").ip if gw else pool[1]
    if gateway not in pool:
        raise ProtocolError(f"gateway {gateway} is outside {pool}")
    _map(v4[0], "AuxAddresses")
    space = _str(v4[0], "AddressSpace", required=False)
    subnet6 = gateway6 = None
    if v6:
        subnet6 = _pool6(_str(v6[0], "Pool"))
        gw6 = _str(v6[0], "Gateway", required=False)
        if gw6:
            gateway6 = _cidr_ip6(gw6, "IPv6Data Gateway").ip
            if gateway6 not in subnet6:
                raise ProtocolError(f"gateway {gateway6} is outside {subnet6}")
        if _map(v6[0], "AuxAddresses"):
            raise ProtocolError("vxplane does not support --aux-address")
    return CreateNetwork(nid, pool, gateway, _map(b, "Options"), space, subnet6, gateway6)


@dataclass(frozen=True)
class CreateEndpoint:
    network_id: str
    endpoint_id: str
    address: IPv4Interface | None
    mac: str
    options: dict[str, Any] = field(default_factory=dict)
    address6: IPv6Interface | None = None


def create_endpoint(body: Any) -> CreateEndpoint:
    """``CreateEndpoint``: the interface's addresses (from the IPAM driver) and MAC, if set."""
    b = _obj(body)
    i = ids(b)
    iface = _map(b, "Interface")
    addr = _str(iface, "Address", required=False)
    addr6 = _str(iface, "AddressIPv6", required=False)
    mac = _str(iface, "MacAddress", required=False).lower()
    return CreateEndpoint(
        i.network_id,
        i.endpoint_id,
        _cidr_ip(addr, "Interface.Address") if addr else None,
        mac,
        _map(b, "Options"),
        _cidr_ip6(addr6, "Interface.AddressIPv6") if addr6 else None,
    )


@dataclass(frozen=True)
class Join:
    network_id: str
    endpoint_id: str
    sandbox_key: str


def join(body: Any) -> Join:
    """``Join``: the endpoint enters the sandbox at ``SandboxKey``."""
    b = _obj(body)
    i = ids(b)
    _map(b, "Options")
    return Join(i.network_id, i.endpoint_id, _str(b, "SandboxKey"))


PORTMAP = "com.docker.network.portmap"
IP_PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}


@dataclass(frozen=True)
class ExternalConnectivity:
    """``ProgramExternalConnectivity``: the container's published ports (``-p``)."""

    network_id: str
    endpoint_id: str
    ports: list[tuple[int, int, str]]  # (host port, container port, "tcp"|"udp")


def _u16(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ProtocolError(f"{PORTMAP}: {key} must be a port number")
    return value


def port_bindings(options: dict[str, Any]) -> list[tuple[int, int, str]]:
    """The ``(host port, container port, proto)`` of ``Options[PORTMAP]``: libnetwork's
    ``[]types.PortBinding`` (``Proto`` 6 tcp / 17 udp, ``Port``, ``HostPort``,
    ``HostPortEnd``, ``IP``, ``HostIP``), one per ``-p``. vxplane publishes one fixed host
    port on the egress address of the endpoint's host, so ``-p 80`` or ``-P`` (no host
    port), a host port range, a host address and sctp are refused with a message."""
    raw = options.get(PORTMAP)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProtocolError(f"{PORTMAP} must be a list")
    out = []
    for b in raw:
        if not isinstance(b, dict):
            raise ProtocolError(f"{PORTMAP}: each binding must be an object")
        raw_proto = b.get("Proto")
        proto = IP_PROTOS.get(raw_proto, str(raw_proto)) if isinstance(raw_proto, int) else "?"
        port, host = _u16(b.get("Port"), "Port"), _u16(b.get("HostPort", 0), "HostPort")
        end = _u16(b.get("HostPortEnd", 0), "HostPortEnd")
        shown = f"{b.get('HostPort', '')}:{port}/{proto}"
        if proto not in ("tcp", "udp"):
            raise ProtocolError(f"-p {shown}: vxplane publishes tcp and udp ports only")
        if host == 0:
            raise ProtocolError(
                f"-p {port}/{proto}: vxplane needs the host port (-p HOSTPORT:{port}); -P and "
                "ports without a host port are not supported"
            )
        if end not in (0, host):
            raise ProtocolError(f"-p {host}-{end}:{port}: host port ranges are not supported")
        host_ip = b.get("HostIP") or ""
        if host_ip not in ("", "0.0.0.0", "::"):
            raise ProtocolError(
                f"-p {host_ip}:{host}:{port}: vxplane publishes on the egress address of the "
                "container's host; leave the address out"
            )
        out.append((host, port, proto))
    return out


EXPOSED = "com.docker.network.endpoint.exposedports"
PROTO_NUMS = {v: k for k, v in IP_PROTOS.items()}


def oper_info(
    ports: list[tuple[int, int, str]], ip: str | None, host_ip: str | None
) -> dict[str, Any]:
    """``EndpointOperInfo``'s reply: the endpoint's published ports under the keys and in
    the shape of Docker's bridge driver (``netlabel.PortMap``: libnetwork's
    ``[]types.PortBinding``, ``netlabel.ExposedPorts``: ``[]types.TransportPort``), from
    ``(host port, container port, proto)``; ``ip`` is the container's, ``host_ip`` the
    egress address of its host. dockerd 28 reads these keys only as Go values of its own
    drivers (a type assertion), so for a remote driver ``docker port`` stays empty: the
    reply is what the protocol carries, for tools that call the plugin (docs/architecture.md).
    """
    if not ports:
        return {"Value": {}}
    bindings = [
        {
            "Proto": PROTO_NUMS[proto],
            "IP": ip or "",
            "Port": port,
            "HostIP": host_ip or "",
            "HostPort": host,
            "HostPortEnd": host,
        }  # fmt: skip
        for host, port, proto in ports
    ]
    exposed = [{"Proto": PROTO_NUMS[proto], "Port": port} for _, port, proto in ports]
    return {"Value": {PORTMAP: bindings, EXPOSED: exposed}}


def external_connectivity(body: Any) -> ExternalConnectivity:
    """``ProgramExternalConnectivity``: ids and the port bindings in ``Options``."""
    b = _obj(body)
    i = ids(b)
    return ExternalConnectivity(i.network_id, i.endpoint_id, port_bindings(_map(b, "Options")))


def discover(body: Any) -> dict[str, Any]:
    """``DiscoverNew``/``DiscoverDelete``: checked, then ignored (an empty reply)."""
    b = _obj(body)
    if not isinstance(b.get("DiscoveryType"), int) or isinstance(b.get("DiscoveryType"), bool):
        raise ProtocolError("DiscoveryType must be an integer")
    return {}


def _pool6(value: str) -> IPv6Network:
    try:
        net = ip_network(value, strict=True)
    except ValueError as exc:
        raise ProtocolError(f"pool {value!r} is not a subnet in CIDR form: {exc}") from exc
    if not isinstance(net, IPv6Network):
        raise ProtocolError(f"pool {value}: want an IPv6 subnet here")
    if net.prefixlen > MAX_PREFIX6:
        raise ProtocolError(
            f"IPv6 pool {value} is too small (at most /{MAX_PREFIX6}: the low 32 bits of each "
            "IPv6 address carry the endpoint's IPv4 address)"
        )
    return net


def _pool(value: str) -> IPv4Network:
    try:
        net = ip_network(value, strict=True)
    except ValueError as exc:
        raise ProtocolError(f"pool {value!r} is not a subnet in CIDR form: {exc}") from exc
    if not isinstance(net, IPv4Network):
        raise ProtocolError(f"pool {value}: vxplane is IPv4 only")
    if net.prefixlen > 30:
        raise ProtocolError(f"pool {value} is too small (at most /30)")
    return net


@dataclass(frozen=True)
class RequestPool:
    space: str
    pool: IPv4Network | IPv6Network
    options: dict[str, Any] = field(default_factory=dict)


def request_pool(body: Any) -> RequestPool:
    """``RequestPool``: vxplane needs the subnet (``--subnet``), of each family with
    ``--ipv6`` (``V6``: an IPv6 prefix of at most /96); no sub-pools."""
    b = _obj(body)
    space = _str(b, "AddressSpace")
    if not isinstance(b.get("V6", False), bool):
        raise ProtocolError("V6 must be a boolean")
    v6 = bool(b.get("V6"))
    pool = _str(b, "Pool", required=False)
    if _str(b, "SubPool", required=False):
        if not pool:
            raise ProtocolError("SubPool given without Pool")
        raise ProtocolError("vxplane IPAM does not support --ip-range")
    if not pool:
        six = " (and an IPv6 one of at most /96 with --ipv6)" if v6 else ""
        raise ProtocolError(
            f"vxplane IPAM needs the subnet: docker network create --subnet CIDR{six}"
        )
    return RequestPool(space, _pool6(pool) if v6 else _pool(pool), _map(b, "Options"))


def pool_id(pool: IPv4Network | IPv6Network, tag: str = "") -> str:
    """The id of a pool: ``vxplane:<cidr>:<tag>`` (IPv6: ``vxplane6:<cidr>:<tag>``), or the
    old ``vxplane:<cidr>`` without tag."""
    if tag and not POOL_TAG.fullmatch(tag):
        raise ValueError(f"pool tag {tag!r}: 1 to 32 of [0-9a-z]")
    if isinstance(pool, IPv6Network):
        if not tag:
            raise ValueError("an IPv6 pool id needs a tag")
        return f"{POOL6_PREFIX}{pool}:{tag}"
    return f"{POOL_PREFIX}{pool}:{tag}" if tag else f"{POOL_PREFIX}{pool}"


@dataclass(frozen=True)
class PoolRef:
    """A parsed pool id: the id itself, its subnet and its tag ("" in an old-style id)."""

    pool_id: str
    pool: IPv4Network | IPv6Network
    tag: str = ""

    @property
    def v6(self) -> bool:
        return isinstance(self.pool, IPv6Network)


def parse_pool_id(value: str) -> PoolRef:
    """The parts of an id made by ``pool_id`` (any form)."""
    if value.startswith(POOL6_PREFIX):
        cidr, _, tag = value[len(POOL6_PREFIX) :].rpartition(":")
        if not POOL_TAG.fullmatch(tag) or not cidr:
            raise ProtocolError(f"unknown PoolID {value!r}")
        return PoolRef(value, _pool6(cidr), tag)
    if not value.startswith(POOL_PREFIX):
        raise ProtocolError(f"unknown PoolID {value!r}")
    cidr, _, tag = value[len(POOL_PREFIX) :].partition(":")
    if ":" in value[len(POOL_PREFIX) :] and not POOL_TAG.fullmatch(tag):
        raise ProtocolError(f"unknown PoolID {value!r}")
    return PoolRef(value, _pool(cidr), tag)


@dataclass(frozen=True)
class RequestAddress:
    ref: PoolRef
    address: IPv4Address | IPv6Address | None
    gateway: bool
    mac: str

    @property
    def pool(self) -> IPv4Network | IPv6Network:
        return self.ref.pool


def request_address(body: Any) -> RequestAddress:
    """``RequestAddress``: the gateway's (at network creation) or an endpoint's, from an
    IPv4 or an IPv6 pool (``--ip``/``--ip6``: ``Address``)."""
    b = _obj(body)
    ref = parse_pool_id(_str(b, "PoolID"))
    opts = _map(b, "Options")
    raw = _str(b, "Address", required=False)
    address = None
    if raw:
        family = "IPv6" if ref.v6 else "IPv4"
        try:
            address = ip_address(raw.split("/")[0])
        except ValueError as exc:
            raise ProtocolError(f"Address {raw!r} is not an {family} address") from exc
        if isinstance(address, IPv6Address) != ref.v6:
            raise ProtocolError(f"Address {raw!r} is not an {family} address")
        if address not in ref.pool:
            raise ProtocolError(f"address {address} is outside the pool {ref.pool}")
    return RequestAddress(
        ref,
        address,
        opts.get("RequestAddressType") == GATEWAY_REQUEST,
        str(opts.get(MAC_OPTION, "")),
    )


def release(body: Any, address: bool) -> tuple[PoolRef, str]:
    """``ReleasePool`` / ``ReleaseAddress``: (pool, address or "")."""
    b = _obj(body)
    ref = parse_pool_id(_str(b, "PoolID"))
    return ref, _str(b, "Address") if address else ""


# -- replies --------------------------------------------------------------------------


def activate() -> dict[str, Any]:
    return {"Implements": list(IMPLEMENTS)}


def capabilities(scope: str) -> dict[str, Any]:
    return {"Scope": scope, "ConnectivityScope": "global"}


def ipam_capabilities() -> dict[str, Any]:
    return {"RequiresMACAddress": False, "RequiresRequestReplay": False}


def address_spaces() -> dict[str, Any]:
    return {"LocalDefaultAddressSpace": LOCAL_SPACE, "GlobalDefaultAddressSpace": GLOBAL_SPACE}


def pool_reply(pool_id: str, pool: IPv4Network | IPv6Network) -> dict[str, Any]:
    return {"PoolID": pool_id, "Pool": str(pool), "Data": {}}


def address_reply(
    ip: IPv4Address | IPv6Address | str, pool: IPv4Network | IPv6Network
) -> dict[str, Any]:
    return {"Address": f"{ip}/{pool.prefixlen}", "Data": {}}


def create_endpoint_reply(
    request_mac: str, mac: str, address6: IPv6Interface | None = None
) -> dict[str, Any]:
    """Docker refuses a MAC or an address from the driver when the request already had one:
    ``address6`` is the IPv6 address to give only when the request had none."""
    iface: dict[str, Any] = {} if request_mac else {"MacAddress": mac}
    if address6 is not None:
        iface["AddressIPv6"] = str(address6)
    return {"Interface": iface} if iface else {}


def join_reply(src_name: str, gateway: str | None, gateway6: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "InterfaceName": {"SrcName": src_name, "DstPrefix": "eth"},
        "DisableGatewayService": False,
    }
    if gateway:
        out["Gateway"] = gateway
    if gateway6:
        out["GatewayIPv6"] = gateway6
    return out


# -- which container is starting (pure) ----------------------------------------------


@dataclass(frozen=True)
class Starting:
    """A container being connected to a network now: its name and its labels (as the
    engine lists them: the container's own ``--label`` and its image's)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)


def _starting(
    containers: list[dict[str, Any]], network: str, ip: IPv4Address | None
) -> list[Starting]:
    """The containers being connected to ``network`` now (see ``pick_container``)."""
    found = []
    for c in containers:
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        cfg = nets.get(network)
        if not isinstance(cfg, dict) or cfg.get("EndpointID"):
            continue
        asked = ((cfg.get("IPAMConfig") or {}).get("IPv4Address")) or None
        if (str(ip) if ip else None) != asked:
            continue
        names = c.get("Names") or []
        if names:
            labels = c.get("Labels")
            found.append(
                Starting(
                    str(names[0]).lstrip("/"), dict(labels) if isinstance(labels, dict) else {}
                )
            )
    return found


def pick_starting(
    containers: list[dict[str, Any]], network: str, ip: IPv4Address | None
) -> Starting | None:
    """The one container that is being connected to ``network`` now, or None.

    ``containers`` is the engine's ``GET /containers/json?all=1``. A candidate names the
    network in its settings without an endpoint there yet; with ``ip``, it must have asked
    for that address (``--ip``), without, it must not have asked for any. None when there is
    no candidate or more than one (several containers starting at once on one network).
    """
    found = _starting(containers, network, ip)
    return found[0] if len(found) == 1 else None


def pick_container(
    containers: list[dict[str, Any]], network: str, ip: IPv4Address | None
) -> str | None:
    """The name of the container ``pick_starting`` finds, or None."""
    got = pick_starting(containers, network, ip)
    return got.name if got else None


def endpoint_labels(container: str, labels: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The endpoint labels of a container's Docker labels, and the keys left out.

    Docker labels are free text (images carry ``org.opencontainers.image.source=https://...``);
    endpoint labels have Kubernetes' syntax (``vxcommon.labels``). A label that is not a
    valid endpoint label is left out (and named, for the log): no policy selector can name
    it, so leaving it out changes what no policy selects. More than ``LABELS_MAX`` valid
    labels is an error (the start is refused): dropping some could leave a container a
    policy should select unselected, that is open."""
    kept: dict[str, str] = {}
    skipped: list[str] = []
    for key, value in sorted(labels.items()):
        if label_error(key, value) is None:
            kept[key] = value
        else:
            skipped.append(str(key))
    if len(kept) > LABELS_MAX:
        raise ProtocolError(
            f"container {container} has {len(kept)} labels: an endpoint takes at most {LABELS_MAX}"
        )
    return kept, skipped


def pick_network(
    containers: list[dict[str, Any]], networks: list[str], ip: IPv4Address | None
) -> str | None:
    """Which of ``networks`` (Docker network names) a container is being connected to now:
    the only one with a starting container (as ``pick_container``), else None."""
    busy = [n for n in networks if _starting(containers, n, ip)]
    return busy[0] if len(busy) == 1 else None
