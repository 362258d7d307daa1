"""PURE: "why can't A reach B": one packet through the controller's model of its switches.

``trace_model`` loads every host's desired flows (``pipeline.desired_flows``) into an in-memory
switch (``controller.oftable``), injects a packet from the source endpoint's port and follows
it table by table, and through the VXLAN tunnel host by host, to where it leaves or stops.
What it returns is data: each table visited (the flow that matched, by cookie, or none), each
tunnel hop, the verdict and the flow or table that decided, named when it is a policy
(``policy N ingress rule i`` allowed it, or the policies isolating the endpoint dropped it)
or port security (a source address that is not the endpoint's own). The packet as it
enters each host is kept too, so the real switches can be asked the same question
(``ofproto/trace``) and their answer compared with the model's (a difference means a bug
or a tampered switch).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

from controller import oftable, pipeline, pipeline6, policy
from controller.errors import Conflict, InvalidRequest, NotFound
from controller.flows import Flow
from controller.model import Endpoint, Network, Snapshot, mac_for_ip
from controller.oftable import Packet, Switch

Protocol = Literal["tcp", "udp", "icmp"]
Verdict = Literal["delivered", "dropped"]
IP_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
MAX_HOSTS_VISITED = 4
# Table numbers to names, from the pipeline's own constants (T_CLASSIFY -> "classify").
TABLE_NAMES = {
    value: name[2:].lower()
    for module in (pipeline, pipeline6)
    for name, value in vars(module).items()
    if name.startswith("T_") and isinstance(value, int)
}


@dataclass(frozen=True, slots=True)
class Step:
    """One table visit on one host: the flow that matched (``cookie`` None: none did)."""

    host: str
    table: int
    cookie: int | None
    priority: int | None = None
    match: str = ""
    actions: str = ""
    conj_id: int | None = None  # the conjunction the matching flow completes (policy rules)

    @property
    def table_name(self) -> str:
        return TABLE_NAMES.get(self.table, str(self.table))


@dataclass(frozen=True, slots=True)
class Entry:
    """The packet as it enters ``host``'s switch on ``in_port``."""

    host: str
    in_port: int
    packet: Packet


@dataclass(frozen=True, slots=True)
class ModelTrace:
    """What the model says happens to the packet."""

    verdict: Verdict
    reason: str
    steps: tuple[Step, ...]
    hops: tuple[tuple[str, str, int], ...]  # tunnel hops: (from host, to host, VNI)
    entries: tuple[Entry, ...]
    delivered: tuple[tuple[str, int], ...] = ()  # (host, port) where it left to a container
    decided_by: Step | None = None  # the flow (or table miss) that decided
    policy: tuple[str, ...] = ()  # what each policy stage on the path said, in order


@dataclass(frozen=True, slots=True)
class Probe:
    """The packet to trace: from ``src`` to ``dst_ip`` (``dst`` when it is an endpoint)."""

    network: Network
    src: Endpoint
    dst_ip: IPv4Address | IPv6Address
    dst: Endpoint | None
    protocol: Protocol
    port: int | None
    packet: Packet = field(default_factory=dict)


