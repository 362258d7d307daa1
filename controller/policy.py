"""PURE: the flows of network policies on one host (tables in ``pipeline``'s docstring).

Kubernetes NetworkPolicy semantics: a local endpoint is isolated for ingress (egress) when a
policy of its network with that type selects it; it then accepts (sends) only what some
rule of those policies allows. An endpoint isolated in either direction has both of its
directions tracked in its network's policy zone (``policy_zone``), so that the replies of
a connection it accepted or made are ``+rpl`` on its own host whatever the peer's host
does; the direction it is not isolated in allows everything. Every packet of the original
direction is checked again (not only ``+new``). Replies (``+est+rpl``) and ``+rel`` pass;
``+inv`` is dropped.

Cutting a connection a rule no longer allows (as OVN does with ``ct_label.blocked``): an
established original-direction packet that no rule allows any more is committed with
``CT_MARK_BLOCKED`` and dropped, and replies of a blocked connection are dropped too, so the
cut holds both ways from the first packet of the original direction after the change (the
client's next data or ACK: TCP acknowledges what it receives, so a connection that moves
data either way is cut within about one round trip plus a delayed ACK). An allowed packet
commits the mark without the bit, so a connection allowed again comes back. Why this and
not the alternatives: flushing the zone's conntrack would cut every connection of the
network, allowed or not, and needs the agents in the loop; checking replies against the
rules reversed would double the policy flows and mix two directions' rules in one
conjunction table; a policy generation in ``ct_mark`` would drop the replies of
still-allowed connections until their next original packet. The limit: a connection whose
original direction stays silent (a server streaming UDP to a client that never sends)
keeps its replies until the original side sends.

Each rule is a conjunctive match (Nicira ``conjunction``) of up to three clauses: the
selected local endpoint (clause 1), the peers (addresses of the endpoints a selector picks,
or CIDRs), the ports (protocol and port). A rule without peers or ports leaves that clause
out; a rule with neither is a plain flow. Clause flows with the same match are merged into
one flow carrying several ``conjunction`` actions, as OVS requires, so the flows of a rule
grow as selected endpoints + peers + ports, not their product.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network

from controller.flows import (
    CT_EST,
    CT_INV,
    CT_REL,
    CT_RPL,
    CT_TRK,
    Action,
    Conjunction,
    Ct,
    Flow,
    MatchValue,
    flow,
)
from controller.model import Endpoint, Network, PolicyPeer, PolicyPort, selects

ETH_IP = 0x0800
IP_PROTO = {"tcp": 6, "udp": 17}
CT_MARK_POLICY = 0x4  # ct_mark bit 2: committed by a policy stage
CT_MARK_BLOCKED = 0x8  # ct_mark bit 3: no rule allows this connection any more
POLICY_ZONE_BASE = 0x8000  # policy zones: 0x8000 | (VNI & 0x7fff); external zones count up from 1
PRIO_BLOCKED = 310  # replies of a blocked connection
PRIO_REPLY = 300
PRIO_RELATED = 290
PRIO_INVALID = 280
PRIO_OPEN = 220  # the endpoint is not isolated in this direction, or a rule allows anything
PRIO_RULE = 200  # clause flows and conj_id flows
PRIO_CUT = 100  # an established connection no rule allows any more: mark it blocked, drop


def policy_zone(vni: int) -> int:
    """The conntrack zone of a network's policy stages (see the module docstring)."""
    return POLICY_ZONE_BASE | (vni & 0x7FFF)


@dataclass(frozen=True, slots=True)
class Stage:
    """One direction's tables: ``entry`` takes the packet through ``ct`` into ``check``;
    what passes goes on to ``after`` (``goto``)."""

    entry: int
    check: int
    after: int
    ep_field: str  # the local endpoint's address: ipv4_dst (ingress) or ipv4_src (egress)
    peer_field: str


