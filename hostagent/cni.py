"""The ``vxplane-cni`` plugin: CNI 1.1 verbs translated into calls on the host's agent.

A runtime executes the plugin with ``CNI_*`` environment variables and the network
configuration on stdin (CNI spec 1.1, ``containernetworking/cni`` SPEC.md). The plugin keeps
no state of its own: every verb becomes one call on the local agent's unix socket
(``/v1/cni/*``, see ``hostagent/cni_routes.py``), which does the plumbing and answers with
the endpoint, or with an error already carrying its CNI code.

Verbs: ``ADD`` (returns only once the controller confirmed the endpoint's flows), ``DEL``
(idempotent; works without ``CNI_NETNS``; releases the address unless ``keepAddress``),
``CHECK`` (needs ``prevResult``; compares it with what is plugged), ``GC`` (removes this
configuration's attachments missing from ``cni.dev/valid-attachments``), ``STATUS`` (agent
registered, bridge up, network known: else code 50) and ``VERSION``.

Configuration fields besides the standard ones: ``network`` (the vxplane network, default
``name``), ``agentSocket`` (else env ``VXPLANE_AGENT_SOCKET``, else
``/run/vxplane/agent.sock``), ``keepAddress`` (DEL keeps the name's reservation, so the same
pod gets the same address on any host; default false). Capabilities in ``runtimeConfig``:
``ips`` (one IPv4, ``a.b.c.d[/len]``), ``endpointName`` and ``portMappings``
(``[{hostPort, containerPort, protocol}]``: published on the egress address of the pod's
host on ADD, all or none, and unpublished on DEL; the network must be external).
``args.cni.labels`` (CNI conventions, ``[{"key", "value"}]``, the pod's labels) replace the
endpoint's labels in the ADD's one create-and-bind request, so a policy selects the pod
from its first ready moment; without them the endpoint keeps its labels.
``CNI_ARGS`` keys: ``IP``, ``VXPLANE_ENDPOINT``, ``K8S_POD_NAMESPACE``/``K8S_POD_NAME``,
``IgnoreUnknown``.

Dual stack: on a network created with ``subnet6`` the ADD result's ``ips`` holds the IPv4
and the IPv6 address (the prefix plus the IPv4 address as the low 32 bits, so the same name
has the same IPv6 address on any host), both on the one interface, with ``routes`` to
``0.0.0.0/0`` and ``::/0``; CHECK compares both. Nothing in the configuration says so: the
network in the controller does.

Endpoint name: ``endpointName`` / ``VXPLANE_ENDPOINT`` if given, else
``K8S_POD_NAMESPACE/K8S_POD_NAME``, else ``CNI_CONTAINERID``; ``:<CNI_IFNAME>`` is appended
when the interface is not ``eth0``.

Errors are the spec's error object on stdout with a non-zero exit: 1 incompatible version,
2 unsupported field, 3 unknown container (namespace gone), 4 bad environment variable,
5 I/O failure (local OVS/netlink), 6 undecodable input, 7 invalid configuration (also an
unknown network or a bad requested address), 11 try again later (agent or controller
unreachable, flows not confirmed in time), 50 not available (STATUS), and vxplane's own
100 address conflict, 101 attachment not as expected (CHECK).

With ``VXPLANE_CNI_TIMING`` set, a call that reached the agent also writes one JSON line to
stderr: ``request_seconds`` (connect to reply), ``agent_seconds`` (the agent's own handling
time from its ``X-Vxplane-Agent-Seconds`` reply header, null if it sent none), and the
``time.monotonic()`` clock (system-wide) when ``main`` started and when the reply was read,
``started_at`` and ``replied_at``, so a caller can split the exec into its parts.

Exec cost: a runtime pays interpreter start, imports and one request on every call, so this
module imports ``json``, ``os``, ``re``, ``sys``, ``time`` and ``vxcommon.names`` (only
``re``), and ``socket`` once it calls the agent. Measured with ``python -X importtime``
(Python 3.11, warm cache): ``http.client`` would cost 16 ms (``email.parser`` 9, ``ssl`` 5),
httpx 75 ms, ``dataclasses`` 6 ms, ``typing`` 2.5 ms, ``ipaddress`` 0.8 ms; so the agent is
spoken to with the few lines of HTTP/1.1 below (one request per connection), the types are
for mypy only, and ``ipaddress`` is imported where an address is checked. ``python -m
bench.cni`` measures whole execs.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from vxcommon.labels import LABELS_MAX, label_error
from vxcommon.names import endpoint_name_error, ifname_error, name_error
from vxcommon.retry import BUSY_RETRIES, advised_delay

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, BinaryIO, NoReturn, Protocol, TextIO

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
DEFAULT_SOCKET = "/run/vxplane/agent.sock"
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN = 11
NOT_AVAILABLE = 50
ADDRESS_CONFLICT = 100
NOT_AS_EXPECTED = 101

# The spec's rule for configuration names and container ids (vxplane's own names, of the
# network, endpoint and interface, follow vxcommon.names like everywhere else).
CNI_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
KNOWN_ARGS = {
    "IgnoreUnknown",
    "IP",
    "VXPLANE_ENDPOINT",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
}


class CniError(Exception):
    """A failure reported to the runtime as the spec's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def _vt(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


