"""The policy counts of ``GET /metrics`` (``controller.policystats``) agree with the flows the
engine really wants on every host (``pipeline.desired_flows``); the fast count agrees with the
reference that compiles the flows, on the lab's cases and on seeded random networks; every
conjunction of the compiled flows has an owning policy (the numbering cannot drift apart)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller.flows import Conjunction
from controller.model import (
    Endpoint,
    EndpointState,
    Network,
    Policy,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    mac_for_ip,
)
from controller.pipeline import (
    PRIO_DEFAULT,
    T_DELIVER,
    T_POL_IN_CT,
    T_POL_OUT,
    T_POL_OUT_CT,
    desired_flows,
)
from controller.policystats import policy_stats, policy_stats_by_flows, rule_owners
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
        assert stats == policy_stats_by_flows(net, members)
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


def _random_network(rng: random.Random) -> tuple[Network, list[Endpoint]]:
    values = ("web", "db", "other")
    labels = [(("app", rng.choice(values)),) if rng.random() < 0.8 else () for _ in range(40)]

    def peer() -> PolicyPeer:
        if rng.random() < 0.2:
            return PolicyPeer(cidr=IPv4Network(f"10.0.{rng.randrange(4)}.0/25"))
        return PolicyPeer(selector=(("app", rng.choice(values)),) if rng.random() < 0.9 else ())

    def rules() -> tuple[PolicyRule, ...] | None:
        if rng.random() < 0.3:
            return None
        return tuple(
            PolicyRule(
                peers=tuple(peer() for _ in range(rng.randrange(3))),
                ports=tuple(
                    PolicyPort(rng.choice(("tcp", "udp")), rng.choice((None, 80, 5432)))
                    for _ in range(rng.randrange(3))
                ),
            )
            for _ in range(rng.randrange(4))
        )

    policies = tuple(
        Policy(
            f"p{i}",
            selector=(("app", rng.choice(values)),) if rng.random() < 0.85 else (),
            ingress=rules(),
            egress=rules(),
        )
        for i in range(rng.randrange(1, 5))
    )
    net = Network("red", 9, IPv4Network("10.0.0.0/22"), IPv4Address("10.0.0.1"), policies=policies)
    eps = []
    for i, lab in enumerate(labels):
        ip = IPv4Address(f"10.0.{i // 200}.{2 + i % 200}")
        bound = rng.random() < 0.9
        eps.append(
            Endpoint(
                network="red",
                name=f"e{i}",
                ip=ip,
                mac=mac_for_ip(ip),
                host=f"h{rng.randrange(5)}" if bound else None,
                ofport=10 + i if bound else None,
                state=EndpointState.READY if bound else EndpointState.RESERVED,
                bound_rev=1,
                labels=lab,
            )  # fmt: skip
        )
    return net, eps


@pytest.mark.parametrize("seed", range(60))
def test_the_count_equals_the_reference_on_random_networks(seed: int) -> None:
    net, eps = _random_network(random.Random(seed))
    assert policy_stats(net, eps) == policy_stats_by_flows(net, eps)


def test_a_network_without_policies_costs_nothing(lab: Lab) -> None:
    snap = labelled(lab)
    net = snap.networks["red"]
    stats = policy_stats(net, [e for e in snap.endpoints if e.network == "red"])
    assert (stats.flows, stats.rule_flows, stats.selected) == (0, {}, {})
