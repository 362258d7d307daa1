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
``ips`` (one IPv4, ``a.b.c.d[/len]``) and ``endpointName``. ``CNI_ARGS`` keys: ``IP``,
``VXPLANE_ENDPOINT``, ``K8S_POD_NAMESPACE``/``K8S_POD_NAME``, ``IgnoreUnknown``.

Endpoint name: ``endpointName`` / ``VXPLANE_ENDPOINT`` if given, else
``K8S_POD_NAMESPACE/K8S_POD_NAME``, else ``CNI_CONTAINERID``; ``:<CNI_IFNAME>`` is appended
when the interface is not ``eth0``.

Errors are the spec's error object on stdout with a non-zero exit: 1 incompatible version,
2 unsupported field, 3 unknown container (namespace gone), 4 bad environment variable,
5 I/O failure (local OVS/netlink), 6 undecodable input, 7 invalid configuration (also an
unknown network or a bad requested address), 11 try again later (agent or controller
unreachable, flows not confirmed in time), 50 not available (STATUS), and vxplane's own
100 address conflict, 101 attachment not as expected (CHECK).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, ip_interface
from typing import Any, Protocol

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

NET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VXNET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENDPOINT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,252}$")
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


@dataclass(frozen=True)
class Invocation:
    """One validated plugin call: the environment and configuration, parsed."""

    command: str
    version: str
    config: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    network: str = ""
    endpoint: str = ""
    ip: str | None = None
    agent_socket: str = DEFAULT_SOCKET
    keep_address: bool = False
    valid_attachments: tuple[tuple[str, str], ...] = ()

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


def _ifname_ok(name: str) -> bool:
    return (
        0 < len(name.encode()) <= 15
        and name not in (".", "..")
        and not any(c in name for c in "/:") and not any(c.isspace() for c in name)
    )  # fmt: skip


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
    if len(ips) > 1:
        raise CniError(code, f"{where}: a vxplane endpoint holds one IPv4 address, got {ips}")
    try:
        addr = ip_interface(ips[0].strip())
    except ValueError as exc:
        raise CniError(code, f"{where}: {ips[0]!r} is not an address") from exc
    if not isinstance(addr, IPv4Interface):
        raise CniError(code, f"{where}: {ips[0]!r}: only IPv4 is supported")
    return str(addr.ip)


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
    if not ENDPOINT_RE.match(name) or "//" in name or name.endswith("/"):
        raise CniError(code, f"{where}: endpoint name {name!r} is not valid")
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
    if not isinstance(name, str) or not NET_NAME_RE.match(name):
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
    if not isinstance(network, str) or not VXNET_RE.match(network):
        raise CniError(INVALID_CONFIG, f"network {network!r} is not a valid vxplane network name")
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
    if not CONTAINER_ID_RE.match(cid):
        raise CniError(INVALID_ENV, f"CNI_CONTAINERID {cid!r} is missing or invalid")
    ifname = env.get("CNI_IFNAME", "")
    if not _ifname_ok(ifname):
        raise CniError(INVALID_ENV, f"CNI_IFNAME {ifname!r} is missing or not an interface name")
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
    ``prevResult`` when there is one."""
    ep = answer["endpoint"]
    v = _vt(inv.version)
    prev: dict[str, Any] = inv.config.get("prevResult") or {}
    interfaces = list(prev.get("interfaces") or [])
    iface: dict[str, Any] = {"name": inv.ifname, "mac": ep["mac"], "sandbox": inv.netns}
    if v >= (1, 1, 0):
        iface["mtu"] = int(answer["mtu"])
    interfaces.append(iface)
    ip: dict[str, Any] = {
        "address": f"{ep['ip']}/{ep['prefixlen']}",
        "interface": len(interfaces) - 1,
    }
    if v < (1, 0, 0):
        ip["version"] = "4"
    routes = list(prev.get("routes") or [])
    if ep.get("gateway"):
        ip["gateway"] = ep["gateway"]
        routes.append({"dst": "0.0.0.0/0", "gw": ep["gateway"]})
    out: dict[str, Any] = {
        "cniVersion": inv.version,
        "interfaces": interfaces,
        "ips": [*(prev.get("ips") or []), ip],
    }
    if routes:
        out["routes"] = routes
    dns = prev.get("dns") or inv.config.get("dns")
    if dns:
        out["dns"] = dns
    return out


def compare_prev_result(inv: Invocation, answer: dict[str, Any]) -> None:
    """CHECK: CniError 101 unless ``prevResult`` describes what the agent found plugged."""
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
    want = IPv4Interface(f"{ep['ip']}/{ep['prefixlen']}")
    ips = [
        ip_interface(i["address"])
        for i in prev.get("ips") or []
        if isinstance(i, dict) and i.get("interface") == found[0] and "address" in i
    ]
    if want not in ips:
        raise CniError(
            NOT_AS_EXPECTED, f"{inv.ifname} holds {want}, prevResult says {[str(i) for i in ips]}"
        )


def error_doc(version: str, err: CniError) -> dict[str, Any]:
    """The spec's error object."""
    doc: dict[str, Any] = {"cniVersion": version, "code": err.code, "msg": err.msg}
    if err.details:
        doc["details"] = err.details
    return doc


# -- running ----------------------------------------------------------------------------


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


def run(env: Mapping[str, str], stdin: bytes, connect: Any) -> tuple[int, str]:
    """One plugin execution: (exit code, stdout). ``connect(socket_path)`` -> AgentPort."""
    try:
        inv = parse(env, stdin)
        agent: Any = None if inv.command == "VERSION" else connect(inv.agent_socket)
        out = execute(inv, agent)
    except CniError as err:
        return 1, json.dumps(error_doc(_version_for_errors(stdin), err))
    return 0, json.dumps(out) if out is not None else ""


class SocketAgent:
    """AgentPort over the agent's unix socket (``POST /v1/cni/<verb>``)."""

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body``; map a failure to the CniError the agent named (or a fitting one)."""
        import httpx

        if not os.path.exists(self.socket_path):
            raise CniError(TRY_AGAIN, f"vxplane agent socket {self.socket_path} does not exist")
        try:
            with httpx.Client(
                transport=httpx.HTTPTransport(uds=self.socket_path),
                base_url="http://agent",
                timeout=self.timeout,
            ) as http:
                resp = http.post(f"/v1/cni/{verb}", json=body)
        except httpx.HTTPError as exc:
            raise CniError(TRY_AGAIN, f"vxplane agent at {self.socket_path}: {exc!r}") from exc
        try:
            doc = resp.json()
        except ValueError:
            doc = {"detail": resp.text[:500]}
        if resp.status_code < 400:
            return doc if isinstance(doc, dict) else {}
        detail = str(doc.get("detail", "")) if isinstance(doc, dict) else str(doc)
        code = doc.get("cni_code") if isinstance(doc, dict) else None
        if not isinstance(code, int):
            code = INVALID_CONFIG if resp.status_code < 500 else TRY_AGAIN
        raise CniError(code, detail or f"agent answered {resp.status_code}")


def main() -> int:
    """Entry point of the ``vxplane-cni`` executable."""
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        sys.stdout.write(json.dumps(error_doc(LATEST, CniError(IO_FAILURE, str(exc)))))
        return 1
    rc, out = run(os.environ, stdin, SocketAgent)
    if out:
        sys.stdout.write(out + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
