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

from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.flows import Conjunction, Flow
from controller.model import Endpoint, Network, selects
from controller.pipeline import EGRESS, INGRESS, policy_flows
from controller.policy import PRIO_OPEN, _conj_id, isolation


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


def policy_stats(net: Network, members: Iterable[Endpoint]) -> PolicyStats:
    """The counts of ``net`` given its bound endpoints ``members`` (host and ofport set)."""
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