def resolve(
    snap: Snapshot,
    network: str,
    src: str,
    dst: str,
    protocol: Protocol,
    port: int | None,
    src_ip: str | None = None,
) -> Probe:
    """Check the question and build its packet: SRC and DST are endpoint names or addresses
    of ``network`` (DST may be any address). An IPv6 address on either side (of a dual-stack
    network) traces IPv6 from the source's ip6. ``src_ip``: send from SRC's port with this
    source address (of the traced family) instead of its own (what port security is for).
    ``NotFound``, ``InvalidRequest`` or ``Conflict`` (the source is bound nowhere: nothing to
    send from) otherwise."""
    net = snap.networks.get(network)
    if net is None:
        raise NotFound(f"no network {network!r}")
    if protocol == "icmp" and port is not None:
        raise InvalidRequest("port: ICMP has no ports")
    if protocol != "icmp" and port is None:
        raise InvalidRequest(f"port: {protocol} needs a destination port")
    source = _endpoint(snap, net, src)
    if source is None:
        raise NotFound(f"no endpoint {src!r} in network {network!r} (a name or an address)")
    if source.host is None or source.ofport is None:
        raise Conflict(f"endpoint {source.name!r} is bound to no host: nothing sends from it")
    six = ":" in src or ":" in dst
    if six and net.subnet6 is None:
        raise InvalidRequest(f"network {network!r} has no IPv6 subnet (subnet6)")
    target = _endpoint(snap, net, dst)
    dst_ip: IPv4Address | IPv6Address
    if target is not None:
        dst_ip = target.ip if not six else _ip6(net, target.ip)
    else:
        try:
            dst_ip = ip_address(dst)
        except ValueError:
            raise NotFound(
                f"no endpoint {dst!r} in network {network!r}, and it is not an IPv4 address"
            ) from None
    if isinstance(dst_ip, IPv6Address):
        low = IPv4Address(int(dst_ip) & 0xFFFFFFFF)
        on_link = _ip6(net, low) == dst_ip and low in net.subnet
        eth_dst = mac_for_ip(low if on_link else net.gateway)
        sent6 = _source_address(src_ip, IPv6Address) or _ip6(net, source.ip)
        packet = oftable.ipv6_packet(source.mac, str(sent6), str(dst_ip), eth_dst)
    else:
        eth_dst = mac_for_ip(dst_ip if dst_ip in net.subnet else net.gateway)
        sent4 = _source_address(src_ip, IPv4Address) or source.ip
        packet = oftable.ipv4_packet(source.mac, str(sent4), str(dst_ip), eth_dst)
    _add_l4(packet, protocol, port)
    return Probe(net, source, dst_ip, target, protocol, port, packet)


def _ip6(net: Network, ip: IPv4Address) -> IPv6Address:
    six = net.ip6(ip)
    assert six is not None
    return six


def _source_address(
    given: str | None, family: type[IPv4Address] | type[IPv6Address]
) -> IPv4Address | IPv6Address | None:
    """``src_ip`` as an address of the traced ``family`` (None when not given)."""
    if given is None:
        return None
    try:
        return family(given)
    except ValueError:
        raise InvalidRequest(
            f"src_ip: {given!r} is not an IPv{family.version} address (the traced family)"
        ) from None


def _endpoint(snap: Snapshot, net: Network, key: str) -> Endpoint | None:
    """The endpoint of ``net`` named ``key``, or with address (IPv4 or ip6) ``key``."""
    for ep in snap.endpoints:
        if ep.network == net.name and ep.name == key:
            return ep
    try:
        ip = ip_address(key)
    except ValueError:
        return None
    if isinstance(ip, IPv6Address):
        low = IPv4Address(int(ip) & 0xFFFFFFFF)
        if net.ip6(low) != ip:
            return None
        ip = low
    return next((ep for ep in snap.endpoints if ep.network == net.name and ep.ip == ip), None)


def _add_l4(packet: Packet, protocol: Protocol, port: int | None) -> None:
    """The protocol and destination port, as far as the model knows these fields (the
    pipeline matches on none yet; policies will)."""
    if "ip_proto" not in oftable.WIDTH:
        return
    six = packet.get("eth_type") == oftable.ETH_IPV6
    packet["ip_proto"] = oftable.IP_ICMPV6 if six and protocol == "icmp" else IP_PROTO[protocol]
    if protocol == "icmp":
        packet["icmpv6_type" if six else "icmpv4_type"] = 128 if six else 8  # echo request
    else:
        packet[f"{protocol}_src"] = 40000
        packet[f"{protocol}_dst"] = port or 0


def _describe(f: Flow) -> tuple[str, str]:
    match = ",".join(f"{k}={_value(v)}" for k, v in f.match)
    actions = ",".join(type(a).__name__.lower() for a in f.actions)
    if f.goto is not None:
        actions = f"{actions},goto:{f.goto}" if actions else f"goto:{f.goto}"
    return match, actions or "drop"


def _value(v: object) -> str:
    if isinstance(v, tuple):
        return f"{_value(v[0])}/{_value(v[1])}"
    return f"{v:#x}" if isinstance(v, int) and v > 9 else str(v)