def isolation(net: Network, ep: Endpoint) -> tuple[bool, bool]:
    """(isolated for ingress, isolated for egress) of ``ep`` by ``net``'s policies."""
    ingress = egress = False
    for pol in net.policies:
        if selects(pol.selector, ep.labels):
            ingress |= pol.ingress is not None
            egress |= pol.egress is not None
    return ingress, egress


def peer_addresses(peers: Iterable[PolicyPeer], members: Iterable[Endpoint]) -> list[MatchValue]:
    """The addresses (``ipv4_*`` match values) of ``peers`` among the network's bound
    ``members``, each once, in a stable order."""
    members = list(members)
    out: dict[MatchValue, None] = {}
    for peer in peers:
        if peer.cidr is not None:
            out[_masked(peer.cidr)] = None
        elif peer.selector is not None:
            for ep in members:
                if selects(peer.selector, ep.labels):
                    out[str(ep.ip)] = None
    return list(out)


def stage_flows(
    stage: Stage,
    net: Network,
    local: Iterable[Endpoint],
    members: Iterable[Endpoint],
    direction: str,
) -> list[Flow]:
    """The check table of one direction for ``net``'s isolated local endpoints ``local``
    (``direction`` "ingress" or "egress"); the entry flows are ``entry_flows``."""
    zone = policy_zone(net.vni)
    meta: dict[str, MatchValue] = {"metadata": net.vni, "eth_type": ETH_IP}
    passed: list[Action] = [Ct(zone, commit=True, mark=CT_MARK_POLICY)]
    blocked: MatchValue = (CT_MARK_BLOCKED, CT_MARK_BLOCKED)
    out = [
        flow(stage.check, PRIO_BLOCKED,
             {**meta, "ct_state": _bits(CT_EST | CT_RPL, CT_INV), "ct_mark": blocked}),
        flow(stage.check, PRIO_REPLY, {**meta, "ct_state": _bits(CT_EST | CT_RPL, CT_INV)},
             goto=stage.after),
        flow(stage.check, PRIO_RELATED, {**meta, "ct_state": _bits(CT_REL, CT_INV)},
             goto=stage.after),
        flow(stage.check, PRIO_INVALID, {**meta, "ct_state": (CT_INV | CT_TRK, CT_INV | CT_TRK)}),
        flow(stage.check, PRIO_CUT, {**meta, "ct_state": _bits(CT_EST, CT_RPL | CT_INV)},
             [Ct(zone, commit=True, mark=CT_MARK_POLICY | CT_MARK_BLOCKED)]),
    ]  # fmt: skip
    members = list(members)
    clauses: dict[tuple[tuple[str, MatchValue], ...], list[Action]] = {}
    conj = 0
    for pol in sorted(net.policies, key=lambda p: p.name):
        rules = pol.ingress if direction == "ingress" else pol.egress
        for rule in rules or ():
            conj += 1
            chosen = [ep for ep in local if selects(pol.selector, ep.labels)]
            if not chosen:
                continue
            dims: list[list[dict[str, MatchValue]]] = [
                [{**meta, stage.ep_field: str(ep.ip)} for ep in chosen]
            ]
            if rule.peers:
                addrs = peer_addresses(rule.peers, members)
                if not addrs:
                    continue  # the rule names no one now: it allows nothing
                dims.append([{**meta, stage.peer_field: a} for a in addrs])
            if rule.ports:
                dims.append([_port_match(meta, p) for p in rule.ports])
            if len(dims) == 1:
                out.extend(flow(stage.check, PRIO_OPEN, m, passed, goto=stage.after)
                           for m in dims[0])  # fmt: skip
                continue
            cid = _conj_id(net.vni, direction, conj)
            for k, alternatives in enumerate(dims, start=1):
                for m in alternatives:
                    key = tuple(sorted(m.items()))
                    clauses.setdefault(key, []).append(Conjunction(cid, k, len(dims)))
            out.append(flow(stage.check, PRIO_RULE, {**meta, "conj_id": cid}, passed,
                            goto=stage.after))  # fmt: skip
    for key, actions in clauses.items():
        out.append(flow(stage.check, PRIO_RULE, dict(key), sorted(actions, key=_conj_key)))
    return out


