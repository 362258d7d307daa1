"""controller.trace on the shared 3-host lab of conftest.py: delivered within a host and
across the tunnel, dropped by isolation, by an unbound destination and by port security, and
the question's own errors; the policy rule that allowed a packet, the policies that dropped
it, and the port security check, named. The verdicts come from running the packet through the
model."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Network

import pytest

from controller import trace
from controller.errors import Conflict, InvalidRequest, NotFound
from controller.model import Policy, PolicyRule
from controller.pipeline import (
    T_CLASSIFY,
    T_LOCAL,
    T_POL_IN_CT,
    T_POL_OUT_CT,
    T_REMOTE,
    T_TUNNEL_IN,
)
from tests.unit.conftest import Lab
from tests.unit.test_policy_flows import DB_FROM_WEB, WEB, labelled


def run(lab: Lab, network: str, src: str, dst: str, protocol: trace.Protocol = "tcp",
        port: int | None = 80) -> trace.ModelTrace:  # fmt: skip
    return trace.trace_model(lab.snap, trace.resolve(lab.snap, network, src, dst, protocol, port))


def test_same_host_is_delivered_port_to_port(lab: Lab) -> None:
    got = run(lab, "red", "r1a", "r1b")
    assert got.verdict == "delivered" and got.delivered == (("h1", 3),)
    assert got.hops == () and {s.host for s in got.steps} == {"h1"}
    assert [s.table for s in got.steps] == [T_CLASSIFY, T_LOCAL]
    assert all(s.cookie is not None for s in got.steps)
    assert "r1b (10.0.0.3) on h1 port 3" in got.reason


def test_across_the_tunnel_by_name_or_address(lab: Lab) -> None:
    for dst in ("b3a", "10.0.0.130"):
        got = run(lab, "blue", "b1a", dst, "udp", 53)
        assert got.verdict == "delivered" and got.delivered == (("h3", 3),)
        assert got.hops == (("h1", "h3", 200),)
        assert [(e.host, e.in_port) for e in got.entries] == [("h1", 4), ("h3", 1)]
        assert got.entries[1].packet["tunnel_id"] == 200
        tables = [(s.host, s.table) for s in got.steps]
        assert ("h1", T_REMOTE) in tables and ("h3", T_TUNNEL_IN) in tables


def test_a_moved_endpoint_is_reached_on_its_new_host(lab: Lab) -> None:
    got = run(lab, "red", "r1a", "rmv", "icmp", None)
    assert got.verdict == "delivered" and got.delivered == (("h2", 5),)
    assert got.hops == (("h1", "h2", 100),)


def test_isolation_an_address_only_the_other_network_has_is_dropped(lab: Lab) -> None:
    # 10.0.0.70 is blue's b2b; red has nobody there: red's packet must not reach it
    got = run(lab, "red", "r1a", "10.0.0.70")
    assert got.verdict == "dropped" and got.delivered == ()
    assert got.decided_by is not None and got.decided_by.host == "h2"
    assert "dropped on h2" in got.reason


def test_an_unbound_destination_is_dropped(lab: Lab) -> None:
    got = run(lab, "red", "r1a", "rres")
    assert got.verdict == "dropped" and got.delivered == ()


def test_port_security_drops_a_spoofed_source(lab: Lab) -> None:
    probe = trace.resolve(lab.snap, "red", "r1a", "r1b", "tcp", 80)
    spoofed = replace(probe, packet={**probe.packet, "ipv4_src": "10.0.0.99"})
    got = trace.trace_model(lab.snap, spoofed)
    assert got.verdict == "dropped"
    assert got.decided_by is not None and got.decided_by.table == T_CLASSIFY
    assert (got.decided_by.priority, got.decided_by.actions) == (0, "drop")  # the default drop
    assert "dropped on h1 in table 0 (classify)" in got.reason


def test_the_models_verdict_changes_with_the_intent(lab: Lab) -> None:
    moved = lab.rebind("r1b", None, None)
    got = trace.trace_model(moved, trace.resolve(moved, "red", "r1a", "10.0.0.3", "tcp", 80))
    assert got.verdict == "dropped"


def test_the_policy_rule_that_allowed_is_named(lab: Lab) -> None:
    web_out = Policy("web-out", selector=WEB, ingress=None, egress=(PolicyRule(),))
    snap = labelled(lab, DB_FROM_WEB, web_out)
    got = trace.trace_model(snap, trace.resolve(snap, "red", "r1a", "r2a", "tcp", 5432))
    assert got.verdict == "delivered", got.reason
    assert got.policy == (
        "egress of r1a on h1: allowed by policy web-out egress rule 1",
        "ingress of r2a on h2: allowed by policy db-from-web ingress rule 1",
    )
    assert "allowed by policy db-from-web ingress rule 1" in got.reason


def test_dropped_by_policy_names_the_isolating_policies(lab: Lab) -> None:
    snap = labelled(lab, DB_FROM_WEB, Policy("db-shut", selector=DB_FROM_WEB.selector))
    got = trace.trace_model(snap, trace.resolve(snap, "red", "r1a", "r2a", "tcp", 80))
    assert got.verdict == "dropped"
    assert got.decided_by is not None and got.decided_by.table == T_POL_IN_CT
    assert got.reason.startswith(
        "dropped by policy (ingress of r2a on h2): isolated by db-from-web, db-shut; "
        "no rule allows tcp/80 from 10.0.0.2; dropped on h2 in table 31"
    ), got.reason
    # egress: web may send only to the CIDR, not to r3a
    web_out = Policy("web-out", selector=WEB, ingress=None, egress=())
    snap = labelled(lab, web_out)
    got = trace.trace_model(snap, trace.resolve(snap, "red", "r1a", "r3a", "icmp", None))
    assert got.decided_by is not None and got.decided_by.table == T_POL_OUT_CT
    assert "isolated by web-out; no rule allows icmp to 10.0.0.130" in got.reason


def test_port_security_is_named_for_a_given_source_address(lab: Lab) -> None:
    probe = trace.resolve(lab.snap, "red", "r1a", "r1b", "tcp", 80, src_ip="10.0.0.99")
    got = trace.trace_model(lab.snap, probe)
    assert got.verdict == "dropped" and got.policy == ()
    assert got.reason.startswith("dropped by port security: r1a may send only from "), got.reason
    assert "not 0a:58:0a:00:00:02 10.0.0.99" in got.reason
    assert not run(lab, "red", "r1a", "r1b").reason.startswith("dropped")


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        (("green", "r1a", "r1b", "tcp", 80), NotFound, "no network 'green'"),
        (("red", "nobody", "r1b", "tcp", 80), NotFound, "no endpoint 'nobody'"),
        (("red", "r1a", "nobody", "tcp", 80), NotFound, "not an IPv4 address"),
        (("red", "rres", "r1b", "tcp", 80), Conflict, "bound to no host"),
        (("red", "r1a", "r1b", "tcp", None), InvalidRequest, "needs a destination port"),
        (("red", "r1a", "r1b", "icmp", 7), InvalidRequest, "ICMP has no ports"),
        (("blue", "r1a", "r1b", "tcp", 80), NotFound, "no endpoint 'r1a' in network 'blue'"),
    ],
)
def test_bad_questions_are_refused(lab: Lab, args: tuple, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        trace.resolve(lab.snap, *args)


def _dual(lab: Lab) -> Lab:
    nets = dict(lab.snap.networks)
    for name, six in (("red", "fd00:100::/64"), ("blue", "fd00:200::/64")):
        nets[name] = replace(nets[name], subnet6=IPv6Network(six))
    return Lab(replace(lab.snap, networks=nets))


def test_ipv6_is_traced_when_an_address_is_ipv6(lab: Lab) -> None:
    dual = _dual(lab)
    got = run(dual, "blue", "b1a", "fd00:200::a00:82", "icmp", None)  # b3a's ip6, on h3
    assert got.verdict == "delivered" and got.delivered == (("h3", 3),)
    assert got.entries[0].packet["ipv6_src"] == "fd00:200::a00:2"
    assert got.entries[0].packet["icmpv6_type"] == 128
    assert "ipv6_dst=fd00:200::a00:82" in trace.ovs_flow(got.entries[1])
    assert got.entries[1].packet["tunnel_id"] == 200
    same = run(dual, "red", "fd00:100::a00:2", "r1b")  # the source by its ip6: IPv6 too
    assert same.verdict == "delivered" and same.entries[0].packet["eth_type"] == 0x86DD
    other = run(dual, "red", "r1a", "fd00:200::a00:46")  # blue's b2b from red: isolated
    assert other.verdict == "dropped" and other.delivered == ()
    with pytest.raises(InvalidRequest, match="no IPv6 subnet"):
        run(lab, "red", "r1a", "fd00:100::a00:3")