class Invocation:
    """One validated plugin call: the environment and configuration, parsed."""

    __slots__ = (
        "command", "version", "config", "container_id", "netns", "ifname", "network",
        "endpoint", "ip", "agent_socket", "keep_address", "valid_attachments", "ports",
        "labels",
    )  # fmt: skip

    def __init__(
        self,
        command: str,
        version: str,
        config: dict[str, Any] | None = None,
        container_id: str = "",
        netns: str = "",
        ifname: str = "",
        network: str = "",
        endpoint: str = "",
        ip: str | None = None,
        agent_socket: str = DEFAULT_SOCKET,
        keep_address: bool = False,
        valid_attachments: tuple[tuple[str, str], ...] = (),
        ports: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.version = version
        self.config = config if config is not None else {}
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.network = network
        self.endpoint = endpoint
        self.ip = ip
        self.agent_socket = agent_socket
        self.keep_address = keep_address
        self.valid_attachments = valid_attachments
        self.ports = ports or []
        self.labels = labels

    @property
    def body(self) -> dict[str, Any]:
        """The agent request of an ADD/DEL/CHECK."""
        body: dict[str, Any] = {
            "name": self.endpoint,
            "network": self.network,
            "ifname": self.ifname,
            "container_id": self.container_id,
            "config": self.config["name"],
        }
        if self.netns:
            body["netns"] = self.netns
        if self.ip is not None:
            body["ip"] = self.ip
        if self.ports:
            body["ports"] = self.ports
        if self.labels is not None:
            body["labels"] = self.labels
        return body


# -- parsing (pure) ---------------------------------------------------------------------


def parse_cni_args(raw: str) -> dict[str, str]:
    """``CNI_ARGS`` (``K=V;K2=V2``) as a dict; CniError 4 if malformed or unknown keys."""
    args: dict[str, str] = {}
    for pair in filter(None, raw.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENV, f"CNI_ARGS: malformed pair {pair!r} (want KEY=VALUE)")
        args[key] = value
    if args.get("IgnoreUnknown", "").lower() not in ("1", "true"):
        unknown = sorted(set(args) - KNOWN_ARGS)
        if unknown:
            raise CniError(INVALID_ENV, f"CNI_ARGS: unknown keys {', '.join(unknown)}")
    return args


def _requested_ip(config: dict[str, Any], args: dict[str, str]) -> str | None:
    """The one address asked for: runtimeConfig ``ips`` > ``args.cni.ips`` > CNI_ARGS ``IP``."""
    runtime = config.get("runtimeConfig") or {}
    cni_args = (config.get("args") or {}).get("cni") or {}
    if not isinstance(runtime, dict) or not isinstance(cni_args, dict):
        raise CniError(INVALID_CONFIG, "runtimeConfig and args.cni must be objects")
    if runtime.get("ips") is not None:
        ips, where, code = runtime["ips"], "runtimeConfig.ips", INVALID_CONFIG
    elif cni_args.get("ips") is not None:
        ips, where, code = cni_args["ips"], "args.cni.ips", INVALID_CONFIG
    elif args.get("IP"):
        ips, where, code = args["IP"].split(","), "CNI_ARGS IP", INVALID_ENV
    else:
        return None
    if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
        raise CniError(code, f"{where}: want a list of addresses")
    if not ips:
        return None
    six = (
        " (on a dual-stack network the IPv6 address follows from it: the network's subnet6 "
        "plus the IPv4 address as the low 32 bits)"
    )
    if len(ips) > 1:
        raise CniError(code, f"{where}: ask for the one IPv4 address{six}, got {ips}")
    from ipaddress import IPv4Interface, ip_interface

    try:
        addr = ip_interface(ips[0].strip())
    except ValueError as exc:
        raise CniError(code, f"{where}: {ips[0]!r} is not an address") from exc
    if not isinstance(addr, IPv4Interface):
        raise CniError(code, f"{where}: {ips[0]!r}: ask for the IPv4 address{six}")
    return str(addr.ip)


def _labels(config: dict[str, Any]) -> dict[str, str] | None:
    """``args.cni.labels`` (CNI conventions: ``[{"key", "value"}]``) as the endpoint's labels,
    which they replace; None when not given (the endpoint keeps its labels). Checked with the
    controller's rules (Kubernetes syntax, at most 64), so a bad one fails the ADD (code 7)
    before anything is made."""
    cni_args = (config.get("args") or {}).get("cni") or {}
    if not isinstance(cni_args, dict):
        raise CniError(INVALID_CONFIG, "args.cni must be an object")
    raw = cni_args.get("labels")
    if raw is None:
        return None
    where = "args.cni.labels"
    if not isinstance(raw, list):
        raise CniError(INVALID_CONFIG, f'{where}: want a list of {{"key", "value"}} objects')
    out: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"key", "value"} or "key" not in item:
            raise CniError(
                INVALID_CONFIG, f'{where}: want {{"key", "value"}} objects, got {item!r}'
            )
        key, value = item["key"], item.get("value", "")
        error = label_error(key, value)
        if error:
            raise CniError(INVALID_CONFIG, f"{where}: {error}")
        if key in out and out[key] != value:
            raise CniError(INVALID_CONFIG, f"{where}: key {key!r} is given twice")
        out[key] = value
    if len(out) > LABELS_MAX:
        raise CniError(INVALID_CONFIG, f"{where}: {len(out)} labels, at most {LABELS_MAX}")
    return out