def open_flows(stage: Stage, net: Network, eps: Iterable[Endpoint]) -> list[Flow]:
    """The check table's pass for endpoints not isolated in this direction (tracked only)."""
    meta: dict[str, MatchValue] = {"metadata": net.vni, "eth_type": ETH_IP}
    passed: list[Action] = [Ct(policy_zone(net.vni), commit=True, mark=CT_MARK_POLICY)]
    return [
        flow(stage.check, PRIO_OPEN, {**meta, stage.ep_field: str(ep.ip)}, passed,
             goto=stage.after)
        for ep in eps
    ]  # fmt: skip


def members_of(
    net: Network, local: Mapping[str, Iterable[tuple[Network, Endpoint]]]
) -> list[Endpoint]:
    """Every bound endpoint of ``net`` on any host (the peers a selector can name)."""
    return [ep for eps in local.values() for n, ep in eps if n.name == net.name]


def _port_match(meta: dict[str, MatchValue], port: PolicyPort) -> dict[str, MatchValue]:
    proto = IP_PROTO[port.protocol]
    m: dict[str, MatchValue] = {**meta, "ip_proto": proto}
    if port.port is not None:
        m[f"{port.protocol}_dst"] = port.port
    return m


def _conj_id(vni: int, direction: str, n: int) -> int:
    """A conjunction id unique on the host: the VNI's low 16 bits, the direction, the rule's
    number in the network (by policy name, then order)."""
    return ((vni & 0xFFFF) << 16) | (0x8000 if direction == "egress" else 0) | (n & 0x7FFF)


def _conj_key(c: Action) -> tuple[int, int]:
    assert isinstance(c, Conjunction)
    return (c.id, c.clause)


def _bits(on: int, off: int) -> tuple[int, int]:
    """A ct_state match: ``on`` and +trk set, ``off`` clear."""
    return (on | CT_TRK, on | off | CT_TRK)


def _masked(net: IPv4Network) -> MatchValue:
    if net.prefixlen == 32:
        return str(net.network_address)
    return (str(net.network_address), str(net.netmask))


# -- naming what decided (``controller.trace``) --------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRef:
    """One rule of a policy: its ``index`` (from 1) among the policy's rules of ``direction``."""

    policy: str
    direction: str  # "ingress" or "egress"
    index: int

    def __str__(self) -> str:
        return f"policy {self.policy} {self.direction} rule {self.index}"


def conjunctions(net: Network) -> dict[int, RuleRef]:
    """The rule behind each conjunction id ``stage_flows`` gives ``net``'s rules."""
    out: dict[int, RuleRef] = {}
    for direction in ("ingress", "egress"):
        n = 0
        for pol in sorted(net.policies, key=lambda p: p.name):
            rules = pol.ingress if direction == "ingress" else pol.egress
            for i, _ in enumerate(rules or (), start=1):
                n += 1
                out[_conj_id(net.vni, direction, n)] = RuleRef(pol.name, direction, i)
    return out


def isolating(net: Network, ep: Endpoint, direction: str) -> list[str]:
    """The names of ``net``'s policies that isolate ``ep`` for ``direction``, sorted."""
    return sorted(
        pol.name
        for pol in net.policies
        if selects(pol.selector, ep.labels)
        and (pol.ingress if direction == "ingress" else pol.egress) is not None
    )


def open_rule(net: Network, ep: Endpoint, direction: str) -> RuleRef | None:
    """The first rule (by policy name, then order) of a policy selecting ``ep`` that allows
    everything in ``direction`` (no peers, no ports): what a plain pass flow of an isolated
    endpoint stands for."""
    for pol in sorted(net.policies, key=lambda p: p.name):
        if not selects(pol.selector, ep.labels):
            continue
        rules = pol.ingress if direction == "ingress" else pol.egress
        for i, rule in enumerate(rules or (), start=1):
            if not rule.peers and not rule.ports:
                return RuleRef(pol.name, direction, i)
    return None