def switches(snap: Snapshot) -> dict[str, Switch]:
    """Every host's switch in the model, loaded with its desired flows."""
    idx = pipeline.index(snap)
    remote = pipeline.RemoteFlows(snap, idx)
    return {
        name: Switch(name=name).load(pipeline.desired_flows(snap, name, idx, remote))
        for name in snap.hosts
    }


def trace_model(
    snap: Snapshot, probe: Probe, model: Mapping[str, Switch] | None = None
) -> ModelTrace:
    """Follow ``probe``'s packet from its source's port through the model, host by host."""
    model = model if model is not None else switches(snap)
    assert probe.src.host is not None and probe.src.ofport is not None
    by_underlay = {str(h.underlay_ip): h.name for h in snap.hosts.values()}
    steps: list[Step] = []
    hops: list[tuple[str, str, int]] = []
    entries: list[Entry] = []
    delivered: list[tuple[str, int]] = []
    lost: list[str] = []
    todo = [Entry(probe.src.host, probe.src.ofport, dict(probe.packet))]
    while todo and len(entries) < MAX_HOSTS_VISITED:
        entry = todo.pop(0)
        entries.append(entry)
        switch = model.get(entry.host)
        if switch is None:
            lost.append(f"host {entry.host} has no switch in the model")
            continue
        tunnel_port = snap.hosts[entry.host].tunnel_port
        emitted = switch.process(entry.packet, entry.in_port)
        for table, f in switch.trace:
            if f is None:
                steps.append(Step(entry.host, table, None))
            else:
                match, actions = _describe(f)
                conj = f.match_dict().get("conj_id")
                steps.append(
                    Step(
                        entry.host, table, f.cookie, f.priority, match, actions,
                        conj if isinstance(conj, int) else None,
                    )
                )  # fmt: skip
        for e in emitted:
            if e.port != tunnel_port:
                delivered.append((entry.host, e.port))
                continue
            peer = by_underlay.get(str(e.packet.get("tun_ipv4_dst")))
            vni = int(e.packet["tunnel_id"])
            if peer is None or peer == entry.host:
                lost.append(f"{entry.host} tunnels to {e.packet.get('tun_ipv4_dst')}: no host")
                continue
            hops.append((entry.host, peer, vni))
            here, there = snap.hosts[entry.host], snap.hosts[peer]
            arriving = oftable.tunnelled(
                e.packet, str(here.underlay_ip), str(there.underlay_ip), vni
            )
            todo.append(Entry(peer, there.tunnel_port, arriving))
    return _verdict(probe, steps, hops, entries, delivered, lost)


def _verdict(
    probe: Probe,
    steps: list[Step],
    hops: list[tuple[str, str, int]],
    entries: list[Entry],
    delivered: list[tuple[str, int]],
    lost: list[str],
) -> ModelTrace:
    want = (probe.dst.host, probe.dst.ofport) if probe.dst is not None else None
    hit = [d for d in delivered if want is None or d == want]
    last = steps[-1] if steps else None
    notes = _policy_notes(probe, steps)
    if hit:
        host, port = hit[0]
        who = f"{probe.dst.name} ({probe.dst_ip})" if probe.dst is not None else str(probe.dst_ip)
        reason = f"delivered to {who} on {host} port {port}"
        allowed = [n for _, n in notes if "allowed by policy" in n]
        if allowed:
            reason += f" ({'; '.join(allowed)})"
        verdict: Verdict = "delivered"
    else:
        verdict = "dropped"
        if lost:
            reason = lost[0]
        elif delivered:
            reason = f"left on {delivered[0][0]} port {delivered[0][1]}, not {probe.dst_ip}'s port"
        elif last is not None and last.cookie is None:
            reason = (
                f"dropped on {last.host} in table {last.table} ({last.table_name}): no flow matched"
            )
        elif last is not None:
            reason = (
                f"dropped on {last.host} in table {last.table} ({last.table_name}) by flow "
                f"{last.cookie:016x}"
            )
        else:
            reason = "dropped before any table"
        if notes and last is not None and notes[-1][0] is last and "dropped" in notes[-1][1]:
            reason = f"{notes[-1][1]}; {reason}"
        elif _port_security(probe, last, entries):
            src = probe.src
            reason = (
                f"dropped by port security: {src.name} may send only from {src.mac} "
                f"{src.ip}, not {probe.packet.get('eth_src')} {_source(probe)}; "
                f"{reason}"
            )
    return ModelTrace(
        verdict, reason, tuple(steps), tuple(hops), tuple(entries), tuple(delivered), last,
        tuple(n for _, n in notes),
    )  # fmt: skip