def _port_mappings(config: dict[str, Any]) -> list[dict[str, Any]]:
    """runtimeConfig ``portMappings`` (``[{hostPort, containerPort, protocol?, hostIP?}]``,
    the CNI ``portMappings`` capability) as the agent's ``[{host_port, port, proto}]``."""
    runtime = config.get("runtimeConfig") or {}
    raw = runtime.get("portMappings") if isinstance(runtime, dict) else None
    if raw is None:
        return []
    where = "runtimeConfig.portMappings"
    if not isinstance(raw, list):
        raise CniError(INVALID_CONFIG, f"{where}: want a list")
    out = []
    for m in raw:
        if not isinstance(m, dict):
            raise CniError(INVALID_CONFIG, f"{where}: want objects, got {m!r}")
        host, port = m.get("hostPort"), m.get("containerPort")
        proto = str(m.get("protocol") or "tcp").lower()
        for key, value, top in (("hostPort", host, 32767), ("containerPort", port, 65535)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                why = " (32768 and up are the gateway's source ports)" if top == 32767 else ""
                raise CniError(INVALID_CONFIG, f"{where}: {key} {value!r}: want 1..{top}{why}")
        if proto not in ("tcp", "udp"):
            raise CniError(INVALID_CONFIG, f"{where}: protocol {proto!r}: want tcp or udp")
        if m.get("hostIP") not in (None, "", "0.0.0.0", "::"):
            raise CniError(
                INVALID_CONFIG,
                f"{where}: hostIP {m['hostIP']!r}: vxplane publishes on the egress address of "
                "the pod's host; leave it out",
            )
        item = {"host_port": host, "port": port, "proto": proto}
        if item not in out:
            out.append(item)
    return out


def _endpoint_name(config: dict[str, Any], args: dict[str, str], cid: str, ifname: str) -> str:
    runtime = config.get("runtimeConfig") or {}
    if runtime.get("endpointName") is not None:
        name, code, where = runtime["endpointName"], INVALID_CONFIG, "runtimeConfig.endpointName"
    elif args.get("VXPLANE_ENDPOINT"):
        name, code, where = args["VXPLANE_ENDPOINT"], INVALID_ENV, "CNI_ARGS VXPLANE_ENDPOINT"
    elif args.get("K8S_POD_NAMESPACE") and args.get("K8S_POD_NAME"):
        name = f"{args['K8S_POD_NAMESPACE']}/{args['K8S_POD_NAME']}"
        code, where = INVALID_ENV, "CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME"
    else:
        name, code, where = cid, INVALID_ENV, "CNI_CONTAINERID"
    if not isinstance(name, str):
        raise CniError(code, f"{where}: want a string")
    if ifname and ifname != "eth0":
        name = f"{name}:{ifname}"
    error = endpoint_name_error(name)
    if error:
        raise CniError(code, f"{where}: {error}")
    return name


def _decode(stdin: bytes) -> dict[str, Any]:
    try:
        config = json.loads(stdin.decode() or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CniError(DECODE_FAILURE, "network configuration is not valid JSON", str(exc)) from exc
    if not isinstance(config, dict):
        raise CniError(DECODE_FAILURE, "network configuration must be a JSON object")
    return config


def parse(env: Mapping[str, str], stdin: bytes) -> Invocation:
    """Validate the environment and configuration of one call (no side effects)."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    if command == "VERSION":
        reply = LATEST
        if stdin.strip():
            requested = _decode(stdin).get("cniVersion")
            if isinstance(requested, str) and requested in SUPPORTED_VERSIONS:
                reply = requested
        return Invocation(command=command, version=reply)
    config = _decode(stdin)
    version = config.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "network configuration has no cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version} is not supported",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    minimum = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}.get(command)
    if minimum and _vt(version) < _vt(minimum):
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version} does not allow {command}")
    name = config.get("name")
    if not isinstance(name, str) or not CNI_NAME_RE.fullmatch(name):
        raise CniError(INVALID_CONFIG, f"network configuration name {name!r} is missing or invalid")
    if not isinstance(config.get("type"), str) or not config["type"]:
        raise CniError(INVALID_CONFIG, "network configuration has no type")
    if config.get("ipMasq"):
        raise CniError(UNSUPPORTED_FIELD, "unsupported field ipMasq=true: vxplane has no SNAT yet")
    ipam = config.get("ipam")
    if isinstance(ipam, dict) and ipam.get("type"):
        raise CniError(
            UNSUPPORTED_FIELD,
            f"unsupported field ipam.type={ipam['type']}: vxplane allocates addresses itself",
        )
    if "prevResult" in config and not isinstance(config["prevResult"], dict):
        raise CniError(INVALID_CONFIG, "prevResult must be a result object")
    network = config.get("network", name)
    error = name_error(network)
    if error:
        raise CniError(INVALID_CONFIG, f"network: {error}")
    socket = config.get("agentSocket") or env.get("VXPLANE_AGENT_SOCKET") or DEFAULT_SOCKET
    keep = config.get("keepAddress", False)
    if not isinstance(socket, str) or not isinstance(keep, bool):
        raise CniError(INVALID_CONFIG, "agentSocket must be a string, keepAddress a boolean")
    common: dict[str, Any] = {
        "command": command,
        "version": version,
        "config": config,
        "network": network,
        "agent_socket": socket,
        "keep_address": keep,
    }
    if command == "STATUS":
        return Invocation(**common)
    if command == "GC":
        return Invocation(**common, valid_attachments=_valid_attachments(config))
    cid = env.get("CNI_CONTAINERID", "")
    if not CNI_NAME_RE.fullmatch(cid):
        raise CniError(INVALID_ENV, f"CNI_CONTAINERID {cid!r} is missing or invalid")
    ifname = env.get("CNI_IFNAME", "")
    error = ifname_error(ifname)
    if error:
        raise CniError(INVALID_ENV, f"CNI_IFNAME: {error}")
    netns = env.get("CNI_NETNS", "")
    if command != "DEL" and not netns:
        raise CniError(INVALID_ENV, f"CNI_NETNS is required for {command}")
    if netns and not netns.startswith("/"):
        raise CniError(INVALID_ENV, f"CNI_NETNS {netns!r} must be an absolute path")
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    if command == "CHECK" and not isinstance(config.get("prevResult"), dict):
        raise CniError(INVALID_CONFIG, "CHECK needs the prevResult of the ADD")
    return Invocation(
        **common,
        container_id=cid,
        netns=netns,
        ifname=ifname,
        endpoint=_endpoint_name(config, args, cid, ifname),
        ip=_requested_ip(config, args) if command == "ADD" else None,
        ports=_port_mappings(config) if command in ("ADD", "DEL") else None,
        labels=_labels(config) if command == "ADD" else None,
    )


def _valid_attachments(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    valid = config.get("cni.dev/valid-attachments")
    if not isinstance(valid, list):
        raise CniError(INVALID_CONFIG, "GC needs the list cni.dev/valid-attachments")
    out = []
    for item in valid:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str):
            raise CniError(INVALID_CONFIG, f"cni.dev/valid-attachments: bad entry {item!r}")
        out.append((item["containerID"], str(item.get("ifname", ""))))
    return tuple(out)


# -- results (pure) ---------------------------------------------------------------------


def result(inv: Invocation, answer: dict[str, Any]) -> dict[str, Any]:
    """The ADD result for the agent's ``answer`` (``{"endpoint", "mtu"}``), chained onto
    ``prevResult`` when there is one. On a dual-stack network (the endpoint has ``ip6``)
    ``ips`` holds both addresses on the one interface and ``routes`` both defaults
    (``0.0.0.0/0`` and ``::/0``); before CNI 1.0 each IP says its ``version``."""
    ep = answer["endpoint"]
    v = _vt(inv.version)
    prev: dict[str, Any] = inv.config.get("prevResult") or {}
    interfaces = list(prev.get("interfaces") or [])
    iface: dict[str, Any] = {"name": inv.ifname, "mac": ep["mac"], "sandbox": inv.netns}
    if v >= (1, 1, 0):
        iface["mtu"] = int(answer["mtu"])
    interfaces.append(iface)
    ips = list(prev.get("ips") or [])
    routes = list(prev.get("routes") or [])
    families = [("4", "ip", "prefixlen", "gateway", "0.0.0.0/0")]
    if ep.get("ip6"):  # dual stack: the IPv6 address follows the IPv4 one
        families.append(("6", "ip6", "prefixlen6", "gateway6", "::/0"))
    for version, addr, plen, gw, default in families:
        ip: dict[str, Any] = {
            "address": f"{ep[addr]}/{ep[plen]}",
            "interface": len(interfaces) - 1,
        }
        if v < (1, 0, 0):
            ip["version"] = version
        if ep.get(gw):
            ip["gateway"] = ep[gw]
            routes.append({"dst": default, "gw": ep[gw]})
        ips.append(ip)
    out: dict[str, Any] = {
        "cniVersion": inv.version,
        "interfaces": interfaces,
        "ips": ips,
    }
    if routes:
        out["routes"] = routes
    dns = prev.get("dns") or inv.config.get("dns")
    if dns:
        out["dns"] = dns
    return out


def compare_prev_result(inv: Invocation, answer: dict[str, Any]) -> None:
    """CHECK: CniError 101 unless ``prevResult`` describes what the agent found plugged (both
    addresses on a dual-stack network)."""
    from ipaddress import IPv4Interface, IPv6Interface, ip_interface

    ep = answer["endpoint"]
    prev = inv.config["prevResult"]
    ifaces = prev.get("interfaces") or []
    found = [
        i
        for i, it in enumerate(ifaces)
        if isinstance(it, dict) and it.get("name") == inv.ifname and it.get("sandbox") == inv.netns
    ]
    if not found:
        raise CniError(NOT_AS_EXPECTED, f"prevResult has no interface {inv.ifname} in {inv.netns}")
    if str(ifaces[found[0]].get("mac", "")).lower() != ep["mac"].lower():
        raise CniError(
            NOT_AS_EXPECTED,
            f"{inv.ifname} has MAC {ep['mac']}, prevResult says {ifaces[found[0]].get('mac')}",
        )
    wanted: list[IPv4Interface | IPv6Interface] = [IPv4Interface(f"{ep['ip']}/{ep['prefixlen']}")]
    if ep.get("ip6"):
        wanted.append(IPv6Interface(f"{ep['ip6']}/{ep['prefixlen6']}"))
    ips = [
        ip_interface(i["address"])
        for i in prev.get("ips") or []
        if isinstance(i, dict) and i.get("interface") == found[0] and "address" in i
    ]
    for want in wanted:
        if want not in ips:
            raise CniError(
                NOT_AS_EXPECTED,
                f"{inv.ifname} holds {want}, prevResult says {[str(i) for i in ips]}",
            )


def error_doc(version: str, err: CniError) -> dict[str, Any]:
    """The spec's error object."""
    doc: dict[str, Any] = {"cniVersion": version, "code": err.code, "msg": err.msg}
    if err.details:
        doc["details"] = err.details
    return doc


# -- running ----------------------------------------------------------------------------


if TYPE_CHECKING:

    class AgentPort(Protocol):
        """What the plugin needs of the agent: one call per verb, CniError on failure."""

        def call(self, verb: str, body: dict[str, Any]) -> dict[str, Any]: ...


def execute(inv: Invocation, agent: AgentPort) -> dict[str, Any] | None:
    """Carry out a parsed call; return the JSON to print (None: print nothing)."""
    if inv.command == "VERSION":
        return {"cniVersion": inv.version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    if inv.command == "STATUS":
        try:
            agent.call("status", {"network": inv.network})
        except CniError as err:
            if err.code == TRY_AGAIN:  # the agent is not there: not available
                raise CniError(NOT_AVAILABLE, err.msg, err.details) from err
            raise
        return None
    if inv.command == "GC":
        valid = [{"container_id": c, "ifname": i} for c, i in inv.valid_attachments]
        agent.call(
            "gc", {"config": inv.config["name"], "valid": valid, "release": not inv.keep_address}
        )
        return None
    if inv.command in ("ADD", "CHECK") and not os.path.exists(inv.netns):
        raise CniError(UNKNOWN_CONTAINER, f"network namespace {inv.netns} does not exist")
    if inv.command == "ADD":
        return result(inv, agent.call("add", inv.body))
    if inv.command == "DEL":
        agent.call("del", {**inv.body, "release": not inv.keep_address})
        return None
    compare_prev_result(inv, agent.call("check", inv.body))
    return None


def _version_for_errors(stdin: bytes) -> str:
    try:
        version = json.loads(stdin.decode()).get("cniVersion")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return LATEST
    return version if isinstance(version, str) and version in SUPPORTED_VERSIONS else LATEST


def run(
    env: Mapping[str, str], stdin: bytes, connect: Callable[[str], AgentPort]
) -> tuple[int, str]:
    """One plugin execution: (exit code, stdout). ``connect(socket_path)`` -> AgentPort."""
    try:
        inv = parse(env, stdin)
        agent: Any = None if inv.command == "VERSION" else connect(inv.agent_socket)
        out = execute(inv, agent)
    except CniError as err:
        return 1, json.dumps(error_doc(_version_for_errors(stdin), err))
    return 0, json.dumps(out) if out is not None else ""


class SocketAgent:
    """AgentPort over the agent's unix socket (``POST /v1/cni/<verb>``).

    After a call, ``agent_seconds`` is the handling time the agent reported in its
    ``X-Vxplane-Agent-Seconds`` header (None if it sent none), ``request_seconds`` the
    time from connect to the last byte of the reply, and ``replied_at`` that moment.
    """

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.agent_seconds: float | None = None
        self.request_seconds: float | None = None
        self.replied_at: float | None = None
        self.busy_waits: list[float] = []  # the Retry-After delays honoured so far
        self.sleep = time.sleep

    def call(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body``; map a failure to the CniError the agent named (or a fitting one).

        A 503 with ``Retry-After`` (the controller's write path was saturated and the agent's
        own retries ran out) is sent again after the advised delay, at most ``BUSY_RETRIES``
        times; the verbs are idempotent, and nothing of a refused write was made."""
        for _ in range(BUSY_RETRIES):
            status, headers, payload = self._post(verb, body)
            delay = advised_delay(status, headers.get("retry-after"))
            if delay is None:
                break
            self.busy_waits.append(delay)
            self.sleep(delay)
        else:
            status, headers, payload = self._post(verb, body)
        return self._result(status, headers, payload)

    def _post(self, verb: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        t0 = time.monotonic()
        try:
            status, headers, payload = post_unix(
                self.socket_path, f"/v1/cni/{verb}", json.dumps(body).encode(), self.timeout
            )
        except FileNotFoundError as exc:
            raise CniError(
                TRY_AGAIN, f"vxplane agent socket {self.socket_path} does not exist"
            ) from exc
        except (OSError, ValueError) as exc:  # refused, timed out, not HTTP, cut short
            raise CniError(TRY_AGAIN, f"vxplane agent at {self.socket_path}: {exc!r}") from exc
        self.replied_at = time.monotonic()
        self.request_seconds = self.replied_at - t0
        try:
            self.agent_seconds = float(headers["x-vxplane-agent-seconds"])
        except (KeyError, ValueError):
            self.agent_seconds = None
        return status, headers, payload

    def _result(self, status: int, headers: dict[str, str], payload: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = {"detail": payload[:500].decode(errors="replace")}
        if status < 400:
            return doc if isinstance(doc, dict) else {}
        detail = str(doc.get("detail", "")) if isinstance(doc, dict) else str(doc)
        code = doc.get("cni_code") if isinstance(doc, dict) else None
        if not isinstance(code, int):
            code = INVALID_CONFIG if status < 500 else TRY_AGAIN
        raise CniError(code, detail or f"agent answered {status}")


# -- HTTP/1.1 over a unix socket (http.client would cost 16 ms of imports per exec) -----


def post_unix(
    socket_path: str, path: str, body: bytes, timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """POST a JSON ``body`` to ``path`` on the HTTP server at ``socket_path``; return
    (status, headers with lower-case names, body). OSError if the socket fails, ValueError
    if the reply is not HTTP or is cut short."""
    import socket

    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(head.encode() + body)
        with sock.makefile("rb") as reply:
            return read_response(reply)


MAX_LINE = 65536


def read_response(reply: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """Parse one HTTP/1.x response (RFC 9112): status line, headers, and a body framed by
    ``Transfer-Encoding: chunked``, ``Content-Length`` or the end of the connection."""
    status_line = reply.readline(MAX_LINE)
    if not status_line:
        raise ValueError("connection closed without a reply")
    proto, _, rest = status_line.decode("latin-1").partition(" ")
    code = rest[:3]
    if not proto.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"not an HTTP/1 reply: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        line = reply.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise ValueError("reply ended inside its headers")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return int(code), headers, _read_chunked(reply)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length < 0:
            raise ValueError(f"Content-Length {length}")
        payload = reply.read(length)
        if len(payload) < length:
            raise ValueError(f"reply cut short: {len(payload)} of {length} bytes")
        return int(code), headers, payload
    return int(code), headers, reply.read()


def _read_chunked(reply: BinaryIO) -> bytes:
    chunks = []
    while True:
        size = int(reply.readline(MAX_LINE).split(b";")[0], 16)  # ValueError if not hex
        if size == 0:
            break
        chunk = reply.read(size)
        if len(chunk) < size or reply.readline(MAX_LINE).strip():
            raise ValueError("chunked reply cut short")
        chunks.append(chunk)
    while reply.readline(MAX_LINE).strip():  # trailer fields: not used
        pass
    return b"".join(chunks)


def invoke(environ: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> int:
    """One exec of the plugin on the given streams; returns the exit code."""
    started_at = time.monotonic()
    try:
        raw = stdin.read()
    except OSError as exc:
        stdout.write(json.dumps(error_doc(LATEST, CniError(IO_FAILURE, str(exc)))))
        return 1
    agents: list[SocketAgent] = []

    def connect(socket_path: str) -> SocketAgent:
        agents.append(SocketAgent(socket_path))
        return agents[-1]

    rc, out = run(environ, raw, connect)
    if out:
        stdout.write(out + "\n")
    if agents and environ.get("VXPLANE_CNI_TIMING"):
        agent = agents[0]
        timing = {
            "request_seconds": agent.request_seconds,
            "agent_seconds": agent.agent_seconds,
            "started_at": started_at,
            "replied_at": agent.replied_at,
        }
        stderr.write(json.dumps(timing) + "\n")
    return rc


def main() -> NoReturn:
    """Entry point of the ``vxplane-cni`` executable. It ends with ``os._exit``: there is
    nothing to clean up, and the interpreter's teardown would add 5 ms to every exec."""
    rc = invoke(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    main()
