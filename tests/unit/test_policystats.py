"""The policy counts of ``GET /metrics`` (``controller.policystats``) agree with the flows the
engine really wants on every host (``pipeline.desired_flows``), and every conjunction of the
compiled flows has an owning policy (the numbering of rules cannot drift apart)."""

from __future__ import annotations

from ipaddress import IPv4Network

from controller.flows import Conjunction
from controller.model import Policy, PolicyPeer, PolicyPort, PolicyRule
from controller.pipeline import (
    PRIO_DEFAULT,
    T_DELIVER,
    T_POL_IN_CT,
    T_POL_OUT,
    T_POL_OUT_CT,
    desired_flows,
)
from controller.policystats import policy_stats, rule_owners
from tests.unit.conftest import Lab
from tests.unit.test_policy_flows import DB, DB_FROM_WEB, WEB, labelled

POLICY_TABLES = (T_POL_OUT, T_POL_OUT_CT, T_POL_IN_CT, T_DELIVER)
WEB_OUT = Policy(
    "web-out",
    selector=WEB,
    ingress=None,
    egress=(
        PolicyRule(peers=(PolicyPeer(selector=DB),), ports=(PolicyPort("tcp", 5432),)),
        PolicyRule(peers=(PolicyPeer(cidr=IPv4Network("10.0.0.128/25")),)),
        PolicyRule(),
    ),
)
WEB_CLOSED = Policy("web-closed", selector=WEB)


def test_counts_agree_with_the_desired_flows(lab: Lab) -> None:
    for policies in ((DB_FROM_WEB,), (DB_FROM_WEB, WEB_OUT), (DB_FROM_WEB, WEB_OUT, WEB_CLOSED)):
        snap = labelled(lab, *policies)
        net = snap.networks["red"]
        members = [e for e in snap.endpoints if e.network == "red" and e.host]
        stats = policy_stats(net, members)
        wanted = [
            f
            for host in snap.hosts
            for f in desired_flows(snap, host)
            if f.table in POLICY_TABLES and f.priority != PRIO_DEFAULT
            and dict(f.match).get("metadata") == net.vni
        ]  # fmt: skip
        assert stats.flows == len(wanted) > 0
        owners = rule_owners(net)
        conj = {a.id for f in wanted for a in f.actions if isinstance(a, Conjunction)}
        assert conj and conj <= set(owners)
        assert set(stats.rule_flows) == {p.name for p in policies}
        assert stats.rule_flows["db-from-web"] > 0
        assert stats.selected["db-from-web"] == 1  # r2a


def test_a_network_without_policies_costs_nothing(lab: Lab) -> None:
    snap = labelled(lab)
    net = snap.networks["red"]
    stats = policy_stats(net, [e for e in snap.endpoints if e.network == "red"])
    assert (stats.flows, stats.rule_flows, stats.selected) == (0, {}, {})