def _source(probe: Probe) -> object:
    """The packet's source address (IPv4 or IPv6)."""
    return probe.packet.get("ipv6_src") or probe.packet.get("ipv4_src")


def _port_security(probe: Probe, last: Step | None, entries: list[Entry]) -> bool:
    """The packet stopped in CLASSIFY as it came in from the source's own port."""
    return (
        last is not None
        and last.table == pipeline.T_CLASSIFY
        and (last.cookie is None or last.priority == 0)
        and len(entries) == 1
        and entries[0].in_port == probe.src.ofport
    )


def _policy_notes(probe: Probe, steps: list[Step]) -> list[tuple[Step, str]]:
    """What each visit of a policy check table (POL_OUT_CT, POL_IN_CT) decided, named: the
    rule that allowed the packet (by its conjunction, or the policy's allow-all rule), or
    the policies that isolate the endpoint when nothing allowed it."""
    net = probe.network
    if not net.policies:
        return []
    rules = policy.conjunctions(net)
    out: list[tuple[Step, str]] = []
    what = probe.protocol + (f"/{probe.port}" if probe.port is not None else "")
    for s in steps:
        if s.table not in (pipeline.T_POL_OUT_CT, pipeline.T_POL_IN_CT):
            continue
        direction = "egress" if s.table == pipeline.T_POL_OUT_CT else "ingress"
        ep = probe.src if direction == "egress" else probe.dst
        if ep is None:
            continue
        where = f"{direction} of {ep.name} on {s.host}"
        isolated_by = policy.isolating(net, ep, direction)
        if s.cookie is None or s.priority == 0 or s.priority == policy.PRIO_CUT:
            sender = _source(probe)
            peer = f"to {probe.dst_ip}" if direction == "egress" else f"from {sender}"
            note = (
                f"dropped by policy ({where}): isolated by {', '.join(isolated_by)}; no rule "
                f"allows {what} {peer}"
            )
        elif s.conj_id is not None and s.conj_id in rules:
            note = f"{where}: allowed by {rules[s.conj_id]}"
        elif s.priority == policy.PRIO_OPEN:
            rule = policy.open_rule(net, ep, direction) if isolated_by else None
            note = (
                f"{where}: allowed by {rule}"
                if rule is not None
                else f"{where}: open (no policy isolates it for {direction})"
            )
        elif s.priority == policy.PRIO_BLOCKED:
            note = f"dropped by policy ({where}): a reply of a connection a policy cut"
        elif s.priority == policy.PRIO_REPLY:
            note = f"{where}: a reply of an allowed connection"
        elif s.priority == policy.PRIO_RELATED:
            note = f"{where}: related to an allowed connection"
        elif s.priority == policy.PRIO_INVALID:
            note = f"dropped ({where}): invalid in conntrack"
        else:
            note = f"{where}: flow {s.cookie or 0:016x}"
        out.append((s, note))
    return out


# -- the real switches: ofproto/trace ----------------------------------------------------------

