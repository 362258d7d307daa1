"""PURE: what a network's policies cost in flows and whom they select (``GET /metrics``).

Computed from the intent (the desired flows), not from the switches: for every host with an
endpoint of the network that a policy isolates, ``pipeline.policy_flows`` is compiled as the
engine compiles it, so the counts are what the switches hold once they applied the current
revision (``vxplane_switch_revision_lag`` 0).

- ``flows``: the network's policy-stage flows (tables POL_OUT, POL_OUT_CT, POL_IN_CT,
  DELIVER) summed over the hosts, each distinct flow of a host once.
- ``rule_flows[policy]``: of those, the flows that carry one of the policy's rules: the
  ``conj_id`` flow of each rule, every clause flow naming one of its conjunctions, and the
  plain pass of a rule that has neither peers nor ports. A clause flow shared by rules of two
  policies (the same endpoint, peer or port) counts for both, so the sum over policies can
  exceed the rule flows of the network; the replies/related/invalid, entry and DELIVER flows
  belong to no policy.
- ``selected[policy]``: bound endpoints the policy's selector picks (on any host).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from controller.flows import Conjunction, Flow, MatchValue
from controller.model import Endpoint, Network, Policy, PolicyRule, selects
from controller.pipeline import EGRESS, INGRESS, policy_flows
from controller.policy import PRIO_OPEN, _conj_id, isolation, peer_addresses


@dataclass(frozen=True)
class PolicyStats:
    """The counts of one network (see the module docstring)."""

    network: str
    flows: int = 0
    rule_flows: dict[str, int] = field(default_factory=dict)
    selected: dict[str, int] = field(default_factory=dict)


def rule_owners(net: Network) -> dict[int, str]:
    """conj_id -> name of the policy whose rule it is, numbered as ``policy.stage_flows``
    numbers them (per direction, by policy name, then rule order)."""
    owners: dict[int, str] = {}
    for direction in ("ingress", "egress"):
        n = 0
        for pol in sorted(net.policies, key=lambda p: p.name):
            for _rule in (pol.ingress if direction == "ingress" else pol.egress) or ():
                n += 1
                owners[_conj_id(net.vni, direction, n)] = pol.name
    return owners


def _plain_owners(net: Network, ep: Endpoint, direction: str) -> set[str]:
    """Policies with a rule of ``direction`` that has neither peers nor ports and selects
    ``ep``: such a rule is a plain pass for the endpoint, not a conjunction."""
    found = set()
    for pol in net.policies:
        rules = pol.ingress if direction == "ingress" else pol.egress
        plain = any(not r.peers and not r.ports for r in rules or ())
        if plain and selects(pol.selector, ep.labels):
            found.add(pol.name)
    return found


def policy_stats_by_flows(net: Network, members: Iterable[Endpoint]) -> PolicyStats:
    """The reference: ``policy_stats`` by compiling every host's policy flows (as the engine
    does) and counting them. O(hosts x members) flows built: for tests, not for scrapes."""
    bound = [ep for ep in members if ep.host is not None and ep.ofport is not None]
    names = [p.name for p in net.policies]
    selected = {n: 0 for n in names}
    for pol in net.policies:
        selected[pol.name] = sum(1 for ep in bound if selects(pol.selector, ep.labels))
    if not net.policies:
        return PolicyStats(net.name, 0, {}, {})
    owners = rule_owners(net)
    rule_flows = {n: 0 for n in names}
    total = 0
    by_host: dict[str, list[Endpoint]] = {}
    for ep in bound:
        assert ep.host is not None
        by_host.setdefault(ep.host, []).append(ep)
    for eps in by_host.values():
        guarded = [ep for ep in eps if any(isolation(net, ep))]
        if not guarded:
            continue
        flows = set(policy_flows(net, guarded, bound))
        total += len(flows)
        plain = {
            (stage.check, stage.ep_field, str(ep.ip)): _plain_owners(net, ep, direction)
            for ep in guarded
            for stage, direction, on in (
                (INGRESS, "ingress", isolation(net, ep)[0]),
                (EGRESS, "egress", isolation(net, ep)[1]),
            )
            if on
        }
        for f in flows:
            for name in _owners_of(f, owners, plain):
                rule_flows[name] += 1
    return PolicyStats(net.name, total, rule_flows, selected)


def _owners_of(
    f: Flow, owners: dict[int, str], plain: dict[tuple[int, str, str], set[str]]
) -> set[str]:
    match = f.match_dict()
    found = {owners[a.id] for a in f.actions if isinstance(a, Conjunction) and a.id in owners}
    conj = match.get("conj_id")
    if isinstance(conj, int) and conj in owners:
        found.add(owners[conj])
    if f.priority == PRIO_OPEN and "conj_id" not in match:
        for ep_field in ("ipv4_dst", "ipv4_src"):
            ip = match.get(ep_field)
            if isinstance(ip, str):
                found |= plain.get((f.table, ep_field, ip), set())
    return found


def policy_stats(net: Network, members: Iterable[Endpoint]) -> PolicyStats:
    """The counts of ``net`` given its bound endpoints ``members`` (host and ofport set),
    counted without building flows: per host, the stages' fixed flows (taken from
    ``policy_flows`` with no endpoint, so they follow it), then per direction the open
    passes, the plain passes, one ``conj_id`` flow per active rule and the distinct clause
    matches (endpoints, peers, ports: merged across rules as ``stage_flows`` merges them),
    and one DELIVER flow per isolated endpoint. Peer addresses are worked out once per rule,
    not per host. ``policy_stats_by_flows`` is the reference; tests/unit/test_policystats.py
    holds the two equal."""
    bound = [ep for ep in members if ep.host is not None and ep.ofport is not None]
    if not net.policies:
        return PolicyStats(net.name, 0, {}, {})
    names = [p.name for p in net.policies]
    picks = {ep.name: [p for p in net.policies if selects(p.selector, ep.labels)] for ep in bound}
    selected = {
        n: sum(1 for ep in bound if any(p.name == n for p in picks[ep.name])) for n in names
    }
    skeleton = len(set(policy_flows(net, [], [])))
    rules: list[tuple[str, Policy, PolicyRule, list[MatchValue] | None]] = []
    for direction in ("ingress", "egress"):
        for pol in sorted(net.policies, key=lambda p: p.name):
            for rule in (pol.ingress if direction == "ingress" else pol.egress) or ():
                peers = peer_addresses(rule.peers, bound) if rule.peers else None
                rules.append((direction, pol, rule, peers))
    by_host: dict[str, list[Endpoint]] = {}
    for ep in bound:
        assert ep.host is not None
        by_host.setdefault(ep.host, []).append(ep)
    total = 0
    rule_flows = {n: 0 for n in names}
    for eps in by_host.values():
        iso = {ep.name: _isolated(picks[ep.name]) for ep in eps}
        guarded = [ep for ep in eps if any(iso[ep.name])]
        if not guarded:
            continue
        total += skeleton + len(guarded)  # + DELIVER
        for d, direction in enumerate(("ingress", "egress")):
            local = [ep for ep in guarded if iso[ep.name][d]]
            total += len(guarded) - len(local)  # open passes
            plain: dict[str, set[str]] = {}  # endpoint -> policies passing it plainly
            conj: dict[str, tuple[set[object], set[object], set[object], int]] = {}
            for rule_dir, pol, rule, peers in rules:
                if rule_dir != direction:
                    continue
                chosen = [ep.name for ep in local if pol in picks[ep.name]]
                if not chosen or (peers is not None and not peers):
                    continue
                if peers is None and not rule.ports:
                    for name in chosen:
                        plain.setdefault(name, set()).add(pol.name)
                    continue
                mine = conj.setdefault(pol.name, (set(), set(), set(), 0))
                mine[0].update(chosen)
                mine[1].update(peers or ())
                mine[2].update((p.protocol, p.port) for p in rule.ports)
                conj[pol.name] = (mine[0], mine[1], mine[2], mine[3] + 1)
            eps_k = set().union(*(c[0] for c in conj.values())) if conj else set()
            peers_k = set().union(*(c[1] for c in conj.values())) if conj else set()
            ports_k = set().union(*(c[2] for c in conj.values())) if conj else set()
            ids = sum(c[3] for c in conj.values())
            total += len(plain) + ids + len(eps_k) + len(peers_k) + len(ports_k)
            for name, (e, p, q, n) in conj.items():
                rule_flows[name] += n + len(e) + len(p) + len(q)
            for owners in plain.values():
                for name in owners:
                    rule_flows[name] += 1
    return PolicyStats(net.name, total, rule_flows, selected)


def _isolated(picked: Sequence[Policy]) -> tuple[bool, bool]:
    """(ingress, egress) isolation of an endpoint the policies ``picked`` select."""
    return (
        any(p.ingress is not None for p in picked),
        any(p.egress is not None for p in picked),
    )