# oftable field -> the ovs-ofctl flow syntax ofproto/trace reads
OVS_FIELDS = {
    "eth_src": "dl_src",
    "eth_dst": "dl_dst",
    "eth_type": "dl_type",
    "ipv4_src": "nw_src",
    "ipv4_dst": "nw_dst",
    "ip_proto": "nw_proto",
    # OVS 3.1's ofproto/trace takes tp_src for TCP but not for UDP ("prerequisites not met
    # for setting tp_src"): the protocol's own names work for both
    "tcp_src": "tcp_src",
    "tcp_dst": "tcp_dst",
    "udp_src": "udp_src",
    "udp_dst": "udp_dst",
    "icmpv4_type": "icmp_type",
    "icmpv4_code": "icmp_code",
    "ipv6_src": "ipv6_src",
    "ipv6_dst": "ipv6_dst",
    "icmpv6_type": "icmpv6_type",
    "icmpv6_code": "icmpv6_code",
    "arp_op": "arp_op",
    "arp_spa": "arp_spa",
    "arp_tpa": "arp_tpa",
    "arp_sha": "arp_sha",
    "arp_tha": "arp_tha",
    "tunnel_id": "tun_id",
    "tun_ipv4_src": "tun_src",
    "tun_ipv4_dst": "tun_dst",
}
FLOW_TEXT = re.compile(r"^[A-Za-z0-9_=,.:/]+$")  # what an agent agrees to pass to ofproto/trace
_TABLE_LINE = re.compile(r"^\s*(\d+)\. (.*)$")
_COOKIE = re.compile(r"cookie (0x[0-9a-f]+)")
_OUTPUT = re.compile(r"^\s+output:(\d+)\s*$")
_BRIDGE = re.compile(r'^\s*bridge\("([^"]+)"\)')


def ovs_flow(entry: Entry) -> str:
    """The packet entering a host, as ``ovs-appctl ofproto/trace BRIDGE FLOW`` takes it."""
    parts = [f"in_port={entry.in_port}"]
    tunnelled = bool(entry.packet.get("tunnel_id"))
    for name, value in entry.packet.items():
        ovs = OVS_FIELDS.get(name)
        if ovs is None or (name.startswith("tun") and not tunnelled):
            continue
        text = (
            f"{value:#x}" if name in ("eth_type", "tunnel_id") and isinstance(value, int) else value
        )
        parts.append(f"{ovs}={text}")
    flow = ",".join(str(p) for p in parts)
    assert FLOW_TEXT.match(flow), flow
    return flow


@dataclass(frozen=True, slots=True)
class SwitchTrace:
    """What one host's real switch did with the packet (``ofproto/trace``)."""

    host: str
    answered: bool
    steps: tuple[tuple[int, int | None], ...] = ()  # (table, cookie or None for a miss)
    outputs: tuple[int, ...] = ()  # OpenFlow ports it output to
    datapath_actions: str = ""
    error: str | None = None
    agrees: bool = False


def parse_ofproto_trace(
    text: str, bridge: str = "br-int"
) -> tuple[list[tuple[int, int | None]], list[int], str]:
    """(table, cookie) of each table visit on ``bridge``, its output ports, and the datapath
    actions, from ``ovs-appctl ofproto/trace`` (Open vSwitch 3.1's layout; a table miss is
    "No match."). Sections of other bridges (the underlay bridge a tunnelled packet goes on
    to) are left out: they are not the controller's."""
    steps: list[tuple[int, int | None]] = []
    outputs: list[int] = []
    actions = ""
    current = None
    for line in text.splitlines():
        if line.startswith("Datapath actions:"):
            actions = line.partition(":")[2].strip()
            continue
        named = _BRIDGE.match(line)
        if named is not None:
            current = named.group(1)
            continue
        if current != bridge:
            continue
        table = _TABLE_LINE.match(line)
        if table is not None:
            rest = table.group(2)
            cookie = _COOKIE.search(rest)
            if rest.startswith("No match"):
                steps.append((int(table.group(1)), None))
            else:
                steps.append((int(table.group(1)), int(cookie.group(1), 16) if cookie else 0))
            continue
        output = _OUTPUT.match(line)
        if output is not None:
            outputs.append(int(output.group(1)))
    return steps, outputs, actions


def compare(model: ModelTrace, host: str, answer: dict[str, object] | None) -> SwitchTrace:
    """One host's ``ofproto/trace`` answer against the model's steps on that host."""
    if answer is None:
        return SwitchTrace(host, False, error="the host did not answer in time")
    if answer.get("error"):
        return SwitchTrace(host, True, error=str(answer["error"]))
    steps, outputs, actions = parse_ofproto_trace(str(answer.get("output", "")))
    want = [(s.table, s.cookie) for s in model.steps if s.host == host]
    return SwitchTrace(host, True, tuple(steps), tuple(outputs), actions, None, steps == want)
